//! One pass of the daemon, under the writer lock: deploy the tracked branch's newest
//! commit to the rings that auto-deploy and move on queued promotions (`deploy`), or
//! repair drift on the workers of every ring's Active deployment (`repair`). A
//! deployment that failed on a worker is tried again with backoff (`retry`). Each pass
//! takes the lock only for its own duration, so `ringops apply`, `rollback` and friends
//! interleave with the daemon.

mod deploy;
mod repair;
mod retry;

use crate::adapters::git::mirror::RepoLocation;
use crate::adapters::lock::{LockError, WriterLock};
use crate::engine::{self, waiting::WaitingSet};
use crate::model::deployment::{Deployment, Drift};
use crate::pipeline::policy::RingPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use deploy::gates_in_force;
pub use repair::watched_workers;
pub use retry::MAX_BACKOFF;

/// Where the daemon reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The repository: a folder, or a remote mirrored under the state folder.
    pub repo: RepoLocation,
    /// The manifests' folder inside it.
    pub path: String,
    /// The tracked branch (`None`: the repository's HEAD).
    pub branch: Option<String>,
    /// The state folder.
    pub state_dir: PathBuf,
}

impl Paths {
    /// The tracked branch as named (`HEAD` when none is set).
    pub fn rev(&self) -> &str {
        self.branch.as_deref().unwrap_or("HEAD")
    }
}

/// Why a pass failed (it is retried on the next trigger).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The repository could not be read.
    #[error(transparent)]
    Source(#[from] crate::adapters::git::SourceError),
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    /// The lock file failed.
    #[error(transparent)]
    Lock(LockError),
    /// Workers or objects failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// What a pass did, for logs, metrics and the first deployment's plan.
#[derive(Debug, Default)]
pub struct PassReport {
    /// The lock was held by someone else; nothing was done.
    pub busy: bool,
    /// The commit the tracked branch pointed at.
    pub commit: Option<String>,
    /// Deployments recorded, with the plan text that preceded each.
    pub deployments: Vec<(Deployment, String)>,
    /// Rings skipped because a rollback pinned them at this commit.
    pub pinned: Vec<String>,
    /// Drift found, and whether it was reverted.
    pub drift: Vec<(Drift, bool)>,
    /// Workers a drift pass read: ring, worker, and whether it was unreachable.
    pub reached: Vec<(String, String, bool)>,
}

/// The daemon's memory between passes.
#[derive(Debug)]
pub struct Reconciler {
    /// The last commit a deploy pass handled.
    pub last_commit: Option<String>,
    /// The latest ring policies (from the newest commit that had them).
    pub policies: BTreeMap<String, RingPolicy>,
    /// Drift already recorded for `drift: report` rings, so it is recorded once.
    reported: BTreeSet<(String, String, String)>,
    /// Rings whose deployment of the head failed on a worker: tried again later.
    retries: retry::Retries,
    /// The first retry's delay; each later one doubles it (plus jitter), up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// How many workers are read or switched at once.
    pub concurrency: usize,
    /// The workers switches wait for now (give it the metrics' set).
    pub waiting: WaitingSet,
}

impl Reconciler {
    /// A reconciler that retries a failed deployment after `backoff`, then twice as
    /// long each time.
    pub fn new(backoff: Duration) -> Self {
        Reconciler {
            last_commit: None,
            policies: BTreeMap::new(),
            reported: BTreeSet::new(),
            retries: retry::Retries::default(),
            backoff,
            concurrency: engine::MAX_CONCURRENT_WORKERS,
            waiting: WaitingSet::default(),
        }
    }

    /// When the next failed deployment is due to be tried again.
    pub fn next_retry(&self) -> Option<std::time::Instant> {
        self.retries.next_due()
    }

    /// What the engine runs with for a pass over the state under `state_dir`.
    fn engine(&self, state_dir: &Path) -> engine::Context {
        engine::Context::new(state_dir)
            .with_concurrency(self.concurrency)
            .with_waiting(self.waiting.clone())
    }
}

/// Takes the writer lock, or `None` when another writer holds it.
fn lock(state_dir: &Path, command: &str) -> Result<Option<WriterLock>, PassError> {
    match WriterLock::acquire(state_dir, command, false) {
        Ok(lock) => Ok(Some(lock)),
        Err(LockError::Held { .. }) => Ok(None),
        Err(e) => Err(PassError::Lock(e)),
    }
}
