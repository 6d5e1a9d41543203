//! The state adapters through their public API: the SQLite deployment record (schema,
//! lifecycle, one Active per ring, crash recovery, prune), with the object store and the
//! writer lock as the apply path will use them; and, through the binary, what a
//! damaged or foreign state file does to the commands.

mod common;

use DeploymentState::*;
use ringops::adapters::lock::WriterLock;
use ringops::adapters::objects::ObjectStore;
use ringops::adapters::store::gates::RolloutState;
use ringops::adapters::store::{DB_FILE, INTERRUPTED, ManualClock, Store, StoreError, StoreReader};
use ringops::model::deployment::{
    DeploymentId, DeploymentState, Drift, DriftKind, NewDeployment, Timestamp, Waiting,
    WorkerOutcome, WrittenArtifact,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);
const START: i64 = 1_700_000_000;

fn new(ring: &str, commit: &str) -> NewDeployment {
    NewDeployment {
        ring: ring.to_owned(),
        commit: commit.to_owned(),
        tree: format!("tree-{commit}"),
        fingerprint: format!("fp-{commit}"),
        actor: "alice".to_owned(),
        reason: format!("deploy {commit}"),
        rollback_of: None,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(START)));
    let store = Store::open_with_clock(dir.path(), clock.clone()).expect("open");
    Fixture { dir, clock, store }
}

/// Creates a deployment and walks it to `to` along the happy path.
fn deployment_in(store: &mut Store, ring: &str, commit: &str, to: DeploymentState) -> DeploymentId {
    let id = store
        .create_deployment(&new(ring, commit))
        .expect("create")
        .id;
    let path: &[DeploymentState] = match to {
        Queued => &[],
        Building => &[Building],
        Deploying => &[Building, Deploying],
        Validating => &[Building, Deploying, Validating],
        Active => &[Building, Deploying, Validating, Active],
        Failed => &[Building, Failed],
        RollingBack => &[Building, Deploying, RollingBack],
        RolledBack => &[Building, Deploying, RollingBack, RolledBack],
        Superseded => panic!("Superseded comes from activating another deployment"),
    };
    for state in path {
        store
            .transition(id, *state, &format!("to {state}"))
            .expect("transition");
    }
    id
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[test]
fn migrates_an_empty_folder_and_reopens_with_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_dir = dir.path().join("nested/.ringops");
    let id = {
        let mut store = Store::open(&state_dir).expect("open new");
        store
            .create_deployment(&new("dev", "c1"))
            .expect("create")
            .id
    };
    let db = state_dir.join(DB_FILE);
    assert_eq!(user_version(&db), 5);
    let mode: String = rusqlite::Connection::open(&db)
        .expect("raw")
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");

    let store = Store::open(&state_dir).expect("reopen");
    let d = store.get(id).expect("kept");
    assert_eq!(
        (d.ring.as_str(), d.commit.as_str(), d.state),
        ("dev", "c1", Queued)
    );
    assert_eq!(id.to_string(), "d-000001");
    assert_eq!(user_version(&db), 5, "reopening does not migrate again");
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let f = fixture();
    let db = f.dir.path().join(DB_FILE);
    drop(f.store);
    rusqlite::Connection::open(&db)
        .expect("raw")
        .pragma_update(None, "user_version", 99)
        .expect("bump");
    for err in [
        Store::open(f.dir.path()).expect_err("writer refuses"),
        StoreReader::open(f.dir.path()).expect_err("reader refuses"),
    ] {
        assert!(
            matches!(err, StoreError::Newer { found: 99, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("written by a newer ringops"), "{message}");
        assert!(message.contains(&db.display().to_string()), "{message}");
    }
    assert_eq!(user_version(&db), 99);
}

#[test]
fn corrupt_file_is_refused_naming_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE);
    let garbage = b"this is not an SQLite database, it is a note someone left here\n".repeat(100);
    std::fs::write(&db, &garbage).expect("write garbage");
    for err in [
        Store::open(dir.path()).expect_err("writer refuses"),
        StoreReader::open(dir.path()).expect_err("reader refuses"),
    ] {
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains(&db.display().to_string()), "{err}");
    }
    assert_eq!(
        std::fs::read(&db).expect("read"),
        garbage,
        "the file is left as it was"
    );
}

/// What may stand at `ringops.db` without being a ringops state: an empty file (SQLite
/// would take it for a new database), text, an SQLite database of something else, and
/// one with a schema version but none of ringops' tables.
fn not_a_state(db: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let sqlite = |sql: &str| {
        let _ = std::fs::remove_file(db);
        rusqlite::Connection::open(db)
            .expect("raw")
            .execute_batch(sql)
            .expect("foreign database");
        let bytes = std::fs::read(db).expect("read");
        std::fs::remove_file(db).expect("remove");
        bytes
    };
    vec![
        ("empty", Vec::new()),
        ("text", b"notes from the night shift\n".repeat(10)),
        ("foreign SQLite", sqlite("CREATE TABLE notes (body TEXT);")),
        (
            "versioned SQLite",
            sqlite("PRAGMA user_version = 3; CREATE TABLE notes (body TEXT);"),
        ),
    ]
}

/// Regression: an empty `ringops.db` was taken for a new state and migrated.
#[test]
fn an_empty_or_foreign_database_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE);
    for (what, bytes) in not_a_state(&db) {
        std::fs::write(&db, &bytes).expect("write");
        for err in [
            Store::open(dir.path()).expect_err("writer refuses"),
            StoreReader::open(dir.path()).expect_err("reader refuses"),
        ] {
            assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err:?}");
            assert!(err.to_string().contains("move it aside"), "{what}: {err}");
        }
        assert_eq!(
            std::fs::read(&db).expect("read"),
            bytes,
            "{what}: left as is"
        );
    }
}

/// `status` and `apply` refuse a state file that is not a ringops database with the
/// "move it aside" message, and change neither the file nor any worker.
#[test]
fn commands_refuse_a_state_file_that_is_not_a_ringops_database() {
    let fleet = common::Fleet::new();
    let db = fleet.state.path().join(DB_FILE);
    for (what, bytes) in not_a_state(&db) {
        std::fs::write(&db, &bytes).expect("write");
        for args in [
            &["status"][..],
            &["apply", "--ring", "dev", "--yes", "--reason", "r"][..],
        ] {
            let run = fleet.run(args);
            run.expect(2);
            let expected = format!(
                "{} is not a readable ringops state database (empty, damaged, or not ringops' SQLite); move it aside (with any ringops.db-wal and ringops.db-shm beside it) to start a new state",
                db.display()
            );
            assert!(
                run.stderr.contains(&expected),
                "{what} {args:?}: {}",
                run.stderr
            );
        }
        assert_eq!(
            std::fs::read(&db).expect("read"),
            bytes,
            "{what}: left as is"
        );
        assert!(
            !fleet.worker("core-dev-1").exists(),
            "{what}: no worker written"
        );
    }
}

/// A first `apply` creates the database whole: a complete ringops state, and no
/// temporary file left beside it.
#[test]
fn a_fresh_state_is_a_complete_database_with_nothing_left_beside_it() {
    let fleet = common::Fleet::new();
    fleet
        .run(&["apply", "--ring", "dev", "--yes", "--reason", "first"])
        .expect(0);
    let db = fleet.state.path().join(DB_FILE);
    assert!(user_version(&db) >= 4, "migrated");
    let names: Vec<String> = std::fs::read_dir(fleet.state.path())
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".ringops.db.new")),
        "{names:?}"
    );
    fleet.run(&["status"]).expect(0);
    StoreReader::open(fleet.state.path()).expect("a ringops state");
}

#[test]
fn reader_of_a_missing_state_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = StoreReader::open(dir.path()).expect_err("nothing there");
    assert!(
        matches!(err, StoreError::NotReady { found: 0, .. }),
        "{err:?}"
    );
    assert!(
        !dir.path().join(DB_FILE).exists(),
        "a reader creates nothing"
    );
}

#[test]
fn lifecycle_records_states_times_and_events() {
    let mut f = fixture();
    let id = f
        .store
        .create_deployment(&new("dev", "c1"))
        .expect("create")
        .id;
    for state in [Building, Deploying, Validating] {
        f.clock.advance(Duration::from_secs(10));
        f.store
            .transition(id, state, &format!("now {state}"))
            .expect("legal");
    }
    f.clock.advance(Duration::from_secs(10));
    let activation = f.store.activate(id, "healthy").expect("activate");
    assert_eq!(activation.superseded, None);
    let d = activation.deployment;
    let activated = Timestamp::from_unix_seconds(START + 40);
    assert_eq!(d.state, Active);
    assert_eq!(d.created_at, Timestamp::from_unix_seconds(START));
    assert_eq!(
        (d.updated_at, d.activated_at, d.finished_at),
        (activated, Some(activated), Some(activated))
    );
    assert_eq!(d.error, None);

    let events = f.store.events(id).expect("events");
    let states: Vec<_> = events.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            Some(Queued),
            Some(Building),
            Some(Deploying),
            Some(Validating),
            Some(Active)
        ]
    );
    assert_eq!(events[0].message, "queued by alice: deploy c1");
    assert_eq!(events[4].message, "healthy");
    f.store.note(id, "worker w1 reloaded").expect("note");
    let last = f.store.events(id).expect("events").pop().expect("note");
    assert_eq!(
        (last.state, last.message.as_str()),
        (None, "worker w1 reloaded")
    );
}

#[test]
fn illegal_transitions_are_typed_errors_and_change_nothing() {
    let mut f = fixture();
    let queued = deployment_in(&mut f.store, "dev", "c1", Queued);
    for to in [
        Deploying, Validating, Active, RolledBack, Superseded, Queued,
    ] {
        let err = f
            .store
            .transition(queued, to, "skip ahead")
            .expect_err("illegal");
        assert!(
            matches!(err, StoreError::IllegalTransition { from: Queued, to: t, .. } if t == to),
            "{err:?}"
        );
    }
    assert_eq!(
        f.store
            .transition(queued, Active, "x")
            .expect_err("illegal")
            .to_string(),
        "deployment d-000001 cannot go from Queued to Active"
    );
    assert_eq!(
        f.store.events(queued).expect("events").len(),
        1,
        "no event recorded"
    );

    let failed = deployment_in(&mut f.store, "dev", "c2", Failed);
    let active = deployment_in(&mut f.store, "dev", "c3", Active);
    for (id, to) in [
        (failed, Building),
        (failed, Failed),
        (active, Failed),
        (active, Building),
    ] {
        assert!(f.store.transition(id, to, "no").is_err(), "{id} → {to}");
    }
    let missing = DeploymentId(999);
    assert!(matches!(
        f.store.transition(missing, Building, "x"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(f.store.get(missing), Err(StoreError::NotFound(_))));
}

#[test]
fn failure_records_the_error() {
    let mut f = fixture();
    let id = deployment_in(&mut f.store, "dev", "c1", Deploying);
    let d = f
        .store
        .transition(id, Failed, "worker edge-1: disk full")
        .expect("fail");
    assert_eq!(d.error.as_deref(), Some("worker edge-1: disk full"));
    assert!(d.finished_at.is_some());
    assert_eq!(f.store.active("dev").expect("active"), None);
}

#[test]
fn rollback_states_and_rollback_deployments() {
    let mut f = fixture();
    let old = deployment_in(&mut f.store, "dev", "c1", Active);
    let bad = deployment_in(&mut f.store, "dev", "c2", Deploying);
    f.store
        .transition(bad, RollingBack, "worker edge-2 failed")
        .expect("rolling back");
    let d = f
        .store
        .transition(bad, RolledBack, "edge-1 restored")
        .expect("rolled back");
    assert_eq!((d.state, d.activated_at), (RolledBack, None));
    assert_eq!(
        f.store.active("dev").expect("active").map(|d| d.id),
        Some(old)
    );

    let mut back = new("dev", "c1");
    back.rollback_of = Some(old);
    let rollback = f
        .store
        .create_deployment(&back)
        .expect("rollback deployment");
    assert_eq!(rollback.rollback_of, Some(old));
    back.rollback_of = Some(DeploymentId(42));
    assert!(matches!(
        f.store.create_deployment(&back),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn two_active_in_one_ring_are_impossible() {
    let mut f = fixture();
    let a = deployment_in(&mut f.store, "dev", "c1", Active);
    let b = deployment_in(&mut f.store, "dev", "c2", Validating);
    deployment_in(&mut f.store, "prod", "c1", Active);
    let db = f.dir.path().join(DB_FILE);
    let conn = rusqlite::Connection::open(&db).expect("raw");
    let err = conn
        .execute(
            "UPDATE deployments SET state = 'Active' WHERE id = ?1",
            [b.to_string()],
        )
        .expect_err("the partial unique index refuses a second Active");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    let err = conn
        .execute(
            "INSERT INTO deployments (seq, id, ring, commit_id, tree_id, fingerprint, state, \
             actor, reason, created_at, updated_at) \
             VALUES (100, 'd-000100', 'dev', 'c', 't', 'f', 'Active', 'x', 'y', 0, 0)",
            [],
        )
        .expect_err("insert of a second Active");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert_eq!(
        f.store.active("dev").expect("active").map(|d| d.id),
        Some(a)
    );
}

#[test]
fn activate_supersedes_the_previous_active_atomically() {
    let mut f = fixture();
    let a = deployment_in(&mut f.store, "dev", "c1", Active);
    let other_ring = deployment_in(&mut f.store, "prod", "c1", Active);
    let b = deployment_in(&mut f.store, "dev", "c2", Validating);
    f.clock.advance(DAY);
    let activation = f.store.activate(b, "healthy").expect("activate");
    assert_eq!(activation.superseded, Some(a));
    let old = f.store.get(a).expect("old");
    assert_eq!((old.state, old.updated_at), (Superseded, f.clock_now()));
    let last = f.store.events(a).expect("events").pop().expect("event");
    assert_eq!(
        (last.state, last.message),
        (Some(Superseded), format!("superseded by {b}"))
    );
    assert_eq!(
        f.store.active("dev").expect("active").map(|d| d.id),
        Some(b)
    );
    assert_eq!(
        f.store.active("prod").expect("active").map(|d| d.id),
        Some(other_ring)
    );
    assert_eq!(
        f.store
            .previous_success("dev")
            .expect("previous")
            .map(|d| d.id),
        Some(a)
    );

    // A failing activation (not Validating) leaves the current Active alone.
    let c = deployment_in(&mut f.store, "dev", "c3", Deploying);
    assert!(f.store.activate(c, "too early").is_err());
    assert_eq!(
        f.store.active("dev").expect("active").map(|d| d.id),
        Some(b)
    );
    assert_eq!(f.store.get(b).expect("b").state, Active);
}

impl Fixture {
    fn clock_now(&self) -> Timestamp {
        use ringops::adapters::store::Clock;
        self.clock.now()
    }
}

#[test]
fn mark_interrupted_fails_work_left_in_progress() {
    let mut f = fixture();
    let queued = deployment_in(&mut f.store, "dev", "c0", Queued);
    let awaiting = deployment_in(&mut f.store, "prod", "c0", Queued);
    let waiting = RolloutState::running(false, 0).waiting_for(Waiting::Approval);
    f.store.set_rollout(awaiting, &waiting).expect("rollout");
    let building = deployment_in(&mut f.store, "dev", "c1", Building);
    let deploying = deployment_in(&mut f.store, "staging", "c1", Deploying);
    let validating = deployment_in(&mut f.store, "prod", "c1", Validating);
    let rolling = deployment_in(&mut f.store, "qa", "c1", RollingBack);
    let active = deployment_in(&mut f.store, "edge", "c1", Active);
    drop(f.store); // the "crash"

    let mut store = Store::open_with_clock(f.dir.path(), f.clock.clone()).expect("reopen");
    let failed = store.mark_interrupted().expect("mark");
    let ids: Vec<_> = failed.iter().map(|d| d.id).collect();
    assert_eq!(ids, [queued, building, deploying, validating, rolling]);
    for d in &failed {
        assert_eq!((d.state, d.error.as_deref()), (Failed, Some(INTERRUPTED)));
        let last = store.events(d.id).expect("events").pop().expect("event");
        assert_eq!(last.message, "interrupted: the process writing it stopped");
    }
    assert_eq!(store.get(awaiting).expect("awaiting").state, Queued);
    assert_eq!(store.get(active).expect("active").state, Active);
    assert!(store.mark_interrupted().expect("again").is_empty());
}

#[test]
fn prune_keeps_the_active_and_the_last_success_per_ring() {
    let mut f = fixture();
    let s1 = deployment_in(&mut f.store, "dev", "c1", Active);
    let s2 = deployment_in(&mut f.store, "dev", "c2", Active);
    let failed = deployment_in(&mut f.store, "dev", "c3", Failed);
    let s3 = deployment_in(&mut f.store, "dev", "c4", Active); // s1, s2 Superseded
    let rolled = deployment_in(&mut f.store, "dev", "c5", RolledBack);
    let stuck = deployment_in(&mut f.store, "dev", "c6", Queued);
    let prod_only = deployment_in(&mut f.store, "prod", "c1", Active);
    f.store
        .record_drift(&[Drift {
            ring: "dev".into(),
            worker: "w1".into(),
            path: "wf/job/run.sh".into(),
            kind: DriftKind::Edited,
            summary: "2 lines changed".into(),
        }])
        .expect("drift");

    f.clock.advance(30 * DAY);
    let recent_failure = deployment_in(&mut f.store, "dev", "c7", Failed);
    let report = f.store.prune(7 * DAY).expect("prune");
    assert_eq!(report.deployments, [s1, failed, rolled]);
    assert_eq!(report.drift_events, 1);

    let kept: Vec<_> = f
        .store
        .history(Some("dev"), 100)
        .expect("history")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(kept, [recent_failure, stuck, s3, s2]);
    let pruned = f.store.get(s1).expect("still there for audit");
    assert_eq!(pruned.expires_at, Some(f.clock_now()));
    assert_eq!(
        f.store
            .history_with_pruned(Some("dev"), 100)
            .expect("all")
            .len(),
        7
    );
    assert_eq!(
        f.store.active("prod").expect("prod").map(|d| d.id),
        Some(prod_only)
    );
    assert!(f.store.drift_events(None, 10).expect("drift").is_empty());

    // Pruning again changes nothing.
    assert_eq!(f.store.prune(7 * DAY).expect("again").deployments, []);
}

#[test]
fn history_is_newest_first_per_ring_or_all() {
    let mut f = fixture();
    let a = deployment_in(&mut f.store, "dev", "c1", Queued);
    let b = deployment_in(&mut f.store, "prod", "c1", Queued);
    let c = deployment_in(&mut f.store, "dev", "c2", Queued);
    let ids =
        |v: Vec<ringops::model::deployment::Deployment>| v.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(f.store.history(None, 10).expect("all")), [c, b, a]);
    assert_eq!(ids(f.store.history(Some("dev"), 10).expect("dev")), [c, a]);
    assert_eq!(ids(f.store.history(None, 2).expect("limit")), [c, b]);
    assert_eq!(f.store.rings().expect("rings"), ["dev", "prod"]);
}

#[test]
fn workers_and_artifacts_are_recorded_per_deployment() {
    let mut f = fixture();
    let id = deployment_in(&mut f.store, "dev", "c1", Deploying);
    let objects = ObjectStore::new(f.dir.path());
    let run = objects.put(b"#!/bin/sh\necho hi\n").expect("put");
    let conf = objects.put(b"port = 1\n").expect("put");
    let w1 = vec![
        WrittenArtifact {
            path: "wf/a/run.sh".into(),
            sha256: run.clone(),
            mode: 0o755,
        },
        WrittenArtifact {
            path: "wf/a/conf.toml".into(),
            sha256: conf.clone(),
            mode: 0o644,
        },
    ];
    f.store.record_artifacts(id, "w1", &w1).expect("record w1");
    f.store
        .record_artifacts(id, "w2", &w1[..1])
        .expect("record w2");
    // Recording a worker again replaces its set.
    f.store
        .record_artifacts(id, "w2", &w1[1..])
        .expect("replace w2");
    f.store
        .record_worker(id, "w1", WorkerOutcome::Applied, "")
        .expect("w1");
    f.store
        .record_worker(id, "w2", WorkerOutcome::Applied, "")
        .expect("w2");
    f.store
        .record_worker(id, "w2", WorkerOutcome::Restored, "reload failed; restored")
        .expect("w2 again");

    let all = f.store.artifacts(id).expect("artifacts");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["w1", "w2"]);
    assert_eq!(
        all["w1"]
            .iter()
            .map(|a| a.path.as_str())
            .collect::<Vec<_>>(),
        ["wf/a/conf.toml", "wf/a/run.sh"]
    );
    assert_eq!(all["w2"], w1[1..]);
    assert_eq!(f.store.worker_artifacts(id, "w1").expect("w1").len(), 2);
    assert!(
        f.store
            .worker_artifacts(id, "nobody")
            .expect("none")
            .is_empty()
    );
    for a in &all["w1"] {
        let bytes = objects.get(&a.sha256).expect("restorable from objects");
        assert!(!bytes.is_empty());
    }
    let workers = f.store.workers(id).expect("workers");
    assert_eq!(workers.len(), 2);
    assert_eq!(
        (workers[1].worker.as_str(), workers[1].outcome),
        ("w2", WorkerOutcome::Restored)
    );
    assert_eq!(workers[1].message, "reload failed; restored");
    assert!(matches!(
        f.store
            .record_worker(DeploymentId(9), "w1", WorkerOutcome::Failed, "x"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn drift_events_are_newest_first() {
    let mut f = fixture();
    let drift = |ring: &str, path: &str, kind| Drift {
        ring: ring.into(),
        worker: "w1".into(),
        path: path.into(),
        kind,
        summary: format!("{kind}"),
    };
    f.store
        .record_drift(&[
            drift("dev", "a", DriftKind::Edited),
            drift("prod", "b", DriftKind::Missing),
        ])
        .expect("first");
    f.clock.advance(Duration::from_secs(60));
    f.store
        .record_drift(&[drift("dev", "c", DriftKind::Extra)])
        .expect("second");
    let dev = f.store.drift_events(Some("dev"), 10).expect("dev");
    let paths: Vec<_> = dev.iter().map(|e| e.drift.path.as_str()).collect();
    assert_eq!(paths, ["c", "a"]);
    assert_eq!(dev[0].at, Timestamp::from_unix_seconds(START + 60));
    assert_eq!(dev[0].drift.kind, DriftKind::Extra);
    assert_eq!(f.store.drift_events(None, 10).expect("all").len(), 3);
}

#[test]
fn reader_sees_what_the_writer_committed() {
    let mut f = fixture();
    let reader = StoreReader::open(f.dir.path()).expect("reader");
    assert_eq!(reader.active("dev").expect("none yet"), None);
    let id = deployment_in(&mut f.store, "dev", "c1", Active);
    assert_eq!(
        reader.active("dev").expect("active").map(|d| d.id),
        Some(id)
    );
    assert_eq!(reader.events(id).expect("events").len(), 5);
    let json = serde_json::to_value(reader.get(id).expect("get")).expect("json");
    assert_eq!(json["id"], "d-000001");
    assert_eq!(json["state"], "Active");
    assert_eq!(json["created_at"], "2023-11-14T22:13:20.000Z");
}

#[test]
fn writers_take_the_lock_and_readers_do_not_need_it() {
    let f = fixture();
    let lock = WriterLock::acquire(f.dir.path(), "apply --ring dev", false).expect("lock");
    assert!(WriterLock::acquire(f.dir.path(), "rollback", false).is_err());
    StoreReader::open(f.dir.path())
        .expect("reader while locked")
        .history(None, 5)
        .expect("history");
    drop(lock);
}
