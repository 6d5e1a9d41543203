//! `ringops drift`: what differs on each worker from what its ring's Active deployment
//! wrote, as diffs; `--fix` restores the deployment's files from the object store.
//! Needs no repository: the record and the objects say what belongs where.

use super::history::{Format, open_reader, store_failure};
use super::{Context, Failure, Outcome, block_on, emit, engine_failure};
use crate::adapters::link::{Link, SwitchError, WorkerLink};
use crate::adapters::objects::ObjectStore;
use crate::adapters::store::{Store, StoreReader};
use crate::adapters::worker_dir::Applied;
use crate::engine;
use crate::engine::sync::compare;
use crate::model::deployment::{Deployment, Drift, Placement, WrittenArtifact};
use crate::model::observed::{Difference, DriftedFile, WorkerSync};
use crate::pipeline::plan::unified_diff;
use crate::report::drift::{self as report, DriftReport, FileDrift, FixOutcome, RingDrift};
use clap::Args;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Arguments of `drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Only this ring (default: every ring with an Active deployment).
    #[arg(long)]
    pub ring: Option<String>,
    /// Restore the Active deployment's files on every drifted worker.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: wait for another writer instead of failing.
    #[arg(long, requires = "fix")]
    pub wait: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when nothing drifted, 2 when something did (before any fix), 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// Shows (and with `--fix` repairs) drift.
pub fn run(ctx: &Context, args: &DriftArgs) -> Outcome {
    let state_dir = ctx.state_dir();
    let _writer = match args.fix {
        true => Some(super::apply::open_writer(
            ctx,
            "ringops drift --fix",
            args.wait,
        )?),
        false => None,
    };
    let Some(reader) = open_reader(state_dir)? else {
        return finish(args, DriftReport::default());
    };
    let mut report = DriftReport {
        rings: Vec::new(),
        fixing: args.fix,
    };
    for active in actives(&reader, args.ring.as_deref())? {
        let placements = reader.placements(active.id).map_err(store_failure)?;
        let recorded = reader.artifacts(active.id).map_err(store_failure)?;
        let ring = block_on(ring_drift(ctx, &active, &recorded, &placements))??;
        report.rings.push(ring);
    }
    drop(reader);
    let drifted = report.rings.iter().any(|r| !r.workers.is_empty());
    if args.fix && drifted {
        fix(ctx, &mut report)?;
    }
    let code = finish(args, report)?;
    Ok(match (args.detailed_exitcode, drifted) {
        (true, true) => ExitCode::from(2),
        _ => code,
    })
}

fn finish(args: &DriftArgs, report: DriftReport) -> Outcome {
    emit(&match args.format {
        Format::Text => report::text(&report),
        Format::Json => report::json(&report),
    })?;
    let failed = report
        .rings
        .iter()
        .flat_map(|r| &r.workers)
        .any(|w| matches!(w.fix, Some(FixOutcome::Failed(_))));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The Active deployment of the ring asked for, or of every ring.
fn actives(reader: &StoreReader, only: Option<&str>) -> Result<Vec<Deployment>, Failure> {
    let rings = match only {
        Some(ring) => vec![ring.to_owned()],
        None => reader.rings().map_err(store_failure)?,
    };
    let mut out = Vec::new();
    for ring in rings {
        match reader.active(&ring).map_err(store_failure)? {
            Some(active) => out.push(active),
            None if only.is_some() => {
                return Err(Failure::user(format!(
                    "ring `{ring}` has no Active deployment: nothing to compare (see `ringops status`)"
                )));
            }
            None => {}
        }
    }
    Ok(out)
}

/// Reads every worker of the deployment and compares it with the record.
async fn ring_drift(
    ctx: &Context,
    active: &Deployment,
    recorded: &BTreeMap<String, Vec<WrittenArtifact>>,
    placements: &BTreeMap<String, Placement>,
) -> Result<RingDrift, Failure> {
    let state_dir = ctx.state_dir();
    let objects = ObjectStore::new(state_dir);
    let mut ring = RingDrift {
        ring: active.ring.clone(),
        deployment: active.id,
        commit: active.commit.clone(),
        workers: Vec::new(),
        in_sync: 0,
        unreachable: Vec::new(),
    };
    let mut links = BTreeMap::new();
    for worker in recorded.keys() {
        match engine::recorded_link(state_dir, worker, placements.get(worker)) {
            Ok(t) => {
                links.insert(worker.clone(), t);
            }
            Err(e) => ring
                .unreachable
                .push((worker.clone(), crate::adapters::causes(&e))),
        }
    }
    let list = links.iter().map(|(n, t)| (n.clone(), t.clone()));
    let inventories = engine::inventories(&ctx.engine(), list.collect()).await;
    for (worker, inventory) in inventories {
        let inventory = match inventory {
            Ok(i) => i,
            Err(e) => {
                ring.unreachable.push((worker, crate::adapters::causes(&e)));
                continue;
            }
        };
        let written = recorded.get(&worker).map_or(&[][..], Vec::as_slice);
        let WorkerSync::Drifted { drifted, .. } = compare(written, &inventory) else {
            ring.in_sync += 1;
            continue;
        };
        let sensitive = placements
            .get(&worker)
            .map_or(&[][..], |p| p.sensitive.as_slice());
        let seen = Seen {
            objects: &objects,
            link: &links[&worker],
            written,
            sensitive,
        };
        let files = seen.files(drifted).await;
        ring.workers.push(report::WorkerDrift {
            worker,
            files,
            fix: None,
        });
    }
    Ok(ring)
}

/// One drifted worker as read, for the diffs of its edited files.
struct Seen<'a> {
    objects: &'a ObjectStore,
    link: &'a WorkerLink,
    written: &'a [WrittenArtifact],
    sensitive: &'a [String],
}

impl Seen<'_> {
    /// The drifted files as reported, edited ones with their diff.
    async fn files(&self, drifted: Vec<DriftedFile>) -> Vec<FileDrift> {
        let mut files = Vec::new();
        for d in drifted {
            let diff = match d.how {
                Difference::Edited => {
                    let deployed = self.written.iter().find(|a| a.path == d.path);
                    let (objects, link) = (self.objects, self.link);
                    Some(file_diff(objects, link, &d.path, deployed, self.sensitive).await)
                }
                _ => None,
            };
            files.push(FileDrift {
                path: d.path,
                how: d.how,
                diff,
            });
        }
        files
    }
}

/// Deployed → on the worker, unless the artifact holds sensitive values.
async fn file_diff(
    objects: &ObjectStore,
    link: &WorkerLink,
    path: &str,
    deployed: Option<&WrittenArtifact>,
    sensitive: &[String],
) -> String {
    if sensitive.iter().any(|p| p == path) {
        return report::SENSITIVE_DIFF.to_owned();
    }
    let before = deployed
        .and_then(|a| objects.get(&a.sha256).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let after = match link.read(path).await {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => return "(not a regular file any more)".to_owned(),
        Err(e) => return format!("(cannot read it: {})", crate::adapters::causes(&e)),
    };
    if before == after {
        return "(content unchanged: only the permissions differ)".to_owned();
    }
    unified_diff(path, &before, &after, &[])
}

/// Restores every drifted worker from the object store, records the drift, and notes
/// the repair on the Active deployment.
fn fix(ctx: &Context, report: &mut DriftReport) -> Result<(), Failure> {
    let state_dir = ctx.state_dir();
    let mut store = Store::open(state_dir).map_err(|e| Failure::Internal(e.into()))?;
    let engine = ctx.engine();
    for ring in &mut report.rings {
        if ring.workers.is_empty() {
            continue;
        }
        let names: Vec<String> = ring.workers.iter().map(|w| w.worker.clone()).collect();
        let targets = engine::targets_from_record(
            &engine,
            &store,
            ring.deployment,
            Some(&names),
            &ctx.secrets.all_values(),
        )
        .map_err(engine_failure)?;
        let deployment = ring.deployment.to_string();
        let how = engine::switch::Switching::repair(&ring.ring, &deployment);
        let results = block_on(engine::switch_all(&engine, &targets, &how))?.results;
        let drift = fixed_drift(ring, &results);
        store
            .record_drift(&drift)
            .map_err(|e| Failure::Internal(e.into()))?;
        let restored = ring
            .workers
            .iter()
            .filter(|w| matches!(w.fix, Some(FixOutcome::Restored)))
            .map(|w| w.worker.as_str())
            .collect::<Vec<_>>();
        if !restored.is_empty() {
            let message = format!("drift fixed on {}", restored.join(", "));
            store
                .note(ring.deployment, &message)
                .map_err(|e| Failure::Internal(e.into()))?;
        }
    }
    Ok(())
}

/// Notes on each worker of `ring` how its repair went; the drift to record.
fn fixed_drift(
    ring: &mut RingDrift,
    results: &BTreeMap<String, Result<Applied, SwitchError>>,
) -> Vec<Drift> {
    let mut drift = Vec::new();
    for worker in &mut ring.workers {
        worker.fix = Some(match results.get(&worker.worker) {
            Some(Ok(_)) => FixOutcome::Restored,
            Some(Err(e)) => FixOutcome::Failed(crate::adapters::causes(e.error())),
            None => FixOutcome::Failed("not attempted".to_owned()),
        });
        let outcome = match worker.fix {
            Some(FixOutcome::Restored) => "restored by `ringops drift --fix`",
            _ => "restoring failed",
        };
        for f in &worker.files {
            drift.push(Drift {
                ring: ring.ring.clone(),
                worker: worker.worker.clone(),
                path: f.path.clone(),
                kind: f.how.kind(),
                summary: format!("{}; {outcome}", f.how),
            });
        }
    }
    drift
}
