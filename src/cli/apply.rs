//! `ringops apply`: plan a ring against its workers, confirm, apply, record; or apply a
//! saved plan exactly, refusing it when anything it was made against has changed.

use super::{Context, Failure, Outcome, Revision as Source, block_on, emit, engine_failure};
use crate::adapters::lock::{LockError, WriterLock};
use crate::adapters::store::Store;
use crate::engine;
use crate::model::deployment::NewDeployment;
use crate::model::observed::ObservedState;
use crate::model::plan::Revision;
use crate::model::{Bundle, DesiredState, Plan};
use crate::pipeline::plan::PlanInput;
use crate::pipeline::rollout::Gates;
use crate::report;
use crate::report::saved::{Facts, SavedPlan};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `ringops plan --out`: applied exactly as reviewed, without
    /// asking, or refused if anything it was made against changed.
    #[arg(value_name = "PLAN.json", conflicts_with_all = ["ring", "rev"])]
    pub plan_file: Option<PathBuf>,
    /// Ring to apply.
    #[arg(long, required_unless_present = "plan_file")]
    pub ring: Option<String>,
    /// Revision to deploy (default: the tracked branch, `branch` in ringops.toml, or HEAD).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// Why, recorded with the deployment.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Shows the plan, asks (unless `--yes`), applies and records the deployment.
pub fn run(ctx: &Context, args: &ApplyArgs) -> Outcome {
    let (_lock, mut store) = open_writer(ctx, "ringops apply", args.wait)?;
    if let Some(file) = &args.plan_file {
        return apply_saved(ctx, &mut store, file, args);
    }
    let ring = args.ring.as_deref().unwrap_or_default();
    let rev = args.rev.clone().unwrap_or_else(|| ctx.default_rev());
    let Some(prepared) = prepare(ctx, ring, &rev)? else {
        return Ok(ExitCode::from(1));
    };
    emit(&report::text::render(&prepared.plan, true))?;
    refuse_unreachable(&prepared.plan)?;
    let gates = admitted(ctx, &store, &prepared)?;
    let unchanged = match compare_active(ctx, &store, &prepared)? {
        Compared::Runs => {
            emit("Nothing to apply.\n")?;
            return Ok(ExitCode::SUCCESS);
        }
        Compared::NewCommit => true,
        Compared::Changes => false,
    };
    let question = match unchanged {
        true => format!(
            "Nothing changes on the workers of ring {ring}; record {} as its bundle (the next ring promotes it)?",
            report::short(prepared.bundle.commit.as_deref().unwrap_or_default())
        ),
        false => format!("Apply this plan to ring {ring}?"),
    };
    if !args.yes && !confirm(&question)? {
        emit("Apply cancelled.\n")?;
        return Ok(ExitCode::from(1));
    }
    let outcome = deploy(ctx, &mut store, &prepared, &gates, &args.reason, unchanged);
    super::leave_to_exit(prepared);
    outcome
}

/// How a prepared ring compares with its Active deployment.
enum Compared {
    /// The Active deployment is this commit and the workers hold it: nothing to do.
    Runs,
    /// Another commit with the same desired state, held by the workers: recorded as
    /// changing nothing, so the ring carries the commit on.
    NewCommit,
    /// Something on the workers changes.
    Changes,
}

/// Whether applying `prepared` changes anything on the ring's workers, and whether it
/// is a commit the ring does not run yet.
fn compare_active(ctx: &Context, store: &Store, prepared: &Prepared) -> Result<Compared, Failure> {
    let plan = &prepared.plan;
    let active = store
        .active(&plan.ring)
        .map_err(|e| Failure::Internal(e.into()))?;
    if !engine::deploy::changes_nothing(active.as_ref(), &plan.fingerprint, plan) {
        return Ok(Compared::Changes);
    }
    let Some(a) = active else {
        return Ok(Compared::Changes);
    };
    if !same_placements(ctx, store, a.id, &prepared.desired)? {
        return Ok(Compared::Changes);
    }
    Ok(
        match prepared.bundle.commit.as_deref() == Some(a.commit.as_str()) {
            true => Compared::Runs,
            false => Compared::NewCommit,
        },
    )
}

/// Takes the writer lock and opens the state, marking deployments a crashed writer
/// left in progress as Failed.
pub fn open_writer(
    ctx: &Context,
    command: &str,
    wait: bool,
) -> Result<(WriterLock, Store), Failure> {
    let state_dir = ctx.state_dir();
    let lock = match WriterLock::acquire(state_dir, command, false) {
        Err(LockError::Held { holder, .. }) if wait => {
            let who = holder.map_or_else(|| "another ringops".to_owned(), |h| h.to_string());
            eprintln!("waiting for the writer lock ({who})");
            WriterLock::acquire(state_dir, command, true)
        }
        other => other,
    }
    .map_err(|e| Failure::User(e.into()))?;
    let mut store = Store::open(state_dir).map_err(|e| Failure::Internal(e.into()))?;
    for d in store
        .mark_interrupted()
        .map_err(|e| Failure::Internal(e.into()))?
    {
        eprintln!(
            "note: deployment {} of ring {} was interrupted; marked Failed",
            d.id, d.ring
        );
    }
    Ok((lock, store))
}

/// A ring compiled at a revision and planned against its workers.
pub struct Prepared {
    /// The manifests.
    pub bundle: Bundle,
    /// What the ring's workers should hold.
    pub desired: DesiredState,
    /// The plan against the workers.
    pub plan: Plan,
    /// What the workers held.
    pub observed: ObservedState,
}

impl Prepared {
    /// The facts a saved plan of this checks again.
    pub fn facts(&self, active: Option<String>) -> Facts {
        Facts {
            commit: self.bundle.commit.clone().unwrap_or_default(),
            active_deployment: active,
            workers: self.observed.digests.clone(),
        }
    }
}

/// Compiles `ring` at `rev` and plans it against the workers; `None` after printing
/// the manifests' errors.
pub fn prepare(ctx: &Context, ring: &str, rev: &str) -> Result<Option<Prepared>, Failure> {
    let (ahead, compiled) = with_read_ahead(ctx, ring, || {
        let bundle = ctx.bundle(&Source {
            rev: Some(rev.to_owned()),
            worktree: false,
        })?;
        let compiled = engine::compile::compile_ring(ctx.state_dir(), &bundle, &ctx.secrets, ring);
        Ok::<_, Failure>((bundle, compiled))
    })?;
    let (bundle, compiled) = compiled?;
    let desired = match compiled {
        Ok(mut c) => match c.states.remove(ring) {
            Some(state) => state,
            None => {
                return Err(Failure::user(format!(
                    "ring `{ring}` is not defined at `{rev}` (rings: {})",
                    c.rings.join(", ")
                )));
            }
        },
        Err(diags) => {
            super::print_diagnostics(&diags)?;
            return Ok(None);
        }
    };
    let head = Revision {
        rev: rev.to_owned(),
        commit: bundle.commit.clone(),
    };
    let (plan, observed) = plan_against_workers_with(ctx, &bundle, &desired, head, ahead)?;
    Ok(Some(Prepared {
        bundle,
        desired,
        plan,
        observed,
    }))
}

/// Runs `compile` while the workers of `ring`'s Active deployment are read ahead (see
/// [`engine::read_ahead`]) on a thread of its own, until it is done.
pub fn with_read_ahead<T>(
    ctx: &Context,
    ring: &str,
    compile: impl FnOnce() -> T,
) -> Result<(engine::ReadAhead, T), Failure> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let ahead = scope.spawn(|| block_on(engine::read_ahead(&ctx.engine(), ring, &stop)));
        let compiled = compile();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let ahead = ahead
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok((ahead, compiled))
    })
}

/// Plans `desired` (compiled from `bundle`) against the ring's workers. The files
/// changed since the Active deployment are found while the workers are read.
pub fn plan_against_workers(
    ctx: &Context,
    bundle: &Bundle,
    desired: &DesiredState,
    head: Revision,
) -> Result<(Plan, ObservedState), Failure> {
    plan_against_workers_with(ctx, bundle, desired, head, engine::ReadAhead::default())
}

/// [`plan_against_workers`], taking the inventories read `ahead`.
pub fn plan_against_workers_with(
    ctx: &Context,
    bundle: &Bundle,
    desired: &DesiredState,
    head: Revision,
    ahead: engine::ReadAhead,
) -> Result<(Plan, ObservedState), Failure> {
    let (observed, changed_files) = std::thread::scope(|scope| {
        let changed = scope.spawn(|| super::changed_since_active(ctx, &desired.ring, bundle));
        let observed = block_on(engine::observe_with(&ctx.engine(), desired, ahead));
        let changed = changed
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (observed, changed)
    });
    let observed = observed?;
    let input = PlanInput {
        path: bundle.root.clone(),
        base: None,
        head,
        changed_files,
    };
    let plan = crate::pipeline::drift::plan_observed(&observed, desired, input);
    Ok((plan, observed))
}

/// Applies a saved plan after checking that nothing it was made against changed.
fn apply_saved(ctx: &Context, store: &mut Store, file: &Path, args: &ApplyArgs) -> Outcome {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::user(format!("cannot read {}: {e}", file.display())))?;
    let saved =
        SavedPlan::parse(&text).map_err(|e| Failure::user(format!("{}: {e}", file.display())))?;
    if saved.path != ctx.path {
        return Err(Failure::user(format!(
            "{}: the plan was made for manifests under `{}`, not `{}` (check --path)",
            file.display(),
            saved.path,
            ctx.path
        )));
    }
    let Some(now) = prepare(ctx, &saved.ring, &saved.commit)? else {
        return Ok(ExitCode::from(1));
    };
    let active = store
        .active(&saved.ring)
        .map_err(|e| Failure::Internal(e.into()))?;
    let mut facts = now.facts(active.map(|a| a.id.to_string()));
    facts.commit = ctx.source()?.resolve(&saved.rev).unwrap_or_default();
    refuse_unreachable(&now.plan)?;
    let changes = saved.changes(&facts, &now.plan.fingerprint);
    if !changes.is_empty() {
        return Err(Failure::user(format!(
            "refusing to apply {}: it is stale; plan again.\n  {}",
            file.display(),
            changes.join("\n  ")
        )));
    }
    emit(&report::text::render(&now.plan, true))?;
    let gates = admitted(ctx, store, &now)?;
    let unchanged = match compare_active(ctx, store, &now)? {
        Compared::Runs => {
            emit("Nothing to apply.\n")?;
            return Ok(ExitCode::SUCCESS);
        }
        Compared::NewCommit => true,
        Compared::Changes => false,
    };
    emit(&format!(
        "Applying saved plan {} (nothing changed since it was made).\n",
        file.display()
    ))?;
    deploy(ctx, store, &now, &gates, &args.reason, unchanged)
}

/// A rollout never starts while a worker cannot be read: it would be left behind.
pub fn refuse_unreachable(plan: &Plan) -> Result<(), Failure> {
    match plan.unreachable.first() {
        None => Ok(()),
        Some(u) => Err(Failure::user(format!(
            "cannot apply to ring {}: worker {} is unreachable ({}); nothing was changed",
            plan.ring, u.worker, u.error
        ))),
    }
}

/// Asks on the terminal; refuses when there is none (use `--yes` in scripts).
pub fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::user(
            "refusing to go on without confirmation: stdin is not a terminal (pass --yes)",
        ));
    }
    print!("{question} Only `yes` is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Internal(e.into()))?;
    Ok(answer.trim() == "yes")
}

/// The gates in force for a prepared ring, when `apply` may deploy it: refused when
/// the ring receives only what the ring before it ran (`promotesFrom`) or its gates
/// need `promote` (approvals, a window, a freeze).
fn admitted(ctx: &Context, store: &Store, prepared: &Prepared) -> Result<Gates, Failure> {
    let (bundle, desired) = (&prepared.bundle, &prepared.desired);
    let ring = &desired.ring;
    let gates = match super::promote::effective_gates(ctx, store, ring, Some(bundle))? {
        Ok(gates) => gates,
        // A ring new in this commit has no trusted definition yet: its own is used, as
        // long as it takes no worker another ring deploys to.
        Err(e @ engine::EngineError::Untrusted { .. }) => {
            engine::gates::of_new_ring(store, bundle, desired)
                .map_err(engine_failure)?
                .ok_or_else(|| engine_failure(e))?
        }
        Err(e) => return Err(engine_failure(e)),
    };
    if let Some(from) = &gates.promotes_from {
        return Err(Failure::user(format!(
            "ring `{ring}` receives only bundles that ring `{from}` ran (promotesFrom: {from}); \
             deploy it with `ringops promote {ring}` (in an emergency: `ringops promote {ring} --emergency --reason ...`); nothing was changed"
        )));
    }
    let held = gates.promotion_only();
    if !held.is_empty() {
        return Err(Failure::user(format!(
            "ring `{ring}` is gated ({}); deploy it with `ringops promote {ring}`",
            held.join(", "),
        )));
    }
    Ok(gates)
}

/// Deploys a prepared ring that `gates` admit: batch by batch with health checks when
/// its strategy or `health:` asks for it, else at once; `unchanged`, recorded as
/// changing nothing on its workers.
fn deploy(
    ctx: &Context,
    store: &mut Store,
    prepared: &Prepared,
    gates: &Gates,
    reason: &str,
    unchanged: bool,
) -> Outcome {
    let (bundle, desired) = (&prepared.bundle, &prepared.desired);
    let ring = &desired.ring;
    let new = NewDeployment {
        ring: ring.clone(),
        commit: bundle.commit.clone().unwrap_or_default(),
        tree: bundle.tree.clone().unwrap_or_default(),
        // The plan's: computed from this desired state (104,139 artifacts take 0.04 s).
        fingerprint: prepared.plan.fingerprint.clone(),
        actor: actor(),
        reason: reason.to_owned(),
        rollback_of: None,
    };
    if !gates.staged()
        && let Some(pause) = store
            .ring_pause(ring)
            .map_err(|e| Failure::Internal(e.into()))?
    {
        return Err(Failure::user(format!(
            "ring `{ring}` is paused ({}); `ringops resume {ring}` first; nothing was changed",
            pause.reason
        )));
    }
    let engine = ctx.engine();
    let rollout = engine::deploy::Rollout::for_ring(&engine, desired, gates, false)
        .map_err(engine_failure)?;
    let deployed = create_and_deploy(ctx, store, &new, &rollout, unchanged)?;
    if unchanged {
        return super::promote::report(deployed, 0);
    }
    match gates.staged() {
        true => super::promote::report(deployed, rollout.batches.len()),
        false => report_direct(deployed, rollout.targets.len()),
    }
}

/// Whether the Active deployment put every worker where the desired state does, with
/// the same hooks: otherwise a deployment is due even when no file changes.
fn same_placements(
    ctx: &Context,
    store: &Store,
    active: crate::model::deployment::DeploymentId,
    desired: &DesiredState,
) -> Result<bool, Failure> {
    let recorded = store
        .placements(active)
        .map_err(|e| Failure::Internal(e.into()))?;
    let targets = engine::targets_from_desired(ctx.state_dir(), desired).map_err(engine_failure)?;
    Ok(targets.len() == recorded.len()
        && targets
            .iter()
            .all(|t| recorded.get(&t.name) == Some(&t.placement)))
}

/// Who runs this command, as recorded.
pub fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_owned())
}

/// Records a deployment of `targets`, switches every worker to it at once (putting
/// them back when one fails) and says how it went.
pub fn run_rollout(
    ctx: &Context,
    store: &mut Store,
    targets: Vec<engine::Target>,
    new: NewDeployment,
) -> Outcome {
    let workers = targets.len();
    let rollout = engine::deploy::Rollout::direct(targets);
    let deployed = create_and_deploy(ctx, store, &new, &rollout, false)?;
    report_direct(deployed, workers)
}

/// Records `new` (marked as changing nothing when `unchanged`) and runs it as `rollout`
/// says.
fn create_and_deploy(
    ctx: &Context,
    store: &mut Store,
    new: &NewDeployment,
    rollout: &engine::deploy::Rollout,
    unchanged: bool,
) -> Result<engine::deploy::Deployed, Failure> {
    let internal = |e: crate::adapters::store::StoreError| Failure::Internal(e.into());
    let mut deployment = store.create_deployment(new).map_err(internal)?;
    if unchanged {
        let note = crate::model::deployment::NO_CHANGES;
        deployment = store
            .mark_unchanged(deployment.id, note)
            .map_err(internal)?;
    }
    let engine = ctx.engine();
    let run = engine::deploy::deploy(&engine, store, &deployment, rollout);
    block_on(run)?.map_err(engine_failure)
}

/// Says how a deployment of every worker at once went: an error when it failed.
fn report_direct(deployed: engine::deploy::Deployed, workers: usize) -> Outcome {
    match deployed.end {
        engine::deploy::RolloutEnd::Failed {
            deployment: d,
            reason,
        } => Err(Failure::user(format!(
            "deployment {} failed: {reason}; workers already switched were restored (see `ringops show {}`)",
            d.id, d.id
        ))),
        end => {
            let d = end.deployment();
            emit(&format!(
                "Deployment {} is {} on ring {} ({} of {workers} workers changed).\n",
                d.id,
                d.state,
                d.ring,
                deployed.changed.len(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
