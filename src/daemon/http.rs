//! The daemon's HTTP service (axum): health and readiness, Prometheus metrics, the
//! read-only JSON API over the deployment record, and the Git webhook.
//!
//! | route                          | answers                                                   |
//! |--------------------------------|-----------------------------------------------------------|
//! | `GET /healthz`                 | 200 `ok` while the process serves                         |
//! | `GET /readyz`                  | 200 once [`Service::ready`] is set, else 503              |
//! | `GET /metrics`                 | 200 OpenMetrics text (token)                              |
//! | `GET /api/v1/rings`            | 200 each ring's Active and latest deployment (token)      |
//! | `GET /api/v1/deployments`      | 200 deployments newest first, `?ring=&limit=` (token)     |
//! | `GET /api/v1/deployments/{id}` | 200 one record; 400 malformed id; 404 unknown (token)     |
//! | `GET /api/v1/drift`            | 200 drift events newest first, `?ring=&limit=` (token)    |
//! | `POST /hooks/git`              | 202 triggered; 401 bad signature; 404 off; 413; 429       |
//!
//! "(token)": when [`Service::api_token`] is set, these need `Authorization: Bearer
//! <token>` (401 otherwise). Health and readiness stay open for probes; the webhook has
//! its own signature. The daemon refuses to listen on a non-loopback address without a
//! token ([`crate::adapters::http_auth::is_loopback`] is the test it uses), so the state
//! is never readable remotely without one. The token check and its challenge are
//! [`crate::adapters::http_auth`]'s, shared with the agent. Every JSON document carries
//! `format_version: 1`; errors are `{"format_version":1,"error":"..."}` (5xx with a
//! generic message, the cause logged).
//!
//! The webhook: with no [`Service::webhook_secret`] the route answers 404 (the webhook
//! is off and says so). Otherwise, in this order: a body over [`BODY_LIMIT`] gets 413
//! (sent whole: the rest of the body is read and dropped first, up to 16 MiB);
//! a missing, malformed or wrong signature gets 401 ([`webhook::verify`]); then the rate
//! limit (1 a second, bursts of 5) gives 429 with `Retry-After`, so only callers that
//! know the secret use up the quota; the rest wake [`Service::trigger`] with
//! `notify_one` and get 202. `Notify` holds at most one pending wake-up, so a flood
//! costs the daemon at most one extra fetch.
//!
//! Owns routing, status codes and auth; the JSON shapes come from
//! [`crate::report::history`] where one fits. Reads the state only through
//! [`crate::adapters::store::StoreReader`] on the blocking pool; writes nothing.

mod api;
#[cfg(test)]
pub(crate) mod openmetrics;
#[cfg(test)]
mod tests;

use crate::adapters::http_auth::{Secret, challenge, presents};
use crate::adapters::http_server::{self, Limits};
use crate::daemon::metrics::{Metrics, WebhookResult};
use crate::daemon::webhook;
use crate::report::history::FORMAT_VERSION;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::BodyExt;
use serde::Serialize;
use std::future::Future;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Largest webhook body taken; forges send far less for a push.
pub const BODY_LIMIT: usize = 1 << 20;

/// A request taking longer gets 503, so a slow client cannot hold shutdown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Webhook calls taken in a burst before the rate limit (then one a second).
const WEBHOOK_BURST: NonZeroU32 = NonZeroU32::new(5).expect("not zero");

/// What the HTTP service reads and whom it wakes. Clone the `Arc`s before handing it to
/// [`serve`] to keep them.
#[derive(Debug)]
pub struct Service {
    /// The state folder the API reads (`<state_dir>/ringops.db`).
    pub state_dir: PathBuf,
    /// Set by the daemon after its first reconcile; `/readyz` answers 200 from then on.
    pub ready: Arc<AtomicBool>,
    /// The daemon's metrics, served by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Woken (`notify_one`) by each accepted webhook call: fetch the source now.
    pub trigger: Arc<Notify>,
    /// The webhook's shared secret; `None` turns the webhook off (404).
    pub webhook_secret: Option<Secret>,
    /// When set, `/metrics` and `/api/v1/*` need `Authorization: Bearer <token>`.
    pub api_token: Option<Secret>,
}

impl Service {
    /// A service over `state_dir`: not ready, fresh metrics and trigger, no webhook, no
    /// token.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            ready: Arc::default(),
            metrics: Arc::default(),
            trigger: Arc::default(),
            webhook_secret: None,
            api_token: None,
        }
    }
}

/// The service and the webhook's rate limiter, shared by every handler.
struct Shared {
    service: Service,
    limiter: DefaultDirectRateLimiter,
}

type AppState = Arc<Shared>;

/// Every route of the service, ready to serve (or to call in tests without a socket).
pub fn router(service: Service) -> Router {
    let state = Arc::new(Shared {
        service,
        limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::MIN).allow_burst(WEBHOOK_BURST)),
    });
    let guarded = api::routes()
        .route("/metrics", get(api::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(hook).layer(DefaultBodyLimit::disable()))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn(time_limit))
        .with_state(state)
}

/// Serves `service` on `listener` within `limits` (see [`http_server`]) until `shutdown`
/// completes, then lets the requests in flight finish (each bounded by
/// [`REQUEST_TIMEOUT`], all by [`Limits::stop_grace`]) and returns.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    http_server::serve(listener, None, router(service), limits, shutdown).await;
}

/// A JSON document (`format_version` first, pretty, ending with a newline) with `status`.
pub(crate) fn document(status: StatusCode, document: &impl Serialize) -> Response {
    match serde_json::to_string_pretty(document) {
        Ok(mut body) => {
            body.push('\n');
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            // Plain data with string keys always serializes; log it if it ever does not.
            tracing::error!(error = %e, "cannot encode a JSON response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `{"format_version":1,"error":"..."}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorDocument<'m> {
        format_version: u32,
        error: &'m str,
    }
    let error = ErrorDocument {
        format_version: FORMAT_VERSION,
        error: message,
    };
    document(status, &error)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.service.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = "not ready: the first reconcile has not finished\n";
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Refuses a guarded route without the API token, when one is set.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.service.api_token
        && !presents(request.headers(), token)
    {
        return challenge(error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <api token>",
        ));
    }
    next.run(request).await
}

/// Bounds every request by [`REQUEST_TIMEOUT`].
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the request took too long"),
    }
}

/// `POST /hooks/git`: see the module documentation for the order of the checks.
async fn hook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let service = &state.service;
    let metrics = &service.metrics;
    // Read (or drain) first, whatever the answer: closing on an unread body resets the
    // connection under the answer.
    let body = hook_body(body).await;
    let Some(secret) = &service.webhook_secret else {
        let message = "the webhook is off: no webhook secret is configured";
        return refuse(
            metrics,
            WebhookResult::Disabled,
            StatusCode::NOT_FOUND,
            message,
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(refusal) => {
            return refuse(metrics, refusal.result, refusal.status, &refusal.message);
        }
    };
    let verified = match webhook::verify(&headers, &body, secret) {
        Ok(verified) => verified,
        Err(e) => {
            tracing::warn!(error = %e, "webhook call refused");
            return refuse(
                metrics,
                e.result(),
                StatusCode::UNAUTHORIZED,
                &e.to_string(),
            );
        }
    };
    if let Some(response) = over_rate_limit(&state) {
        return response;
    }
    tracing::info!(style = %verified.style, git_ref = ?verified.git_ref, "webhook: fetching the source");
    service.trigger.notify_one();
    metrics.webhook(WebhookResult::Accepted);
    accepted(verified)
}

/// Counts a refused webhook call as `result` and answers it with `status` and `message`.
fn refuse(metrics: &Metrics, result: WebhookResult, status: StatusCode, message: &str) -> Response {
    metrics.webhook(result);
    error(status, message)
}

/// Why a webhook call is refused before its signature is checked.
struct Refusal {
    result: WebhookResult,
    status: StatusCode,
    message: String,
}

/// The webhook's body, or why it is refused: too large (413, after the rest of the
/// body is read and dropped, see [`drain`]) or unreadable.
async fn hook_body(mut body: Body) -> Result<Bytes, Refusal> {
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(|f| f.into_data().unwrap_or_default()) else {
            return Err(Refusal {
                result: WebhookResult::Malformed,
                status: StatusCode::BAD_REQUEST,
                message: "cannot read the body".to_owned(),
            });
        };
        if kept.len() + data.len() > BODY_LIMIT {
            drain(body).await;
            return Err(Refusal {
                result: WebhookResult::TooLarge,
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the body is larger than {BODY_LIMIT} bytes"),
            });
        }
        kept.extend_from_slice(&data);
    }
    Ok(Bytes::from(kept))
}

/// At most this much of an oversized body is read and dropped before its 413.
const DRAIN_LIMIT: usize = 16 * BODY_LIMIT;
/// For at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and drops the rest of a refused body (up to [`DRAIN_LIMIT`] bytes, for up to
/// [`DRAIN_TIME`]), so that the refusal reaches the client whole: a connection closed
/// with unread data in it is reset, and the reset may discard the response.
async fn drain(mut body: Body) {
    let mut dropped = 0;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            dropped += frame.data_ref().map_or(0, Bytes::len);
            if dropped > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// The 429 refusal, with `Retry-After` in whole seconds (at least 1), when this verified
/// call is over the webhook's rate limit; `None` when it may go on.
fn over_rate_limit(state: &Shared) -> Option<Response> {
    let not_until = state.limiter.check().err()?;
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    tracing::debug!(?wait, "webhook call over the rate limit");
    let mut response = refuse(
        &state.service.metrics,
        WebhookResult::RateLimited,
        StatusCode::TOO_MANY_REQUESTS,
        "too many webhook calls; a fetch is already on its way",
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    Some(response)
}

/// The 202 answer to an accepted webhook call: how it was signed and the pushed ref.
fn accepted(verified: webhook::Verified) -> Response {
    #[derive(Serialize)]
    struct Accepted {
        format_version: u32,
        accepted: bool,
        style: String,
        #[serde(rename = "ref")]
        git_ref: Option<String>,
    }
    let accepted = Accepted {
        format_version: FORMAT_VERSION,
        accepted: true,
        style: verified.style.to_string(),
        git_ref: verified.git_ref,
    };
    document(StatusCode::ACCEPTED, &accepted)
}
