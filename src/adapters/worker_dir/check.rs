//! Everything apply decides before it writes: that every path and checksum of a batch is
//! sound, and which files must be written, which removed, and what the new record is.
//! Reads the disk (never following a link below the root) but writes nothing.

use super::disk::{Blocked, Disk, Kind, folders};
use super::records::{Managed, ManagedFile};
use super::scan;
use super::stat_cache::{Boundary, Stamp, StatCache};
use super::{Batch, FileSpec, WorkerDirError, path_problem};
use crate::model::desired::sha256_hex;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one apply will do.
#[derive(Debug)]
pub(super) struct Change<'b> {
    /// Files to stage and rename into place, by worker-relative path.
    pub writes: Vec<(&'b str, &'b FileSpec)>,
    /// Managed files to remove.
    pub deletions: Vec<String>,
    /// Symbolic links standing where a folder of a file to write must be: each is
    /// removed (never followed) and a real folder made in its place.
    pub links: Vec<String>,
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
    // Hashing is most of the work: done several at a time, reported in path order.
    let specs: Vec<&FileSpec> = batch.files.values().collect();
    let actuals: Vec<String> = specs
        .par_iter()
        .with_min_len(64)
        .map(|spec| sha256_hex(&spec.content))
        .collect();
    for ((path, spec), actual) in batch.files.iter().zip(actuals) {
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

/// What apply may learn for the next stat cache while it looks at the disk: the files
/// hashed, and the boundary their stats were read after.
pub(super) struct Learning<'c> {
    /// The current cache.
    pub cache: &'c StatCache,
    /// Taken before any stat of this pass.
    pub boundary: Option<Boundary>,
    /// Files hashed in this pass whose stamp is not racy, with their sha256.
    pub learned: HashMap<String, (Stamp, String)>,
}

/// Compares a checked batch with the record and the disk.
pub(super) fn plan_change<'b>(
    disk: &mut Disk,
    current: &Managed,
    batch: &'b Batch,
    learning: &mut Learning,
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
    let mut deletions = BTreeSet::new();
    for path in current
        .files
        .keys()
        .filter(|p| !batch.files.contains_key(*p))
    {
        // Behind a link it is no longer ringops' file: forgotten, never removed.
        if !matches!(disk.blocked(path)?, Blocked::Symlink(_)) {
            deletions.insert(path.clone());
        }
    }
    let (decisions, links) = needs_writes(disk, current, batch, &deletions, learning)?;
    let mut writes = Vec::new();
    let mut files = BTreeMap::new();
    let mut unchanged = 0;
    for ((path, spec), write) in batch.files.iter().zip(decisions) {
        let record = current.files.get(path);
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
        links: links.into_iter().collect(),
        managed: Managed {
            generation,
            files,
            ..Managed::default()
        },
        unchanged,
    })
}

/// Whether a path must be written, or the file to hash before that can be told.
enum Pending {
    Decided(bool),
    /// A folder on its way is this symbolic link: written once a real folder replaces it.
    Relink(String),
    /// A file with the batch's mode: the same if its content hashes to the batch's.
    Compare {
        stamp: Option<Stamp>,
        managed: bool,
    },
}

/// Whether each of the batch's paths must be (re)written, in batch order, refusing the
/// first path (in that order) where something ringops does not manage is in the way;
/// beside them, the symbolic links standing where their folders must be. Files are
/// hashed only when the stat cache does not know them, several at a time.
fn needs_writes(
    disk: &mut Disk,
    current: &Managed,
    batch: &Batch,
    deletions: &BTreeSet<String>,
    learning: &mut Learning,
) -> Result<(Vec<bool>, BTreeSet<String>), WorkerDirError> {
    let (pending, refusal) = look_all(disk, current, batch, deletions);
    let (known, to_hash) = cached_shas(learning.cache, batch, &pending);
    let mut hashed = scan::hash_all(disk, &to_hash)?.into_iter();
    let mut known = known.into_iter();
    let mut out = Vec::with_capacity(pending.len());
    let mut links = BTreeSet::new();
    for ((path, spec), p) in batch.files.iter().zip(pending) {
        let (stamp, managed) = match p {
            Pending::Decided(write) => {
                out.push(write);
                continue;
            }
            Pending::Relink(link) => {
                links.insert(link);
                out.push(true);
                continue;
            }
            Pending::Compare { stamp, managed } => (stamp, managed),
        };
        let sha = match known.next().flatten() {
            Some(sha) => Some(Cow::Borrowed(sha)),
            None => learn(learning, path, stamp, hashed.next().flatten()).map(Cow::Owned),
        };
        out.push(match sha {
            // Gone since it was looked at: written like any missing file.
            None => true,
            Some(sha) if *sha == spec.sha256 => false,
            Some(_) if managed => true,
            Some(_) => return Err(in_the_way(disk, path, UNMANAGED_FILE.to_owned())),
        });
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok((out, links)),
    }
}

/// [`look`] at each of the batch's paths in batch order, stopping at the first refusal,
/// which is returned beside what was seen before it.
fn look_all(
    disk: &mut Disk,
    current: &Managed,
    batch: &Batch,
    deletions: &BTreeSet<String>,
) -> (Vec<Pending>, Option<WorkerDirError>) {
    let mut pending = Vec::with_capacity(batch.files.len());
    for (path, spec) in &batch.files {
        let managed = current.files.contains_key(path);
        match look(disk, path, spec, managed, deletions) {
            Ok(Pending::Relink(link)) if !holds_managed(current, &link) => {
                return (pending, Some(symlink(disk, path, &link)));
            }
            Ok(p) => pending.push(p),
            Err(e) => return (pending, Some(e)),
        }
    }
    (pending, None)
}

/// Whether the record lists a file under folder `folder`: a link standing there now
/// replaced a folder of ringops' (drift, which a switch repairs), rather than being
/// something ringops never wrote in its way.
fn holds_managed(current: &Managed, folder: &str) -> bool {
    let prefix = format!("{folder}/");
    current
        .files
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(path, _)| path.starts_with(&prefix))
}

fn symlink(disk: &Disk, path: &str, link: &str) -> WorkerDirError {
    WorkerDirError::SymlinkInPath {
        root: disk.root.to_owned(),
        path: path.to_owned(),
        link: link.to_owned(),
    }
}

/// For each file to compare, in order, the sha256 the stat cache knows for its stamp;
/// beside them, the paths the cache does not know, which must be hashed.
fn cached_shas<'a>(
    cache: &'a StatCache,
    batch: &'a Batch,
    pending: &[Pending],
) -> (Vec<Option<&'a str>>, Vec<&'a str>) {
    let mut to_hash = Vec::new();
    let mut known = Vec::new();
    for ((path, _), p) in batch.files.iter().zip(pending) {
        if let Pending::Compare { stamp, .. } = p {
            let hit = stamp.as_ref().and_then(|s| cache.sha(path, s));
            if hit.is_none() {
                to_hash.push(path.as_str());
            }
            known.push(hit);
        }
    }
    (known, to_hash)
}

/// Passes a freshly hashed `sha` through, keeping it for the next stat cache when there
/// is a boundary and the file's stamp is not racy against it.
fn learn(
    learning: &mut Learning,
    path: &str,
    stamp: Option<Stamp>,
    sha: Option<String>,
) -> Option<String> {
    if let (Some(sha), Some(stamp), Some(b)) = (&sha, stamp, learning.boundary)
        && !stamp.is_racy(b)
    {
        let entry = (stamp, sha.clone());
        learning.learned.insert(path.to_owned(), entry);
    }
    sha
}

const UNMANAGED_FILE: &str = "an unmanaged file with other content or mode is there";

/// Whether `path` must be (re)written, as far as it can be told without reading a file,
/// refusing when something ringops does not manage is in the way. `managed` says whether
/// the record lists the path.
fn look(
    disk: &mut Disk,
    path: &str,
    spec: &FileSpec,
    managed: bool,
    deletions: &BTreeSet<String>,
) -> Result<Pending, WorkerDirError> {
    match disk.blocked(path)? {
        Blocked::No => {}
        Blocked::Symlink(link) => return Ok(Pending::Relink(link.to_owned())),
        Blocked::NotAFolder(file) if deletions.contains(file) => return Ok(Pending::Decided(true)),
        Blocked::NotAFolder(file) => {
            return Err(in_the_way(
                disk,
                path,
                format!("`{file}` is a file ringops does not manage, where a folder must go"),
            ));
        }
    }
    let Some(stat) = disk.lstat_rel(path)? else {
        return Ok(Pending::Decided(true));
    };
    match stat.kind {
        Kind::Missing => Ok(Pending::Decided(true)),
        Kind::File { mode } if mode == spec.mode => Ok(Pending::Compare {
            stamp: stat.stamp,
            managed,
        }),
        Kind::File { .. } if managed => Ok(Pending::Decided(true)),
        Kind::File { .. } => Err(in_the_way(disk, path, UNMANAGED_FILE.to_owned())),
        Kind::Symlink | Kind::Other if managed => Ok(Pending::Decided(true)),
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
                None => Ok(Pending::Decided(true)),
                Some(other) => Err(in_the_way(
                    disk,
                    path,
                    format!("a folder is there, holding `{other}` which stays"),
                )),
            }
        }
    }
}

fn in_the_way(disk: &Disk, path: &str, what: String) -> WorkerDirError {
    WorkerDirError::InTheWay {
        root: disk.root.to_owned(),
        path: path.to_owned(),
        what,
    }
}
