//! What every promotion command shares once it holds the writer lock: the gates in
//! force, the desired state compiled from a commit, and starting (or holding, or
//! rejecting) a deployment's rollout as [`promotion::next`] decides, then running it.

use crate::adapters::store::Store;
use crate::cli::apply::actor;
use crate::cli::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::engine::deploy::{Deployed, RolloutEnd};
use crate::engine::promotion::{self, Advanced, Mover};
use crate::engine::{self, EngineError};
use crate::model::deployment::{Deployment, Waiting};
use crate::model::{Bundle, DesiredState};
use crate::pipeline::rollout::Gates;
use std::process::ExitCode;

/// The gates in force for `ring` ([`engine::gates::effective`]), the tracked branch's
/// head read now; `incoming` is the bundle being deployed, if any. The outer error is
/// the command's (the repository cannot be read); the inner one the engine's, for a
/// caller that treats a ring without a trusted definition specially.
pub(in crate::cli) fn effective_gates(
    ctx: &Context,
    store: &Store,
    ring: &str,
    incoming: Option<&Bundle>,
) -> Result<Result<Gates, EngineError>, Failure> {
    let source = ctx.source()?;
    let rev = ctx.default_rev();
    let at_head = incoming
        .filter(|b| b.commit.is_some() && source.resolve(&rev).ok().as_ref() == b.commit.as_ref());
    let read;
    let head = match at_head {
        Some(bundle) => bundle,
        None => {
            read = ctx.bundle(&crate::cli::Revision {
                rev: Some(rev.clone()),
                worktree: false,
            })?;
            &read
        }
    };
    let trust = engine::gates::Trust {
        source: &source,
        path: &ctx.path,
        rev: &rev,
        head,
    };
    Ok(engine::gates::effective(store, &trust, ring, incoming))
}

/// Compiles `ring` of `bundle`; `None` after printing the manifests' errors.
pub(super) fn compile(
    ctx: &Context,
    bundle: &Bundle,
    ring: &str,
) -> Result<Option<DesiredState>, Failure> {
    match engine::compile::compile_ring(ctx.state_dir(), bundle, &ctx.secrets, ring) {
        Ok(mut c) => {
            c.states.remove(ring).map(Some).ok_or_else(|| {
                Failure::user(format!("ring `{ring}` has no workers at this commit"))
            })
        }
        Err(diags) => {
            crate::cli::print_diagnostics(&diags)?;
            Ok(None)
        }
    }
}

/// The gates in force for the deployment's ring and its desired state, compiled again
/// from its commit (deterministic: the fingerprint says whether anything changed).
pub(super) fn gates_and_desired(
    ctx: &Context,
    store: &Store,
    d: &Deployment,
) -> Result<(Gates, Bundle, DesiredState), Failure> {
    let gates = effective_gates(ctx, store, &d.ring, None)?.map_err(engine_failure)?;
    let bundle = ctx.bundle(&crate::cli::Revision {
        rev: Some(d.commit.clone()),
        worktree: false,
    })?;
    let desired = compile(ctx, &bundle, &d.ring)?
        .ok_or_else(|| Failure::user(format!("{}'s commit no longer compiles", d.id)))?;
    Ok((gates, bundle, desired))
}

/// Starts the deployment's rollout when its gates let it, else says what it waits for.
pub(super) fn proceed(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    desired: &DesiredState,
) -> Outcome {
    let (redact, who) = (ctx.secrets.all_values(), actor());
    let mover = Mover {
        actor: &who,
        redact: &redact,
        now: chrono::Utc::now(),
    };
    let engine = ctx.engine();
    let advance = promotion::advance(&engine, store, deployment, gates, &mover, || Some(desired));
    match block_on(advance)?.map_err(engine_failure)? {
        Advanced::Ran(deployed) => report(deployed, batches(gates, desired)),
        Advanced::Held { why, .. } => {
            emit(&format!(
                "Deployment {} of ring {} is Queued: {why}.\n",
                deployment.id, deployment.ring
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Advanced::Rejected { deployment: d, why } => Err(Failure::user(format!("{}: {why}", d.id))),
    }
}

/// How many batches the ring's strategy switches `desired` in.
fn batches(gates: &Gates, desired: &DesiredState) -> usize {
    let names: Vec<String> = desired.workers.keys().cloned().collect();
    gates.strategy.batches(&names).len()
}

/// Rolls the deployment out from where it stopped and reports how it ended.
pub(in crate::cli) fn run(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    desired: &DesiredState,
) -> Outcome {
    let redact = ctx.secrets.all_values();
    let engine = ctx.engine();
    let run = promotion::run(&engine, store, deployment, desired, gates, &redact);
    let deployed = block_on(run)?.map_err(engine_failure)?;
    report(deployed, batches(gates, desired))
}

/// Says where a run of a deployment ended: an error when it failed.
pub(in crate::cli) fn report(deployed: Deployed, batches: usize) -> Outcome {
    match deployed.end {
        RolloutEnd::Active(d) if d.unchanged => {
            emit(&format!(
                "Deployment {} is Active on ring {}: {}.\n",
                d.id,
                d.ring,
                crate::model::deployment::NO_CHANGES
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        RolloutEnd::Active(d) => {
            emit(&format!(
                "Deployment {} is Active on ring {} ({} batch(es)).\n",
                d.id, d.ring, batches
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        RolloutEnd::Waiting {
            deployment: d,
            reason,
            done,
        } => {
            let next = match reason {
                Waiting::Continue => format!(
                    "canary healthy, continue with `ringops promote {} --continue`",
                    d.ring
                ),
                _ => format!("ring paused, continue with `ringops resume {}`", d.ring),
            };
            emit(&format!(
                "Deployment {} of ring {}: {done} of {batches} batch(es) done; {next}.\n",
                d.id, d.ring
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        RolloutEnd::Failed {
            deployment: d,
            reason,
        } => Err(Failure::user(format!(
            "deployment {} is {}: {reason} (see `ringops show {}`)",
            d.id, d.state, d.id
        ))),
    }
}
