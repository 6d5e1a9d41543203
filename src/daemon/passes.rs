//! One pass for the daemon loop: run the reconciler's deploy or repair (fetching a
//! remote first), then log every event, feed the metrics, post the notifications and
//! mark the daemon ready after its first good deploy pass. What triggers a pass and
//! when the next runs is the loop's (see [`super::run`]).

use super::reconcile::{PassReport, Reconciler};
use super::run::{Settings, Shared};
use crate::adapters::git::mirror::{Remote, RepoLocation};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// How a deploy pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// The tracked branch's head was handled.
    Done,
    /// The writer lock was held: try again soon.
    Busy,
    /// Fetching or reading failed: tried again at the next trigger.
    Failed,
}

/// Marks the daemon ready (once).
pub(super) fn set_ready(shared: &Shared) {
    if !shared.ready.swap(true, Ordering::SeqCst) {
        tracing::info!("ready");
    }
}

/// A deploy pass after start-up: the first that succeeds makes the daemon ready. True
/// when the writer lock was held (try again soon).
pub(super) async fn redeploy(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    force: bool,
) -> bool {
    match pass_deploy(reconciler, settings, shared, force).await {
        Pass::Done => {
            set_ready(shared);
            false
        }
        Pass::Busy => true,
        Pass::Failed => false,
    }
}

/// One deploy pass.
pub(super) async fn pass_deploy(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    force: bool,
) -> Pass {
    let started = Instant::now();
    if let RepoLocation::Remote(remote) = &settings.paths.repo
        && !fetch(remote, settings, shared).await
    {
        return Pass::Failed;
    }
    match reconciler
        .deploy(&settings.paths, &settings.secrets, force)
        .await
    {
        Ok(report) if log_pass(&report, shared, settings, started) => Pass::Busy,
        Ok(_) => Pass::Done,
        Err(e) => {
            shared.metrics.fetch_error();
            let e = crate::adapters::causes(&e);
            tracing::error!("deploy pass failed (retried on the next trigger): {e}");
            Pass::Failed
        }
    }
}

/// Brings a remote's mirror up to date; false (logged, counted) when that failed.
async fn fetch(remote: &Remote, settings: &Settings, shared: &Shared) -> bool {
    let remote = remote.clone();
    let state_dir = settings.paths.state_dir.clone();
    let fetched = tokio::task::spawn_blocking(move || remote.fetch(&state_dir)).await;
    let error = match fetched {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => crate::adapters::causes(&e),
        Err(e) => e.to_string(),
    };
    shared.metrics.fetch_error();
    tracing::error!("fetch failed (tried again at the next poll or webhook): {error}");
    false
}

/// One drift pass; true when the writer lock was held (try again soon).
pub(super) async fn pass_repair(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    only: Option<&BTreeSet<String>>,
) -> bool {
    let started = Instant::now();
    let state_dir = &settings.paths.state_dir;
    match reconciler.repair(state_dir, &settings.secrets, only).await {
        Ok(report) => {
            let busy = log_pass(&report, shared, settings, started);
            if !busy {
                shared.metrics.reached(&report.reached, only.is_none());
            }
            if only.is_none() && !busy {
                let took = started.elapsed();
                shared.metrics.drift_scan(took);
                tracing::debug!(took_ms = took.as_millis(), "full drift scan done");
            }
            busy
        }
        Err(e) => {
            let e = crate::adapters::causes(&e);
            tracing::error!("drift pass failed (retried on the next event): {e}");
            false
        }
    }
}

/// Logs every event of a pass and feeds the metrics; true when the lock was held.
fn log_pass(report: &PassReport, shared: &Shared, settings: &Settings, started: Instant) -> bool {
    if report.busy {
        return true;
    }
    for ring in &report.pinned {
        tracing::info!(
            ring,
            "pinned by a rollback: not deploying this commit again"
        );
    }
    for (deployment, plan) in &report.deployments {
        if !plan.is_empty() {
            println!("{plan}");
        }
        post(shared, &settings.paths.state_dir, deployment);
        let d = deployment;
        match &d.error {
            Some(e) => tracing::error!(deployment = %d.id, ring = %d.ring, state = %d.state, "{e}"),
            None if d.unchanged => {
                tracing::info!(deployment = %d.id, ring = %d.ring, state = %d.state, commit = %crate::report::short(&d.commit), "deployed: {}", crate::model::deployment::NO_CHANGES)
            }
            None => {
                tracing::info!(deployment = %d.id, ring = %d.ring, state = %d.state, commit = %crate::report::short(&d.commit), "deployed")
            }
        }
        shared.metrics.reconcile(&d.ring, started.elapsed());
        if d.state == crate::model::deployment::DeploymentState::Active {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or_default();
            shared.metrics.synced(&d.ring, now);
        }
    }
    for (drift, reverted) in &report.drift {
        shared.metrics.drift(&drift.ring, drift.kind);
        tracing::warn!(
            ring = %drift.ring, worker = %drift.worker, path = %drift.path,
            kind = %drift.kind, reverted, "drift: {}", drift.summary
        );
    }
    false
}

/// Posts every state the deployment entered since the last post to the notification
/// targets (never waits).
fn post(shared: &Shared, state_dir: &std::path::Path, d: &crate::model::deployment::Deployment) {
    let Some(notifier) = &shared.notifier else {
        return;
    };
    let states: Vec<_> = crate::adapters::store::StoreReader::open(state_dir)
        .and_then(|r| r.events(d.id))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.state?, e.at)))
        .collect();
    let mut posted = shared.posted.lock().unwrap_or_else(|p| p.into_inner());
    let before = posted.insert(d.id.0, states.len()).unwrap_or(0);
    for (state, at) in states.into_iter().skip(before) {
        notifier.send(crate::adapters::notify::Event::of(d, state, at));
    }
    let stats = notifier.stats();
    shared
        .metrics
        .notified(stats.delivered, stats.failed, stats.dropped);
}
