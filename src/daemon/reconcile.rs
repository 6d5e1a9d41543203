//! One pass of the daemon, under the writer lock: deploy the tracked branch's newest
//! commit to the rings that auto-deploy, or repair drift on the workers of every ring's
//! Active deployment. Each pass takes the lock only for its own duration, so `ringops
//! apply`, `rollback` and friends interleave with the daemon.

use crate::adapters::git::Source;
use crate::adapters::git::mirror::RepoLocation;
use crate::adapters::lock::{LockError, WriterLock};
use crate::adapters::objects::ObjectStore;
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::Store;
use crate::engine::rollout::RolloutEnd;
use crate::engine::{self, sync::compare, sync::drift_kind};
use crate::model::deployment::{Deployment, DeploymentState, Drift, NewDeployment};
use crate::model::manifest::DriftMode;
use crate::pipeline::plan::PlanInput;
use crate::pipeline::policy::{RingPolicy, ring_policies};
use crate::report::history::WorkerSync;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the daemon reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The repository: a folder, or a remote mirrored under the state folder.
    pub repo: RepoLocation,
    /// The manifests' folder inside it.
    pub path: String,
    /// The tracked branch (`None`: the repository's HEAD).
    pub branch: Option<String>,
    /// The state folder.
    pub state_dir: PathBuf,
}

/// Why a pass failed (it is retried on the next trigger).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The repository could not be read.
    #[error(transparent)]
    Source(#[from] crate::adapters::git::SourceError),
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    /// The lock file failed.
    #[error(transparent)]
    Lock(LockError),
    /// Workers or objects failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// What a pass did, for logs, metrics and the first deployment's plan.
#[derive(Debug, Default)]
pub struct PassReport {
    /// The lock was held by someone else; nothing was done.
    pub busy: bool,
    /// The commit the tracked branch pointed at.
    pub commit: Option<String>,
    /// Deployments recorded, with the plan text that preceded each.
    pub deployments: Vec<(Deployment, String)>,
    /// Rings skipped because a rollback pinned them at this commit.
    pub pinned: Vec<String>,
    /// Drift found, and whether it was reverted.
    pub drift: Vec<(Drift, bool)>,
    /// Workers a drift pass read: ring, worker, and whether it was unreachable.
    pub reached: Vec<(String, String, bool)>,
}

/// The daemon's memory between passes.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// The last commit a deploy pass handled.
    pub last_commit: Option<String>,
    /// The latest ring policies (from the newest commit that had them).
    pub policies: BTreeMap<String, RingPolicy>,
    /// Drift already recorded for `drift: report` rings, so it is recorded once.
    reported: BTreeSet<(String, String, String)>,
    /// Rings whose deployment of the head failed on a worker: tried again later.
    retries: BTreeMap<String, Retry>,
    /// The first retry's delay; each later one doubles it, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// A failed deployment of `commit` to be tried again at `due`.
#[derive(Debug)]
struct Retry {
    commit: String,
    attempts: u32,
    due: Instant,
}

/// The longest wait between two attempts at deploying the same commit.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

impl Reconciler {
    /// A reconciler that retries a failed deployment after `backoff`, then twice as
    /// long each time.
    pub fn new(backoff: Duration) -> Self {
        Reconciler {
            backoff,
            ..Reconciler::default()
        }
    }

    /// When the next failed deployment is due to be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.due).min()
    }

    /// Whether `ring`'s failed deployment of `commit` may be tried again now.
    fn retry_due(&self, ring: &str, commit: &str) -> bool {
        self.retries
            .get(ring)
            .is_some_and(|r| r.commit == commit && r.due <= Instant::now())
    }

    /// Notes how a deployment of `commit` to `ring` ended: a worker failure is tried
    /// again after a growing delay; success or a build failure (it would fail the
    /// same way) ends the retries.
    fn note_outcome(&mut self, ring: &str, commit: &str, retryable: bool) {
        if !retryable {
            self.retries.remove(ring);
            return;
        }
        let attempts = match self.retries.get(ring) {
            Some(r) if r.commit == commit => r.attempts + 1,
            _ => 1,
        };
        let delay = self
            .backoff
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(MAX_BACKOFF);
        tracing::warn!(
            ring,
            attempts,
            "deployment failed; trying again in {}",
            humantime::format_duration(delay)
        );
        self.retries.insert(
            ring.to_owned(),
            Retry {
                commit: commit.to_owned(),
                attempts,
                due: Instant::now() + delay,
            },
        );
    }

    /// Deploys the tracked branch's head to every auto-deploy ring when it is new
    /// (or `force`). A commit that does not compile is recorded as a Failed deployment
    /// with its errors and touches no worker.
    pub async fn deploy(
        &mut self,
        paths: &Paths,
        secrets: &HostSecrets,
        force: bool,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let source = Source::open(&paths.repo.open_path(&paths.state_dir))?;
        let commit = source.resolve(paths.branch.as_deref().unwrap_or("HEAD"))?;
        report.commit = Some(commit.clone());
        if !force
            && self.last_commit.as_deref() == Some(commit.as_str())
            && self.settled(&paths.state_dir, &commit)
            && !queued_behind_gates(&paths.state_dir)
        {
            return Ok(report);
        }
        let Some(_lock) = lock(&paths.state_dir, "ringops daemon: deploy")? else {
            report.busy = true;
            return Ok(report);
        };
        let mut store = Store::open(&paths.state_dir)?;
        for d in store.mark_interrupted()? {
            tracing::warn!(deployment = %d.id, ring = %d.ring, "marked an interrupted deployment Failed");
        }
        let bundle = source.bundle_at(&commit, &paths.path)?;
        let policies = ring_policies(&bundle);
        if !policies.is_empty() {
            self.policies = policies;
        }
        let rings: Vec<String> = self
            .policies
            .iter()
            .filter(|(_, p)| p.auto_deploy)
            .map(|(r, _)| r.clone())
            .collect();
        for ring in rings {
            if let Some(pin) = store.pin(&ring)? {
                if pin.commit == commit {
                    report.pinned.push(ring);
                    continue;
                }
                store.unpin(&ring)?;
                tracing::info!(
                    ring,
                    "the tracked branch moved past the pinned commit; pin lifted"
                );
            }
            if !force && at_commit(&store, &ring, &commit)? && !self.retry_due(&ring, &commit) {
                continue;
            }
            let mut gates = super::gates::trusted_gates(&store, paths, &source, &ring)?;
            // A commit may raise a freeze at once (never lift one by itself).
            if let Some(g) = gates.as_mut() {
                g.freeze |= self.policies.get(&ring).is_some_and(|p| p.freeze);
            }
            if let Some(why) = held(&store, &ring, gates.as_ref())? {
                tracing::info!(ring, "not deploying: {why}");
                continue;
            }
            let deployed =
                deploy_ring(&mut store, paths, secrets, &bundle, &ring, gates.as_ref()).await?;
            match deployed {
                Some(d) => {
                    self.note_outcome(&ring, &commit, d.retryable);
                    report.deployments.push((d.deployment, d.plan));
                }
                None => self.note_outcome(&ring, &commit, false),
            }
        }
        for moved in super::gates::pass(&mut store, paths, &source, secrets).await? {
            report.deployments.push((moved, String::new()));
        }
        self.last_commit = Some(commit);
        Ok(report)
    }

    /// Whether every auto-deploy ring already has `commit` Active, is pinned at it, or
    /// failed on it: then an unforced pass has nothing to do. Read without the lock.
    fn settled(&self, state_dir: &Path, commit: &str) -> bool {
        let Ok(reader) = crate::adapters::store::StoreReader::open(state_dir) else {
            return false;
        };
        self.policies
            .iter()
            .filter(|(_, p)| p.auto_deploy)
            .all(|(ring, _)| {
                let pinned = reader
                    .pin(ring)
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.commit == commit);
                let done = reader
                    .active(ring)
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.commit == commit);
                let failed = reader
                    .latest_of_commit(ring, commit)
                    .ok()
                    .flatten()
                    .is_some_and(|d| handled(d.state));
                pinned || done || (failed && !self.retry_due(ring, commit))
            })
    }

    /// Compares the workers of every ring's Active deployment (or only `only`) with
    /// what it recorded, and puts back what drifted (rings with `drift: report` only
    /// record it, once).
    pub async fn repair(
        &mut self,
        state_dir: &Path,
        secrets: &HostSecrets,
        only: Option<&BTreeSet<String>>,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        if !state_dir.join(crate::adapters::store::DB_FILE).exists() {
            return Ok(report);
        }
        let Some(_lock) = lock(state_dir, "ringops daemon: drift")? else {
            report.busy = true;
            return Ok(report);
        };
        let mut store = Store::open(state_dir)?;
        let objects = ObjectStore::new(state_dir);
        let owners = worker_owners(&store)?;
        for ring in store.rings()? {
            let active = store.active(&ring)?;
            // Workers a rollout in progress (a paused canary) already switched hold its
            // files, not the Active deployment's: they are kept to those.
            let rollout = in_rollout(&store, &ring, active.as_ref())?;
            if active.is_none() && rollout.is_none() {
                continue;
            }
            let mode = self
                .policies
                .get(&ring)
                .map(|p| p.drift)
                .unwrap_or_default();
            let switched: BTreeSet<String> = match &rollout {
                Some(d) => store.artifacts(d.id)?.into_keys().collect(),
                None => BTreeSet::new(),
            };
            let recorded: BTreeSet<String> = match &active {
                Some(a) => store.artifacts(a.id)?.into_keys().collect(),
                None => BTreeSet::new(),
            };
            let mut on_active = BTreeSet::new();
            let mut on_rollout = BTreeSet::new();
            for worker in recorded.union(&switched) {
                let elsewhere = owners.get(worker).is_some_and(|owner| owner != &ring);
                if elsewhere || only.is_some_and(|o| !o.contains(worker)) {
                    continue;
                }
                match switched.contains(worker) {
                    true => on_rollout.insert(worker.clone()),
                    false => on_active.insert(worker.clone()),
                };
            }
            let repair = Repair {
                ring: &ring,
                mode,
                state_dir,
                secrets,
                objects: &objects,
            };
            if let Some(a) = &active {
                self.repair_one(&mut store, &repair, a, &on_active, &mut report)
                    .await?;
            }
            if let Some(d) = &rollout {
                self.repair_one(&mut store, &repair, d, &on_rollout, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }
}

/// Which ring each worker belongs to now: of the Active deployments that placed it,
/// the newest (a worker moved from one ring to another is repaired by its new ring
/// only, never by both in turn).
fn worker_owners(store: &Store) -> Result<BTreeMap<String, String>, PassError> {
    let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for ring in store.rings()? {
        let Some(active) = store.active(&ring)? else {
            continue;
        };
        for worker in store.artifacts(active.id)?.into_keys() {
            let entry = newest.entry(worker).or_insert((0, String::new()));
            if active.id.0 > entry.0 {
                *entry = (active.id.0, ring.clone());
            }
        }
    }
    Ok(newest.into_iter().map(|(w, (_, ring))| (w, ring)).collect())
}

/// What a drift repair of one ring needs besides the store.
struct Repair<'a> {
    ring: &'a str,
    mode: DriftMode,
    state_dir: &'a Path,
    secrets: &'a HostSecrets,
    objects: &'a ObjectStore,
}

/// The ring's newest deployment when a rollout of it is under way (Deploying, between
/// batches) and it is not the Active one.
fn in_rollout(
    store: &Store,
    ring: &str,
    active: Option<&Deployment>,
) -> Result<Option<Deployment>, PassError> {
    let newest = store.history(Some(ring), 1)?.pop();
    Ok(newest
        .filter(|d| active.is_none_or(|a| a.id != d.id) && d.state == DeploymentState::Deploying))
}

impl Reconciler {
    /// Compares `workers` with what `deployment` recorded for them and puts back what
    /// drifted (rings with `drift: report` only record it, once).
    async fn repair_one(
        &mut self,
        store: &mut Store,
        repair: &Repair<'_>,
        deployment: &Deployment,
        workers: &BTreeSet<String>,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        let ring = repair.ring;
        if workers.is_empty() {
            return Ok(());
        }
        let (drifted, unreachable) =
            drifted_workers(store, repair.state_dir, deployment, Some(workers)).await?;
        for worker in workers {
            let down = unreachable.contains(worker);
            report.reached.push((ring.to_owned(), worker.clone(), down));
        }
        if drifted.is_empty() {
            return Ok(());
        }
        let revert = repair.mode == DriftMode::Revert;
        let mut fixed = BTreeSet::new();
        if revert {
            let names: Vec<String> = drifted.keys().cloned().collect();
            let redact = repair.secrets.all_values();
            let targets = engine::targets_from_record(
                store,
                repair.objects,
                repair.state_dir,
                deployment.id,
                Some(&names),
                &redact,
            )?
            .into_iter()
            .map(|t| engine::rollout::with_drift(t, repair.mode))
            .collect::<Vec<_>>();
            let switched =
                engine::switch_all(&targets, ring, &deployment.id.to_string(), true).await;
            for (name, result) in switched.results {
                match result {
                    Ok(_) => {
                        fixed.insert(name);
                    }
                    Err(e) => tracing::error!(
                        ring, worker = %name, error = %engine::chain(e.error()),
                        "cannot revert drift"
                    ),
                }
            }
        }
        let mut records = Vec::new();
        for (worker, files) in drifted {
            let reverted = fixed.contains(&worker);
            for (path, how) in files {
                let key = (worker.clone(), path.clone(), how.clone());
                if !revert && !self.reported.insert(key) {
                    continue;
                }
                let drift = Drift {
                    ring: ring.to_owned(),
                    worker: worker.clone(),
                    path,
                    kind: drift_kind(&how),
                    summary: match (revert, reverted) {
                        (true, true) => format!("{how}; reverted"),
                        (true, false) => format!("{how}; reverting failed"),
                        (false, _) => format!("{how}; reported (ring drift: report)"),
                    },
                };
                records.push(drift.clone());
                report.drift.push((drift, reverted));
            }
        }
        store.record_drift(&records)?;
        if !fixed.is_empty() {
            let names: Vec<&str> = fixed.iter().map(String::as_str).collect();
            let message = format!("drift reverted by the daemon on {}", names.join(", "));
            store.note(deployment.id, &message)?;
        }
        Ok(())
    }
}

/// Whether `ring` already runs `commit`, or failed on it (retried only by a forced
/// pass: a restart or SIGHUP).
fn at_commit(store: &Store, ring: &str, commit: &str) -> Result<bool, PassError> {
    if store.active(ring)?.is_some_and(|a| a.commit == commit) {
        return Ok(true);
    }
    let latest = store.latest_of_commit(ring, commit)?;
    Ok(latest.is_some_and(|d| handled(d.state)))
}

/// A deployment of a commit in this state settles that commit for an unforced pass: it
/// failed or was reverted (retried only with backoff), or it is still under way.
fn handled(state: DeploymentState) -> bool {
    matches!(state, DeploymentState::Failed | DeploymentState::RolledBack)
        || state == DeploymentState::Queued
        || state.is_in_progress()
}

/// Why the daemon must not deploy `ring` now, if it must not: its trusted definition
/// does not auto-deploy or holds it behind a promotion's gates, a person paused it, or
/// a rollout of it is under way (a paused canary, a queued promotion).
fn held(
    store: &Store,
    ring: &str,
    gates: Option<&crate::pipeline::rollout::Gates>,
) -> Result<Option<String>, PassError> {
    if let Some(gates) = gates {
        if !gates.auto_deploy {
            return Ok(Some(
                "its trusted definition does not auto-deploy".to_owned(),
            ));
        }
        let gated = gates.promotion_only();
        if !gated.is_empty() {
            return Ok(Some(format!(
                "it is gated ({}); promote it",
                gated.join(", ")
            )));
        }
    }
    if let Some(pause) = store.ring_pause(ring)? {
        return Ok(Some(format!("it is paused ({})", pause.reason)));
    }
    let newest = store.history(Some(ring), 1)?.pop();
    if let Some(d) =
        newest.filter(|d| d.state == DeploymentState::Queued || d.state.is_in_progress())
    {
        return Ok(Some(format!("{} is under way ({})", d.id, d.state)));
    }
    Ok(None)
}

/// Whether a ring's newest deployment is Queued behind its gates (approvals, a window,
/// a freeze): then a deploy pass looks at it even when the branch did not move.
fn queued_behind_gates(state_dir: &Path) -> bool {
    let Ok(reader) = crate::adapters::store::StoreReader::open(state_dir) else {
        return false;
    };
    reader.rings().unwrap_or_default().iter().any(|ring| {
        let newest = reader.history(Some(ring), 1).ok().and_then(|mut h| h.pop());
        newest.is_some_and(|d| {
            d.state == DeploymentState::Queued
                && reader
                    .rollout(d.id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| !r.waiting.is_empty())
        })
    })
}

/// Takes the writer lock, or `None` when another writer holds it.
fn lock(state_dir: &Path, command: &str) -> Result<Option<WriterLock>, PassError> {
    match WriterLock::acquire(state_dir, command, false) {
        Ok(lock) => Ok(Some(lock)),
        Err(LockError::Held { .. }) => Ok(None),
        Err(e) => Err(PassError::Lock(e)),
    }
}

/// A deployment a pass recorded.
struct Deployed {
    deployment: Deployment,
    /// The plan shown before it.
    plan: String,
    /// It failed on a worker (not in the build), so trying again may succeed.
    retryable: bool,
}

/// Compiles and applies one ring; nothing when its Active deployment already is this
/// desired state, a Failed record when the commit does not compile (once per commit).
async fn deploy_ring(
    store: &mut Store,
    paths: &Paths,
    secrets: &HostSecrets,
    bundle: &crate::model::Bundle,
    ring: &str,
    gates: Option<&crate::pipeline::rollout::Gates>,
) -> Result<Option<Deployed>, PassError> {
    let commit = bundle.commit.clone().unwrap_or_default();
    let new = NewDeployment {
        ring: ring.to_owned(),
        commit: commit.clone(),
        tree: bundle.tree.clone().unwrap_or_default(),
        fingerprint: String::new(),
        actor: "daemon".to_owned(),
        reason: format!(
            "new commit on the tracked branch: {}",
            crate::report::short(&commit)
        ),
        rollback_of: None,
    };
    let compiled = tokio::task::block_in_place(|| {
        engine::compile::compile_ring(&paths.state_dir, bundle, secrets, ring)
    });
    let desired = match compiled.map(|mut c| c.states.remove(ring)) {
        Ok(Some(desired)) => desired,
        Ok(None) => return Ok(None),
        Err(diags) => {
            if store.latest_of_commit(ring, &commit)?.is_some() {
                return Ok(None);
            }
            let errors = crate::report::diagnostics(&diags);
            let message = format!("the commit does not compile:\n{}", errors.trim_end());
            let failed = store.record_failed_build(&new, &message)?;
            tracing::error!(ring, deployment = %failed.id, commit, "{message}");
            return Ok(Some(Deployed {
                deployment: failed,
                plan: String::new(),
                retryable: false,
            }));
        }
    };
    let fingerprint = desired.fingerprint();
    if store
        .active(ring)?
        .is_some_and(|a| a.fingerprint == fingerprint)
    {
        return Ok(None);
    }
    let input = PlanInput {
        path: bundle.root.clone(),
        base: None,
        head: crate::model::plan::Revision {
            rev: paths.branch.clone().unwrap_or_else(|| "HEAD".to_owned()),
            commit: bundle.commit.clone(),
        },
        changed_files: Default::default(),
    };
    let (plan, _) = engine::plan_ring(&paths.state_dir, &desired, input).await;
    let text = crate::report::text::render(&plan, false);
    let staged = gates.filter(|g| g.staged());
    let new = NewDeployment { fingerprint, ..new };
    if let Some(gates) = staged {
        let d = store.create_deployment(&new)?;
        let end =
            engine::rollout::run_gated(store, &paths.state_dir, &desired, &d, gates, 0, false)
                .await?;
        let deployment = match end {
            RolloutEnd::Active(d) | RolloutEnd::Waiting { deployment: d, .. } => d,
            RolloutEnd::Failed { deployment: d, .. } => d,
        };
        let retryable =
            deployment.state.is_final() && deployment.state != DeploymentState::Superseded;
        return Ok(Some(Deployed {
            deployment,
            plan: text,
            retryable,
        }));
    }
    let mut targets = engine::targets_from_desired(&paths.state_dir, &desired)?;
    if let Some(g) = gates {
        targets = targets
            .into_iter()
            .map(|t| engine::rollout::with_drift(t, g.drift))
            .collect();
    }
    // Unreachable workers are waited for up to the ring's progress deadline.
    let deadline = gates.map_or_else(
        || crate::pipeline::rollout::HealthTiming::default().progress_deadline,
        |g| g.health.progress_deadline,
    );
    let until = std::time::Instant::now() + deadline;
    let objects = ObjectStore::new(&paths.state_dir);
    let outcome =
        engine::apply(store, &objects, &paths.state_dir, targets, new, Some(until)).await?;
    let retryable = outcome.deployment.state == DeploymentState::Failed;
    Ok(Some(Deployed {
        deployment: outcome.deployment,
        plan: text,
        retryable,
    }))
}

/// Workers of the deployment whose files differ from the record (path and how), and
/// the workers that could not be read.
async fn drifted_workers(
    store: &Store,
    state_dir: &Path,
    active: &Deployment,
    only: Option<&BTreeSet<String>>,
) -> Result<(DriftedFiles, BTreeSet<String>), PassError> {
    let recorded = store.artifacts(active.id)?;
    let placements = store.placements(active.id)?;
    let mut transports = Vec::new();
    for worker in recorded.keys() {
        if only.is_some_and(|o| !o.contains(worker)) {
            continue;
        }
        let t = engine::recorded_transport(state_dir, worker, placements.get(worker))?;
        transports.push((worker.clone(), t));
    }
    let mut out = BTreeMap::new();
    let mut unreachable = BTreeSet::new();
    for (worker, inventory) in engine::inventories(transports).await {
        let inventory = match inventory {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(worker, error = %engine::chain(&e), "cannot read worker");
                unreachable.insert(worker);
                continue;
            }
        };
        if let WorkerSync::Drifted { drifted, .. } = compare(&recorded[&worker], &inventory) {
            let files = drifted.into_iter().map(|d| (d.path, d.how)).collect();
            out.insert(worker, files);
        }
    }
    Ok((out, unreachable))
}

/// Drifted files by worker: path and how.
type DriftedFiles = BTreeMap<String, Vec<(String, String)>>;

/// Every local worker directory of every ring's Active deployment, by worker: what the
/// drift watch follows.
pub fn watched_workers(state_dir: &Path) -> BTreeMap<String, PathBuf> {
    let Ok(reader) = crate::adapters::store::StoreReader::open(state_dir) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for ring in reader.rings().unwrap_or_default() {
        let Ok(Some(active)) = reader.active(&ring) else {
            continue;
        };
        let placements = reader.placements(active.id).unwrap_or_default();
        for worker in reader.artifacts(active.id).unwrap_or_default().into_keys() {
            if let Ok(crate::adapters::transport::WorkerTransport::Local(dir)) =
                engine::recorded_transport(state_dir, &worker, placements.get(&worker))
            {
                out.insert(worker, dir.root().to_owned());
            }
        }
    }
    out
}
