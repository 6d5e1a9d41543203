//! Switching workers to their targets, several at a time: every file of a worker in
//! one switch, its hooks run by the link. An unreachable worker (an agent that is
//! down) is tried again with backoff (with jitter) until a deadline; the outcome of each worker is
//! recorded with the deployment.

use super::{Context, EngineError, Target};
use crate::adapters::backoff::Backoff;
use crate::adapters::causes;
use crate::adapters::link::{Hooks, Link, LinkError, SwitchError, WorkerLink};
use crate::adapters::store::{Store, WorkerEntry};
use crate::adapters::worker_dir::{Applied, Batch};
use crate::model::deployment::{DeploymentId, WorkerOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a set of workers is switched.
#[derive(Clone, Debug)]
pub struct Switching {
    /// The ring, told to hooks and agents.
    pub ring: String,
    /// The deployment the files belong to.
    pub deployment: String,
    /// Go on with the other workers after one fails (drift repair); otherwise no
    /// worker starts after the first failure.
    pub keep_going: bool,
    /// Until when an unreachable worker is tried again; `None`: it fails at once.
    pub until: Option<Instant>,
}

impl Switching {
    /// Every worker switched whatever the others do, none waited for: drift repair.
    pub fn repair(ring: &str, deployment: &str) -> Self {
        Switching {
            ring: ring.to_owned(),
            deployment: deployment.to_owned(),
            keep_going: true,
            until: None,
        }
    }
}

/// What [`switch_all`] did.
#[derive(Debug, Default)]
pub struct Switched {
    /// Each worker that was attempted, by name.
    pub results: BTreeMap<String, Result<Applied, SwitchError>>,
    /// True when a worker's task panicked (its worker has no result).
    pub panicked: bool,
}

/// Switches every target, at most `ctx.concurrency` at a time, as `how` says; workers
/// never started have no result.
pub async fn switch_all(ctx: &Context, targets: &[Target], how: &Switching) -> Switched {
    let limit = Arc::new(tokio::sync::Semaphore::new(ctx.concurrency));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let batch = Batch {
            deployment: how.deployment.clone(),
            expected_generation: None,
            files: target.files.clone(),
        };
        let hooks = hooks(target, &how.ring);
        let (link, name) = (target.link.clone(), target.name.clone());
        let (limit, failed) = (Arc::clone(&limit), Arc::clone(&failed));
        let (keep_going, until, waiting) = (how.keep_going, how.until, ctx.waiting.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if !keep_going && failed.load(Ordering::SeqCst) {
                return (name, None);
            }
            let one = One {
                link: &link,
                worker: &name,
                waiting: &waiting,
            };
            let result = one.switch(batch, hooks, until).await;
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            (name, Some(result))
        });
    }
    collect(tasks, &failed).await
}

async fn collect(
    mut tasks: tokio::task::JoinSet<(String, Option<Result<Applied, SwitchError>>)>,
    failed: &AtomicBool,
) -> Switched {
    let mut out = Switched::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Some(result))) => {
                out.results.insert(name, result);
            }
            Ok((_, None)) => {}
            Err(e) => {
                failed.store(true, Ordering::SeqCst);
                out.panicked = true;
                tracing::error!(error = %e, "a worker task stopped unexpectedly (a bug in ringops)");
            }
        }
    }
    out
}

/// The first wait before switching an unreachable worker again (plus jitter).
pub const UNREACHABLE_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two switches of an unreachable worker.
pub const UNREACHABLE_RETRY_MAX: Duration = Duration::from_secs(10);

/// One worker being switched.
struct One<'a> {
    link: &'a WorkerLink,
    worker: &'a str,
    waiting: &'a super::waiting::WaitingSet,
}

impl One<'_> {
    /// Switches the worker, again while it is unreachable and `until` has not passed
    /// (a [`Backoff`] from [`UNREACHABLE_RETRY`] doubling up to
    /// [`UNREACHABLE_RETRY_MAX`], with jitter, no wait past `until`); then it fails with
    /// [`LinkError::GaveUp`]. Without `until` an unreachable worker fails at once.
    async fn switch(
        &self,
        batch: Batch,
        hooks: Hooks,
        until: Option<Instant>,
    ) -> Result<Applied, SwitchError> {
        let started = Instant::now();
        let mut waits = Backoff::new(UNREACHABLE_RETRY, UNREACHABLE_RETRY_MAX);
        let mut attempts = 1;
        let mut waiting = None;
        loop {
            let result = self.link.switch(batch.clone(), hooks.clone()).await;
            let error = match result {
                Err(SwitchError::NotSwitched(e)) if e.is_unreachable() => e,
                other => return other,
            };
            let Some(left) = until.and_then(|u| u.checked_duration_since(Instant::now())) else {
                if until.is_none() {
                    return Err(SwitchError::NotSwitched(error));
                }
                return Err(SwitchError::NotSwitched(LinkError::GaveUp {
                    attempts,
                    waited: Duration::from_secs(started.elapsed().as_secs()),
                    source: Box::new(error),
                }));
            };
            waiting.get_or_insert_with(|| self.waiting.enter(&hooks.ring, self.worker));
            let wait = waits.next_delay().at_most(left);
            tracing::warn!(
                worker = self.worker,
                attempts,
                error = %causes(&error),
                "worker unreachable; trying again in {wait}"
            );
            tokio::time::sleep(wait.wait).await;
            attempts += 1;
        }
    }
}

/// The hooks a switch of `target` runs, for `ring`.
pub(super) fn hooks(target: &Target, ring: &str) -> Hooks {
    Hooks {
        check: target.placement.check.clone(),
        reload: target.placement.reload.clone(),
        worker: target.name.clone(),
        ring: ring.to_owned(),
        redact: target.redact.clone(),
    }
}

/// What [`switch_and_record`] did to a batch of workers.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Workers attempted (a failed one may be half-switched: restore it too).
    pub touched: Vec<String>,
    /// Workers whose files changed.
    pub changed: Vec<String>,
    /// The first failure, naming its worker.
    pub failure: Option<String>,
}

/// Switches `targets` (stopping at the first failure) as `how` says and records how each
/// fared, with the artifact set of those that hold the deployment's files, in one
/// transaction.
pub async fn switch_and_record(
    ctx: &Context,
    store: &mut Store,
    id: DeploymentId,
    targets: &[Target],
    how: &Switching,
) -> Result<BatchOutcome, EngineError> {
    let switched = switch_all(ctx, targets, how).await;
    let mut out = BatchOutcome {
        failure: switched
            .panicked
            .then(|| "a worker task stopped unexpectedly (a bug in ringops)".to_owned()),
        ..BatchOutcome::default()
    };
    let mut records = Vec::with_capacity(targets.len());
    for target in targets {
        let (outcome, message) = outcome_of(&target.name, switched.results.get(&target.name));
        match outcome {
            WorkerOutcome::Applied | WorkerOutcome::Unchanged | WorkerOutcome::Failed => {
                out.touched.push(target.name.clone());
            }
            _ => {}
        }
        if outcome == WorkerOutcome::Applied {
            out.changed.push(target.name.clone());
        }
        if outcome == WorkerOutcome::Failed {
            out.failure.get_or_insert(message.clone());
        }
        let holds = matches!(outcome, WorkerOutcome::Applied | WorkerOutcome::Unchanged);
        records.push((target, outcome, message, holds.then(|| target.written())));
    }
    let entries: Vec<WorkerEntry<'_>> = records
        .iter()
        .map(|(target, outcome, message, written)| WorkerEntry {
            worker: &target.name,
            outcome: *outcome,
            message,
            placement: &target.placement,
            artifacts: written.as_deref(),
        })
        .collect();
    store.record_workers(id, &entries)?;
    Ok(out)
}

/// How one worker fared, and the message recorded for it.
fn outcome_of(
    name: &str,
    result: Option<&Result<Applied, SwitchError>>,
) -> (WorkerOutcome, String) {
    match result {
        Some(Ok(applied)) if applied.written.is_empty() && applied.removed.is_empty() => {
            (WorkerOutcome::Unchanged, summary(applied))
        }
        Some(Ok(applied)) => (WorkerOutcome::Applied, summary(applied)),
        Some(Err(e)) => {
            let message = causes(&EngineError::worker(name, clone_error(e.error())));
            (WorkerOutcome::Failed, message)
        }
        None => (
            WorkerOutcome::Skipped,
            "not attempted: another worker failed first".to_owned(),
        ),
    }
}

fn summary(applied: &Applied) -> String {
    format!(
        "{} written, {} removed, {} unchanged",
        applied.written.len(),
        applied.removed.len(),
        applied.unchanged
    )
}

/// A link error again, as text (they hold IO errors, which do not clone).
fn clone_error(e: &LinkError) -> LinkError {
    LinkError::Hook(causes(e))
}
