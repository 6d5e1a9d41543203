//! The local directory link: a [`WorkerDir`] on this host, its blocking IO run on
//! tokio's blocking pool.

use super::{Hooks, Link, LinkError, SwitchError};
use crate::adapters::hooks::HookRun;
use crate::adapters::worker_dir::{Applied, Batch, Inventory, OnDisk, RESERVED, WorkerDir};
use crate::model::desired::{HookSpec, WorkerHook};
use crate::pipeline::checks::artifact_path_problem;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A worker directory on this host.
#[derive(Clone, Debug)]
pub struct LocalDir {
    dir: WorkerDir,
}

impl LocalDir {
    /// The worker directory at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            dir: WorkerDir::new(root),
        }
    }

    /// The worker directory.
    pub fn root(&self) -> &Path {
        self.dir.root()
    }
}

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LinkError> + Send + 'static,
) -> Result<T, LinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LinkError::Task(e.to_string()))?
}

impl Link for LocalDir {
    fn location(&self) -> String {
        format!("dir:{}", self.root().display())
    }

    async fn inventory(&self) -> Result<Inventory, LinkError> {
        let dir = self.dir.clone();
        blocking(move || Ok(dir.inventory()?)).await
    }

    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, LinkError> {
        let (root, path) = (self.root().to_owned(), path.to_owned());
        blocking(move || read_file(&root, &path)).await
    }

    async fn switch(&self, batch: Batch, hooks: Hooks) -> Result<Applied, SwitchError> {
        let check = command_of(hooks.check.as_ref(), "check").map_err(SwitchError::NotSwitched)?;
        let reload =
            command_of(hooks.reload.as_ref(), "reload").map_err(SwitchError::NotSwitched)?;
        let root = self.root().to_owned();
        let batch = std::sync::Arc::new(batch);
        if let Some(check) = check {
            let files = std::sync::Arc::clone(&batch);
            let staged = blocking(move || stage_for_check(&root, &files))
                .await
                .map_err(SwitchError::NotSwitched)?;
            let result = run_hook(check, "check", &hooks, self.root(), Some(staged.path())).await;
            drop(staged);
            result.map_err(SwitchError::NotSwitched)?;
        }
        let dir = self.dir.clone();
        let applied = blocking(move || Ok(dir.apply(&batch)?))
            .await
            .map_err(SwitchError::NotSwitched)?;
        let changed = !applied.written.is_empty() || !applied.removed.is_empty();
        if let Some(reload) = reload.filter(|_| changed) {
            run_hook(reload, "reload", &hooks, self.root(), None)
                .await
                .map_err(SwitchError::ReloadFailed)?;
        }
        Ok(applied)
    }

    async fn clone_file(&self, from: &str, to: &str) -> Result<(), LinkError> {
        let dir = self.dir.clone();
        let (from, to) = (from.to_owned(), to.to_owned());
        blocking(move || clone_file(&dir, &from, &to)).await
    }
}

/// The command of a hook, refusing a named one: only an agent's agent.toml defines
/// those, and a local folder has none.
fn command_of<'h>(
    hook: Option<&'h WorkerHook>,
    which: &str,
) -> Result<Option<&'h HookSpec>, LinkError> {
    match hook {
        None => Ok(None),
        Some(WorkerHook::Command(spec)) => Ok(Some(spec)),
        Some(WorkerHook::Named { hook }) => Err(LinkError::Refused(format!(
            "`{which}` names the agent hook `{hook}`, but this worker is a local folder, where no agent defines it: give the group's `{which}` a `command` for ringops to run here"
        ))),
    }
}

/// Runs a hook with the worker's variables; its failure as a link error.
async fn run_hook(
    hook: &HookSpec,
    name: &str,
    hooks: &Hooks,
    root: &Path,
    staged: Option<&Path>,
) -> Result<(), LinkError> {
    let root_text = root.display().to_string();
    let staged_text = staged.map(|p| p.display().to_string());
    let mut env = vec![
        ("RINGOPS_WORKER", hooks.worker.as_str()),
        ("RINGOPS_RING", hooks.ring.as_str()),
        ("RINGOPS_WORKER_DIR", root_text.as_str()),
    ];
    if let Some(staged) = &staged_text {
        env.push(("RINGOPS_STAGED_DIR", staged.as_str()));
    }
    let redact: Vec<&str> = hooks.redact.iter().map(String::as_str).collect();
    let run = HookRun {
        name,
        cwd: staged.unwrap_or(root),
        env: &env,
        redact: &redact,
    };
    match crate::adapters::hooks::run(hook, run).await {
        Ok(_) => Ok(()),
        Err(e) => Err(LinkError::Hook(crate::adapters::causes(&e))),
    }
}

/// The batch's complete file set in a new private folder under the worker's
/// `.ringops/`, for the check hook; removed when dropped.
fn stage_for_check(root: &Path, batch: &Batch) -> Result<tempfile::TempDir, LinkError> {
    let reserved = root.join(RESERVED);
    std::fs::create_dir_all(root).map_err(|e| io(root, "cannot create", e))?;
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(&reserved) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&reserved, "cannot create", e)),
    }
    // Never follow a link planted at `.ringops`: the staged set holds secrets.
    match std::fs::symlink_metadata(&reserved) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(LinkError::Refused(format!(
                "{} is not a folder (a symbolic link?); ringops keeps its records there and will not stage files through it",
                reserved.display()
            )));
        }
        Err(e) => return Err(io(&reserved, "cannot inspect", e)),
    }
    let staged = tempfile::Builder::new()
        .prefix("check-")
        .tempdir_in(&reserved)
        .map_err(|e| io(&reserved, "cannot create a folder in", e))?;
    for (path, file) in &batch.files {
        if let Some(problem) = artifact_path_problem(path) {
            return Err(LinkError::Refused(format!("path `{path}` {problem}")));
        }
        let target = staged.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, "cannot create", e))?;
        }
        std::fs::write(&target, &file.content).map_err(|e| io(&target, "cannot write", e))?;
    }
    Ok(staged)
}

/// The file at `path` below `root`, refusing paths that could leave the directory.
fn read_file(root: &Path, path: &str) -> Result<Option<Vec<u8>>, LinkError> {
    let Some(full) = inside(root, path)? else {
        return Ok(None);
    };
    match std::fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(&full, "cannot read", source)),
    }
    match std::fs::read(&full) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(&full, "cannot read", source)),
    }
}

/// `root/path` when `path` is a valid worker-relative path, outside `.ringops/`, whose
/// folders below `root` are real folders (no symbolic link). `None` when a folder on
/// the way does not exist.
fn inside(root: &Path, path: &str) -> Result<Option<PathBuf>, LinkError> {
    check_path(path)?;
    let mut at = root.to_owned();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(LinkError::Refused(format!(
                    "path `{path}` goes through the symbolic link {}",
                    at.display()
                )));
            }
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io(&at, "cannot inspect", source)),
        }
    }
    Ok(Some(root.join(path)))
}

/// Refuses a path that could leave the worker directory or reach ringops' records.
fn check_path(path: &str) -> Result<(), LinkError> {
    if let Some(problem) = artifact_path_problem(path) {
        return Err(LinkError::Refused(format!("path `{path}` {problem}")));
    }
    if path.split('/').next() == Some(RESERVED) {
        return Err(LinkError::Refused(format!(
            "path `{path}` is inside `{RESERVED}/`, which ringops keeps for itself"
        )));
    }
    Ok(())
}

/// Copies the intact managed file `from` to `to`, a path nothing occupies, without ever
/// replacing a file: written to a temporary file, synced, then linked into place.
fn clone_file(dir: &WorkerDir, from: &str, to: &str) -> Result<(), LinkError> {
    for path in [from, to] {
        check_path(path)?;
    }
    let inventory = dir.inventory()?;
    let Some(entry) = inventory.managed.get(from) else {
        return Err(LinkError::Refused(format!(
            "`{from}` is not a file ringops manages on this worker"
        )));
    };
    if !matches!(entry.on_disk, OnDisk::File { .. }) {
        return Err(LinkError::Refused(format!(
            "`{from}` is not on the worker any more (see `ringops drift`)"
        )));
    }
    if inventory.managed.contains_key(to) {
        return Err(LinkError::Refused(format!(
            "`{to}` is managed by ringops; pick a path no artifact uses"
        )));
    }
    let root = dir.root();
    let bytes = read_file(root, from)?.ok_or_else(|| {
        LinkError::Refused(format!("`{from}` is not a regular file on the worker"))
    })?;
    create_parents(root, to)?;
    let target = inside(root, to)?.ok_or_else(|| {
        LinkError::Refused(format!("a file stands where a folder of `{to}` must go"))
    })?;
    let parent = target.parent().unwrap_or(root);
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| io(parent, "cannot create a file in", e))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io(tmp.path(), "cannot write", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match entry.on_disk {
            OnDisk::File { mode, .. } => mode,
            _ => 0o644,
        };
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(tmp.path(), "cannot set the mode of", e))?;
    }
    match std::fs::hard_link(tmp.path(), &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(LinkError::Refused(format!(
                "`{to}` already exists on the worker; clone never replaces a file"
            )));
        }
        Err(e) => return Err(io(&target, "cannot create", e)),
    }
    drop(tmp);
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(parent, "cannot sync", e))
}

/// Creates the folders of `path` below `root`, refusing symbolic links on the way.
fn create_parents(root: &Path, path: &str) -> Result<(), LinkError> {
    let parts: Vec<&str> = path.split('/').collect();
    let mut at = root.to_owned();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(LinkError::Refused(format!(
                    "`{}` is in the way of `{path}`: not a folder",
                    at.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| io(&at, "cannot create", e))?;
            }
            Err(e) => return Err(io(&at, "cannot inspect", e)),
        }
    }
    Ok(())
}

fn io(path: &Path, what: &str, source: std::io::Error) -> LinkError {
    LinkError::Io {
        what: format!("{what} {}", path.display()),
        source,
    }
}
