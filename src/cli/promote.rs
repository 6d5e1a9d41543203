//! Promotion through the rings: `promote` moves the bundle Active in the ring a ring
//! `promotesFrom` into it, through its gates (freeze, window, approvals) and its rollout
//! strategy with health checks; `approve` / `reject` decide a queued deployment;
//! `pause`, `resume` and `fail` let a person hold or stop a rollout.
//!
//! Gates are those in force ([`engine::gates::effective`]) and what they say of a
//! deployment is [`engine::promotion::next`]'s decision, as in the daemon; this module
//! parses, confirms and prints.

use super::apply::{actor, open_writer, plan_against_workers, refuse_unreachable};
use super::identity::{ApproverEntry, identify, read_token};
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::store::gates::{RolloutState, Verdict};
use crate::adapters::store::{Store, StoreError};
use crate::engine::deploy::RolloutEnd;
use crate::engine::promotion::{self, Step};
use crate::engine::{self, EngineError};
use crate::model::deployment::{Deployment, DeploymentId, DeploymentState, NewDeployment, Waiting};
use crate::model::plan::Revision;
use crate::model::{Bundle, DesiredState};
use crate::pipeline::rollout::Gates;
use crate::report;
use clap::Args;
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

fn internal(e: StoreError) -> Failure {
    Failure::Internal(e.into())
}

/// `ringops promote RING`: queue (or, when no gate holds it, roll out) the bundle that
/// is Active in the ring RING promotes from; `--continue` goes on after a canary.
pub fn promote(ctx: &Context, args: &PromoteArgs) -> Outcome {
    let (_lock, mut store) = open_writer(ctx, "ringops promote", args.wait)?;
    if args.continue_ {
        return continue_waiting(ctx, &mut store, &args.ring, Waiting::Continue);
    }
    let gates = effective_gates(ctx, &store, &args.ring, None)?.map_err(engine_failure)?;
    let source_ring = gates.promotes_from.clone().ok_or_else(|| {
        Failure::user(format!(
            "ring `{}` does not promote from another ring (no `promotesFrom`); deploy it with `ringops apply --ring {}`",
            args.ring, args.ring
        ))
    })?;
    refuse_unfinished(&store, &args.ring)?;
    let source = promotable(&store, &source_ring, &args.ring)?;
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
    if store
        .active(&args.ring)
        .map_err(internal)?
        .is_some_and(|a| a.fingerprint == plan.fingerprint)
    {
        emit(&format!(
            "Nothing to promote: ring {} already runs this.\n",
            args.ring
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (who, reason) = match &emergency {
        Some(name) => (name.clone(), format!("EMERGENCY: {}", args.reason)),
        None => (
            actor(),
            promotion_reason(&args.reason, &source, &source_ring),
        ),
    };
    let new = NewDeployment {
        ring: args.ring.clone(),
        commit: source.commit.clone(),
        tree: source.tree.clone(),
        fingerprint: plan.fingerprint.clone(),
        actor: who,
        reason,
        rollback_of: None,
    };
    let deployment = queue(&mut store, &new, emergency.is_some())?;
    proceed(ctx, &mut store, &deployment, &gates, &desired)
}

/// The Active deployment of `source_ring` to promote into `ring`: refused while the
/// source ring has none or is paused (it is not known healthy).
fn promotable(store: &Store, source_ring: &str, ring: &str) -> Result<Deployment, Failure> {
    let source = store
        .active(source_ring)
        .map_err(internal)?
        .ok_or_else(|| {
            Failure::user(format!(
                "cannot promote `{ring}`: ring `{source_ring}` has no Active deployment to promote"
            ))
        })?;
    if let Some(pause) = store.ring_pause(source_ring).map_err(internal)? {
        return Err(Failure::user(format!(
            "cannot promote `{ring}`: ring `{source_ring}` is paused ({}); it is not known healthy",
            pause.reason
        )));
    }
    Ok(source)
}

/// Records the promotion as a Queued deployment (noted as an emergency when it is one).
fn queue(store: &mut Store, new: &NewDeployment, emergency: bool) -> Result<Deployment, Failure> {
    let deployment = store.create_deployment(new).map_err(internal)?;
    if emergency {
        store
            .note(
                deployment.id,
                "emergency promotion: windows, freezes and approvals bypassed",
            )
            .map_err(internal)?;
    }
    let state = RolloutState::running(emergency, 0);
    store.set_rollout(deployment.id, &state).map_err(internal)?;
    Ok(deployment)
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
    let health = engine::health::RingHealth::new(ctx.state_dir(), &gates, &desired);
    let workers: Vec<String> = desired.workers.keys().cloned().collect();
    let checked = block_on(health.check(&workers))?;
    checked.map_err(|why| {
        Failure::user(format!(
            "cannot promote `{ring}`: ring `{source_ring}` is not healthy: {why}"
        ))
    })
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
    let approver = approver(ctx, args.token_file.as_ref())?;
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

/// The approver whose token is given.
fn approver(ctx: &Context, file: Option<&PathBuf>) -> Result<ApproverEntry, Failure> {
    let token = read_token(file.map(PathBuf::as_path)).map_err(|e| Failure::User(e.into()))?;
    identify(ctx.approvers(), &token)
        .cloned()
        .map_err(|e| Failure::User(e.into()))
}

/// Refuses a promotion while the ring has a deployment queued or half rolled out.
fn refuse_unfinished(store: &Store, ring: &str) -> Result<(), Failure> {
    if let Some(d) = store.unfinished(ring).map_err(internal)? {
        let waiting = store
            .rollout(d.id)
            .map_err(internal)?
            .and_then(|r| r.waiting);
        return Err(Failure::user(format!(
            "ring `{ring}` already has {} {} ({}); approve, reject, continue or `ringops fail {ring} --reason ...` it first",
            d.id,
            d.state,
            describe_wait(waiting)
        )));
    }
    Ok(())
}

fn describe_wait(waiting: Option<Waiting>) -> &'static str {
    waiting.map_or("in progress", Waiting::describe)
}

/// The gates in force for `ring` ([`engine::gates::effective`]), the tracked branch's
/// head read now; `incoming` is the bundle being deployed, if any. The outer error is
/// the command's (the repository cannot be read); the inner one the engine's, for a
/// caller that treats a ring without a trusted definition specially.
pub(super) fn effective_gates(
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
            read = ctx.bundle(&super::Revision {
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
fn compile(ctx: &Context, bundle: &Bundle, ring: &str) -> Result<Option<DesiredState>, Failure> {
    match engine::compile::compile_ring(ctx.state_dir(), bundle, &ctx.secrets, ring) {
        Ok(mut c) => {
            c.states.remove(ring).map(Some).ok_or_else(|| {
                Failure::user(format!("ring `{ring}` has no workers at this commit"))
            })
        }
        Err(diags) => {
            super::print_diagnostics(&diags)?;
            Ok(None)
        }
    }
}

/// Starts the deployment's rollout when its gates let it, else says what it waits for.
fn proceed(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    desired: &DesiredState,
) -> Outcome {
    let step = promotion::next(store, deployment, gates, chrono::Utc::now()).map_err(internal)?;
    match step {
        Step::Start => run(ctx, store, deployment, gates, desired),
        Step::Wait { waiting, why } => {
            promotion::hold(store, deployment, waiting, &why).map_err(internal)?;
            emit(&format!(
                "Deployment {} of ring {} is Queued: {why}.\n",
                deployment.id, deployment.ring
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Step::Reject { why } => {
            promotion::reject(store, deployment, &why).map_err(internal)?;
            Err(Failure::user(format!("{}: {why}; rejected", deployment.id)))
        }
    }
}

/// Rolls the deployment out from where it stopped and reports how it ended.
pub(super) fn run(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    desired: &DesiredState,
) -> Outcome {
    let batches = {
        let names: Vec<String> = desired.workers.keys().cloned().collect();
        gates.strategy.batches(&names).len()
    };
    let redact = ctx.secrets.all_values();
    let engine = ctx.engine();
    let run = promotion::run(&engine, store, deployment, desired, gates, &redact);
    let deployed = block_on(run)?.map_err(engine_failure)?;
    match deployed.end {
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

/// Goes on with the ring's deployment waiting for `waiting` (`continue` after a canary,
/// `paused` after a pause was lifted), when its gates let it now.
fn continue_waiting(ctx: &Context, store: &mut Store, ring: &str, waiting: Waiting) -> Outcome {
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
            describe_wait(rollout.waiting)
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

/// The gates in force for the deployment's ring and its desired state, compiled again
/// from its commit (deterministic: the fingerprint says whether anything changed).
fn gates_and_desired(
    ctx: &Context,
    store: &Store,
    d: &Deployment,
) -> Result<(Gates, Bundle, DesiredState), Failure> {
    let gates = effective_gates(ctx, store, &d.ring, None)?.map_err(engine_failure)?;
    let bundle = ctx.bundle(&super::Revision {
        rev: Some(d.commit.clone()),
        worktree: false,
    })?;
    let desired = compile(ctx, &bundle, &d.ring)?
        .ok_or_else(|| Failure::user(format!("{}'s commit no longer compiles", d.id)))?;
    Ok((gates, bundle, desired))
}

/// `ringops approve DEPLOYMENT`: records the token holder's approval of what the
/// deployment would write now; the last approval needed starts the rollout.
pub fn approve(ctx: &Context, args: &VerdictArgs) -> Outcome {
    verdict(ctx, args, Verdict::Approved)
}

/// `ringops reject DEPLOYMENT --reason`: records the rejection; the deployment fails.
pub fn reject(ctx: &Context, args: &VerdictArgs) -> Outcome {
    if args.reason.trim().is_empty() {
        return Err(Failure::user("a rejection needs a --reason"));
    }
    verdict(ctx, args, Verdict::Rejected)
}

fn verdict(ctx: &Context, args: &VerdictArgs, verdict: Verdict) -> Outcome {
    let approver = approver(ctx, args.token_file.as_ref())?;
    let (_lock, mut store) = open_writer(ctx, "ringops approve", args.wait)?;
    let d = awaiting_approval(&store, &args.deployment)?;
    let (gates, bundle, desired) = gates_and_desired(ctx, &store, &d)?;
    let allowed = gates
        .approvals
        .as_ref()
        .is_some_and(|a| a.approvers.contains(&approver.name));
    if !allowed {
        return Err(Failure::user(format!(
            "{} is not an approver of ring `{}`",
            approver.name, d.ring
        )));
    }
    if verdict == Verdict::Approved {
        // What is approved: the plan against the workers as they are now.
        let head = Revision {
            rev: d.id.to_string(),
            commit: bundle.commit.clone(),
        };
        let (plan, _) = plan_against_workers(ctx, &bundle, &desired, head)?;
        emit(&report::text::render(&plan, true))?;
    }
    // The approval binds to what would be written now, which may differ from what was
    // queued (then it counts for nothing).
    let fingerprint = desired.fingerprint();
    store
        .record_verdict(d.id, &approver.name, verdict, &fingerprint, &args.reason)
        .map_err(internal)?;
    if verdict == Verdict::Rejected {
        let why = format!("rejected by {}: {}", approver.name, args.reason);
        promotion::reject(&mut store, &d, &why).map_err(internal)?;
        emit(&format!("Deployment {} rejected; it is Failed.\n", d.id))?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&format!("Approved {} as {}.\n", d.id, approver.name))?;
    proceed(ctx, &mut store, &d, &gates, &desired)
}

/// The deployment `id` names, refused unless it is Queued awaiting approval.
fn awaiting_approval(store: &Store, id: &str) -> Result<Deployment, Failure> {
    let id: DeploymentId = id
        .parse()
        .map_err(|e| Failure::User(anyhow::Error::new(e)))?;
    let d = match store.get(id) {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            return Err(Failure::user(format!(
                "no deployment {id} (see `ringops history`)"
            )));
        }
        Err(e) => return Err(internal(e)),
    };
    let waiting = store.rollout(id).map_err(internal)?.and_then(|r| r.waiting);
    if d.state != DeploymentState::Queued || waiting != Some(Waiting::Approval) {
        return Err(Failure::user(format!(
            "{id} is {} and not awaiting approval",
            d.state
        )));
    }
    Ok(d)
}

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
