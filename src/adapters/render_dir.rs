//! Writes a ring's desired artifacts under a folder for people to inspect:
//! `DIR/<worker>/<workflow>/<job>/<file>`. Artifacts may hold secret values, so every
//! folder ringops creates is private to its owner (0o700) and every file 0o600.

use crate::model::DesiredState;
use crate::pipeline::checks::{artifact_path_problem, is_valid_name};
use std::io::{ErrorKind, Write};
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
    /// The output folder is a file.
    #[error("{0} is a file, not a folder; choose an empty or new folder")]
    NotAFolder(PathBuf),
    /// A folder above the output folder is a file.
    #[error("cannot create folder {folder}: {file} is a file, not a folder")]
    FileInTheWay {
        /// The folder that was to be created.
        folder: PathBuf,
        /// The file standing where a folder must go.
        file: PathBuf,
    },
    /// A path would leave the folder.
    #[error("refusing to write `{0}`: it would leave the output folder")]
    Unsafe(String),
    /// One artifact's path goes through another artifact, which is a file.
    #[error(
        "cannot write `{worker}/{path}`: `{worker}/{file}` is also an artifact, a file where a folder must go"
    )]
    Collision {
        /// The worker.
        worker: String,
        /// The artifact that cannot be written.
        path: String,
        /// The artifact in its way.
        file: String,
    },
    /// Writing failed. The cause is printed by whoever shows the error chain.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl RenderDirError {
    /// True when the user can fix it by changing what they asked for (the folder or the
    /// manifests); false for failures of the disk underneath.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, RenderDirError::Io { .. })
    }
}

/// Writes every worker's artifacts under `out`, replacing an earlier render there.
/// Nothing is touched unless every artifact path is safe. Returns the number of files
/// written.
pub fn write(out: &Path, state: &DesiredState) -> Result<usize, RenderDirError> {
    check(state)?;
    prepare(out)?;
    write_file(
        &out.join(MARKER),
        format!("ring: {}\n", state.ring).as_bytes(),
    )?;
    let mut count = 0;
    for (worker, ws) in &state.workers {
        create_dirs(&out.join(worker))?;
        for (path, artifact) in &ws.artifacts {
            let target = out.join(worker).join(path);
            if let Some(parent) = target.parent() {
                create_dirs(parent)?;
            }
            write_file(&target, artifact.content.as_bytes())?;
            count += 1;
        }
    }
    Ok(count)
}

/// Every worker name and artifact path stays inside the folder, and no artifact
/// stands where another one needs a folder.
fn check(state: &DesiredState) -> Result<(), RenderDirError> {
    for (worker, ws) in &state.workers {
        if !is_valid_name(worker) {
            return Err(RenderDirError::Unsafe(worker.clone()));
        }
        for path in ws.artifacts.keys() {
            if artifact_path_problem(path).is_some() {
                return Err(RenderDirError::Unsafe(format!("{worker}/{path}")));
            }
            let mut folders = path.match_indices('/').map(|(i, _)| &path[..i]);
            if let Some(file) = folders.find(|f| ws.artifacts.contains_key(*f)) {
                return Err(RenderDirError::Collision {
                    worker: worker.clone(),
                    path: path.clone(),
                    file: file.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Makes `out` an empty folder, refusing to clear one ringops did not write.
fn prepare(out: &Path) -> Result<(), RenderDirError> {
    let io = |source| RenderDirError::Io {
        path: out.to_owned(),
        source,
    };
    match std::fs::metadata(out) {
        Ok(meta) if !meta.is_dir() => return Err(RenderDirError::NotAFolder(out.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return create_dirs(out),
        Err(e) => return Err(dir_error(out, e)),
    }
    let mut entries = std::fs::read_dir(out).map_err(io)?;
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
        result.map_err(|source| RenderDirError::Io { path, source })?;
    }
    // An earlier render (perhaps by a version that did not restrict modes) is ours.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Creates a folder and its missing parents, private to the owner.
fn create_dirs(dir: &Path) -> Result<(), RenderDirError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| dir_error(dir, e))
}

/// Creates a file readable by its owner only; the folder was emptied, so the file is new
/// (and a link planted in its place is not followed).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RenderDirError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|source| RenderDirError::Io {
            path: path.to_owned(),
            source,
        })
}

/// A failure to reach or create folder `dir`: a file standing at `dir` or above it is
/// named as such; anything else is an IO error.
fn dir_error(dir: &Path, source: std::io::Error) -> RenderDirError {
    if matches!(
        source.kind(),
        ErrorKind::NotADirectory | ErrorKind::AlreadyExists
    ) {
        let file = dir
            .ancestors()
            .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()));
        match file {
            Some(file) if file == dir => return RenderDirError::NotAFolder(dir.to_owned()),
            Some(file) => {
                return RenderDirError::FileInTheWay {
                    folder: dir.to_owned(),
                    file: file.to_owned(),
                };
            }
            None => {}
        }
    }
    RenderDirError::Io {
        path: dir.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Artifact, WorkerState};

    fn state(paths: &[&str]) -> DesiredState {
        let artifacts = paths
            .iter()
            .map(|p| (p.to_string(), Artifact::new("x\n".into(), vec![], vec![])))
            .collect();
        let worker = WorkerState {
            artifacts,
            ..WorkerState::default()
        };
        DesiredState {
            ring: "dev".into(),
            workers: [("core-1".to_owned(), worker)].into(),
        }
    }

    #[test]
    fn an_artifact_in_the_way_of_another_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = write(&out, &state(&["wf/s/a", "wf/s/a.txt", "wf/s/a/b/c"])).unwrap_err();
        assert!(err.is_user_error());
        assert_eq!(
            err.to_string(),
            "cannot write `core-1/wf/s/a/b/c`: `core-1/wf/s/a` is also an artifact, a file where a folder must go"
        );
        assert!(!out.exists(), "nothing written");
        assert_eq!(write(&out, &state(&["wf/s/a", "wf/s/a.d/b"])).unwrap(), 2);
    }

    #[test]
    fn a_file_where_the_output_folder_goes_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "mine").unwrap();
        let err = write(&file, &state(&["wf/s/a"])).unwrap_err();
        assert!(
            matches!(&err, RenderDirError::NotAFolder(p) if *p == file),
            "{err:?}"
        );
        let below = file.join("sub/out");
        let err = write(&below, &state(&["wf/s/a"])).unwrap_err();
        assert!(
            matches!(&err, RenderDirError::FileInTheWay { folder, file: f } if *folder == below && *f == file),
            "{err:?}"
        );
        assert!(err.is_user_error());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }
}
