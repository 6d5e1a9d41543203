//! `ringops apply`: plan a ring against its workers, confirm, apply, record.

use super::{
    Context, Failure, Outcome, Revision as Source, emit, engine_failure, print_diagnostics,
};
use crate::adapters::lock::WriterLock;
use crate::adapters::objects::ObjectStore;
use crate::adapters::store::Store;
use crate::engine;
use crate::model::deployment::NewDeployment;
use crate::model::plan::Revision;
use crate::model::{Bundle, DesiredState};
use crate::pipeline::plan::PlanInput;
use crate::pipeline::{Rings, compile};
use crate::report;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Ring to apply.
    #[arg(long)]
    pub ring: String,
    /// Revision to deploy (default HEAD).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// Why, recorded with the deployment.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Shows the plan, asks (unless `--yes`), applies and records the deployment.
pub fn run(ctx: &Context, args: &ApplyArgs) -> Outcome {
    let state_dir = ctx.state_dir();
    let command = format!("ringops apply --ring {}", args.ring);
    let _lock =
        WriterLock::acquire(state_dir, &command, false).map_err(|e| Failure::User(e.into()))?;
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
    let rev = args.rev.clone().unwrap_or_else(|| "HEAD".to_owned());
    let bundle = ctx.bundle(&Source {
        rev: Some(rev.clone()),
        worktree: false,
    })?;
    let desired = match compile(&bundle, &ctx.secrets, Rings::One(&args.ring)) {
        Ok(mut c) => match c.states.remove(&args.ring) {
            Some(state) => state,
            None => {
                return Err(Failure::user(format!(
                    "ring `{}` is not defined at `{rev}` (rings: {})",
                    args.ring,
                    c.rings.join(", ")
                )));
            }
        },
        Err(diags) => return print_diagnostics(&diags),
    };
    let input = PlanInput {
        path: bundle.root.clone(),
        base: None,
        head: Revision {
            rev: rev.clone(),
            commit: bundle.commit.clone(),
        },
        changed_files: super::changed_since_active(ctx, &args.ring, &bundle),
    };
    let plan = super::block_on(engine::plan_ring(state_dir, &desired, input))?;
    emit(&report::text::render(&plan, true))?;
    refuse_unreachable(&plan)?;
    let active = store
        .active(&args.ring)
        .map_err(|e| Failure::Internal(e.into()))?;
    if plan.summary.is_empty() && active.is_some_and(|a| a.fingerprint == plan.fingerprint) {
        emit("Nothing to apply.\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&args.ring)? {
        emit("Apply cancelled.\n")?;
        return Ok(ExitCode::from(1));
    }
    deploy(ctx, &mut store, &desired, &bundle, args)
}

/// A rollout never starts while a worker cannot be read: it would be left behind.
pub fn refuse_unreachable(plan: &crate::model::Plan) -> Result<(), Failure> {
    match plan.unreachable.first() {
        None => Ok(()),
        Some(u) => Err(Failure::user(format!(
            "cannot apply to ring {}: worker {} is unreachable ({}); nothing was changed",
            plan.ring, u.worker, u.error
        ))),
    }
}

/// Asks on the terminal; refuses when there is none (use `--yes` in scripts).
fn confirm(ring: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::user(
            "refusing to apply without confirmation: stdin is not a terminal (pass --yes)",
        ));
    }
    print!("Apply this plan to ring {ring}? Only `yes` is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Internal(e.into()))?;
    Ok(answer.trim() == "yes")
}

fn deploy(
    ctx: &Context,
    store: &mut Store,
    desired: &DesiredState,
    bundle: &Bundle,
    args: &ApplyArgs,
) -> Outcome {
    let new = NewDeployment {
        ring: args.ring.clone(),
        commit: bundle.commit.clone().unwrap_or_default(),
        tree: bundle.tree.clone().unwrap_or_default(),
        fingerprint: desired.fingerprint(),
        actor: std::env::var("USER").unwrap_or_else(|_| "cli".to_owned()),
        reason: args.reason.clone(),
        rollback_of: None,
    };
    let objects = ObjectStore::new(ctx.state_dir());
    let targets = engine::targets_from_desired(ctx.state_dir(), desired).map_err(engine_failure)?;
    let outcome = super::block_on(engine::apply(
        store,
        &objects,
        ctx.state_dir(),
        targets,
        new,
    ))?
    .map_err(engine_failure)?;
    let d = &outcome.deployment;
    match &outcome.failure {
        None => {
            emit(&format!(
                "Deployment {} is {} on ring {} ({} of {} workers changed).\n",
                d.id,
                d.state,
                d.ring,
                outcome.changed.len(),
                desired.workers.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(message) => Err(Failure::user(format!(
            "deployment {} failed: {message}; workers already switched were restored (see `ringops show {}`)",
            d.id, d.id
        ))),
    }
}
