//! Reading a ring's workers: inventories several at a time, the observed state a plan
//! compares with the desired one, and the plan itself. Inventories of the Active
//! deployment's workers may be read ahead while the ring compiles.

use super::{Context, EngineError, link, recorded_link};
use crate::adapters::causes;
use crate::adapters::link::{Link, LinkError, WorkerLink};
use crate::adapters::worker_dir::{Inventory, OnDisk};
use crate::model::observed::{ManagedFile, ObservedState, ObservedWorker, PresentFile};
use crate::model::{DesiredState, WorkerState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;

/// Reads many workers at once; each result by worker name.
pub async fn inventories(
    ctx: &Context,
    workers: Vec<(String, WorkerLink)>,
) -> BTreeMap<String, Result<Inventory, LinkError>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(ctx.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, link) in workers {
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let inventory = link.inventory().await;
            (name, inventory)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, inventory)) = joined {
            out.insert(name, inventory);
        }
    }
    out
}

/// Inventories read while the desired state was still being compiled: of the workers a
/// ring's Active deployment placed, by worker, with the location each was read at.
#[derive(Debug, Default)]
pub struct ReadAhead(BTreeMap<String, (String, Inventory)>);

/// Reads the inventories of the workers where the ring's Active deployment put them,
/// one at a time (a core's worth) until `stop`, for a caller that compiles the desired
/// state meanwhile on another core. [`observe_with`] uses each one whose worker the
/// desired state places at the same location and reads the rest, several at a time;
/// workers that could not be read are left out (read again then). Nothing when the
/// ring has no Active deployment.
pub async fn read_ahead(ctx: &Context, ring: &str, stop: &AtomicBool) -> ReadAhead {
    let placements = crate::adapters::store::StoreReader::open(&ctx.state_dir)
        .and_then(|r| match r.active(ring)? {
            Some(active) => r.placements(active.id),
            None => Ok(BTreeMap::new()),
        })
        .unwrap_or_default();
    let mut read = BTreeMap::new();
    for (name, placement) in placements {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(link) = recorded_link(&ctx.state_dir, &name, Some(&placement)) else {
            continue;
        };
        if let Ok(inventory) = link.inventory().await {
            read.insert(name, (placement.location, inventory));
        }
    }
    ReadAhead(read)
}

/// Reads every worker of the desired state. A worker that cannot be read is
/// unreachable, with the reason; the others are observed. What a plan may show of a
/// file: nothing when it is the desired artifact, the file itself when nothing about
/// the path is sensitive, otherwise a notice.
pub async fn observe(ctx: &Context, desired: &DesiredState) -> ObservedState {
    observe_with(ctx, desired, ReadAhead::default()).await
}

/// [`observe`], taking the inventories `ahead` read at the worker's desired location
/// instead of reading them again.
pub async fn observe_with(
    ctx: &Context,
    desired: &DesiredState,
    mut ahead: ReadAhead,
) -> ObservedState {
    let mut observed = ObservedState::default();
    let mut reachable = Vec::new();
    let mut read = BTreeMap::new();
    for (name, state) in &desired.workers {
        let t = link(&ctx.state_dir, name, state);
        if let Some((at, inventory)) = ahead.0.remove(name)
            && at == t.location()
        {
            read.insert(name.clone(), Ok(inventory));
        }
        reachable.push((name.clone(), t));
    }
    let links: BTreeMap<String, WorkerLink> = reachable.iter().cloned().collect();
    let unread = reachable
        .into_iter()
        .filter(|(name, _)| !read.contains_key(name))
        .collect();
    read.extend(inventories(ctx, unread).await);
    for (name, inventory) in read {
        let Some(state) = desired.workers.get(&name) else {
            continue;
        };
        match inventory {
            Ok(inventory) => {
                observed
                    .digests
                    .insert(name.clone(), inventory_digest(&inventory));
                let link = &links[&name];
                let worker = observed_worker(link, inventory, state).await;
                observed.workers.insert(name, worker);
            }
            Err(e) => {
                let e = EngineError::worker(&name, e);
                observed.unreachable.insert(name, causes(&e));
            }
        }
    }
    observed
}

/// sha256 over everything an inventory says: generation, each managed file's record
/// and what is on disk, and the unmanaged paths.
pub fn inventory_digest(inventory: &Inventory) -> String {
    use std::fmt::Write;
    let mut text = format!("{} {}\n", inventory.generation, inventory.pending);
    for (path, e) in &inventory.managed {
        let r = &e.record;
        let _ = write!(
            text,
            "m {path}\t{} {:o} {}\t",
            r.sha256, r.mode, r.deployment
        );
        let _ = match &e.on_disk {
            OnDisk::File { sha256, mode } => writeln!(text, "file {sha256} {mode:o}"),
            OnDisk::Missing => writeln!(text, "missing"),
            OnDisk::NotAFile { what } => writeln!(text, "other {what}"),
        };
    }
    for path in &inventory.unmanaged {
        let _ = writeln!(text, "u {path}");
    }
    crate::model::desired::sha256_hex(text.as_bytes())
}

/// One worker's inventory as a plan sees it, taking its paths and checksums over.
async fn observed_worker(
    link: &WorkerLink,
    inventory: Inventory,
    state: &WorkerState,
) -> ObservedWorker {
    let mut worker = ObservedWorker::default();
    for (path, entry) in inventory.managed {
        if let OnDisk::File { sha256, .. } = entry.on_disk {
            let shown = shown_text(link, &path, &sha256, state).await;
            let file = PresentFile { sha256, shown };
            worker.present.insert(path.clone(), file);
        }
        let record = ManagedFile {
            sha256: entry.record.sha256,
            deployment: entry.record.deployment,
        };
        worker.managed.insert(path, record);
    }
    for path in inventory.unmanaged {
        if state.artifacts.contains_key(&path) {
            let shown = shown_text(link, &path, "", state).await;
            let file = PresentFile {
                sha256: String::new(),
                shown,
            };
            worker.present.insert(path, file);
        } else {
            worker.unmanaged.push(path);
        }
    }
    worker
}

/// What applying `desired` would change on the ring's workers: the plan `plan` and
/// `apply` both show.
pub async fn plan_ring(
    ctx: &Context,
    desired: &DesiredState,
    input: crate::pipeline::plan::PlanInput,
) -> (crate::model::Plan, ObservedState) {
    let observed = observe(ctx, desired).await;
    let plan = crate::pipeline::drift::plan_observed(&observed, desired, input);
    (plan, observed)
}

/// Text a plan may show for a file on a worker: nothing for the desired artifact itself
/// (no diff is shown for it).
async fn shown_text(link: &WorkerLink, path: &str, sha256: &str, state: &WorkerState) -> String {
    let desired = state.artifacts.get(path);
    if desired.is_some_and(|a| a.sha256 == sha256) {
        return String::new();
    }
    if desired.is_some_and(|a| a.shown.is_some()) {
        return SENSITIVE_NOTICE.to_owned();
    }
    match link.read(path).await {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// What is shown instead of a worker's file that may hold sensitive values.
pub const SENSITIVE_NOTICE: &str =
    "(content on the worker not shown: this artifact holds sensitive values)\n";
