//! Plain file-system steps inside one worker directory that never follow a symbolic
//! link below the root: what stands at a path, hashing, durable writes, folder fsyncs
//! and walking. Every failure is mapped to a [`WorkerDirError`] naming the path.

use super::WorkerDirError;
use super::stat::{self, Stat};
use super::stat_cache::Stamp;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What stands at a path, read without following a link there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Missing,
    /// A regular file with its permission bits.
    File {
        mode: u32,
    },
    Dir,
    Symlink,
    /// A socket, fifo or device.
    Other,
}

/// The first folder on the way to a path that is not a real folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blocked<'a> {
    No,
    Symlink(&'a str),
    NotAFolder(&'a str),
}

/// The folders a worker-relative path goes through: `a`, `a/b` for `a/b/f`.
pub(super) fn folders(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(|(i, _)| &rel[..i])
}

/// File-system access below one worker root, with errors that name the root.
pub(super) struct Disk<'a> {
    pub root: &'a Path,
    /// What stands at folders already looked at, so each is read once per pass.
    seen: HashMap<String, Kind>,
    /// The stamps of the real folders among them, read after this pass began.
    stamps: HashMap<String, Stamp>,
    /// A handle on the root to stat paths below it, opened at the first such stat.
    handle: std::sync::OnceLock<Option<File>>,
}

impl<'a> Disk<'a> {
    pub fn new(root: &'a Path) -> Self {
        Self {
            root,
            seen: HashMap::new(),
            stamps: HashMap::new(),
            handle: std::sync::OnceLock::new(),
        }
    }

    pub fn err(&self, path: &Path, source: std::io::Error) -> WorkerDirError {
        WorkerDirError::io(self.root, path, source)
    }

    /// What stands at `path` (absolute), not following a link there.
    pub fn kind(&self, path: &Path) -> Result<Kind, WorkerDirError> {
        Ok(self
            .lstat(path)?
            .map_or(Kind::Missing, |meta| kind_of(&meta)))
    }

    /// The metadata of `path` (absolute), not following a link there; `None` when
    /// nothing stands there.
    pub fn lstat(&self, path: &Path) -> Result<Option<fs::Metadata>, WorkerDirError> {
        match fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(None)
            }
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// What stands at worker-relative `rel` (not empty), not following a link there;
    /// `None` when nothing does. Cheaper than [`Disk::lstat`] of the joined path.
    pub fn lstat_rel(&self, rel: &str) -> Result<Option<Stat>, WorkerDirError> {
        let handle = self.handle.get_or_init(|| stat::open_root(self.root));
        stat::lstat_below(handle.as_ref(), self.root, rel)
            .map_err(|e| self.err(&self.root.join(rel), e))
    }

    /// The first folder on the way to worker-relative `rel` that is a link or not a
    /// folder. A missing folder ends the walk: nothing stands below it.
    pub fn blocked<'r>(&mut self, rel: &'r str) -> Result<Blocked<'r>, WorkerDirError> {
        for folder in folders(rel) {
            let kind = match self.seen.get(folder) {
                Some(kind) => *kind,
                None => self.look_at_folder(folder)?,
            };
            match kind {
                Kind::Dir => {}
                Kind::Missing => return Ok(Blocked::No),
                Kind::Symlink => return Ok(Blocked::Symlink(folder)),
                Kind::File { .. } | Kind::Other => return Ok(Blocked::NotAFolder(folder)),
            }
        }
        Ok(Blocked::No)
    }

    /// What stands at worker-relative folder `rel`, remembered with its stamp.
    fn look_at_folder(&mut self, rel: &str) -> Result<Kind, WorkerDirError> {
        let stat = self.lstat_rel(rel)?;
        let kind = stat.map_or(Kind::Missing, |s| s.kind);
        if let Some(stamp) = stat.and_then(|s| s.stamp).filter(|_| kind == Kind::Dir) {
            self.stamps.insert(rel.to_owned(), stamp);
        }
        self.seen.insert(rel.to_owned(), kind);
        Ok(kind)
    }

    /// The stamp folder `rel` had when [`Disk::blocked`] looked at it in this pass.
    pub fn folder_stamp(&self, rel: &str) -> Option<&Stamp> {
        self.stamps.get(rel)
    }

    /// Every real folder [`Disk::blocked`] looked at in this pass, with its stamp.
    pub fn folder_stamps(&self) -> impl Iterator<Item = (&String, &Stamp)> {
        self.stamps.iter()
    }

    /// Forgets what was seen, after the folders changed. The stamps stay: they tell
    /// what a folder the change did not touch looked like in this pass.
    pub fn forget(&mut self) {
        self.seen.clear();
    }

    /// Notes what stands at worker-relative `rel`, as a walk just saw it.
    pub fn learn(&mut self, rel: &str, kind: Kind) {
        self.seen.insert(rel.to_owned(), kind);
    }

    /// Hex sha256 of a regular file's content.
    pub fn hash_file(&self, path: &Path) -> Result<String, WorkerDirError> {
        let mut file = File::open(path).map_err(|e| self.err(path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| self.err(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Creates a new file with `bytes` and `mode`, flushed to disk.
    pub fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), WorkerDirError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = options.open(path).and_then(|mut file| {
            file.write_all(bytes)?;
            set_mode(&file, mode)?;
            file.sync_all()
        });
        result.map_err(|e| self.err(path, e))
    }

    /// Creates a new file with `bytes` and `mode`, not yet flushed (see
    /// [`Disk::sync_files`]); returns its stamp as written, to know it later for unchanged.
    pub fn write_staged(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> Result<Option<Stamp>, WorkerDirError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = options.open(path).and_then(|mut file| {
            file.write_all(bytes)?;
            set_mode(&file, mode)?;
            Ok(Stamp::of(&file.metadata()?))
        });
        result.map_err(|e| self.err(path, e))
    }

    /// Flushes files to disk, many at a time: concurrent fsyncs share the filesystem
    /// journal's commits. (Writing them is left single-threaded: files created in one
    /// folder contend for its lock.)
    pub fn sync_files(&self, paths: &[PathBuf]) -> Result<(), WorkerDirError> {
        in_parallel(paths, |path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| self.err(path, e))
        })
        .map(drop)
    }

    /// Replaces `dir/name` as a whole: writes `name.tmp`, flushes it, renames it over
    /// `name` and flushes the folder.
    pub fn write_atomic(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WorkerDirError> {
        let tmp = dir.join(format!("{name}.tmp"));
        self.remove_file_if_any(&tmp)?;
        self.write_new(&tmp, bytes, 0o600)?;
        let target = dir.join(name);
        fs::rename(&tmp, &target).map_err(|e| self.err(&target, e))?;
        self.sync_dir(dir)
    }

    /// Flushes a folder's entries (created, renamed or removed names) to disk.
    pub fn sync_dir(&self, dir: &Path) -> Result<(), WorkerDirError> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(dir, e))
    }

    /// Removes a file or link (never a folder); a missing one is fine.
    pub fn remove_file_if_any(&self, path: &Path) -> Result<bool, WorkerDirError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// Creates the missing folders of worker-relative folder `rel`, one level at a
    /// time, noting each parent that gained an entry in `dirty`.
    pub fn create_folders(
        &mut self,
        rel: &str,
        dirty: &mut BTreeSet<PathBuf>,
    ) -> Result<(), WorkerDirError> {
        let whole = format!("{rel}/");
        for folder in folders(&whole) {
            let path = self.root.join(folder);
            match fs::create_dir(&path) {
                Ok(()) => {
                    self.seen.insert(folder.to_owned(), Kind::Dir);
                    if let Some(parent) = path.parent() {
                        dirty.insert(parent.to_owned());
                    }
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.err(&path, e)),
            }
        }
        Ok(())
    }

    /// Every entry that is not a real folder below worker-relative folder `rel` ("" for
    /// the root), as worker-relative paths, skipping `.ringops` at the top. Links are
    /// listed, never entered.
    pub fn files_under(&self, rel: &str, out: &mut Vec<String>) -> Result<(), WorkerDirError> {
        let dir = if rel.is_empty() {
            self.root.to_owned()
        } else {
            self.root.join(rel)
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && name == super::RESERVED {
                continue;
            }
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type().map_err(|e| self.err(&entry.path(), e))?;
            if ft.is_dir() {
                self.files_under(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
}

/// What metadata read without following a link says stands there.
pub(super) fn kind_of(meta: &fs::Metadata) -> Kind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File {
            mode: file_mode(meta),
        }
    } else {
        Kind::Other
    }
}

/// Most threads [`in_parallel`] runs: enough for concurrent fsyncs to share the
/// filesystem journal's commits (one commit then covers many files).
const IO_THREADS: usize = 16;

/// Runs `f` on every item on up to [`IO_THREADS`] threads, for work that mostly waits on
/// the disk (fsync above all); the results in item order, or the first error met (the
/// rest then stop). Also used by the object store.
pub(crate) fn in_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = IO_THREADS.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let run = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            match f(item) {
                Ok(r) => done.push((i, r)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(done)
    };
    let parts: Vec<Result<Vec<(usize, R)>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(run)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for part in parts {
        all.extend(part?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(meta: &fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
