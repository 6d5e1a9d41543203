//! Promotion through the rings: `promote` moves the bundle Active in the ring a ring
//! `promotesFrom` into it, through its gates (freeze, window, approvals) and its rollout
//! strategy with health checks; `approve` / `reject` decide a queued deployment;
//! `pause`, `resume` and `fail` let a person hold or stop a rollout.
//!
//! Gates are read from the trusted configuration: the ring's definition in its Active
//! deployment's commit (or, before its first deployment, the tracked branch head), never
//! from the bundle being promoted, so a commit cannot lower its own gate.

use super::apply::{actor, open_writer, plan_against_workers, refuse_unreachable};
use super::identity::{ApproverEntry, identify, read_token};
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::objects::ObjectStore;
use crate::adapters::store::gates::{RolloutState, Verdict};
use crate::adapters::store::{Store, StoreError};
use crate::engine;
use crate::engine::rollout::RolloutEnd;
use crate::model::deployment::{Deployment, DeploymentId, DeploymentState, NewDeployment};
use crate::model::manifest::RingSpec;
use crate::model::plan::Revision;
use crate::model::{Bundle, DesiredState};
use crate::pipeline::policy::ring_spec;
use crate::pipeline::rollout::{Decision, Gates, Queued};
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
        return continue_waiting(ctx, &mut store, &args.ring, "continue");
    }
    let trusted = trusted_spec(ctx, &store, &args.ring)?;
    let mut gates = gates_of(&args.ring, &trusted)?;
    let source_ring = trusted.promotes_from.as_ref().map(|s| s.value.clone()).ok_or_else(|| {
        Failure::user(format!(
            "ring `{}` does not promote from another ring (no `promotesFrom`); deploy it with `ringops apply --ring {}`",
            args.ring, args.ring
        ))
    })?;
    refuse_unfinished(&store, &args.ring)?;
    let source = store
        .active(&source_ring)
        .map_err(internal)?
        .ok_or_else(|| {
            Failure::user(format!(
                "cannot promote `{}`: ring `{source_ring}` has no Active deployment to promote",
                args.ring
            ))
        })?;
    if let Some(pause) = store.ring_pause(&source_ring).map_err(internal)? {
        return Err(Failure::user(format!(
            "cannot promote `{}`: ring `{source_ring}` is paused ({}); it is not known healthy",
            args.ring, pause.reason
        )));
    }
    let emergency = match args.emergency {
        false => None,
        true => Some(emergency_approver(ctx, args, &gates)?),
    };
    let bundle = ctx.bundle(&super::Revision {
        rev: Some(source.commit.clone()),
        worktree: false,
    })?;
    // The bundle being promoted may raise a freeze at once (never lift one by itself).
    gates.freeze |= ring_spec(&bundle, &args.ring).is_some_and(|s| s.freeze);
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
    let deployment = store.create_deployment(&new).map_err(internal)?;
    if emergency.is_some() {
        store
            .note(
                deployment.id,
                "emergency promotion: windows, freezes and approvals bypassed",
            )
            .map_err(internal)?;
    }
    let state = RolloutState {
        waiting: String::new(),
        emergency: emergency.is_some(),
        batches_done: 0,
    };
    store.set_rollout(deployment.id, &state).map_err(internal)?;
    proceed(ctx, &mut store, &deployment, &gates, &desired)
}

/// Refuses to promote from `source_ring` while its health check (from its trusted
/// definition) fails on any of its workers.
fn refuse_unhealthy(
    ctx: &Context,
    store: &Store,
    bundle: &Bundle,
    source_ring: &str,
    ring: &str,
) -> Result<(), Failure> {
    let gates = gates_of(source_ring, &trusted_spec(ctx, store, source_ring)?)?;
    if gates.probe.is_none() {
        return Ok(());
    }
    let Some(desired) = compile(ctx, bundle, source_ring)? else {
        return Err(Failure::user(format!(
            "ring `{source_ring}` does not compile"
        )));
    };
    let health = crate::engine::rollout::health::RingHealth::new(ctx.state_dir(), &gates, &desired);
    let workers: Vec<String> = desired.workers.keys().cloned().collect();
    let checked = block_on(crate::engine::rollout::HealthGate::check(&health, &workers))?;
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
    if let Some(d) = unfinished(store, ring)? {
        let waiting = store.rollout(d.id).map_err(internal)?.map(|r| r.waiting);
        return Err(Failure::user(format!(
            "ring `{ring}` already has {} {} ({}); approve, reject, continue or `ringops fail {ring} --reason ...` it first",
            d.id,
            d.state,
            describe_wait(waiting.as_deref().unwrap_or_default())
        )));
    }
    Ok(())
}

/// The ring's newest deployment when it is Queued or in progress.
fn unfinished(store: &Store, ring: &str) -> Result<Option<Deployment>, Failure> {
    let newest = store.history(Some(ring), 1).map_err(internal)?.pop();
    Ok(newest.filter(|d| d.state == DeploymentState::Queued || d.state.is_in_progress()))
}

fn describe_wait(waiting: &str) -> &'static str {
    match waiting {
        "approval" => "awaiting approval",
        "window" => "waiting for its window",
        "freeze" => "held by a freeze",
        "continue" => "paused after its canary",
        "paused" => "its ring is paused",
        _ => "in progress",
    }
}

/// The ring's trusted definition ([`crate::engine::rollout::trusted_spec`]).
pub(super) fn trusted_spec(ctx: &Context, store: &Store, ring: &str) -> Result<RingSpec, Failure> {
    let source = ctx.source()?;
    let head = ctx.default_rev();
    crate::engine::rollout::trusted_spec(store, &source, &ctx.path, ring, &head)
        .map_err(engine_failure)?
        .ok_or_else(|| {
            Failure::user(format!(
                "ring `{ring}` has no trusted definition (not in the commit of its last gated deployment, nor at `{head}`)"
            ))
        })
}

pub(super) fn gates_of(ring: &str, spec: &RingSpec) -> Result<Gates, Failure> {
    Gates::from_spec(spec)
        .map_err(|e| Failure::user(format!("ring `{ring}`'s gates cannot be used: {e}")))
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
    let rollout = store.rollout(deployment.id).map_err(internal)?;
    let emergency = rollout.as_ref().is_some_and(|r| r.emergency);
    if let Some(waiting) = hold(store, deployment, gates, emergency)? {
        let state = RolloutState {
            waiting: waiting.0.to_owned(),
            emergency,
            batches_done: 0,
        };
        store.set_rollout(deployment.id, &state).map_err(internal)?;
        store.note(deployment.id, &waiting.1).map_err(internal)?;
        emit(&format!(
            "Deployment {} of ring {} is Queued: {}.\n",
            deployment.id, deployment.ring, waiting.1
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    run(ctx, store, deployment, gates, desired, 0)
}

/// What holds a queued deployment, if anything: `(waiting, explanation)`. A rejected
/// deployment, or one whose approvals timed out (then marked Failed), is an error.
fn hold(
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    emergency: bool,
) -> Result<Option<(&'static str, String)>, Failure> {
    let verdicts = store.verdicts(deployment.id).map_err(internal)?;
    if let Some(no) = verdicts.iter().find(|v| v.verdict == Verdict::Rejected) {
        return Err(Failure::user(format!(
            "{} was rejected by {}",
            deployment.id, no.approver
        )));
    }
    let approvals = crate::adapters::store::gates::approvals(&verdicts);
    let id = deployment.id.to_string();
    let queued = Queued {
        id: &id,
        fingerprint: &deployment.fingerprint,
        approvals: &approvals,
        waited: waited(store, deployment),
        emergency,
    };
    match gates.decide(&queued, chrono::Utc::now()) {
        Decision::Go => Ok(None),
        Decision::Wait { waiting, why } => Ok(Some((waiting, why))),
        Decision::TimedOut => {
            let why = "approval timed out";
            store
                .transition(deployment.id, DeploymentState::Failed, why)
                .map_err(internal)?;
            Err(Failure::user(format!("{}: {why}; rejected", deployment.id)))
        }
    }
}

fn waited(store: &Store, deployment: &Deployment) -> std::time::Duration {
    let now = store.now().0;
    let ms = u64::try_from(now.saturating_sub(deployment.created_at.0)).unwrap_or(0);
    std::time::Duration::from_millis(ms)
}

/// Rolls the deployment out from batch `done` on and reports how it ended.
pub(super) fn run(
    ctx: &Context,
    store: &mut Store,
    deployment: &Deployment,
    gates: &Gates,
    desired: &DesiredState,
    done: usize,
) -> Outcome {
    if desired.fingerprint() != deployment.fingerprint {
        let why = "what would be written changed since it was queued (workers, secrets or ringops); promote again";
        let end = abandon(ctx, store, deployment, gates.auto_revert, why.to_owned())?;
        return Err(Failure::user(format!("{} is {}: {why}", end.id, end.state)));
    }
    let emergency = store
        .rollout(deployment.id)
        .map_err(internal)?
        .is_some_and(|r| r.emergency);
    let batches = {
        let names: Vec<String> = desired.workers.keys().cloned().collect();
        gates.strategy.batches(&names).len()
    };
    let end = block_on(crate::engine::rollout::run_gated(
        store,
        ctx.state_dir(),
        desired,
        deployment,
        gates,
        done,
        emergency,
    ))?
    .map_err(engine_failure)?;
    match end {
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
            emit(&format!(
                "Deployment {} of ring {}: {done} of {} batch(es) done; {}.\n",
                d.id,
                d.ring,
                batches,
                match reason.as_str() {
                    "continue" => format!(
                        "canary healthy, continue with `ringops promote {} --continue`",
                        d.ring
                    ),
                    _ => format!("ring paused, continue with `ringops resume {}`", d.ring),
                }
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
/// `paused` after a pause was lifted).
fn continue_waiting(ctx: &Context, store: &mut Store, ring: &str, waiting: &str) -> Outcome {
    let Some(d) = unfinished(store, ring)? else {
        return Err(Failure::user(format!(
            "ring `{ring}` has no rollout to continue"
        )));
    };
    let rollout = store
        .rollout(d.id)
        .map_err(internal)?
        .unwrap_or(RolloutState {
            waiting: String::new(),
            emergency: false,
            batches_done: 0,
        });
    if rollout.waiting != waiting {
        return Err(Failure::user(format!(
            "{} of ring `{ring}` is not waiting to be continued ({})",
            d.id,
            describe_wait(&rollout.waiting)
        )));
    }
    let (mut gates, _, desired) = gates_and_desired(ctx, store, &d)?;
    if !rollout.emergency {
        refuse_closed(ctx, &mut gates, &d)?;
    }
    let running = RolloutState {
        waiting: String::new(),
        ..rollout.clone()
    };
    store.set_rollout(d.id, &running).map_err(internal)?;
    run(
        ctx,
        store,
        &d,
        &gates,
        &desired,
        rollout.batches_done as usize,
    )
}

/// Refuses to go on with `d` while its ring is frozen (by its trusted definition, or
/// at once by the tracked branch's head) or outside its window; nothing changes.
fn refuse_closed(ctx: &Context, gates: &mut Gates, d: &Deployment) -> Result<(), Failure> {
    let head = ctx.bundle(&super::Revision {
        rev: Some(ctx.default_rev()),
        worktree: false,
    })?;
    gates.freeze |= ring_spec(&head, &d.ring).is_some_and(|s| s.freeze);
    match gates.closed(chrono::Utc::now()) {
        None => Ok(()),
        Some((_, why)) => Err(Failure::user(format!(
            "{} of ring `{}` does not go on now: {why}; it stays where it is",
            d.id, d.ring
        ))),
    }
}

/// The trusted gates of the deployment's ring and its desired state, compiled again
/// from its commit (deterministic: the fingerprint says whether anything changed).
fn gates_and_desired(
    ctx: &Context,
    store: &Store,
    d: &Deployment,
) -> Result<(Gates, Bundle, DesiredState), Failure> {
    let gates = gates_of(&d.ring, &trusted_spec(ctx, store, &d.ring)?)?;
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
    let id: DeploymentId = args
        .deployment
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
    let waiting = store.rollout(id).map_err(internal)?.map(|r| r.waiting);
    if d.state != DeploymentState::Queued || waiting.as_deref() != Some("approval") {
        return Err(Failure::user(format!(
            "{id} is {} and not awaiting approval",
            d.state
        )));
    }
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
        .record_verdict(id, &approver.name, verdict, &fingerprint, &args.reason)
        .map_err(internal)?;
    if verdict == Verdict::Rejected {
        let why = format!("rejected by {}: {}", approver.name, args.reason);
        store
            .set_rollout(
                id,
                &RolloutState {
                    waiting: String::new(),
                    emergency: false,
                    batches_done: 0,
                },
            )
            .map_err(internal)?;
        store
            .transition(id, DeploymentState::Failed, &why)
            .map_err(internal)?;
        emit(&format!("Deployment {id} rejected; it is Failed.\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&format!("Approved {id} as {}.\n", approver.name))?;
    proceed(ctx, &mut store, &d, &gates, &desired)
}

/// Ends an unfinished deployment for `reason`: a Queued one fails; one under way fails
/// too, or with `auto_revert` puts back every worker it recorded (from the object
/// store, so it needs no compile) on the previous Active deployment.
fn abandon(
    ctx: &Context,
    store: &mut Store,
    d: &Deployment,
    auto_revert: bool,
    reason: String,
) -> Result<Deployment, Failure> {
    let touched: Vec<String> = store
        .workers(d.id)
        .map_err(internal)?
        .into_iter()
        .filter(|w| w.outcome != crate::model::deployment::WorkerOutcome::Skipped)
        .map(|w| w.worker)
        .collect();
    if d.state == DeploymentState::Queued || touched.is_empty() {
        return store
            .transition(d.id, DeploymentState::Failed, &reason)
            .map_err(internal);
    }
    let objects = ObjectStore::new(ctx.state_dir());
    let redact = ctx.secrets.all_values();
    let targets =
        engine::targets_from_record(store, &objects, ctx.state_dir(), d.id, None, &redact)
            .map_err(engine_failure)?;
    let previous = store.active(&d.ring).map_err(internal)?;
    block_on(engine::rollout::stop(
        store,
        &objects,
        ctx.state_dir(),
        &targets,
        d,
        previous.as_ref(),
        &touched,
        auto_revert,
        reason,
    ))?
    .map_err(engine_failure)
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
    let waiting = match unfinished(store, ring)? {
        Some(d) => store.rollout(d.id).map_err(internal)?.map(|r| r.waiting),
        None => None,
    };
    if waiting.as_deref() == Some("paused") {
        return continue_waiting(ctx, store, ring, "paused").map(Some);
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
    let Some(d) = unfinished(&store, &args.ring)? else {
        return Err(Failure::user(format!(
            "ring `{}` has no rollout to fail",
            args.ring
        )));
    };
    let reason = format!("failed by {}: {}", actor(), args.reason);
    let gates = gates_of(&d.ring, &trusted_spec(ctx, &store, &d.ring)?)?;
    let end = abandon(ctx, &mut store, &d, gates.auto_revert, reason)?;
    emit(&format!("Deployment {} is {}.\n", end.id, end.state))?;
    Ok(ExitCode::SUCCESS)
}
