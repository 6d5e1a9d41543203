//! What a rollout writes to each worker: a [`Target`] per worker, built from a compiled
//! desired state ([`targets_from_desired`]) or from a recorded deployment and the object
//! store ([`targets_from_record`], for rollback, restore and drift repair, which need no
//! repository).

use super::{Context, EngineError};
use crate::adapters::link::{Link, WorkerLink};
use crate::adapters::store::Store;
use crate::adapters::worker_dir::FileSpec;
use crate::model::deployment::{DeploymentId, Placement, WrittenArtifact};
use crate::model::manifest::DriftMode;
use crate::model::{DesiredState, WorkerState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const ARTIFACT_MODE: u32 = 0o644;

/// Permission bits of an artifact holding sensitive values: the owner's alone.
pub const SENSITIVE_MODE: u32 = 0o600;

fn mode_of(artifact: &crate::model::Artifact) -> u32 {
    if artifact.shown.is_some() {
        SENSITIVE_MODE
    } else {
        ARTIFACT_MODE
    }
}

/// The link of a worker of the desired state.
pub fn link(state_dir: &Path, worker: &str, state: &WorkerState) -> WorkerLink {
    WorkerLink::for_target(state_dir, worker, state.target.as_ref())
}

/// The link of a worker where a deployment put it; deployments recorded before
/// placements were only had workers under `<state_dir>/workers/`.
pub fn recorded_link(
    state_dir: &Path,
    worker: &str,
    placement: Option<&Placement>,
) -> Result<WorkerLink, EngineError> {
    match placement {
        Some(p) => WorkerLink::from_location(&p.location),
        None => Ok(WorkerLink::for_target(state_dir, worker, None)),
    }
    .map_err(|e| EngineError::worker(worker, e))
}

/// One worker of a rollout: how to reach it and everything it should hold.
#[derive(Clone, Debug)]
pub struct Target {
    /// The worker.
    pub name: String,
    /// How it is reached.
    pub link: WorkerLink,
    /// Every file it should hold, by worker-relative path.
    pub files: BTreeMap<String, FileSpec>,
    /// Where it is and the hooks to run, as recorded.
    pub placement: Placement,
    /// Secret values its hooks' output must never show.
    pub redact: Vec<String>,
}

impl Target {
    pub(super) fn written(&self) -> Vec<WrittenArtifact> {
        self.files
            .iter()
            .map(|(path, f)| WrittenArtifact {
                path: path.clone(),
                sha256: f.sha256.clone(),
                mode: f.mode,
            })
            .collect()
    }
}

/// The rollout of a compiled desired state.
pub fn targets_from_desired(
    state_dir: &Path,
    desired: &DesiredState,
) -> Result<Vec<Target>, EngineError> {
    desired
        .workers
        .iter()
        .map(|(name, state)| {
            let link = link(state_dir, name, state);
            let files = state
                .artifacts
                .iter()
                .map(|(path, a)| {
                    let spec = FileSpec {
                        content: Arc::<[u8]>::from(Arc::clone(&a.content)),
                        sha256: a.sha256.clone(),
                        mode: mode_of(a),
                    };
                    (path.clone(), spec)
                })
                .collect();
            let placement = Placement {
                location: link.location(),
                check: state.check.clone(),
                reload: state.reload.clone(),
                sensitive: state
                    .artifacts
                    .iter()
                    .filter(|(_, a)| a.shown.is_some())
                    .map(|(p, _)| p.clone())
                    .collect(),
            };
            let mut redact: Vec<String> = state
                .artifacts
                .values()
                .flat_map(|a| a.sensitive.iter().cloned())
                .collect();
            redact.sort();
            redact.dedup();
            Ok(Target {
                name: name.clone(),
                link,
                files,
                placement,
                redact,
            })
        })
        .collect()
}

/// The rollout that puts back what a recorded deployment left on its workers, read
/// from the object store (no repository needed). Only `workers` when given.
pub fn targets_from_record(
    ctx: &Context,
    store: &Store,
    deployment: DeploymentId,
    workers: Option<&[String]>,
    redact: &[String],
) -> Result<Vec<Target>, EngineError> {
    let artifacts = store.artifacts(deployment)?;
    let placements = store.placements(deployment)?;
    let mut targets = Vec::new();
    for (name, written) in artifacts {
        if workers.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let placement = placements.get(&name);
        let link = recorded_link(&ctx.state_dir, &name, placement)?;
        let mut files = BTreeMap::new();
        for a in written {
            let bytes = ctx.objects.get(&a.sha256)?;
            files.insert(a.path, FileSpec::new(bytes, a.mode));
        }
        let placement = placement.cloned().unwrap_or_else(|| Placement {
            location: link.location(),
            ..Placement::default()
        });
        targets.push(Target {
            name,
            link,
            files,
            placement,
            redact: redact.to_vec(),
        });
    }
    Ok(targets)
}

/// The target, its link telling the worker the ring's drift mode with each switch
/// (an agent heals or only records hot edits by itself).
pub fn with_drift(target: Target, mode: DriftMode) -> Target {
    Target {
        link: target.link.with_drift(mode),
        ..target
    }
}
