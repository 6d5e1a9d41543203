//! The agent's HTTP service: [`router`] over an [`Agent`], and [`serve`].
//!
//! Every route needs `Authorization: Bearer <token>`, compared in constant time (401
//! otherwise, before any body is read), unless the agent is [`Auth::ClientCertificate`]:
//! then its TLS handshake already refused a client without a verified certificate. `PUT /v1/generation` takes at most the
//! configured body size (413), then checks every path and checksum itself (400 for a
//! malformed document, 422 for a refused path, mode or checksum), whatever the worker
//! directory would check again, and only then switches through [`LocalDir`]: all or
//! nothing, 409 when `expected_generation` is not the worker's. Hooks are named: each
//! must be a `[hooks.NAME]` of the agent's `agent.toml` (422 otherwise), and a command
//! line where a name goes is refused (400, [`COMMANDS_REFUSED`]), nothing written
//! either way. 5xx answers carry a generic message; the cause goes to the log.

use super::{Agent, Auth};
use crate::adapters::http_server::{self, Limits};
use crate::adapters::link::http::wire::{
    AppliedDoc, COMMANDS_REFUSED, CloneRequest, DriftMode, ErrorDoc, ErrorKind, FORMAT_VERSION,
    GenerationRequest, Health, HookName, InventoryDoc, WireEntry, WireHooks, WireOnDisk,
};
use crate::adapters::link::{Hooks, Link, LinkError, LocalDir, SwitchError};
use crate::adapters::worker_dir::{Batch, FileSpec, Inventory, OnDisk, RESERVED, WorkerDirError};
use crate::model::desired::{HookSpec, WorkerHook, hook_name_problem, sha256_hex};
use crate::pipeline::checks::artifact_path_problem;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// A request taking longer gets 503, so a stuck hook cannot hold shutdown for ever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest `POST /v1/clone` body.
const CLONE_LIMIT: usize = 64 << 10;

type AppState = Arc<Agent>;

/// Every route of the agent, ready to serve (or to call in tests without a socket).
pub fn router(agent: Arc<Agent>) -> Router {
    let limit = agent.body_limit;
    Router::new()
        .route("/v1/healthz", get(healthz))
        .route("/v1/inventory", get(inventory))
        .route(
            "/v1/generation",
            put(generation).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/v1/file", get(file))
        .route(
            "/v1/clone",
            post(clone).layer(DefaultBodyLimit::max(CLONE_LIMIT)),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                ErrorKind::NotFound,
                "no such endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&agent),
            require_token,
        ))
        .layer(middleware::from_fn(time_limit))
        .with_state(agent)
}

/// Serves `agent` on `listener` (over TLS with `tls`) within `limits` (see
/// [`http_server`]) until `shutdown` completes, then lets the requests in flight finish
/// (each bounded by [`REQUEST_TIMEOUT`], all by [`Limits::stop_grace`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    agent: Arc<Agent>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let tls = tls.map(TlsAcceptor::from);
    http_server::serve(listener, tls, router(agent), limits, shutdown).await;
}

/// A JSON document with `status`.
fn document(status: StatusCode, document: &impl Serialize) -> Response {
    match serde_json::to_vec(document) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a JSON response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An [`ErrorDoc`] with `status`.
fn error(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response {
    let doc = ErrorDoc {
        format_version: FORMAT_VERSION,
        error: message.into(),
        kind,
        generation: None,
    };
    document(status, &doc)
}

/// A failure underneath: logged in full, answered generically.
fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Internal,
        format!("{what}; see the agent's log"),
    )
}

/// Refuses any request without the agent's token (with mutual TLS, the handshake did).
async fn require_token(State(agent): State<AppState>, request: Request, next: Next) -> Response {
    let Auth::Token(token) = &agent.auth else {
        return next.run(request).await;
    };
    if !crate::adapters::http_auth::presents(request.headers(), token) {
        tracing::warn!(path = %request.uri().path(), "request refused: missing or wrong token");
        return crate::adapters::http_auth::challenge(error(
            StatusCode::UNAUTHORIZED,
            ErrorKind::Unauthorized,
            "this agent needs Authorization: Bearer <agent token>",
        ));
    }
    next.run(request).await
}

/// Bounds every request by [`REQUEST_TIMEOUT`].
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal,
            "the request took too long",
        ),
    }
}

async fn healthz(State(agent): State<AppState>) -> Response {
    match agent.dir().inventory().await {
        Ok(inventory) => document(
            StatusCode::OK,
            &Health {
                format_version: FORMAT_VERSION,
                status: "ok".to_owned(),
                generation: inventory.generation,
            },
        ),
        Err(e) => internal("cannot read the worker directory", &e),
    }
}

async fn inventory(State(agent): State<AppState>) -> Response {
    match agent.dir().inventory().await {
        Ok(inventory) => document(StatusCode::OK, &inventory_doc(&agent, inventory)),
        Err(e) => internal("cannot read the worker directory", &e),
    }
}

/// The wire form of what the directory holds, with what the agent remembers.
fn inventory_doc(agent: &Agent, inventory: Inventory) -> InventoryDoc {
    let status = agent.status();
    let managed = inventory
        .managed
        .into_iter()
        .map(|(path, entry)| {
            let on_disk = match entry.on_disk {
                OnDisk::File { sha256, mode } => WireOnDisk::File { sha256, mode },
                OnDisk::Missing => WireOnDisk::Missing,
                OnDisk::NotAFile { what } => WireOnDisk::NotAFile {
                    what: what.to_owned(),
                },
            };
            let entry = WireEntry {
                record: entry.record,
                on_disk,
            };
            (path, entry)
        })
        .collect();
    InventoryDoc {
        format_version: FORMAT_VERSION,
        generation: inventory.generation,
        pending: inventory.pending,
        deployment: status.deployment.clone(),
        drift_mode: status.drift_mode,
        managed,
        unmanaged: inventory.unmanaged,
        drift: status.drift.iter().cloned().collect(),
    }
}

/// A refused request: the answer to give.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
}

impl Refusal {
    fn refused(message: String) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: ErrorKind::Refused,
            message,
        }
    }

    fn malformed(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: ErrorKind::Malformed,
            message,
        }
    }

    fn into_response(self) -> Response {
        error(self.status, self.kind, self.message)
    }
}

/// The body, or the answer to a body over the limit or unreadable.
fn body_or_refusal(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Refusal> {
    match body {
        Ok(body) => Ok(body),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: ErrorKind::TooLarge,
            message: format!("the body is larger than {limit} bytes"),
        }),
        Err(_) => Err(Refusal::malformed("cannot read the body".to_owned())),
    }
}

/// `PUT /v1/generation`: checks everything, then switches as a whole.
async fn generation(
    State(agent): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let checked = body_or_refusal(body, agent.body_limit).and_then(|body| {
        let request: GenerationRequest = serde_json::from_slice(&body).map_err(not_a_generation)?;
        checked_generation(request, &agent.hooks)
    });
    let (batch, hooks, mode) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            tracing::warn!(error = %refusal.message, "generation refused");
            return refusal.into_response();
        }
    };
    let deployment = batch.deployment.clone();
    let _switching = agent.switching.lock().await;
    match agent.dir().switch(batch.clone(), hooks).await {
        Ok(applied) => {
            agent.applied(batch, applied.generation, mode).await;
            tracing::info!(
                %deployment,
                generation = applied.generation,
                written = applied.written.len(),
                removed = applied.removed.len(),
                "generation applied"
            );
            let doc = AppliedDoc {
                format_version: FORMAT_VERSION,
                generation: applied.generation,
                written: applied.written,
                removed: applied.removed,
                unchanged: applied.unchanged,
            };
            document(StatusCode::OK, &doc)
        }
        Err(SwitchError::ReloadFailed(e)) => {
            if let Ok(inventory) = agent.dir().inventory().await {
                agent.applied(batch, inventory.generation, mode).await;
            }
            tracing::warn!(%deployment, error = %e, "switched, but the reload hook failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::ReloadFailed,
                e.to_string(),
            )
        }
        Err(SwitchError::NotSwitched(e)) => not_switched(&e),
    }
}

/// The answer to a switch that changed nothing.
fn not_switched(e: &LinkError) -> Response {
    let (status, kind) = match e {
        LinkError::Dir(WorkerDirError::GenerationMismatch { found, .. }) => {
            let doc = ErrorDoc {
                format_version: FORMAT_VERSION,
                error: e.to_string(),
                kind: ErrorKind::StaleGeneration,
                generation: Some(*found),
            };
            return document(StatusCode::CONFLICT, &doc);
        }
        LinkError::Dir(WorkerDirError::Busy { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Busy)
        }
        LinkError::Hook(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorKind::CheckFailed),
        e if e.is_user_error() => (StatusCode::UNPROCESSABLE_ENTITY, ErrorKind::Refused),
        e => return internal("cannot switch the worker directory", e),
    };
    tracing::warn!(error = %e, "generation not applied");
    error(status, kind, e.to_string())
}

/// The refusal of a body that is no generation document; a command line where a hook
/// name goes gets the migration ([`COMMANDS_REFUSED`]) alone.
fn not_a_generation(e: serde_json::Error) -> Refusal {
    let text = e.to_string();
    if text.starts_with(COMMANDS_REFUSED) {
        return Refusal::malformed(COMMANDS_REFUSED.to_owned());
    }
    Refusal::malformed(format!("not a generation document: {text}"))
}

/// The batch, hooks (those of `defined` it names) and drift mode (if the request names
/// one) of a request whose every path, mode, checksum and hook name the agent accepts.
fn checked_generation(
    request: GenerationRequest,
    defined: &BTreeMap<String, HookSpec>,
) -> Result<(Batch, Hooks, Option<DriftMode>), Refusal> {
    let mut files = std::collections::BTreeMap::new();
    for (path, file) in request.files {
        if let Some(problem) = worker_path_problem(&path) {
            return Err(Refusal::refused(format!(
                "path `{path}` refused: {problem}"
            )));
        }
        let content = base64::engine::general_purpose::STANDARD
            .decode(file.content.as_bytes())
            .map_err(|e| Refusal::malformed(format!("content of `{path}` is not base64: {e}")))?;
        let actual = sha256_hex(&content);
        if !actual.eq_ignore_ascii_case(&file.sha256) {
            return Err(Refusal::refused(format!(
                "content of `{path}` has sha256 {actual}, not the {} sent with it",
                file.sha256
            )));
        }
        if file.mode > 0o777 {
            return Err(Refusal::refused(format!(
                "mode {:#o} of `{path}` refused: at most 0o777",
                file.mode
            )));
        }
        let spec = FileSpec {
            content: content.into(),
            sha256: actual,
            mode: file.mode,
        };
        files.insert(path, spec);
    }
    let batch = Batch {
        deployment: request.deployment,
        expected_generation: request.expected_generation,
        files,
    };
    let hooks = agent_hooks(request.hooks.unwrap_or_default(), defined)?;
    Ok((batch, hooks, request.drift))
}

/// The hooks `wire` names, as `defined` (the agent's agent.toml) has them.
fn agent_hooks(wire: WireHooks, defined: &BTreeMap<String, HookSpec>) -> Result<Hooks, Refusal> {
    Ok(Hooks {
        check: defined_hook(wire.check, "check", defined)?,
        reload: defined_hook(wire.reload, "reload", defined)?,
        worker: wire.worker,
        ring: wire.ring,
        redact: wire.redact,
    })
}

/// The command of the hook `name` of `defined`; an unknown name is refused (422).
fn defined_hook(
    name: Option<HookName>,
    which: &str,
    defined: &BTreeMap<String, HookSpec>,
) -> Result<Option<WorkerHook>, Refusal> {
    let Some(HookName(name)) = name else {
        return Ok(None);
    };
    if let Some(problem) = hook_name_problem(&name) {
        return Err(Refusal::refused(format!(
            "`{which}` is not a hook name: it {problem}; nothing was written"
        )));
    }
    match defined.get(&name) {
        Some(spec) => Ok(Some(WorkerHook::Command(spec.clone()))),
        None => {
            let known: Vec<String> = defined.keys().map(|k| format!("`{k}`")).collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            Err(Refusal::refused(format!(
                "`{which}` names the hook `{name}`, which this agent's agent.toml does not define (it defines {known}): add [hooks.{name}] there or fix the worker group's `{which}`; nothing was written"
            )))
        }
    }
}

/// Why a worker-relative path may not be written: it could leave the directory, reach
/// ringops' records, or is not `<workflow>/<job>/<file>`.
fn worker_path_problem(path: &str) -> Option<&'static str> {
    if let Some(problem) = artifact_path_problem(path) {
        return Some(problem);
    }
    if path.split('/').next() == Some(RESERVED) {
        return Some("inside `.ringops/`, which ringops keeps for itself");
    }
    if path.split('/').count() < 3 {
        return Some("must be `<workflow>/<job>/<file>`");
    }
    None
}

#[derive(serde::Deserialize)]
struct FileQuery {
    path: String,
}

/// `GET /v1/file?path=`: the bytes of a regular file of the worker.
async fn file(State(agent): State<AppState>, Query(query): Query<FileQuery>) -> Response {
    match agent.dir().read(&query.path).await {
        Ok(Some(bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            format!("no regular file at `{}`", query.path),
        ),
        Err(e) if e.is_user_error() => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Refused,
            e.to_string(),
        ),
        Err(e) => internal("cannot read the worker directory", &e),
    }
}

/// `POST /v1/clone`: copies a managed file to a new unmanaged path.
async fn clone(State(agent): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = body_or_refusal(body, CLONE_LIMIT).and_then(|body| {
        serde_json::from_slice::<CloneRequest>(&body)
            .map_err(|e| Refusal::malformed(format!("not a clone document: {e}")))
    });
    let request = match request {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let _switching = agent.switching.lock().await;
    match clone_on(agent.dir(), &request).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) if e.is_user_error() => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Refused,
            e.to_string(),
        ),
        Err(e) => internal("cannot clone the file", &e),
    }
}

async fn clone_on(dir: &LocalDir, request: &CloneRequest) -> Result<(), LinkError> {
    dir.clone_file(&request.from, &request.to).await
}

#[cfg(test)]
mod tests;
