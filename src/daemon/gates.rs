//! Queued promotions the daemon moves on by itself: one waiting for its ring's window
//! starts when the window opens (its approvals complete, no freeze); one waiting for
//! approvals past the gate's timeout is rejected. What the gates say is
//! [`engine::promotion::next`]'s decision, with the gates in force, as for `ringops
//! promote` and `approve`.

use super::reconcile::PassError;
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::Store;
use crate::engine::gates::Trust;
use crate::engine::promotion::{self, Step};
use crate::engine::{self, compile::compile_ring};
use crate::model::deployment::{Deployment, DeploymentState};
use crate::pipeline::rollout::Gates;

/// Looks at every ring's queued deployment; returns those it moved (rolled out,
/// rejected or failed). The caller holds the writer lock.
pub async fn pass(
    ctx: &engine::Context,
    store: &mut Store,
    trust: &Trust<'_>,
    secrets: &HostSecrets,
) -> Result<Vec<Deployment>, PassError> {
    let mut moved = Vec::new();
    for ring in store.rings()? {
        let Some(d) = store.unfinished(&ring)? else {
            continue;
        };
        let Some(rollout) = store.rollout(d.id)? else {
            continue;
        };
        let held = rollout.waiting.is_some_and(|w| w.is_gate());
        if d.state != DeploymentState::Queued || !held {
            continue;
        }
        let Some(gates) = super::reconcile::gates_in_force(store, trust, &ring)? else {
            continue;
        };
        if let Some(after) = move_on(ctx, store, trust, secrets, &d, &gates).await? {
            moved.push(after);
        }
    }
    Ok(moved)
}

/// Rolls `d` out if its gates let it now, rejects it if its approvals timed out, else
/// records what it waits for.
async fn move_on(
    ctx: &engine::Context,
    store: &mut Store,
    trust: &Trust<'_>,
    secrets: &HostSecrets,
    d: &Deployment,
    gates: &Gates,
) -> Result<Option<Deployment>, PassError> {
    match promotion::next(store, d, gates, chrono::Utc::now())? {
        Step::Wait { waiting, why } => {
            if promotion::hold(store, d, waiting, &why)? {
                tracing::info!(deployment = %d.id, ring = %d.ring, %waiting, "held: {why}");
            }
            Ok(None)
        }
        Step::Reject { why } => {
            let why = format!("{why}; rejected by the daemon");
            Ok(Some(promotion::reject(store, d, &why)?))
        }
        Step::Start => start(ctx, store, trust, secrets, d, gates).await.map(Some),
    }
}

/// Rolls a queued deployment out whose gates opened.
async fn start(
    ctx: &engine::Context,
    store: &mut Store,
    trust: &Trust<'_>,
    secrets: &HostSecrets,
    d: &Deployment,
    gates: &Gates,
) -> Result<Deployment, PassError> {
    let bundle = trust.source.bundle_at(&d.commit, trust.path)?;
    let compiled =
        tokio::task::block_in_place(|| compile_ring(&ctx.state_dir, &bundle, secrets, &d.ring));
    let Some(desired) = compiled.ok().and_then(|mut c| c.states.remove(&d.ring)) else {
        let why = "its commit no longer compiles for the ring; promote again";
        return Ok(store.transition(d.id, DeploymentState::Failed, why)?);
    };
    store.note(d.id, "gates open: started by the daemon")?;
    let redact = secrets.all_values();
    let run = promotion::run(ctx, store, d, &desired, gates, &redact).await?;
    Ok(run.end.deployment().clone())
}
