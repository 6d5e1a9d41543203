//! The one deploy path: a recorded deployment goes Building (its artifacts stored) →
//! Deploying (its workers switched batch by batch; a direct apply is one batch) →
//! Validating → Active. A rollback is the same path with targets read from an older
//! deployment; a failure puts back (or leaves) what the deployment touched.
//!
//! A gated rollout can stop between batches (a canary waiting for `--continue`, a ring
//! paused by a person) and be resumed by another process: what is done is in the state.

use super::health::RingHealth;
use super::restore::{Restore, clear_old_locations, restore};
use super::switch::{Switching, switch_and_record};
use super::{Context, EngineError, Target, targets};
use crate::adapters::store::gates::RolloutState;
use crate::adapters::store::{Store, WorkerEntry};
use crate::model::DesiredState;
use crate::model::deployment::{Deployment, DeploymentState, NO_CHANGES, Waiting, WorkerOutcome};
use crate::pipeline::rollout::{Batch, Gates};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What happens to the workers a failed deployment touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The previous Active deployment's files go back, then Failed: a direct apply is
    /// all or nothing.
    Restore,
    /// RollingBack, the previous files back, RolledBack (`autoRevert`).
    Revert,
    /// Failed, the workers left as they are for a person to decide.
    Leave,
}

/// How a deployment's workers are switched.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// Every worker of the deployment and what it gets.
    pub targets: Vec<Target>,
    /// Every batch, in order (including those already done).
    pub batches: Vec<Batch>,
    /// Batches switched and healthy before this run (a continued rollout).
    pub done: usize,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// How long this run may take: an unreachable worker is waited for until then,
    /// and (staged) a batch that ends later fails. `None`: nothing is waited for.
    pub deadline: Option<Duration>,
    /// A gated rollout: it stops before a batch while its ring is paused, notes each
    /// batch, and records its progress for `promote --continue` and `resume`.
    pub staged: bool,
    /// Windows and gates were bypassed (`promote --emergency`).
    pub emergency: bool,
    /// The health check after each batch.
    pub health: RingHealth,
}

impl Rollout {
    /// Every target in one batch, nothing waited for or checked, everything put back on
    /// failure: `ringops apply` of an ungated ring and `ringops rollback`.
    pub fn direct(targets: Vec<Target>) -> Self {
        let workers = targets.iter().map(|t| t.name.clone()).collect();
        Rollout {
            targets,
            batches: vec![Batch {
                workers,
                pause_after: false,
            }],
            done: 0,
            on_failure: OnFailure::Restore,
            deadline: None,
            staged: false,
            emergency: false,
            health: RingHealth::none(),
        }
    }

    /// How a new deployment of `desired` rolls out as `gates` say: batch by batch with
    /// health checks when its strategy or `health:` asks for it ([`Rollout::gated`]),
    /// else every worker at once, put back on failure. With `wait`, an unreachable worker
    /// is waited for up to the ring's progress deadline (the daemon); without, it fails
    /// the deployment at once (a person at the command line).
    pub fn for_ring(
        ctx: &Context,
        desired: &DesiredState,
        gates: &Gates,
        wait: bool,
    ) -> Result<Self, EngineError> {
        if gates.staged() {
            return Self::gated(ctx, desired, gates, 0, false);
        }
        let targets = targets::targets_from_desired(&ctx.state_dir, desired)?
            .into_iter()
            .map(|t| targets::with_drift(t, gates.drift))
            .collect();
        let direct = Self::direct(targets);
        Ok(match wait {
            true => direct.waiting_up_to(gates.health.progress_deadline),
            false => direct,
        })
    }

    /// The rollout `gates` ask for of `desired`, from batch `done` on: batches by the
    /// ring's strategy, a health check after each, revert or leave on failure.
    pub fn gated(
        ctx: &Context,
        desired: &DesiredState,
        gates: &Gates,
        done: usize,
        emergency: bool,
    ) -> Result<Self, EngineError> {
        let targets: Vec<Target> = targets::targets_from_desired(&ctx.state_dir, desired)?
            .into_iter()
            .map(|t| targets::with_drift(t, gates.drift))
            .collect();
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        Ok(Rollout {
            batches: gates.strategy.batches(&names),
            targets,
            done,
            on_failure: match gates.auto_revert {
                true => OnFailure::Revert,
                false => OnFailure::Leave,
            },
            deadline: Some(gates.health.progress_deadline),
            staged: true,
            emergency,
            health: RingHealth::new(&ctx.state_dir, gates, desired),
        })
    }

    /// The same rollout switching its batches as one, waiting for unreachable workers
    /// up to `deadline` (the daemon's deployments of an ungated ring).
    pub fn waiting_up_to(self, deadline: Duration) -> Self {
        Rollout {
            deadline: Some(deadline),
            ..self
        }
    }
}

/// Where a run of a deployment stopped.
#[derive(Debug)]
pub enum RolloutEnd {
    /// Every batch is done: the deployment is Active.
    Active(Deployment),
    /// Stopped between batches, waiting for `promote --continue` (a canary) or `resume`
    /// (the ring was paused); the deployment stays Deploying.
    Waiting {
        /// The deployment.
        deployment: Deployment,
        /// What it waits for.
        reason: Waiting,
        /// Batches done so far.
        done: usize,
    },
    /// A batch failed: Failed, or RolledBack when reverted.
    Failed {
        /// The deployment, in its final state.
        deployment: Deployment,
        /// Why.
        reason: String,
    },
}

impl RolloutEnd {
    /// The deployment, wherever it stopped.
    pub fn deployment(&self) -> &Deployment {
        match self {
            RolloutEnd::Active(d) => d,
            RolloutEnd::Waiting { deployment, .. } | RolloutEnd::Failed { deployment, .. } => {
                deployment
            }
        }
    }
}

/// How a run of a deployment went.
#[derive(Debug)]
pub struct Deployed {
    /// Where it stopped.
    pub end: RolloutEnd,
    /// Workers whose files changed in this run.
    pub changed: Vec<String>,
}

/// Runs the deployment `deployment` (Queued, or Deploying when a rollout goes on) as
/// `rollout` says: its artifacts stored, its batches from `rollout.done` on switched and
/// health-checked, then Active. A failure puts back or leaves what it touched
/// ([`OnFailure`]).
pub async fn deploy(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    rollout: &Rollout,
) -> Result<Deployed, EngineError> {
    if deployment.unchanged && deployment.state == DeploymentState::Queued {
        let end = without_changes(ctx, store, deployment, rollout)?;
        return Ok(Deployed {
            end,
            changed: Vec::new(),
        });
    }
    begin(ctx, store, deployment, rollout)?;
    let mut run = Run {
        started: Instant::now(),
        touched: rollout.batches[..rollout.done.min(rollout.batches.len())]
            .iter()
            .flat_map(|b| b.workers.iter().cloned())
            .collect(),
        changed: Vec::new(),
    };
    for index in rollout.done..rollout.batches.len() {
        if let Some(end) = run.batch(ctx, store, deployment, rollout, index).await? {
            return Ok(Deployed {
                end,
                changed: run.changed,
            });
        }
    }
    let end = finish(ctx, store, deployment, rollout).await?;
    Ok(Deployed {
        end,
        changed: run.changed,
    })
}

/// A Queued deployment's artifacts stored and its state moved to Deploying.
fn begin(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    rollout: &Rollout,
) -> Result<(), EngineError> {
    if deployment.state != DeploymentState::Queued {
        return Ok(());
    }
    let id = deployment.id;
    store_artifacts(ctx, store, id, &rollout.targets)?;
    let how = match rollout.staged {
        true => format!("switching workers in {} batch(es)", rollout.batches.len()),
        false => "switching workers".to_owned(),
    };
    store.transition(id, DeploymentState::Deploying, &how)?;
    Ok(())
}

/// Building: the targets' files put in the object store (rollback and repair read them
/// there), before any record names them.
fn store_artifacts(
    ctx: &Context,
    store: &mut Store,
    id: crate::model::deployment::DeploymentId,
    targets: &[Target],
) -> Result<(), EngineError> {
    store.transition(id, DeploymentState::Building, "storing artifacts")?;
    let files = targets.iter().flat_map(|t| t.files.values());
    ctx.objects
        .put_known(files.map(|f| (f.sha256.as_str(), &*f.content)))?;
    Ok(())
}

/// One run of a deployment's batches.
struct Run {
    started: Instant,
    /// Workers attempted so far, in earlier runs too.
    touched: Vec<String>,
    /// Workers whose files changed in this run.
    changed: Vec<String>,
}

impl Run {
    /// Switches and checks batch `index`; where the run stops, if it stops there.
    async fn batch(
        &mut self,
        ctx: &Context,
        store: &mut Store,
        deployment: &Deployment,
        rollout: &Rollout,
        index: usize,
    ) -> Result<Option<RolloutEnd>, EngineError> {
        let (id, ring) = (deployment.id, &deployment.ring);
        let batch = &rollout.batches[index];
        if rollout.staged
            && let Some(pause) = store.ring_pause(ring)?
        {
            let why = format!("paused before batch {}: {}", index + 1, pause.reason);
            return wait(store, deployment, rollout, index, Waiting::Paused, &why).map(Some);
        }
        let label = format!(
            "batch {}/{} ({})",
            index + 1,
            rollout.batches.len(),
            batch.workers.join(", ")
        );
        if rollout.staged {
            store.note(id, &format!("{label}: switching"))?;
        }
        let failure = self.switch(ctx, store, deployment, rollout, batch).await?;
        let failure = match failure {
            Some(f) => Some(f),
            None => (rollout.health.check(&batch.workers).await)
                .err()
                .map(|e| format!("{label}: unhealthy: {e}")),
        };
        let failure = failure.or_else(|| self.past_deadline(rollout, &label));
        if let Some(reason) = failure {
            let ending = Ending {
                targets: &rollout.targets,
                touched: &self.touched,
                how: rollout.on_failure,
                reason: reason.clone(),
            };
            let ended = end_failed(ctx, store, deployment, ending).await?;
            return Ok(Some(RolloutEnd::Failed {
                deployment: ended,
                reason,
            }));
        }
        let done = index + 1;
        if rollout.staged {
            store.note(id, &format!("{label}: healthy"))?;
            let state = RolloutState::running(rollout.emergency, done);
            store.set_rollout(id, &state)?;
        }
        if batch.pause_after && done < rollout.batches.len() {
            let why = format!("canary healthy; waiting for `ringops promote {ring} --continue`");
            return wait(store, deployment, rollout, done, Waiting::Continue, &why).map(Some);
        }
        Ok(None)
    }

    /// Switches the batch's workers and records them; the first failure, if any.
    async fn switch(
        &mut self,
        ctx: &Context,
        store: &mut Store,
        deployment: &Deployment,
        rollout: &Rollout,
        batch: &Batch,
    ) -> Result<Option<String>, EngineError> {
        let by_name: BTreeMap<&str, &Target> = rollout
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let targets: Vec<Target> = batch
            .workers
            .iter()
            .filter_map(|w| by_name.get(w.as_str()).map(|t| (*t).clone()))
            .collect();
        let how = Switching {
            ring: deployment.ring.clone(),
            deployment: deployment.id.to_string(),
            keep_going: false,
            until: rollout.deadline.map(|d| self.started + d),
        };
        let switched = switch_and_record(ctx, store, deployment.id, &targets, &how).await?;
        self.touched.extend(switched.touched);
        self.changed.extend(switched.changed);
        Ok(switched.failure)
    }

    /// Why a staged batch that ended past the progress deadline fails, if it did.
    fn past_deadline(&self, rollout: &Rollout, label: &str) -> Option<String> {
        let deadline = rollout.deadline.filter(|_| rollout.staged)?;
        (self.started.elapsed() > deadline).then(|| {
            format!(
                "{label}: past the progress deadline ({})",
                humantime::format_duration(deadline)
            )
        })
    }
}

/// Every batch done: Validating, Active, and the files of workers that moved removed
/// from where they were.
async fn finish(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    rollout: &Rollout,
) -> Result<RolloutEnd, EngineError> {
    let id = deployment.id;
    let previous = store.active(&deployment.ring)?;
    let why = match rollout.staged {
        true => "every batch switched and healthy",
        false => "every worker switched",
    };
    store.transition(id, DeploymentState::Validating, why)?;
    let activation = store.activate(id, "active")?;
    if let Some(p) = previous.filter(|p| p.id != id) {
        clear_old_locations(ctx, store, p.id, id, &rollout.targets).await?;
    }
    Ok(RolloutEnd::Active(activation.deployment))
}

/// Whether a deployment of `fingerprint` changes nothing on its ring's workers: the
/// ring's `active` deployment has that fingerprint (the same files, places and hooks)
/// and the `plan` against the workers is empty (they hold it, modes too). Such a
/// deployment is marked when it is taken in ([`Store::mark_unchanged`]) and runs
/// without switching, probing or waiting for anything: it carries its commit on.
pub fn changes_nothing(
    active: Option<&Deployment>,
    fingerprint: &str,
    plan: &crate::model::Plan,
) -> bool {
    active.is_some_and(|a| a.fingerprint == fingerprint) && plan.summary.is_empty()
}

/// A deployment marked as changing nothing: each worker recorded as it stands (its
/// files, where it is), then Active at once. A ring paused by a person holds it.
fn without_changes(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    rollout: &Rollout,
) -> Result<RolloutEnd, EngineError> {
    let id = deployment.id;
    if let Some(pause) = store.ring_pause(&deployment.ring)? {
        let why = format!("its ring is paused: {}", pause.reason);
        return wait(store, deployment, rollout, 0, Waiting::Paused, &why);
    }
    store_artifacts(ctx, store, id, &rollout.targets)?;
    store.transition(id, DeploymentState::Deploying, NO_CHANGES)?;
    let written: Vec<_> = rollout.targets.iter().map(Target::written).collect();
    let entries: Vec<WorkerEntry<'_>> = rollout
        .targets
        .iter()
        .zip(&written)
        .map(|(target, artifacts)| WorkerEntry {
            worker: &target.name,
            outcome: WorkerOutcome::Unchanged,
            message: NO_CHANGES,
            placement: &target.placement,
            artifacts: Some(artifacts),
        })
        .collect();
    store.record_workers(id, &entries)?;
    store.transition(id, DeploymentState::Validating, NO_CHANGES)?;
    let activation = store.activate(id, &format!("active; {NO_CHANGES}"))?;
    Ok(RolloutEnd::Active(activation.deployment))
}

/// Stops a rollout between batches until `waiting` is satisfied.
fn wait(
    store: &mut Store,
    deployment: &Deployment,
    rollout: &Rollout,
    done: usize,
    waiting: Waiting,
    why: &str,
) -> Result<RolloutEnd, EngineError> {
    let state = RolloutState::running(rollout.emergency, done).waiting_for(waiting);
    store.set_rollout(deployment.id, &state)?;
    store.note(deployment.id, why)?;
    Ok(RolloutEnd::Waiting {
        deployment: store.get(deployment.id)?,
        reason: waiting,
        done,
    })
}

/// How a deployment that will not finish ends.
pub struct Ending<'a> {
    /// What its workers were to get (their redactions are used again).
    pub targets: &'a [Target],
    /// The workers it touched: put back unless `how` leaves them.
    pub touched: &'a [String],
    /// What happens to them.
    pub how: OnFailure,
    /// Why it ends.
    pub reason: String,
}

/// Ends `deployment` as `ending` says: Failed (its touched workers first put back for
/// [`OnFailure::Restore`]), or RollingBack → RolledBack with them put back. Returns the
/// deployment in its final state.
pub async fn end_failed(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    ending: Ending<'_>,
) -> Result<Deployment, EngineError> {
    let id = deployment.id;
    if ending.how == OnFailure::Leave {
        return Ok(store.transition(id, DeploymentState::Failed, &ending.reason)?);
    }
    if ending.how == OnFailure::Revert {
        let why = format!(
            "{}; reverting {} worker(s)",
            ending.reason,
            ending.touched.len()
        );
        store.transition(id, DeploymentState::RollingBack, &why)?;
    }
    let previous = store.active(&deployment.ring)?;
    let back = Restore {
        failing: deployment,
        previous: previous.as_ref(),
        touched: ending.touched,
    };
    restore(ctx, store, ending.targets, back).await?;
    let last = match ending.how {
        OnFailure::Revert => DeploymentState::RolledBack,
        _ => DeploymentState::Failed,
    };
    Ok(store.transition(id, last, &ending.reason)?)
}
