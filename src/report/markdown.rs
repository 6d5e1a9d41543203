//! The plan as a pull-request comment: a summary table, one collapsible section per
//! worker with `diff` fences, and the commands to reproduce it. Kept under
//! [`LIMIT`] characters; what does not fit is named in a note.

use super::{plural, revision, summary_line};
use crate::model::{Plan, WorkerPlan};
use std::fmt::Write;

/// Most characters a comment may have (GitHub allows 65,536).
pub const LIMIT: usize = 60_000;

/// Most characters of the summary table; further workers are summed up in one row.
const TABLE_LIMIT: usize = 20_000;

/// Room kept for the truncation note (its list of workers is cut at 2,000 characters).
const NOTE_ROOM: usize = 2_500;

/// Renders a plan for a PR comment.
pub fn render(plan: &Plan) -> String {
    let head = header(plan);
    let foot = footer(plan);
    let mut body = String::new();
    let budget = LIMIT.saturating_sub(head.len() + foot.len() + NOTE_ROOM);
    // Every worker's list of actions comes first; diffs share what room is left.
    let listings: Vec<usize> = plan.workers.iter().map(listing_len).collect();
    let mut listed = 0;
    let shown = listings
        .iter()
        .take_while(|len| {
            listed += **len;
            listed <= budget
        })
        .count();
    let mut spare = budget.saturating_sub(listings[..shown].iter().sum());
    let omitted: Vec<&WorkerPlan> = plan.workers[shown..].iter().collect();
    let mut diffs_cut = 0;
    for worker in &plan.workers[..shown] {
        body.push_str(&section(worker, &mut spare, &mut diffs_cut));
    }
    if !omitted.is_empty() || diffs_cut > 0 {
        body.push_str(&omission_note(&omitted, diffs_cut));
    }
    format!("{head}{body}{foot}")
}

fn header(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### ringops plan: ring `{}`\n\n`{}` → `{}` · fingerprint `sha256:{}`\n",
        plan.ring,
        super::base(plan.base.as_ref()),
        revision(&plan.head),
        plan.fingerprint
    );
    for u in &plan.unreachable {
        let _ = writeln!(
            out,
            "> **worker `{}` is unreachable:** {} (nothing planned for it)\n",
            u.worker,
            u.error.replace('\n', " ")
        );
    }
    if plan.summary.is_empty() {
        let _ = writeln!(
            out,
            "**No changes.** Every worker of ring `{}` already matches.\n",
            plan.ring
        );
        return out;
    }
    let _ = writeln!(out, "**{}**\n", summary_line(&plan.summary));
    out.push_str(&table(&plan.workers));
    out.push('\n');
    out
}

/// One row per worker while they fit in [`TABLE_LIMIT`], then one row for the rest.
fn table(workers: &[WorkerPlan]) -> String {
    use crate::model::ActionKind::*;
    let mut out = String::from("| worker | create | update | delete |\n|---|---:|---:|---:|\n");
    let (mut rest, mut rest_counts) = (0, [0; 3]);
    for w in workers {
        let count = |k| w.actions.iter().filter(|a| a.kind == k).count();
        let counts = [count(Create), count(Update), count(Delete)];
        let row = format!(
            "| `{}` | {} | {} | {} |\n",
            w.worker, counts[0], counts[1], counts[2]
        );
        if rest == 0 && out.len() + row.len() <= TABLE_LIMIT {
            out.push_str(&row);
        } else {
            rest += 1;
            for (total, n) in rest_counts.iter_mut().zip(counts) {
                *total += n;
            }
        }
    }
    if rest > 0 {
        let _ = writeln!(
            out,
            "| … {rest} more {} | {} | {} | {} |",
            plural(rest, "worker", "workers"),
            rest_counts[0],
            rest_counts[1],
            rest_counts[2]
        );
    }
    out
}

fn section_head(worker: &WorkerPlan) -> String {
    let n = worker.actions.len();
    format!(
        "<details><summary><code>{}</code>: {n} {}</summary>\n\n",
        worker.worker,
        plural(n, "change", "changes")
    )
}

/// Characters of a worker's section without its diffs (with room for a cut-diff note each).
fn listing_len(worker: &WorkerPlan) -> usize {
    let lines: usize = worker
        .actions
        .iter()
        .map(|a| action_line(a).len() + 40)
        .sum();
    section_head(worker).len() + lines + 16
}

/// One worker's collapsible section: every action, and its diff while `spare` allows.
fn section(worker: &WorkerPlan, spare: &mut usize, cut: &mut usize) -> String {
    let mut out = section_head(worker);
    for action in &worker.actions {
        out.push_str(&action_line(action));
        let Some(diff) = &action.diff else {
            continue;
        };
        let fence = fence_for(diff);
        let block = format!("\n{fence}diff\n{diff}{fence}\n\n");
        if block.len() <= *spare {
            *spare -= block.len();
            out.push_str(&block);
        } else {
            *cut += 1;
            let _ = writeln!(out, "  _(diff of {} lines left out)_", diff.lines().count());
        }
    }
    for path in &worker.unmanaged {
        let _ = writeln!(out, "- `=` `{path}` (unmanaged: left alone)");
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str("</details>\n\n");
    out
}

fn action_line(action: &crate::model::Action) -> String {
    let mut line = format!("- `{}` `{}`", action.kind.marker(), action.path);
    if let Some(drift) = action.drift {
        let _ = write!(line, " **drift: {}**", drift.word());
    }
    if !action.why.is_empty() {
        let why: Vec<String> = action.why.iter().map(|w| format!("`{w}`")).collect();
        let _ = write!(line, " because of {}", why.join(", "));
    }
    line.push('\n');
    line
}

/// A code fence longer than any run of backticks inside the text.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn omission_note(omitted: &[&WorkerPlan], diffs_cut: usize) -> String {
    let mut parts = Vec::new();
    if diffs_cut > 0 {
        parts.push(format!(
            "{diffs_cut} {} shown as a line count only",
            plural(diffs_cut, "diff is", "diffs are")
        ));
    }
    if !omitted.is_empty() {
        let changes: usize = omitted.iter().map(|w| w.actions.len()).sum();
        let names: Vec<String> = omitted.iter().map(|w| format!("`{}`", w.worker)).collect();
        let mut list = names.join(", ");
        if list.len() > 2_000 {
            list.truncate(list[..2_000].rfind(',').unwrap_or(0));
            list.push_str(", …");
        }
        parts.push(format!(
            "{} {} ({changes} {}) are left out: {list}",
            omitted.len(),
            plural(omitted.len(), "worker", "workers"),
            plural(changes, "change", "changes"),
        ));
    }
    format!(
        "> **Truncated** to keep this comment under {LIMIT} characters: {}. Run the commands below for the full plan.\n\n",
        parts.join("; ")
    )
}

fn footer(plan: &Plan) -> String {
    let side = |r: &crate::model::plan::Revision| r.commit.clone().unwrap_or_else(|| r.rev.clone());
    let path = if plan.path.is_empty() {
        String::new()
    } else {
        format!(" --path {}", shell_quote(&plan.path))
    };
    let base = match &plan.base {
        Some(b) => format!(" --base {}", shell_quote(&side(b))),
        None => String::new(),
    };
    let command = format!(
        "git fetch origin\nringops plan --ring {}{path}{base} --head {}\n",
        shell_quote(&plan.ring),
        shell_quote(&side(&plan.head))
    );
    // A path may hold backticks: the fence is longer than any run of them.
    let fence = fence_for(&command);
    format!(
        "<details><summary>Reproduce locally</summary>\n\n{fence}sh\n{command}{fence}\n\nSecrets resolve from `--secrets-dir`, `$CREDENTIALS_DIRECTORY` or `RINGOPS_SECRET_<NAME>`.\n</details>\n"
    )
}

/// One shell word: left alone when made of `[A-Za-z0-9._/-]` only, otherwise in single
/// quotes with each `'` written as `'\''`.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("examples/fleet-1.2_x"), "examples/fleet-1.2_x");
        assert_eq!(shell_quote("my fleet"), "'my fleet'");
        assert_eq!(shell_quote("$(rm -rf ~)`x`;a&b"), "'$(rm -rf ~)`x`;a&b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("HEAD~1"), "'HEAD~1'");
        assert_eq!(shell_quote(""), "''");
    }
}
