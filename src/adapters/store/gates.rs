//! What gates a deployment: approvals (who, when, which fingerprint), what a queued or
//! paused rollout waits for, and rings paused by a person.

use super::read::map_err;
use super::write::add_event;
use super::{Result, Store, StoreReader};
use crate::model::deployment::{DeploymentId, Timestamp, Waiting};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

/// An approver's verdict on a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Go ahead.
    Approved,
    /// Do not.
    Rejected,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

/// One recorded verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRecord {
    /// The approver's name, from their token.
    pub approver: String,
    /// Approved or rejected.
    pub verdict: Verdict,
    /// The deployment fingerprint the approver saw.
    pub fingerprint: String,
    /// Why (for a rejection).
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// What an unfinished rollout waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RolloutState {
    /// What it waits for; `None` while it runs.
    pub waiting: Option<Waiting>,
    /// Promoted with `--emergency`: windows and gates bypassed.
    pub emergency: bool,
    /// Batches already switched and healthy.
    pub batches_done: u32,
}

impl RolloutState {
    /// A rollout running (waiting for nothing) with `done` batches behind it.
    pub fn running(emergency: bool, done: usize) -> Self {
        RolloutState {
            waiting: None,
            emergency,
            batches_done: u32::try_from(done).unwrap_or(u32::MAX),
        }
    }

    /// The same rollout waiting for `waiting`.
    pub fn waiting_for(&self, waiting: Waiting) -> Self {
        RolloutState {
            waiting: Some(waiting),
            ..self.clone()
        }
    }
}

/// A ring paused by a person: no batch starts until it is resumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingPause {
    /// Why.
    pub reason: String,
    /// Since when.
    pub since: Timestamp,
}

/// The approvals among `verdicts`, as the gates count them.
pub fn approvals(verdicts: &[ApprovalRecord]) -> Vec<crate::pipeline::rollout::Approval> {
    verdicts
        .iter()
        .filter(|v| v.verdict == Verdict::Approved)
        .map(|v| crate::pipeline::rollout::Approval {
            approver: v.approver.clone(),
            fingerprint: v.fingerprint.clone(),
        })
        .collect()
}

impl Store {
    /// Records `approver`'s verdict on the deployment as of `fingerprint`, with an event.
    pub fn record_verdict(
        &mut self,
        id: DeploymentId,
        approver: &str,
        verdict: Verdict,
        fingerprint: &str,
        reason: &str,
    ) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO approvals (deployment, approver, verdict, fingerprint, reason, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.to_string(),
                approver,
                verdict.as_str(),
                fingerprint,
                reason,
                now.0
            ],
        )
        .map_err(map_err(&path))?;
        let message = match verdict {
            Verdict::Approved => format!("approved by {approver}"),
            Verdict::Rejected => format!("rejected by {approver}: {reason}"),
        };
        add_event(&tx, &path, id, now, None, &message)?;
        tx.commit().map_err(map_err(&path))
    }

    /// Sets what the deployment's rollout waits for.
    pub fn set_rollout(&mut self, id: DeploymentId, state: &RolloutState) -> Result<()> {
        let path = self.path.clone();
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO rollouts (deployment, waiting, emergency, batches_done) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (deployment) DO UPDATE SET \
             waiting = excluded.waiting, emergency = excluded.emergency, \
             batches_done = excluded.batches_done",
            params![
                id.to_string(),
                state.waiting.map_or("", Waiting::as_str),
                i64::from(state.emergency),
                i64::from(state.batches_done)
            ],
        )
        .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))
    }

    /// Pauses `ring`: no new batch of any of its rollouts starts.
    pub fn pause_ring(&mut self, ring: &str, reason: &str) -> Result<()> {
        let (now, path) = (self.clock.now(), self.path.clone());
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO ring_pauses (ring, reason, since) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ring) DO UPDATE SET reason = excluded.reason, since = excluded.since",
            params![ring, reason, now.0],
        )
        .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))
    }

    /// Lifts a pause; whether there was one.
    pub fn unpause_ring(&mut self, ring: &str) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.begin()?;
        let removed = tx
            .execute("DELETE FROM ring_pauses WHERE ring = ?1", [ring])
            .map_err(map_err(&path))?;
        tx.commit().map_err(map_err(&path))?;
        Ok(removed > 0)
    }
}

/// The gate queries, the same on the writer and on a reader.
macro_rules! gate_reads {
    ($ty:ty) => {
        impl $ty {
            /// Every verdict on the deployment, oldest first.
            pub fn verdicts(&self, id: DeploymentId) -> Result<Vec<ApprovalRecord>> {
                verdicts(&self.conn, &self.path, id)
            }

            /// What the deployment's rollout waits for, if it was gated.
            pub fn rollout(&self, id: DeploymentId) -> Result<Option<RolloutState>> {
                rollout(&self.conn, &self.path, id)
            }

            /// The ring's pause, if it is paused.
            pub fn ring_pause(&self, ring: &str) -> Result<Option<RingPause>> {
                ring_pause(&self.conn, &self.path, ring)
            }
        }
    };
}

gate_reads!(Store);
gate_reads!(StoreReader);

fn verdicts(conn: &Connection, path: &Path, id: DeploymentId) -> Result<Vec<ApprovalRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT approver, verdict, fingerprint, reason, at FROM approvals \
             WHERE deployment = ?1 ORDER BY seq",
        )
        .map_err(map_err(path))?;
    let rows = stmt
        .query_map([id.to_string()], |row| {
            let verdict: String = row.get(1)?;
            Ok(ApprovalRecord {
                approver: row.get(0)?,
                verdict: if verdict == "approved" {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                },
                fingerprint: row.get(2)?,
                reason: row.get(3)?,
                at: Timestamp(row.get(4)?),
            })
        })
        .map_err(map_err(path))?;
    rows.collect::<rusqlite::Result<_>>().map_err(map_err(path))
}

fn rollout(conn: &Connection, path: &Path, id: DeploymentId) -> Result<Option<RolloutState>> {
    conn.prepare_cached(
        "SELECT waiting, emergency, batches_done FROM rollouts WHERE deployment = ?1",
    )
    .and_then(|mut s| {
        s.query_row([id.to_string()], |row| {
            Ok(RolloutState {
                waiting: Waiting::from_stored(&row.get::<_, String>(0)?),
                emergency: row.get::<_, i64>(1)? != 0,
                batches_done: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            })
        })
        .optional()
    })
    .map_err(map_err(path))
}

fn ring_pause(conn: &Connection, path: &Path, ring: &str) -> Result<Option<RingPause>> {
    conn.prepare_cached("SELECT reason, since FROM ring_pauses WHERE ring = ?1")
        .and_then(|mut s| {
            s.query_row([ring], |row| {
                Ok(RingPause {
                    reason: row.get(0)?,
                    since: Timestamp(row.get(1)?),
                })
            })
            .optional()
        })
        .map_err(map_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::deployment::NewDeployment;

    fn deployment(store: &mut Store) -> DeploymentId {
        let new = NewDeployment {
            ring: "production".into(),
            commit: "c".repeat(40),
            tree: "t".repeat(40),
            fingerprint: "f1".into(),
            actor: "alice".into(),
            reason: "promote".into(),
            rollback_of: None,
        };
        store.create_deployment(&new).unwrap().id
    }

    #[test]
    fn verdicts_rollouts_and_pauses_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let id = deployment(&mut store);
        store
            .record_verdict(id, "alice", Verdict::Approved, "f1", "")
            .unwrap();
        store
            .record_verdict(id, "bob", Verdict::Rejected, "f1", "not on a Friday")
            .unwrap();
        let reader = StoreReader::open(dir.path()).unwrap();
        let verdicts = reader.verdicts(id).unwrap();
        assert_eq!(verdicts.len(), 2);
        assert_eq!(
            (verdicts[1].approver.as_str(), verdicts[1].verdict),
            ("bob", Verdict::Rejected)
        );
        let events = reader.events(id).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.message == "rejected by bob: not on a Friday")
        );

        assert_eq!(reader.rollout(id).unwrap(), None);
        let waiting = RolloutState::running(false, 0).waiting_for(Waiting::Approval);
        store.set_rollout(id, &waiting).unwrap();
        assert_eq!(reader.rollout(id).unwrap(), Some(waiting));
        let running = RolloutState::running(false, 2);
        store.set_rollout(id, &running).unwrap();
        assert_eq!(reader.rollout(id).unwrap(), Some(running));

        assert!(reader.ring_pause("production").unwrap().is_none());
        store.pause_ring("production", "incident 42").unwrap();
        assert_eq!(
            reader.ring_pause("production").unwrap().map(|p| p.reason),
            Some("incident 42".into())
        );
        assert!(store.unpause_ring("production").unwrap());
        assert!(!store.unpause_ring("production").unwrap());
    }
}
