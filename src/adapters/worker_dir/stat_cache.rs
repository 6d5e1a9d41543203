//! `.ringops/stat-cache`: what ringops last saw of each managed file and each folder, so
//! an inventory rehashes only files whose stat changed and lists only folders whose stat
//! changed, as Git's index and untracked cache do. A cache, never authoritative: a missing
//! or damaged one just means everything is hashed and listed.
//!
//! Every entry is an assertion "while the stat of this path is exactly this [`Stamp`]
//! (device, inode, size, mtime, ctime), the file holds this sha256 / the folder holds
//! these entries". Any write to a file or a folder moves its ctime, so a changed stat is
//! seen; the one hole is a change within the same filesystem timestamp tick as the stat
//! that was recorded ("racily clean", in Git's words). A [`Boundary`] closes it: a
//! filesystem timestamp taken *before* the stats of an entry were read; an entry whose
//! mtime or ctime is not strictly older than its boundary is never recorded, so any
//! change after the stat was read shows as a different stat. Stale entries are harmless
//! (their stat no longer matches), so a writer may carry entries over unchecked.
//!
//! Format, one entry per line, fields separated by tabs, paths last:
//! `F dev ino size mtime_s mtime_ns ctime_s ctime_ns sha256 path` for a file, and
//! `D dev ino size mtime_s mtime_ns ctime_s ctime_ns path` for a folder (`.` for the
//! root) followed by one `d name`, `f name`, `l name` or `o name` line per entry (folder,
//! file, link, other); the first line names the format and the last is `end`.

use super::disk::Disk;
use super::records::reserved;
use super::{RESERVED, WorkerDirError};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// The cache file under `.ringops/`.
pub(super) const STAT_CACHE: &str = "stat-cache";
/// Its temporary name while it is written; its creation time is the boundary.
pub(super) const STAT_CACHE_TMP: &str = "stat-cache.tmp";
const HEADER: &str = "ringops stat-cache 1";
const END: &str = "end";

/// A filesystem timestamp: seconds and nanoseconds since the epoch.
pub(super) type Time = (i64, i64);

/// The stat fields that change whenever a file's content or a folder's entries do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Time,
    ctime: Time,
}

impl Stamp {
    /// A stamp from its fields.
    pub fn new(dev: u64, ino: u64, size: u64, mtime: Time, ctime: Time) -> Stamp {
        Stamp {
            dev,
            ino,
            size,
            mtime,
            ctime,
        }
    }

    /// The stamp of `meta`; `None` where the platform has no inode numbers.
    #[cfg(unix)]
    pub fn of(meta: &fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// The stamp of `meta`; `None` where the platform has no inode numbers.
    #[cfg(not(unix))]
    pub fn of(_meta: &fs::Metadata) -> Option<Stamp> {
        None
    }

    /// True when the content could have changed in the same timestamp tick as this
    /// stat was read after `boundary`: such an entry must not be recorded.
    pub fn is_racy(&self, boundary: Boundary) -> bool {
        self.mtime >= boundary.0 || self.ctime >= boundary.0
    }

    /// True when a file written by this process is still untouched: the same inode,
    /// size and mtime as right after it was written (a rename moves only the ctime).
    pub fn same_content_as_written(&self, written: &Stamp) -> bool {
        self.dev == written.dev
            && self.ino == written.ino
            && self.size == written.size
            && self.mtime == written.mtime
    }
}

/// A filesystem timestamp read before the stats it guards: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Boundary(Time);

/// What an entry of a folder is, as a listing says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Dir,
    File,
    Link,
    Other,
}

impl Entry {
    /// The entry for a listing's file type.
    pub fn of(ft: fs::FileType) -> Entry {
        if ft.is_dir() {
            Entry::Dir
        } else if ft.is_symlink() {
            Entry::Link
        } else if ft.is_file() {
            Entry::File
        } else {
            Entry::Other
        }
    }

    fn code(self) -> char {
        match self {
            Entry::Dir => 'd',
            Entry::File => 'f',
            Entry::Link => 'l',
            Entry::Other => 'o',
        }
    }

    fn from_byte(code: u8) -> Option<Entry> {
        Some(match code {
            b'd' => Entry::Dir,
            b'f' => Entry::File,
            b'l' => Entry::Link,
            b'o' => Entry::Other,
            _ => return None,
        })
    }
}

/// A folder as it was listed: its stamp and its entries by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Listing {
    pub stamp: Stamp,
    pub entries: Vec<(String, Entry)>,
}

/// The cache: files and folders by worker-relative path (`""` for the root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct StatCache {
    pub files: HashMap<String, (Stamp, String)>,
    pub dirs: HashMap<String, Listing>,
}

impl StatCache {
    /// The sha256 of `path` if the cache holds it for exactly this stamp.
    pub fn sha(&self, path: &str, stamp: &Stamp) -> Option<&str> {
        match self.files.get(path) {
            Some((s, sha)) if s == stamp => Some(sha),
            _ => None,
        }
    }

    /// The entries of folder `path` if the cache holds them for exactly this stamp.
    pub fn listing(&self, path: &str, stamp: &Stamp) -> Option<&[(String, Entry)]> {
        match self.dirs.get(path) {
            Some(l) if l.stamp == *stamp => Some(&l.entries),
            _ => None,
        }
    }

    /// Reads the cache; anything missing or damaged gives an empty one.
    pub fn read(disk: &Disk) -> StatCache {
        let path = reserved(disk).join(STAT_CACHE);
        fs::read_to_string(path)
            .ok()
            .and_then(|text| parse(&text))
            .unwrap_or_default()
    }

    /// Writes the cache as a whole into `tmp` (the file its boundary came from), then
    /// renames it into place. Not flushed to disk: a cache lost in a crash is rebuilt.
    pub fn write(&self, disk: &Disk, mut tmp: File) -> Result<(), WorkerDirError> {
        let dir = reserved(disk);
        let (tmp_path, path) = (dir.join(STAT_CACHE_TMP), dir.join(STAT_CACHE));
        tmp.write_all(self.format().as_bytes())
            .map_err(|e| disk.err(&tmp_path, e))?;
        drop(tmp);
        fs::rename(&tmp_path, &path).map_err(|e| disk.err(&path, e))
    }

    fn format(&self) -> String {
        let mut out = String::with_capacity(64 + 140 * (self.files.len() + self.dirs.len()));
        out.push_str(HEADER);
        out.push('\n');
        let mut dirs: Vec<_> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| a.0.cmp(b.0));
        for (path, listing) in dirs {
            let name = if path.is_empty() { "." } else { path };
            let _ = writeln!(out, "D\t{}\t{name}", stamp_fields(&listing.stamp));
            for (entry, kind) in &listing.entries {
                let _ = writeln!(out, "{}\t{entry}", kind.code());
            }
        }
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        for (path, (stamp, sha)) in files {
            let _ = writeln!(out, "F\t{}\t{sha}\t{path}", stamp_fields(stamp));
        }
        out.push_str(END);
        out.push('\n');
        out
    }
}

/// Whether a name can be written in the cache's line format.
pub(super) fn storable(name: &str) -> bool {
    !name.is_empty() && !name.contains(['\t', '\n', '\r'])
}

/// Starts a new cache: creates its temporary file afresh and takes the filesystem's
/// timestamp of that creation as the boundary for the stats read after it.
pub(super) fn begin(disk: &Disk) -> Result<(File, Boundary), WorkerDirError> {
    let path: PathBuf = disk.root.join(RESERVED).join(STAT_CACHE_TMP);
    disk.remove_file_if_any(&path)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(|e| disk.err(&path, e))?;
    let meta = file.metadata().map_err(|e| disk.err(&path, e))?;
    let time = match Stamp::of(&meta) {
        Some(s) => s.mtime.min(s.ctime),
        // No stamps on this platform: nothing will ever be recorded.
        None => (i64::MIN, 0),
    };
    Ok((file, Boundary(time)))
}

/// Removes a temporary cache left by a crash.
pub(super) fn remove_leftover(disk: &Disk) -> Result<(), WorkerDirError> {
    disk.remove_file_if_any(&reserved(disk).join(STAT_CACHE_TMP))
        .map(drop)
}

fn stamp_fields(s: &Stamp) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        s.dev, s.ino, s.size, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1
    )
}

/// A line split at its tabs, field by field.
struct Fields<'l>(&'l str);

impl<'l> Fields<'l> {
    /// The next field; `None` past the last.
    fn next(&mut self) -> Option<&'l str> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.find('\t') {
            Some(i) => {
                let field = &self.0[..i];
                self.0 = &self.0[i + 1..];
                Some(field)
            }
            None => Some(std::mem::take(&mut self.0)),
        }
    }

    /// The rest of the line as one last field, which may hold no tab.
    fn last(self) -> Option<&'l str> {
        (!self.0.is_empty() && !self.0.contains('\t')).then_some(self.0)
    }

    fn unsigned(&mut self) -> Option<u64> {
        digits(self.next()?)
    }

    fn signed(&mut self) -> Option<i64> {
        let field = self.next()?;
        match field.strip_prefix('-') {
            Some(rest) => digits(rest).and_then(|n| i64::try_from(n).ok()).map(|n| -n),
            None => digits(field).and_then(|n| i64::try_from(n).ok()),
        }
    }

    fn stamp(&mut self) -> Option<Stamp> {
        let (dev, ino, size) = (self.unsigned()?, self.unsigned()?, self.unsigned()?);
        let (ms, mn, cs, cn) = (
            self.signed()?,
            self.signed()?,
            self.signed()?,
            self.signed()?,
        );
        Some(Stamp {
            dev,
            ino,
            size,
            mtime: (ms, mn),
            ctime: (cs, cn),
        })
    }
}

/// A decimal number of ASCII digits only.
fn digits(field: &str) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    field.bytes().try_fold(0u64, |n, b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The cache a text holds, or `None` if anything about it is off.
fn parse(text: &str) -> Option<StatCache> {
    let mut lines = text.split('\n');
    if lines.next()? != HEADER {
        return None;
    }
    // About one entry per 100 bytes: sized once rather than grown.
    let mut cache = StatCache {
        files: HashMap::with_capacity(text.len() / 200),
        dirs: HashMap::with_capacity(text.len() / 200),
    };
    let mut open: Option<(String, Listing)> = None;
    for line in lines {
        let (code, rest) = (line.as_bytes().first()?, line.get(2..)?);
        if line.as_bytes().get(1) != Some(&b'\t') {
            cache.dirs.extend(open);
            return (line == END).then_some(cache);
        }
        let mut fields = Fields(rest);
        match code {
            b'F' => {
                let stamp = fields.stamp()?;
                let sha = fields.next()?;
                let path = fields.last()?;
                let valid = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
                if !valid {
                    return None;
                }
                cache.files.insert(path.to_owned(), (stamp, sha.to_owned()));
            }
            b'D' => {
                let stamp = fields.stamp()?;
                let path = match fields.last()? {
                    "." => "",
                    p => p,
                };
                let listing = Listing {
                    stamp,
                    entries: Vec::new(),
                };
                cache.dirs.extend(open.replace((path.to_owned(), listing)));
            }
            code => {
                let entry = Entry::from_byte(*code)?;
                let name = fields.last()?;
                open.as_mut()?.1.entries.push((name.to_owned(), entry));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_round_trips_and_damage_gives_nothing() {
        let stamp = Stamp {
            dev: 2049,
            ino: 77,
            size: 12,
            mtime: (1_700_000_000, 5),
            ctime: (1_700_000_001, 999_999_999),
        };
        let mut cache = StatCache::default();
        cache
            .files
            .insert("wf/a/job.yaml".into(), (stamp, "ab".repeat(32)));
        let entries = vec![("wf".to_owned(), Entry::Dir), ("x y".into(), Entry::Link)];
        cache.dirs.insert(String::new(), Listing { stamp, entries });
        let text = cache.format();
        assert_eq!(parse(&text), Some(cache.clone()));
        assert_eq!(parse(&text.replace("\nend\n", "\n")), None, "truncated");
        assert_eq!(parse(&text.replace("\tab", "\tzz")), None, "bad sha");
        assert_eq!(parse(""), None);
    }
}
