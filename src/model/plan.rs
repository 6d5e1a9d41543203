//! A plan: what would change on each worker of a ring, and why.

use serde::Serialize;

/// The revision on one side of a plan.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Revision {
    /// The revision as the user gave it (`HEAD~1`, a branch, a commit id).
    pub rev: String,
    /// The commit id it resolved to, when read from Git.
    pub commit: Option<String>,
}

/// What happens to one artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// A new artifact.
    Create,
    /// An artifact whose content changes.
    Update,
    /// An artifact that goes away.
    Delete,
}

impl ActionKind {
    /// The one-character marker used in text and markdown.
    pub fn marker(self) -> char {
        match self {
            ActionKind::Create => '+',
            ActionKind::Update => '~',
            ActionKind::Delete => '-',
        }
    }
}

/// One change to one artifact of one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Create, update or delete.
    #[serde(rename = "action")]
    pub kind: ActionKind,
    /// Worker-relative path.
    pub path: String,
    /// sha256 before, if the artifact existed.
    pub before_sha256: Option<String>,
    /// sha256 after, if the artifact remains.
    pub after_sha256: Option<String>,
    /// Unified diff (3 lines of context), sensitive lines masked; none for deletions.
    pub diff: Option<String>,
    /// Changed repository files behind the change (secrets by name only).
    pub why: Vec<String>,
    /// Set when the worker's file is not what ringops last wrote there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftKind>,
}

/// How a worker's file differs from what ringops last wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// A managed file was edited on the worker.
    Edited,
    /// A managed file was deleted on the worker.
    Missing,
    /// A file ringops never wrote stands where an artifact must go.
    Unmanaged,
}

impl DriftKind {
    /// The word used in reports.
    pub fn word(self) -> &'static str {
        match self {
            DriftKind::Edited => "edited on the worker",
            DriftKind::Missing => "deleted on the worker",
            DriftKind::Unmanaged => "an unmanaged file is in the way",
        }
    }
}

/// The changes to one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerPlan {
    /// Worker name.
    pub worker: String,
    /// Its changes, sorted by path.
    pub actions: Vec<Action>,
    /// Files under the worker's job folders that ringops never wrote: left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<String>,
}

/// A worker a plan could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    /// Worker name.
    pub worker: String,
    /// Why it could not be read.
    pub error: String,
}

/// Counts over a whole plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Artifacts created.
    pub create: usize,
    /// Artifacts updated.
    pub update: usize,
    /// Artifacts deleted.
    pub delete: usize,
    /// Workers with at least one change.
    pub workers_changed: usize,
    /// Workers of the ring with no change.
    pub workers_unchanged: usize,
}

impl PlanSummary {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.create + self.update + self.delete == 0
    }
}

/// What would change on each worker of a ring if `head` replaced `base`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Ring name.
    pub ring: String,
    /// Manifest folder relative to the repository root.
    pub path: String,
    /// The side being replaced; `None` when planning from nothing deployed.
    pub base: Option<Revision>,
    /// The side replacing it.
    pub head: Revision,
    /// Fingerprint of the head's desired state for the ring.
    pub fingerprint: String,
    /// Workers with changes, sorted by name.
    pub workers: Vec<WorkerPlan>,
    /// Workers that could not be read, so nothing is planned for them, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<Unreachable>,
    /// Counts.
    pub summary: PlanSummary,
}
