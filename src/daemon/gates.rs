//! Queued promotions the daemon moves on by itself: one waiting for its ring's window
//! starts when the window opens (its approvals complete, no freeze); one waiting for
//! approvals past the gate's timeout is rejected. Gates are read from the ring's trusted
//! definition, as `ringops promote` reads them.

use super::reconcile::{PassError, Paths};
use crate::adapters::git::Source;
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::Store;
use crate::adapters::store::gates::{RolloutState, Verdict};
use crate::engine::compile::compile_ring;
use crate::engine::rollout::{RolloutEnd, run_gated, trusted_spec};
use crate::model::deployment::{Deployment, DeploymentState};
use crate::pipeline::rollout::{Decision, Gates, Queued};
use std::time::Duration;

/// Looks at every ring's queued deployment; returns those it moved (rolled out,
/// rejected or failed). The caller holds the writer lock.
pub async fn pass(
    store: &mut Store,
    paths: &Paths,
    source: &Source,
    secrets: &HostSecrets,
) -> Result<Vec<Deployment>, PassError> {
    let mut moved = Vec::new();
    for ring in store.rings()? {
        let Some(d) = store.history(Some(&ring), 1)?.pop() else {
            continue;
        };
        let Some(rollout) = store.rollout(d.id)? else {
            continue;
        };
        let held = ["approval", "window", "freeze"].contains(&rollout.waiting.as_str());
        if d.state != DeploymentState::Queued || !held {
            continue;
        }
        if let Some(after) = move_on(store, paths, secrets, source, &d, &rollout).await? {
            moved.push(after);
        }
    }
    Ok(moved)
}

/// Rolls `d` out if its gates let it now, rejects it if its approvals timed out.
async fn move_on(
    store: &mut Store,
    paths: &Paths,
    secrets: &HostSecrets,
    source: &Source,
    d: &Deployment,
    rollout: &RolloutState,
) -> Result<Option<Deployment>, PassError> {
    let Some(gates) = trusted_gates(store, paths, source, &d.ring)? else {
        return Ok(None);
    };
    let verdicts = store.verdicts(d.id)?;
    if verdicts.iter().any(|v| v.verdict == Verdict::Rejected) {
        return Ok(None);
    }
    let approvals = crate::adapters::store::gates::approvals(&verdicts);
    let id = d.id.to_string();
    let waited = u64::try_from(store.now().0.saturating_sub(d.created_at.0)).unwrap_or(0);
    let queued = Queued {
        id: &id,
        fingerprint: &d.fingerprint,
        approvals: &approvals,
        waited: Duration::from_millis(waited),
        emergency: rollout.emergency,
    };
    match gates.decide(&queued, chrono::Utc::now()) {
        Decision::Wait { waiting, .. } if waiting == rollout.waiting => Ok(None),
        Decision::Wait { waiting, why } => {
            let state = RolloutState {
                waiting: waiting.to_owned(),
                ..rollout.clone()
            };
            store.set_rollout(d.id, &state)?;
            store.note(d.id, &why)?;
            Ok(None)
        }
        Decision::TimedOut => {
            let why = "approval timed out; rejected by the daemon";
            Ok(Some(store.transition(
                d.id,
                DeploymentState::Failed,
                why,
            )?))
        }
        Decision::Go => start(store, paths, secrets, source, d, &gates, rollout).await,
    }
}

/// The ring's gates from its trusted definition ([`trusted_spec`]).
pub(super) fn trusted_gates(
    store: &Store,
    paths: &Paths,
    source: &Source,
    ring: &str,
) -> Result<Option<Gates>, PassError> {
    let head = paths.branch.as_deref().unwrap_or("HEAD");
    let Some(spec) = trusted_spec(store, source, &paths.path, ring, head)? else {
        return Ok(None);
    };
    match Gates::from_spec(&spec) {
        Ok(gates) => Ok(Some(gates)),
        Err(e) => {
            tracing::error!(ring, "the ring's gates cannot be used: {e}");
            Ok(None)
        }
    }
}

/// Rolls a queued deployment out whose gates opened.
async fn start(
    store: &mut Store,
    paths: &Paths,
    secrets: &HostSecrets,
    source: &Source,
    d: &Deployment,
    gates: &Gates,
    rollout: &RolloutState,
) -> Result<Option<Deployment>, PassError> {
    let bundle = source.bundle_at(&d.commit, &paths.path)?;
    let compiled =
        tokio::task::block_in_place(|| compile_ring(&paths.state_dir, &bundle, secrets, &d.ring));
    let desired = match compiled.map(|mut c| c.states.remove(&d.ring)) {
        Ok(Some(desired)) if desired.fingerprint() == d.fingerprint => desired,
        _ => {
            let why = "what would be written changed since it was queued; promote again";
            return Ok(Some(store.transition(
                d.id,
                DeploymentState::Failed,
                why,
            )?));
        }
    };
    store.note(d.id, "gates open: started by the daemon")?;
    let running = RolloutState {
        waiting: String::new(),
        ..rollout.clone()
    };
    store.set_rollout(d.id, &running)?;
    let end = run_gated(
        store,
        &paths.state_dir,
        &desired,
        d,
        gates,
        0,
        rollout.emergency,
    )
    .await?;
    Ok(Some(match end {
        RolloutEnd::Active(d) | RolloutEnd::Waiting { deployment: d, .. } => d,
        RolloutEnd::Failed { deployment: d, .. } => d,
    }))
}
