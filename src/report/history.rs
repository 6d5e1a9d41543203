//! Pure rendering of the deployment record for `history`, `show` and `status`, as text
//! for people and as JSON (versioned by `format_version`) for programs.
//!
//! Owns the shape of that output and the plain data `status` hands it ([`Status`]); it
//! reads nothing itself: the CLI gathers the records, worker inventories and the writer
//! lock and converts them into these values.

use super::{plural, short};
use crate::model::deployment::{
    Deployment, DeploymentEvent, DeploymentState, Timestamp, WorkerRecord, WrittenArtifact,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

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
            one_line(&d.reason),
        ]);
    }
    let mut out = table(&rows, "");
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

/// How a worker's files compare with the Active deployment's artifacts.
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
    /// How it differs: `edited`, `missing`, `extra`, `unmanaged`, or what replaced it.
    pub how: String,
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
        None => format!("ring {}: no Active deployment\n", r.ring),
    };
    if let Some(l) = &r.latest {
        let _ = write!(out, "  latest: {} {} at {}", l.id, l.state, l.updated_at);
        match (&l.error, l.state) {
            (Some(e), DeploymentState::Failed) => {
                let _ = writeln!(out, ": {}", one_line(e));
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

/// The first few drifted files of a worker, one per line.
fn drifted_text(drifted: &[DriftedFile], ring: &str) -> String {
    let rows: Vec<Vec<String>> = drifted
        .iter()
        .take(DRIFT_SHOWN)
        .map(|f| vec![f.how.clone(), f.path.clone()])
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
mod tests {
    use super::*;
    use crate::model::deployment::{DeploymentId, WorkerOutcome};

    const T0: i64 = 1_700_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(T0 + seconds)
    }

    fn deployment(seq: u64, ring: &str, state: DeploymentState) -> Deployment {
        let t = i64::try_from(seq).unwrap_or(0) * 60;
        let activated = matches!(state, DeploymentState::Active | DeploymentState::Superseded);
        Deployment {
            id: DeploymentId(seq),
            ring: ring.to_owned(),
            commit: format!("{seq:x}")
                .repeat(40)
                .get(..40)
                .unwrap_or("")
                .to_owned(),
            tree: "7d1c0ffee0ddba11".to_owned(),
            fingerprint: "f00d".repeat(16),
            state,
            actor: "alice".to_owned(),
            reason: format!("roll out change {seq}\nsecond line"),
            error: (state == DeploymentState::Failed)
                .then(|| "worker w2: permission denied".to_owned()),
            rollback_of: None,
            created_at: at(t),
            updated_at: at(t + 5),
            activated_at: activated.then(|| at(t + 4)),
            finished_at: (state != DeploymentState::Deploying).then(|| at(t + 4)),
            expires_at: None,
        }
    }

    fn artifact(path: &str, mode: u32) -> WrittenArtifact {
        WrittenArtifact {
            path: path.to_owned(),
            sha256: "ab12".repeat(16),
            mode,
        }
    }

    fn record() -> DeploymentRecord {
        let mut deployment = deployment(3, "dev", DeploymentState::Active);
        deployment.rollback_of = Some(DeploymentId(1));
        let event = |s: i64, state: Option<DeploymentState>, message: &str| DeploymentEvent {
            at: at(180 + s),
            state,
            message: message.to_owned(),
        };
        use DeploymentState::*;
        DeploymentRecord {
            deployment,
            events: vec![
                event(0, Some(Queued), "queued by alice: roll back"),
                event(1, Some(Building), "compiling"),
                event(2, Some(Deploying), "writing 2 workers"),
                event(3, None, "w1 unchanged"),
                event(3, Some(Validating), "switched"),
                event(4, Some(Active), "active; superseded d-000002"),
            ],
            workers: vec![
                WorkerRecord {
                    worker: "w1".to_owned(),
                    outcome: WorkerOutcome::Unchanged,
                    message: String::new(),
                    at: at(183),
                },
                WorkerRecord {
                    worker: "w2".to_owned(),
                    outcome: WorkerOutcome::Applied,
                    message: "1 written, 0 removed".to_owned(),
                    at: at(183),
                },
            ],
            artifacts: BTreeMap::from([
                ("w1".to_owned(), vec![artifact("etl/load/job.yaml", 0o644)]),
                (
                    "w2".to_owned(),
                    vec![
                        artifact("etl/extract/job.yaml", 0o644),
                        artifact("etl/extract/run.sh", 0o755),
                    ],
                ),
            ]),
        }
    }

    fn status() -> Status {
        let drifted = (0..7)
            .map(|n| DriftedFile {
                path: format!("etl/job-{n}/job.yaml"),
                how: if n == 0 { "missing" } else { "edited" }.to_owned(),
            })
            .collect();
        let mut latest = deployment(4, "dev", DeploymentState::Failed);
        latest.finished_at = Some(latest.updated_at);
        Status {
            rings: vec![
                RingStatus {
                    ring: "dev".to_owned(),
                    active: Some(deployment(3, "dev", DeploymentState::Active)),
                    latest: Some(latest),
                    workers: vec![
                        WorkerStatus {
                            worker: "w1".to_owned(),
                            sync: WorkerSync::InSync { files: 1 },
                        },
                        WorkerStatus {
                            worker: "w2".to_owned(),
                            sync: WorkerSync::Drifted { files: 9, drifted },
                        },
                        WorkerStatus {
                            worker: "w3-long-name".to_owned(),
                            sync: WorkerSync::Unreachable {
                                reason: "no worker directory at /state/workers/w3".to_owned(),
                            },
                        },
                    ],
                },
                RingStatus {
                    ring: "prod".to_owned(),
                    active: None,
                    latest: Some(deployment(2, "prod", DeploymentState::Deploying)),
                    workers: vec![],
                },
            ],
            writer: Writer::Held {
                pid: Some(4242),
                command: Some("apply --ring prod".to_owned()),
                since: Some("2023-11-14T22:20:00Z".to_owned()),
            },
        }
    }

    fn history() -> Vec<Deployment> {
        use DeploymentState::*;
        vec![
            deployment(4, "dev", Failed),
            deployment(3, "dev", Active),
            deployment(2, "prod", Deploying),
            deployment(1, "dev", Superseded),
        ]
    }

    #[test]
    fn history_text_is_one_aligned_line_per_deployment() {
        insta::assert_snapshot!("history-text", history_text(&history(), None, true));
    }

    #[test]
    fn history_json_has_every_field() {
        insta::assert_snapshot!("history-json", history_json(&history()[..2]));
    }

    #[test]
    fn empty_history_says_so() {
        assert_eq!(history_text(&[], None, false), "no deployments yet\n");
        assert_eq!(
            history_text(&[], Some("prod"), false),
            "no deployments of ring prod yet\n"
        );
        let doc: serde_json::Value = serde_json::from_str(&history_json(&[])).expect("valid JSON");
        assert_eq!(
            doc,
            serde_json::json!({"format_version": 1, "deployments": []})
        );
    }

    #[test]
    fn show_text_has_fields_events_and_workers() {
        insta::assert_snapshot!("show-text", show_text(&record()));
    }

    #[test]
    fn show_json_has_the_whole_record() {
        insta::assert_snapshot!("show-json", show_json(&record()));
    }

    #[test]
    fn show_text_of_a_failed_deployment_without_workers() {
        let record = DeploymentRecord {
            deployment: deployment(4, "dev", DeploymentState::Failed),
            events: vec![],
            workers: vec![],
            artifacts: BTreeMap::new(),
        };
        let text = show_text(&record);
        assert!(
            text.contains("  error:        worker w2: permission denied\n"),
            "{text}"
        );
        assert!(text.ends_with("\nworkers: none recorded\n"), "{text}");
    }

    #[test]
    fn status_text_shows_sync_drift_and_the_writer() {
        insta::assert_snapshot!("status-text", status_text(&status(), None));
    }

    #[test]
    fn status_json_tags_sync_and_lock() {
        insta::assert_snapshot!("status-json", status_json(&status()));
    }

    #[test]
    fn status_without_rings_still_shows_the_writer() {
        let status = Status {
            rings: vec![],
            writer: Writer::Free,
        };
        assert_eq!(
            status_text(&status, Some("dev")),
            "no deployments of ring dev yet\nwriter lock: free\n"
        );
    }

    #[test]
    fn free_text_stays_on_one_line() {
        assert_eq!(one_line("a\nb\r\n\tc"), "a b c");
        assert_eq!(table(&[vec!["x".into(), "".into()]], "  "), "  x\n");
    }
}
