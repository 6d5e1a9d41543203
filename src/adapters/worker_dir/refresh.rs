//! Writing the next stat cache, under the directory's lock: after an apply (from what it
//! hashed and wrote) and after a recovery (from a fresh look). Best effort: a cache that
//! cannot be written leaves the old one, which stays true (see [`super::stat_cache`]).

use super::disk::Disk;
use super::records::Managed;
use super::scan;
use super::stat_cache::{self, Boundary, Stamp, StatCache};
use super::switch::Written;
use super::{Batch, WorkerDirError};
use std::collections::{HashMap, HashSet};
use std::fs::File;

/// What an apply knows when it is done, to write the next cache from.
pub(super) struct AfterApply<'a> {
    /// The cache the apply started with.
    pub old: StatCache,
    /// Files the apply hashed (stats read after the apply's first boundary).
    pub learned: HashMap<String, (Stamp, String)>,
    /// Files the switch wrote, with their stamps as written.
    pub written: &'a Written,
    /// Whether the switch changed anything on disk.
    pub switched: bool,
    /// Every folder on the way to a path the switch wrote or removed (`""` for the root).
    pub touched: HashSet<String>,
    /// The batch now applied.
    pub batch: &'a Batch,
    /// The temporary cache file and the boundary taken when it was made.
    pub begun: (File, Boundary),
}

/// Records the batch's files and every folder's listing. The folders the switch touched
/// (and any the old cache missed or the apply saw changed) are read anew; the others'
/// listings are carried over. Writes nothing when nothing changed and the old cache
/// already knows every file of the batch and every folder the apply looked at as it is.
pub(super) fn after_apply(disk: &mut Disk, a: AfterApply) -> Result<(), WorkerDirError> {
    if !a.switched && still_whole(disk, &a) {
        return Ok(());
    }
    let (tmp, boundary) = if a.switched {
        // Files and folders changed after the first boundary: stats read from here on
        // are guarded by a new one.
        drop(a.begun);
        stat_cache::begin(disk)?
    } else {
        a.begun
    };
    let StatCache {
        files: old_files,
        dirs: mut old_dirs,
    } = a.old;
    let tree = scan::carry_over(disk, &mut old_dirs, boundary, &a.touched)?;
    let mut next = StatCache {
        files: HashMap::with_capacity(a.batch.files.len()),
        dirs: tree.listings,
    };
    for (path, spec) in &a.batch.files {
        let entry = match a.written.get(path) {
            Some(as_written) => fresh_stamp(disk, path, as_written, boundary)?
                .map(|stamp| (stamp, spec.sha256.clone())),
            None => a.learned.get(path).or_else(|| old_files.get(path)).cloned(),
        };
        next.files.extend(entry.map(|e| (path.clone(), e)));
    }
    next.write(disk, tmp)
}

/// True when an apply that switched nothing leaves the old cache as good as a new one:
/// it hashed no file, the cache holds exactly the batch's files, and every folder the
/// apply looked at has a listing for the stamp it had.
fn still_whole(disk: &Disk, a: &AfterApply) -> bool {
    a.learned.is_empty()
        && a.old.files.len() == a.batch.files.len()
        && a.batch.files.keys().all(|p| a.old.files.contains_key(p))
        && disk
            .folder_stamps()
            .all(|(rel, stamp)| a.old.dirs.get(rel).is_some_and(|l| l.stamp == *stamp))
}

/// Every folder on the way to each path (`a` and `a/b` for `a/b/f`), and the root.
pub(super) fn folders_of<'p>(paths: impl IntoIterator<Item = &'p str>) -> HashSet<String> {
    let mut out = HashSet::from([String::new()]);
    for path in paths {
        out.extend(super::disk::folders(path).map(str::to_owned));
    }
    out
}

/// The stamp of a file this process just wrote, if it is still as written and not racy.
fn fresh_stamp(
    disk: &Disk,
    path: &str,
    as_written: &Stamp,
    boundary: Boundary,
) -> Result<Option<Stamp>, WorkerDirError> {
    let Some(stat) = disk.lstat_rel(path)? else {
        return Ok(None);
    };
    if !matches!(stat.kind, super::disk::Kind::File { .. }) {
        return Ok(None);
    }
    Ok(stat
        .stamp
        .filter(|s| s.same_content_as_written(as_written) && !s.is_racy(boundary)))
}

/// Rebuilds the cache from a fresh look at every managed file and folder, hashing the
/// files whose stat the old cache does not know.
pub(super) fn rebuild(disk: &mut Disk, managed: &Managed) -> Result<(), WorkerDirError> {
    let (tmp, boundary) = stat_cache::begin(disk)?;
    let old = StatCache::read(disk);
    let tree = scan::walk(disk, &old, Some(boundary))?;
    let mut learned = HashMap::new();
    let paths = managed.files.keys().map(String::as_str);
    scan::observe_all(disk, paths, &old, Some(boundary), &mut learned)?;
    let mut next = StatCache {
        files: HashMap::with_capacity(managed.files.len()),
        dirs: tree.listings,
    };
    for path in managed.files.keys() {
        let entry = learned
            .remove(path)
            .or_else(|| old.files.get(path).cloned());
        next.files.extend(entry.map(|e| (path.clone(), e)));
    }
    next.write(disk, tmp)
}
