//! Read queries shared by the writer and read-only connections, and the mapping from rows
//! to the model's records.

use super::{Result, StoreError};
use crate::model::deployment::{
    Deployment, DeploymentEvent, DeploymentId, DeploymentState, Drift, DriftEvent, Pin, Placement,
    Timestamp, WorkerRecord, WrittenArtifact,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// The columns [`deployment_from_row`] reads, in order.
pub(super) const DEPLOYMENT_COLUMNS: &str = "seq, ring, commit_id, tree_id, fingerprint, state, \
     actor, reason, error, rollback_of, created_at, updated_at, activated_at, finished_at, \
     expires_at, unchanged";

/// A stored text that does not parse as `T` becomes a conversion error naming the column.
fn parsed<T: FromStr>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.get(index)?;
    text.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.to_string().into())
    })
}

fn opt_parsed<T: FromStr>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match row.get_ref(index)?.as_str_or_null()? {
        None => Ok(None),
        Some(_) => parsed(row, index).map(Some),
    }
}

fn time(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get(index).map(Timestamp)
}

fn opt_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(index)?.map(Timestamp))
}

/// Builds a deployment from a row selected with [`DEPLOYMENT_COLUMNS`].
pub(super) fn deployment_from_row(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let seq: i64 = row.get(0)?;
    Ok(Deployment {
        id: DeploymentId(u64::try_from(seq).unwrap_or(0)),
        ring: row.get(1)?,
        commit: row.get(2)?,
        tree: row.get(3)?,
        fingerprint: row.get(4)?,
        state: parsed(row, 5)?,
        actor: row.get(6)?,
        reason: row.get(7)?,
        error: row.get(8)?,
        rollback_of: opt_parsed(row, 9)?,
        created_at: time(row, 10)?,
        updated_at: time(row, 11)?,
        activated_at: opt_time(row, 12)?,
        finished_at: opt_time(row, 13)?,
        expires_at: opt_time(row, 14)?,
        unchanged: row.get(15)?,
    })
}

/// Maps a query error on `path`: values this build cannot parse are [`StoreError::BadValue`].
pub(super) fn map_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e {
        rusqlite::Error::FromSqlConversionFailure(column, _, cause) => StoreError::BadValue {
            path: path.to_owned(),
            detail: format!("column {column}: {cause}"),
        },
        e => StoreError::sqlite(path, e),
    }
}

/// One deployment, or [`StoreError::NotFound`].
pub(super) fn get(conn: &Connection, path: &Path, id: DeploymentId) -> Result<Deployment> {
    find(conn, path, id)?.ok_or(StoreError::NotFound(id))
}

/// One deployment, if it exists.
pub(super) fn find(conn: &Connection, path: &Path, id: DeploymentId) -> Result<Option<Deployment>> {
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1");
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([id.to_string()], deployment_from_row)
                .optional()
        })
        .map_err(map_err(path))
}

pub(super) fn active(conn: &Connection, path: &Path, ring: &str) -> Result<Option<Deployment>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE ring = ?1 AND state = 'Active'"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([ring], deployment_from_row).optional())
        .map_err(map_err(path))
}

pub(super) fn previous_success(
    conn: &Connection,
    path: &Path,
    ring: &str,
) -> Result<Option<Deployment>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE ring = ?1 AND state != 'Active' \
         AND activated_at IS NOT NULL AND fingerprint IS NOT (SELECT fingerprint FROM \
         deployments WHERE ring = ?1 AND state = 'Active') ORDER BY seq DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([ring], deployment_from_row).optional())
        .map_err(map_err(path))
}

pub(super) fn gated(conn: &Connection, path: &Path, ring: &str) -> Result<Option<Deployment>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE ring = ?1 \
         AND activated_at IS NOT NULL AND rollback_of IS NULL ORDER BY seq DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([ring], deployment_from_row).optional())
        .map_err(map_err(path))
}

pub(super) fn history(
    conn: &Connection,
    path: &Path,
    ring: Option<&str>,
    limit: usize,
    with_pruned: bool,
) -> Result<Vec<Deployment>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
         WHERE (?1 IS NULL OR ring = ?1) AND (?2 OR expires_at IS NULL) \
         ORDER BY seq DESC LIMIT ?3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![ring, with_pruned, limit], deployment_from_row)?
                .collect()
        })
        .map_err(map_err(path))
}

pub(super) fn events(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
) -> Result<Vec<DeploymentEvent>> {
    get(conn, path, id)?;
    let sql = "SELECT at, state, message FROM deployment_events WHERE deployment = ?1 ORDER BY seq";
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([id.to_string()], |row| {
                Ok(DeploymentEvent {
                    at: time(row, 0)?,
                    state: opt_parsed::<DeploymentState>(row, 1)?,
                    message: row.get(2)?,
                })
            })?
            .collect()
        })
        .map_err(map_err(path))
}

pub(super) fn workers(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
) -> Result<Vec<WorkerRecord>> {
    get(conn, path, id)?;
    let sql = "SELECT worker, outcome, message, at FROM deployment_workers \
               WHERE deployment = ?1 ORDER BY worker";
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([id.to_string()], |row| {
                Ok(WorkerRecord {
                    worker: row.get(0)?,
                    outcome: parsed(row, 1)?,
                    message: row.get(2)?,
                    at: time(row, 3)?,
                })
            })?
            .collect()
        })
        .map_err(map_err(path))
}

pub(super) fn artifacts(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
    worker: Option<&str>,
) -> Result<BTreeMap<String, Vec<WrittenArtifact>>> {
    get(conn, path, id)?;
    let mut out = legacy_artifacts(conn, path, id, worker)?;
    let sql = "SELECT s.worker, a.body FROM deployment_sets s \
               JOIN artifact_sets a ON a.sha256 = s.artifact_set \
               WHERE s.deployment = ?1 AND (?2 IS NULL OR s.worker = ?2)";
    let mut stmt = conn.prepare_cached(sql).map_err(map_err(path))?;
    let mut rows = stmt
        .query(params![id.to_string(), worker])
        .map_err(map_err(path))?;
    while let Some(row) = rows.next().map_err(map_err(path))? {
        let read = || -> rusqlite::Result<(String, Vec<WrittenArtifact>)> {
            let body: String = row.get(1)?;
            let set = parse_set(&body).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    Type::Text,
                    "not an artifact set".into(),
                )
            })?;
            Ok((row.get(0)?, set))
        };
        let (worker, set) = read().map_err(map_err(path))?;
        out.insert(worker, set);
    }
    Ok(out)
}

/// One worker's artifact set as stored: its sha256 and body, a JSON list of
/// `[path, sha256, mode]` sorted by path.
pub(super) fn artifact_set(artifacts: &[WrittenArtifact]) -> (String, String) {
    let mut rows: Vec<(&str, &str, u32)> = artifacts
        .iter()
        .map(|a| (a.path.as_str(), a.sha256.as_str(), a.mode))
        .collect();
    rows.sort_unstable();
    let body = serde_json::to_string(&rows).unwrap_or_default();
    (crate::model::desired::sha256_hex(body.as_bytes()), body)
}

fn parse_set(body: &str) -> Option<Vec<WrittenArtifact>> {
    let rows: Vec<(String, String, u32)> = serde_json::from_str(body).ok()?;
    let set = rows
        .into_iter()
        .map(|(path, sha256, mode)| WrittenArtifact { path, sha256, mode })
        .collect();
    Some(set)
}

/// Artifacts recorded one row each, by states of schema version 1.
fn legacy_artifacts(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
    worker: Option<&str>,
) -> Result<BTreeMap<String, Vec<WrittenArtifact>>> {
    let sql = "SELECT worker, path, sha256, mode FROM deployment_artifacts \
               WHERE deployment = ?1 AND (?2 IS NULL OR worker = ?2) ORDER BY worker, path";
    let mut out: BTreeMap<String, Vec<WrittenArtifact>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(sql).map_err(map_err(path))?;
    let mut rows = stmt
        .query(params![id.to_string(), worker])
        .map_err(map_err(path))?;
    while let Some(row) = rows.next().map_err(map_err(path))? {
        let read = || -> rusqlite::Result<(String, WrittenArtifact)> {
            let mode: i64 = row.get(3)?;
            let artifact = WrittenArtifact {
                path: row.get(1)?,
                sha256: row.get(2)?,
                mode: u32::try_from(mode).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(3, Type::Integer, e.into())
                })?,
            };
            Ok((row.get(0)?, artifact))
        };
        let (worker, artifact) = read().map_err(map_err(path))?;
        out.entry(worker).or_default().push(artifact);
    }
    Ok(out)
}

/// Where a deployment put each worker's files, by worker.
pub(super) fn placements(
    conn: &Connection,
    path: &Path,
    id: DeploymentId,
) -> Result<BTreeMap<String, Placement>> {
    get(conn, path, id)?;
    let sql = "SELECT worker, details FROM deployment_placements WHERE deployment = ?1";
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([id.to_string()], |row| {
                let details: String = row.get(1)?;
                let placement = serde_json::from_str(&details).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, Type::Text, e.into())
                })?;
                Ok((row.get(0)?, placement))
            })?
            .collect()
        })
        .map_err(map_err(path))
}

pub(super) fn drift_events(
    conn: &Connection,
    path: &Path,
    ring: Option<&str>,
    limit: usize,
) -> Result<Vec<DriftEvent>> {
    let sql = "SELECT at, ring, worker, path, kind, summary FROM drift_events \
               WHERE (?1 IS NULL OR ring = ?1) AND expires_at IS NULL \
               ORDER BY seq DESC LIMIT ?2";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params![ring, limit], |row| {
                Ok(DriftEvent {
                    at: time(row, 0)?,
                    drift: Drift {
                        ring: row.get(1)?,
                        worker: row.get(2)?,
                        path: row.get(3)?,
                        kind: parsed(row, 4)?,
                        summary: row.get(5)?,
                    },
                })
            })?
            .collect()
        })
        .map_err(map_err(path))
}

pub(super) fn rings(conn: &Connection, path: &Path) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT DISTINCT ring FROM deployments ORDER BY ring")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
        .map_err(map_err(path))
}

pub(super) fn pin(conn: &Connection, path: &Path, ring: &str) -> Result<Option<Pin>> {
    conn.prepare_cached(
        "SELECT ring, commit_id, deployment, reason, since FROM ring_pins WHERE ring = ?1",
    )
    .and_then(|mut s| {
        s.query_row([ring], |row| {
            Ok(Pin {
                ring: row.get(0)?,
                commit: row.get(1)?,
                deployment: parsed(row, 2)?,
                reason: row.get(3)?,
                since: time(row, 4)?,
            })
        })
        .optional()
    })
    .map_err(map_err(path))
}

pub(super) fn latest_of_commit(
    conn: &Connection,
    path: &Path,
    ring: &str,
    commit: &str,
) -> Result<Option<Deployment>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE ring = ?1 AND commit_id = ?2 \
         ORDER BY seq DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([ring, commit], deployment_from_row).optional())
        .map_err(map_err(path))
}
