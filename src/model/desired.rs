//! What a commit says each worker of a ring should hold: the compiler's output.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The manifests at one commit (or in a work tree): repository-relative path → bytes.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// Commit id, when read from Git.
    pub commit: Option<String>,
    /// Tree id of the manifest folder, when read from Git.
    pub tree: Option<String>,
    /// Folder of the manifests, relative to the repository root ("" for the root).
    pub root: String,
    /// Every file under `root`, by repository-relative path.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Paths whose content differs between two bundles (added, removed or edited).
    pub fn changed_files(&self, other: &Bundle) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for (path, bytes) in &self.files {
            if other.files.get(path) != Some(bytes) {
                changed.insert(path.clone());
            }
        }
        for path in other.files.keys() {
            if !self.files.contains_key(path) {
                changed.insert(path.clone());
            }
        }
        changed
    }
}

/// One rendered file for one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The rendered text; shared (not copied) with the batches that write it.
    pub content: Arc<str>,
    /// Hex sha256 of `content`.
    pub sha256: String,
    /// Repository files (and `secret:NAME` references) the artifact was built from, sorted.
    pub sources: Vec<String>,
    /// Sensitive values inside `content`; lines holding one are never shown.
    pub sensitive: Vec<String>,
    /// What plans show instead of `content` when the artifact holds sensitive values:
    /// the same template rendered with placeholders.
    pub shown: Option<String>,
    /// Digest of the hidden values, so a plan can tell they changed. Never printed.
    pub hidden_digest: Option<String>,
}

impl Artifact {
    /// Builds an artifact, hashing its content.
    pub fn new(content: String, sources: Vec<String>, sensitive: Vec<String>) -> Self {
        let sha256 = sha256_hex(content.as_bytes());
        Self {
            content: content.into(),
            sha256,
            sources,
            sensitive,
            shown: None,
            hidden_digest: None,
        }
    }

    /// Sets the text plans show in place of the content, and the digest of what it hides.
    pub fn with_shown(mut self, shown: Option<String>, hidden_digest: Option<String>) -> Self {
        self.shown = shown;
        self.hidden_digest = hidden_digest;
        self
    }

    /// The text a plan may show: the redacted rendering when there is one.
    pub fn display_text(&self) -> &str {
        self.shown.as_deref().unwrap_or(&self.content)
    }
}

/// The desired artifacts of one worker, by path `<workflow>/<job>/<file>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// The worker's group.
    pub group: String,
    /// The worker's address, if any.
    pub address: Option<String>,
    /// How the worker is reached, if not the default local directory.
    pub target: Option<crate::model::Target>,
    /// Artifacts by worker-relative path.
    pub artifacts: BTreeMap<String, Artifact>,
    /// The group's `check` hook: run on the staged files before a switch.
    pub check: Option<WorkerHook>,
    /// The group's `reload` hook: run after a switch.
    pub reload: Option<WorkerHook>,
}

impl WorkerState {
    /// Where the worker is reached and the hooks around its switch, as `(@name, value)`,
    /// only those set (a worker with neither fingerprints as before they counted).
    fn placement_lines(&self) -> Vec<(&'static str, String)> {
        let hook = |h: &WorkerHook| serde_json::to_string(h).unwrap_or_default();
        let mut lines = Vec::new();
        if let Some(target) = &self.target {
            lines.push(("@target", target.to_string()));
        }
        if let Some(check) = &self.check {
            lines.push(("@check", hook(check)));
        }
        if let Some(reload) = &self.reload {
            lines.push(("@reload", hook(reload)));
        }
        lines
    }
}

/// What runs around one worker's switch: a command line ringops runs itself (a local
/// worker), or the name of a hook the worker's agent defines in its `agent.toml` (a
/// worker reached through an agent, which never runs a command it is sent).
///
/// Serialized untagged, so a command keeps the shape recorded before named hooks
/// existed (`{"command": [...], "timeout_ms": N}`); a named hook is `{"hook": NAME}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum WorkerHook {
    /// A command line, run by ringops on a local worker.
    Command(HookSpec),
    /// A hook of the worker's agent, by name.
    Named {
        /// The name of a `[hooks.NAME]` table in the agent's `agent.toml`.
        hook: String,
    },
}

/// Why `name` cannot name an agent hook: it must be 1 to 63 lowercase letters, digits,
/// `-` and `_`, starting with a letter.
pub fn hook_name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter");
    }
    if name.len() > 63 {
        return Some("is longer than 63 characters");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if !chars.all(allowed) {
        return Some("may hold only lowercase letters, digits, `-` and `_`");
    }
    None
}

/// A command a worker group runs around a switch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// How long it may run before it is killed and counted as failed.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: std::time::Duration,
}

/// A duration as whole milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The desired state of every worker of one ring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Ring name.
    pub ring: String,
    /// Workers by name.
    pub workers: BTreeMap<String, WorkerState>,
}

impl DesiredState {
    /// sha256 over the sorted `worker, path, artifact sha256` list and each worker's
    /// target and hooks where it has them: names what would be deployed, and where.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for (worker, state) in &self.workers {
            let placement = state.placement_lines();
            let lines = state
                .artifacts
                .iter()
                .map(|(path, artifact)| (path.as_str(), artifact.sha256.as_str()));
            // `@`-names never clash with artifact paths (`<workflow>/<job>/<file>`).
            let placement = placement.iter().map(|(k, v)| (*k, v.as_str()));
            for (key, value) in lines.chain(placement) {
                hasher.update(worker.as_bytes());
                hasher.update(b"\t");
                hasher.update(key.as_bytes());
                hasher.update(b"\t");
                hasher.update(value.as_bytes());
                hasher.update(b"\n");
            }
        }
        hex::encode(hasher.finalize())
    }

    /// Number of artifacts over all workers.
    pub fn artifact_count(&self) -> usize {
        self.workers.values().map(|w| w.artifacts.len()).sum()
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A summary of one worker for reports.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerSummary {
    /// Worker name.
    pub worker: String,
    /// Number of artifacts.
    pub artifacts: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DesiredState {
        let artifact = Artifact {
            sha256: sha256_hex(b"x"),
            content: Arc::from("x"),
            sources: Vec::new(),
            sensitive: Vec::new(),
            shown: None,
            hidden_digest: None,
        };
        let worker = WorkerState {
            artifacts: BTreeMap::from([("wf/job/file".to_owned(), artifact)]),
            ..WorkerState::default()
        };
        DesiredState {
            ring: "dev".into(),
            workers: BTreeMap::from([("w1".to_owned(), worker)]),
        }
    }

    #[test]
    fn the_fingerprint_names_where_and_how_files_are_deployed() {
        let plain = state();
        let mut moved = state();
        if let Some(w) = moved.workers.get_mut("w1") {
            w.target = Some("dir:/srv/w1".parse().expect("target"));
        }
        let mut checked = state();
        let hook = HookSpec {
            command: vec!["true".into()],
            timeout: std::time::Duration::from_secs(5),
        };
        if let Some(w) = checked.workers.get_mut("w1") {
            w.check = Some(WorkerHook::Command(hook.clone()));
        }
        let mut slower = checked.clone();
        if let Some(w) = slower.workers.get_mut("w1") {
            w.check = Some(WorkerHook::Command(HookSpec {
                timeout: std::time::Duration::from_secs(9),
                ..hook.clone()
            }));
        }
        let mut reloaded = state();
        if let Some(w) = reloaded.workers.get_mut("w1") {
            w.reload = Some(WorkerHook::Command(hook));
        }
        let mut named = state();
        if let Some(w) = named.workers.get_mut("w1") {
            w.check = Some(WorkerHook::Named {
                hook: "validate".into(),
            });
        }
        let all =
            [&plain, &moved, &checked, &slower, &reloaded, &named].map(DesiredState::fingerprint);
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        assert_eq!(plain.fingerprint(), state().fingerprint());
    }

    #[test]
    fn a_command_hook_keeps_its_recorded_shape_and_a_named_one_reads_back() {
        let command = WorkerHook::Command(HookSpec {
            command: vec!["nginx".into(), "-t".into()],
            timeout: std::time::Duration::from_secs(5),
        });
        let json = serde_json::to_string(&command).expect("JSON");
        assert_eq!(json, r#"{"command":["nginx","-t"],"timeout_ms":5000}"#);
        let named = WorkerHook::Named {
            hook: "validate".into(),
        };
        let json_named = serde_json::to_string(&named).expect("JSON");
        assert_eq!(json_named, r#"{"hook":"validate"}"#);
        for (hook, json) in [(command, json), (named, json_named)] {
            assert_eq!(serde_json::from_str::<WorkerHook>(&json).ok(), Some(hook));
        }
    }

    #[test]
    fn hook_names_are_short_lowercase_words() {
        for good in ["validate", "nginx-test", "reload_2"] {
            assert_eq!(hook_name_problem(good), None, "{good}");
        }
        for bad in ["", "Validate", "2x", "a b", "a/b", &"x".repeat(64)] {
            assert!(hook_name_problem(bad).is_some(), "{bad}");
        }
    }
}
