//! How ringops reaches a worker: read what it holds, switch it to a new file set as a
//! whole, run its group's hooks around the switch. [`Link`] is the interface; a
//! worker's `target` picks the implementation ([`WorkerLink::for_target`]).
//!
//! Local directories (no target, or `dir:/abs/path`) and remote agents
//! (`https://host:port`, see [`http`]) sit behind the same interface. Every operation is async so that
//! many workers are reached at once; the local one runs its blocking IO on tokio's
//! blocking pool.
//!
//! A *link* reaches a worker; a *transport* is the manifest kind that carries a channel
//! between worker groups (`pipeline::channels`): two ideas, two names.

pub mod http;
mod local;

pub use http::HttpAgent;
pub use local::LocalDir;

use crate::adapters::worker_dir::{Applied, Batch, Inventory, WorkerDirError};
use crate::model::Target;
use crate::model::desired::WorkerHook;
use crate::model::manifest::DriftMode;
use std::future::Future;
use std::path::{Path, PathBuf};

/// Why an operation on a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The worker's target names a link this build does not have.
    #[error(
        "target `{target}` is not supported (local directories: `dir:/abs/path`; agents: `https://host:port`)"
    )]
    Unsupported {
        /// The target as written.
        target: String,
    },
    /// The worker directory refused or failed.
    #[error(transparent)]
    Dir(#[from] WorkerDirError),
    /// A hook failed; for `check`, nothing was switched.
    #[error("{0}")]
    Hook(String),
    /// A path given to clone is not one ringops may write or read.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing failed outside the worker directory's own checks.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A remote agent refused or failed.
    #[error(transparent)]
    Agent(#[from] http::AgentError),
    /// The blocking task died (a bug in ringops).
    #[error("the worker task stopped unexpectedly: {0}")]
    Task(String),
    /// The worker stayed unreachable for as long as the caller would wait.
    #[error("still unreachable after {attempts} attempts over {}: {source}", humantime::format_duration(*waited))]
    GaveUp {
        /// How many switches were sent.
        attempts: u32,
        /// How long the caller waited, rounded to the second.
        waited: std::time::Duration,
        /// The last attempt's failure.
        #[source]
        source: Box<LinkError>,
    },
}

impl LinkError {
    /// True when the user can fix it (a bad target, a path, a failing hook); false when
    /// something broke underneath.
    pub fn is_user_error(&self) -> bool {
        match self {
            LinkError::Unsupported { .. } | LinkError::Hook(_) | LinkError::Refused(_) => true,
            LinkError::Dir(e) => e.is_user_error(),
            LinkError::Agent(e) => e.is_user_error(),
            LinkError::Io { .. } | LinkError::Task(_) | LinkError::GaveUp { .. } => false,
        }
    }

    /// True when the worker did not answer: an agent that is down or too slow, which
    /// may come back (waiting for it can help).
    pub fn is_unreachable(&self) -> bool {
        match self {
            LinkError::Agent(e) => e.is_unreachable(),
            LinkError::GaveUp { .. } => true,
            _ => false,
        }
    }
}

/// What a switch runs around it, and what it tells the hooks.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Run on the complete new file set, staged, before the switch: a command for a
    /// local directory, a name for an agent (each link refuses the other kind).
    pub check: Option<WorkerHook>,
    /// Run after the switch, as `check`.
    pub reload: Option<WorkerHook>,
    /// The worker's name, given to hooks as `RINGOPS_WORKER`.
    pub worker: String,
    /// The ring, given as `RINGOPS_RING`.
    pub ring: String,
    /// Secret values a hook's output must never show.
    pub redact: Vec<String>,
}

/// Why a switch failed, and whether the worker was left switched.
#[derive(Debug)]
pub enum SwitchError {
    /// Nothing changed on the worker (a refused batch, a failed check).
    NotSwitched(LinkError),
    /// The new files are in place but the reload hook failed: the caller restores.
    ReloadFailed(LinkError),
}

impl SwitchError {
    /// The cause.
    pub fn error(&self) -> &LinkError {
        match self {
            SwitchError::NotSwitched(e) | SwitchError::ReloadFailed(e) => e,
        }
    }
}

/// The operations every link offers.
pub trait Link: Send + Sync {
    /// Where the worker is, as recorded with deployments (`dir:/abs/path`).
    fn location(&self) -> String;

    /// The record and what is really there.
    fn inventory(&self) -> impl Future<Output = Result<Inventory, LinkError>> + Send;

    /// The bytes at a worker-relative path, if it is a regular file.
    fn read(&self, path: &str) -> impl Future<Output = Result<Option<Vec<u8>>, LinkError>> + Send;

    /// Runs `check` on the staged set, switches to exactly the batch's files, then runs
    /// `reload`.
    fn switch(
        &self,
        batch: Batch,
        hooks: Hooks,
    ) -> impl Future<Output = Result<Applied, SwitchError>> + Send;

    /// Copies the managed file `from` to the new unmanaged path `to`.
    fn clone_file(
        &self,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
}

/// A worker's link, chosen by its target.
#[derive(Clone, Debug)]
pub enum WorkerLink {
    /// A directory on this host.
    Local(LocalDir),
    /// A `ringops agent` reached over HTTP(S).
    Http(HttpAgent),
}

impl WorkerLink {
    /// The link of a worker: no target → `<state_dir>/workers/<worker>`,
    /// `dir:/abs/path` → that directory.
    pub fn for_target(state_dir: &Path, worker: &str, target: Option<&Target>) -> Self {
        match target {
            None => Self::Local(LocalDir::new(state_dir.join("workers").join(worker))),
            Some(t) => Self::to(t),
        }
    }

    /// The link reaching `target`.
    pub fn to(target: &Target) -> Self {
        match target {
            Target::Dir { path } => Self::Local(LocalDir::new(PathBuf::from(path))),
            Target::Agent { url } => Self::Http(HttpAgent::new(url)),
        }
    }

    /// The same link, telling the worker the ring's drift mode with each switch:
    /// an agent heals hot edits itself (revert) or only records them (report). A local
    /// directory ignores it (the daemon heals it).
    pub fn with_drift(self, mode: DriftMode) -> Self {
        match self {
            Self::Http(t) => Self::Http(t.with_drift(mode)),
            local @ Self::Local(_) => local,
        }
    }

    /// The link of a recorded location (`dir:/abs/path`, `https://host:port`).
    pub fn from_location(location: &str) -> Result<Self, LinkError> {
        let target = location
            .parse::<Target>()
            .map_err(|_| LinkError::Unsupported {
                target: location.to_owned(),
            })?;
        Ok(Self::to(&target))
    }
}

impl Link for WorkerLink {
    fn location(&self) -> String {
        match self {
            Self::Local(t) => t.location(),
            Self::Http(t) => t.location(),
        }
    }

    async fn inventory(&self) -> Result<Inventory, LinkError> {
        match self {
            Self::Local(t) => t.inventory().await,
            Self::Http(t) => t.inventory().await,
        }
    }

    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, LinkError> {
        match self {
            Self::Local(t) => t.read(path).await,
            Self::Http(t) => t.read(path).await,
        }
    }

    async fn switch(&self, batch: Batch, hooks: Hooks) -> Result<Applied, SwitchError> {
        match self {
            Self::Local(t) => t.switch(batch, hooks).await,
            Self::Http(t) => t.switch(batch, hooks).await,
        }
    }

    async fn clone_file(&self, from: &str, to: &str) -> Result<(), LinkError> {
        match self {
            Self::Local(t) => t.clone_file(from, to).await,
            Self::Http(t) => t.clone_file(from, to).await,
        }
    }
}
