//! Local self-heal: the agent watches its worker directory and, on any change outside
//! `.ringops/` (or every [`SWEEP`] in case an event was lost), compares it with the
//! last generation it applied. Each hot edit is recorded once as drift for the
//! inventory; with [`DriftMode::Revert`] (the default; the mode comes with each
//! generation) the last generation is switched back through [`LocalDir`](crate::adapters::link::LocalDir), with no
//! hooks. This works while the daemon is unreachable.
//!
//! The notify callback only `try_send`s into a channel of one; the pass decides
//! everything by reading, so a missed or spurious event costs at most one pass.
//! Before the agent has applied a generation itself (just after a start) it only
//! records drift: it holds no content to put back.

use super::Agent;
use crate::adapters::link::http::wire::{DriftMode, DriftSeen};
use crate::adapters::link::{Hooks, Link, SwitchError};
use crate::adapters::worker_dir::{Batch, Inventory, ManagedEntry, OnDisk, RESERVED};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the directory is compared even without an event.
pub const SWEEP: Duration = Duration::from_secs(30);

/// How long events are gathered before a pass.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches `root` (created when missing) and sends a wake-up on changes outside
/// `.ringops/`.
pub fn watch(root: &Path, wake: mpsc::Sender<()>) -> notify::Result<RecommendedWatcher> {
    std::fs::create_dir_all(root).map_err(notify::Error::io)?;
    let records = root.join(RESERVED);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => false,
            Ok(e) => e.paths.iter().any(|p| !p.starts_with(&records)),
            Err(_) => true,
        };
        if relevant {
            let _ = wake.try_send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Runs heal passes on each wake-up and every [`SWEEP`] until `wake` closes.
pub async fn run(agent: Arc<Agent>, mut wake: mpsc::Receiver<()>) {
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            woken = wake.recv() => {
                if woken.is_none() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
                while wake.try_recv().is_ok() {}
            }
            _ = sweep.tick() => {}
        }
        pass(&agent).await;
    }
}

/// One comparison of the directory with the last applied generation.
pub async fn pass(agent: &Agent) {
    let _switching = agent.switching.lock().await;
    let inventory = match agent.dir().inventory().await {
        Ok(inventory) => inventory,
        Err(e) => {
            tracing::warn!(error = %e, "self-heal: cannot read the worker directory");
            return;
        }
    };
    if inventory.pending {
        return;
    }
    let (mode, last) = {
        let status = agent.status();
        (status.drift_mode, status.last.clone())
    };
    let drifted = drifted(&inventory);
    if drifted.is_empty() {
        agent.status().reported.clear();
        return;
    }
    let revert = mode == DriftMode::Revert
        && last
            .as_ref()
            .is_some_and(|b| b.expected_generation == Some(inventory.generation));
    let action = if revert { "reverted" } else { "reported" };
    for (path, what, entry) in &drifted {
        if agent.first_sight(path, &entry.on_disk) {
            tracing::warn!(%path, what, action, "drift");
            agent.record_drift(DriftSeen {
                path: path.clone(),
                what: what.to_string(),
                action: action.to_owned(),
                generation: inventory.generation,
            });
        }
    }
    if let (true, Some(batch)) = (revert, last) {
        put_back(agent, &batch).await;
    }
}

/// The drifted managed files: path, what happened, and the entry.
fn drifted(inventory: &Inventory) -> Vec<(String, &'static str, &ManagedEntry)> {
    inventory
        .drifted()
        .map(|(path, entry)| {
            let what = match entry.on_disk {
                OnDisk::File { .. } => "edited",
                OnDisk::Missing => "missing",
                OnDisk::NotAFile { .. } => "replaced",
            };
            (path.clone(), what, entry)
        })
        .collect()
}

/// Switches the last generation back; a later pass sees the result.
async fn put_back(agent: &Agent, batch: &Batch) {
    match agent.dir().switch(batch.clone(), Hooks::default()).await {
        Ok(applied) => {
            agent.reverted(applied.generation).await;
            agent.status().reported.clear();
            tracing::info!(
                generation = applied.generation,
                written = applied.written.len(),
                "self-heal: the last generation is back"
            );
        }
        Err(SwitchError::NotSwitched(e) | SwitchError::ReloadFailed(e)) => {
            tracing::warn!(error = %e, "self-heal: cannot put the last generation back");
        }
    }
}
