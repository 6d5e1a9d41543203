//! Pure rendering of the deployment record for `history` (and what `history --prune`
//! hid), `show` and `status`, as text for people and as JSON (versioned by
//! `format_version`) for programs.
//!
//! Owns the shape of that output and the plain data `status` and `history --prune` hand
//! it ([`Status`], [`Pruned`]); it reads nothing itself: the CLI gathers the records,
//! worker inventories and the writer lock and converts them into these values.

use super::{plural, short};
use crate::model::deployment::{
    Deployment, DeploymentEvent, DeploymentId, DeploymentState, NO_CHANGES, Timestamp, Waiting,
    WorkerRecord, WrittenArtifact,
};
pub use crate::model::observed::{DriftedFile, WorkerSync};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

/// Version of the JSON documents of this module; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// What `text` prints when the state holds no deployment (of the ring asked for).
pub fn nothing_yet(ring: Option<&str>) -> String {
    match ring {
        Some(ring) => format!("no deployments of ring {ring} yet\n"),
        None => "no deployments yet\n".to_owned(),
    }
}

/// `history` as text: a header, then one line per deployment in the order given (newest
/// first), and a note when `more` deployments were left out by the limit.
pub fn history_text(deployments: &[Deployment], ring: Option<&str>, more: bool) -> String {
    if deployments.is_empty() {
        return nothing_yet(ring);
    }
    let mut out = deployments_table(deployments);
    if more {
        let _ = writeln!(
            out,
            "(the newest {} shown; --limit N shows more)",
            deployments.len()
        );
    }
    out
}

#[derive(Serialize)]
struct HistoryDocument<'d> {
    format_version: u32,
    deployments: &'d [Deployment],
}

/// `history` as JSON: `{"format_version":1,"deployments":[...]}` with every field.
pub fn history_json(deployments: &[Deployment]) -> String {
    pretty(&HistoryDocument {
        format_version: FORMAT_VERSION,
        deployments,
    })
}

/// One aligned line per deployment under a header, in the order given.
fn deployments_table(deployments: &[Deployment]) -> String {
    let header = [
        "ID", "RING", "STATE", "COMMIT", "ACTOR", "CREATED", "REASON",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for d in deployments {
        rows.push(vec![
            d.id.to_string(),
            d.ring.clone(),
            d.state.to_string(),
            short(&d.commit).to_owned(),
            one_line(&d.actor),
            d.created_at.to_string(),
            reason_cell(d),
        ]);
    }
    table(&rows, "")
}

/// A deployment's reason on one line, marked when it changed nothing on its workers.
fn reason_cell(d: &Deployment) -> String {
    match (d.unchanged, d.reason.trim().is_empty()) {
        (false, _) => one_line(&d.reason),
        (true, true) => format!("({NO_CHANGES})"),
        (true, false) => format!("{} ({NO_CHANGES})", one_line(&d.reason)),
    }
}

/// What `history --prune` hid from history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// The age asked for: records created longer ago than this were considered.
    pub older_than: Duration,
    /// The deployments hidden, oldest first, as recorded after pruning.
    pub deployments: Vec<Deployment>,
    /// How many drift events were hidden.
    pub drift_events: usize,
}

/// `history --prune` as text: what was hidden (a line per deployment) and that `show`
/// still finds it, or that nothing was old enough.
pub fn prune_text(pruned: &Pruned) -> String {
    let age = humantime::format_duration(pruned.older_than);
    let (n, drift) = (pruned.deployments.len(), pruned.drift_events);
    if n == 0 && drift == 0 {
        return format!(
            "nothing to prune: no finished deployment or drift event is older than {age}\n"
        );
    }
    let mut out = format!(
        "pruned from history: {n} {} and {drift} drift {} older than {age}\n",
        plural(n, "deployment", "deployments"),
        plural(drift, "event", "events"),
    );
    if n > 0 {
        out.push_str(&deployments_table(&pruned.deployments));
        out.push_str("(kept for audit: `ringops show <id>` still shows them)\n");
    }
    out
}

#[derive(Serialize)]
struct PruneDocument<'p> {
    format_version: u32,
    older_than_seconds: u64,
    deployments: &'p [Deployment],
    drift_events: usize,
}

/// `history --prune` as JSON: `{"format_version":1,"older_than_seconds":2592000,
/// "deployments":[...],"drift_events":3}`; each deployment carries its `expires_at`.
pub fn prune_json(pruned: &Pruned) -> String {
    pretty(&PruneDocument {
        format_version: FORMAT_VERSION,
        older_than_seconds: pruned.older_than.as_secs(),
        deployments: &pruned.deployments,
        drift_events: pruned.drift_events,
    })
}

/// Everything recorded about one deployment, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentRecord {
    /// The deployment.
    pub deployment: Deployment,
    /// Its events, oldest first.
    pub events: Vec<DeploymentEvent>,
    /// How each worker fared, by worker name.
    pub workers: Vec<WorkerRecord>,
    /// The artifacts it left on each worker, sorted by path.
    pub artifacts: BTreeMap<String, Vec<WrittenArtifact>>,
}

/// `show` as text: the record's fields, its events with times, then per worker the
/// outcome and the artifacts written.
pub fn show_text(record: &DeploymentRecord) -> String {
    let d = &record.deployment;
    let none = || "-".to_owned();
    let time = |t: Option<Timestamp>| t.map_or_else(none, |t| t.to_string());
    let fields = [
        ("ring", d.ring.clone()),
        ("state", d.state.to_string()),
        ("commit", d.commit.clone()),
        ("tree", d.tree.clone()),
        ("fingerprint", d.fingerprint.clone()),
        ("actor", d.actor.clone()),
        ("reason", one_line(&d.reason)),
        ("error", d.error.as_deref().map_or_else(none, one_line)),
        (
            "rollback of",
            d.rollback_of.map_or_else(none, |r| r.to_string()),
        ),
        ("created", d.created_at.to_string()),
        ("activated", time(d.activated_at)),
        ("finished", time(d.finished_at)),
    ];
    let mut out = format!("deployment {}\n", d.id);
    let rows: Vec<Vec<String>> = fields
        .into_iter()
        .map(|(k, v)| vec![format!("{k}:"), v])
        .collect();
    out.push_str(&table(&rows, "  "));
    if d.unchanged {
        let _ = writeln!(
            out,
            "  {NO_CHANGES}: the ring already had this desired state"
        );
    }
    if let Some(expires) = d.expires_at {
        let _ = writeln!(out, "  pruned from history at {expires}");
    }
    out.push_str("\nevents:\n");
    let events: Vec<Vec<String>> = record
        .events
        .iter()
        .map(|e| {
            let state = e.state.map_or_else(|| "note".to_owned(), |s| s.to_string());
            vec![e.at.to_string(), state, one_line(&e.message)]
        })
        .collect();
    out.push_str(&table(&events, "  "));
    out.push_str(&workers_text(record));
    out
}

/// The workers section of `show`: every worker with an outcome or artifacts.
fn workers_text(record: &DeploymentRecord) -> String {
    let outcomes: BTreeMap<&str, &WorkerRecord> = record
        .workers
        .iter()
        .map(|w| (w.worker.as_str(), w))
        .collect();
    let names: BTreeSet<&str> = outcomes
        .keys()
        .copied()
        .chain(record.artifacts.keys().map(String::as_str))
        .collect();
    if names.is_empty() {
        return "\nworkers: none recorded\n".to_owned();
    }
    let mut out = String::from("\nworkers:\n");
    for name in names {
        let artifacts = record.artifacts.get(name).map_or(&[][..], Vec::as_slice);
        let outcome = outcomes.get(name).map_or_else(
            || "no outcome recorded".to_owned(),
            |w| match w.message.as_str() {
                "" => w.outcome.to_string(),
                message => format!("{}: {}", w.outcome, one_line(message)),
            },
        );
        let count = artifacts.len();
        let files = plural(count, "artifact", "artifacts");
        let _ = writeln!(out, "  {name}  {outcome} ({count} {files})");
        let rows: Vec<Vec<String>> = artifacts
            .iter()
            .map(|a| {
                vec![
                    a.path.clone(),
                    short(&a.sha256).to_owned(),
                    format!("{:04o}", a.mode),
                ]
            })
            .collect();
        out.push_str(&table(&rows, "    "));
    }
    out
}

#[derive(Serialize)]
struct ShowDocument<'r> {
    format_version: u32,
    #[serde(flatten)]
    record: &'r DeploymentRecord,
}

/// `show` as JSON: `{"format_version":1,"deployment":{...},"events":[...],
/// "workers":[...],"artifacts":{"<worker>":[...]}}`.
pub fn show_json(record: &DeploymentRecord) -> String {
    pretty(&ShowDocument {
        format_version: FORMAT_VERSION,
        record,
    })
}

/// What `status` reports: every ring with deployments, and the writer lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Rings with at least one deployment, sorted by name.
    pub rings: Vec<RingStatus>,
    /// Whether a writer holds the state.
    pub writer: Writer,
}

/// One ring in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingStatus {
    /// The ring.
    pub ring: String,
    /// Its Active deployment, if any.
    pub active: Option<Deployment>,
    /// Its newest deployment when that is not the Active one (in progress or failed).
    pub latest: Option<Deployment>,
    /// The workers the Active deployment recorded, sorted by name.
    pub workers: Vec<WorkerStatus>,
    /// Set when a rollback pinned the ring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<crate::model::deployment::Pin>,
    /// What the newest deployment, unfinished, waits for (approvals, `--continue`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

impl RingStatus {
    /// A ring the tracked branch defines that was never deployed.
    pub fn never_deployed(ring: String) -> Self {
        RingStatus {
            ring,
            active: None,
            latest: None,
            workers: Vec::new(),
            pin: None,
            waiting: None,
        }
    }
}

/// One worker of the Active deployment and how its files compare with the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    /// The worker.
    pub worker: String,
    /// How its files compare.
    #[serde(flatten)]
    pub sync: WorkerSync,
}

/// The writer lock as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "lock", rename_all = "snake_case")]
pub enum Writer {
    /// Nobody writes.
    Free,
    /// A writer holds the lock; its name when the lock file gives one.
    Held {
        /// Process id.
        pid: Option<u32>,
        /// What it runs.
        command: Option<String>,
        /// Since when, RFC 3339 UTC.
        since: Option<String>,
    },
    /// The lock could not be checked.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// How many drifted files `status` text names per worker before summarizing.
const DRIFT_SHOWN: usize = 5;

/// `status` as text: per ring the Active deployment and each worker's sync, then the
/// writer lock.
pub fn status_text(status: &Status, ring: Option<&str>) -> String {
    let mut out = if status.rings.is_empty() {
        nothing_yet(ring)
    } else {
        String::new()
    };
    for r in &status.rings {
        out.push_str(&ring_text(r));
    }
    let writer = match &status.writer {
        Writer::Free => "free".to_owned(),
        Writer::Held {
            pid: Some(pid),
            command,
            since,
        } => format!(
            "held by pid {pid} running `{}` since {}",
            command.as_deref().unwrap_or("?"),
            since.as_deref().unwrap_or("?")
        ),
        Writer::Held { .. } => "held (holder not recorded yet)".to_owned(),
        Writer::Unknown { reason } => format!("unknown ({reason})"),
    };
    let _ = writeln!(out, "writer lock: {writer}");
    out
}

fn ring_text(r: &RingStatus) -> String {
    let mut out = match &r.active {
        Some(a) => format!(
            "ring {}: {} Active since {}, commit {}\n",
            r.ring,
            a.id,
            a.activated_at.unwrap_or(a.updated_at),
            short(&a.commit)
        ),
        None if r.latest.is_none() => format!("ring {}: never deployed\n", r.ring),
        None => format!("ring {}: no Active deployment\n", r.ring),
    };
    if let Some(p) = &r.pin {
        let _ = writeln!(
            out,
            "  pinned by rollback {} since {}: the daemon will not deploy {} again ({}); `ringops resume {}` lifts it",
            p.deployment,
            p.since,
            short(&p.commit),
            one_line(&p.reason),
            r.ring
        );
    }
    if let Some(l) = &r.latest {
        let _ = write!(out, "  latest: {} {} at {}", l.id, l.state, l.updated_at);
        match (&l.error, l.state, r.waiting) {
            (Some(e), DeploymentState::Failed, _) => {
                let _ = writeln!(out, ": {}", one_line(e));
            }
            (_, _, Some(waiting)) => {
                let _ = writeln!(out, ": {}", waiting_text(waiting, &r.ring, l.id));
            }
            _ => out.push('\n'),
        }
    }
    let rows: Vec<Vec<String>> = r
        .workers
        .iter()
        .map(|w| vec![w.worker.clone(), sync_text(&w.sync)])
        .collect();
    let lines = table(&rows, "  ");
    for (line, w) in lines.lines().zip(&r.workers) {
        let _ = writeln!(out, "{line}");
        if let WorkerSync::Drifted { drifted, .. } = &w.sync {
            out.push_str(&drifted_text(drifted, &r.ring));
        }
    }
    out
}

/// What an unfinished deployment waits for, and the command that moves it on.
fn waiting_text(waiting: Waiting, ring: &str, id: DeploymentId) -> String {
    let next = match waiting {
        Waiting::Approval => format!("`ringops approve {id}`"),
        Waiting::Continue => format!("`ringops promote {ring} --continue`"),
        Waiting::Paused => format!("`ringops resume {ring}`"),
        Waiting::Window | Waiting::Freeze => return waiting.describe().to_owned(),
    };
    format!("{}; {next}", waiting.describe())
}

/// The first few drifted files of a worker, one per line.
fn drifted_text(drifted: &[DriftedFile], ring: &str) -> String {
    let rows: Vec<Vec<String>> = drifted
        .iter()
        .take(DRIFT_SHOWN)
        .map(|f| vec![f.how.to_string(), f.path.clone()])
        .collect();
    let mut out = table(&rows, "      ");
    if drifted.len() > DRIFT_SHOWN {
        let _ = writeln!(
            out,
            "      and {} more (see `ringops plan --ring {ring}`)",
            drifted.len() - DRIFT_SHOWN
        );
    }
    out
}

fn sync_text(sync: &WorkerSync) -> String {
    match sync {
        WorkerSync::InSync { files } => {
            format!("in sync ({files} {})", plural(*files, "file", "files"))
        }
        WorkerSync::Drifted { drifted, .. } => format!(
            "drifted ({} {})",
            drifted.len(),
            plural(drifted.len(), "file", "files")
        ),
        WorkerSync::Waiting { deployment, files } => format!(
            "switched to {deployment} ({files} {}), waiting for the rollout to go on",
            plural(*files, "file", "files")
        ),
        WorkerSync::Unreachable { reason } => format!("unreachable ({})", one_line(reason)),
    }
}

#[derive(Serialize)]
struct StatusDocument<'s> {
    format_version: u32,
    #[serde(flatten)]
    status: &'s Status,
}

/// `status` as JSON: `{"format_version":1,"rings":[...],"writer":{"lock":"free"}}`.
pub fn status_json(status: &Status) -> String {
    pretty(&StatusDocument {
        format_version: FORMAT_VERSION,
        status,
    })
}

/// Rows as aligned columns, two spaces apart, each line starting with `indent`; the last
/// column is not padded.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Free text on one line: line breaks and tabs become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r', '\t'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn pretty(doc: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|e| {
        // Plain data with string keys always serializes; keep the output valid JSON anyway.
        format!("{{\"format_version\":{FORMAT_VERSION},\"error\":\"{e}\"}}")
    });
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
