//! Why a worker directory could not be read or switched.

use std::path::{Path, PathBuf};

/// A failure of [`super::WorkerDir`]. Every variant names the worker directory; most
/// name the worker-relative path too.
#[derive(Debug, thiserror::Error)]
pub enum WorkerDirError {
    /// An artifact path is not of the form `<workflow>/<job>/<file>` or would leave its
    /// job folder.
    #[error("worker directory {root}: refusing artifact path `{path}`: {problem}")]
    InvalidPath {
        /// The worker directory.
        root: PathBuf,
        /// The worker-relative path.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// One artifact of the batch stands where another needs a folder.
    #[error(
        "worker directory {root}: cannot write `{path}`: `{file}` is also an artifact, a file where a folder must go"
    )]
    Collision {
        /// The worker directory.
        root: PathBuf,
        /// The artifact that cannot be written.
        path: String,
        /// The artifact in its way.
        file: String,
    },
    /// A file mode with bits beyond `0o777` (setuid, setgid, sticky).
    #[error("worker directory {root}: refusing mode {mode:#o} for `{path}`: at most 0o777")]
    InvalidMode {
        /// The worker directory.
        root: PathBuf,
        /// The worker-relative path.
        path: String,
        /// The mode asked for.
        mode: u32,
    },
    /// The content given for a file does not hash to the sha256 given with it.
    #[error(
        "worker directory {root}: content for `{path}` has sha256 {actual}, not the expected {expected}"
    )]
    ShaMismatch {
        /// The worker directory.
        root: PathBuf,
        /// The worker-relative path.
        path: String,
        /// The sha256 the batch claims.
        expected: String,
        /// The sha256 of the content.
        actual: String,
    },
    /// The worker changed since the batch was planned.
    #[error(
        "worker directory {root} is at generation {found}, not {expected} as planned; plan again"
    )]
    GenerationMismatch {
        /// The worker directory.
        root: PathBuf,
        /// The generation the batch was planned against.
        expected: u64,
        /// The generation on disk.
        found: u64,
    },
    /// The worker directory itself is a symbolic link; ringops never follows one.
    #[error(
        "worker directory {root} is a symbolic link (to {target}), which ringops does not follow; give the worker the real folder (`target: \"dir:/real/path\"`)"
    )]
    RootIsLink {
        /// The worker directory.
        root: PathBuf,
        /// Where the link points.
        target: String,
    },
    /// A folder on the way to a path is a symbolic link; ringops never follows one.
    #[error(
        "worker directory {root}: refusing to write or remove `{path}`: `{link}` is a symbolic link, which ringops does not follow"
    )]
    SymlinkInPath {
        /// The worker directory.
        root: PathBuf,
        /// The worker-relative path to write or remove.
        path: String,
        /// The worker-relative link on the way.
        link: String,
    },
    /// Something ringops does not manage stands where an artifact must go.
    #[error("worker directory {root}: cannot write `{path}`: {what}; move it away or remove it")]
    InTheWay {
        /// The worker directory.
        root: PathBuf,
        /// The worker-relative path to write.
        path: String,
        /// What stands there, e.g. "an unmanaged file with other content is there".
        what: String,
    },
    /// Another process is switching this worker directory right now.
    #[error("worker directory {root} is being changed by another process (lock {lock})")]
    Busy {
        /// The worker directory.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// `managed.json` or the journal cannot be understood.
    #[error("worker directory {root}: {file} is damaged: {problem}")]
    Corrupt {
        /// The worker directory.
        root: PathBuf,
        /// The damaged file.
        file: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading or writing failed. The cause is printed by whoever shows the error chain.
    #[error("worker directory {root}: cannot access {path}")]
    Io {
        /// The worker directory.
        root: PathBuf,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl WorkerDirError {
    /// True when the user can fix it by changing the manifests, the worker directory's
    /// contents or by planning again; false for disk failures and damaged records.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            WorkerDirError::InvalidPath { .. }
                | WorkerDirError::Collision { .. }
                | WorkerDirError::InvalidMode { .. }
                | WorkerDirError::GenerationMismatch { .. }
                | WorkerDirError::SymlinkInPath { .. }
                | WorkerDirError::RootIsLink { .. }
                | WorkerDirError::InTheWay { .. }
        )
    }

    /// True when trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WorkerDirError::Busy { .. } | WorkerDirError::Io { .. }
        )
    }

    pub(super) fn io(root: &Path, path: &Path, source: std::io::Error) -> Self {
        WorkerDirError::Io {
            root: root.to_owned(),
            path: path.to_owned(),
            source,
        }
    }
}
