//! A worker's local directory: one folder per job, `<workflow>/<job>/<file>`, and
//! `.ringops/managed.json` listing every file ringops wrote (sha256, mode, deployment)
//! with a generation counter.
//!
//! Owns reading what a worker directory holds ([`WorkerDir::inventory`]) and switching
//! it to a new file set as a whole ([`WorkerDir::apply`]): every path and checksum is
//! checked before anything is written, new files are staged and a journal is committed
//! before any target changes, and the journal is replayed after a crash
//! ([`WorkerDir::recover`]), so a crash at any point leaves the old set or the new one,
//! never a torn file. Managed files missing from the new set are removed, and folders
//! left empty by that; files ringops never wrote are never touched; symbolic links
//! below the root are never followed.
//!
//! It may not touch anything outside its root, decide what a worker should hold (that is
//! the compiler's), or keep deployment history (that is the state store's). Callers
//! serialize writers with the state lock; a lock file under `.ringops/` guards the
//! directory as well, and [`WorkerDir::inventory`] takes no lock and writes nothing.

mod check;
mod disk;
mod error;
mod records;
mod refresh;
mod scan;
mod stat;
mod stat_cache;
mod switch;
#[cfg(test)]
mod tests;

pub(crate) use disk::in_parallel;
pub use error::WorkerDirError;
pub use records::ManagedFile;

use crate::model::desired::sha256_hex;
use crate::pipeline::checks::{artifact_path_problem, is_valid_name};
use disk::{Disk, Kind};
use serde::Serialize;
use stat_cache::StatCache;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switch::{Stop, Written};

/// What stands at a managed path when a folder on its way is a symbolic link (drift
/// reads "replaced by a symbolic link on its path").
pub const LINK_ON_PATH: &str = "a symbolic link on its path";

/// The folder ringops reserves inside every worker directory.
pub const RESERVED: &str = ".ringops";

/// One file of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// The bytes to write.
    pub content: Arc<[u8]>,
    /// Hex sha256 of `content`; apply refuses the batch if it does not match.
    pub sha256: String,
    /// Permission bits, at most `0o777`.
    pub mode: u32,
}

impl FileSpec {
    /// A file with `content` and `mode`, hashing the content.
    pub fn new(content: impl Into<Arc<[u8]>>, mode: u32) -> Self {
        let content = content.into();
        Self {
            sha256: sha256_hex(&content),
            content,
            mode,
        }
    }
}

/// The whole desired file set of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The deployment writing it, recorded with every file it writes.
    pub deployment: String,
    /// The generation the batch was planned against; apply refuses if the directory has
    /// moved on since. `None` applies whatever the directory holds.
    pub expected_generation: Option<u64>,
    /// Every file the worker should hold, by worker-relative path `<workflow>/<job>/<file>`.
    pub files: BTreeMap<String, FileSpec>,
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The generation the directory is at now.
    pub generation: u64,
    /// Files written (created, or replaced because content, mode or kind differed).
    pub written: Vec<String>,
    /// Managed files removed because the batch no longer holds them.
    pub removed: Vec<String>,
    /// Files of the batch that were already on disk as asked.
    pub unchanged: usize,
}

/// What stands on disk at a managed path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnDisk {
    /// A regular file.
    File {
        /// Hex sha256 of its content.
        sha256: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Nothing.
    Missing,
    /// Something ringops did not write there.
    NotAFile {
        /// What it is: "a folder", "a symbolic link", "a special file" or
        /// [`LINK_ON_PATH`].
        what: &'static str,
    },
}

/// A managed file: the record and what is really there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManagedEntry {
    /// What ringops wrote.
    pub record: ManagedFile,
    /// What is there now.
    pub on_disk: OnDisk,
}

impl ManagedEntry {
    /// True when the file on disk is what ringops wrote (content and mode).
    pub fn is_intact(&self) -> bool {
        matches!(&self.on_disk, OnDisk::File { sha256, mode }
            if *sha256 == self.record.sha256 && *mode == self.record.mode)
    }
}

/// What a worker directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The generation of `managed.json`.
    pub generation: u64,
    /// True when a switch was committed but not finished (another process is applying,
    /// or one crashed). `generation` and `managed` then describe the committed new set,
    /// which the next apply or recover completes.
    pub pending: bool,
    /// Every managed path, with what is on disk there.
    pub managed: BTreeMap<String, ManagedEntry>,
    /// Files (and links) outside `.ringops/` that ringops does not manage, sorted.
    pub unmanaged: Vec<String>,
}

impl Inventory {
    /// Managed files edited, missing or replaced by something else: drift.
    pub fn drifted(&self) -> impl Iterator<Item = (&String, &ManagedEntry)> {
        self.managed.iter().filter(|(_, e)| !e.is_intact())
    }
}

/// A worker directory on this host.
#[derive(Clone, Debug)]
pub struct WorkerDir {
    root: PathBuf,
}

impl WorkerDir {
    /// The worker directory at `root` (created by the first apply).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The worker directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refuses a root that is itself a symbolic link: everything under it would be
    /// written wherever the link points.
    fn refuse_linked_root(&self) -> Result<(), WorkerDirError> {
        match std::fs::symlink_metadata(&self.root) {
            Ok(meta) if meta.file_type().is_symlink() => Err(WorkerDirError::RootIsLink {
                root: self.root.clone(),
                target: std::fs::read_link(&self.root)
                    .map_or_else(|_| "?".to_owned(), |t| t.display().to_string()),
            }),
            _ => Ok(()),
        }
    }

    /// Replaces `.ringops/<name>` with `bytes` as a whole (temporary file, flush, rename,
    /// folder flush), creating `.ringops/` when needed: for records kept beside
    /// `managed.json`.
    pub fn write_record(&self, name: &str, bytes: &[u8]) -> Result<(), WorkerDirError> {
        self.refuse_linked_root()?;
        let disk = Disk::new(&self.root);
        let folder = records::reserved(&disk);
        std::fs::create_dir_all(&folder).map_err(|e| disk.err(&folder, e))?;
        disk.write_atomic(&folder, name, bytes)
    }

    /// The record and what is really on disk: for plans and drift. Takes no lock and
    /// writes nothing; a missing directory is empty at generation 0.
    ///
    /// Only files whose stat changed since ringops last saw them are hashed, and only
    /// folders whose stat changed are listed (see `.ringops/stat-cache`).
    pub fn inventory(&self) -> Result<Inventory, WorkerDirError> {
        self.refuse_linked_root()?;
        let mut disk = Disk::new(&self.root);
        let (managed, pending) = match records::read_journal(&disk)? {
            Some(journal) => (journal.managed, true),
            None => (records::read_managed(&disk)?, false),
        };
        let cache = StatCache::read(&disk);
        let tree = scan::walk(&mut disk, &cache, None)?;
        let paths = managed.files.keys().map(String::as_str);
        let observed = scan::observe_all(&mut disk, paths, &cache, None, &mut HashMap::new())?;
        let entries: BTreeMap<String, ManagedEntry> = managed
            .files
            .into_iter()
            .zip(observed)
            .map(|((path, record), on_disk)| (path, ManagedEntry { record, on_disk }))
            .collect();
        let mut unmanaged: Vec<String> = tree
            .files
            .into_iter()
            .filter(|p| !entries.contains_key(p))
            .collect();
        unmanaged.sort_unstable();
        Ok(Inventory {
            generation: managed.generation,
            pending,
            managed: entries,
            unmanaged,
        })
    }

    /// Switches the directory to exactly the batch's managed files: writes what differs,
    /// removes managed files the batch no longer holds (and folders that empties), and
    /// leaves unmanaged files alone. Refuses, writing nothing, a bad path, mode or
    /// checksum, a generation other than the expected one, a symbolic link on the way to
    /// any path, and an unmanaged file in the way. Finishes an interrupted switch first.
    pub fn apply(&self, batch: &Batch) -> Result<Applied, WorkerDirError> {
        self.apply_with(batch, Stop::Never)
    }

    /// Puts back an earlier batch: the same as [`WorkerDir::apply`], named for callers
    /// that undo a failed switch.
    pub fn restore(&self, previous: &Batch) -> Result<Applied, WorkerDirError> {
        self.apply(previous)
    }

    /// Finishes a switch interrupted by a crash, or throws away one that was never
    /// committed. Apply does this first; call it alone to settle a directory.
    pub fn recover(&self) -> Result<(), WorkerDirError> {
        self.refuse_linked_root()?;
        let mut disk = Disk::new(&self.root);
        if disk.kind(&self.root.join(RESERVED))? != Kind::Dir {
            return Ok(());
        }
        let _lock = self.lock(&disk)?;
        let replayed = switch::recover(&mut disk)?;
        stat_cache::remove_leftover(&disk)?;
        if replayed {
            // Best effort: the old cache stays true if a new one cannot be written.
            let managed = records::read_managed(&disk)?;
            let _ = refresh::rebuild(&mut disk, &managed);
        }
        Ok(())
    }

    /// Applies, stopping early where `stop` says, as a crash there would.
    #[cfg(test)]
    pub(crate) fn apply_until(&self, batch: &Batch, stop: Stop) -> Result<Applied, WorkerDirError> {
        self.apply_with(batch, stop)
    }

    fn apply_with(&self, batch: &Batch, stop: Stop) -> Result<Applied, WorkerDirError> {
        self.refuse_linked_root()?;
        let mut disk = Disk::new(&self.root);
        check::check_batch(&disk, batch)?;
        self.prepare(&disk)?;
        let _lock = self.lock(&disk)?;
        switch::recover(&mut disk)?;
        let current = records::read_managed(&disk)?;
        let begun = stat_cache::begin(&disk)?;
        let cache = StatCache::read(&disk);
        let mut learning = check::Learning {
            cache: &cache,
            boundary: Some(begun.1),
            learned: HashMap::new(),
        };
        let change = check::plan_change(&mut disk, &current, batch, &mut learning)?;
        let applied = Applied {
            generation: change.managed.generation,
            written: change.writes.iter().map(|(p, _)| (*p).to_owned()).collect(),
            removed: change.deletions.clone(),
            unchanged: change.unchanged,
        };
        let switched = !change.writes.is_empty() || !change.deletions.is_empty();
        let touched = match switched {
            true => refresh::folders_of(
                change
                    .writes
                    .iter()
                    .map(|(p, _)| *p)
                    .chain(change.deletions.iter().map(String::as_str)),
            ),
            false => std::collections::HashSet::new(),
        };
        let written = match change.is_empty(&current) {
            true => Written::new(),
            false => switch::switch(&mut disk, change, stop)?,
        };
        if stop == Stop::Never {
            let after = refresh::AfterApply {
                learned: learning.learned,
                old: cache,
                written: &written,
                switched,
                touched,
                batch,
                begun,
            };
            // Best effort: the old cache stays true if a new one cannot be written.
            let _ = refresh::after_apply(&mut disk, after);
        }
        Ok(applied)
    }

    /// Creates the root and `.ringops/` (private to the owner) when missing.
    fn prepare(&self, disk: &Disk) -> Result<(), WorkerDirError> {
        std::fs::create_dir_all(&self.root).map_err(|e| disk.err(&self.root, e))?;
        let reserved = self.root.join(RESERVED);
        match disk.kind(&reserved)? {
            Kind::Dir => Ok(()),
            Kind::Missing => {
                let mut builder = std::fs::DirBuilder::new();
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder
                    .create(&reserved)
                    .map_err(|e| disk.err(&reserved, e))?;
                disk.sync_dir(&self.root)
            }
            _ => Err(WorkerDirError::InTheWay {
                root: self.root.clone(),
                path: RESERVED.to_owned(),
                what: "it is not a folder (ringops keeps its records there)".to_owned(),
            }),
        }
    }

    /// Holds `.ringops/lock` for one switch; the kernel drops it if the process dies.
    fn lock(&self, disk: &Disk) -> Result<File, WorkerDirError> {
        let path = self.root.join(RESERVED).join(records::LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| disk.err(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => Err(WorkerDirError::Busy {
                root: self.root.clone(),
                lock: path,
            }),
            Err(TryLockError::Error(e)) => Err(disk.err(&path, e)),
        }
    }
}

/// Why a worker-relative path may not be managed: the artifact path rules, a workflow
/// folder name, and a job folder above every file.
fn path_problem(path: &str) -> Option<&'static str> {
    if let Some(problem) = artifact_path_problem(path) {
        return Some(problem);
    }
    let mut parts = path.split('/');
    if !parts.next().is_some_and(is_valid_name) {
        return Some("must start with a workflow name (lowercase letters, digits and `-`)");
    }
    if parts.count() < 2 {
        return Some("must be `<workflow>/<job>/<file>`");
    }
    None
}
