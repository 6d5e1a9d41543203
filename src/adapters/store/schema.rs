//! The state's schema: an append-only list of migrations, versioned with
//! `PRAGMA user_version` (cargo's habit). Migration `n` (1-based) takes the database from
//! version `n - 1` to `n`. Never edit or reorder a released migration; add a new one.

use rusqlite::{Connection, TransactionBehavior};

/// Every migration, oldest first. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: deployments, their events, worker outcomes and artifacts; drift events.
    "
    CREATE TABLE deployments (
        seq          INTEGER PRIMARY KEY,
        id           TEXT    NOT NULL UNIQUE,
        ring         TEXT    NOT NULL,
        commit_id    TEXT    NOT NULL,
        tree_id      TEXT    NOT NULL,
        fingerprint  TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('Queued', 'Building', 'Deploying',
                         'Validating', 'Active', 'Failed', 'RollingBack', 'RolledBack',
                         'Superseded')),
        actor        TEXT    NOT NULL,
        reason       TEXT    NOT NULL,
        error        TEXT,
        rollback_of  TEXT    REFERENCES deployments(id),
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        activated_at INTEGER,
        finished_at  INTEGER,
        expires_at   INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX deployments_one_active_per_ring ON deployments(ring)
        WHERE state = 'Active';
    CREATE INDEX deployments_by_ring ON deployments(ring, seq);

    CREATE TABLE deployment_events (
        seq        INTEGER PRIMARY KEY,
        deployment TEXT    NOT NULL REFERENCES deployments(id),
        at         INTEGER NOT NULL,
        kind       TEXT    NOT NULL CHECK (kind IN ('state', 'note')),
        state      TEXT,
        message    TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX deployment_events_by_deployment ON deployment_events(deployment, seq);

    CREATE TABLE deployment_workers (
        deployment TEXT    NOT NULL REFERENCES deployments(id),
        worker     TEXT    NOT NULL,
        outcome    TEXT    NOT NULL,
        message    TEXT    NOT NULL,
        at         INTEGER NOT NULL,
        PRIMARY KEY (deployment, worker)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE deployment_artifacts (
        deployment TEXT    NOT NULL REFERENCES deployments(id),
        worker     TEXT    NOT NULL,
        path       TEXT    NOT NULL,
        sha256     TEXT    NOT NULL,
        mode       INTEGER NOT NULL,
        PRIMARY KEY (deployment, worker, path)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE drift_events (
        seq        INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        ring       TEXT    NOT NULL,
        worker     TEXT    NOT NULL,
        path       TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        summary    TEXT    NOT NULL,
        expires_at INTEGER
    ) STRICT;
    CREATE INDEX drift_events_by_ring ON drift_events(ring, seq);
    ",
    // 2: artifact sets stored once and shared by every deployment that leaves a worker
    // with the same files; where each worker was and the hooks it ran.
    "
    CREATE TABLE artifact_sets (
        sha256 TEXT NOT NULL PRIMARY KEY,
        body   TEXT NOT NULL
    ) STRICT;

    CREATE TABLE deployment_sets (
        deployment   TEXT NOT NULL REFERENCES deployments(id),
        worker       TEXT NOT NULL,
        artifact_set TEXT NOT NULL REFERENCES artifact_sets(sha256),
        PRIMARY KEY (deployment, worker)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE deployment_placements (
        deployment TEXT NOT NULL REFERENCES deployments(id),
        worker     TEXT NOT NULL,
        location   TEXT NOT NULL,
        details    TEXT NOT NULL,
        PRIMARY KEY (deployment, worker)
    ) STRICT, WITHOUT ROWID;
    ",
    // 3: rings pinned by a rollback: the daemon does not deploy the pinned commit again.
    "
    CREATE TABLE ring_pins (
        ring       TEXT    NOT NULL PRIMARY KEY,
        commit_id  TEXT    NOT NULL,
        deployment TEXT    NOT NULL REFERENCES deployments(id),
        reason     TEXT    NOT NULL,
        since      INTEGER NOT NULL
    ) STRICT;
    ",
    // 4: gates: approvers' verdicts, what a gated rollout waits for, rings paused by hand.
    "
    CREATE TABLE approvals (
        seq         INTEGER PRIMARY KEY,
        deployment  TEXT    NOT NULL REFERENCES deployments(id),
        approver    TEXT    NOT NULL,
        verdict     TEXT    NOT NULL CHECK (verdict IN ('approved', 'rejected')),
        fingerprint TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX approvals_by_deployment ON approvals(deployment, seq);

    CREATE TABLE rollouts (
        deployment   TEXT    NOT NULL PRIMARY KEY REFERENCES deployments(id),
        waiting      TEXT    NOT NULL,
        emergency    INTEGER NOT NULL,
        batches_done INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE ring_pauses (
        ring   TEXT    NOT NULL PRIMARY KEY,
        reason TEXT    NOT NULL,
        since  INTEGER NOT NULL
    ) STRICT;
    ",
    // 5: a deployment that changed nothing on its ring's workers (its ring already had
    // its desired state; it carries a new commit on to the next ring).
    "
    ALTER TABLE deployments ADD COLUMN unchanged INTEGER NOT NULL DEFAULT 0
        CHECK (unchanged IN (0, 1));
    ",
];

/// The schema version this build writes.
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The database's schema version.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// True when the database has ringops' deployments table.
pub(super) fn has_deployments(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deployments')",
        [],
        |row| row.get(0),
    )
}

/// Brings the database up to [`latest`] in one write transaction, so two processes
/// opening a new state at once do not both migrate. Returns the version found inside the
/// transaction (the caller refuses a newer one before calling). An up-to-date database
/// takes no write lock, so opening never waits for another writer's transaction.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let before = version(conn)?;
    if before >= latest() {
        return Ok(before);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found < latest() {
        for sql in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", latest())?;
    }
    tx.commit()?;
    Ok(found)
}
