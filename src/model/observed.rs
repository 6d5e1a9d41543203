//! What is really on a ring's workers: the other side of a plan once ringops deploys.

use crate::model::deployment::DriftKind;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A file ringops wrote, as recorded in the worker's `managed.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFile {
    /// sha256 of what was written.
    pub sha256: String,
    /// The deployment that wrote it.
    pub deployment: String,
}

/// A file found on the worker at a managed or desired path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentFile {
    /// sha256 of the bytes on disk.
    pub sha256: String,
    /// What a plan may show of it: redacted or masked by the caller, never raw secrets.
    /// Empty when the file is the desired artifact at its path: a plan shows nothing of
    /// such a file.
    pub shown: String,
}

/// One worker's files, as its transport reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedWorker {
    /// `managed.json`: what ringops last wrote, by path.
    pub managed: BTreeMap<String, ManagedFile>,
    /// What is on disk at managed and desired paths, by path.
    pub present: BTreeMap<String, PresentFile>,
    /// Other files under the job folders, which ringops never touches.
    pub unmanaged: Vec<String>,
}

/// Every reachable worker of a ring as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedState {
    /// Workers by name.
    pub workers: BTreeMap<String, ObservedWorker>,
    /// Workers that could not be read, with the reason.
    pub unreachable: BTreeMap<String, String>,
    /// A digest of everything each readable worker reported: two reads with the same
    /// digest saw the same files (a saved plan's optimistic check).
    pub digests: BTreeMap<String, String>,
}

/// How a worker's files compare with a deployment's recorded artifacts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "sync", rename_all = "snake_case")]
pub enum WorkerSync {
    /// Every recorded artifact is on disk as written, and nothing more is managed.
    InSync {
        /// Number of artifacts checked.
        files: usize,
    },
    /// Some files differ from the record.
    Drifted {
        /// Number of artifacts checked.
        files: usize,
        /// The files that differ, sorted by path.
        drifted: Vec<DriftedFile>,
    },
    /// Switched by a rollout that waits between batches (a paused canary) and holding
    /// its files as that rollout recorded them: waiting for the rollout to go on.
    Waiting {
        /// The rollout's deployment.
        deployment: crate::model::deployment::DeploymentId,
        /// Number of artifacts checked.
        files: usize,
    },
    /// The worker's files could not be read.
    Unreachable {
        /// Why.
        reason: String,
    },
}

/// A file of a drifted worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DriftedFile {
    /// Worker-relative path.
    pub path: String,
    /// How it differs (shown and serialized as words: `edited`, `missing`, ...).
    pub how: Difference,
}

/// How a file on a worker differs from what a deployment recorded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Difference {
    /// Its content or mode changed.
    Edited,
    /// It is gone.
    Missing,
    /// Managed, but no longer part of the deployment.
    Extra,
    /// Present, but not recorded as written by ringops.
    Unmanaged,
    /// Something else stands at its path: `what` (a directory, a link).
    Replaced {
        /// What stands there.
        what: String,
    },
}

impl Difference {
    /// The kind recorded in the drift history.
    pub fn kind(&self) -> DriftKind {
        match self {
            Difference::Missing => DriftKind::Missing,
            Difference::Extra => DriftKind::Extra,
            Difference::Edited | Difference::Unmanaged | Difference::Replaced { .. } => {
                DriftKind::Edited
            }
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Edited => f.pad("edited"),
            Difference::Missing => f.pad("missing"),
            Difference::Extra => f.pad("extra"),
            Difference::Unmanaged => f.pad("unmanaged"),
            Difference::Replaced { what } => f.pad(&format!("replaced by {what}")),
        }
    }
}

impl Serialize for Difference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
