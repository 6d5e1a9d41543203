//! `ringops status`: every ring of the tracked branch's head in promotion order (those
//! never deployed too) and any other ring the state records; per ring the Active
//! deployment, what an unfinished one waits for, and whether each worker holds what it
//! must: the Active deployment's files, or those of a rollout stopped between batches
//! that already switched it (a paused canary). Plus who holds the writer lock.
//!
//! Reads the state with [`StoreReader`] and each local worker with
//! [`WorkerDir::inventory`], where the deployment put it; takes no lock, writes nothing,
//! and reads the repository only when it is here (it never fetches).
//!
//! [`WorkerDir::inventory`]: crate::adapters::worker_dir::WorkerDir::inventory

use super::history::{Format, open_reader, store_failure};
use super::{Context, Outcome, emit};
use crate::adapters::git::Source;
use crate::adapters::link::WorkerLink;
use crate::adapters::lock::{LockStatus, WriterLock};
use crate::adapters::store::{Following, StoreReader};
use crate::engine::{self, sync::compare};
use crate::model::deployment::{DeploymentId, DeploymentState, Placement, WrittenArtifact};
use crate::pipeline::policy::ring_order;
use crate::report::history::{
    self as report, RingStatus, Status, WorkerStatus, WorkerSync, Writer,
};
use clap::Args;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this ring.
    #[arg(long)]
    pub ring: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Prints the status of every ring the tracked branch defines or the state records
/// (or one).
pub fn run(ctx: &Context, args: &StatusArgs) -> Outcome {
    let state_dir = ctx.state_dir();
    let defined = head_rings(ctx);
    let only = args.ring.as_deref();
    let rings = match open_reader(state_dir)? {
        None => defined
            .iter()
            .filter(|r| only.is_none_or(|o| o == r.as_str()))
            .map(|r| RingStatus::never_deployed(r.clone()))
            .collect(),
        Some(reader) => rings(&reader, &ctx.engine(), only, &defined)?,
    };
    let status = Status {
        rings,
        writer: writer(state_dir),
    };
    emit(&match args.format {
        Format::Text => report::status_text(&status, only),
        Format::Json => report::status_json(&status),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The rings the tracked branch's head defines, in promotion order; none when the
/// repository cannot be read here (`status` needs none, and never fetches).
fn head_rings(ctx: &Context) -> Vec<String> {
    let Ok(source) = Source::open(&ctx.repo().open_path(ctx.state_dir())) else {
        return Vec::new();
    };
    source
        .bundle_at(&ctx.default_rev(), &ctx.path)
        .map(|bundle| ring_order(&bundle))
        .unwrap_or_default()
}

/// The rings to show: `only`, or those `defined` at the head in their order, then the
/// others the state records.
fn ring_names(
    reader: &StoreReader,
    only: Option<&str>,
    defined: &[String],
) -> Result<Vec<String>, super::Failure> {
    if let Some(ring) = only {
        return Ok(vec![ring.to_owned()]);
    }
    let mut names = defined.to_vec();
    for ring in reader.rings().map_err(store_failure)? {
        if !names.contains(&ring) {
            names.push(ring);
        }
    }
    Ok(names)
}

fn rings(
    reader: &StoreReader,
    ctx: &engine::Context,
    only: Option<&str>,
    defined: &[String],
) -> Result<Vec<RingStatus>, super::Failure> {
    let mut out = Vec::new();
    for ring in ring_names(reader, only, defined)? {
        let Some(newest) = reader.history(Some(&ring), 1).map_err(store_failure)?.pop() else {
            if defined.contains(&ring) {
                out.push(RingStatus::never_deployed(ring));
            }
            continue;
        };
        let following = reader.following(&ring).map_err(store_failure)?;
        let workers = workers_sync(reader, ctx, &following)?;
        let active = following.active.map(|(d, _)| d);
        let latest = (active.as_ref().map(|a| a.id) != Some(newest.id)).then_some(newest);
        let waiting = match &latest {
            Some(l) if l.state == DeploymentState::Queued || l.state.is_in_progress() => reader
                .rollout(l.id)
                .map_err(store_failure)?
                .and_then(|r| r.waiting),
            _ => None,
        };
        let pin = reader.pin(&ring).map_err(store_failure)?;
        out.push(RingStatus {
            pin,
            ring,
            active,
            latest,
            workers,
            waiting,
        });
    }
    Ok(out)
}

/// What one worker is compared with: the artifacts recorded for it, and the rollout
/// that switched it when it is not the Active deployment.
struct Expected {
    artifacts: Vec<WrittenArtifact>,
    placement: Option<Placement>,
    rollout: Option<DeploymentId>,
}

/// Every worker of the ring's Active deployment (with an outcome or artifacts) and of
/// a rollout under way, each with what it must hold ([`StoreReader::following`]).
fn expected(
    reader: &StoreReader,
    following: &Following,
) -> Result<BTreeMap<String, Expected>, super::Failure> {
    let mut out = BTreeMap::new();
    if let Some((active, kept)) = &following.active {
        let mut placements = reader.placements(active.id).map_err(store_failure)?;
        let switched = |w: &str| {
            following
                .rollout
                .as_ref()
                .is_some_and(|(_, s)| s.contains_key(w))
        };
        let mut workers = kept.clone();
        for record in reader.workers(active.id).map_err(store_failure)? {
            if !switched(&record.worker) {
                workers.entry(record.worker).or_default();
            }
        }
        for (worker, artifacts) in workers {
            let placement = placements.remove(&worker);
            let rollout = None;
            out.insert(
                worker,
                Expected {
                    artifacts,
                    placement,
                    rollout,
                },
            );
        }
    }
    if let Some((rollout, switched)) = &following.rollout {
        let mut placements = reader.placements(rollout.id).map_err(store_failure)?;
        for (worker, artifacts) in switched {
            let placement = placements.remove(worker);
            let expected = Expected {
                artifacts: artifacts.clone(),
                placement,
                rollout: Some(rollout.id),
            };
            out.insert(worker.clone(), expected);
        }
    }
    Ok(out)
}

/// Every worker the ring's deployments recorded, read where they put it (several at
/// once) and compared with what they recorded: a worker a paused rollout switched is
/// waiting for it, unless it drifted from the rollout's files.
fn workers_sync(
    reader: &StoreReader,
    ctx: &engine::Context,
    following: &Following,
) -> Result<Vec<WorkerStatus>, super::Failure> {
    let expected = expected(reader, following)?;
    let mut reachable = Vec::new();
    let mut unreachable = BTreeMap::new();
    for (worker, e) in &expected {
        match engine::recorded_link(&ctx.state_dir, worker, e.placement.as_ref()) {
            Ok(WorkerLink::Local(dir)) if !dir.root().is_dir() => {
                let reason = format!("no worker directory at {}", dir.root().display());
                unreachable.insert(worker.clone(), reason);
            }
            Ok(t) => reachable.push((worker.clone(), t)),
            Err(e) => {
                unreachable.insert(worker.clone(), crate::adapters::causes(&e));
            }
        }
    }
    let mut inventories = super::block_on(engine::inventories(ctx, reachable))?;
    Ok(expected
        .into_iter()
        .map(|(worker, e)| {
            let sync = match (unreachable.remove(&worker), inventories.remove(&worker)) {
                (Some(reason), _) => WorkerSync::Unreachable { reason },
                (None, Some(Ok(inventory))) => match (compare(&e.artifacts, &inventory), e.rollout)
                {
                    (WorkerSync::InSync { files }, Some(deployment)) => {
                        WorkerSync::Waiting { deployment, files }
                    }
                    (sync, _) => sync,
                },
                (None, Some(Err(e))) => WorkerSync::Unreachable {
                    reason: crate::adapters::causes(&e),
                },
                (None, None) => WorkerSync::Unreachable {
                    reason: "not read (a bug in ringops)".to_owned(),
                },
            };
            WorkerStatus { worker, sync }
        })
        .collect())
}

/// Who holds the writer lock; never waits.
fn writer(state_dir: &Path) -> Writer {
    match WriterLock::status(state_dir) {
        Ok(LockStatus::Free) => Writer::Free,
        Ok(LockStatus::Held(holder)) => Writer::Held {
            pid: holder.as_ref().map(|h| h.pid),
            command: holder.as_ref().map(|h| h.command.clone()),
            since: holder.map(|h| h.since),
        },
        Err(e) => Writer::Unknown {
            reason: crate::adapters::causes(&e),
        },
    }
}
