//! Queued promotions the daemon moves on by itself: one waiting for its ring's window
//! starts when the window opens (its approvals complete, no freeze); one waiting for
//! approvals past the gate's timeout is rejected. What the gates say is
//! [`engine::promotion::next`]'s decision, with the gates in force, as for `ringops
//! promote` and `approve`.

use super::reconcile::PassError;
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::Store;
use crate::engine::gates::Trust;
use crate::engine::promotion::{self, Advanced, Mover};
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
    let redact = secrets.all_values();
    let mover = Mover {
        actor: "the daemon",
        redact: &redact,
        now: chrono::Utc::now(),
    };
    let desired = || {
        let bundle = trust.source.bundle_at(&d.commit, trust.path).ok()?;
        let compiled =
            tokio::task::block_in_place(|| compile_ring(&ctx.state_dir, &bundle, secrets, &d.ring));
        compiled.ok()?.states.remove(&d.ring)
    };
    match promotion::advance(ctx, store, d, gates, &mover, desired).await? {
        Advanced::Held {
            waiting,
            why,
            noted,
        } => {
            if noted {
                tracing::info!(deployment = %d.id, ring = %d.ring, %waiting, "held: {why}");
            }
            Ok(None)
        }
        Advanced::Rejected { deployment, why } => {
            tracing::warn!(deployment = %d.id, ring = %d.ring, "{why}");
            Ok(Some(deployment))
        }
        Advanced::Ran(ran) => Ok(Some(ran.end.deployment().clone())),
    }
}
