//! `ringops clone`: copy a managed artifact to a new, unmanaged path on the same
//! worker. Reconciliation never touches unmanaged files, so this is how a person keeps
//! a bespoke variant of a job.

use super::apply::open_writer;
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::link::{Link, WorkerLink};
use crate::adapters::store::Store;
use crate::engine;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `clone`.
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The worker.
    #[arg(long)]
    pub worker: String,
    /// A managed artifact's worker-relative path, e.g. `etl/extract/run.sh`.
    #[arg(value_name = "PATH")]
    pub from: String,
    /// The new worker-relative path; must not exist and must not be managed.
    #[arg(value_name = "NEWPATH")]
    pub to: String,
    /// Wait for another writer to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Copies the file and says where it went.
pub fn run(ctx: &Context, args: &CloneArgs) -> Outcome {
    let (_lock, store) = open_writer(ctx, "ringops clone", args.wait)?;
    let link = locate(ctx, &store, &args.worker)?;
    block_on(link.clone_file(&args.from, &args.to))?.map_err(|e| {
        engine_failure(engine::EngineError::Worker {
            worker: args.worker.clone(),
            source: e,
        })
    })?;
    emit(&format!(
        "Copied {} to {} on worker {}: ringops will leave the copy alone.\n",
        args.from, args.to, args.worker
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Where the Active deployment of the worker's ring put it.
fn locate(ctx: &Context, store: &Store, worker: &str) -> Result<WorkerLink, Failure> {
    let internal = |e: crate::adapters::store::StoreError| Failure::Internal(e.into());
    for ring in store.rings().map_err(internal)? {
        let Some(active) = store.active(&ring).map_err(internal)? else {
            continue;
        };
        if store
            .workers(active.id)
            .map_err(internal)?
            .iter()
            .any(|w| w.worker == worker)
        {
            let placements = store.placements(active.id).map_err(internal)?;
            return engine::recorded_link(ctx.state_dir(), worker, placements.get(worker))
                .map_err(engine_failure);
        }
    }
    Err(Failure::user(format!(
        "worker `{worker}` is in no ring's Active deployment: ringops manages nothing there (see `ringops status`)"
    )))
}
