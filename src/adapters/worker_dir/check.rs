//! Everything apply decides before it writes: that every path and checksum of a batch is
//! sound, and which files must be written, which removed, and what the new record is.
//! Reads the disk (never following a link below the root) but writes nothing.

use super::disk::{Blocked, Disk, Kind, folders};
use super::records::{Managed, ManagedFile};
use super::{Batch, FileSpec, WorkerDirError, path_problem};
use crate::model::desired::sha256_hex;
use std::collections::{BTreeMap, BTreeSet};

/// What one apply will do.
#[derive(Debug)]
pub(super) struct Change<'b> {
    /// Files to stage and rename into place, by worker-relative path.
    pub writes: Vec<(&'b str, &'b FileSpec)>,
    /// Managed files to remove.
    pub deletions: Vec<String>,
    /// The record once applied.
    pub managed: Managed,
    /// Files of the batch already on disk as asked.
    pub unchanged: usize,
}

impl Change<'_> {
    /// True when nothing at all (not even the record) changes.
    pub fn is_empty(&self, current: &Managed) -> bool {
        self.writes.is_empty() && self.deletions.is_empty() && self.managed == *current
    }
}

/// Checks that need no disk: paths, modes, checksums, and no artifact standing where
/// another needs a folder.
pub(super) fn check_batch(disk: &Disk, batch: &Batch) -> Result<(), WorkerDirError> {
    let root = disk.root.to_owned();
    for (path, spec) in &batch.files {
        if let Some(problem) = path_problem(path) {
            return Err(WorkerDirError::InvalidPath {
                root,
                path: path.clone(),
                problem: problem.to_owned(),
            });
        }
        if spec.mode & !0o777 != 0 {
            return Err(WorkerDirError::InvalidMode {
                root,
                path: path.clone(),
                mode: spec.mode,
            });
        }
        let actual = sha256_hex(&spec.content);
        if actual != spec.sha256 {
            return Err(WorkerDirError::ShaMismatch {
                root,
                path: path.clone(),
                expected: spec.sha256.clone(),
                actual,
            });
        }
        if let Some(file) = folders(path).find(|f| batch.files.contains_key(*f)) {
            return Err(WorkerDirError::Collision {
                root,
                path: path.clone(),
                file: file.to_owned(),
            });
        }
    }
    Ok(())
}

/// Compares a checked batch with the record and the disk.
pub(super) fn plan_change<'b>(
    disk: &mut Disk,
    current: &Managed,
    batch: &'b Batch,
) -> Result<Change<'b>, WorkerDirError> {
    if let Some(expected) = batch.expected_generation
        && expected != current.generation
    {
        return Err(WorkerDirError::GenerationMismatch {
            root: disk.root.to_owned(),
            expected,
            found: current.generation,
        });
    }
    let deletions: BTreeSet<String> = current
        .files
        .keys()
        .filter(|p| !batch.files.contains_key(*p))
        .cloned()
        .collect();
    for path in &deletions {
        if let Blocked::Symlink(link) = disk.blocked(path)? {
            return Err(symlink(disk, path, link));
        }
    }
    let mut writes = Vec::new();
    let mut files = BTreeMap::new();
    let mut unchanged = 0;
    for (path, spec) in &batch.files {
        let record = current.files.get(path);
        let write = needs_write(disk, path, spec, record.is_some(), &deletions)?;
        let keep = record.filter(|r| !write && r.sha256 == spec.sha256 && r.mode == spec.mode);
        let record = keep.cloned().unwrap_or_else(|| ManagedFile {
            sha256: spec.sha256.clone(),
            mode: spec.mode,
            deployment: batch.deployment.clone(),
        });
        files.insert(path.clone(), record);
        if write {
            writes.push((path.as_str(), spec));
        } else {
            unchanged += 1;
        }
    }
    let changed = !writes.is_empty() || !deletions.is_empty() || files != current.files;
    let generation = current.generation + u64::from(changed);
    Ok(Change {
        writes,
        deletions: deletions.into_iter().collect(),
        managed: Managed {
            generation,
            files,
            ..Managed::default()
        },
        unchanged,
    })
}

/// Whether `path` must be (re)written, refusing when something ringops does not manage
/// is in the way. `managed` says whether the record lists the path.
fn needs_write(
    disk: &mut Disk,
    path: &str,
    spec: &FileSpec,
    managed: bool,
    deletions: &BTreeSet<String>,
) -> Result<bool, WorkerDirError> {
    match disk.blocked(path)? {
        Blocked::No => {}
        Blocked::Symlink(link) => return Err(symlink(disk, path, link)),
        Blocked::NotAFolder(file) if deletions.contains(file) => return Ok(true),
        Blocked::NotAFolder(file) => {
            return Err(in_the_way(
                disk,
                path,
                format!("`{file}` is a file ringops does not manage, where a folder must go"),
            ));
        }
    }
    let target = disk.root.join(path);
    match disk.kind(&target)? {
        Kind::Missing => Ok(true),
        Kind::File { mode } => {
            let same = mode == spec.mode && disk.hash_file(&target)? == spec.sha256;
            if !same && !managed {
                let what = "an unmanaged file with other content or mode is there";
                return Err(in_the_way(disk, path, what.to_owned()));
            }
            Ok(!same)
        }
        Kind::Symlink | Kind::Other if managed => Ok(true),
        Kind::Symlink => Err(in_the_way(disk, path, "an unmanaged link is there".into())),
        Kind::Other => Err(in_the_way(
            disk,
            path,
            "an unmanaged special file is there".into(),
        )),
        Kind::Dir => {
            let mut inside = Vec::new();
            disk.files_under(path, &mut inside)?;
            match inside.iter().find(|f| !deletions.contains(*f)) {
                None => Ok(true),
                Some(other) => Err(in_the_way(
                    disk,
                    path,
                    format!("a folder is there, holding `{other}` which stays"),
                )),
            }
        }
    }
}

fn symlink(disk: &Disk, path: &str, link: &str) -> WorkerDirError {
    WorkerDirError::SymlinkInPath {
        root: disk.root.to_owned(),
        path: path.to_owned(),
        link: link.to_owned(),
    }
}

fn in_the_way(disk: &Disk, path: &str, what: String) -> WorkerDirError {
    WorkerDirError::InTheWay {
        root: disk.root.to_owned(),
        path: path.to_owned(),
        what,
    }
}
