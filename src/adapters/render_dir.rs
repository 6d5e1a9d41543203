//! Writes a ring's desired artifacts under a folder for people to inspect:
//! `DIR/<worker>/<workflow>/<job>/<file>`.

use crate::model::DesiredState;
use crate::pipeline::checks::{artifact_path_problem, is_valid_name};
use std::path::{Path, PathBuf};

/// Marker file that says a folder holds ringops render output and may be replaced.
pub const MARKER: &str = ".ringops-render";

/// Why render output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderDirError {
    /// The folder holds files ringops did not write.
    #[error(
        "{0} is not empty and was not written by `ringops render`; choose an empty or new folder"
    )]
    NotOurs(PathBuf),
    /// A path would leave the folder.
    #[error("refusing to write `{0}`: it would leave the output folder")]
    Unsafe(String),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Writes every worker's artifacts under `out`, replacing an earlier render there.
/// Returns the number of files written.
pub fn write(out: &Path, state: &DesiredState) -> Result<usize, RenderDirError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RenderDirError::Io { path, source }
    };
    prepare(out)?;
    std::fs::write(out.join(MARKER), format!("ring: {}\n", state.ring)).map_err(io(out))?;
    let mut count = 0;
    for (worker, ws) in &state.workers {
        if !is_valid_name(worker) {
            return Err(RenderDirError::Unsafe(worker.clone()));
        }
        std::fs::create_dir_all(out.join(worker)).map_err(io(out))?;
        for (path, artifact) in &ws.artifacts {
            if artifact_path_problem(path).is_some() {
                return Err(RenderDirError::Unsafe(format!("{worker}/{path}")));
            }
            let target = out.join(worker).join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&target, &artifact.content).map_err(io(&target))?;
            count += 1;
        }
    }
    Ok(count)
}

/// Makes `out` an empty folder, refusing to clear one ringops did not write.
fn prepare(out: &Path) -> Result<(), RenderDirError> {
    let io = |source| RenderDirError::Io {
        path: out.to_owned(),
        source,
    };
    match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(io)
        }
        Err(e) => Err(io(e)),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
            if !out.join(MARKER).is_file() {
                return Err(RenderDirError::NotOurs(out.to_owned()));
            }
            for entry in std::fs::read_dir(out).map_err(io)? {
                let path = entry.map_err(io)?.path();
                let result = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                result.map_err(io)?;
            }
            Ok(())
        }
    }
}
