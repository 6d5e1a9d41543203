//! The deployment record: `<state_dir>/ringops.db`, SQLite in WAL mode. Owns the schema
//! (append-only migrations under `PRAGMA user_version`), the deployment lifecycle as
//! stored (one Active per ring, enforced by a partial unique index), worker outcomes, the
//! artifacts each deployment left on each worker, and drift events.
//!
//! [`Store`] is the one writer; hold [`crate::adapters::lock::WriterLock`] while using it.
//! [`StoreReader`] opens read-only for status and history and never blocks on the writer.
//! Time comes from a [`Clock`] so tests are deterministic. Artifact bytes live in
//! [`crate::adapters::objects`], not here. rusqlite blocks: async callers use
//! `spawn_blocking`.

pub mod compiled;
mod fresh;
pub mod gates;
pub mod memo;
mod read;
mod schema;
mod write;

use crate::model::deployment::{
    Deployment, DeploymentEvent, DeploymentId, DeploymentState, DriftEvent, Pin, Placement,
    Timestamp, WorkerRecord, WrittenArtifact,
};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use write::{Activation, INTERRUPTED, PruneReport, WorkerEntry};

/// File name of the database inside the state folder.
pub const DB_FILE: &str = "ringops.db";

/// How long a connection waits for another writer's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is empty, damaged, or not a ringops database.
    #[error(
        "{path} is not a readable ringops state database (empty, damaged, or not ringops' SQLite); move it aside (with any ringops.db-wal and ringops.db-shm beside it) to start a new state"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said, when it said something.
        source: Option<rusqlite::Error>,
    },
    /// The schema is newer than this build knows.
    #[error(
        "state {path} was written by a newer ringops (schema version {found}, this ringops knows up to {known}); upgrade ringops"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A read-only open found no state, or one a writer has not yet brought up to date.
    #[error(
        "no ringops state at {path} (schema version {found}, expected {known}); apply a ring first"
    )]
    NotReady {
        /// The database file.
        path: PathBuf,
        /// Its schema version (0 when missing).
        found: i64,
        /// The version this build expects.
        known: i64,
    },
    /// No deployment has this id.
    #[error("no deployment {0}")]
    NotFound(DeploymentId),
    /// The lifecycle does not allow this change.
    #[error("deployment {id} cannot go from {from} to {to}")]
    IllegalTransition {
        /// The deployment.
        id: DeploymentId,
        /// Its state.
        from: DeploymentState,
        /// The state asked for.
        to: DeploymentState,
    },
    /// Another process kept the database locked longer than the busy timeout.
    #[error("state {path} is busy: another ringops kept it locked; try again")]
    Busy {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A stored value this build does not understand.
    #[error("state {path} holds a value this ringops does not understand: {detail}")]
    BadValue {
        /// The database file.
        path: PathBuf,
        /// What and where.
        detail: String,
    },
    /// The disk holding the state is full: SQLite could not grow a file.
    #[error(
        "cannot use state {path}: the disk holding it is full (no space left on device); free some space and try again"
    )]
    NoSpace {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Any other database failure.
    #[error("cannot use state {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The state folder could not be created.
    #[error("cannot create state folder {path}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when trying again later may succeed (another process held the database).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }

    /// Classifies an SQLite error on the database at `path`.
    fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_owned();
        if out_of_space(&source) {
            return Self::NoSpace { path, source };
        }
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Self::Corrupt {
                path,
                source: Some(source),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Self::Busy { path, source }
            }
            _ => Self::Sqlite { path, source },
        }
    }
}

/// Result of state operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the store gets "now".
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that shows what it is told; for tests and replays.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(AtomicI64::new(at.0))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.set(self.now().plus(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// The writing side of the state. Hold the writer lock while using it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    clock: Arc<dyn Clock>,
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/ringops.db` with the system clock, and
    /// brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self> {
        Self::open_with_clock(state_dir, Arc::new(SystemClock))
    }

    /// Like [`Store::open`], reading time from `clock`.
    pub fn open_with_clock(state_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        if !path.try_exists().map_err(|e| io_error(state_dir, e))? {
            fresh::create(state_dir, &path)?;
        }
        let err = |e| StoreError::sqlite(&path, e);
        refuse_empty(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // Read the version before changing anything: a damaged, foreign or newer file is
        // left as is.
        let found = schema::version(&conn).map_err(err)?;
        refuse_newer(&path, found)?;
        refuse_foreign(&path, &conn, found)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        refuse_newer(&path, schema::migrate(&mut conn).map_err(err)?)?;
        Ok(Self { conn, path, clock })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A read-only view of the state for status and history. Never takes a write lock, so it
/// neither waits for nor blocks the writer (WAL).
#[derive(Debug)]
pub struct StoreReader {
    conn: Connection,
    path: PathBuf,
}

/// Whether SQLite failed for want of disk space: the database or journal could not
/// grow (`SQLITE_FULL`), or the write-ahead log's index file could not be made or grown.
fn out_of_space(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(failure, _) = e else {
        return false;
    };
    matches!(
        failure.extended_code,
        ffi::SQLITE_FULL | ffi::SQLITE_IOERR_SHMSIZE | ffi::SQLITE_IOERR_SHMOPEN
    )
}

impl StoreReader {
    /// Opens `<state_dir>/ringops.db` read-only. A missing state is
    /// [`StoreError::NotReady`].
    ///
    /// On a full disk, where the write-ahead log's shared index cannot be made, it reads
    /// with an index of its own in memory instead (SQLite's exclusive locking mode): the
    /// read-only commands keep working while nothing can be written.
    pub fn open(state_dir: &Path) -> Result<Self> {
        match Self::open_with(state_dir, false) {
            Err(StoreError::NoSpace { .. }) => Self::open_with(state_dir, true),
            other => other,
        }
    }

    fn open_with(state_dir: &Path, private_index: bool) -> Result<Self> {
        let path = state_dir.join(DB_FILE);
        let not_ready = |found| StoreError::NotReady {
            path: path.clone(),
            found,
            known: schema::latest(),
        };
        if !path.is_file() {
            return Err(not_ready(0));
        }
        refuse_empty(&path)?;
        let err = |e| StoreError::sqlite(&path, e);
        let access = match private_index {
            // SQLite takes its own index only on a connection that could write; nothing
            // is written (`query_only` below).
            true => OpenFlags::SQLITE_OPEN_READ_WRITE,
            false => OpenFlags::SQLITE_OPEN_READ_ONLY,
        };
        let conn = Connection::open_with_flags(&path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        if private_index {
            conn.pragma_update(None, "query_only", true).map_err(err)?;
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(err)?;
        }
        let found = schema::version(&conn).map_err(err)?;
        refuse_newer(&path, found)?;
        refuse_foreign(&path, &conn, found)?;
        if found < schema::latest() {
            return Err(not_ready(found));
        }
        conn.pragma_update(None, "query_only", true).map_err(err)?;
        Ok(Self { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses an empty database file: a fresh state is created whole ([`fresh::create`]),
/// so an empty one is damage (SQLite would take it for a new database).
fn refuse_empty(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|e| io_error(path, e))?
        .len();
    if len == 0 {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            source: None,
        });
    }
    Ok(())
}

/// Refuses an SQLite database that is not ringops': one with no schema version (a
/// ringops state has one from its creation on) or without the deployments table.
fn refuse_foreign(path: &Path, conn: &Connection, found: i64) -> Result<()> {
    let has_deployments =
        found > 0 && schema::has_deployments(conn).map_err(|e| StoreError::sqlite(path, e))?;
    if !has_deployments {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            source: None,
        });
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn refuse_newer(path: &Path, found: i64) -> Result<()> {
    if found > schema::latest() {
        return Err(StoreError::Newer {
            path: path.to_owned(),
            found,
            known: schema::latest(),
        });
    }
    Ok(())
}

/// Creates the state folder private to its owner: objects may hold secret values.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| StoreError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// The deployment each worker of a ring must match now, with the artifacts it
/// recorded for them: the Active deployment's, except on the workers that a rollout
/// under way (Deploying, stopped between batches: a paused canary) already switched,
/// which hold the rollout's.
#[derive(Clone, Debug, Default)]
pub struct Following {
    /// The Active deployment and the workers that still hold its files.
    pub active: Option<(Deployment, BTreeMap<String, Vec<WrittenArtifact>>)>,
    /// The rollout under way and the workers it switched.
    pub rollout: Option<(Deployment, BTreeMap<String, Vec<WrittenArtifact>>)>,
}

/// The read queries, the same on the writer and on a reader.
macro_rules! reads {
    ($ty:ty) => {
        impl $ty {
            /// One deployment, pruned or not.
            pub fn get(&self, id: DeploymentId) -> Result<Deployment> {
                read::get(&self.conn, &self.path, id)
            }

            /// The ring's Active deployment, if any.
            pub fn active(&self, ring: &str) -> Result<Option<Deployment>> {
                read::active(&self.conn, &self.path, ring)
            }

            /// Deployments, newest first, of one ring or all; pruned ones left out.
            pub fn history(&self, ring: Option<&str>, limit: usize) -> Result<Vec<Deployment>> {
                read::history(&self.conn, &self.path, ring, limit, false)
            }

            /// Like [`Self::history`], including pruned deployments (for audit).
            pub fn history_with_pruned(
                &self,
                ring: Option<&str>,
                limit: usize,
            ) -> Result<Vec<Deployment>> {
                read::history(&self.conn, &self.path, ring, limit, true)
            }

            /// The newest deployment of the ring that reached Active through its gates
            /// (a rollback does not): the commit its gates are trusted from.
            pub fn gated(&self, ring: &str) -> Result<Option<Deployment>> {
                read::gated(&self.conn, &self.path, ring)
            }

            /// The newest deployment of the ring that reached Active, is no longer Active
            /// and put other files, places or hooks than the Active one (those that
            /// changed nothing, carrying a commit on, are passed over): what a rollback
            /// goes back to.
            pub fn previous_success(&self, ring: &str) -> Result<Option<Deployment>> {
                read::previous_success(&self.conn, &self.path, ring)
            }

            /// A deployment's events, oldest first.
            pub fn events(&self, id: DeploymentId) -> Result<Vec<DeploymentEvent>> {
                read::events(&self.conn, &self.path, id)
            }

            /// A deployment's worker outcomes, by worker name.
            pub fn workers(&self, id: DeploymentId) -> Result<Vec<WorkerRecord>> {
                read::workers(&self.conn, &self.path, id)
            }

            /// The artifacts a deployment left on each worker, sorted by path.
            pub fn artifacts(
                &self,
                id: DeploymentId,
            ) -> Result<BTreeMap<String, Vec<WrittenArtifact>>> {
                read::artifacts(&self.conn, &self.path, id, None)
            }

            /// The artifacts a deployment left on one worker, sorted by path.
            pub fn worker_artifacts(
                &self,
                id: DeploymentId,
                worker: &str,
            ) -> Result<Vec<WrittenArtifact>> {
                let mut all = read::artifacts(&self.conn, &self.path, id, Some(worker))?;
                Ok(all.remove(worker).unwrap_or_default())
            }

            /// Where a deployment put each worker's files, by worker (none for
            /// deployments recorded before placements were).
            pub fn placements(&self, id: DeploymentId) -> Result<BTreeMap<String, Placement>> {
                read::placements(&self.conn, &self.path, id)
            }

            /// The ring's pin, if a rollback pinned it.
            pub fn pin(&self, ring: &str) -> Result<Option<Pin>> {
                read::pin(&self.conn, &self.path, ring)
            }

            /// The newest deployment of `commit` to `ring`, whatever its state.
            pub fn latest_of_commit(&self, ring: &str, commit: &str) -> Result<Option<Deployment>> {
                read::latest_of_commit(&self.conn, &self.path, ring, commit)
            }

            /// The ring's newest deployment when it is unfinished: Queued, or in
            /// progress (Building, Deploying, Validating, RollingBack).
            pub fn unfinished(&self, ring: &str) -> Result<Option<Deployment>> {
                let newest = self.history(Some(ring), 1)?.pop();
                Ok(newest.filter(|d| {
                    d.state == crate::model::deployment::DeploymentState::Queued
                        || d.state.is_in_progress()
                }))
            }

            /// What each worker of `ring` must hold now ([`Following`]).
            pub fn following(&self, ring: &str) -> Result<Following> {
                let active = self.active(ring)?;
                let rollout = self.unfinished(ring)?.filter(|d| {
                    d.state == crate::model::deployment::DeploymentState::Deploying
                        && active.as_ref().is_none_or(|a| a.id != d.id)
                });
                let switched = match &rollout {
                    Some(d) => self.artifacts(d.id)?,
                    None => BTreeMap::new(),
                };
                let mut kept = match &active {
                    Some(a) => self.artifacts(a.id)?,
                    None => BTreeMap::new(),
                };
                kept.retain(|worker, _| !switched.contains_key(worker));
                Ok(Following {
                    active: active.map(|d| (d, kept)),
                    rollout: rollout.map(|d| (d, switched)),
                })
            }

            /// Drift events, newest first, of one ring or all; pruned ones left out.
            pub fn drift_events(
                &self,
                ring: Option<&str>,
                limit: usize,
            ) -> Result<Vec<DriftEvent>> {
                read::drift_events(&self.conn, &self.path, ring, limit)
            }

            /// The names of every ring with a deployment, sorted.
            pub fn rings(&self) -> Result<Vec<String>> {
                read::rings(&self.conn, &self.path)
            }
        }
    };
}

reads!(Store);
reads!(StoreReader);

#[cfg(test)]
mod tests;
