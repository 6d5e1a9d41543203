//! The content-addressed object store: every rendered artifact's bytes under
//! `<state_dir>/objects/ab/cdef…` (hex sha256, two-character fan-out), so drift repair and
//! rollback never need to re-render. Objects are written atomically (temp file, fsync,
//! rename, folder fsync), many at a time so that their flushes share the filesystem's
//! journal commits, and verified on read. Folders are 0o700 and files 0o600: objects
//! may hold secret values. Knows nothing of deployments; the store records which objects a
//! deployment used.

use crate::adapters::worker_dir::in_parallel;
use crate::model::desired::sha256_hex;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Folder of the objects inside the state folder.
pub const OBJECTS_DIR: &str = "objects";

/// Why an object could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The name is not 64 lowercase hex characters.
    #[error("`{0}` is not a sha256 object name (64 lowercase hex characters)")]
    InvalidSha(String),
    /// No object has this name.
    #[error("object {sha} is missing from the object store ({path})")]
    Missing {
        /// The object's name.
        sha: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// The object's bytes do not hash to its name.
    #[error("object {sha} is corrupt: {path} holds bytes with sha256 {actual}")]
    Corrupt {
        /// The object's name.
        sha: String,
        /// The file.
        path: PathBuf,
        /// The hash of what the file holds.
        actual: String,
    },
    /// Bytes given under a name they do not hash to.
    #[error("refusing to store object {sha}: its bytes have sha256 {actual}")]
    Mismatch {
        /// The name given.
        sha: String,
        /// The hash of the bytes.
        actual: String,
    },
    /// Reading or writing failed.
    #[error("cannot use object file {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The objects of one state folder.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    root: PathBuf,
}

/// Makes temp names unique among threads of one process; the pid separates processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ObjectStore {
    /// The object store of `state_dir` (`<state_dir>/objects`). Creates nothing until the
    /// first [`ObjectStore::put`].
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join(OBJECTS_DIR),
        }
    }

    /// The objects folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object named `sha` lives; refuses anything but a sha256 hex name, so no
    /// name can reach outside the store.
    pub fn path_of(&self, sha: &str) -> Result<PathBuf, ObjectError> {
        let valid = sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(ObjectError::InvalidSha(sha.to_owned()));
        }
        Ok(self.root.join(&sha[..2]).join(&sha[2..]))
    }

    /// Stores `bytes` durably and returns their sha256. An object already present is not
    /// rewritten (unless its size shows it is damaged).
    pub fn put(&self, bytes: &[u8]) -> Result<String, ObjectError> {
        let sha = sha256_hex(bytes);
        self.store(vec![(sha.as_str(), bytes)], Present::CheckSize)?;
        Ok(sha)
    }

    /// Stores many objects, hashing them several at a time; returns their sha256s in
    /// order. Like [`ObjectStore::put`], a present object whose size differs is rewritten.
    pub fn put_all<'a>(
        &self,
        objects: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<String>, ObjectError> {
        let objects: Vec<&[u8]> = objects.into_iter().collect();
        let shas: Vec<String> = objects
            .par_iter()
            .with_min_len(64)
            .map(|b| sha256_hex(b))
            .collect();
        let named = shas.iter().map(String::as_str).zip(objects).collect();
        self.store(named, Present::CheckSize)?;
        Ok(shas)
    }

    /// Stores objects whose sha256 the caller already knows (every artifact carries its
    /// own): those present are skipped without being read, hashed or even stat'ed (each
    /// fan-out folder is listed once), and the missing ones are checked against their
    /// name, then written and flushed several at a time, all durable on return. Returns
    /// how many objects were written. A wrong name is refused before anything is written.
    pub fn put_known<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<usize, ObjectError> {
        self.store(objects.into_iter().collect(), Present::Trusted)
    }
    /// Whether the object named `sha` is present (not verified; [`ObjectStore::get`] does).
    pub fn has(&self, sha: &str) -> Result<bool, ObjectError> {
        let path = self.path_of(sha)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ObjectError::Io { path, source }),
        }
    }

    /// The bytes of the object named `sha`, checked against the name.
    pub fn get(&self, sha: &str) -> Result<Vec<u8>, ObjectError> {
        let path = self.path_of(sha)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ObjectError::Missing {
                    sha: sha.to_owned(),
                    path,
                });
            }
            Err(source) => return Err(ObjectError::Io { path, source }),
        };
        let actual = sha256_hex(&bytes);
        if actual != sha {
            return Err(ObjectError::Corrupt {
                sha: sha.to_owned(),
                path,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Writes the objects not present yet; returns how many it wrote.
    fn store(&self, objects: Vec<(&str, &[u8])>, present: Present) -> Result<usize, ObjectError> {
        let mut wanted: HashMap<&str, &[u8]> = HashMap::with_capacity(objects.len());
        for (sha, bytes) in objects {
            self.path_of(sha)?;
            wanted.insert(sha, bytes);
        }
        let missing = self.missing(wanted, present)?;
        check_contents(&missing)?;
        let dirty = self.fan_out_folders(&missing)?;
        self.write_all(&missing)?;
        let dirty: Vec<PathBuf> = dirty.into_iter().collect();
        in_parallel(&dirty, |dir| sync_dir(dir))?;
        Ok(missing.len())
    }

    /// Creates the fan-out folders the `missing` objects go to that do not exist yet;
    /// returns every folder whose entries change, to be flushed once the objects are in.
    fn fan_out_folders(&self, missing: &[(&str, &[u8])]) -> Result<BTreeSet<PathBuf>, ObjectError> {
        let mut dirty = BTreeSet::new();
        let fan_outs: BTreeSet<&str> = missing.iter().map(|(sha, _)| &sha[..2]).collect();
        for fan_out in fan_outs {
            let dir = self.root.join(fan_out);
            if !dir.is_dir() {
                create_private_dir(&dir)?;
                dirty.insert(self.root.clone());
                if let Some(state_dir) = self.root.parent() {
                    dirty.insert(state_dir.to_owned());
                }
            }
            dirty.insert(dir);
        }
        Ok(dirty)
    }

    /// Writes the `missing` objects into their fan-out folders (which exist), flushed
    /// before any is renamed to its name; on failure no temporary file is left.
    fn write_all(&self, missing: &[(&str, &[u8])]) -> Result<(), ObjectError> {
        // Written one by one (files created in one folder contend for its lock), flushed
        // many at a time, then renamed into place: a name never points at unflushed bytes.
        let mut temps = Vec::with_capacity(missing.len());
        for (sha, bytes) in missing {
            temps.push((self.write_temp(sha, bytes)?, *sha));
        }
        let flushed = in_parallel(&temps, |(temp, _)| {
            File::open(temp)
                .and_then(|f| f.sync_all())
                .map_err(|source| ObjectError::Io {
                    path: temp.clone(),
                    source,
                })
        });
        if let Err(e) = flushed {
            for (temp, _) in &temps {
                let _ = fs::remove_file(temp);
            }
            return Err(e);
        }
        for (temp, sha) in &temps {
            let path = self.path_of(sha)?;
            if let Err(source) = fs::rename(temp, &path) {
                let _ = fs::remove_file(temp);
                return Err(ObjectError::Io { path, source });
            }
        }
        Ok(())
    }

    /// The objects of `wanted` that are not in the store, in name order.
    fn missing<'w>(
        &self,
        wanted: HashMap<&'w str, &'w [u8]>,
        present: Present,
    ) -> Result<Vec<(&'w str, &'w [u8])>, ObjectError> {
        let mut by_fan_out: BTreeMap<&str, Vec<(&str, &[u8])>> = BTreeMap::new();
        for (sha, bytes) in wanted {
            by_fan_out.entry(&sha[..2]).or_default().push((sha, bytes));
        }
        let mut missing = Vec::new();
        for (fan_out, mut objects) in by_fan_out {
            objects.sort_unstable_by_key(|(sha, _)| *sha);
            let listed = match present {
                // Listing a folder costs about as much as a few stats.
                Present::Trusted if objects.len() >= 8 => self.list(fan_out)?,
                _ => None,
            };
            for (sha, bytes) in objects {
                let here = match &listed {
                    Some(names) => names.contains(&sha[2..]),
                    None => self.present(sha, bytes.len(), present)?,
                };
                if !here {
                    missing.push((sha, bytes));
                }
            }
        }
        Ok(missing)
    }

    /// The names of the regular files in one fan-out folder (none when it is missing).
    fn list(&self, fan_out: &str) -> Result<Option<HashSet<String>>, ObjectError> {
        let dir = self.root.join(fan_out);
        let io = |source| ObjectError::Io {
            path: dir.clone(),
            source,
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Some(HashSet::new())),
            Err(e) => return Err(io(e)),
        };
        let mut names = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(io)?;
            if entry.file_type().map_err(io)?.is_file() {
                names.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(Some(names))
    }

    /// Whether one object is present (and, when asked, has the expected size).
    fn present(&self, sha: &str, len: usize, present: Present) -> Result<bool, ObjectError> {
        let path = self.path_of(sha)?;
        Ok(match fs::metadata(&path) {
            Ok(meta) => meta.is_file() && (present == Present::Trusted || meta.len() == len as u64),
            Err(_) => false,
        })
    }

    /// Writes one object's bytes under a temporary name in its fan-out folder (which
    /// exists), not yet flushed; returns that name.
    fn write_temp(&self, sha: &str, bytes: &[u8]) -> Result<PathBuf, ObjectError> {
        let path = self.path_of(sha)?;
        let fan_out = path.parent().unwrap_or(&self.root);
        let temp = fan_out.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(source) = write_new(&temp, bytes) {
            let _ = fs::remove_file(&temp);
            return Err(ObjectError::Io { path, source });
        }
        Ok(temp)
    }
}

/// How a present object is told apart from a damaged one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Present {
    /// Its size must match (what `put` and `put_all` always did).
    CheckSize,
    /// Present is enough: `get` verifies every object it reads.
    Trusted,
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Refuses objects whose bytes do not hash to the name given (checked several at a time).
fn check_contents(objects: &[(&str, &[u8])]) -> Result<(), ObjectError> {
    let mismatch = objects
        .par_iter()
        .with_min_len(64)
        .find_map_any(|(sha, bytes)| {
            let actual = sha256_hex(bytes);
            (actual != *sha).then(|| ObjectError::Mismatch {
                sha: (*sha).to_owned(),
                actual,
            })
        });
    match mismatch {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), ObjectError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| ObjectError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// fsyncs a folder so the names created in it survive a power loss.
fn sync_dir(dir: &Path) -> Result<(), ObjectError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ObjectError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn store() -> (tempfile::TempDir, ObjectStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ObjectStore::new(dir.path());
        (dir, store)
    }

    #[test]
    fn put_then_get_round_trips_under_fan_out() {
        let (dir, store) = store();
        let sha = store.put(b"hello").expect("put");
        assert_eq!(sha, HELLO_SHA);
        let path = dir.path().join("objects/2c").join(&HELLO_SHA[2..]);
        assert!(path.is_file(), "{}", path.display());
        assert!(store.has(&sha).expect("has"));
        assert_eq!(store.get(&sha).expect("get"), b"hello");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("objects/2c"))
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn objects_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = store();
        let sha = store.put(b"secret: hunter2").expect("put");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&store.path_of(&sha).expect("path")), 0o600);
        assert_eq!(mode(&dir.path().join("objects")), 0o700);
        assert_eq!(mode(&dir.path().join("objects").join(&sha[..2])), 0o700);
    }

    #[test]
    fn put_of_a_present_object_keeps_it() {
        let (_dir, store) = store();
        let sha = store.put(b"same").expect("put");
        let path = store.path_of(&sha).expect("path");
        let before = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(store.put(b"same").expect("put again"), sha);
        let after = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(before, after);
    }

    #[test]
    fn put_repairs_a_truncated_object() {
        let (_dir, store) = store();
        let sha = store.put(b"hello").expect("put");
        fs::write(store.path_of(&sha).expect("path"), b"he").expect("damage");
        store.put(b"hello").expect("put again");
        assert_eq!(store.get(&sha).expect("get"), b"hello");
    }

    #[test]
    fn put_all_returns_names_in_order() {
        let (_dir, store) = store();
        let items: [&[u8]; 3] = [b"a", b"b", b"a"];
        let shas = store.put_all(items).expect("put all");
        assert_eq!(shas.len(), 3);
        assert_eq!(shas[0], shas[2]);
        for (sha, bytes) in shas.iter().zip(items) {
            assert_eq!(store.get(sha).expect("get"), bytes);
        }
    }

    #[test]
    fn put_known_writes_only_what_is_missing_and_checks_names() {
        let (_dir, store) = store();
        let bodies: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("object {i}\n").into_bytes())
            .collect();
        let shas: Vec<String> = bodies.iter().map(|b| sha256_hex(b)).collect();
        let named = || {
            shas.iter()
                .map(String::as_str)
                .zip(bodies.iter().map(Vec::as_slice))
        };
        assert_eq!(store.put_known(named().take(100)).expect("first"), 100);
        assert_eq!(store.put_known(named()).expect("all"), 200);
        assert_eq!(store.put_known(named()).expect("again"), 0);
        for (sha, bytes) in named() {
            assert_eq!(store.get(sha).expect("get"), bytes);
        }
        // A present object is not read, so damage is left for `get` to report...
        let path = store.path_of(&shas[0]).expect("path");
        fs::write(&path, b"x").expect("damage");
        assert_eq!(store.put_known(named().take(1)).expect("skip"), 0);
        assert!(matches!(
            store.get(&shas[0]),
            Err(ObjectError::Corrupt { .. })
        ));
        // ...and `put_all` still repairs it.
        store.put_all([bodies[0].as_slice()]).expect("repair");
        assert_eq!(store.get(&shas[0]).expect("repaired"), bodies[0]);
        // Bytes under a wrong name are refused, writing nothing.
        let wrong = [
            (HELLO_SHA, b"not hello".as_slice()),
            (shas[1].as_str(), b"x"),
        ];
        let err = store.put_known(wrong).expect_err("mismatch");
        assert!(matches!(err, ObjectError::Mismatch { .. }), "{err:?}");
        assert!(!store.has(HELLO_SHA).expect("has"));
        let err = store
            .put_known([("../x", b"x".as_slice())])
            .expect_err("name");
        assert!(matches!(err, ObjectError::InvalidSha(_)), "{err:?}");
        let leftovers = fs::read_dir(store.root())
            .expect("root")
            .flat_map(|d| fs::read_dir(d.expect("entry").path()).expect("fan-out"))
            .filter(|e| {
                e.as_ref()
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn corrupt_object_names_sha_and_path() {
        let (_dir, store) = store();
        let sha = store.put(b"hello").expect("put");
        let path = store.path_of(&sha).expect("path");
        fs::write(&path, b"HELLO").expect("corrupt");
        let err = store
            .get(&sha)
            .expect_err("corrupt object must not be returned");
        assert!(matches!(err, ObjectError::Corrupt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&sha), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn missing_object_is_typed() {
        let (_dir, store) = store();
        assert!(!store.has(HELLO_SHA).expect("has"));
        let err = store.get(HELLO_SHA).expect_err("missing");
        assert!(matches!(err, ObjectError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains(HELLO_SHA));
    }

    #[test]
    fn names_that_are_not_sha256_hex_are_refused() {
        let (_dir, store) = store();
        let traversal = format!("../{}", &HELLO_SHA[3..]);
        let upper = HELLO_SHA.to_uppercase();
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            traversal.as_str(),
            upper.as_str(),
            &HELLO_SHA[..63],
        ] {
            assert!(
                matches!(store.get(bad), Err(ObjectError::InvalidSha(_))),
                "{bad}"
            );
            assert!(
                matches!(store.has(bad), Err(ObjectError::InvalidSha(_))),
                "{bad}"
            );
        }
        let with_slash = format!("{}/{}", &HELLO_SHA[..2], &HELLO_SHA[3..]);
        assert!(matches!(
            store.path_of(&with_slash),
            Err(ObjectError::InvalidSha(_))
        ));
    }
}
