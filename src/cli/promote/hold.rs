//! Holding and stopping a rollout: `pause`, lifting a pause (`resume`, through
//! [`unpause`]), `fail`, and going on with a rollout that waits for a person
//! (`promote --continue`).

use super::rollout::{effective_gates, gates_and_desired, run};
use super::{HoldArgs, internal};
use crate::adapters::store::Store;
use crate::cli::apply::{actor, open_writer};
use crate::cli::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::engine::promotion::intake;
use crate::engine::promotion::{self, Step};
use crate::model::deployment::Waiting;
use std::process::ExitCode;

/// `ringops pause RING`: no new batch of the ring starts until `resume`.
pub fn pause(ctx: &Context, args: &HoldArgs) -> Outcome {
    let (_lock, mut store) = open_writer(ctx, "ringops pause", args.wait)?;
    let reason = if args.reason.trim().is_empty() {
        format!("paused by {}", actor())
    } else {
        args.reason.clone()
    };
    store.pause_ring(&args.ring, &reason).map_err(internal)?;
    emit(&format!(
        "Ring {} paused: no batch starts until `ringops resume {}`.\n",
        args.ring, args.ring
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Lifts a pause; continues a rollout that stopped for it. True when there was one.
pub fn unpause(ctx: &Context, store: &mut Store, ring: &str) -> Result<Option<ExitCode>, Failure> {
    if !store.unpause_ring(ring).map_err(internal)? {
        return Ok(None);
    }
    emit(&format!("Ring {ring} unpaused.\n"))?;
    let waiting = match store.unfinished(ring).map_err(internal)? {
        Some(d) => store
            .rollout(d.id)
            .map_err(internal)?
            .and_then(|r| r.waiting),
        None => None,
    };
    if waiting == Some(Waiting::Paused) {
        return continue_waiting(ctx, store, ring, Waiting::Paused).map(Some);
    }
    Ok(Some(ExitCode::SUCCESS))
}

/// `ringops fail RING --reason`: stops the ring's queued or paused rollout. With
/// `autoRevert`, the workers it switched get the previous Active deployment back.
pub fn fail(ctx: &Context, args: &HoldArgs) -> Outcome {
    if args.reason.trim().is_empty() {
        return Err(Failure::user("`fail` needs a --reason"));
    }
    let (_lock, mut store) = open_writer(ctx, "ringops fail", args.wait)?;
    let Some(d) = store.unfinished(&args.ring).map_err(internal)? else {
        return Err(Failure::user(format!(
            "ring `{}` has no rollout to fail",
            args.ring
        )));
    };
    let reason = format!("failed by {}: {}", actor(), args.reason);
    let gates = effective_gates(ctx, &store, &d.ring, None)?.map_err(engine_failure)?;
    let redact = ctx.secrets.all_values();
    let engine = ctx.engine();
    let abandon = promotion::abandon(&engine, &mut store, &d, gates.auto_revert, reason, &redact);
    let end = block_on(abandon)?.map_err(engine_failure)?;
    emit(&format!("Deployment {} is {}.\n", end.id, end.state))?;
    Ok(ExitCode::SUCCESS)
}

/// Goes on with the ring's deployment waiting for `waiting` (`continue` after a canary,
/// `paused` after a pause was lifted), when its gates let it now.
pub(super) fn continue_waiting(
    ctx: &Context,
    store: &mut Store,
    ring: &str,
    waiting: Waiting,
) -> Outcome {
    let Some(d) = store.unfinished(ring).map_err(internal)? else {
        return Err(Failure::user(format!(
            "ring `{ring}` has no rollout to continue"
        )));
    };
    let rollout = store.rollout(d.id).map_err(internal)?.unwrap_or_default();
    if rollout.waiting != Some(waiting) {
        return Err(Failure::user(format!(
            "{} of ring `{ring}` is not waiting to be continued ({})",
            d.id,
            intake::describe(rollout.waiting)
        )));
    }
    let (gates, _, desired) = gates_and_desired(ctx, store, &d)?;
    match promotion::next(store, &d, &gates, chrono::Utc::now()).map_err(internal)? {
        // What the person said goes on: the canary continued, the pause lifted.
        Step::Start => {}
        Step::Wait { waiting: w, .. } if w == waiting => {}
        Step::Wait { why, .. } | Step::Reject { why } => {
            return Err(Failure::user(format!(
                "{} of ring `{}` does not go on now: {why}; it stays where it is",
                d.id, d.ring
            )));
        }
    }
    run(ctx, store, &d, &gates, &desired)
}
