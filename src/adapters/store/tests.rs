//! Tests that need the store's private connection: readers while a write transaction is
//! open, and values this build does not understand. The public behaviour is tested in
//! `tests/store.rs`.

use super::*;
use crate::model::deployment::NewDeployment;
use std::time::Instant;

fn new(ring: &str) -> NewDeployment {
    NewDeployment {
        ring: ring.to_owned(),
        commit: "c0ffee".to_owned(),
        tree: "7ree".to_owned(),
        fingerprint: "f1".to_owned(),
        actor: "alice".to_owned(),
        reason: "test".to_owned(),
        rollback_of: None,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
        1_700_000_000,
    )));
    let store = Store::open_with_clock(dir.path(), clock).expect("open");
    (dir, store)
}

#[test]
fn reader_does_not_wait_for_an_open_write_transaction() {
    let (dir, mut store) = store();
    let first = store.create_deployment(&new("dev")).expect("create");
    let reader = StoreReader::open(dir.path()).expect("reader");

    // The writer holds a write transaction with an uncommitted deployment.
    store.conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    store
        .conn
        .execute(
            "UPDATE deployments SET state = 'Building' WHERE id = ?1",
            [first.id.to_string()],
        )
        .expect("uncommitted write");

    let started = Instant::now();
    let seen = reader.get(first.id).expect("read during write");
    let history = reader.history(None, 10).expect("history during write");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "reader waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        seen.state,
        DeploymentState::Queued,
        "reader sees only committed data"
    );
    assert_eq!(history.len(), 1);

    // A second writer cannot start meanwhile; it waits, then reports Busy.
    let mut other = Store::open(dir.path()).expect("second writer opens");
    other
        .conn
        .busy_timeout(Duration::from_millis(50))
        .expect("short timeout");
    let err = other.create_deployment(&new("dev")).expect_err("busy");
    assert!(err.is_transient(), "{err:?}");

    store.conn.execute_batch("COMMIT").expect("commit");
    assert_eq!(
        reader.get(first.id).expect("read").state,
        DeploymentState::Building
    );
}

#[test]
fn reader_refuses_to_write() {
    let (dir, mut store) = store();
    store.create_deployment(&new("dev")).expect("create");
    let reader = StoreReader::open(dir.path()).expect("reader");
    let err = reader
        .conn
        .execute("DELETE FROM deployment_events", [])
        .expect_err("read-only");
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read"),
        "{err}"
    );
}

#[test]
fn unknown_stored_state_is_a_bad_value_not_a_panic() {
    let (_dir, mut store) = store();
    let d = store.create_deployment(&new("dev")).expect("create");
    // A newer build may add values; simulate one by dropping the CHECK via a rebuilt row.
    store
        .conn
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE deployments SET state = 'Paused';
             PRAGMA ignore_check_constraints = OFF;",
        )
        .expect("write unknown state");
    let err = store.get(d.id).expect_err("unknown state");
    assert!(matches!(err, StoreError::BadValue { .. }), "{err:?}");
    assert!(err.to_string().contains("Paused"), "{err}");
}

#[test]
fn busy_errors_are_transient_and_others_not() {
    let path = Path::new("/state/ringops.db");
    let busy =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
    assert!(StoreError::sqlite(path, busy).is_transient());
    let notadb = rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
        None,
    );
    assert!(matches!(
        StoreError::sqlite(path, notadb),
        StoreError::Corrupt { .. }
    ));
}
