//! Promotion through the rings: `promote` moves the bundle Active in the ring a ring
//! `promotesFrom` into it, through its gates (freeze, window, approvals) and its rollout
//! strategy with health checks; `approve` / `reject` decide a queued deployment
//! (`verdict`); `pause`, `resume` and `fail` let a person hold or stop a rollout
//! (`hold`). What they share (gates in force, compiling, starting and running a
//! rollout) is in `rollout`.
//!
//! Gates are those in force ([`engine::gates::effective`]) and what they say of a
//! deployment is [`engine::promotion::next`]'s decision, as in the daemon; this module
//! parses, confirms and prints.

mod hold;
mod rollout;
mod verdict;

pub use hold::{fail, pause, unpause};
pub(super) use rollout::{effective_gates, report};
pub use verdict::{approve, reject};

use super::apply::{actor, open_writer, plan_against_workers, refuse_unreachable};
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::store::{Store, StoreError};
use crate::engine;
use crate::engine::promotion::intake;
use crate::model::Bundle;
use crate::model::deployment::{Deployment, NewDeployment, Waiting};
use crate::model::plan::{Plan, Revision};
use crate::pipeline::rollout::Gates;
use crate::report;
use clap::Args;
use rollout::{compile, proceed};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The ring to promote into.
    pub ring: String,
    /// Why, recorded with the deployment.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Go on with a rollout paused after its canary.
    #[arg(long = "continue")]
    pub continue_: bool,
    /// Bypass windows, freezes and approvals (approvers allowed `emergency` only; needs
    /// a token and a --reason; marked in the history).
    #[arg(long)]
    pub emergency: bool,
    /// File holding your approver token (default: RINGOPS_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Arguments of `approve` and `reject`.
#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// The queued deployment (e.g. d-000042).
    pub deployment: String,
    /// Why (required to reject).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// File holding your approver token (default: RINGOPS_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Arguments of `pause` and `fail`.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The ring.
    pub ring: String,
    /// Why (required to fail).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// A store failure, which the command cannot help: exit 2.
fn internal(e: StoreError) -> Failure {
    Failure::Internal(e.into())
}

/// `ringops promote RING`: queue (or, when no gate holds it, roll out) the bundle that
/// is Active in the ring RING promotes from; `--continue` goes on after a canary.
pub fn promote(ctx: &Context, args: &PromoteArgs) -> Outcome {
    let (_lock, mut store) = open_writer(ctx, "ringops promote", args.wait)?;
    if args.continue_ {
        return hold::continue_waiting(ctx, &mut store, &args.ring, Waiting::Continue);
    }
    let gates = effective_gates(ctx, &store, &args.ring, None)?.map_err(engine_failure)?;
    let (source_ring, source) =
        intake::promotable(&store, &gates, &args.ring).map_err(engine_failure)?;
    let emergency = match args.emergency {
        false => None,
        true => Some(emergency_approver(ctx, args, &gates)?),
    };
    let bundle = ctx.bundle(&super::Revision {
        rev: Some(source.commit.clone()),
        worktree: false,
    })?;
    let gates = engine::gates::with_incoming(gates, &bundle, &args.ring);
    if emergency.is_none() {
        refuse_unhealthy(ctx, &store, &bundle, &source_ring, &args.ring)?;
    }
    let Some(desired) = compile(ctx, &bundle, &args.ring)? else {
        return Ok(ExitCode::from(1));
    };
    let head = Revision {
        rev: format!("{} of {source_ring}", source.id),
        commit: bundle.commit.clone(),
    };
    let (plan, _) = plan_against_workers(ctx, &bundle, &desired, head)?;
    emit(&report::text::render(&plan, true))?;
    refuse_unreachable(&plan)?;
    let active = store.active(&args.ring).map_err(internal)?;
    if runs_already(active.as_ref(), &source.commit, &plan) {
        emit(&format!(
            "Nothing to promote: ring {} already runs this.\n",
            args.ring
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let unchanged = engine::deploy::changes_nothing(active.as_ref(), &plan.fingerprint, &plan);
    let new = new_deployment(args, &source, &source_ring, &plan, emergency.as_deref());
    let mut deployment = intake::queue(&mut store, &new, emergency.is_some()).map_err(internal)?;
    if unchanged {
        let note = crate::model::deployment::NO_CHANGES;
        deployment = store
            .mark_unchanged(deployment.id, note)
            .map_err(internal)?;
    }
    proceed(ctx, &mut store, &deployment, &gates, &desired)
}

/// Whether the ring's Active deployment already is `commit` with the plan's
/// fingerprint. (A new commit that changes nothing here is still promoted: recorded as
/// changing nothing, it carries the commit on to the next ring.)
fn runs_already(active: Option<&Deployment>, commit: &str, plan: &Plan) -> bool {
    active.is_some_and(|a| a.commit == commit && a.fingerprint == plan.fingerprint)
}

/// The deployment promoting `source` into the ring, by the `emergency` approver when
/// there is one (its reason marked so), else by the local actor.
fn new_deployment(
    args: &PromoteArgs,
    source: &Deployment,
    source_ring: &str,
    plan: &Plan,
    emergency: Option<&str>,
) -> NewDeployment {
    let (who, reason) = match emergency {
        Some(name) => (name.to_owned(), format!("EMERGENCY: {}", args.reason)),
        None => (actor(), promotion_reason(&args.reason, source, source_ring)),
    };
    NewDeployment {
        ring: args.ring.clone(),
        commit: source.commit.clone(),
        tree: source.tree.clone(),
        fingerprint: plan.fingerprint.clone(),
        actor: who,
        reason,
        rollback_of: None,
    }
}

/// Refuses to promote from `source_ring` while its health check (from its gates in
/// force) fails on any of its workers.
fn refuse_unhealthy(
    ctx: &Context,
    store: &Store,
    bundle: &Bundle,
    source_ring: &str,
    ring: &str,
) -> Result<(), Failure> {
    let gates = effective_gates(ctx, store, source_ring, None)?.map_err(engine_failure)?;
    if gates.probe.is_none() {
        return Ok(());
    }
    let Some(desired) = compile(ctx, bundle, source_ring)? else {
        return Err(Failure::user(format!(
            "ring `{source_ring}` does not compile"
        )));
    };
    let engine = ctx.engine();
    let check = intake::check_source_health(&engine, &gates, &desired, ring);
    block_on(check)?.map_err(engine_failure)
}

/// The reason recorded for a promotion.
fn promotion_reason(given: &str, source: &Deployment, source_ring: &str) -> String {
    let from = format!(
        "promotion of {} ({} in {source_ring})",
        report::short(&source.commit),
        source.id
    );
    if given.trim().is_empty() {
        from
    } else {
        format!("{given} ({from})")
    }
}

/// The approver allowed an emergency promotion, from the token.
fn emergency_approver(ctx: &Context, args: &PromoteArgs, gates: &Gates) -> Result<String, Failure> {
    if args.reason.trim().is_empty() {
        return Err(Failure::user("an emergency promotion needs a --reason"));
    }
    let approver = verdict::approver(ctx, args.token_file.as_ref())?;
    if !approver.emergency {
        return Err(Failure::user(format!(
            "{} may not promote with --emergency (not allowed in the configuration's [[approvers]])",
            approver.name
        )));
    }
    // A ring that names its approvers takes emergencies from them only.
    if let Some(gate) = &gates.approvals
        && !gate.approvers.contains(&approver.name)
    {
        return Err(Failure::user(format!(
            "{} may not promote ring `{}` with --emergency: not one of its approvers ({})",
            approver.name,
            args.ring,
            gate.approvers
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(approver.name)
}
