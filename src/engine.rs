//! One pass of deploying a ring: observe its workers, plan against them, apply, record.
//! IO orchestration over the adapters; the decisions are the pure pipeline's.
//!
//! Only local directory workers (no `target`, or `dir:/abs/path`) are reachable so far;
//! the HTTP agent transport comes later.

use crate::adapters::objects::ObjectStore;
use crate::adapters::store::Store;
use crate::adapters::worker_dir::{Batch, FileSpec, OnDisk, WorkerDir};
use crate::model::deployment::{
    Deployment, DeploymentState, NewDeployment, WorkerOutcome, WrittenArtifact,
};
use crate::model::observed::{ManagedFile, ObservedState, ObservedWorker, PresentFile};
use crate::model::{DesiredState, WorkerState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Permission bits of every artifact for now.
pub const ARTIFACT_MODE: u32 = 0o644;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A worker cannot be reached by any transport this build has.
    #[error("worker {worker}: target `{target}` is not supported yet (only local directories)")]
    Unsupported {
        /// The worker.
        worker: String,
        /// Its target.
        target: String,
    },
    /// A worker directory could not be read or written.
    #[error("worker {worker}")]
    Worker {
        /// The worker.
        worker: String,
        /// The cause.
        #[source]
        source: crate::adapters::worker_dir::WorkerDirError,
    },
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    /// The object store failed.
    #[error(transparent)]
    Objects(#[from] crate::adapters::objects::ObjectError),
}

/// Where a worker's files live: `dir:/abs/path`, or `<state_dir>/workers/<worker>`.
pub fn worker_root(
    state_dir: &Path,
    worker: &str,
    state: &WorkerState,
) -> Result<PathBuf, EngineError> {
    match state.target.as_deref() {
        None => Ok(state_dir.join("workers").join(worker)),
        Some(t) => match t.strip_prefix("dir:") {
            Some(path) => Ok(PathBuf::from(path)),
            None => Err(EngineError::Unsupported {
                worker: worker.to_owned(),
                target: t.to_owned(),
            }),
        },
    }
}

/// Reads every worker of the desired state. What a plan may show of a file on disk:
/// the desired artifact's shown text when identical, the file itself when nothing
/// about the path is sensitive, otherwise a notice.
pub fn observe(state_dir: &Path, desired: &DesiredState) -> Result<ObservedState, EngineError> {
    let mut observed = ObservedState::default();
    for (name, state) in &desired.workers {
        let root = worker_root(state_dir, name, state)?;
        let dir = WorkerDir::new(&root);
        let inventory = dir.inventory().map_err(|source| EngineError::Worker {
            worker: name.clone(),
            source,
        })?;
        let mut worker = ObservedWorker::default();
        for (path, entry) in &inventory.managed {
            let record = ManagedFile {
                sha256: entry.record.sha256.clone(),
                deployment: entry.record.deployment.clone(),
            };
            worker.managed.insert(path.clone(), record);
            if let OnDisk::File { sha256, .. } = &entry.on_disk {
                let shown = shown_text(&root, path, sha256, state);
                let file = PresentFile {
                    sha256: sha256.clone(),
                    shown,
                };
                worker.present.insert(path.clone(), file);
            }
        }
        for path in inventory.unmanaged {
            if state.artifacts.contains_key(&path) {
                let shown = shown_text(&root, &path, "", state);
                let file = PresentFile {
                    sha256: String::new(),
                    shown,
                };
                worker.present.insert(path, file);
            } else {
                worker.unmanaged.push(path);
            }
        }
        observed.workers.insert(name.clone(), worker);
    }
    Ok(observed)
}

/// What applying `desired` would change on the ring's workers: the plan `plan` and
/// `apply` both show.
pub fn plan_ring(
    state_dir: &Path,
    desired: &DesiredState,
    input: crate::pipeline::plan::PlanInput,
) -> Result<crate::model::Plan, EngineError> {
    let observed = observe(state_dir, desired)?;
    Ok(crate::pipeline::drift::plan_observed(
        &observed, desired, input,
    ))
}

/// Text a plan may show for a file on a worker.
fn shown_text(root: &Path, path: &str, sha256: &str, state: &WorkerState) -> String {
    let desired = state.artifacts.get(path);
    if let Some(a) = desired.filter(|a| a.sha256 == sha256) {
        return a.display_text().to_owned();
    }
    if desired.is_some_and(|a| a.shown.is_some()) {
        return "(content on the worker not shown: this artifact holds sensitive values)\n"
            .to_owned();
    }
    match std::fs::read(root.join(path)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// What applying a ring did.
#[derive(Debug)]
pub struct Outcome {
    /// The recorded deployment, in its final state.
    pub deployment: Deployment,
    /// Workers whose files changed.
    pub changed: Vec<String>,
    /// The first failure, if any (the deployment is then Failed).
    pub failure: Option<String>,
}

/// Records a deployment of `desired` and switches every worker to it. A worker that
/// fails stops the rollout; workers already switched get the previous Active
/// deployment's artifacts back from the object store.
pub fn apply(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    desired: &DesiredState,
    new: NewDeployment,
) -> Result<Outcome, EngineError> {
    let previous = store.active(&desired.ring)?;
    let deployment = store.create_deployment(&new)?;
    let id = deployment.id;
    store.transition(id, DeploymentState::Building, "storing artifacts")?;
    let contents = desired
        .workers
        .values()
        .flat_map(|w| w.artifacts.values().map(|a| a.content.as_bytes()));
    objects.put_all(contents)?;
    store.transition(id, DeploymentState::Deploying, "switching workers")?;
    let mut switched = Vec::new();
    let mut changed = Vec::new();
    for (name, state) in &desired.workers {
        match switch(state_dir, name, state, &id.to_string()) {
            Ok(applied) => {
                let outcome = if applied.written.is_empty() && applied.removed.is_empty() {
                    WorkerOutcome::Unchanged
                } else {
                    changed.push(name.clone());
                    WorkerOutcome::Applied
                };
                let message = format!(
                    "{} written, {} removed, {} unchanged",
                    applied.written.len(),
                    applied.removed.len(),
                    applied.unchanged
                );
                store.record_worker(id, name, outcome, &message)?;
                store.record_artifacts(id, name, &written(state))?;
                switched.push(name.clone());
            }
            Err(e) => {
                let message = chain(&e);
                store.record_worker(id, name, WorkerOutcome::Failed, &message)?;
                let back = Restore {
                    failing: id,
                    previous: previous.as_ref(),
                    switched: &switched,
                };
                restore(store, objects, state_dir, desired, back)?;
                let failed = store.transition(id, DeploymentState::Failed, &message)?;
                return Ok(Outcome {
                    deployment: failed,
                    changed,
                    failure: Some(message),
                });
            }
        }
    }
    store.transition(id, DeploymentState::Validating, "every worker switched")?;
    let activation = store.activate(id, "active")?;
    Ok(Outcome {
        deployment: activation.deployment,
        changed,
        failure: None,
    })
}

fn switch(
    state_dir: &Path,
    name: &str,
    state: &WorkerState,
    deployment: &str,
) -> Result<crate::adapters::worker_dir::Applied, EngineError> {
    let root = worker_root(state_dir, name, state)?;
    let files = state
        .artifacts
        .iter()
        .map(|(path, a)| {
            let spec = FileSpec {
                content: a.content.as_bytes().into(),
                sha256: a.sha256.clone(),
                mode: ARTIFACT_MODE,
            };
            (path.clone(), spec)
        })
        .collect();
    let batch = Batch {
        deployment: deployment.to_owned(),
        expected_generation: None,
        files,
    };
    WorkerDir::new(root)
        .apply(&batch)
        .map_err(|source| EngineError::Worker {
            worker: name.to_owned(),
            source,
        })
}

fn written(state: &WorkerState) -> Vec<WrittenArtifact> {
    state
        .artifacts
        .iter()
        .map(|(path, a)| WrittenArtifact {
            path: path.clone(),
            sha256: a.sha256.clone(),
            mode: ARTIFACT_MODE,
        })
        .collect()
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// What to put back after a failed rollout.
struct Restore<'r> {
    failing: crate::model::deployment::DeploymentId,
    previous: Option<&'r Deployment>,
    switched: &'r [String],
}

/// Puts the previous Active deployment's artifacts back on the workers already switched
/// (or removes ringops' files where there was none), recording each as Restored.
fn restore(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    desired: &DesiredState,
    back: Restore,
) -> Result<(), EngineError> {
    let Restore {
        failing,
        previous,
        switched,
    } = back;
    let before: BTreeMap<String, Vec<WrittenArtifact>> = match previous {
        Some(p) => store.artifacts(p.id)?,
        None => BTreeMap::new(),
    };
    for name in switched {
        let Some(state) = desired.workers.get(name) else {
            continue;
        };
        let mut files = BTreeMap::new();
        for a in before.get(name).into_iter().flatten() {
            let bytes = objects.get(&a.sha256)?;
            files.insert(a.path.clone(), FileSpec::new(bytes, a.mode));
        }
        let batch = Batch {
            deployment: previous.map(|p| p.id.to_string()).unwrap_or_default(),
            expected_generation: None,
            files,
        };
        let root = worker_root(state_dir, name, state)?;
        let message = match WorkerDir::new(root).restore(&batch) {
            Ok(_) => "restored the previous active artifacts".to_owned(),
            Err(e) => format!("restore failed: {}", chain(&e)),
        };
        store.record_worker(failing, name, WorkerOutcome::Restored, &message)?;
    }
    Ok(())
}
