//! Pure rendering of plans and diagnostics for people and programs: text (optionally
//! coloured), markdown for pull-request comments, and JSON.

pub mod drift;
pub mod history;
pub mod json;
pub mod markdown;
pub mod saved;
pub mod text;

use crate::model::plan::Revision;
use crate::model::{Diagnostic, PlanSummary};
use crate::pipeline::Compiled;

/// `HEAD~1 (1a2b3c4)`, or the revision alone when it is not a commit.
pub fn revision(rev: &Revision) -> String {
    match &rev.commit {
        Some(c) if c.starts_with(&rev.rev) || rev.rev == *c => short(c).to_owned(),
        Some(c) => format!("{} ({})", rev.rev, short(c)),
        None => rev.rev.clone(),
    }
}

/// The base side of a plan: a revision, or `the workers` when planning against what is
/// on them.
pub fn base(rev: Option<&Revision>) -> String {
    rev.map_or_else(|| "the workers".to_owned(), revision)
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `text` on one line (whitespace runs become one space), at most `max` bytes of it.
pub fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.len() <= max {
        return joined;
    }
    let mut end = max;
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &joined[..end])
}

/// `2 to create, 1 to update, 0 to delete on 2 workers (3 unchanged)`.
pub fn summary_line(s: &PlanSummary) -> String {
    format!(
        "{} to create, {} to update, {} to delete on {} {} ({} unchanged)",
        s.create,
        s.update,
        s.delete,
        s.workers_changed,
        plural(s.workers_changed, "worker", "workers"),
        s.workers_unchanged
    )
}

/// Picks the singular or plural form.
pub fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

/// Every diagnostic on its own line, then a count.
pub fn diagnostics(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} {}\n",
        diags.len(),
        plural(diags.len(), "error", "errors")
    ));
    out
}

/// What `validate` prints: every error and a count, or a line per ring and `ok`.
pub fn validation_text(result: &Result<Compiled, Vec<Diagnostic>>) -> String {
    match result {
        Err(diags) => diagnostics(diags),
        Ok(compiled) => {
            let mut out = String::new();
            for (ring, state) in &compiled.states {
                out.push_str(&format!(
                    "ring {ring}: {} workers, {} artifacts\n",
                    state.workers.len(),
                    state.artifact_count()
                ));
            }
            out.push_str("ok: no errors\n");
            out
        }
    }
}
