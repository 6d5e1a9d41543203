//! Saved plans (`plan --out PLAN.json`, `apply PLAN.json`): the plan a person reviewed,
//! plus what must still hold when it is applied (Terraform's saved plans, Nomad's
//! `-check-index`): the commit, the desired state's fingerprint, the ring's Active
//! deployment and a digest of what each worker held.

use crate::model::Plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `kind` of a saved plan file.
pub const KIND: &str = "ringops-saved-plan";

/// What a saved plan file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// Always 1 for this layout.
    pub format_version: u32,
    /// Always [`KIND`].
    pub kind: String,
    /// The ring.
    pub ring: String,
    /// The revision as given (`HEAD`, `main`, a commit id).
    pub rev: String,
    /// The commit it resolved to.
    pub commit: String,
    /// The manifest folder inside the repository.
    pub path: String,
    /// The desired state's fingerprint.
    pub fingerprint: String,
    /// The ring's Active deployment when the plan was made.
    pub active_deployment: Option<String>,
    /// Per worker, the digest of what it held when the plan was made.
    pub workers: BTreeMap<String, String>,
    /// The plan as `plan --format json` prints it, for people and programs to review.
    pub plan: serde_json::Value,
}

impl SavedPlan {
    /// The saved form of `plan` with the facts to check again.
    pub fn new(plan: &Plan, facts: Facts) -> Self {
        Self {
            format_version: 1,
            kind: KIND.to_owned(),
            ring: plan.ring.clone(),
            rev: plan.head.rev.clone(),
            commit: facts.commit,
            path: plan.path.clone(),
            fingerprint: plan.fingerprint.clone(),
            active_deployment: facts.active_deployment,
            workers: facts.workers,
            plan: serde_json::from_str(&super::json::render(plan)).unwrap_or_default(),
        }
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a saved plan, refusing anything that is not one of this layout.
    pub fn parse(text: &str) -> Result<Self, String> {
        let saved: SavedPlan = serde_json::from_str(text).map_err(|e| {
            format!(
                "line {}, column {}: not a saved plan: {e}",
                e.line(),
                e.column()
            )
        })?;
        if saved.kind != KIND || saved.format_version != 1 {
            return Err(format!(
                "a `{}` of format_version {}; this ringops reads `{KIND}` version 1",
                saved.kind, saved.format_version
            ));
        }
        Ok(saved)
    }

    /// What differs between this plan's facts and `now`, in words; empty when the
    /// plan still applies exactly.
    pub fn changes(&self, now: &Facts, fingerprint: &str) -> Vec<String> {
        let mut out = Vec::new();
        if now.commit.is_empty() {
            out.push(format!("`{}` no longer names a commit", self.rev));
        } else if now.commit != self.commit {
            out.push(format!(
                "`{}` now resolves to {} (the plan was made at {})",
                self.rev,
                super::short(&now.commit),
                super::short(&self.commit)
            ));
        } else if fingerprint != self.fingerprint {
            out.push(
                "the desired state at the same commit differs (secrets or the ringops version changed)"
                    .to_owned(),
            );
        }
        if now.active_deployment != self.active_deployment {
            let name = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".to_owned());
            out.push(format!(
                "the ring's Active deployment is {} (the plan was made against {})",
                name(&now.active_deployment),
                name(&self.active_deployment)
            ));
        }
        let names: std::collections::BTreeSet<&String> =
            self.workers.keys().chain(now.workers.keys()).collect();
        for name in names {
            match (self.workers.get(name), now.workers.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => out.push(format!("worker {name} changed since the plan")),
                (Some(_), None) => out.push(format!("worker {name} cannot be read now")),
                (None, _) => out.push(format!("worker {name} is new since the plan")),
            }
        }
        out
    }
}

/// What a saved plan checks again before applying.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The commit the revision resolves to.
    pub commit: String,
    /// The ring's Active deployment id.
    pub active_deployment: Option<String>,
    /// Per worker, the digest of what it holds.
    pub workers: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(commit: &str, active: Option<&str>, w2: &str) -> Facts {
        Facts {
            commit: commit.into(),
            active_deployment: active.map(Into::into),
            workers: BTreeMap::from([("w1".into(), "a".into()), ("w2".into(), w2.into())]),
        }
    }

    fn saved() -> SavedPlan {
        let plan = Plan {
            ring: "dev".into(),
            path: "fleet".into(),
            base: None,
            head: crate::model::plan::Revision {
                rev: "main".into(),
                commit: Some("1111111111111111".into()),
            },
            fingerprint: "f".into(),
            workers: Vec::new(),
            unreachable: Vec::new(),
            summary: Default::default(),
        };
        SavedPlan::new(&plan, facts("1111111111111111", Some("d-000001"), "b"))
    }

    #[test]
    fn a_saved_plan_round_trips_and_names_every_change() {
        let s = saved();
        assert_eq!(SavedPlan::parse(&s.to_json()), Ok(s.clone()));
        assert!(
            s.changes(&facts("1111111111111111", Some("d-000001"), "b"), "f")
                .is_empty()
        );
        let changes = s.changes(&facts("2222222222222222", Some("d-000002"), "c"), "f");
        insta::assert_snapshot!(changes.join("\n"));
        let secrets = s.changes(&facts("1111111111111111", Some("d-000001"), "b"), "g");
        assert_eq!(secrets.len(), 1, "{secrets:?}");
    }

    #[test]
    fn other_files_are_refused_with_their_position() {
        let err = SavedPlan::parse("{\"format_version\": 1,\n \"kind\": 3}").unwrap_err();
        assert!(err.starts_with("line 2, column"), "{err}");
        let mut other = saved();
        other.kind = "something".into();
        let err = SavedPlan::parse(&other.to_json()).unwrap_err();
        assert!(err.contains("ringops-saved-plan"), "{err}");
    }
}
