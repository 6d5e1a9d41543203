//! Deciding and running deployments, over the adapters: observe a ring's workers, plan
//! against them, decide what its gates allow, switch its workers batch by batch, record.
//! The decisions on data are the pure pipeline's; this layer does the IO around them.
//!
//! - [`observe`](mod@observe): reading workers, and the plan against them.
//! - [`targets`]: what a rollout writes to each worker, from a compiled desired state
//!   or from a recorded deployment and the object store (rollback and drift repair).
//! - [`switch`]: switching workers several at a time, waiting for unreachable ones.
//! - [`deploy`]: the one deploy path, Building → Deploying (batches) → Validating →
//!   Active, with restore or revert on failure.
//! - [`gates`] and [`promotion`]: the gates in force for a ring, and what they say of a
//!   deployment now.
//!
//! Everything that runs is given a [`Context`]: no process-wide settings.

pub mod compile;
pub mod deploy;
pub mod gates;
pub mod health;
pub mod observe;
pub mod promotion;
mod restore;
pub mod switch;
pub mod sync;
pub mod targets;
pub mod waiting;

use crate::adapters::link::LinkError;
use crate::adapters::objects::ObjectStore;
use std::path::{Path, PathBuf};

pub use observe::{
    ReadAhead, SENSITIVE_NOTICE, inventories, inventory_digest, observe, observe_with, plan_ring,
    read_ahead,
};
pub use switch::{Switched, switch_all};
pub use targets::{Target, link, recorded_link, targets_from_desired, targets_from_record};

/// How many workers are read or switched at once unless configured.
pub const MAX_CONCURRENT_WORKERS: usize = 32;

/// What every engine operation runs with: where the state is, the object store, how
/// many workers at once, and the set of workers switches are waiting for.
#[derive(Clone, Debug)]
pub struct Context {
    /// The state folder (local workers live under it unless placed elsewhere).
    pub state_dir: PathBuf,
    /// Artifact bytes by sha256.
    pub objects: ObjectStore,
    /// How many workers are read or switched at once (at least 1).
    pub concurrency: usize,
    /// Workers a switch waits for now (the daemon's metrics show them unreachable).
    pub waiting: waiting::WaitingSet,
}

impl Context {
    /// A context for the state under `state_dir`, with the default concurrency.
    pub fn new(state_dir: &Path) -> Self {
        Context {
            state_dir: state_dir.to_owned(),
            objects: ObjectStore::new(state_dir),
            concurrency: MAX_CONCURRENT_WORKERS,
            waiting: waiting::WaitingSet::default(),
        }
    }

    /// The same context reading or switching `n` workers at once (at least 1).
    pub fn with_concurrency(self, n: usize) -> Self {
        Context {
            concurrency: n.max(1),
            ..self
        }
    }

    /// The same context noting waited-for workers in `waiting`.
    pub fn with_waiting(self, waiting: waiting::WaitingSet) -> Self {
        Context { waiting, ..self }
    }
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A worker could not be reached, read or written.
    #[error("worker {worker}")]
    Worker {
        /// The worker.
        worker: String,
        /// The cause.
        #[source]
        source: LinkError,
    },
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    /// The manifests could not be read from Git.
    #[error(transparent)]
    Source(#[from] crate::adapters::git::SourceError),
    /// The object store failed.
    #[error(transparent)]
    Objects(#[from] crate::adapters::objects::ObjectError),
    /// The ring is defined neither where it was last deployed through its gates nor at
    /// the tracked head, so there are no gates to trust.
    #[error(
        "ring `{ring}` has no trusted definition (not in the commit of its last gated deployment, nor at `{head}`)"
    )]
    Untrusted {
        /// The ring.
        ring: String,
        /// The tracked head.
        head: String,
    },
    /// A ring without a trusted definition would take a worker another ring runs.
    #[error(
        "ring `{ring}` is new and would take worker {worker}, which ring `{owner}` runs ({deployment}); promote it through `{owner}`'s gates or move the worker first"
    )]
    TakenWorker {
        /// The new ring.
        ring: String,
        /// The worker.
        worker: String,
        /// The ring that runs it.
        owner: String,
        /// Its Active deployment.
        deployment: crate::model::deployment::DeploymentId,
    },
    /// A promotion refused before anything was recorded.
    #[error(transparent)]
    Refused(#[from] promotion::intake::Refusal),
    /// The ring's trusted gates do not parse.
    #[error("ring `{ring}`'s gates cannot be used")]
    Gates {
        /// The ring.
        ring: String,
        /// Why.
        #[source]
        source: crate::pipeline::rollout::GateError,
    },
}

impl EngineError {
    fn worker(worker: &str, source: LinkError) -> Self {
        EngineError::Worker {
            worker: worker.to_owned(),
            source,
        }
    }

    /// True when the user can fix it (a bad target, a path, a failing hook).
    pub fn is_user_error(&self) -> bool {
        match self {
            EngineError::Worker { source, .. } => source.is_user_error(),
            EngineError::Source(e) => e.is_user_error(),
            EngineError::Untrusted { .. }
            | EngineError::TakenWorker { .. }
            | EngineError::Refused(_)
            | EngineError::Gates { .. } => true,
            _ => false,
        }
    }
}
