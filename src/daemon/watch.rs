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
    ///
    /// The roots' lock is never held across `watch`/`unwatch`: those wait for notify's
    /// event thread, which may be waiting for the lock in the handler (a deadlock).
    pub fn update(&mut self, workers: &BTreeMap<String, PathBuf>) {
        let wanted: BTreeMap<PathBuf, String> = workers
            .iter()
            .map(|(name, dir)| (dir.clone(), name.clone()))
            .collect();
        let (gone, new) = {
            let mut roots = self.roots.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<PathBuf> = roots
                .keys()
                .filter(|d| !wanted.contains_key(*d))
                .cloned()
                .collect();
            roots.retain(|d, _| wanted.contains_key(d));
            let new: Vec<(PathBuf, String)> = wanted
                .into_iter()
                .filter(|(d, _)| !roots.contains_key(d))
                .collect();
            (gone, new)
        };
        for old in &gone {
            let _ = self.watcher.unwatch(old);
        }
        for (dir, name) in new {
            match self.watcher.watch(&dir, RecursiveMode::Recursive) {
                Ok(()) => {
                    let mut roots = self.roots.lock().unwrap_or_else(|p| p.into_inner());
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn updating_the_roots_while_events_pour_in_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let workers: BTreeMap<String, PathBuf> = (0..40)
            .map(|i| (format!("w{i}"), dir.path().join(format!("w{i}"))))
            .collect();
        for root in workers.values() {
            std::fs::create_dir_all(root.join("job")).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let storm = {
            let (stop, file) = (Arc::clone(&stop), workers["w0"].join("job/f"));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::fs::write(&file, "x").unwrap();
                }
            })
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (tx, _rx) = mpsc::unbounded_channel();
            let mut watch = WorkerWatch::new(tx).unwrap();
            for n in 1..=workers.len() {
                let some = workers.iter().take(n);
                watch.update(&some.map(|(k, v)| (k.clone(), v.clone())).collect());
            }
            let _ = done_tx.send(());
        });
        let finished = done_rx.recv_timeout(Duration::from_secs(60));
        stop.store(true, Ordering::SeqCst);
        storm.join().unwrap();
        assert!(
            finished.is_ok(),
            "WorkerWatch::update deadlocked with the event thread"
        );
    }

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
