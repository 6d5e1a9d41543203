//! `ringops status`: per ring, the Active deployment and whether its workers still hold
//! what it wrote, plus who holds the writer lock. Reads the state with
//! [`StoreReader`] and each local worker with [`WorkerDir::inventory`]; takes no lock,
//! writes nothing and needs no repository.
//!
//! Each worker is read where the Active deployment put it (recorded with the deployment).

use super::history::{Format, open_reader, store_failure};
use super::{Context, Outcome, emit};
use crate::adapters::link::WorkerLink;
use crate::adapters::lock::{LockStatus, WriterLock};
use crate::adapters::store::StoreReader;
use crate::engine::{self, sync::compare};
use crate::model::deployment::WrittenArtifact;
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

/// Prints the status of every ring with deployments (or one).
pub fn run(ctx: &Context, args: &StatusArgs) -> Outcome {
    let state_dir = ctx.state_dir();
    let rings = match open_reader(state_dir)? {
        None => Vec::new(),
        Some(reader) => rings(&reader, &ctx.engine(), args.ring.as_deref())?,
    };
    let status = Status {
        rings,
        writer: writer(state_dir),
    };
    emit(&match args.format {
        Format::Text => report::status_text(&status, args.ring.as_deref()),
        Format::Json => report::status_json(&status),
    })?;
    Ok(ExitCode::SUCCESS)
}

fn rings(
    reader: &StoreReader,
    ctx: &engine::Context,
    only: Option<&str>,
) -> Result<Vec<RingStatus>, super::Failure> {
    let names = match only {
        Some(ring) => vec![ring.to_owned()],
        None => reader.rings().map_err(store_failure)?,
    };
    let mut out = Vec::new();
    for ring in names {
        let Some(newest) = reader.history(Some(&ring), 1).map_err(store_failure)?.pop() else {
            continue;
        };
        let active = reader.active(&ring).map_err(store_failure)?;
        let workers = match &active {
            Some(a) => workers_sync(reader, ctx, a.id)?,
            None => Vec::new(),
        };
        let latest = (active.as_ref().map(|a| a.id) != Some(newest.id)).then_some(newest);
        let pin = reader.pin(&ring).map_err(store_failure)?;
        out.push(RingStatus {
            pin,
            ring,
            active,
            latest,
            workers,
        });
    }
    Ok(out)
}

/// Every worker the deployment recorded an outcome or artifacts for, with its artifacts.
fn recorded_workers(
    reader: &StoreReader,
    id: crate::model::deployment::DeploymentId,
) -> Result<BTreeMap<String, Vec<WrittenArtifact>>, super::Failure> {
    let mut workers = reader.artifacts(id).map_err(store_failure)?;
    for record in reader.workers(id).map_err(store_failure)? {
        workers.entry(record.worker).or_default();
    }
    Ok(workers)
}

/// Every worker of a deployment, read where the deployment put it (several at once)
/// and compared with what it recorded.
fn workers_sync(
    reader: &StoreReader,
    ctx: &engine::Context,
    id: crate::model::deployment::DeploymentId,
) -> Result<Vec<WorkerStatus>, super::Failure> {
    let recorded = recorded_workers(reader, id)?;
    let placements = reader.placements(id).map_err(store_failure)?;
    let mut reachable = Vec::new();
    let mut unreachable = BTreeMap::new();
    for worker in recorded.keys() {
        match engine::recorded_link(&ctx.state_dir, worker, placements.get(worker)) {
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
    Ok(recorded
        .into_iter()
        .map(|(worker, artifacts)| {
            let sync = match (unreachable.remove(&worker), inventories.remove(&worker)) {
                (Some(reason), _) => WorkerSync::Unreachable { reason },
                (None, Some(Ok(inventory))) => compare(&artifacts, &inventory),
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
