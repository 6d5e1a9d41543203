//! Drift stage: a ring's desired state against what is on its workers → a plan whose
//! actions also say when a worker's file is not what ringops last wrote (edited,
//! deleted, or an unmanaged file in the way). Unmanaged files are listed, never acted on.
//!
//! Pure: the observed state comes in as data; reading workers is the transports' job.

use super::plan::{PlanInput, assemble, diff_worker, only_sensitive_diff};
use crate::model::observed::{ObservedState, ObservedWorker, PresentFile};
use crate::model::plan::{DriftKind, Unreachable};
use crate::model::{Action, ActionKind, Artifact, DesiredState, Plan, WorkerPlan};
use std::collections::{BTreeMap, BTreeSet};

/// What would change on each worker if the desired state replaced what is there.
pub fn plan_observed(observed: &ObservedState, head: &DesiredState, input: PlanInput) -> Plan {
    let empty_worker = ObservedWorker::default();
    let empty = BTreeMap::new();
    let names: BTreeSet<&String> = observed.workers.keys().chain(head.workers.keys()).collect();
    let rotated = rotated_secrets(observed, head, &input.changed_files);
    let workers: Vec<WorkerPlan> = names
        .into_iter()
        .filter(|name| !observed.unreachable.contains_key(*name))
        .map(|name| {
            let seen = observed.workers.get(name).unwrap_or(&empty_worker);
            let after = head.workers.get(name).map_or(&empty, |w| &w.artifacts);
            let mut plan = worker_plan(name, seen, after, &input);
            for action in plan.actions.iter_mut().filter(|a| a.drift.is_none()) {
                if let Some(artifact) = after.get(&action.path) {
                    explain_hidden(action, artifact, &rotated, &input.changed_files);
                }
            }
            plan
        })
        .collect();
    let mut plan = assemble(workers.into_iter(), head, input);
    plan.unreachable = observed
        .unreachable
        .iter()
        .map(|(worker, error)| Unreachable {
            worker: worker.clone(),
            error: error.clone(),
        })
        .collect();
    plan
}

fn worker_plan(
    name: &str,
    seen: &ObservedWorker,
    after: &BTreeMap<String, Artifact>,
    input: &PlanInput,
) -> WorkerPlan {
    let (before, after) = differing(seen, after);
    let mut actions = diff_worker(&before, &after, &input.changed_files);
    for action in &mut actions {
        action.drift = drift(seen, &action.path);
        // A file the worker changed but the manifests did not: the manifests are no reason.
        let recorded = seen.managed.get(&action.path).map(|m| &m.sha256);
        if action.drift.is_some() && recorded == action.after_sha256.as_ref() {
            action.why.clear();
        }
    }
    WorkerPlan {
        worker: name.to_owned(),
        actions,
        unmanaged: seen.unmanaged.clone(),
    }
}

/// The `secret:NAME` sources whose values changed since ringops wrote the workers'
/// files. An artifact none of whose repository files changed since the Active
/// deployment is rendered from the same text, so it differs from what ringops wrote
/// only if a secret it uses changed: its secrets are suspects. A secret that such an
/// artifact still matching what was written also uses kept its value.
fn rotated_secrets(
    observed: &ObservedState,
    head: &DesiredState,
    changed: &BTreeSet<String>,
) -> BTreeSet<String> {
    let (mut suspects, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for (name, seen) in &observed.workers {
        let Some(desired) = head.workers.get(name) else {
            continue;
        };
        for (path, artifact) in &desired.artifacts {
            let Some(written) = seen.managed.get(path) else {
                continue;
            };
            if secrets_of(artifact).next().is_none() || !repo_unchanged(artifact, changed) {
                continue;
            }
            let into = if written.sha256 == artifact.sha256 {
                &mut kept
            } else {
                &mut suspects
            };
            into.extend(secrets_of(artifact).cloned());
        }
    }
    suspects.difference(&kept).cloned().collect()
}

/// An artifact's `secret:NAME` sources.
fn secrets_of(artifact: &Artifact) -> impl Iterator<Item = &String> {
    artifact.sources.iter().filter(|s| s.starts_with("secret:"))
}

/// True when no repository file behind the artifact changed since the Active deployment.
fn repo_unchanged(artifact: &Artifact, changed: &BTreeSet<String>) -> bool {
    !artifact.sources.iter().any(|s| changed.contains(s))
}

/// Adds the rotated secrets behind an action to its reasons. An update of an artifact
/// with hidden values whose repository files did not change is an update of hidden
/// values only: its shown text is rendered from the same text as what the worker holds.
fn explain_hidden(
    action: &mut Action,
    artifact: &Artifact,
    rotated: &BTreeSet<String>,
    changed: &BTreeSet<String>,
) {
    let before = action.why.len();
    action.why.extend(
        secrets_of(artifact)
            .filter(|s| rotated.contains(*s))
            .cloned(),
    );
    if action.why.len() > before {
        action.why.sort();
        action.why.dedup();
    }
    let hidden_only = action.kind == ActionKind::Update
        && artifact.shown.is_some()
        && repo_unchanged(artifact, changed);
    if hidden_only {
        action.diff = Some(only_sensitive_diff(&action.path));
    }
}

/// The files on the worker (the "before" side of a diff) and the desired artifacts,
/// only at the paths where they differ: a file that already is its artifact gives no
/// action, so most of a converged worker is never copied.
fn differing(
    seen: &ObservedWorker,
    after: &BTreeMap<String, Artifact>,
) -> (BTreeMap<String, Artifact>, BTreeMap<String, Artifact>) {
    let before = seen
        .present
        .iter()
        .filter(|(path, file)| after.get(*path).is_none_or(|a| a.sha256 != file.sha256))
        .map(|(path, file)| (path.clone(), as_artifact(file)))
        .collect();
    let after = after
        .iter()
        .filter(|(path, a)| seen.present.get(*path).is_none_or(|f| f.sha256 != a.sha256))
        .map(|(path, a)| (path.clone(), a.clone()))
        .collect();
    (before, after)
}

/// A file on the worker as the "before" side of a diff.
fn as_artifact(file: &PresentFile) -> Artifact {
    Artifact {
        content: file.shown.as_str().into(),
        sha256: file.sha256.clone(),
        sources: Vec::new(),
        sensitive: Vec::new(),
        shown: None,
        hidden_digest: None,
    }
}

/// How the worker's file at `path` differs from what ringops last wrote, if it does.
pub fn drift(seen: &ObservedWorker, path: &str) -> Option<DriftKind> {
    match (seen.managed.get(path), seen.present.get(path)) {
        (Some(_), None) => Some(DriftKind::Missing),
        (Some(m), Some(p)) if m.sha256 != p.sha256 => Some(DriftKind::Edited),
        (None, Some(_)) => Some(DriftKind::Unmanaged),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionKind;
    use crate::model::WorkerState;
    use crate::model::desired::sha256_hex;
    use crate::model::observed::{ManagedFile, PresentFile};

    fn desired(files: &[(&str, &str)]) -> DesiredState {
        let mut ws = WorkerState::default();
        for (path, content) in files {
            ws.artifacts.insert(
                path.to_string(),
                Artifact::new(content.to_string(), vec!["wf.yaml".into()], vec![]),
            );
        }
        DesiredState {
            ring: "dev".into(),
            workers: BTreeMap::from([("w1".to_string(), ws)]),
        }
    }

    fn on_disk(
        managed: &[(&str, &str)],
        present: &[(&str, &str)],
        unmanaged: &[&str],
    ) -> ObservedState {
        let worker = ObservedWorker {
            managed: managed
                .iter()
                .map(|(p, c)| {
                    let file = ManagedFile {
                        sha256: sha256_hex(c.as_bytes()),
                        deployment: "d-1".into(),
                    };
                    (p.to_string(), file)
                })
                .collect(),
            present: present
                .iter()
                .map(|(p, c)| {
                    let file = PresentFile {
                        sha256: sha256_hex(c.as_bytes()),
                        shown: c.to_string(),
                    };
                    (p.to_string(), file)
                })
                .collect(),
            unmanaged: unmanaged.iter().map(|s| s.to_string()).collect(),
        };
        ObservedState {
            workers: BTreeMap::from([("w1".to_string(), worker)]),
            ..ObservedState::default()
        }
    }

    fn kinds(plan: &Plan) -> Vec<(String, ActionKind, Option<DriftKind>)> {
        plan.workers
            .iter()
            .flat_map(|w| w.actions.iter().map(|a| (a.path.clone(), a.kind, a.drift)))
            .collect()
    }

    #[test]
    fn a_converged_worker_plans_nothing() {
        let head = desired(&[("wf/s/a", "1\n")]);
        let seen = on_disk(&[("wf/s/a", "1\n")], &[("wf/s/a", "1\n")], &[]);
        let plan = plan_observed(&seen, &head, PlanInput::default());
        assert!(plan.summary.is_empty());
        assert!(plan.workers.is_empty());
    }

    #[test]
    fn hot_edits_deletions_and_leftovers_are_drift() {
        let head = desired(&[("wf/s/a", "1\n"), ("wf/s/b", "2\n"), ("wf/s/c", "3\n")]);
        let seen = on_disk(
            &[("wf/s/a", "1\n"), ("wf/s/b", "2\n"), ("wf/old/x", "9\n")],
            &[
                ("wf/s/a", "edited\n"),
                ("wf/old/x", "9\n"),
                ("wf/s/c", "mine\n"),
            ],
            &["wf/s/notes.txt"],
        );
        let plan = plan_observed(&seen, &head, PlanInput::default());
        assert_eq!(
            kinds(&plan),
            [
                ("wf/old/x".into(), ActionKind::Delete, None),
                ("wf/s/a".into(), ActionKind::Update, Some(DriftKind::Edited)),
                (
                    "wf/s/b".into(),
                    ActionKind::Create,
                    Some(DriftKind::Missing)
                ),
                (
                    "wf/s/c".into(),
                    ActionKind::Update,
                    Some(DriftKind::Unmanaged)
                ),
            ]
        );
        assert_eq!(plan.workers[0].unmanaged, ["wf/s/notes.txt"]);
        let diff = plan.workers[0].actions[1].diff.as_deref().unwrap_or("");
        assert!(diff.contains("-edited") && diff.contains("+1"), "{diff}");
    }

    #[test]
    fn drift_reads_clearly_in_text_and_markdown() {
        let head = desired(&[("wf/s/a", "1\n"), ("wf/s/b", "2\n")]);
        let seen = on_disk(
            &[("wf/s/a", "1\n"), ("wf/s/b", "2\n")],
            &[("wf/s/a", "edited\n")],
            &["wf/s/notes.txt"],
        );
        let plan = plan_observed(&seen, &head, PlanInput::default());
        insta::assert_snapshot!("drift-text", crate::report::text::render(&plan, false));
        insta::assert_snapshot!("drift-markdown", crate::report::markdown::render(&plan));
    }

    /// `w1` holds two artifacts ringops wrote: `a` uses secrets `x` and `y`, `b` uses
    /// `y`; the desired `a` now differs, `b` does not.
    fn rotated(changed: &[&str]) -> Plan {
        let artifact = |content: &str, secrets: &[&str]| {
            let mut sources = vec!["wf.yaml".to_owned()];
            sources.extend(secrets.iter().map(|s| format!("secret:{s}")));
            Artifact::new(content.to_owned(), sources, vec![]).with_shown(
                Some("pw: (sensitive value)\n".into()),
                Some("digest".into()),
            )
        };
        let mut head = desired(&[]);
        let artifacts = &mut head.workers.get_mut("w1").expect("w1").artifacts;
        artifacts.insert("wf/s/a".into(), artifact("pw: new\n", &["x", "y"]));
        artifacts.insert("wf/s/b".into(), artifact("pw: same\n", &["y"]));
        let written = [("wf/s/a", "pw: old\n"), ("wf/s/b", "pw: same\n")];
        let seen = on_disk(&written, &written, &[]);
        let input = PlanInput {
            changed_files: changed.iter().map(|s| s.to_string()).collect(),
            ..PlanInput::default()
        };
        plan_observed(&seen, &head, input)
    }

    #[test]
    fn a_rotated_secret_is_a_reason_and_only_sensitive_values_changed() {
        let plan = rotated(&[]);
        let actions = &plan.workers[0].actions;
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(
            actions[0].why,
            ["secret:x"],
            "y kept its value: b still matches"
        );
        assert_eq!(
            actions[0].diff.as_deref(),
            Some("--- a/wf/s/a\n+++ b/wf/s/a\n(only sensitive values changed)\n")
        );
    }

    #[test]
    fn a_changed_repository_file_leaves_the_secrets_untold() {
        let plan = rotated(&["wf.yaml"]);
        let action = &plan.workers[0].actions[0];
        assert_eq!(action.why, ["wf.yaml"]);
        let diff = action.diff.as_deref().unwrap_or("");
        assert!(!diff.contains("(only sensitive values changed)"), "{diff}");
    }

    #[test]
    fn unmanaged_files_alone_are_listed_without_actions() {
        let head = desired(&[("wf/s/a", "1\n")]);
        let seen = on_disk(
            &[("wf/s/a", "1\n")],
            &[("wf/s/a", "1\n")],
            &["wf/s/keep.me"],
        );
        let plan = plan_observed(&seen, &head, PlanInput::default());
        assert!(plan.summary.is_empty());
        assert_eq!(plan.workers.len(), 1);
        assert_eq!(plan.workers[0].unmanaged, ["wf/s/keep.me"]);
    }
}
