//! What is really on a ring's workers: the other side of a plan once ringops deploys.

use std::collections::BTreeMap;

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
