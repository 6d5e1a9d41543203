//! Filesystem watches: the repository's refs (a push is seen at once) and the local
//! worker directories (a hot edit is seen at once). Both only wake the loop; what
//! changed is always decided by reading, so a missed or spurious event costs nothing
//! but a pass.

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

/// Watches `<git dir>` (HEAD, packed-refs) and `<git dir>/refs`; any change wakes
/// `trigger`.
pub fn watch_refs(git_dir: &Path, trigger: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !matches!(e.kind, EventKind::Access(_))) {
            trigger.notify_one();
        }
    })?;
    watcher.watch(git_dir, RecursiveMode::NonRecursive)?;
    let refs = git_dir.join("refs");
    if refs.is_dir() {
        watcher.watch(&refs, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

/// Watches local worker directories and sends the name of a worker whose files outside
/// `.ringops/` changed.
pub struct WorkerWatch {
    watcher: RecommendedWatcher,
    roots: Arc<Mutex<BTreeMap<PathBuf, String>>>,
}

impl WorkerWatch {
    /// A watch sending worker names to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<String>) -> notify::Result<Self> {
        let roots: Arc<Mutex<BTreeMap<PathBuf, String>>> = Arc::default();
        let seen = Arc::clone(&roots);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let roots = seen.lock().unwrap_or_else(|p| p.into_inner());
            for path in &event.paths {
                if let Some(worker) = owner(&roots, path) {
                    let _ = tx.send(worker.clone());
                }
            }
        })?;
        Ok(Self { watcher, roots })
    }

    /// Follows exactly `workers` (name → directory) from now on; directories that do not
    /// exist yet are skipped (the next update picks them up).
    pub fn update(&mut self, workers: &BTreeMap<String, PathBuf>) {
        let mut roots = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: BTreeMap<PathBuf, String> = workers
            .iter()
            .map(|(name, dir)| (dir.clone(), name.clone()))
            .collect();
        for old in roots.keys().filter(|d| !wanted.contains_key(*d)) {
            let _ = self.watcher.unwatch(old);
        }
        roots.retain(|d, _| wanted.contains_key(d));
        for (dir, name) in wanted {
            if roots.contains_key(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::Recursive) {
                Ok(()) => {
                    roots.insert(dir, name);
                }
                Err(e) => tracing::debug!(worker = %name, error = %e, "not watching yet"),
            }
        }
    }
}

/// The worker whose directory holds `path`, unless the path is in its `.ringops/`.
fn owner<'r>(roots: &'r BTreeMap<PathBuf, String>, path: &Path) -> Option<&'r String> {
    roots.iter().find_map(|(root, name)| {
        let rel = path.strip_prefix(root).ok()?;
        let reserved = rel
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == crate::adapters::worker_dir::RESERVED);
        (!reserved).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_their_worker_but_not_from_its_records() {
        let roots = BTreeMap::from([
            (PathBuf::from("/s/workers/w1"), "w1".to_owned()),
            (PathBuf::from("/s/workers/w10"), "w10".to_owned()),
        ]);
        let of = |p: &str| owner(&roots, Path::new(p)).cloned();
        assert_eq!(of("/s/workers/w1/a/b/c"), Some("w1".into()));
        assert_eq!(of("/s/workers/w10/a/b/c"), Some("w10".into()));
        assert_eq!(of("/s/workers/w1"), Some("w1".into()));
        assert_eq!(of("/s/workers/w1/.ringops/managed.json"), None);
        assert_eq!(of("/elsewhere/x"), None);
    }
}
