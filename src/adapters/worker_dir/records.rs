//! The two records under `.ringops/`: `managed.json` (what ringops wrote) and
//! `journal.json` (a committed switch still to be carried out). Both are written whole
//! (temp file, fsync, rename, fsync folder) and their paths are checked when read, so a
//! hand-edited record cannot make ringops touch anything outside its job folders.

use super::disk::Disk;
use super::{WorkerDirError, path_problem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;

/// The record of managed files.
pub(super) const MANAGED: &str = "managed.json";
/// A switch that has been committed and must be carried out.
pub(super) const JOURNAL: &str = "journal.json";
/// Folder of new files waiting to be renamed into place.
pub(super) const STAGING: &str = "staging";
/// Lock file held while the directory is switched.
pub(super) const LOCK: &str = "lock";
/// The version of `managed.json` and `journal.json` this code writes.
const FORMAT: u32 = 1;

/// What `managed.json` says: every file ringops wrote and a generation counter that
/// grows with every change of the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    /// Record format, 1.
    #[serde(default = "format")]
    pub format: u32,
    /// Grows by one with every switch that changes a file or the record.
    pub generation: u64,
    /// Managed files by worker-relative path.
    pub files: BTreeMap<String, ManagedFile>,
}

impl Default for Managed {
    fn default() -> Self {
        Self {
            format: FORMAT,
            generation: 0,
            files: BTreeMap::new(),
        }
    }
}

fn format() -> u32 {
    FORMAT
}

/// One managed file as ringops wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedFile {
    /// Hex sha256 of the content written.
    pub sha256: String,
    /// Permission bits written, e.g. `0o644` (stored in decimal).
    pub mode: u32,
    /// The deployment that wrote this content.
    pub deployment: String,
}

/// A committed switch: removals, then renames from staging, then the new record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Journal {
    pub format: u32,
    /// Managed files to remove (pruned, or standing where a folder must go).
    pub deletions: Vec<String>,
    /// Symbolic links standing where a folder must go: removed (never followed) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Staged files to rename into place.
    pub renames: Vec<Rename>,
    /// `managed.json` once the switch is done.
    pub managed: Managed,
}

/// `.ringops/staging/<staged>` becomes `<path>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rename {
    pub staged: u64,
    pub path: String,
}

impl Journal {
    pub fn new(
        deletions: Vec<String>,
        links: Vec<String>,
        renames: Vec<Rename>,
        managed: Managed,
    ) -> Self {
        Self {
            format: FORMAT,
            deletions,
            links,
            renames,
            managed,
        }
    }
}

/// `<root>/.ringops`.
pub(super) fn reserved(disk: &Disk) -> PathBuf {
    disk.root.join(super::RESERVED)
}

/// Reads `managed.json`; a missing one is an empty record at generation 0.
pub(super) fn read_managed(disk: &Disk) -> Result<Managed, WorkerDirError> {
    let Some(managed) = read_json::<Managed>(disk, MANAGED)? else {
        return Ok(Managed::default());
    };
    check_managed(disk, MANAGED, &managed)?;
    Ok(managed)
}

/// Reads `journal.json`, if a switch is pending.
pub(super) fn read_journal(disk: &Disk) -> Result<Option<Journal>, WorkerDirError> {
    let Some(journal) = read_json::<Journal>(disk, JOURNAL)? else {
        return Ok(None);
    };
    check_managed(disk, JOURNAL, &journal.managed)?;
    let paths = journal
        .deletions
        .iter()
        .chain(journal.renames.iter().map(|r| &r.path));
    for path in paths {
        if let Some(problem) = path_problem(path) {
            return Err(corrupt(disk, JOURNAL, format!("path `{path}` {problem}")));
        }
    }
    if journal.format != FORMAT {
        return Err(corrupt(
            disk,
            JOURNAL,
            format!("unknown format {}", journal.format),
        ));
    }
    Ok(Some(journal))
}

/// Replaces `managed.json` as a whole.
pub(super) fn write_managed(disk: &Disk, managed: &Managed) -> Result<(), WorkerDirError> {
    write_json(disk, MANAGED, managed)
}

/// Commits a switch by writing `journal.json` as a whole.
pub(super) fn write_journal(disk: &Disk, journal: &Journal) -> Result<(), WorkerDirError> {
    write_json(disk, JOURNAL, journal)
}

fn check_managed(disk: &Disk, name: &str, managed: &Managed) -> Result<(), WorkerDirError> {
    if managed.format != FORMAT {
        return Err(corrupt(
            disk,
            name,
            format!("unknown format {}", managed.format),
        ));
    }
    for path in managed.files.keys() {
        if let Some(problem) = path_problem(path) {
            return Err(corrupt(disk, name, format!("path `{path}` {problem}")));
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(
    disk: &Disk,
    name: &str,
) -> Result<Option<T>, WorkerDirError> {
    let path = reserved(disk).join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => return Err(disk.err(&path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(disk, name, e.to_string()))
}

fn write_json<T: Serialize>(disk: &Disk, name: &str, value: &T) -> Result<(), WorkerDirError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| corrupt(disk, name, format!("cannot encode: {e}")))?;
    bytes.push(b'\n');
    disk.write_atomic(&reserved(disk), name, &bytes)
}

fn corrupt(disk: &Disk, name: &str, problem: String) -> WorkerDirError {
    WorkerDirError::Corrupt {
        root: disk.root.to_owned(),
        file: reserved(disk).join(name),
        problem,
    }
}
