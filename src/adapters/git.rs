//! Git source: reads the manifest folder at a revision (or in the work tree) into a
//! [`Bundle`]. With [`mirror`], the only module that uses git2.

pub mod mirror;

use crate::model::Bundle;
use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
        !matches!(self, SourceError::Git(_) | SourceError::Io { .. })
    }
}

/// A Git repository holding manifests.
pub struct Source {
    repo: Repository,
}

impl Source {
    /// Opens the repository at or above `dir`.
    pub fn open(dir: &Path) -> Result<Self, SourceError> {
        let repo = Repository::discover(dir).map_err(|e| SourceError::NotARepository {
            path: dir.to_owned(),
            message: e.message().to_owned(),
        })?;
        Ok(Source { repo })
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
        let commit = self.repo.find_commit(git2::Oid::from_str(&commit_id)?)?;
        let mut bundle = Bundle {
            commit: Some(commit_id),
            root: root.clone(),
            ..Bundle::default()
        };
        let top = commit.tree()?;
        let tree = if root.is_empty() {
            top
        } else {
            match top.get_path(Path::new(&root)) {
                Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                    self.repo.find_tree(entry.id())?
                }
                Ok(_) => {
                    return Err(SourceError::BadPath {
                        path: root,
                        problem: "is a file, not a folder",
                    });
                }
                Err(_) => return Ok(bundle),
            }
        };
        bundle.tree = Some(tree.id().to_string());
        bundle.files = self.read_tree(&tree, &root)?;
        Ok(bundle)
    }

    fn read_tree(
        &self,
        tree: &git2::Tree,
        root: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, SourceError> {
        let mut blobs = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            // Regular files only: symlinks (0o120000) and submodules are not manifests.
            let regular =
                entry.kind() == Some(ObjectType::Blob) && entry.filemode() & 0o170000 == 0o100000;
            if regular && let Ok(name) = entry.name() {
                blobs.push((join(root, &format!("{dir}{name}")), entry.id()));
            }
            TreeWalkResult::Ok
        })?;
        let mut files = BTreeMap::new();
        for (path, id) in blobs {
            let blob = self.repo.find_blob(id)?;
            files.insert(path, blob.content().to_vec());
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
