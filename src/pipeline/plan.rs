//! Plan stage: two desired states of a ring → what changes on each worker, and why.

use crate::model::plan::Revision;
use crate::model::{Action, ActionKind, Artifact, DesiredState, Plan, PlanSummary, WorkerPlan};
use similar::{ChangeTag, TextDiff};
use std::collections::{BTreeMap, BTreeSet};

/// Text shown in place of a line holding a sensitive value.
pub const SENSITIVE: &str = "(sensitive value)";

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;

/// Where a plan's two sides come from.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    /// Manifest folder relative to the repository root.
    pub path: String,
    /// The side being replaced; `None` when planning from nothing deployed.
    pub base: Option<Revision>,
    /// The side replacing it.
    pub head: Revision,
    /// Repository files that differ between the two sides.
    pub changed_files: BTreeSet<String>,
}

/// Compares two desired states of one ring.
pub fn plan(base: &DesiredState, head: &DesiredState, input: PlanInput) -> Plan {
    let empty = BTreeMap::new();
    let names: BTreeSet<&String> = base.workers.keys().chain(head.workers.keys()).collect();
    let workers: Vec<WorkerPlan> = names
        .into_iter()
        .map(|name| {
            let before = base.workers.get(name).map_or(&empty, |w| &w.artifacts);
            let after = head.workers.get(name).map_or(&empty, |w| &w.artifacts);
            WorkerPlan {
                worker: name.clone(),
                actions: diff_worker(before, after, &input.changed_files),
                unmanaged: Vec::new(),
            }
        })
        .collect();
    assemble(workers.into_iter(), head, input)
}

/// A plan from every worker's plan: counts, and only workers with something to show.
pub fn assemble(
    all: impl Iterator<Item = WorkerPlan>,
    head: &DesiredState,
    input: PlanInput,
) -> Plan {
    let mut workers = Vec::new();
    let mut summary = PlanSummary::default();
    for worker in all {
        if worker.actions.is_empty() {
            summary.workers_unchanged += 1;
        } else {
            summary.workers_changed += 1;
        }
        for a in &worker.actions {
            match a.kind {
                ActionKind::Create => summary.create += 1,
                ActionKind::Update => summary.update += 1,
                ActionKind::Delete => summary.delete += 1,
            }
        }
        if !worker.actions.is_empty() || !worker.unmanaged.is_empty() {
            workers.push(worker);
        }
    }
    Plan {
        ring: head.ring.clone(),
        path: input.path,
        base: input.base,
        head: input.head,
        fingerprint: head.fingerprint(),
        workers,
        unreachable: Vec::new(),
        summary,
    }
}

/// The actions that turn one worker's artifacts into another's, sorted by path.
pub fn diff_worker(
    before: &BTreeMap<String, Artifact>,
    after: &BTreeMap<String, Artifact>,
    changed: &BTreeSet<String>,
) -> Vec<Action> {
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| action(path, before.get(path), after.get(path), changed))
        .collect()
}

fn action(
    path: &str,
    before: Option<&Artifact>,
    after: Option<&Artifact>,
    changed: &BTreeSet<String>,
) -> Option<Action> {
    let kind = match (before, after) {
        (None, Some(_)) => ActionKind::Create,
        (Some(_), None) => ActionKind::Delete,
        (Some(b), Some(a)) if b.sha256 != a.sha256 => ActionKind::Update,
        _ => return None,
    };
    let diff = after.map(|a| shown_diff(path, before, a));
    let why: BTreeSet<String> = before
        .into_iter()
        .chain(after)
        .flat_map(|a| a.sources.iter())
        .filter(|s| changed.contains(*s))
        .cloned()
        .collect();
    Some(Action {
        kind,
        path: path.to_owned(),
        before_sha256: before.map(|b| b.sha256.clone()),
        after_sha256: after.map(|a| a.sha256.clone()),
        diff,
        why: why.into_iter().collect(),
        drift: None,
    })
}

/// The diff a plan shows: between the redacted renderings where there are any, with
/// every line still holding a sensitive value masked.
fn shown_diff(path: &str, before: Option<&Artifact>, after: &Artifact) -> String {
    let old = before.map_or("", |b| b.display_text());
    let new = after.display_text();
    if before.is_some() && old == new {
        return only_sensitive_diff(path);
    }
    let mut sensitive: Vec<&str> = after.sensitive.iter().map(String::as_str).collect();
    if let Some(b) = before {
        sensitive.extend(b.sensitive.iter().map(String::as_str));
    }
    let mut diff = unified_diff(path, old, new, &sensitive);
    if before.is_some_and(|b| b.hidden_digest != after.hidden_digest) {
        diff.push_str(ALSO_SENSITIVE);
        diff.push('\n');
    }
    diff
}

/// Added to a diff when sensitive values changed as well as what it shows.
pub const ALSO_SENSITIVE: &str = "(sensitive values changed too)";

/// The diff of an artifact whose only changes are in sensitive values.
pub const ONLY_SENSITIVE: &str = "(only sensitive values changed)";

/// The diff of an update that changes only hidden values.
pub fn only_sensitive_diff(path: &str) -> String {
    format!("--- a/{path}\n+++ b/{path}\n{ONLY_SENSITIVE}\n")
}

/// A unified diff with 3 lines of context; lines holding a sensitive value are masked.
pub fn unified_diff(path: &str, old: &str, new: &str, sensitive: &[&str]) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut out = String::new();
    let from = if old.is_empty() {
        "/dev/null".to_owned()
    } else {
        format!("a/{path}")
    };
    out.push_str(&format!("--- {from}\n+++ b/{path}\n"));
    for hunk in diff.unified_diff().context_radius(CONTEXT).iter_hunks() {
        out.push_str(&format!("{}\n", hunk.header()));
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => ' ',
            };
            let line = change.value();
            let line = line.strip_suffix('\n').unwrap_or(line);
            let shown = if sensitive.iter().any(|s| line.contains(s)) {
                SENSITIVE
            } else {
                line
            };
            out.push(sign);
            out.push_str(shown);
            out.push('\n');
            if change.missing_newline() {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkerState;

    fn state(files: &[(&str, &str, &str)]) -> DesiredState {
        let mut ws = WorkerState::default();
        for (path, content, secret) in files {
            let sensitive = if secret.is_empty() {
                vec![]
            } else {
                vec![secret.to_string()]
            };
            let a = Artifact::new(content.to_string(), vec!["wf.yaml".into()], sensitive);
            ws.artifacts.insert(path.to_string(), a);
        }
        DesiredState {
            ring: "dev".into(),
            workers: BTreeMap::from([("w1".to_string(), ws)]),
        }
    }

    #[test]
    fn plan_of_a_state_against_itself_is_empty() {
        let s = state(&[("a/b/job.yaml", "x: 1\n", "")]);
        let p = plan(&s, &s, PlanInput::default());
        assert!(p.summary.is_empty());
        assert_eq!(p.summary.workers_unchanged, 1);
    }

    #[test]
    fn create_update_delete() {
        let base = state(&[("a", "1\n", ""), ("b", "2\n", "")]);
        let head = state(&[("b", "3\n", ""), ("c", "4\n", "")]);
        let changed = BTreeSet::from(["wf.yaml".to_string()]);
        let p = plan(
            &base,
            &head,
            PlanInput {
                changed_files: changed,
                ..Default::default()
            },
        );
        let kinds: Vec<_> = p.workers[0]
            .actions
            .iter()
            .map(|a| (a.path.as_str(), a.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", ActionKind::Delete),
                ("b", ActionKind::Update),
                ("c", ActionKind::Create)
            ]
        );
        assert_eq!(p.workers[0].actions[1].why, ["wf.yaml"]);
        assert!(p.workers[0].actions[0].diff.is_none());
    }

    #[test]
    fn sensitive_lines_are_masked() {
        let base = state(&[("f", "user: a\ntoken: hunter2\n", "hunter2")]);
        let head = state(&[("f", "user: b\ntoken: hunter3\n", "hunter3")]);
        let p = plan(&base, &head, PlanInput::default());
        let diff = p.workers[0].actions[0].diff.clone().unwrap();
        assert!(!diff.contains("hunter"), "{diff}");
        assert!(diff.contains("-(sensitive value)"), "{diff}");
        assert!(diff.contains("+user: b"), "{diff}");
    }
}
