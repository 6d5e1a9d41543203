//! The compiled-state cache: `<state_dir>/cache/compiled/<key>`, one file per compiled
//! ring, so that planning or applying a commit compiled before skips the compiler.
//!
//! Owns the file format and its files; what a key names and when an entry may be used is
//! the engine's ([`crate::engine::compile`]). Never holds a secret value: states with any
//! sensitive artifact are refused, and only the names of the secrets a compile looked up
//! are kept, with a digest of their values. Files are private to the owner, written
//! atomically and checked against a trailing sha256 when read; a damaged, foreign or
//! unreadable file is a miss. Only the [`KEEP`] most recently used entries are kept.

use crate::model::DesiredState;
use crate::model::desired::{Artifact, WorkerHook, WorkerState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many entries are kept (each about as large as the ring's artifacts).
pub const KEEP: usize = 4;

/// First bytes of every entry, with the format version.
const MAGIC: &[u8] = b"ringops-compiled 1\n";

/// One cached compile of one ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    /// Names of the secrets the compile looked up, sorted.
    pub secret_names: Vec<String>,
    /// Digest of what each of those names resolved to.
    pub secrets_digest: String,
    /// Every ring the bundle defines, in name order.
    pub rings: Vec<String>,
    /// The compiled ring.
    pub state: DesiredState,
}

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The state holds sensitive values, which are never cached.
    #[error("a compiled state with sensitive artifacts is never cached")]
    Sensitive,
    /// The file could not be written.
    #[error("cannot write the compiled-state cache {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The cache folder of one state folder.
#[derive(Clone, Debug)]
pub struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    /// The cache under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("cache").join("compiled"),
        }
    }

    /// The entry named `key` (hex), if it is there and sound; marks it recently used.
    pub fn read(&self, key: &str) -> Option<Cached> {
        let path = self.dir.join(key);
        let bytes = fs::read(&path).ok()?;
        let cached = decode(&bytes)?;
        if let Ok(file) = fs::File::options().write(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        Some(cached)
    }

    /// Stores `cached` as `key` (hex), then drops all but the [`KEEP`] newest entries.
    pub fn write(&self, key: &str, cached: &Cached) -> Result<(), CacheError> {
        if holds_sensitive(&cached.state) {
            return Err(CacheError::Sensitive);
        }
        store_file(&self.dir, key, &encode(cached))
    }
}

/// Writes `bytes` as `dir/key` (a private folder) in one rename, then drops all but
/// the [`KEEP`] most recently used files of `dir` (best effort).
pub(super) fn store_file(dir: &Path, key: &str, bytes: &[u8]) -> Result<(), CacheError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CacheError::Io { path, source }
    };
    create_private_dir(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    let path = dir.join(key);
    tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
    evict(dir);
    Ok(())
}

/// Removes all but the [`KEEP`] most recently used files of `dir`; best effort.
fn evict(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(KEEP) {
        let _ = fs::remove_file(path);
    }
}

/// True when any artifact holds, hides or digests a sensitive value.
pub fn holds_sensitive(state: &DesiredState) -> bool {
    state
        .workers
        .values()
        .flat_map(|w| w.artifacts.values())
        .any(|a| !a.sensitive.is_empty() || a.shown.is_some() || a.hidden_digest.is_some())
}

/// Creates the folder and its parents, the last one private to the owner.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The entry's bytes: [`MAGIC`], the body, and the body's sha256.
fn encode(cached: &Cached) -> Vec<u8> {
    let mut out = Encoder(MAGIC.to_vec());
    out.strs(&cached.secret_names);
    out.str(&cached.secrets_digest);
    out.strs(&cached.rings);
    out.str(&cached.state.ring);
    let sources = source_lists(&cached.state);
    out.len(sources.len());
    for list in &sources {
        out.strs(list);
    }
    let index: HashMap<&[String], usize> = sources
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_slice(), i))
        .collect();
    out.len(cached.state.workers.len());
    for (name, worker) in &cached.state.workers {
        out.str(name);
        out.worker(worker, &index);
    }
    let digest = Sha256::digest(&out.0);
    out.0.extend_from_slice(&digest);
    out.0
}

/// Every distinct artifact source list, in first-seen order.
fn source_lists(state: &DesiredState) -> Vec<Vec<String>> {
    let mut seen: HashMap<&[String], ()> = HashMap::new();
    let mut lists = Vec::new();
    for a in state.workers.values().flat_map(|w| w.artifacts.values()) {
        if seen.insert(&a.sources, ()).is_none() {
            lists.push(a.sources.clone());
        }
    }
    lists
}

/// Length-prefixed (u32, little-endian) fields.
pub(super) struct Encoder(pub(super) Vec<u8>);

impl Encoder {
    pub(super) fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    pub(super) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    pub(super) fn strs(&mut self, list: &[String]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
            None => self.0.push(0),
        }
    }

    fn hook(&mut self, hook: Option<&WorkerHook>) {
        let json = hook.and_then(|h| serde_json::to_string(h).ok());
        self.opt(json.as_deref());
    }

    fn worker(&mut self, w: &WorkerState, sources: &HashMap<&[String], usize>) {
        self.str(&w.group);
        self.opt(w.address.as_deref());
        self.opt(w.target.as_ref().map(ToString::to_string).as_deref());
        self.hook(w.check.as_ref());
        self.hook(w.reload.as_ref());
        self.len(w.artifacts.len());
        for (path, a) in &w.artifacts {
            self.str(path);
            self.str(&a.content);
            self.str(&a.sha256);
            self.len(sources.get(a.sources.as_slice()).copied().unwrap_or(0));
        }
    }
}

/// The entry in `bytes`, or `None` when it is not a sound entry of this format. The
/// checksum is verified while the body is decoded (the decoder is bounds-checked at
/// every field, so damaged bytes only fail it); a body that does not match is dropped.
fn decode(bytes: &[u8]) -> Option<Cached> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    let rest = body.strip_prefix(MAGIC)?;
    let (sound, cached) = rayon::join(
        || Sha256::digest(body).as_slice() == digest,
        || decode_body(rest),
    );
    cached.filter(|_| sound)
}

/// The fields after [`MAGIC`], as [`Encoder`] wrote them.
fn decode_body(body: &[u8]) -> Option<Cached> {
    let mut d = Decoder(body);
    let secret_names = d.strs()?;
    let secrets_digest = d.string()?;
    let rings = d.strs()?;
    let ring = d.string()?;
    let lists: Vec<Vec<String>> = (0..d.len()?).map(|_| d.strs()).collect::<Option<_>>()?;
    let mut workers = BTreeMap::new();
    for _ in 0..d.len()? {
        let name = d.string()?;
        workers.insert(name, d.worker(&lists)?);
    }
    d.0.is_empty().then_some(Cached {
        secret_names,
        secrets_digest,
        rings,
        state: DesiredState { ring, workers },
    })
}

/// Reads what [`Encoder`] wrote; `None` past the end or on a malformed field.
pub(super) struct Decoder<'b>(pub(super) &'b [u8]);

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(super) fn len(&mut self) -> Option<usize> {
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    }

    fn str(&mut self) -> Option<&str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    pub(super) fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    pub(super) fn strs(&mut self) -> Option<Vec<String>> {
        (0..self.len()?).map(|_| self.string()).collect()
    }

    fn opt(&mut self) -> Option<Option<String>> {
        match self.take(1)? {
            [0] => Some(None),
            [1] => self.string().map(Some),
            _ => None,
        }
    }

    fn hook(&mut self) -> Option<Option<WorkerHook>> {
        match self.opt()? {
            Some(json) => serde_json::from_str(&json).ok().map(Some),
            None => Some(None),
        }
    }

    fn worker(&mut self, lists: &[Vec<String>]) -> Option<WorkerState> {
        let group = self.string()?;
        let (address, target) = (self.opt()?, self.opt()?);
        let target = match target {
            Some(text) => Some(text.parse().ok()?),
            None => None,
        };
        let (check, reload) = (self.hook()?, self.hook()?);
        let mut artifacts = BTreeMap::new();
        for _ in 0..self.len()? {
            let path = self.string()?;
            let artifact = Artifact {
                content: self.str()?.into(),
                sha256: self.string()?,
                sources: lists.get(self.len()?)?.clone(),
                sensitive: Vec::new(),
                shown: None,
                hidden_digest: None,
            };
            artifacts.insert(path, artifact);
        }
        Some(WorkerState {
            group,
            address,
            target,
            artifacts,
            check,
            reload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cached {
        let artifact = Artifact::new("a=1\n".to_owned(), vec!["m/wf.yaml".to_owned()], vec![]);
        let worker = WorkerState {
            group: "edge".to_owned(),
            address: Some("10.0.0.1".to_owned()),
            target: None,
            artifacts: BTreeMap::from([("wf/job/a.conf".to_owned(), artifact)]),
            check: Some(WorkerHook::Command(crate::model::desired::HookSpec {
                command: vec!["true".to_owned()],
                timeout: std::time::Duration::from_millis(1500),
            })),
            reload: Some(WorkerHook::Named {
                hook: "reload-jobs".to_owned(),
            }),
        };
        Cached {
            secret_names: vec!["token".to_owned()],
            secrets_digest: "d".repeat(64),
            rings: vec!["dev".to_owned(), "prod".to_owned()],
            state: DesiredState {
                ring: "dev".to_owned(),
                workers: BTreeMap::from([("e1".to_owned(), worker)]),
            },
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompiledCache::new(dir.path());
        cache.write("k", &sample()).expect("write");
        assert_eq!(cache.read("k"), Some(sample()));
        assert_eq!(cache.read("other"), None);
    }

    #[test]
    fn a_damaged_entry_is_a_miss() {
        let mut bytes = encode(&sample());
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        // The damage leaves a well-formed body: only the checksum tells.
        assert!(decode_body(&bytes[MAGIC.len()..bytes.len() - 32]).is_some());
        assert_eq!(decode(&bytes), None);
        assert_eq!(decode(&bytes[..10]), None);
    }

    #[test]
    fn sensitive_states_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompiledCache::new(dir.path());
        let mut cached = sample();
        for w in cached.state.workers.values_mut() {
            for a in w.artifacts.values_mut() {
                a.sensitive = vec!["hunter2".to_owned()];
            }
        }
        assert!(matches!(
            cache.write("k", &cached),
            Err(CacheError::Sensitive)
        ));
        assert_eq!(cache.read("k"), None);
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompiledCache::new(dir.path());
        for i in 0..KEEP + 2 {
            cache.write(&format!("k{i}"), &sample()).expect("write");
            // Older entries look older, whatever the filesystem's time resolution.
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            let file = fs::File::options()
                .write(true)
                .open(dir.path().join("cache/compiled").join(format!("k{i}")))
                .expect("entry");
            file.set_modified(at).expect("mtime");
        }
        let left = fs::read_dir(dir.path().join("cache/compiled"))
            .expect("dir")
            .count();
        assert_eq!(left, KEEP);
        assert!(cache.read(&format!("k{}", KEEP + 1)).is_some());
    }
}
