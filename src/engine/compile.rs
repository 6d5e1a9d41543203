//! Compiling one ring of a bundle read from Git, through the compiled-state cache
//! ([`crate::adapters::store::compiled`]) and the incremental-compile memo
//! ([`crate::adapters::store::memo`]): a commit compiled before is read back, and one
//! that differs from the memo's in a few workflow files compiles only those
//! ([`crate::pipeline::incremental`]).
//!
//! An entry is keyed by everything the compiler's output depends on: the manifest
//! folder's tree id and path, the ring, and this ringops build (version and binary). The
//! secrets the compile looked up are checked when the entry is read: it is used only when
//! each resolves as it did. A memo is kept per ring, root and build, and points at the
//! entry of the last compile stored. Bundles from a work tree (no tree id), failed
//! compiles, states with sensitive artifacts, state folders that do not exist yet and
//! compiles that reused all but a few files of the memo's are never stored.

use crate::adapters::store::compiled::{Cached, CompiledCache, holds_sensitive};
use crate::adapters::store::memo::MemoStore;
use crate::model::desired::sha256_hex;
use crate::model::{Bundle, DesiredState, Diagnostic};
use crate::pipeline::incremental::{Memo, compile_reusing};
use crate::pipeline::{Compiled, Inventory, Rings, SecretSource, compile, compile_with_inventory};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Compiles `ring` of `bundle`, or reads it from the cache under `state_dir`; stores a
/// fresh compile when it may be cached. A commit not compiled before reuses what the
/// memo of the last compile of the ring allows ([`crate::pipeline::incremental`]). The
/// same result as [`compile`] with `Rings::One`.
pub fn compile_ring(
    state_dir: &Path,
    bundle: &Bundle,
    secrets: &(dyn SecretSource + Sync),
    ring: &str,
) -> Result<Compiled, Vec<Diagnostic>> {
    // A command never creates a state folder just to cache in it.
    let key = cache_key(bundle, ring).filter(|_| state_dir.is_dir());
    let Some(key) = key else {
        return compile(bundle, secrets, Rings::One(ring));
    };
    let cache = CompiledCache::new(state_dir);
    if let Some(hit) = cache.read(&key).filter(|c| secrets_match(c, secrets)) {
        let states = BTreeMap::from([(ring.to_owned(), hit.state)]);
        return Ok(Compiled {
            rings: hit.rings,
            states,
        });
    }
    let recording = Recording::new(secrets);
    let memos = MemoStore::new(state_dir);
    let memo_key = memo_key(bundle, ring);
    let reused = memos.read(&memo_key).and_then(|memo| {
        compile_reusing(bundle, &recording, ring, &memo, || {
            let base = cache.read(&memo.entry)?;
            secrets_match(&base, &recording).then_some(base.state)
        })
    });
    let (compiled, inventory) = match reused {
        // Close enough to the memo's compile: storing this one would cost more than
        // compiling its few files again next time.
        Some(r) if r.fresh_files * REBASE_SHARE <= r.fresh_files + r.reused_files => {
            return Ok(r.compiled);
        }
        Some(r) => (r.compiled, r.inventory),
        None => {
            let (result, inventory) = compile_with_inventory(bundle, &recording, Rings::One(ring));
            (result?, inventory)
        }
    };
    if let Some(state) = compiled.states.get(ring).filter(|s| !holds_sensitive(s))
        && store(
            &cache,
            &key,
            recording.into_looked_up(),
            &compiled.rings,
            state,
        )
    {
        remember(&memos, &memo_key, bundle, ring, &inventory, &key);
    }
    Ok(compiled)
}

/// Stores a compiled ring state without sensitive artifacts as `key`; true when it was
/// written (best effort: a cache that cannot be written only costs the next compile).
fn store(
    cache: &CompiledCache,
    key: &str,
    looked_up: BTreeMap<String, Option<String>>,
    rings: &[String],
    state: &DesiredState,
) -> bool {
    let cached = Cached {
        secret_names: looked_up.keys().cloned().collect(),
        secrets_digest: secrets_digest(&looked_up),
        rings: rings.to_vec(),
        state: state.clone(),
    };
    match cache.write(key, &cached) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("compiled-state cache not written: {e}");
            false
        }
    }
}

/// A compile that had to compile more than one in this many workflow files afresh
/// (because they changed) is stored, with a new memo, for the next ones to start from;
/// one closer to its memo's compile is not stored at all.
const REBASE_SHARE: usize = 20;

/// Writes the memo of a compile whose state is cached as `entry`; best effort.
fn remember(
    memos: &MemoStore,
    memo_key: &str,
    bundle: &Bundle,
    ring: &str,
    inventory: &Inventory,
    entry: &str,
) {
    let memo = Memo::new(bundle, ring, inventory, entry);
    if let Err(e) = memos.write(memo_key, &memo) {
        tracing::debug!("compile memo not written: {e}");
    }
}

/// The cache key of `ring` of a bundle read from Git; `None` for a work tree.
fn cache_key(bundle: &Bundle, ring: &str) -> Option<String> {
    let tree = bundle.tree.as_deref()?;
    let text = format!(
        "ringops {}\nbuild {}\ntree {tree}\nroot {}\nring {ring}\n",
        env!("CARGO_PKG_VERSION"),
        build_stamp(),
        bundle.root
    );
    Some(sha256_hex(text.as_bytes()))
}

/// The name of the memo of `ring` of bundles under the same root, for this build.
fn memo_key(bundle: &Bundle, ring: &str) -> String {
    let text = format!(
        "ringops {}\nbuild {}\nroot {}\nring {ring}\nmemo\n",
        env!("CARGO_PKG_VERSION"),
        build_stamp(),
        bundle.root
    );
    sha256_hex(text.as_bytes())
}

/// Size and modification time of the running binary, so that a rebuilt ringops of the
/// same version never reads what another build compiled.
fn build_stamp() -> String {
    let meta = std::env::current_exe().and_then(std::fs::metadata);
    match meta.as_ref().map(|m| (m.len(), m.modified())) {
        Ok((len, Ok(modified))) => {
            let since = modified.duration_since(std::time::UNIX_EPOCH);
            format!("{len} {}", since.map_or(0, |d| d.as_nanos()))
        }
        _ => "unknown".to_owned(),
    }
}

/// True when every secret the cached compile looked up resolves as it did then.
fn secrets_match(cached: &Cached, secrets: &dyn SecretSource) -> bool {
    let now: BTreeMap<String, Option<String>> = cached
        .secret_names
        .iter()
        .map(|name| (name.clone(), secrets.secret(name)))
        .collect();
    secrets_digest(&now) == cached.secrets_digest
}

/// sha256 over each secret name and what it resolved to (or that it did not resolve).
/// Stored instead of the values, beside an object store that holds rendered secrets.
fn secrets_digest(resolved: &BTreeMap<String, Option<String>>) -> String {
    let mut text = Vec::new();
    for (name, value) in resolved {
        text.extend_from_slice(&(name.len() as u64).to_le_bytes());
        text.extend_from_slice(name.as_bytes());
        match value {
            Some(v) => {
                text.push(1);
                text.extend_from_slice(&(v.len() as u64).to_le_bytes());
                text.extend_from_slice(v.as_bytes());
            }
            None => text.push(0),
        }
    }
    sha256_hex(&text)
}

/// A secret source that remembers every name looked up and what it resolved to.
struct Recording<'s> {
    inner: &'s (dyn SecretSource + Sync),
    looked_up: Mutex<BTreeMap<String, Option<String>>>,
}

impl<'s> Recording<'s> {
    fn new(inner: &'s (dyn SecretSource + Sync)) -> Self {
        Self {
            inner,
            looked_up: Mutex::new(BTreeMap::new()),
        }
    }

    fn into_looked_up(self) -> BTreeMap<String, Option<String>> {
        self.looked_up
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SecretSource for Recording<'_> {
    fn secret(&self, name: &str) -> Option<String> {
        let value = self.inner.secret(name);
        let mut looked_up = self
            .looked_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        looked_up.insert(name.to_owned(), value.clone());
        value
    }
}

#[cfg(test)]
#[path = "compile_incremental_tests.rs"]
mod incremental_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = r#"
apiVersion: ringops/v1
kind: Ring
metadata: {name: dev}
spec: {}
---
apiVersion: ringops/v1
kind: WorkerGroup
metadata: {name: edge}
spec:
  workers:
    - {name: e1, ring: dev}
---
apiVersion: ringops/v1
kind: Blueprint
metadata: {name: job}
spec:
  params:
    n: {type: int, default: 1}
  files:
    - path: job.conf
      template: "n={{ params.n }} on={{ worker.name }}\n"
---
apiVersion: ringops/v1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
    - {name: a, blueprint: job, placement: {group: edge}, with: {n: 3}}
"#;

    fn bundle(text: &str, tree: Option<&str>) -> Bundle {
        Bundle {
            commit: None,
            tree: tree.map(str::to_owned),
            root: String::new(),
            files: BTreeMap::from([("fleet.yaml".to_owned(), text.as_bytes().to_vec())]),
        }
    }

    fn entries(state_dir: &Path) -> usize {
        std::fs::read_dir(state_dir.join("cache/compiled")).map_or(0, Iterator::count)
    }

    #[test]
    fn a_second_compile_reads_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bundle(FLEET, Some("t1"));
        let first = compile_ring(dir.path(), &b, &crate::pipeline::NoSecrets, "dev").expect("ok");
        assert_eq!(entries(dir.path()), 1);
        // Same tree id, other bytes: only a cache hit gives the first result.
        let b2 = bundle(&FLEET.replace("n: 3", "n: 4"), Some("t1"));
        let second = compile_ring(dir.path(), &b2, &crate::pipeline::NoSecrets, "dev").expect("ok");
        assert_eq!(first.states, second.states);
        assert_eq!(first.rings, second.rings);
    }

    #[test]
    fn work_trees_are_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        compile_ring(
            dir.path(),
            &bundle(FLEET, None),
            &crate::pipeline::NoSecrets,
            "dev",
        )
        .expect("ok");
        assert_eq!(entries(dir.path()), 0);
    }

    #[test]
    fn states_with_secrets_are_not_cached() {
        let with_secret = FLEET
            .replace("n: {type: int, default: 1}", "n: {type: string}")
            .replace("with: {n: 3}", "with: {n: {secret: num}}");
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bundle(&with_secret, Some("t1"));
        let missing = compile_ring(dir.path(), &b, &crate::pipeline::NoSecrets, "dev");
        assert!(missing.is_err());
        let secrets = BTreeMap::from([("num".to_owned(), "5".to_owned())]);
        assert!(compile_ring(dir.path(), &b, &secrets, "dev").is_ok());
        // A state holding a secret is never cached.
        assert_eq!(entries(dir.path()), 0);
    }

    #[test]
    fn a_secret_of_another_ring_is_checked_on_read() {
        // Ring prod overrides a param with a secret; ring dev holds no secret.
        let fleet = FLEET
            .replace(
                "n: {type: int, default: 1}",
                "n: {type: string, default: \"1\"}",
            )
            .replace("with: {n: 3}", "with: {n: \"3\"}")
            .replace(
                "    - {name: e1, ring: dev}",
                "    - {name: e1, ring: dev}\n    - {name: p1, ring: prod}",
            )
            + r#"
---
apiVersion: ringops/v1
kind: Ring
metadata: {name: prod}
spec:
  overrides:
    - {workflow: wf, step: a, with: {n: {secret: key}}}
"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bundle(&fleet, Some("t1"));
        let secrets = BTreeMap::from([("key".to_owned(), "hunter2".to_owned())]);
        let first = compile_ring(dir.path(), &b, &secrets, "dev");
        assert!(first.is_ok(), "{first:?}");
        assert_eq!(entries(dir.path()), 1);
        let text = std::fs::read_dir(dir.path().join("cache/compiled"))
            .expect("dir")
            .flatten()
            .map(|e| std::fs::read(e.path()).expect("entry"))
            .next()
            .expect("one entry");
        assert!(!text.windows(7).any(|w| w == b"hunter2"));
        let gone = compile_ring(dir.path(), &b, &crate::pipeline::NoSecrets, "dev");
        assert!(
            gone.is_err(),
            "the secret is gone: the entry must not be used"
        );
    }

    #[test]
    fn secrets_looked_up_are_checked_on_read() {
        let cached = Cached {
            secret_names: vec!["num".to_owned()],
            secrets_digest: secrets_digest(&BTreeMap::from([(
                "num".to_owned(),
                Some("5".to_owned()),
            )])),
            rings: vec![],
            state: crate::model::DesiredState::default(),
        };
        let same = BTreeMap::from([("num".to_owned(), "5".to_owned())]);
        let other = BTreeMap::from([("num".to_owned(), "6".to_owned())]);
        assert!(secrets_match(&cached, &same));
        assert!(!secrets_match(&cached, &other));
        assert!(!secrets_match(&cached, &crate::pipeline::NoSecrets));
    }
}
