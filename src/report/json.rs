//! The plan as JSON for programs; the schema is documented in the README and versioned
//! by `format_version`.

use crate::model::{Diagnostic, Plan};
use crate::pipeline::Compiled;
use serde::Serialize;
use std::collections::BTreeMap;

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
    pretty(&doc)
}

#[derive(Serialize)]
struct Validation<'d> {
    format_version: u32,
    valid: bool,
    errors: &'d [Diagnostic],
    rings: BTreeMap<&'d str, RingCount>,
}

#[derive(Serialize)]
struct RingCount {
    workers: usize,
    artifacts: usize,
}

/// Renders the outcome of `validate` as JSON: every error with its location and code.
pub fn validation(result: &Result<Compiled, Vec<Diagnostic>>) -> String {
    let doc = match result {
        Err(errors) => Validation {
            format_version: FORMAT_VERSION,
            valid: false,
            errors,
            rings: BTreeMap::new(),
        },
        Ok(compiled) => Validation {
            format_version: FORMAT_VERSION,
            valid: true,
            errors: &[],
            rings: compiled
                .states
                .iter()
                .map(|(name, s)| {
                    let count = RingCount {
                        workers: s.workers.len(),
                        artifacts: s.artifact_count(),
                    };
                    (name.as_str(), count)
                })
                .collect(),
        },
    };
    pretty(&doc)
}

fn pretty(doc: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|e| {
        // Plain data with string keys always serializes; keep the output valid JSON anyway.
        format!("{{\"format_version\":{FORMAT_VERSION},\"error\":\"{e}\"}}")
    });
    text.push('\n');
    text
}
