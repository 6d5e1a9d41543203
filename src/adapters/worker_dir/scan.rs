//! Reading a worker directory with the help of the stat cache: walking its folders
//! (listing only those whose stat changed), looking at each managed path and hashing only
//! the files whose stat changed, several at a time. Never follows a symbolic link below
//! the root and writes nothing; what the walk saw can become the next cache.

use super::disk::{Blocked, Disk, Kind};
use super::stat_cache::{Boundary, Entry, Listing, Stamp, StatCache, storable};
use super::{OnDisk, RESERVED, WorkerDirError};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;

/// Every entry below the root that is not a real folder, and the folder listings a new
/// cache may hold.
#[derive(Debug, Default)]
pub(super) struct Tree {
    /// Files, links and special files, worker-relative, unsorted.
    pub files: Vec<String>,
    /// Listings read or confirmed after the boundary and not racy, by folder.
    pub listings: HashMap<String, Listing>,
}

/// Walks the folders below the root, skipping `.ringops/`, listing a folder only when the
/// cache has no listing for its exact stat; every real folder seen is taught to `disk`.
/// With a boundary, the listings a new cache may hold are kept.
pub(super) fn walk(
    disk: &mut Disk,
    cache: &StatCache,
    boundary: Option<Boundary>,
) -> Result<Tree, WorkerDirError> {
    walk_with(disk, cache, boundary, None)
}

/// Walks like [`walk`] to write a cache after an apply, moving the listing of each folder
/// the apply did not touch out of `old` without a stat (a stale listing is harmless: its
/// stamp no longer matches), unless the apply saw that folder with another stamp.
/// Touched folders, folders seen changed and folders `old` lacks are looked at and read.
pub(super) fn carry_over(
    disk: &mut Disk,
    old: &mut HashMap<String, Listing>,
    boundary: Boundary,
    touched: &HashSet<String>,
) -> Result<Tree, WorkerDirError> {
    walk_with(
        disk,
        &StatCache::default(),
        Some(boundary),
        Some((old, touched)),
    )
}

fn walk_with(
    disk: &mut Disk,
    cache: &StatCache,
    boundary: Option<Boundary>,
    mut carry: Option<(&mut HashMap<String, Listing>, &HashSet<String>)>,
) -> Result<Tree, WorkerDirError> {
    let mut tree = Tree::default();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let carried = match &mut carry {
            Some((old, touched)) => carried(disk, old, &rel, touched),
            None => None,
        };
        let (stamp, entries, carried) = match carried {
            Some(listing) => (Some(listing.stamp), Cow::Owned(listing.entries), true),
            None => match listing(disk, cache, &rel)? {
                Some((stamp, entries)) => (stamp, entries, false),
                None => continue,
            },
        };
        for (name, entry) in entries.iter() {
            if rel.is_empty() && name == RESERVED {
                continue;
            }
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if *entry == Entry::Dir {
                if !carried {
                    disk.learn(&child, Kind::Dir);
                }
                stack.push(child);
            } else {
                tree.files.push(child);
            }
        }
        let recordable = |s: &Stamp| carried || boundary.is_some_and(|b| !s.is_racy(b));
        if let Some(stamp) = stamp.filter(recordable)
            && entries.iter().all(|(name, _)| storable(name))
        {
            let entries = entries.into_owned();
            tree.listings.insert(rel, Listing { stamp, entries });
        }
    }
    Ok(tree)
}

/// The listing of folder `rel`, taken out of `old`, when it may be carried over
/// unchecked: not touched, and not seen by this pass with another stamp.
fn carried(
    disk: &Disk,
    old: &mut HashMap<String, Listing>,
    rel: &str,
    touched: &HashSet<String>,
) -> Option<Listing> {
    if touched.contains(rel) {
        return None;
    }
    let stamp = old.get(rel)?.stamp;
    match disk.folder_stamp(rel) {
        Some(seen) if *seen != stamp => None,
        _ => old.remove(rel),
    }
}

type Entries<'c> = Cow<'c, [(String, Entry)]>;

/// A folder's stamp and entries: from the cache when its stat is unchanged, else read.
/// `None` when it is gone (or is not a folder any more, below the root).
fn listing<'c>(
    disk: &Disk,
    cache: &'c StatCache,
    rel: &str,
) -> Result<Option<(Option<Stamp>, Entries<'c>)>, WorkerDirError> {
    let path = if rel.is_empty() {
        disk.root.to_owned()
    } else {
        disk.root.join(rel)
    };
    // The root itself may be reached through a link; nothing below it is.
    let stamp = if rel.is_empty() {
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Stamp::of(&meta),
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None);
            }
            Err(e) => return Err(disk.err(&path, e)),
        }
    } else {
        match disk.lstat_rel(rel)? {
            Some(stat) if stat.kind == Kind::Dir => stat.stamp,
            _ => return Ok(None),
        }
    };
    if let Some(entries) = stamp.and_then(|s| cache.listing(rel, &s)) {
        return Ok(Some((stamp, Cow::Borrowed(entries))));
    }
    let reader = match fs::read_dir(&path) {
        Ok(reader) => reader,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(disk.err(&path, e)),
    };
    let mut entries = Vec::new();
    for entry in reader {
        let entry = entry.map_err(|e| disk.err(&path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type().map_err(|e| disk.err(&entry.path(), e))?;
        entries.push((name, Entry::of(ft)));
    }
    Ok(Some((stamp, Cow::Owned(entries))))
}

/// What stands at a managed path, before any hashing.
#[derive(Debug)]
pub(super) enum Seen {
    /// A regular file with its permission bits and stamp.
    File { mode: u32, stamp: Option<Stamp> },
    /// Anything else, as the inventory reports it.
    Other(OnDisk),
}

/// Looks at a managed path without following a link and without reading the file.
pub(super) fn look(disk: &mut Disk, path: &str) -> Result<Seen, WorkerDirError> {
    match disk.blocked(path)? {
        Blocked::No => {}
        Blocked::NotAFolder(_) => return Ok(Seen::Other(OnDisk::Missing)),
        Blocked::Symlink(_) => {
            return Ok(Seen::Other(OnDisk::NotAFile {
                what: super::LINK_ON_PATH,
            }));
        }
    }
    let Some(stat) = disk.lstat_rel(path)? else {
        return Ok(Seen::Other(OnDisk::Missing));
    };
    Ok(match stat.kind {
        Kind::Missing => Seen::Other(OnDisk::Missing),
        Kind::File { mode } => Seen::File {
            mode,
            stamp: stat.stamp,
        },
        Kind::Dir => Seen::Other(OnDisk::NotAFile { what: "a folder" }),
        Kind::Symlink => Seen::Other(OnDisk::NotAFile {
            what: "a symbolic link",
        }),
        Kind::Other => Seen::Other(OnDisk::NotAFile {
            what: "a special file",
        }),
    })
}

/// Hex sha256 of each file, several at a time; `None` for a file that vanished.
pub(super) fn hash_all(disk: &Disk, paths: &[&str]) -> Result<Vec<Option<String>>, WorkerDirError> {
    paths
        .par_iter()
        .with_min_len(8)
        .map(|path| match disk.hash_file(&disk.root.join(path)) {
            Ok(sha) => Ok(Some(sha)),
            Err(WorkerDirError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// What each managed path holds, in order, hashing only files whose stamp the cache does
/// not know. With a boundary, the files hashed now and not racy are added to `learned`.
pub(super) fn observe_all<'p>(
    disk: &mut Disk,
    paths: impl IntoIterator<Item = &'p str>,
    cache: &StatCache,
    boundary: Option<Boundary>,
    learned: &mut HashMap<String, (Stamp, String)>,
) -> Result<Vec<OnDisk>, WorkerDirError> {
    let mut out = Vec::new();
    let mut misses = Vec::new();
    for path in paths {
        let on_disk = match look(disk, path)? {
            Seen::Other(on_disk) => on_disk,
            Seen::File { mode, stamp } => match stamp.as_ref().and_then(|s| cache.sha(path, s)) {
                Some(sha) => OnDisk::File {
                    sha256: sha.to_owned(),
                    mode,
                },
                None => {
                    misses.push((out.len(), path, stamp));
                    // Filled in once hashed.
                    OnDisk::File {
                        sha256: String::new(),
                        mode,
                    }
                }
            },
        };
        out.push(on_disk);
    }
    let paths: Vec<&str> = misses.iter().map(|(_, p, _)| *p).collect();
    let shas = hash_all(disk, &paths)?;
    for ((i, path, stamp), sha) in misses.into_iter().zip(shas) {
        let Some(sha) = sha else {
            out[i] = OnDisk::Missing;
            continue;
        };
        if let (Some(b), Some(stamp)) = (boundary, stamp)
            && !stamp.is_racy(b)
        {
            learned.insert(path.to_owned(), (stamp, sha.clone()));
        }
        if let OnDisk::File { sha256, .. } = &mut out[i] {
            *sha256 = sha;
        }
    }
    Ok(out)
}
