//! The plan as JSON for programs; the schema is documented in the README and versioned
//! by `format_version`.

use crate::model::Plan;
use serde::Serialize;

/// Version of the JSON plan schema; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'p> {
    format_version: u32,
    #[serde(flatten)]
    plan: &'p Plan,
}

/// Renders a plan as pretty-printed JSON with a trailing newline.
pub fn render(plan: &Plan) -> String {
    let doc = Document {
        format_version: FORMAT_VERSION,
        plan,
    };
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        // Serializing plain data with string keys cannot fail; keep output valid JSON anyway.
        format!("{{\"format_version\":{FORMAT_VERSION},\"error\":\"{e}\"}}")
    });
    text.push('\n');
    text
}
