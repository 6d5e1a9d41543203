//! A new state's database, created whole: migrated in a temporary file in the state
//! folder, then linked into place under its name only if no other process put one
//! there first. So `ringops.db` is either missing or a complete ringops database, and
//! an empty or foreign file there is damage, never a new state.

use super::{Result, StoreError, io_error, schema};
use rusqlite::Connection;
use std::path::Path;

/// Creates the database `path` in `state_dir`. Another process creating it at the same
/// time is not an error: its database is kept and this one is discarded.
pub(super) fn create(state_dir: &Path, path: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".ringops.db.new-")
        .tempfile_in(state_dir)
        .map_err(|e| io_error(state_dir, e))?;
    migrate_into(tmp.path())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_error(tmp.path(), e))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_error(path, e.error)),
    }
    sync_dir(state_dir)
}

/// Brings the empty database file `path` to the latest schema, and closes it.
fn migrate_into(path: &Path) -> Result<()> {
    let err = |e| StoreError::sqlite(path, e);
    let mut conn = Connection::open(path).map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    schema::migrate(&mut conn).map_err(err)?;
    conn.close().map_err(|(_, e)| err(e))
}

/// Makes the new name durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}
