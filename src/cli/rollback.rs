//! `ringops rollback`: a new deployment of an earlier successful deployment's files,
//! read from the object store, so it works even when the Git history was rewritten.
//! Old records are never changed; the new one names what it rolls back to.

use super::apply::{actor, confirm, open_writer, refuse_unreachable, run_rollout};
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::store::Store;
use crate::engine::{self, Target};
use crate::model::deployment::{Deployment, DeploymentId, NewDeployment};
use crate::model::plan::Revision;
use crate::model::{Artifact, DesiredState, WorkerState};
use crate::pipeline::plan::PlanInput;
use crate::report;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Ring to roll back.
    #[arg(long)]
    pub ring: String,
    /// The deployment to go back to (default: the newest one that was Active before
    /// the current one).
    #[arg(long, value_name = "DEPLOYMENT")]
    pub to: Option<String>,
    /// Why, recorded with the deployment.
    #[arg(long)]
    pub reason: String,
    /// Roll back without asking.
    #[arg(long)]
    pub yes: bool,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Shows what the rollback changes, asks (unless `--yes`), and deploys it.
pub fn run(ctx: &Context, args: &RollbackArgs) -> Outcome {
    if args.reason.trim().is_empty() {
        return Err(Failure::user("a rollback needs a --reason"));
    }
    let (_lock, mut store) = open_writer(ctx, "ringops rollback", args.wait)?;
    let target = rollback_target(&store, &args.ring, args.to.as_deref())?;
    let engine = ctx.engine();
    let redact = ctx.secrets.all_values();
    let mut targets = engine::targets_from_record(&engine, &store, target.id, None, &redact)
        .map_err(engine_failure)?;
    targets.extend(newer_workers(ctx, &store, &args.ring, &targets)?);
    let desired = desired_of(&args.ring, &targets);
    let input = PlanInput {
        path: String::new(),
        base: None,
        head: Revision {
            rev: target.id.to_string(),
            commit: Some(target.commit.clone()),
        },
        changed_files: Default::default(),
    };
    let (plan, _) = block_on(engine::plan_ring(&engine, &desired, input))?;
    emit(&report::text::render(&plan, true))?;
    refuse_unreachable(&plan)?;
    let question = format!(
        "Roll ring {} back to {} (commit {})?",
        args.ring,
        target.id,
        report::short(&target.commit)
    );
    if !args.yes && !confirm(&question)? {
        emit("Rollback cancelled.\n")?;
        return Ok(ExitCode::from(1));
    }
    let rolled_back = store
        .active(&args.ring)
        .map_err(|e| Failure::Internal(e.into()))?;
    let new = NewDeployment {
        ring: args.ring.clone(),
        commit: target.commit.clone(),
        tree: target.tree.clone(),
        fingerprint: target.fingerprint.clone(),
        actor: actor(),
        reason: args.reason.clone(),
        rollback_of: Some(target.id),
    };
    let code = run_rollout(ctx, &mut store, targets, new)?;
    if let Some(from) = rolled_back.filter(|from| from.commit != target.commit) {
        pin(&mut store, &args.ring, &from.commit, &args.reason)?;
    }
    Ok(code)
}

/// Keeps the daemon from deploying the rolled-back commit again.
fn pin(store: &mut Store, ring: &str, commit: &str, reason: &str) -> Result<(), Failure> {
    let internal = |e: crate::adapters::store::StoreError| Failure::Internal(e.into());
    let Some(active) = store.active(ring).map_err(internal)? else {
        return Ok(());
    };
    store
        .set_pin(ring, commit, active.id, reason)
        .map_err(internal)?;
    emit(&format!(
        "Ring {ring} is pinned: the daemon will not deploy {} again until the branch moves on or `ringops resume {ring}`.\n",
        report::short(commit)
    ))
}

/// Arguments of `resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The ring whose pin (a rollback's) or pause to lift.
    pub ring: String,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Lifts a ring's pin, so the daemon deploys the tracked branch to it again, and its
/// pause, continuing a rollout the pause stopped.
pub fn resume(ctx: &Context, args: &ResumeArgs) -> Outcome {
    let (_lock, mut store) = open_writer(ctx, "ringops resume", args.wait)?;
    let pin = store
        .unpin(&args.ring)
        .map_err(|e| Failure::Internal(e.into()))?;
    if let Some(pin) = &pin {
        emit(&format!(
            "Ring {} resumed: the daemon may deploy {} again.\n",
            args.ring,
            report::short(&pin.commit)
        ))?;
    }
    match super::promote::unpause(ctx, &mut store, &args.ring)? {
        Some(code) => Ok(code),
        None if pin.is_none() => {
            emit(&format!("Ring {} is not pinned nor paused.\n", args.ring))?;
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Workers the Active deployment has and the rollback target does not: they go back to
/// holding no ringops file.
fn newer_workers(
    ctx: &Context,
    store: &Store,
    ring: &str,
    targets: &[Target],
) -> Result<Vec<Target>, Failure> {
    let Some(active) = store
        .active(ring)
        .map_err(|e| Failure::Internal(e.into()))?
    else {
        return Ok(Vec::new());
    };
    let known: Vec<String> = store
        .artifacts(active.id)
        .map_err(|e| Failure::Internal(e.into()))?
        .into_keys()
        .filter(|w| !targets.iter().any(|t| &t.name == w))
        .collect();
    if known.is_empty() {
        return Ok(Vec::new());
    }
    let extra = engine::targets_from_record(&ctx.engine(), store, active.id, Some(&known), &[])
        .map_err(engine_failure)?;
    Ok(extra
        .into_iter()
        .map(|mut t| {
            t.files.clear();
            t.placement.sensitive.clear();
            t
        })
        .collect())
}

/// The deployment a rollback goes back to: `--to`, which must have been Active on the
/// ring and not be Active now, or the newest such one.
fn rollback_target(store: &Store, ring: &str, to: Option<&str>) -> Result<Deployment, Failure> {
    let internal = |e: crate::adapters::store::StoreError| Failure::Internal(e.into());
    let Some(to) = to else {
        return store.previous_success(ring).map_err(internal)?.ok_or_else(|| {
            Failure::user(format!(
                "ring `{ring}` has no earlier successful deployment to roll back to (see `ringops history --ring {ring}`)"
            ))
        });
    };
    let id: DeploymentId = to
        .parse()
        .map_err(|e| Failure::User(anyhow::Error::new(e)))?;
    let target = match store.get(id) {
        Ok(d) => d,
        Err(crate::adapters::store::StoreError::NotFound(_)) => {
            return Err(Failure::user(format!(
                "no deployment {id} (see `ringops history`)"
            )));
        }
        Err(e) => return Err(internal(e)),
    };
    if target.ring != ring {
        return Err(Failure::user(format!(
            "{id} deployed ring `{}`, not `{ring}`",
            target.ring
        )));
    }
    if target.activated_at.is_none() {
        return Err(Failure::user(format!(
            "{id} never became Active ({}); only a deployment that succeeded can be rolled back to",
            target.state
        )));
    }
    if target.state == crate::model::deployment::DeploymentState::Active {
        return Err(Failure::user(format!(
            "{id} is the Active deployment of ring `{ring}` already"
        )));
    }
    Ok(target)
}

/// The rollout as a desired state, so the usual plan shows what it changes. Files
/// holding sensitive values are shown by a notice, never by content.
fn desired_of(ring: &str, targets: &[Target]) -> DesiredState {
    let workers = targets
        .iter()
        .map(|t| {
            let artifacts = t
                .files
                .iter()
                .map(|(path, f)| {
                    let content = String::from_utf8_lossy(&f.content).into_owned();
                    let mut artifact = Artifact::new(content, Vec::new(), Vec::new());
                    artifact.sha256 = f.sha256.clone();
                    if t.placement.sensitive.contains(path) {
                        artifact.shown = Some(engine::SENSITIVE_NOTICE.to_owned());
                    }
                    (path.clone(), artifact)
                })
                .collect();
            let state = WorkerState {
                target: t.placement.location.parse().ok(),
                artifacts,
                ..WorkerState::default()
            };
            (t.name.clone(), state)
        })
        .collect();
    DesiredState {
        ring: ring.to_owned(),
        workers,
    }
}
