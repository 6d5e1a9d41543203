//! Git source: reads the manifest folder at a revision (or in the work tree) into a
//! [`Bundle`]. With [`mirror`], the only module that uses git2.

pub mod mirror;

use crate::model::Bundle;
use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No repository at or above the directory.
    #[error("no Git repository at or above {path}: {message}")]
    NotARepository {
        /// Directory searched from.
        path: PathBuf,
        /// git2's explanation.
        message: String,
    },
    /// The process or the system had no file descriptor left to open it with.
    #[error(
        "cannot open the Git repository at or above {path}: {message} (an open-file limit is reached; the repository itself may be fine)"
    )]
    TooManyOpenFiles {
        /// Directory searched from.
        path: PathBuf,
        /// The failure, which says "Too many open files".
        message: String,
    },
    /// The revision does not name a commit.
    #[error("revision `{rev}` does not name a commit: {message}")]
    BadRevision {
        /// The revision as given.
        rev: String,
        /// git2's explanation.
        message: String,
    },
    /// The manifest folder is not a folder inside the repository.
    #[error("manifest path `{path}` {problem}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The repository has no work tree.
    #[error("repository at {0} has no work tree; use --rev instead of --worktree")]
    Bare(PathBuf),
    /// Reading Git objects failed. The cause is printed by whoever shows the error chain.
    #[error("cannot read Git objects")]
    Git(#[from] git2::Error),
    /// Reading a work-tree file failed. The cause is printed by whoever shows the chain.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl SourceError {
    /// True when the user can fix it by changing what they asked for.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            SourceError::Git(_) | SourceError::Io { .. } | SourceError::TooManyOpenFiles { .. }
        )
    }
}

/// A Git repository holding manifests.
pub struct Source {
    repo: Repository,
    blobs: BlobMemo,
}

/// Why the repository at or above `dir` cannot be opened, from git2's error and
/// `probe` (an open tried right after it failed): out of file descriptors when either
/// says so (libgit2 may word it as a missing repository), else not a repository.
fn open_error(dir: &Path, e: &git2::Error, probe: Option<std::io::Error>) -> SourceError {
    // strerror(EMFILE) and strerror(ENFILE) both start so.
    let exhausted = e.message().contains("Too many open files");
    match probe {
        Some(probe) => SourceError::TooManyOpenFiles {
            path: dir.to_owned(),
            message: probe.to_string(),
        },
        None if exhausted => SourceError::TooManyOpenFiles {
            path: dir.to_owned(),
            message: e.message().to_owned(),
        },
        None => SourceError::NotARepository {
            path: dir.to_owned(),
            message: e.message().to_owned(),
        },
    }
}

/// The error of opening `dir` when it fails for want of file descriptors.
fn fd_probe(dir: &Path) -> Option<std::io::Error> {
    std::fs::File::open(dir)
        .err()
        .filter(super::is_fd_exhaustion)
}

/// Blob contents already read, by blob id, shared by the [`Source`]s of one command: a
/// command that reads two commits of the same repository (the Active one and the one
/// deployed) inflates each blob once. Blobs are immutable, so an entry is never stale.
#[derive(Clone, Debug, Default)]
pub struct BlobMemo(Arc<Mutex<HashMap<git2::Oid, Arc<[u8]>>>>);

impl BlobMemo {
    fn get(&self, id: git2::Oid) -> Option<Arc<[u8]>> {
        self.lock().get(&id).cloned()
    }

    fn insert(&self, id: git2::Oid, bytes: Arc<[u8]>) {
        self.lock().insert(id, bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<git2::Oid, Arc<[u8]>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Source {
    /// Opens the repository at or above `dir`.
    pub fn open(dir: &Path) -> Result<Self, SourceError> {
        let repo = Repository::discover(dir).map_err(|e| open_error(dir, &e, fd_probe(dir)))?;
        Ok(Source {
            repo,
            blobs: BlobMemo::default(),
        })
    }

    /// This source, reading blobs through `blobs` (shared with other sources).
    pub fn with_blobs(self, blobs: BlobMemo) -> Self {
        Self { blobs, ..self }
    }

    /// The repository's Git folder (`.git`, or the repository itself when bare).
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// The full commit id a revision names.
    pub fn resolve(&self, rev: &str) -> Result<String, SourceError> {
        let commit = self
            .repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| SourceError::BadRevision {
                rev: rev.to_owned(),
                message: e.message().to_owned(),
            })?;
        Ok(commit.id().to_string())
    }

    /// The manifests under `path` at `rev`. A path missing at that commit gives an empty bundle.
    pub fn bundle_at(&self, rev: &str, path: &str) -> Result<Bundle, SourceError> {
        let root = normalize(path)?;
        let commit_id = self.resolve(rev)?;
        let tree = self.manifest_tree(&commit_id, &root)?;
        let mut bundle = Bundle {
            commit: Some(commit_id),
            root: root.clone(),
            ..Bundle::default()
        };
        if let Some(tree) = tree {
            bundle.tree = Some(tree.id().to_string());
            bundle.files = self.read_blobs(blob_ids(&tree, &root)?)?;
        }
        Ok(bundle)
    }

    /// The files under `path` whose content differs between `base` and `head` (added,
    /// removed or edited), as [`Bundle::changed_files`] of their bundles says, found
    /// from the trees' blob ids without reading a blob.
    pub fn changed_files(
        &self,
        base: &str,
        head: &str,
        path: &str,
    ) -> Result<BTreeSet<String>, SourceError> {
        let root = normalize(path)?;
        let ids = |rev: &str| -> Result<BTreeMap<String, git2::Oid>, SourceError> {
            let commit_id = self.resolve(rev)?;
            match self.manifest_tree(&commit_id, &root)? {
                Some(tree) => Ok(blob_ids(&tree, &root)?.into_iter().collect()),
                None => Ok(BTreeMap::new()),
            }
        };
        let (base, head) = (ids(base)?, ids(head)?);
        let mut changed: BTreeSet<String> = base
            .iter()
            .filter(|(path, id)| head.get(*path) != Some(id))
            .map(|(path, _)| path.clone())
            .collect();
        changed.extend(head.into_keys().filter(|path| !base.contains_key(path)));
        Ok(changed)
    }

    /// The tree of the manifest folder `root` at a commit; `None` when it is missing.
    fn manifest_tree(
        &self,
        commit_id: &str,
        root: &str,
    ) -> Result<Option<git2::Tree<'_>>, SourceError> {
        let commit = self.repo.find_commit(git2::Oid::from_str(commit_id)?)?;
        let top = commit.tree()?;
        if root.is_empty() {
            return Ok(Some(top));
        }
        match top.get_path(Path::new(root)) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                Ok(Some(self.repo.find_tree(entry.id())?))
            }
            Ok(_) => Err(SourceError::BadPath {
                path: root.to_owned(),
                problem: "is a file, not a folder",
            }),
            Err(_) => Ok(None),
        }
    }

    /// The content of each blob, by path; blobs read before come from the memo.
    fn read_blobs(
        &self,
        ids: Vec<(String, git2::Oid)>,
    ) -> Result<BTreeMap<String, Vec<u8>>, SourceError> {
        let mut files = BTreeMap::new();
        for (path, id) in ids {
            let bytes = match self.blobs.get(id) {
                Some(bytes) => bytes,
                None => {
                    let bytes: Arc<[u8]> = self.repo.find_blob(id)?.content().into();
                    self.blobs.insert(id, Arc::clone(&bytes));
                    bytes
                }
            };
            files.insert(path, bytes.to_vec());
        }
        Ok(files)
    }

    /// The manifests under `path` as they are in the work tree, ignored files left out.
    pub fn bundle_worktree(&self, path: &str) -> Result<Bundle, SourceError> {
        let root = normalize(path)?;
        let workdir = self
            .repo
            .workdir()
            .ok_or_else(|| SourceError::Bare(self.repo.path().to_owned()))?
            .to_owned();
        let mut files = BTreeMap::new();
        let start = workdir.join(&root);
        if start.is_dir() {
            self.walk(&workdir, &start, &mut files)?;
        }
        Ok(Bundle {
            commit: None,
            tree: None,
            root,
            files,
        })
    }

    fn walk(
        &self,
        workdir: &Path,
        dir: &Path,
        files: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<(), SourceError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SourceError::Io { path, source }
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(workdir) else {
                continue;
            };
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            if entry.file_name() == ".git" || self.repo.is_path_ignored(rel).unwrap_or(false) {
                continue;
            }
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                self.walk(workdir, &path, files)?;
            } else if kind.is_file() {
                files.insert(rel_str, std::fs::read(&path).map_err(io(&path))?);
            }
        }
        Ok(())
    }
}

/// Every regular file below `tree` (symlinks and submodules are not manifests), by
/// repository-relative path, with its blob id.
fn blob_ids(tree: &git2::Tree<'_>, root: &str) -> Result<Vec<(String, git2::Oid)>, SourceError> {
    let mut blobs = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let regular =
            entry.kind() == Some(ObjectType::Blob) && entry.filemode() & 0o170000 == 0o100000;
        if regular && let Ok(name) = entry.name() {
            blobs.push((join(root, &format!("{dir}{name}")), entry.id()));
        }
        TreeWalkResult::Ok
    })?;
    Ok(blobs)
}

fn join(root: &str, rel: &str) -> String {
    if root.is_empty() {
        rel.to_owned()
    } else {
        format!("{root}/{rel}")
    }
}

/// `examples/fleet/` → `examples/fleet`; `.` → ``; refuses absolute paths and `..`.
fn normalize(path: &str) -> Result<String, SourceError> {
    if path.starts_with('/') {
        return Err(SourceError::BadPath {
            path: path.to_owned(),
            problem: "must be relative to the repository root",
        });
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(SourceError::BadPath {
            path: path.to_owned(),
            problem: "must stay inside the repository (no `..`)",
        });
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_that_ran_out_of_file_descriptors_says_so() {
        let dir = Path::new("/srv/git/fleet.git");
        let missing = git2::Error::from_str("could not find repository at '/srv/git/fleet.git'");
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = std::io::Error::from_raw_os_error(libc::ENFILE);
        let worded = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Os,
            "failed to open '/srv/git/fleet.git/HEAD': Too many open files",
        );
        let messages = [
            open_error(dir, &missing, Some(emfile)),
            open_error(dir, &missing, Some(enfile)),
            open_error(dir, &worded, None),
            open_error(dir, &missing, None),
        ]
        .map(|e| format!("{e} (user error: {})", e.is_user_error()));
        insta::assert_snapshot!("open-errors", messages.join("\n"));
    }

    /// Commits `files` (path → content; `None` for a symbolic link to `a.yaml`) as the
    /// whole tree, returning the commit id.
    fn commit(
        repo: &Repository,
        files: &[(&str, Option<&str>)],
        parent: Option<git2::Oid>,
    ) -> String {
        let mut index = git2::Index::new().unwrap();
        for (path, content) in files {
            let (bytes, mode) = match content {
                Some(c) => (c.as_bytes(), 0o100644),
                None => ("a.yaml".as_bytes(), 0o120000),
            };
            let id = repo.blob(bytes).unwrap();
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                file_size: 0,
                id,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            entry.flags = u16::try_from(path.len()).unwrap();
            index.add(&entry).unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "c", &tree, &parents)
            .unwrap()
            .to_string()
    }

    #[test]
    fn changed_files_from_trees_agree_with_comparing_bundles() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let base = commit(
            &repo,
            &[
                ("a.yaml", Some("a: 1\n")),
                ("b.yaml", Some("b: 1\n")),
                ("m/c.yaml", Some("c: 1\n")),
                ("m/gone.yaml", Some("g\n")),
                ("m/link.yaml", None),
                ("same.yaml", Some("s\n")),
            ],
            None,
        );
        let head = commit(
            &repo,
            &[
                ("a.yaml", Some("a: 2\n")),
                ("m/c.yaml", Some("c: 1\n")),
                ("m/new.yaml", Some("n\n")),
                ("m/link.yaml", Some("now a file\n")),
                ("same.yaml", Some("s\n")),
            ],
            Some(git2::Oid::from_str(&base).unwrap()),
        );
        let source = Source::open(tmp.path()).unwrap();
        for path in ["", "m", "missing"] {
            let (b, h) = (
                source.bundle_at(&base, path).unwrap(),
                source.bundle_at(&head, path).unwrap(),
            );
            let from_trees = source.changed_files(&base, &head, path).unwrap();
            assert_eq!(from_trees, b.changed_files(&h), "under `{path}`");
            assert_eq!(
                source.changed_files(&head, &head, path).unwrap(),
                BTreeSet::new()
            );
        }
        let all = source.changed_files(&base, &head, "").unwrap();
        let want = [
            "a.yaml",
            "b.yaml",
            "m/gone.yaml",
            "m/link.yaml",
            "m/new.yaml",
        ];
        assert_eq!(all, want.iter().map(|s| s.to_string()).collect());

        // Blobs read through a shared memo are the same bytes as read afresh.
        let memo = BlobMemo::default();
        let first = Source::open(tmp.path()).unwrap().with_blobs(memo.clone());
        let second = Source::open(tmp.path()).unwrap().with_blobs(memo);
        first.bundle_at(&base, "").unwrap();
        let through_memo = second.bundle_at(&head, "").unwrap();
        assert_eq!(
            through_memo.files,
            source.bundle_at(&head, "").unwrap().files
        );
        assert_eq!(through_memo.files["a.yaml"], b"a: 2\n");
    }

    use super::normalize;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("examples/fleet/").unwrap(), "examples/fleet");
        assert_eq!(normalize(".").unwrap(), "");
        assert_eq!(normalize("./a//b").unwrap(), "a/b");
        assert!(normalize("../x").is_err());
        assert!(normalize("/etc").is_err());
    }
}
