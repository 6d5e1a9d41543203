//! The writer's operations. Each runs in one `BEGIN IMMEDIATE` transaction, so a change and
//! its event are recorded together or not at all.

use super::read::{self, map_err};
use super::{Result, Store, StoreError};
use crate::model::deployment::{
    Deployment, DeploymentId, DeploymentState, Drift, NewDeployment, Pin, Placement, Timestamp,
    WorkerOutcome, WrittenArtifact,
};
use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// The reason given to deployments a crashed process left in progress.
pub const INTERRUPTED: &str = "interrupted: the process writing it stopped";

/// What [`Store::activate`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// The deployment, now Active.
    pub deployment: Deployment,
    /// The ring's previous Active deployment, now Superseded.
    pub superseded: Option<DeploymentId>,
}

/// One worker's outcome for [`Store::record_workers`].
#[derive(Clone, Copy, Debug)]
pub struct WorkerEntry<'a> {
    /// The worker.
    pub worker: &'a str,
    /// How it fared.
    pub outcome: WorkerOutcome,
    /// Details.
    pub message: &'a str,
    /// Where it is and its hooks.
    pub placement: &'a Placement,
    /// The complete set of files it holds now, when it holds the deployment's.
    pub artifacts: Option<&'a [WrittenArtifact]>,
}

/// What [`Store::prune`] hid from history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Deployments given an `expires_at`, oldest first.
    pub deployments: Vec<DeploymentId>,
    /// Number of drift events given an `expires_at`.
    pub drift_events: usize,
}

impl Store {
    /// Records a new deployment, Queued.
    pub fn create_deployment(&mut self, new: &NewDeployment) -> Result<Deployment> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        if let Some(of) = new.rollback_of {
            read::get(&tx, &path, of)?;
        }
        let next: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments",
                [],
                |r| r.get(0),
            )
            .map_err(map_err(&path))?;
        let id = DeploymentId(u64::try_from(next).unwrap_or(0));
        tx.execute(
            "INSERT INTO deployments (seq, id, ring, commit_id, tree_id, fingerprint, state, \
             actor, reason, rollback_of, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Queued', ?7, ?8, ?9, ?10, ?10)",
            params![
                next,
                id.to_string(),
                new.ring,
                new.commit,
                new.tree,
                new.fingerprint,
                new.actor,
                new.reason,
                new.rollback_of.map(|d| d.to_string()),
                now.0,
            ],
        )
        .map_err(map_err(&path))?;
        let message = format!("queued by {}: {}", new.actor, new.reason);
        add_event(&tx, &path, id, now, Some(DeploymentState::Queued), &message)?;
        let deployment = read::get(&tx, &path, id)?;
        tx.commit().map_err(map_err(&path))?;
        Ok(deployment)
    }

    /// Moves a deployment to `to` if the lifecycle allows it, recording `message` as the
    /// event (and as the error, for Failed). Going to Active supersedes the ring's current
    /// Active deployment in the same transaction, as [`Store::activate`] does.
    pub fn transition(
        &mut self,
        id: DeploymentId,
        to: DeploymentState,
        message: &str,
    ) -> Result<Deployment> {
        Ok(self.change(id, to, message)?.deployment)
    }

    /// Makes a Validating deployment the ring's Active one and the previous Active
    /// Superseded, atomically: no reader ever sees two Active deployments or none.
    pub fn activate(&mut self, id: DeploymentId, message: &str) -> Result<Activation> {
        self.change(id, DeploymentState::Active, message)
    }

    /// Marks a Queued deployment as changing nothing on its ring's workers (decided when
    /// it was taken in: its ring's Active deployment had its fingerprint and the workers
    /// held it), with `message` as a note. Returns it, marked.
    pub fn mark_unchanged(&mut self, id: DeploymentId, message: &str) -> Result<Deployment> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        tx.execute(
            "UPDATE deployments SET unchanged = 1 WHERE id = ?1 AND state = 'Queued'",
            params![id.to_string()],
        )
        .map_err(map_err(&path))?;
        add_event(&tx, &path, id, now, None, message)?;
        let deployment = read::get(&tx, &path, id)?;
        tx.commit().map_err(map_err(&path))?;
        Ok(deployment)
    }

    fn change(
        &mut self,
        id: DeploymentId,
        to: DeploymentState,
        message: &str,
    ) -> Result<Activation> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        let activation = change_state(&tx, &path, now, id, to, message)?;
        tx.commit().map_err(map_err(&path))?;
        Ok(activation)
    }

    /// Adds a free-form event to a deployment's record.
    pub fn note(&mut self, id: DeploymentId, message: &str) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        read::get(&tx, &path, id)?;
        add_event(&tx, &path, id, now, None, message)?;
        tx.commit().map_err(map_err(&path))
    }

    /// Records (or replaces) how one worker fared in a deployment.
    pub fn record_worker(
        &mut self,
        id: DeploymentId,
        worker: &str,
        outcome: WorkerOutcome,
        message: &str,
    ) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        read::get(&tx, &path, id)?;
        tx.execute(
            "INSERT INTO deployment_workers (deployment, worker, outcome, message, at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (deployment, worker) DO UPDATE SET \
             outcome = excluded.outcome, message = excluded.message, at = excluded.at",
            params![id.to_string(), worker, outcome.as_str(), message, now.0],
        )
        .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))
    }

    /// Records the complete set of managed artifacts a deployment leaves on one worker,
    /// replacing what was recorded for that worker before. The set is stored once by its
    /// sha256 and shared by every deployment leaving the same files. Put the bytes in the
    /// object store first: a record must never name an object that is not there.
    pub fn record_artifacts(
        &mut self,
        id: DeploymentId,
        worker: &str,
        artifacts: &[WrittenArtifact],
    ) -> Result<()> {
        let path = self.path.clone();
        let (sha, body) = read::artifact_set(artifacts);
        let tx = self.begin()?;
        read::get(&tx, &path, id)?;
        let deployment = id.to_string();
        tx.execute(
            "DELETE FROM deployment_artifacts WHERE deployment = ?1 AND worker = ?2",
            params![deployment, worker],
        )
        .map_err(map_err(&path))?;
        tx.execute(
            "INSERT OR IGNORE INTO artifact_sets (sha256, body) VALUES (?1, ?2)",
            params![sha, body],
        )
        .map_err(map_err(&path))?;
        tx.execute(
            "INSERT INTO deployment_sets (deployment, worker, artifact_set) VALUES (?1, ?2, ?3) \
             ON CONFLICT (deployment, worker) DO UPDATE SET artifact_set = excluded.artifact_set",
            params![deployment, worker, sha],
        )
        .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))
    }

    /// Records how every worker fared, where it is and (for workers that hold the
    /// deployment's files) its artifact set, in one transaction.
    pub fn record_workers(&mut self, id: DeploymentId, workers: &[WorkerEntry<'_>]) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        read::get(&tx, &path, id)?;
        let deployment = id.to_string();
        for w in workers {
            let details = serde_json::to_string(w.placement).unwrap_or_default();
            tx.prepare_cached(
                "INSERT INTO deployment_workers (deployment, worker, outcome, message, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (deployment, worker) DO UPDATE SET \
                 outcome = excluded.outcome, message = excluded.message, at = excluded.at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    deployment,
                    w.worker,
                    w.outcome.as_str(),
                    w.message,
                    now.0
                ])
            })
            .map_err(map_err(&path))?;
            tx.prepare_cached(
                "INSERT INTO deployment_placements (deployment, worker, location, details) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (deployment, worker) DO UPDATE SET \
                 location = excluded.location, details = excluded.details",
            )
            .and_then(|mut s| {
                s.execute(params![deployment, w.worker, w.placement.location, details])
            })
            .map_err(map_err(&path))?;
            if let Some(artifacts) = w.artifacts {
                let (sha, body) = read::artifact_set(artifacts);
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO artifact_sets (sha256, body) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![sha, body]))
                .map_err(map_err(&path))?;
                tx.prepare_cached(
                    "INSERT INTO deployment_sets (deployment, worker, artifact_set) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (deployment, worker) DO UPDATE SET artifact_set = excluded.artifact_set",
                )
                .and_then(|mut s| s.execute(params![deployment, w.worker, sha]))
                .map_err(map_err(&path))?;
            }
        }
        tx.commit().map_err(map_err(&path))
    }

    /// Records a deployment of a commit that did not compile: Queued, Building, then
    /// Failed with `error`, touching no worker.
    pub fn record_failed_build(&mut self, new: &NewDeployment, error: &str) -> Result<Deployment> {
        let d = self.create_deployment(new)?;
        self.transition(d.id, DeploymentState::Building, "compiling the commit")?;
        self.transition(d.id, DeploymentState::Failed, error)
    }

    /// Pins `ring` at `commit` (replacing any pin): see [`Pin`].
    pub fn set_pin(
        &mut self,
        ring: &str,
        commit: &str,
        by: DeploymentId,
        reason: &str,
    ) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO ring_pins (ring, commit_id, deployment, reason, since) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (ring) DO UPDATE SET \
             commit_id = excluded.commit_id, deployment = excluded.deployment, \
             reason = excluded.reason, since = excluded.since",
            params![ring, commit, by.to_string(), reason, now.0],
        )
        .map_err(map_err(&path))?;
        let message =
            format!("ring {ring} pinned: commit {commit} will not be deployed again by the daemon");
        add_event(&tx, &path, by, now, None, &message)?;
        tx.commit().map_err(map_err(&path))
    }

    /// Lifts a ring's pin; returns the pin there was.
    pub fn unpin(&mut self, ring: &str) -> Result<Option<Pin>> {
        let path = self.path.clone();
        let tx = self.begin()?;
        let pin = read::pin(&tx, &path, ring)?;
        tx.execute("DELETE FROM ring_pins WHERE ring = ?1", params![ring])
            .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))?;
        Ok(pin)
    }

    /// Records where a deployment put one worker's files and the hooks it ran.
    pub fn record_placement(
        &mut self,
        id: DeploymentId,
        worker: &str,
        placement: &Placement,
    ) -> Result<()> {
        let path = self.path.clone();
        let details = serde_json::to_string(placement).unwrap_or_default();
        let tx = self.begin()?;
        read::get(&tx, &path, id)?;
        tx.execute(
            "INSERT INTO deployment_placements (deployment, worker, location, details) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (deployment, worker) DO UPDATE SET \
             location = excluded.location, details = excluded.details",
            params![id.to_string(), worker, placement.location, details],
        )
        .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))
    }

    /// Records drift seen now.
    pub fn record_drift(&mut self, drift: &[Drift]) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO drift_events (at, ring, worker, path, kind, summary) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(map_err(&path))?;
            for d in drift {
                insert
                    .execute(params![
                        now.0,
                        d.ring,
                        d.worker,
                        d.path,
                        d.kind.as_str(),
                        d.summary
                    ])
                    .map_err(map_err(&path))?;
            }
        }
        tx.commit().map_err(map_err(&path))
    }

    /// Fails every deployment a stopped process left in progress (Queued, Building,
    /// Deploying, Validating, RollingBack) with the reason [`INTERRUPTED`], and returns
    /// them. Call it while holding the writer lock, before starting new work: then nobody
    /// else is writing.
    ///
    /// A deployment waiting on purpose (a promotion queued for approvals or a window, a
    /// rollout paused after a canary or by its ring) has a waiting reason and is left
    /// alone; a Queued one without is what a process stopped right after creating it.
    pub fn mark_interrupted(&mut self) -> Result<Vec<Deployment>> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        let ids: Vec<DeploymentId> = tx
            .prepare(
                "SELECT seq FROM deployments WHERE state IN \
                 ('Queued', 'Building', 'Deploying', 'Validating', 'RollingBack') \
                 AND id NOT IN (SELECT deployment FROM rollouts WHERE waiting != '') \
                 ORDER BY seq",
            )
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, i64>(0))?
                    .map(|seq| seq.map(|s| DeploymentId(u64::try_from(s).unwrap_or(0))))
                    .collect()
            })
            .map_err(map_err(&path))?;
        let mut failed = Vec::with_capacity(ids.len());
        for id in ids {
            let change = change_state(&tx, &path, now, id, DeploymentState::Failed, INTERRUPTED)?;
            failed.push(change.deployment);
        }
        tx.commit().map_err(map_err(&path))?;
        Ok(failed)
    }

    /// Hides records created more than `older_than` ago from history by setting their
    /// `expires_at` (they stay for audit). Only finished deployments (Failed, RolledBack,
    /// Superseded) go; never a ring's Active one, nor the newest that was ever Active
    /// besides it, which is what a rollback returns to. Drift events go by age alone.
    pub fn prune(&mut self, older_than: Duration) -> Result<PruneReport> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let cutoff = now.minus(older_than);
        let tx = self.begin()?;
        let mut deployments: Vec<DeploymentId> = tx
            .prepare(
                "UPDATE deployments SET expires_at = ?1 \
                 WHERE expires_at IS NULL AND created_at < ?2 \
                 AND state IN ('Failed', 'RolledBack', 'Superseded') \
                 AND seq NOT IN (SELECT MAX(seq) FROM deployments \
                     WHERE activated_at IS NOT NULL AND state != 'Active' GROUP BY ring) \
                 RETURNING seq",
            )
            .and_then(|mut s| {
                s.query_map(params![now.0, cutoff.0], |r| r.get::<_, i64>(0))?
                    .map(|seq| seq.map(|s| DeploymentId(u64::try_from(s).unwrap_or(0))))
                    .collect()
            })
            .map_err(map_err(&path))?;
        deployments.sort();
        let drift_events = tx
            .execute(
                "UPDATE drift_events SET expires_at = ?1 WHERE expires_at IS NULL AND at < ?2",
                params![now.0, cutoff.0],
            )
            .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))?;
        Ok(PruneReport {
            deployments,
            drift_events,
        })
    }

    pub(super) fn begin(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = &self.path;
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::sqlite(path, e))
    }
}

/// Checks and applies one state change inside the caller's transaction.
fn change_state(
    conn: &Connection,
    path: &Path,
    now: Timestamp,
    id: DeploymentId,
    to: DeploymentState,
    message: &str,
) -> Result<Activation> {
    let current = read::get(conn, path, id)?;
    if !current.state.can_become(to) {
        return Err(StoreError::IllegalTransition {
            id,
            from: current.state,
            to,
        });
    }
    let mut superseded = None;
    if to == DeploymentState::Active
        && let Some(old) = read::active(conn, path, &current.ring)?
    {
        let why = format!("superseded by {id}");
        set_state(conn, path, now, old.id, DeploymentState::Superseded, &why)?;
        superseded = Some(old.id);
    }
    set_state(conn, path, now, id, to, message)?;
    Ok(Activation {
        deployment: read::get(conn, path, id)?,
        superseded,
    })
}

/// Writes a state, its timestamps and its event; the caller has checked the lifecycle.
fn set_state(
    conn: &Connection,
    path: &Path,
    now: Timestamp,
    id: DeploymentId,
    to: DeploymentState,
    message: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE deployments SET state = ?2, updated_at = ?3, \
         activated_at = CASE WHEN ?2 = 'Active' THEN ?3 ELSE activated_at END, \
         finished_at = CASE WHEN ?2 IN ('Active', 'Failed', 'RolledBack') \
             THEN COALESCE(finished_at, ?3) ELSE finished_at END, \
         error = CASE WHEN ?2 = 'Failed' THEN ?4 ELSE error END \
         WHERE id = ?1",
        params![id.to_string(), to.as_str(), now.0, message],
    )
    .map_err(map_err(path))?;
    add_event(conn, path, id, now, Some(to), message)
}

pub(super) fn add_event(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
    at: Timestamp,
    state: Option<DeploymentState>,
    message: &str,
) -> Result<()> {
    let kind = if state.is_some() { "state" } else { "note" };
    conn.prepare_cached(
        "INSERT INTO deployment_events (deployment, at, kind, state, message) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.to_string(),
            at.0,
            kind,
            state.map(DeploymentState::as_str),
            message
        ])
    })
    .map_err(map_err(path))?;
    Ok(())
}
