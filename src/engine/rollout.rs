//! A gated rollout: a recorded deployment's workers switched batch by batch (the ring's
//! strategy), each batch health-checked before the next starts. A canary batch may pause
//! the rollout until a person continues it; a failed batch fails the deployment, or with
//! `autoRevert` puts every worker it touched back to the previous Active deployment
//! (RollingBack → RolledBack). The rollout can stop between batches and be resumed by
//! another process: what is done is in the state.

pub mod health;

use super::{EngineError, Restore, Target, restore, switch_and_record};
use crate::adapters::objects::ObjectStore;
use crate::adapters::store::Store;
use crate::adapters::store::gates::RolloutState;
use crate::model::deployment::{Deployment, DeploymentState};
use crate::pipeline::rollout::Batch;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Checks a batch of workers after their switch.
pub trait HealthGate {
    /// `Ok` when every worker of `workers` is healthy, else why not (naming the workers).
    fn check(&self, workers: &[String]) -> impl Future<Output = Result<(), String>> + Send;
}

/// How a rollout goes.
#[derive(Clone, Debug)]
pub struct RolloutSpec {
    /// Every batch of the deployment, in order (including those already done).
    pub batches: Vec<Batch>,
    /// Batches switched and healthy before this run (a continued rollout).
    pub done: usize,
    /// Put every touched worker back when a batch fails.
    pub auto_revert: bool,
    /// The rollout fails when a batch ends past this much time after this run started.
    pub progress_deadline: Duration,
    /// Windows and gates were bypassed (`promote --emergency`).
    pub emergency: bool,
}

/// Where a rollout run stopped.
#[derive(Debug)]
pub enum RolloutEnd {
    /// Every batch is done: the deployment is Active.
    Active(Deployment),
    /// Stopped after a batch, waiting for `promote --continue` (a canary) or `resume`
    /// (the ring was paused); the deployment stays Deploying.
    Waiting {
        /// The deployment.
        deployment: Deployment,
        /// `continue` or `paused`.
        reason: String,
        /// Batches done so far.
        done: usize,
    },
    /// A batch failed: Failed (workers left as they are), or RolledBack when reverted.
    Failed {
        /// The deployment, in its final state.
        deployment: Deployment,
        /// Why.
        reason: String,
    },
}

/// Runs the batches of `spec` from `spec.done` on, for the deployment `id` (Queued when
/// `spec.done` is 0, else Deploying), `previous` being the Active deployment to return
/// to. `paused` is asked before every batch whether the ring was paused meanwhile. A
/// worker that is unreachable (an agent that is down) is switched again with backoff
/// until the progress deadline; then its batch fails.
#[allow(clippy::too_many_arguments)]
pub async fn roll_out(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    targets: &[Target],
    deployment: &Deployment,
    previous: Option<&Deployment>,
    spec: &RolloutSpec,
    health: &impl HealthGate,
) -> Result<RolloutEnd, EngineError> {
    let id = deployment.id;
    if deployment.state == DeploymentState::Queued {
        store.transition(id, DeploymentState::Building, "storing artifacts")?;
        let files = targets.iter().flat_map(|t| t.files.values());
        objects.put_known(files.map(|f| (f.sha256.as_str(), &*f.content)))?;
        let how = format!("switching workers in {} batch(es)", spec.batches.len());
        store.transition(id, DeploymentState::Deploying, &how)?;
    }
    let started = Instant::now();
    let mut touched: Vec<String> = spec.batches[..spec.done.min(spec.batches.len())]
        .iter()
        .flat_map(|b| b.workers.iter().cloned())
        .collect();
    let by_name: BTreeMap<&str, &Target> = targets.iter().map(|t| (t.name.as_str(), t)).collect();
    for (index, batch) in spec.batches.iter().enumerate().skip(spec.done) {
        if let Some(pause) = store.ring_pause(&deployment.ring)? {
            let why = format!("paused before batch {}: {}", index + 1, pause.reason);
            return wait(store, deployment, spec, index, "paused", &why);
        }
        let batch_targets: Vec<Target> = batch
            .workers
            .iter()
            .filter_map(|w| by_name.get(w.as_str()).map(|t| (*t).clone()))
            .collect();
        let label = format!(
            "batch {}/{} ({})",
            index + 1,
            spec.batches.len(),
            batch.workers.join(", ")
        );
        store.note(id, &format!("{label}: switching"))?;
        let until = started + spec.progress_deadline;
        let switched =
            switch_and_record(store, id, &deployment.ring, &batch_targets, Some(until)).await?;
        touched.extend(switched.touched);
        let failure = switched.failure;
        let failure = match failure {
            Some(f) => Some(f),
            None => health
                .check(&batch.workers)
                .await
                .err()
                .map(|e| format!("{label}: unhealthy: {e}")),
        };
        let failure = failure.or_else(|| {
            (started.elapsed() > spec.progress_deadline).then(|| {
                format!(
                    "{label}: past the progress deadline ({})",
                    humantime::format_duration(spec.progress_deadline)
                )
            })
        });
        if let Some(reason) = failure {
            let ended = stop(
                store,
                objects,
                state_dir,
                targets,
                deployment,
                previous,
                &touched,
                spec.auto_revert,
                reason.clone(),
            )
            .await?;
            return Ok(RolloutEnd::Failed {
                deployment: ended,
                reason,
            });
        }
        store.note(id, &format!("{label}: healthy"))?;
        let done = index + 1;
        store.set_rollout(id, &state("", spec.emergency, done))?;
        if batch.pause_after && done < spec.batches.len() {
            let why = format!(
                "canary healthy; waiting for `ringops promote {} --continue`",
                deployment.ring
            );
            return wait(store, deployment, spec, done, "continue", &why);
        }
    }
    store.transition(
        id,
        DeploymentState::Validating,
        "every batch switched and healthy",
    )?;
    let activation = store.activate(id, "active")?;
    Ok(RolloutEnd::Active(activation.deployment))
}

/// Rolls the deployment `d` of `desired` out as `gates` say (batches, health check,
/// revert), from batch `done` on.
pub async fn run_gated(
    store: &mut Store,
    state_dir: &Path,
    desired: &crate::model::DesiredState,
    d: &Deployment,
    gates: &crate::pipeline::rollout::Gates,
    done: usize,
    emergency: bool,
) -> Result<RolloutEnd, EngineError> {
    let targets: Vec<Target> = super::targets_from_desired(state_dir, desired)?
        .into_iter()
        .map(|t| with_drift(t, gates.drift))
        .collect();
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let spec = RolloutSpec {
        batches: gates.strategy.batches(&names),
        done,
        auto_revert: gates.auto_revert,
        progress_deadline: gates.health.progress_deadline,
        emergency,
    };
    let previous = store.active(&d.ring)?;
    let objects = ObjectStore::new(state_dir);
    let health = health::RingHealth::new(state_dir, gates, desired);
    roll_out(
        store,
        &objects,
        state_dir,
        &targets,
        d,
        previous.as_ref(),
        &spec,
        &health,
    )
    .await
}

/// A ring's trusted definition, which its gates are read from: the one in the commit of
/// its newest deployment that became Active through its gates (a rollback to an older
/// commit does not bring back that commit's older gates), else the one at `head` (the
/// tracked branch), never the one in the commit being deployed. `None` when the ring is
/// not defined there.
///
/// A commit gone from the repository (history rewritten and collected) would hold the
/// ring forever; the head is read instead, with a warning.
pub fn trusted_spec(
    store: &Store,
    source: &crate::adapters::git::Source,
    path: &str,
    ring: &str,
    head: &str,
) -> Result<Option<crate::model::manifest::RingSpec>, EngineError> {
    use crate::adapters::git::SourceError;
    let bundle = match store.gated(ring)? {
        None => source.bundle_at(head, path)?,
        Some(gated) => match source.bundle_at(&gated.commit, path) {
            Err(SourceError::BadRevision { message, .. }) => {
                tracing::warn!(
                    ring,
                    deployment = %gated.id,
                    commit = gated.commit,
                    "the commit of the ring's last gated deployment is gone from the repository ({message}); its gates are read at `{head}`"
                );
                source.bundle_at(head, path)?
            }
            read => read?,
        },
    };
    Ok(crate::pipeline::policy::ring_spec(&bundle, ring))
}

/// The target, its transport telling the worker the ring's drift mode with each switch
/// (an agent heals or only records hot edits by itself).
pub fn with_drift(target: Target, mode: crate::model::manifest::DriftMode) -> Target {
    Target {
        transport: target.transport.with_drift(mode),
        ..target
    }
}

fn state(waiting: &str, emergency: bool, done: usize) -> RolloutState {
    RolloutState {
        waiting: waiting.to_owned(),
        emergency,
        batches_done: u32::try_from(done).unwrap_or(u32::MAX),
    }
}

fn wait(
    store: &mut Store,
    deployment: &Deployment,
    spec: &RolloutSpec,
    done: usize,
    reason: &str,
    why: &str,
) -> Result<RolloutEnd, EngineError> {
    store.set_rollout(deployment.id, &state(reason, spec.emergency, done))?;
    store.note(deployment.id, why)?;
    Ok(RolloutEnd::Waiting {
        deployment: store.get(deployment.id)?,
        reason: reason.to_owned(),
        done,
    })
}

/// Stops a rollout for `reason`: with `auto_revert`, RollingBack, the `touched` workers
/// back to `previous`'s artifacts, RolledBack; without, Failed and the workers left as
/// they are. Returns the deployment in its final state.
#[allow(clippy::too_many_arguments)]
pub async fn stop(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    targets: &[Target],
    deployment: &Deployment,
    previous: Option<&Deployment>,
    touched: &[String],
    auto_revert: bool,
    reason: String,
) -> Result<Deployment, EngineError> {
    let id = deployment.id;
    if !auto_revert {
        return Ok(store.transition(id, DeploymentState::Failed, &reason)?);
    }
    let why = format!("{reason}; reverting {} worker(s)", touched.len());
    store.transition(id, DeploymentState::RollingBack, &why)?;
    let messages: BTreeMap<String, String> = store
        .workers(id)?
        .into_iter()
        .map(|w| (w.worker, w.message))
        .collect();
    let outcomes: BTreeMap<&str, &str> = messages
        .iter()
        .map(|(w, m)| (w.as_str(), m.as_str()))
        .collect();
    let back = Restore {
        failing: id,
        previous,
        touched,
        ring: &deployment.ring,
        outcomes: &outcomes,
    };
    restore(store, objects, state_dir, targets, back).await?;
    Ok(store.transition(id, DeploymentState::RolledBack, &reason)?)
}
