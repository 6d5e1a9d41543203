//! Taking a promotion in: what a ring would promote (the Active deployment of the ring
//! it promotes from), the checks that refuse it, and its record, Queued.

use crate::adapters::store::gates::RolloutState;
use crate::adapters::store::{Store, StoreError};
use crate::engine::health::RingHealth;
use crate::engine::{Context, EngineError};
use crate::model::DesiredState;
use crate::model::deployment::{Deployment, DeploymentId, DeploymentState, NewDeployment, Waiting};
use crate::pipeline::rollout::Gates;

/// Why a ring cannot be promoted now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The ring names no ring to promote from.
    #[error(
        "ring `{ring}` does not promote from another ring (no `promotesFrom`); deploy it with `ringops apply --ring {ring}`"
    )]
    NoSource {
        /// The ring.
        ring: String,
    },
    /// The ring has a deployment queued or half rolled out.
    #[error(
        "ring `{ring}` already has {id} {state} ({waiting}); approve, reject, continue or `ringops fail {ring} --reason ...` it first"
    )]
    Unfinished {
        /// The ring.
        ring: String,
        /// Its unfinished deployment.
        id: DeploymentId,
        /// That deployment's state.
        state: DeploymentState,
        /// What it waits for, in words.
        waiting: &'static str,
    },
    /// The ring promoted from runs nothing.
    #[error("cannot promote `{ring}`: ring `{from}` has no Active deployment to promote")]
    NothingActive {
        /// The ring.
        ring: String,
        /// The ring it promotes from.
        from: String,
    },
    /// The ring promoted from is paused: not known healthy.
    #[error("cannot promote `{ring}`: ring `{from}` is paused ({reason}); it is not known healthy")]
    SourcePaused {
        /// The ring.
        ring: String,
        /// The ring it promotes from.
        from: String,
        /// Why it was paused.
        reason: String,
    },
    /// The ring promoted from fails its health check.
    #[error("cannot promote `{ring}`: ring `{from}` is not healthy: {why}")]
    SourceUnhealthy {
        /// The ring.
        ring: String,
        /// The ring it promotes from.
        from: String,
        /// What failed.
        why: String,
    },
}

/// What `ring` would promote: the ring it promotes from and that ring's Active
/// deployment. Refused when it promotes from no ring, already has a deployment under
/// way, or its source runs nothing or is paused.
pub fn promotable(
    store: &Store,
    gates: &Gates,
    ring: &str,
) -> Result<(String, Deployment), EngineError> {
    let source = gates
        .promotes_from
        .clone()
        .ok_or_else(|| Refusal::NoSource {
            ring: ring.to_owned(),
        })?;
    if let Some(d) = store.unfinished(ring)? {
        let waiting = store.rollout(d.id)?.and_then(|r| r.waiting);
        return Err(Refusal::Unfinished {
            ring: ring.to_owned(),
            id: d.id,
            state: d.state,
            waiting: describe(waiting),
        }
        .into());
    }
    let active = store
        .active(&source)?
        .ok_or_else(|| Refusal::NothingActive {
            ring: ring.to_owned(),
            from: source.clone(),
        })?;
    if let Some(pause) = store.ring_pause(&source)? {
        return Err(Refusal::SourcePaused {
            ring: ring.to_owned(),
            from: source,
            reason: pause.reason,
        }
        .into());
    }
    Ok((source, active))
}

/// Refuses to promote into `ring` while the health check of its source ring (from
/// `source_gates`) fails on any worker of `source_desired`.
pub async fn check_source_health(
    ctx: &Context,
    source_gates: &Gates,
    source_desired: &DesiredState,
    ring: &str,
) -> Result<(), EngineError> {
    let health = RingHealth::new(&ctx.state_dir, source_gates, source_desired);
    let workers: Vec<String> = source_desired.workers.keys().cloned().collect();
    health.check(&workers).await.map_err(|why| {
        Refusal::SourceUnhealthy {
            ring: ring.to_owned(),
            from: source_desired.ring.clone(),
            why,
        }
        .into()
    })
}

/// Records the promotion `new` as a Queued deployment, noted as an emergency when it
/// is one (windows, freezes and approvals bypassed).
pub fn queue(
    store: &mut Store,
    new: &NewDeployment,
    emergency: bool,
) -> Result<Deployment, StoreError> {
    let deployment = store.create_deployment(new)?;
    if emergency {
        let note = "emergency promotion: windows, freezes and approvals bypassed";
        store.note(deployment.id, note)?;
    }
    store.set_rollout(deployment.id, &RolloutState::running(emergency, 0))?;
    Ok(deployment)
}

/// What an unfinished deployment waits for, in words.
pub fn describe(waiting: Option<Waiting>) -> &'static str {
    waiting.map_or("in progress", Waiting::describe)
}
