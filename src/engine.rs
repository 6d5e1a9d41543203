//! One pass of deploying a ring: observe its workers, plan against them, switch them,
//! record. IO orchestration over the adapters; the decisions are the pure pipeline's.
//!
//! Workers are reached through [`WorkerTransport`]s, several at a time. A rollout is a
//! list of [`Target`]s, built from a compiled desired state ([`targets_from_desired`])
//! or from a recorded deployment and the object store ([`targets_from_record`], for
//! rollback and drift repair, which need no repository).

pub mod compile;
#[cfg(test)]
mod observe_tests;
pub mod rollout;
pub mod sync;
pub mod waiting;

use crate::adapters::objects::ObjectStore;
use crate::adapters::store::{Store, WorkerEntry};
use crate::adapters::transport::{Hooks, SwitchError, Transport, TransportError, WorkerTransport};
use crate::adapters::worker_dir::{Applied, Batch, FileSpec, Inventory, OnDisk};
use crate::model::deployment::{
    Deployment, DeploymentId, DeploymentState, NewDeployment, Placement, WorkerOutcome,
    WrittenArtifact,
};
use crate::model::observed::{ManagedFile, ObservedState, ObservedWorker, PresentFile};
use crate::model::{DesiredState, WorkerState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Permission bits of an artifact.
pub const ARTIFACT_MODE: u32 = 0o644;

/// Permission bits of an artifact holding sensitive values: the owner's alone.
pub const SENSITIVE_MODE: u32 = 0o600;

fn mode_of(artifact: &crate::model::Artifact) -> u32 {
    if artifact.shown.is_some() {
        SENSITIVE_MODE
    } else {
        ARTIFACT_MODE
    }
}

/// How many workers are read or switched at once unless configured.
pub const MAX_CONCURRENT_WORKERS: usize = 32;

/// The bound in force (`max_concurrent_workers` in `ringops.toml`).
static CONCURRENT_WORKERS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(MAX_CONCURRENT_WORKERS);

/// Sets how many workers are read or switched at once (at least 1).
pub fn set_max_concurrent_workers(n: usize) {
    CONCURRENT_WORKERS.store(n.max(1), Ordering::SeqCst);
}

fn concurrent_workers() -> usize {
    CONCURRENT_WORKERS.load(Ordering::SeqCst)
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A worker could not be reached, read or written.
    #[error("worker {worker}")]
    Worker {
        /// The worker.
        worker: String,
        /// The cause.
        #[source]
        source: TransportError,
    },
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    /// The manifests could not be read from Git.
    #[error(transparent)]
    Source(#[from] crate::adapters::git::SourceError),
    /// The object store failed.
    #[error(transparent)]
    Objects(#[from] crate::adapters::objects::ObjectError),
}

impl EngineError {
    fn worker(worker: &str, source: TransportError) -> Self {
        EngineError::Worker {
            worker: worker.to_owned(),
            source,
        }
    }

    /// True when the user can fix it (a bad target, a path, a failing hook).
    pub fn is_user_error(&self) -> bool {
        match self {
            EngineError::Worker { source, .. } => source.is_user_error(),
            EngineError::Source(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// The transport of a worker of the desired state.
pub fn transport(
    state_dir: &Path,
    worker: &str,
    state: &WorkerState,
) -> Result<WorkerTransport, EngineError> {
    WorkerTransport::for_target(state_dir, worker, state.target.as_deref())
        .map_err(|e| EngineError::worker(worker, e))
}

/// The transport of a worker where a deployment put it; deployments recorded before
/// placements were only had workers under `<state_dir>/workers/`.
pub fn recorded_transport(
    state_dir: &Path,
    worker: &str,
    placement: Option<&Placement>,
) -> Result<WorkerTransport, EngineError> {
    match placement {
        Some(p) => WorkerTransport::from_location(&p.location),
        None => WorkerTransport::for_target(state_dir, worker, None),
    }
    .map_err(|e| EngineError::worker(worker, e))
}

/// Reads many workers at once; each result by worker name.
pub async fn inventories(
    workers: Vec<(String, WorkerTransport)>,
) -> BTreeMap<String, Result<Inventory, TransportError>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrent_workers()));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, transport) in workers {
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let inventory = transport.inventory().await;
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
pub async fn read_ahead(state_dir: &Path, ring: &str, stop: &AtomicBool) -> ReadAhead {
    let placements = crate::adapters::store::StoreReader::open(state_dir)
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
        let Ok(transport) = recorded_transport(state_dir, &name, Some(&placement)) else {
            continue;
        };
        if let Ok(inventory) = transport.inventory().await {
            read.insert(name, (placement.location, inventory));
        }
    }
    ReadAhead(read)
}

/// Reads every worker of the desired state. A worker that cannot be read is
/// unreachable, with the reason; the others are observed. What a plan may show of a
/// file: nothing when it is the desired artifact, the file itself when nothing about
/// the path is sensitive, otherwise a notice.
pub async fn observe(state_dir: &Path, desired: &DesiredState) -> ObservedState {
    observe_with(state_dir, desired, ReadAhead::default()).await
}

/// [`observe`], taking the inventories `ahead` read at the worker's desired location
/// instead of reading them again.
pub async fn observe_with(
    state_dir: &Path,
    desired: &DesiredState,
    mut ahead: ReadAhead,
) -> ObservedState {
    let mut observed = ObservedState::default();
    let mut reachable = Vec::new();
    let mut read = BTreeMap::new();
    for (name, state) in &desired.workers {
        match transport(state_dir, name, state) {
            Ok(t) => match ahead.0.remove(name) {
                Some((at, inventory)) if at == t.location() => {
                    read.insert(name.clone(), Ok(inventory));
                    reachable.push((name.clone(), t));
                }
                _ => reachable.push((name.clone(), t)),
            },
            Err(e) => {
                observed.unreachable.insert(name.clone(), chain(&e));
            }
        }
    }
    let transports: BTreeMap<String, WorkerTransport> = reachable.iter().cloned().collect();
    let unread = reachable
        .into_iter()
        .filter(|(name, _)| !read.contains_key(name))
        .collect();
    read.extend(inventories(unread).await);
    for (name, inventory) in read {
        let Some(state) = desired.workers.get(&name) else {
            continue;
        };
        match inventory {
            Ok(inventory) => {
                observed
                    .digests
                    .insert(name.clone(), inventory_digest(&inventory));
                let transport = &transports[&name];
                let worker = observed_worker(transport, inventory, state).await;
                observed.workers.insert(name, worker);
            }
            Err(e) => {
                let e = EngineError::worker(&name, e);
                observed.unreachable.insert(name, chain(&e));
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
    transport: &WorkerTransport,
    inventory: Inventory,
    state: &WorkerState,
) -> ObservedWorker {
    let mut worker = ObservedWorker::default();
    for (path, entry) in inventory.managed {
        if let OnDisk::File { sha256, .. } = entry.on_disk {
            let shown = shown_text(transport, &path, &sha256, state).await;
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
            let shown = shown_text(transport, &path, "", state).await;
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
    state_dir: &Path,
    desired: &DesiredState,
    input: crate::pipeline::plan::PlanInput,
) -> (crate::model::Plan, ObservedState) {
    let observed = observe(state_dir, desired).await;
    let plan = crate::pipeline::drift::plan_observed(&observed, desired, input);
    (plan, observed)
}

/// Text a plan may show for a file on a worker: nothing for the desired artifact itself
/// (no diff is shown for it).
async fn shown_text(
    transport: &WorkerTransport,
    path: &str,
    sha256: &str,
    state: &WorkerState,
) -> String {
    let desired = state.artifacts.get(path);
    if desired.is_some_and(|a| a.sha256 == sha256) {
        return String::new();
    }
    if desired.is_some_and(|a| a.shown.is_some()) {
        return SENSITIVE_NOTICE.to_owned();
    }
    match transport.read(path).await {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// What is shown instead of a worker's file that may hold sensitive values.
pub const SENSITIVE_NOTICE: &str =
    "(content on the worker not shown: this artifact holds sensitive values)\n";

/// One worker of a rollout: how to reach it and everything it should hold.
#[derive(Clone, Debug)]
pub struct Target {
    /// The worker.
    pub name: String,
    /// How it is reached.
    pub transport: WorkerTransport,
    /// Every file it should hold, by worker-relative path.
    pub files: BTreeMap<String, FileSpec>,
    /// Where it is and the hooks to run, as recorded.
    pub placement: Placement,
    /// Secret values its hooks' output must never show.
    pub redact: Vec<String>,
}

impl Target {
    fn written(&self) -> Vec<WrittenArtifact> {
        self.files
            .iter()
            .map(|(path, f)| WrittenArtifact {
                path: path.clone(),
                sha256: f.sha256.clone(),
                mode: f.mode,
            })
            .collect()
    }
}

/// The rollout of a compiled desired state.
pub fn targets_from_desired(
    state_dir: &Path,
    desired: &DesiredState,
) -> Result<Vec<Target>, EngineError> {
    desired
        .workers
        .iter()
        .map(|(name, state)| {
            let transport = transport(state_dir, name, state)?;
            let files = state
                .artifacts
                .iter()
                .map(|(path, a)| {
                    let spec = FileSpec {
                        content: Arc::<[u8]>::from(Arc::clone(&a.content)),
                        sha256: a.sha256.clone(),
                        mode: mode_of(a),
                    };
                    (path.clone(), spec)
                })
                .collect();
            let placement = Placement {
                location: transport.location(),
                check: state.check.clone(),
                reload: state.reload.clone(),
                sensitive: state
                    .artifacts
                    .iter()
                    .filter(|(_, a)| a.shown.is_some())
                    .map(|(p, _)| p.clone())
                    .collect(),
            };
            let mut redact: Vec<String> = state
                .artifacts
                .values()
                .flat_map(|a| a.sensitive.iter().cloned())
                .collect();
            redact.sort();
            redact.dedup();
            Ok(Target {
                name: name.clone(),
                transport,
                files,
                placement,
                redact,
            })
        })
        .collect()
}

/// The rollout that puts back what a recorded deployment left on its workers, read
/// from the object store (no repository needed). Only `workers` when given.
pub fn targets_from_record(
    store: &Store,
    objects: &ObjectStore,
    state_dir: &Path,
    deployment: DeploymentId,
    workers: Option<&[String]>,
    redact: &[String],
) -> Result<Vec<Target>, EngineError> {
    let artifacts = store.artifacts(deployment)?;
    let placements = store.placements(deployment)?;
    let mut targets = Vec::new();
    for (name, written) in artifacts {
        if workers.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let placement = placements.get(&name);
        let transport = recorded_transport(state_dir, &name, placement)?;
        let mut files = BTreeMap::new();
        for a in written {
            let bytes = objects.get(&a.sha256)?;
            files.insert(a.path, FileSpec::new(bytes, a.mode));
        }
        let placement = placement.cloned().unwrap_or_else(|| Placement {
            location: transport.location(),
            ..Placement::default()
        });
        targets.push(Target {
            name,
            transport,
            files,
            placement,
            redact: redact.to_vec(),
        });
    }
    Ok(targets)
}

/// What applying a ring did.
#[derive(Debug)]
pub struct Outcome {
    /// The recorded deployment, in its final state.
    pub deployment: Deployment,
    /// Workers whose files changed.
    pub changed: Vec<String>,
    /// The first failure, if any (the deployment is then Failed).
    pub failure: Option<String>,
}

/// Records a deployment of `targets` and switches every worker to it, several at a
/// time. When a worker fails, no further worker starts; the failed worker and those
/// already switched get the previous Active deployment's artifacts back from the
/// object store, and the deployment ends Failed whatever the restore does. An
/// unreachable worker is tried again until `until` (none: fails at once).
pub async fn apply(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    targets: Vec<Target>,
    new: NewDeployment,
    until: Option<Instant>,
) -> Result<Outcome, EngineError> {
    let previous = store.active(&new.ring)?;
    let deployment = store.create_deployment(&new)?;
    let id = deployment.id;
    store.transition(id, DeploymentState::Building, "storing artifacts")?;
    let files = targets.iter().flat_map(|t| t.files.values());
    objects.put_known(files.map(|f| (f.sha256.as_str(), &*f.content)))?;
    store.transition(id, DeploymentState::Deploying, "switching workers")?;
    let ring = new.ring.clone();
    let batch = switch_and_record(store, id, &ring, &targets, until).await?;
    let (touched, changed) = (batch.touched, batch.changed);
    if let Some(message) = batch.failure {
        let outcomes: BTreeMap<&str, &str> = batch
            .messages
            .iter()
            .map(|(w, m)| (w.as_str(), m.as_str()))
            .collect();
        let back = Restore {
            failing: id,
            previous: previous.as_ref(),
            touched: &touched,
            ring: &ring,
            outcomes: &outcomes,
        };
        restore(store, objects, state_dir, &targets, back).await?;
        let failed = store.transition(id, DeploymentState::Failed, &message)?;
        return Ok(Outcome {
            deployment: failed,
            changed,
            failure: Some(message),
        });
    }
    store.transition(id, DeploymentState::Validating, "every worker switched")?;
    let activation = store.activate(id, "active")?;
    if let Some(p) = &previous {
        clear_old_locations(store, state_dir, p.id, id, &targets).await?;
    }
    Ok(Outcome {
        deployment: activation.deployment,
        changed,
        failure: None,
    })
}

/// What [`switch_and_record`] did to a batch of workers.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Workers attempted (a failed one may be half-switched: restore it too).
    pub touched: Vec<String>,
    /// Workers whose files changed.
    pub changed: Vec<String>,
    /// The first failure, naming its worker.
    pub failure: Option<String>,
    /// What was recorded for each worker.
    pub messages: BTreeMap<String, String>,
}

/// Switches `targets` (stopping at the first failure), waiting for unreachable workers
/// until `until` (see [`switch_all_until`]), and records how each fared, with the
/// artifact set of those that hold the deployment's files, in one transaction.
pub async fn switch_and_record(
    store: &mut Store,
    id: DeploymentId,
    ring: &str,
    targets: &[Target],
    until: Option<Instant>,
) -> Result<BatchOutcome, EngineError> {
    let switched = switch_all_until(targets, ring, &id.to_string(), false, until).await;
    let mut out = BatchOutcome {
        failure: switched
            .panicked
            .then(|| "a worker task stopped unexpectedly (a bug in ringops)".to_owned()),
        ..BatchOutcome::default()
    };
    let mut records = Vec::with_capacity(targets.len());
    for target in targets {
        let name = &target.name;
        let (outcome, message, holds) = match switched.results.get(name) {
            Some(Ok(applied)) => {
                out.touched.push(name.clone());
                if applied.written.is_empty() && applied.removed.is_empty() {
                    (WorkerOutcome::Unchanged, summary(applied), true)
                } else {
                    out.changed.push(name.clone());
                    (WorkerOutcome::Applied, summary(applied), true)
                }
            }
            Some(Err(e)) => {
                let message = chain(&EngineError::worker(name, clone_error(e.error())));
                out.touched.push(name.clone());
                out.failure.get_or_insert(message.clone());
                (WorkerOutcome::Failed, message, false)
            }
            None => {
                let message = "not attempted: another worker failed first".to_owned();
                (WorkerOutcome::Skipped, message, false)
            }
        };
        out.messages.insert(name.clone(), message.clone());
        records.push((target, outcome, message, holds.then(|| target.written())));
    }
    let entries: Vec<WorkerEntry<'_>> = records
        .iter()
        .map(|(target, outcome, message, written)| WorkerEntry {
            worker: &target.name,
            outcome: *outcome,
            message,
            placement: &target.placement,
            artifacts: written.as_deref(),
        })
        .collect();
    store.record_workers(id, &entries)?;
    Ok(out)
}

/// Removes ringops' files where the previous deployment put a worker that now lives
/// elsewhere (its `target` changed), noting each on the new deployment.
async fn clear_old_locations(
    store: &mut Store,
    state_dir: &Path,
    previous: DeploymentId,
    id: DeploymentId,
    targets: &[Target],
) -> Result<(), EngineError> {
    let before = store.placements(previous)?;
    for t in targets {
        let Some(old) = before
            .get(&t.name)
            .filter(|p| p.location != t.placement.location)
        else {
            continue;
        };
        let message = match recorded_transport(state_dir, &t.name, Some(old)) {
            Ok(transport) => {
                let batch = Batch {
                    deployment: id.to_string(),
                    expected_generation: None,
                    files: BTreeMap::new(),
                };
                let hooks = Hooks {
                    worker: t.name.clone(),
                    ..Hooks::default()
                };
                match transport.switch(batch, hooks).await {
                    Ok(_) => format!("{}: removed its files from {}", t.name, old.location),
                    Err(e) => format!(
                        "{}: cannot remove its files from {}: {}",
                        t.name,
                        old.location,
                        chain(e.error())
                    ),
                }
            }
            Err(e) => format!("{}: {}", t.name, chain(&e)),
        };
        store.note(id, &message)?;
    }
    Ok(())
}

/// What [`switch_all`] did.
#[derive(Debug, Default)]
pub struct Switched {
    /// Each worker that was attempted, by name.
    pub results: BTreeMap<String, Result<Applied, SwitchError>>,
    /// True when a worker's task panicked (its worker has no result).
    pub panicked: bool,
}

/// Switches every target, at most [`set_max_concurrent_workers`] at a time. Unless
/// `keep_going`, no other worker starts after the first failure; workers never started
/// have no result.
pub async fn switch_all(
    targets: &[Target],
    ring: &str,
    deployment: &str,
    keep_going: bool,
) -> Switched {
    switch_all_until(targets, ring, deployment, keep_going, None).await
}

/// [`switch_all`], sending a switch again while its worker is unreachable (an agent
/// that is down), with a doubling wait from [`UNREACHABLE_RETRY`] up to
/// [`UNREACHABLE_RETRY_MAX`], until `until`; then the worker fails with
/// [`TransportError::GaveUp`]. Without `until` an unreachable worker fails at once.
pub async fn switch_all_until(
    targets: &[Target],
    ring: &str,
    deployment: &str,
    keep_going: bool,
    until: Option<Instant>,
) -> Switched {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrent_workers()));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let batch = Batch {
            deployment: deployment.to_owned(),
            expected_generation: None,
            files: target.files.clone(),
        };
        let hooks = hooks(target, ring);
        let (transport, name) = (target.transport.clone(), target.name.clone());
        let (limit, failed) = (Arc::clone(&limit), Arc::clone(&failed));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if !keep_going && failed.load(Ordering::SeqCst) {
                return (name, None);
            }
            let result = switch_waiting(&transport, &name, batch, hooks, until).await;
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            (name, Some(result))
        });
    }
    let mut out = Switched::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Some(result))) => {
                out.results.insert(name, result);
            }
            Ok((_, None)) => {}
            Err(e) => {
                failed.store(true, Ordering::SeqCst);
                out.panicked = true;
                tracing::error!(error = %e, "a worker task stopped unexpectedly (a bug in ringops)");
            }
        }
    }
    out
}

/// The first wait before switching an unreachable worker again.
pub const UNREACHABLE_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two switches of an unreachable worker.
pub const UNREACHABLE_RETRY_MAX: Duration = Duration::from_secs(10);

/// Switches one worker, again while it is unreachable and `until` has not passed.
async fn switch_waiting(
    transport: &WorkerTransport,
    worker: &str,
    batch: Batch,
    hooks: Hooks,
    until: Option<Instant>,
) -> Result<Applied, SwitchError> {
    let started = Instant::now();
    let mut wait = UNREACHABLE_RETRY;
    let mut attempts = 1;
    let mut waiting = None;
    loop {
        let result = transport.switch(batch.clone(), hooks.clone()).await;
        let error = match result {
            Err(SwitchError::NotSwitched(e)) if e.is_unreachable() => e,
            other => return other,
        };
        let Some(left) = until.and_then(|u| u.checked_duration_since(Instant::now())) else {
            if until.is_none() {
                return Err(SwitchError::NotSwitched(error));
            }
            return Err(SwitchError::NotSwitched(TransportError::GaveUp {
                attempts,
                waited: Duration::from_secs(started.elapsed().as_secs()),
                source: Box::new(error),
            }));
        };
        waiting.get_or_insert_with(|| waiting::Waiting::new(&hooks.ring, worker));
        tracing::warn!(
            worker,
            attempts,
            error = %chain(&error),
            "worker unreachable; trying again in {}",
            humantime::format_duration(wait.min(left))
        );
        tokio::time::sleep(wait.min(left)).await;
        wait = (wait * 2).min(UNREACHABLE_RETRY_MAX);
        attempts += 1;
    }
}

fn hooks(target: &Target, ring: &str) -> Hooks {
    Hooks {
        check: target.placement.check.clone(),
        reload: target.placement.reload.clone(),
        worker: target.name.clone(),
        ring: ring.to_owned(),
        redact: target.redact.clone(),
    }
}

fn summary(applied: &Applied) -> String {
    format!(
        "{} written, {} removed, {} unchanged",
        applied.written.len(),
        applied.removed.len(),
        applied.unchanged
    )
}

/// A transport error again, as text (they hold IO errors, which do not clone).
fn clone_error(e: &TransportError) -> TransportError {
    TransportError::Hook(chain(e))
}

/// The error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// What to put back after a failed rollout.
struct Restore<'r> {
    failing: DeploymentId,
    previous: Option<&'r Deployment>,
    touched: &'r [String],
    ring: &'r str,
    /// What was recorded for each worker before the restore.
    outcomes: &'r BTreeMap<&'r str, &'r str>,
}

/// Puts the previous Active deployment's artifacts back on every worker the rollout
/// touched (or removes ringops' files where there was none), one worker at a time so
/// that one failure (a missing object, a worker that refuses) stops no other; records
/// each as Restored or RestoreFailed, keeping what happened before.
async fn restore(
    store: &mut Store,
    objects: &ObjectStore,
    state_dir: &Path,
    targets: &[Target],
    back: Restore<'_>,
) -> Result<(), EngineError> {
    let deployment = back.previous.map(|p| p.id.to_string()).unwrap_or_default();
    for name in back.touched {
        let Some(current) = targets.iter().find(|t| &t.name == name) else {
            continue;
        };
        let before = match back.previous {
            Some(p) => targets_from_record(
                store,
                objects,
                state_dir,
                p.id,
                Some(std::slice::from_ref(name)),
                &current.redact,
            )
            .map(|mut t| t.pop()),
            None => Ok(None),
        };
        let result = match before {
            Ok(before) => {
                let target = before.unwrap_or_else(|| Target {
                    files: BTreeMap::new(),
                    ..current.clone()
                });
                let batch = Batch {
                    deployment: deployment.clone(),
                    expected_generation: None,
                    files: target.files,
                };
                let hooks = Hooks {
                    check: None,
                    redact: current.redact.clone(),
                    ..hooks(current, back.ring)
                };
                current
                    .transport
                    .switch(batch, hooks)
                    .await
                    .map_err(|e| chain(e.error()))
            }
            Err(e) => Err(chain(&e)),
        };
        let earlier = back
            .outcomes
            .get(name.as_str())
            .copied()
            .unwrap_or_default();
        let (outcome, message) = match result {
            Ok(_) => (
                WorkerOutcome::Restored,
                format!("{earlier}; then restored the previous active artifacts"),
            ),
            Err(e) => (
                WorkerOutcome::RestoreFailed,
                format!("{earlier}; then restoring the previous artifacts failed: {e}"),
            ),
        };
        store.record_worker(back.failing, name, outcome, &message)?;
    }
    Ok(())
}
