//! What the agent remembers across restarts: the last generation it applied (every
//! file's bytes, the generation it produced, its deployment and drift mode), kept in
//! `.ringops/agent.json` next to `managed.json`. Written atomically
//! ([`WorkerDir::write_record`]), so a restarted agent heals hot edits at once,
//! before the daemon sends anything. A memory whose generation is not the directory's
//! is kept but never put back (self-heal compares the generations).
//!
//! Reads and writes only that file.

use crate::adapters::link::http::wire::{DriftMode, WireFile};
use crate::adapters::worker_dir::{Batch, FileSpec, RESERVED, WorkerDir, WorkerDirError};
use crate::model::desired::sha256_hex;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's name under `.ringops/`.
pub const FILE: &str = "agent.json";

/// The version of the file this code writes.
const FORMAT_VERSION: u32 = 1;

/// Why the memory cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the file into the worker directory failed.
    #[error(transparent)]
    Write(#[from] WorkerDirError),
    /// The file is not a memory this build understands.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The file's document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format_version: u32,
    deployment: String,
    generation: u64,
    drift_mode: DriftMode,
    files: BTreeMap<String, WireFile>,
}

/// What the agent remembers: the last generation, its `expected_generation` set to the
/// generation it produced, and the drift mode that came with it.
#[derive(Clone, Debug)]
pub struct Remembered {
    /// The last generation applied.
    pub batch: Batch,
    /// What to do about hot edits.
    pub drift_mode: DriftMode,
}

/// The memory file of the worker directory `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join(RESERVED).join(FILE)
}

/// Writes the memory of `root` as a whole, replacing the old one atomically.
pub fn save(root: &Path, remembered: &Remembered) -> Result<(), MemoryError> {
    let file = path(root);
    let engine = base64::engine::general_purpose::STANDARD;
    let batch = &remembered.batch;
    let doc = Document {
        format_version: FORMAT_VERSION,
        deployment: batch.deployment.clone(),
        generation: batch.expected_generation.unwrap_or_default(),
        drift_mode: remembered.drift_mode,
        files: batch
            .files
            .iter()
            .map(|(p, f)| {
                let wire = WireFile {
                    content: engine.encode(&f.content),
                    sha256: f.sha256.clone(),
                    mode: f.mode,
                };
                (p.clone(), wire)
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&doc).map_err(|e| MemoryError::Invalid {
        path: file.clone(),
        problem: e.to_string(),
    })?;
    WorkerDir::new(root).write_record(FILE, &bytes)?;
    Ok(())
}

/// The memory of `root`; `None` when the agent never applied a generation there.
pub fn load(root: &Path) -> Result<Option<Remembered>, MemoryError> {
    let file = path(root);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MemoryError::Io { path: file, source }),
    };
    let invalid = |problem: String| MemoryError::Invalid {
        path: file.clone(),
        problem,
    };
    let doc: Document = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if doc.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            doc.format_version
        )));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut files = BTreeMap::new();
    for (p, wire) in doc.files {
        let content = engine
            .decode(wire.content.as_bytes())
            .map_err(|e| invalid(format!("content of `{p}` is not base64: {e}")))?;
        if sha256_hex(&content) != wire.sha256 {
            return Err(invalid(format!(
                "content of `{p}` does not match its sha256"
            )));
        }
        files.insert(p, FileSpec::new(content, wire.mode));
    }
    Ok(Some(Remembered {
        batch: Batch {
            deployment: doc.deployment,
            expected_generation: Some(doc.generation),
            files,
        },
        drift_mode: doc.drift_mode,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(mode: DriftMode) -> Remembered {
        let mut files = BTreeMap::new();
        files.insert(
            "w/j/a.yml".to_owned(),
            FileSpec::new(b"a: 1\n".to_vec(), 0o600),
        );
        Remembered {
            batch: Batch {
                deployment: "d-000003".to_owned(),
                expected_generation: Some(7),
                files,
            },
            drift_mode: mode,
        }
    }

    #[test]
    fn a_saved_memory_loads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &remembered(DriftMode::Report)).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back.drift_mode, DriftMode::Report);
        assert_eq!(back.batch.deployment, "d-000003");
        assert_eq!(back.batch.expected_generation, Some(7));
        let file = &back.batch.files["w/j/a.yml"];
        assert_eq!((&*file.content, file.mode), (&b"a: 1\n"[..], 0o600));
        assert!(!dir.path().join(RESERVED).join("agent.json.tmp").exists());
    }

    #[test]
    fn a_tampered_memory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &remembered(DriftMode::Revert)).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        let tampered = text.replace(&engine.encode(b"a: 1\n"), &engine.encode(b"a: 2\n"));
        std::fs::write(path(dir.path()), tampered).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("does not match its sha256"), "{e}");
    }
}
