//! Putting workers back: the previous Active deployment's files on the workers a failed
//! deployment touched, and ringops' files removed from where a worker that moved used
//! to be.

use super::switch::hooks;
use super::{Context, EngineError, Target, recorded_link, targets_from_record};
use crate::adapters::causes;
use crate::adapters::link::{Hooks, Link};
use crate::adapters::store::Store;
use crate::adapters::worker_dir::Batch;
use crate::model::deployment::{Deployment, DeploymentId, WorkerOutcome};
use std::collections::BTreeMap;

/// What to put back after a failed rollout.
pub(super) struct Restore<'r> {
    /// The deployment that failed.
    pub failing: &'r Deployment,
    /// The ring's Active deployment, whose files go back (none: ringops' files go).
    pub previous: Option<&'r Deployment>,
    /// The workers to put back.
    pub touched: &'r [String],
}

/// Puts the previous Active deployment's artifacts back on every worker the rollout
/// touched (or removes ringops' files where there was none), one worker at a time so
/// that one failure (a missing object, a worker that refuses) stops no other; records
/// each as Restored or RestoreFailed, keeping what happened before.
pub(super) async fn restore(
    ctx: &Context,
    store: &mut Store,
    targets: &[Target],
    back: Restore<'_>,
) -> Result<(), EngineError> {
    let earlier: BTreeMap<String, String> = store
        .workers(back.failing.id)?
        .into_iter()
        .map(|w| (w.worker, w.message))
        .collect();
    for name in back.touched {
        let Some(current) = targets.iter().find(|t| &t.name == name) else {
            continue;
        };
        let result = put_back(ctx, store, current, &back).await;
        let earlier = earlier.get(name).map(String::as_str).unwrap_or_default();
        let (outcome, message) = match result {
            Ok(()) => (
                WorkerOutcome::Restored,
                format!("{earlier}; then restored the previous active artifacts"),
            ),
            Err(e) => (
                WorkerOutcome::RestoreFailed,
                format!("{earlier}; then restoring the previous artifacts failed: {e}"),
            ),
        };
        store.record_worker(back.failing.id, name, outcome, &message)?;
    }
    Ok(())
}

/// Switches one worker back to the previous deployment's files (or to none).
async fn put_back(
    ctx: &Context,
    store: &Store,
    current: &Target,
    back: &Restore<'_>,
) -> Result<(), String> {
    let only = std::slice::from_ref(&current.name);
    let before = match back.previous {
        Some(p) => targets_from_record(ctx, store, p.id, Some(only), &current.redact)
            .map_err(|e| causes(&e))?
            .pop(),
        None => None,
    };
    let files = before.map(|t| t.files).unwrap_or_default();
    let batch = Batch {
        deployment: back.previous.map(|p| p.id.to_string()).unwrap_or_default(),
        expected_generation: None,
        files,
    };
    let hooks = Hooks {
        check: None,
        ..hooks(current, &back.failing.ring)
    };
    current
        .link
        .switch(batch, hooks)
        .await
        .map(|_| ())
        .map_err(|e| causes(e.error()))
}

/// Removes ringops' files where the previous deployment put a worker that now lives
/// elsewhere (its `target` changed), noting each on the new deployment.
pub(super) async fn clear_old_locations(
    ctx: &Context,
    store: &mut Store,
    previous: DeploymentId,
    id: DeploymentId,
    targets: &[Target],
) -> Result<(), EngineError> {
    let before = store.placements(previous)?;
    for t in targets {
        let Some(old) = before
            .get(&t.name)
            .filter(|p| p.location != t.placement.location)
        else {
            continue;
        };
        let message = match recorded_link(&ctx.state_dir, &t.name, Some(old)) {
            Ok(link) => {
                let batch = Batch {
                    deployment: id.to_string(),
                    expected_generation: None,
                    files: BTreeMap::new(),
                };
                let hooks = Hooks {
                    worker: t.name.clone(),
                    ..Hooks::default()
                };
                match link.switch(batch, hooks).await {
                    Ok(_) => format!("{}: removed its files from {}", t.name, old.location),
                    Err(e) => format!(
                        "{}: cannot remove its files from {}: {}",
                        t.name,
                        old.location,
                        causes(e.error())
                    ),
                }
            }
            Err(e) => format!("{}: {}", t.name, causes(&e)),
        };
        store.note(id, &message)?;
    }
    Ok(())
}
