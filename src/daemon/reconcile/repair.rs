//! The drift pass: the workers of every ring's Active deployment (and of a rollout
//! between batches) compared with what was recorded, and what drifted put back (rings
//! with `drift: report` only record it, once).

use super::{PassError, PassReport, Reconciler, lock};
use crate::adapters::secrets::HostSecrets;
use crate::adapters::store::Store;
use crate::engine::switch::Switching;
use crate::engine::{self, sync::compare};
use crate::model::deployment::{Deployment, Drift};
use crate::model::manifest::DriftMode;
use crate::model::observed::{Difference, WorkerSync};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

impl Reconciler {
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
        let ctx = self.engine(state_dir);
        let owners = worker_owners(&store)?;
        for ring in store.rings()? {
            let mode = self
                .policies
                .get(&ring)
                .map(|p| p.drift)
                .unwrap_or_default();
            let repair = Repair {
                ring: &ring,
                mode,
                ctx: &ctx,
                secrets,
            };
            for (deployment, workers) in split_ring(&store, &ring, &owners, only)? {
                self.repair_one(&mut store, &repair, &deployment, &workers, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }
}

/// The ring's workers to check, by the deployment they must match
/// ([`Store::following`]). A worker another ring owns now, or not in `only`, is left out.
fn split_ring(
    store: &Store,
    ring: &str,
    owners: &BTreeMap<String, String>,
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<(Deployment, BTreeSet<String>)>, PassError> {
    let following = store.following(ring)?;
    let keep = |worker: &String| {
        let elsewhere = owners.get(worker).is_some_and(|owner| owner != ring);
        !elsewhere && only.is_none_or(|o| o.contains(worker))
    };
    Ok([following.active, following.rollout]
        .into_iter()
        .flatten()
        .map(|(d, workers)| (d, workers.into_keys().filter(keep).collect()))
        .filter(|(_, workers): &(Deployment, BTreeSet<String>)| !workers.is_empty())
        .collect())
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
    ctx: &'a engine::Context,
    secrets: &'a HostSecrets,
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
            drifted_workers(repair.ctx, store, deployment, Some(workers)).await?;
        for worker in workers {
            let down = unreachable.contains(worker);
            report.reached.push((ring.to_owned(), worker.clone(), down));
        }
        if drifted.is_empty() {
            return Ok(());
        }
        let revert = repair.mode == DriftMode::Revert;
        let fixed = match revert {
            true => revert_drift(store, repair, deployment, &drifted).await?,
            false => BTreeSet::new(),
        };
        let records = self.drift_records(repair, drifted, &fixed, report);
        store.record_drift(&records)?;
        if !fixed.is_empty() {
            let names: Vec<&str> = fixed.iter().map(String::as_str).collect();
            let message = format!("drift reverted by the daemon on {}", names.join(", "));
            store.note(deployment.id, &message)?;
        }
        Ok(())
    }

    /// The drift to record of `drifted` (for `drift: report` rings, only what was not
    /// recorded before), also added to the pass's report.
    fn drift_records(
        &mut self,
        repair: &Repair<'_>,
        drifted: DriftedFiles,
        fixed: &BTreeSet<String>,
        report: &mut PassReport,
    ) -> Vec<Drift> {
        let revert = repair.mode == DriftMode::Revert;
        let mut records = Vec::new();
        for (worker, files) in drifted {
            let reverted = fixed.contains(&worker);
            for (path, how) in files {
                let key = (worker.clone(), path.clone(), how.to_string());
                if !revert && !self.reported.insert(key) {
                    continue;
                }
                let drift = Drift {
                    ring: repair.ring.to_owned(),
                    worker: worker.clone(),
                    path,
                    kind: how.kind(),
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
        records
    }
}

/// Puts the recorded files back on the drifted workers; those it reverted.
async fn revert_drift(
    store: &Store,
    repair: &Repair<'_>,
    deployment: &Deployment,
    drifted: &DriftedFiles,
) -> Result<BTreeSet<String>, PassError> {
    let names: Vec<String> = drifted.keys().cloned().collect();
    let redact = repair.secrets.all_values();
    let targets =
        engine::targets_from_record(repair.ctx, store, deployment.id, Some(&names), &redact)?
            .into_iter()
            .map(|t| engine::targets::with_drift(t, repair.mode))
            .collect::<Vec<_>>();
    let how = Switching::repair(repair.ring, &deployment.id.to_string());
    let switched = engine::switch_all(repair.ctx, &targets, &how).await;
    let mut fixed = BTreeSet::new();
    for (name, result) in switched.results {
        match result {
            Ok(_) => {
                fixed.insert(name);
            }
            Err(e) => tracing::error!(
                ring = repair.ring, worker = %name, error = %crate::adapters::causes(e.error()),
                "cannot revert drift"
            ),
        }
    }
    Ok(fixed)
}

/// Workers of the deployment whose files differ from the record (path and how), and
/// the workers that could not be read.
async fn drifted_workers(
    ctx: &engine::Context,
    store: &Store,
    active: &Deployment,
    only: Option<&BTreeSet<String>>,
) -> Result<(DriftedFiles, BTreeSet<String>), PassError> {
    let recorded = store.artifacts(active.id)?;
    let placements = store.placements(active.id)?;
    let mut links = Vec::new();
    for worker in recorded.keys() {
        if only.is_some_and(|o| !o.contains(worker)) {
            continue;
        }
        let t = engine::recorded_link(&ctx.state_dir, worker, placements.get(worker))?;
        links.push((worker.clone(), t));
    }
    let mut out = BTreeMap::new();
    let mut unreachable = BTreeSet::new();
    for (worker, inventory) in engine::inventories(ctx, links).await {
        let inventory = match inventory {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(worker, error = %crate::adapters::causes(&e), "cannot read worker");
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
type DriftedFiles = BTreeMap<String, Vec<(String, Difference)>>;

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
            if let Ok(crate::adapters::link::WorkerLink::Local(dir)) =
                engine::recorded_link(state_dir, &worker, placements.get(&worker))
            {
                out.insert(worker, dir.root().to_owned());
            }
        }
    }
    out
}
