//! Carrying out a [`Change`] so that a crash at any point leaves the old file set or,
//! once recovered, the new one: stage every new file under `.ringops/staging/<n>`
//! (fsynced), commit `.ringops/journal.json`, then replay the journal (removals, empty
//! folders, renames, folder fsyncs, the new `managed.json`) and drop it. Replay is
//! idempotent, so [`recover`] simply replays a journal it finds; without a journal a
//! switch never got committed and leftover staging is thrown away.

use super::check::Change;
use super::disk::{Blocked, Disk, Kind, folders, in_parallel};
use super::records::{self, Journal, Rename, STAGING, reserved};
use super::stat_cache::Stamp;
use super::{FileSpec, WorkerDirError};
use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where to stop a switch early, to simulate a crash in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Stop {
    /// Run to the end.
    Never,
    /// After staging, before the journal is committed.
    AfterStaging,
    /// After the journal is committed, before anything is replayed.
    AfterJournal,
    /// After this many removals and renames.
    AfterOps(usize),
    /// After every removal and rename, before the new record is written.
    BeforeRecord,
}

/// Files a switch wrote, by worker-relative path, with their stamps as written.
pub(super) type Written = HashMap<String, Stamp>;

/// Stages the change's files, commits the journal and replays it; returns the files it
/// wrote. Staged files are written one by one, then flushed many at a time, all before
/// the journal is committed.
pub(super) fn switch(
    disk: &mut Disk,
    change: Change,
    stop: Stop,
) -> Result<Written, WorkerDirError> {
    if change.writes.is_empty() && change.deletions.is_empty() {
        records::write_managed(disk, &change.managed)?;
        return Ok(Written::new());
    }
    let reserved = reserved(disk);
    let staging = reserved.join(STAGING);
    match std::fs::create_dir(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(disk.err(&staging, e)),
    }
    let numbered: Vec<(u64, &str, &FileSpec)> = (0u64..)
        .zip(&change.writes)
        .map(|(n, (path, spec))| (n, *path, *spec))
        .collect();
    let mut staged = Vec::with_capacity(numbered.len());
    let mut paths = Vec::with_capacity(numbered.len());
    for (n, _, spec) in &numbered {
        let path = staging.join(n.to_string());
        staged.push(disk.write_staged(&path, &spec.content, spec.mode)?);
        paths.push(path);
    }
    disk.sync_files(&paths)?;
    disk.sync_dir(&staging)?;
    disk.sync_dir(&reserved)?;
    let mut written = Written::with_capacity(change.writes.len());
    let mut renames = Vec::with_capacity(change.writes.len());
    for ((n, path, _), stamp) in numbered.iter().zip(staged) {
        renames.push(Rename {
            staged: *n,
            path: (*path).to_owned(),
        });
        written.extend(stamp.map(|s| ((*path).to_owned(), s)));
    }
    if stop == Stop::AfterStaging {
        return Ok(written);
    }
    let journal = Journal::new(change.deletions, change.links, renames, change.managed);
    records::write_journal(disk, &journal)?;
    if stop == Stop::AfterJournal {
        return Ok(written);
    }
    replay(disk, &journal, stop)?;
    Ok(written)
}

/// Finishes a committed switch, or throws away an uncommitted one; true when it
/// finished one (files changed).
pub(super) fn recover(disk: &mut Disk) -> Result<bool, WorkerDirError> {
    match records::read_journal(disk)? {
        Some(journal) => replay(disk, &journal, Stop::Never).map(|()| true),
        None => {
            let reserved = reserved(disk);
            remove_tree(disk, &reserved.join(STAGING))?;
            for tmp in ["journal.json.tmp", "managed.json.tmp"] {
                disk.remove_file_if_any(&reserved.join(tmp))?;
            }
            Ok(false)
        }
    }
}

/// Carries out a committed journal. Safe to run again after a crash at any point.
fn replay(disk: &mut Disk, journal: &Journal, stop: Stop) -> Result<(), WorkerDirError> {
    let mut dirty = BTreeSet::new();
    let mut ops = 0;
    disk.forget();
    unlink_all(disk, &journal.links, &mut dirty)?;
    for path in &journal.deletions {
        remove_managed(disk, path, &mut dirty)?;
        ops += 1;
        if stop == Stop::AfterOps(ops) {
            return Ok(());
        }
    }
    remove_empty_folders(disk, journal, &mut dirty)?;
    let staging = reserved(disk).join(STAGING);
    for rename in &journal.renames {
        let staged = staging.join(rename.staged.to_string());
        if disk.kind(&staged)? != Kind::Missing {
            rename_into_place(disk, &staged, &rename.path, &mut dirty)?;
        }
        ops += 1;
        if stop == Stop::AfterOps(ops) {
            return Ok(());
        }
    }
    // A folder removed after it changed is gone, and its parent is in `dirty` too.
    let dirty: Vec<PathBuf> = dirty.into_iter().collect();
    in_parallel(&dirty, |dir| match disk.sync_dir(dir) {
        Err(WorkerDirError::Io { source, .. })
            if matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        other => other,
    })?;
    if stop == Stop::BeforeRecord {
        return Ok(());
    }
    records::write_managed(disk, &journal.managed)?;
    let reserved = reserved(disk);
    disk.remove_file_if_any(&reserved.join(records::JOURNAL))?;
    disk.sync_dir(&reserved)?;
    remove_tree(disk, &staging)
}

/// Removes the symbolic links that stand where folders must go (the links only, never
/// what they point at), outermost first; one already gone or replaced is left as it is.
fn unlink_all(
    disk: &mut Disk,
    links: &[String],
    dirty: &mut BTreeSet<PathBuf>,
) -> Result<(), WorkerDirError> {
    for link in links {
        let outer_gone = !matches!(disk.blocked(link)?, Blocked::No);
        let path = disk.root.join(link);
        if outer_gone || disk.kind(&path)? != Kind::Symlink {
            continue;
        }
        std::fs::remove_file(&path).map_err(|e| disk.err(&path, e))?;
        dirty.insert(parent(&path));
        disk.forget();
    }
    Ok(())
}

/// Removes one managed file or link (never a folder, never through a link: a file
/// behind one is no longer ringops').
fn remove_managed(
    disk: &mut Disk,
    path: &str,
    dirty: &mut BTreeSet<PathBuf>,
) -> Result<(), WorkerDirError> {
    match disk.blocked(path)? {
        Blocked::No => {}
        Blocked::NotAFolder(_) | Blocked::Symlink(_) => return Ok(()),
    }
    let target = disk.root.join(path);
    if matches!(disk.kind(&target)?, Kind::Dir | Kind::Missing) {
        return Ok(());
    }
    if disk.remove_file_if_any(&target)? {
        dirty.insert(parent(&target));
    }
    Ok(())
}

/// Removes folders that removals emptied, deepest first, keeping every folder a managed
/// file of the new set lives in. A folder that still holds anything stays.
fn remove_empty_folders(
    disk: &mut Disk,
    journal: &Journal,
    dirty: &mut BTreeSet<PathBuf>,
) -> Result<(), WorkerDirError> {
    let needed: BTreeSet<&str> = journal
        .managed
        .files
        .keys()
        .flat_map(|p| folders(p))
        .collect();
    let mut emptied: Vec<&str> = journal
        .deletions
        .iter()
        .flat_map(|p| folders(p))
        .filter(|f| !needed.contains(f))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    emptied.sort_by_key(|f| std::cmp::Reverse(f.matches('/').count()));
    for folder in emptied {
        let path = disk.root.join(folder);
        if disk.blocked(folder)? != Blocked::No || disk.kind(&path)? != Kind::Dir {
            continue;
        }
        match std::fs::remove_dir(&path) {
            Ok(()) => {
                dirty.insert(parent(&path));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty | ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(disk.err(&path, e)),
        }
    }
    disk.forget();
    Ok(())
}

/// Renames a staged file over `path`, creating its folders; an empty folder standing at
/// `path` is removed first.
fn rename_into_place(
    disk: &mut Disk,
    staged: &Path,
    path: &str,
    dirty: &mut BTreeSet<PathBuf>,
) -> Result<(), WorkerDirError> {
    match disk.blocked(path)? {
        Blocked::No => {}
        Blocked::Symlink(link) => return Err(symlink(disk, path, link)),
        Blocked::NotAFolder(file) => {
            return Err(WorkerDirError::InTheWay {
                root: disk.root.to_owned(),
                path: path.to_owned(),
                what: format!("`{file}` is a file where a folder must go"),
            });
        }
    }
    if let Some((folder, _)) = path.rsplit_once('/') {
        disk.create_folders(folder, dirty)?;
    }
    let target = disk.root.join(path);
    if disk.kind(&target)? == Kind::Dir {
        std::fs::remove_dir(&target).map_err(|e| disk.err(&target, e))?;
    }
    std::fs::rename(staged, &target).map_err(|e| disk.err(&target, e))?;
    dirty.insert(parent(&target));
    Ok(())
}

fn remove_tree(disk: &Disk, path: &Path) -> Result<(), WorkerDirError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(disk.err(path, e)),
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn symlink(disk: &Disk, path: &str, link: &str) -> WorkerDirError {
    WorkerDirError::SymlinkInPath {
        root: disk.root.to_owned(),
        path: path.to_owned(),
        link: link.to_owned(),
    }
}
