//! The read-only routes over the deployment record (`/api/v1/*`) and `/metrics`, which
//! refreshes the deployments gauge from the state at each scrape.
//!
//! Each request opens a [`StoreReader`] on the blocking pool (SQLite blocks; the reader
//! never waits for the writer). A state that does not exist yet reads as empty: no rings,
//! no deployments, no drift, zero deployments in the metrics. Documents reuse
//! [`crate::report::history`]: `/api/v1/deployments` is `history --format json` and
//! `/api/v1/deployments/{id}` is `show --format json`.

use super::{AppState, document, error};
use crate::adapters::store::{StoreError, StoreReader};
use crate::model::deployment::{Deployment, DeploymentId, DeploymentState, DriftEvent, Pin};
use crate::report::history::{self as report, DeploymentRecord, FORMAT_VERSION};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Items listed when `limit` is not given (as `ringops history`).
const DEFAULT_LIMIT: usize = 50;
/// Most items one request lists.
const MAX_LIMIT: usize = 1000;

/// Content type of `/metrics`.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/api/v1` routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rings", get(rings))
        .route("/api/v1/deployments", get(deployments))
        .route("/api/v1/deployments/{id}", get(deployment))
        .route("/api/v1/drift", get(drift))
}

/// Why a read route failed, as a response.
enum ApiError {
    /// 400 with the message.
    BadRequest(String),
    /// 404 with the message.
    NotFound(String),
    /// A state or task failure: logged, answered generically.
    Failed(String),
    /// The state stayed locked: 503, try again.
    Busy,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::NotFound(e.to_string()),
            e if e.is_transient() => Self::Busy,
            e => Self::Failed(crate::adapters::causes(&e)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => error(StatusCode::BAD_REQUEST, &message),
            Self::NotFound(message) => error(StatusCode::NOT_FOUND, &message),
            Self::Busy => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the state is busy; try again",
            ),
            Self::Failed(cause) => {
                tracing::error!(%cause, "cannot read the state");
                error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the state")
            }
        }
    }
}

/// Runs `read` on the blocking pool with a reader of the state, or `None` when there is
/// no state yet.
async fn read_state<T, F>(state: &AppState, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Option<&StoreReader>) -> Result<T, StoreError> + Send + 'static,
{
    let dir = state.service.state_dir.clone();
    let task = tokio::task::spawn_blocking(move || match StoreReader::open(&dir) {
        Ok(reader) => read(Some(&reader)),
        Err(StoreError::NotReady { .. }) => read(None),
        Err(e) => Err(e),
    });
    match task.await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::Failed(format!("the read task failed: {e}"))),
    }
}

/// A JSON document already rendered by `report`.
fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `?ring=&limit=` of the listing routes (an empty `ring` means every ring).
#[derive(Debug, Deserialize)]
struct Listing {
    ring: Option<String>,
    limit: Option<usize>,
}

impl Listing {
    fn checked(
        query: Result<Query<Listing>, QueryRejection>,
    ) -> Result<(Option<String>, usize), ApiError> {
        let Query(listing) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        match listing.limit.unwrap_or(DEFAULT_LIMIT) {
            limit @ 1..=MAX_LIMIT => Ok((listing.ring.filter(|r| !r.is_empty()), limit)),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            ))),
        }
    }
}

#[derive(Serialize)]
struct RingsDocument {
    format_version: u32,
    rings: Vec<RingSummary>,
}

/// A ring as `status --format json` shows it (`ring`, `active`, `latest`, `pin`), without
/// the workers' sync, which would read every worker.
#[derive(Serialize)]
struct RingSummary {
    ring: String,
    /// Its Active deployment, if any.
    active: Option<Deployment>,
    /// Its newest deployment when that is not the Active one (in progress or failed).
    latest: Option<Deployment>,
    /// Set when a rollback pinned the ring: the daemon will not deploy that commit again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<Pin>,
}

async fn rings(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rings = read_state(&state, |reader| {
        let Some(reader) = reader else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for ring in reader.rings()? {
            let active = reader.active(&ring)?;
            let newest = reader.history(Some(&ring), 1)?.pop();
            let latest = newest.filter(|n| active.as_ref().map(|a| a.id) != Some(n.id));
            let pin = reader.pin(&ring)?;
            out.push(RingSummary {
                ring,
                active,
                latest,
                pin,
            });
        }
        Ok(out)
    })
    .await?;
    Ok(document(
        StatusCode::OK,
        &RingsDocument {
            format_version: FORMAT_VERSION,
            rings,
        },
    ))
}

async fn deployments(
    State(state): State<AppState>,
    query: Result<Query<Listing>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ring, limit) = Listing::checked(query)?;
    let deployments = read_state(&state, move |reader| match reader {
        Some(reader) => reader.history(ring.as_deref(), limit),
        None => Ok(Vec::new()),
    })
    .await?;
    Ok(json(report::history_json(&deployments)))
}

async fn deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: DeploymentId =
        id.parse()
            .map_err(|e: crate::model::deployment::ParseDeploymentIdError| {
                ApiError::BadRequest(e.to_string())
            })?;
    let record = read_state(&state, move |reader| {
        let reader = reader.ok_or(StoreError::NotFound(id))?;
        Ok(DeploymentRecord {
            deployment: reader.get(id)?,
            events: reader.events(id)?,
            workers: reader.workers(id)?,
            artifacts: reader.artifacts(id)?,
        })
    })
    .await?;
    Ok(json(report::show_json(&record)))
}

#[derive(Serialize)]
struct DriftDocument {
    format_version: u32,
    drift_events: Vec<DriftEvent>,
}

async fn drift(
    State(state): State<AppState>,
    query: Result<Query<Listing>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ring, limit) = Listing::checked(query)?;
    let drift_events = read_state(&state, move |reader| match reader {
        Some(reader) => reader.drift_events(ring.as_deref(), limit),
        None => Ok(Vec::new()),
    })
    .await?;
    Ok(document(
        StatusCode::OK,
        &DriftDocument {
            format_version: FORMAT_VERSION,
            drift_events,
        },
    ))
}

/// `GET /metrics`: sets the deployments gauge from the state, then encodes every metric.
/// A state that cannot be read keeps the gauge's last values (logged), so a scrape
/// never fails because a writer is busy.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match read_state(&state, deployment_counts).await {
        Ok(counts) => state.service.metrics.set_deployments(&counts),
        Err(ApiError::Failed(cause)) => tracing::warn!(%cause, "metrics: cannot count deployments"),
        Err(_) => tracing::debug!("metrics: the state is busy; deployments gauge kept"),
    }
    let text = state.service.metrics.encode();
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// `(ring, state, count)` for every ring with deployments and every lifecycle state
/// (zeros included, so each series exists), pruned deployments left out.
fn deployment_counts(
    reader: Option<&StoreReader>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let Some(reader) = reader else {
        return Ok(Vec::new());
    };
    let mut counts: BTreeMap<(String, DeploymentState), i64> = BTreeMap::new();
    for ring in reader.rings()? {
        for &s in DeploymentState::ALL {
            counts.insert((ring.clone(), s), 0);
        }
    }
    for d in reader.history(None, usize::MAX)? {
        *counts.entry((d.ring, d.state)).or_default() += 1;
    }
    Ok(counts
        .into_iter()
        .map(|((ring, s), n)| (ring, s.to_string(), n))
        .collect())
}
