//! Incremental compile: a commit that differs from one compiled before in a few workflow
//! files compiles only those files, and takes every other workflow's artifacts from the
//! earlier ring state.
//!
//! A workflow's artifacts and problems depend only on its own document (its file's path
//! and bytes), on every document that is not a workflow (rings, groups, blueprints,
//! modules, transports, template files), on the ring, the secrets and the build. So a
//! manifest file that holds only workflows can be reused when its path and bytes, and
//! the digest of every other file ([`Memo::global`]), are those of the earlier compile.
//! What crosses workflows is checked here: a reused workflow's name must not be taken by
//! another, and workflows that ring `overrides` name are always compiled. Any problem
//! makes the caller compile the whole bundle, so problems are reported exactly as a full
//! compile reports them. Owns the [`Memo`]; may not read files or secrets itself.

use super::compile::{Compiled, Inventory, Rings, compile_with_inventory};
use super::params::SecretSource;
use crate::model::desired::sha256_hex;
use crate::model::{Bundle, DesiredState};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What a compile of one ring leaves for the next one to reuse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memo {
    /// Name of the compiled-state entry that holds the ring's artifacts.
    pub entry: String,
    /// Digest of every file that is not a workflow-only file, the root and the ring.
    pub global: String,
    /// Workflows that some ring's `overrides` name.
    pub overridden: BTreeSet<String>,
    /// Workflow-only manifest files by path.
    pub files: BTreeMap<String, MemoFile>,
}

/// One workflow-only manifest file of a memo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoFile {
    /// [`file_digest`] of the file.
    pub digest: String,
    /// The workflows it holds.
    pub workflows: Vec<String>,
}

impl Memo {
    /// The memo of a compile of `ring` of `bundle` whose artifacts are in `entry`.
    pub fn new(bundle: &Bundle, ring: &str, inventory: &Inventory, entry: &str) -> Self {
        let files = bundle
            .files
            .par_iter()
            .filter_map(|(path, bytes)| {
                let workflows = inventory.workflow_files.get(path)?.clone();
                let digest = file_digest(path, bytes);
                Some((path.clone(), MemoFile { digest, workflows }))
            })
            .collect();
        Memo {
            entry: entry.to_owned(),
            global: global_digest(bundle, ring, |p| inventory.workflow_files.contains_key(p)),
            overridden: inventory.overridden.clone(),
            files,
        }
    }
}

/// A compile that reused part of an earlier one.
#[derive(Debug)]
pub struct Reused {
    /// The result, the same as a full compile's.
    pub compiled: Compiled,
    /// The bundle's inventory.
    pub inventory: Inventory,
    /// Workflow-only files compiled afresh because they changed (not counting those
    /// that ring overrides name, which are always compiled).
    pub fresh_files: usize,
    /// Workflow-only files whose artifacts were taken from the earlier compile.
    pub reused_files: usize,
}

/// sha256 over a file's path and bytes.
pub fn file_digest(path: &str, bytes: &[u8]) -> String {
    let mut text = Vec::with_capacity(path.len() + bytes.len() + 16);
    text.extend_from_slice(&(path.len() as u64).to_le_bytes());
    text.extend_from_slice(path.as_bytes());
    text.extend_from_slice(bytes);
    sha256_hex(&text)
}

/// sha256 over the root, the ring and every file of `bundle` but those `skip` names.
fn global_digest(bundle: &Bundle, ring: &str, skip: impl Fn(&str) -> bool + Sync) -> String {
    let digests: Vec<String> = bundle
        .files
        .par_iter()
        .filter(|(path, _)| !skip(path))
        .map(|(path, bytes)| file_digest(path, bytes))
        .collect();
    let text = format!("root {}\nring {ring}\n{}", bundle.root, digests.join("\n"));
    sha256_hex(text.as_bytes())
}

/// Compiles `ring` of `bundle` reusing what `memo` allows, with the earlier ring state
/// from `base` (`None` when it is gone or its secrets no longer resolve as they did).
/// `None` whenever the result could differ from a full compile's, or the bundle has any
/// problem: the caller then compiles the whole bundle.
pub fn compile_reusing(
    bundle: &Bundle,
    secrets: &(dyn SecretSource + Sync),
    ring: &str,
    memo: &Memo,
    base: impl FnOnce() -> Option<DesiredState>,
) -> Option<Reused> {
    let reused = reusable(bundle, memo);
    if reused.is_empty() {
        return None;
    }
    let reduced = Bundle {
        commit: bundle.commit.clone(),
        tree: bundle.tree.clone(),
        root: bundle.root.clone(),
        files: bundle
            .files
            .iter()
            .filter(|(path, _)| !reused.contains_key(path.as_str()))
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .collect(),
    };
    let (result, mut inventory) = compile_with_inventory(&reduced, secrets, Rings::One(ring));
    let mut compiled = result.ok()?;
    let global = global_digest(&reduced, ring, |p| inventory.workflow_files.contains_key(p));
    let names: HashSet<&str> = reused
        .values()
        .flat_map(|f| f.workflows.iter().map(String::as_str))
        .collect();
    let clash = names
        .iter()
        .any(|n| inventory.workflows.contains_key(*n) || inventory.overridden.contains(*n));
    if global != memo.global || clash {
        return None;
    }
    let state = compiled.states.get_mut(ring)?;
    merge(state, base()?, &names)?;
    let fresh_files = inventory
        .workflow_files
        .values()
        .filter(|names| !names.iter().any(|n| inventory.overridden.contains(n)))
        .count();
    let reused_files = reused.len();
    for (path, file) in reused {
        for name in &file.workflows {
            inventory.workflows.insert(name.clone(), path.to_owned());
        }
        inventory
            .workflow_files
            .insert(path.to_owned(), file.workflows.clone());
    }
    Some(Reused {
        compiled,
        inventory,
        fresh_files,
        reused_files,
    })
}

/// The workflow-only files of `bundle` that are as the memo knows them, and hold no
/// workflow that ring overrides name.
fn reusable<'m>(bundle: &Bundle, memo: &'m Memo) -> BTreeMap<&'m str, &'m MemoFile> {
    bundle
        .files
        .par_iter()
        .filter_map(|(path, bytes)| {
            let (path, file) = memo.files.get_key_value(path)?;
            let overridden = file.workflows.iter().any(|w| memo.overridden.contains(w));
            (!overridden && file.digest == file_digest(path, bytes))
                .then_some((path.as_str(), file))
        })
        .collect()
}

/// Adds to `state` the artifacts of the workflows `names` from `base`, the state they
/// were compiled into; `None` when the two do not have the same workers.
fn merge(state: &mut DesiredState, base: DesiredState, names: &HashSet<&str>) -> Option<()> {
    if base.ring != state.ring || base.workers.len() != state.workers.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(state.workers.len());
    for ((name, worker), (base_name, base_worker)) in state.workers.iter_mut().zip(base.workers) {
        if *name != base_name {
            return None;
        }
        pairs.push((worker, base_worker.artifacts));
    }
    pairs.into_par_iter().for_each(|(worker, mut artifacts)| {
        artifacts.retain(|path, _| {
            let workflow = path.split_once('/').map_or(path.as_str(), |(w, _)| w);
            names.contains(workflow)
        });
        // The few compiled afresh go into the many reused, not the other way round.
        for (path, artifact) in std::mem::take(&mut worker.artifacts) {
            artifacts.insert(path, artifact);
        }
        worker.artifacts = artifacts;
    });
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleetgen::{FleetOptions, bundle, generate};
    use crate::model::Artifact;
    use crate::pipeline::NoSecrets;

    fn fleet() -> BTreeMap<String, String> {
        generate(&FleetOptions {
            workflows: 8,
            steps: 3,
            workers: 8,
            ..FleetOptions::default()
        })
    }

    /// The memo and `dev` state of a full compile of `files`.
    fn base(files: &BTreeMap<String, String>) -> (Memo, DesiredState) {
        let b = bundle(files, "");
        let (result, inventory) = compile_with_inventory(&b, &NoSecrets, Rings::One("dev"));
        let mut compiled = result.expect("the fleet compiles");
        let state = compiled.states.remove("dev").expect("dev");
        (Memo::new(&b, "dev", &inventory, "entry"), state)
    }

    /// `state` with every artifact of workflow `wf` replaced by a marker.
    fn marked(mut state: DesiredState, wf: &str) -> DesiredState {
        for w in state.workers.values_mut() {
            for (path, a) in w.artifacts.iter_mut() {
                if path.starts_with(&format!("{wf}/")) {
                    *a = Artifact::new("marker".to_owned(), vec![], vec![]);
                }
            }
        }
        state
    }

    #[test]
    fn unchanged_workflows_come_from_the_base_and_changed_ones_are_compiled() {
        let mut files = fleet();
        let (memo, state) = base(&files);
        let path = "workflows/wf-0004.yaml";
        let text = files[path].replacen("threads: ", "threads: 9", 1);
        files.insert(path.to_owned(), text);
        let b = bundle(&files, "");
        let base_state = || Some(marked(marked(state.clone(), "wf-0005"), "wf-0004"));
        let reused = compile_reusing(&b, &NoSecrets, "dev", &memo, base_state).expect("reused");
        // wf-0004 changed; wf-0001, wf-0002 and wf-0007 (named by ring overrides) are
        // compiled too but not counted.
        assert_eq!((reused.fresh_files, reused.reused_files), (1, 4));
        let compiled = reused.compiled;
        let full = crate::pipeline::compile(&b, &NoSecrets, Rings::One("dev")).expect("ok");
        let got = &compiled.states["dev"];
        let want = &full.states["dev"];
        assert_eq!(
            got.workers.keys().collect::<Vec<_>>(),
            want.workers.keys().collect::<Vec<_>>()
        );
        for (name, worker) in &got.workers {
            for (p, a) in &worker.artifacts {
                let expected = &want.workers[name].artifacts[p];
                if p.starts_with("wf-0005/") {
                    assert_eq!(&*a.content, "marker", "{p} is taken from the base");
                } else {
                    assert_eq!(a, expected, "{p}");
                }
            }
            assert_eq!(worker.artifacts.len(), want.workers[name].artifacts.len());
        }
    }

    #[test]
    fn nothing_is_reused_when_another_file_changed() {
        let mut files = fleet();
        let (memo, state) = base(&files);
        for (path, from, to) in [
            ("rings.yaml", "bucket_prefix: dev", "bucket_prefix: dev2"),
            ("groups.yaml", "address: 10.11.0.1,", "address: 10.11.0.9,"),
            (
                "blueprints/templates/stream-processor.toml.j2",
                "\n",
                "\n# edited\n",
            ),
        ] {
            let mut changed = files.clone();
            let text = changed[path].replacen(from, to, 1);
            assert_ne!(text, changed[path], "{path}");
            changed.insert(path.to_owned(), text);
            let b = bundle(&changed, "");
            let got = compile_reusing(&b, &NoSecrets, "dev", &memo, || Some(state.clone()));
            assert!(got.is_none(), "{path} changed: nothing may be reused");
        }
        // A workflow that takes the name of a reused one is a clash: a full compile tells.
        files.insert(
            "workflows/copy.yaml".to_owned(),
            files["workflows/wf-0004.yaml"].clone(),
        );
        let b = bundle(&files, "");
        assert!(compile_reusing(&b, &NoSecrets, "dev", &memo, || Some(state.clone())).is_none());
    }
}
