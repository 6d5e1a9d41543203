//! Snapshot and unit tests of the deployment-record rendering.

use super::*;
use crate::model::deployment::{DeploymentId, WorkerOutcome};
use crate::model::observed::Difference;

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
        unchanged: false,
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
            how: if n == 0 {
                Difference::Missing
            } else {
                Difference::Edited
            },
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
                waiting: None,
                pin: Some(crate::model::deployment::Pin {
                    ring: "dev".to_owned(),
                    commit: "c".repeat(40),
                    deployment: crate::model::deployment::DeploymentId(3),
                    reason: "bad release".to_owned(),
                    since: crate::model::deployment::Timestamp(1_700_000_000_000),
                }),
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
                pin: None,
                waiting: Some(crate::model::deployment::Waiting::Continue),
                workers: vec![WorkerStatus {
                    worker: "p1".to_owned(),
                    sync: WorkerSync::Waiting {
                        deployment: crate::model::deployment::DeploymentId(2),
                        files: 2,
                    },
                }],
            },
            RingStatus::never_deployed("edge".to_owned()),
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

fn pruned() -> Pruned {
    use DeploymentState::*;
    let mut deployments = vec![
        deployment(1, "dev", Superseded),
        deployment(2, "prod", Failed),
    ];
    for d in &mut deployments {
        d.expires_at = Some(at(86_400 * 40));
    }
    Pruned {
        older_than: std::time::Duration::from_secs(86_400 * 30),
        deployments,
        drift_events: 3,
    }
}

#[test]
fn prune_text_lists_what_was_hidden() {
    insta::assert_snapshot!("prune-text", prune_text(&pruned()));
}

#[test]
fn prune_json_has_the_hidden_records() {
    insta::assert_snapshot!("prune-json", prune_json(&pruned()));
}

#[test]
fn prune_text_says_when_nothing_or_only_drift_went() {
    let mut pruned = Pruned {
        older_than: std::time::Duration::from_secs(3600 * 36),
        deployments: vec![],
        drift_events: 0,
    };
    assert_eq!(
        prune_text(&pruned),
        "nothing to prune: no finished deployment or drift event is older than 1day 12h\n"
    );
    pruned.drift_events = 1;
    assert_eq!(
        prune_text(&pruned),
        "pruned from history: 0 deployments and 1 drift event older than 1day 12h\n"
    );
    let doc: serde_json::Value = serde_json::from_str(&prune_json(&pruned)).expect("JSON");
    assert_eq!(
        doc,
        serde_json::json!({"format_version": 1, "older_than_seconds": 129_600,
                           "deployments": [], "drift_events": 1})
    );
}
