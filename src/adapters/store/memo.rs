//! The incremental-compile memo: `<state_dir>/cache/memo/<key>`, one file per ring and
//! build, naming the compiled-state entry ([`super::compiled`]) whose artifacts a later
//! compile may reuse, and which workflow files that entry was compiled from.
//!
//! Owns the file format and its files; what a memo allows is the pipeline's
//! ([`crate::pipeline::incremental`]). Holds only names, paths and digests, never an
//! artifact or a secret value. Files are private to the owner, written atomically and
//! checked against a trailing sha256 when read; a damaged, foreign or unreadable file is
//! a miss. Only the [`KEEP`](super::compiled::KEEP) most recently written memos are kept.

use super::compiled::{CacheError, Decoder, Encoder, store_file};
use crate::pipeline::incremental::{Memo, MemoFile};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// First bytes of every memo, with the format version.
const MAGIC: &[u8] = b"ringops-memo 1\n";

/// The memo folder of one state folder.
#[derive(Clone, Debug)]
pub struct MemoStore {
    dir: PathBuf,
}

impl MemoStore {
    /// The memos under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("cache").join("memo"),
        }
    }

    /// The memo named `key` (hex), if it is there and sound.
    pub fn read(&self, key: &str) -> Option<Memo> {
        decode(&fs::read(self.dir.join(key)).ok()?)
    }

    /// Stores `memo` as `key` (hex), then drops all but the [`KEEP`](super::compiled::KEEP) newest memos.
    pub fn write(&self, key: &str, memo: &Memo) -> Result<(), CacheError> {
        store_file(&self.dir, key, &encode(memo))
    }
}

/// The memo's bytes: [`MAGIC`], the body, and the body's sha256.
fn encode(memo: &Memo) -> Vec<u8> {
    let mut out = Encoder(MAGIC.to_vec());
    out.str(&memo.entry);
    out.str(&memo.global);
    let overridden: Vec<String> = memo.overridden.iter().cloned().collect();
    out.strs(&overridden);
    out.len(memo.files.len());
    for (path, file) in &memo.files {
        out.str(path);
        out.str(&file.digest);
        out.strs(&file.workflows);
    }
    let digest = Sha256::digest(&out.0);
    out.0.extend_from_slice(&digest);
    out.0
}

/// The memo in `bytes`, or `None` when it is not a sound memo of this format.
fn decode(bytes: &[u8]) -> Option<Memo> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let mut d = Decoder(body.strip_prefix(MAGIC)?);
    let entry = d.string()?;
    let global = d.string()?;
    let overridden = d.strs()?.into_iter().collect();
    let mut files = BTreeMap::new();
    for _ in 0..d.len()? {
        let path = d.string()?;
        let digest = d.string()?;
        let workflows = d.strs()?;
        files.insert(path, MemoFile { digest, workflows });
    }
    d.0.is_empty().then_some(Memo {
        entry,
        global,
        overridden,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Memo {
        Memo {
            entry: "e".repeat(64),
            global: "g".repeat(64),
            overridden: ["wf-1".to_owned()].into(),
            files: BTreeMap::from([(
                "workflows/a.yaml".to_owned(),
                MemoFile {
                    digest: "d".repeat(64),
                    workflows: vec!["a".to_owned(), "b".to_owned()],
                },
            )]),
        }
    }

    #[test]
    fn a_memo_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MemoStore::new(dir.path());
        store.write("k", &sample()).expect("write");
        assert_eq!(store.read("k"), Some(sample()));
        assert_eq!(store.read("other"), None);
    }

    #[test]
    fn a_damaged_or_truncated_memo_is_a_miss() {
        let bytes = encode(&sample());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for at in [0, MAGIC.len() + 3, bytes.len() - 40, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert_eq!(decode(&damaged), None, "damage at {at}");
        }
    }
}
