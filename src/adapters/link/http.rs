//! The HTTP link: a worker whose `target` is `https://host:port` (or `http://` on
//! loopback, for tests) is a `ringops agent` reached with reqwest over the protocol of
//! [`wire`].
//!
//! Agents are authenticated by their TLS certificates and authenticate this host by
//! its client certificate (mutual TLS) or the fleet's token, or both while a fleet
//! moves from one to the other: what the client trusts and presents is [`client`]'s.
//! The agent token is read when the link is made, from the file named by
//! `RINGOPS_AGENT_TOKEN_FILE`, else the systemd credential `agent-token`
//! (`$CREDENTIALS_DIRECTORY/agent-token`); one token for every agent of the fleet,
//! needed only without a client certificate. It is sent only in the `Authorization`
//! header (marked sensitive) and never appears in an error or a log line. A request
//! that TLS refuses (an untrusted or revoked agent, or an agent refusing this host's
//! certificate) fails at once as [`AgentError::Tls`], never tried again.
//!
//! Connections time out after [`CONNECT_TIMEOUT`]; reads after [`READ_TIMEOUT`]; a
//! switch after [`SWITCH_TIMEOUT`] plus its hooks' timeouts. Every request is tried
//! again when it could not connect ([`TRIES`] tries, waiting 200 ms then doubling, each
//! wait with jitter: [`crate::adapters::backoff`]): it never reached the agent, so a
//! repeat is safe. A switch that connected is sent once (a longer wait for an agent
//! that stays away is the rollout's, up to its progress deadline). Every error names
//! the agent and the cause: unreachable, 401, 409 (as a generation mismatch), 422, 5xx.
//!
//! Hooks travel by name only ([`wire::HookName`]): a switch given a command line for
//! an agent is refused before anything is sent (an agent runs only the hooks its own
//! `agent.toml` defines), and waits [`SWITCH_TIMEOUT`] plus
//! [`wire::HOOK_TIMEOUT_MAX`] for each hook it names.
//!
//! A link may carry the ring's drift mode ([`HttpAgent::with_drift`]); it travels
//! with each generation, and the agent then reverts (or only records) hot edits until
//! the next one. Without it the agent keeps the mode it had.

pub mod client;
pub mod wire;

pub use client::{
    CA_FILE_ENV, CLIENT_CERT_FILE_ENV, CLIENT_KEY_FILE_ENV, CONNECT_TIMEOUT, CRL_FILE_ENV,
};

use super::{Hooks, Link, LinkError, SwitchError};
use crate::adapters::backoff::Backoff;
use crate::adapters::worker_dir::{
    Applied, Batch, Inventory, LINK_ON_PATH, ManagedEntry, OnDisk, WorkerDirError,
};
use crate::model::desired::WorkerHook;
use crate::model::manifest::DriftMode;
use base64::Engine as _;
use reqwest::{Method, RequestBuilder, StatusCode};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wire::{
    AppliedDoc, CloneRequest, DriftMode as WireDrift, ErrorDoc, ErrorKind, GenerationRequest,
    HOOK_TIMEOUT_MAX, HookName, InventoryDoc, WireFile, WireHooks, WireOnDisk,
};

/// The variable naming the file that holds the agent token.
pub const TOKEN_FILE_ENV: &str = "RINGOPS_AGENT_TOKEN_FILE";
/// The systemd credential holding the agent token when the variable is not set.
pub const TOKEN_CREDENTIAL: &str = "agent-token";
/// How long a read (inventory, file, health) may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a switch may take, besides its hooks' own timeouts.
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(120);
/// How many times a request that could not connect is sent.
pub const TRIES: u32 = 3;
/// The wait before the second try (plus jitter); each later one doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Why an agent could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No token is configured, or its file cannot be read.
    #[error("agent {target}: no agent token: {problem}")]
    NoToken {
        /// The agent's URL.
        target: String,
        /// What is wrong.
        problem: String,
    },
    /// The agent did not answer.
    #[error("agent {target} is unreachable: {cause}")]
    Unreachable {
        /// The agent's URL.
        target: String,
        /// The connection's failure.
        cause: String,
    },
    /// TLS refused the agent, or the agent refused this host; nothing reached it.
    #[error("agent {target} refused by TLS: {problem}; the request did not reach the agent")]
    Tls {
        /// The agent's URL.
        target: String,
        /// What TLS refused, and where to look.
        problem: String,
    },
    /// The agent refused the token.
    #[error(
        "agent {target} refused the agent token (401): check {TOKEN_FILE_ENV} or the credential `{TOKEN_CREDENTIAL}`"
    )]
    Unauthorized {
        /// The agent's URL.
        target: String,
    },
    /// The agent refused what was sent; nothing was written.
    #[error("agent {target} refused the request ({status}): {message}")]
    Refused {
        /// The agent's URL.
        target: String,
        /// The HTTP status.
        status: u16,
        /// The agent's message.
        message: String,
    },
    /// The agent failed, or answered something this build does not understand.
    #[error("agent {target} failed ({status}): {message}")]
    Failed {
        /// The agent's URL.
        target: String,
        /// The HTTP status.
        status: u16,
        /// The agent's message.
        message: String,
    },
}

impl AgentError {
    /// True when the user can fix it (token, payload).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            AgentError::NoToken { .. }
                | AgentError::Tls { .. }
                | AgentError::Unauthorized { .. }
                | AgentError::Refused { .. }
        )
    }

    /// True when the agent did not answer (down, or too slow): it may come back.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AgentError::Unreachable { .. })
    }
}

/// The agent token; `Debug` never shows it.
#[derive(Clone)]
struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A worker reached through its agent.
#[derive(Clone, Debug)]
pub struct HttpAgent {
    base: String,
    token: Result<Token, String>,
    drift: Option<DriftMode>,
}

impl HttpAgent {
    /// The agent at `target` (`https://host:port`, no path), with the token of this host.
    pub fn new(target: &str) -> Self {
        Self::with_token(target, read_token())
    }

    /// The agent at `target` with an explicit token (tests, benchmarks).
    pub fn with_token_text(target: &str, token: &str) -> Self {
        Self::with_token(target, Ok(Token(token.into())))
    }

    fn with_token(target: &str, token: Result<Token, String>) -> Self {
        Self {
            base: target.trim_end_matches('/').to_owned(),
            token,
            drift: None,
        }
    }

    /// The same agent, telling it with every generation what to do about hot edits.
    pub fn with_drift(self, mode: DriftMode) -> Self {
        Self {
            drift: Some(mode),
            ..self
        }
    }

    /// Whether `target` names an agent: `https://…`, or `http://…`.
    pub fn is_target(target: &str) -> bool {
        target.starts_with("https://") || target.starts_with("http://")
    }

    /// A request to `path` with the token (optional when this host presents a client
    /// certificate), or why it cannot be sent.
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, AgentError> {
        let client = client::client().map_err(|problem| AgentError::Failed {
            target: self.base.clone(),
            status: 0,
            message: problem,
        })?;
        let request = client.http.request(method, format!("{}{path}", self.base));
        let token = match (&self.token, client.identity) {
            (Ok(token), _) => token,
            (Err(_), true) => return Ok(request),
            (Err(problem), false) => {
                return Err(AgentError::NoToken {
                    target: self.base.clone(),
                    problem: format!(
                        "{problem} (or present a client certificate: {CLIENT_CERT_FILE_ENV}, {CLIENT_KEY_FILE_ENV})"
                    ),
                });
            }
        };
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.0))
            .map_err(|_| AgentError::NoToken {
                target: self.base.clone(),
                problem: "the token holds characters a header cannot carry".to_owned(),
            })?;
        value.set_sensitive(true);
        Ok(request.header(reqwest::header::AUTHORIZATION, value))
    }

    /// Sends a read, trying again when it could not connect.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, AgentError> {
        self.send(|| {
            Ok(self
                .request(Method::GET, path)?
                .query(query)
                .timeout(READ_TIMEOUT))
        })
        .await
    }

    /// Sends the request `build` makes, again (up to [`TRIES`] times, with a doubling
    /// wait) while it cannot connect: such a request never reached the agent.
    async fn send(
        &self,
        build: impl Fn() -> Result<RequestBuilder, AgentError>,
    ) -> Result<reqwest::Response, AgentError> {
        // No cap: TRIES bounds the waits.
        let mut waits = Backoff::new(FIRST_RETRY, Duration::MAX).take(TRIES as usize - 1);
        let mut attempt = 1;
        loop {
            let error = match build()?.send().await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let wait = if error.is_connect() && client::tls_problem(&error).is_none() {
                waits.next()
            } else {
                None
            };
            let Some(wait) = wait else {
                return Err(self.unreachable(&error));
            };
            tracing::debug!(agent = %self.base, attempt, "cannot connect; trying again in {wait}");
            tokio::time::sleep(wait.wait).await;
            attempt += 1;
        }
    }

    /// The error `e` stands for: refused by TLS, else unreachable.
    fn unreachable(&self, e: &reqwest::Error) -> AgentError {
        if let Some(problem) = client::tls_problem(e) {
            return AgentError::Tls {
                target: self.base.clone(),
                problem,
            };
        }
        AgentError::Unreachable {
            target: self.base.clone(),
            cause: crate::adapters::causes(e),
        }
    }

    /// The error an answer with a failing status stands for.
    async fn failure(&self, response: reqwest::Response) -> (Option<ErrorDoc>, AgentError) {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let doc: Option<ErrorDoc> = serde_json::from_str(&text).ok();
        let message = doc
            .as_ref()
            .map_or_else(|| text.chars().take(200).collect(), |d| d.error.clone());
        let target = self.base.clone();
        let error = match status {
            StatusCode::UNAUTHORIZED => AgentError::Unauthorized { target },
            s if s.is_client_error() => AgentError::Refused {
                target,
                status: s.as_u16(),
                message,
            },
            s => AgentError::Failed {
                target,
                status: s.as_u16(),
                message,
            },
        };
        (doc, error)
    }

    /// A JSON answer, or the error its status stands for.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, AgentError> {
        if !response.status().is_success() {
            return Err(self.failure(response).await.1);
        }
        let status = response.status().as_u16();
        response.json().await.map_err(|e| AgentError::Failed {
            target: self.base.clone(),
            status,
            message: format!("unexpected answer: {}", crate::adapters::causes(&e)),
        })
    }

    /// The switch's answer as the local link gives it.
    async fn switched(
        &self,
        response: reqwest::Response,
        expected: Option<u64>,
    ) -> Result<Applied, SwitchError> {
        if response.status().is_success() {
            let doc: AppliedDoc = self.json(response).await.map_err(not_switched)?;
            return Ok(Applied {
                generation: doc.generation,
                written: doc.written,
                removed: doc.removed,
                unchanged: doc.unchanged,
            });
        }
        let (doc, error) = self.failure(response).await;
        let root = PathBuf::from(&self.base);
        match doc.map(|d| (d.kind, d.generation, d.error)) {
            Some((ErrorKind::StaleGeneration, found, _)) => Err(SwitchError::NotSwitched(
                LinkError::Dir(WorkerDirError::GenerationMismatch {
                    root,
                    expected: expected.unwrap_or_default(),
                    found: found.unwrap_or_default(),
                }),
            )),
            Some((ErrorKind::Busy, _, _)) => Err(SwitchError::NotSwitched(LinkError::Dir(
                WorkerDirError::Busy {
                    lock: root.join(".ringops/lock"),
                    root,
                },
            ))),
            Some((ErrorKind::CheckFailed, _, message)) => {
                Err(SwitchError::NotSwitched(LinkError::Hook(message)))
            }
            Some((ErrorKind::ReloadFailed, _, message)) => {
                Err(SwitchError::ReloadFailed(LinkError::Hook(message)))
            }
            _ => Err(not_switched(error)),
        }
    }
}

fn not_switched(e: AgentError) -> SwitchError {
    SwitchError::NotSwitched(LinkError::Agent(e))
}

/// The token from [`TOKEN_FILE_ENV`] or the credential [`TOKEN_CREDENTIAL`].
fn read_token() -> Result<Token, String> {
    let path = match std::env::var_os(TOKEN_FILE_ENV) {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => PathBuf::from(dir).join(TOKEN_CREDENTIAL),
            None => {
                return Err(format!(
                    "set {TOKEN_FILE_ENV} to a file holding it, or give the service the credential `{TOKEN_CREDENTIAL}`"
                ));
            }
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Token(token.into()))
}

/// What an agent's inventory says, as a local directory's would.
fn inventory_of(doc: InventoryDoc) -> Inventory {
    let managed = doc
        .managed
        .into_iter()
        .map(|(path, entry)| {
            let on_disk = match entry.on_disk {
                WireOnDisk::File { sha256, mode } => OnDisk::File { sha256, mode },
                WireOnDisk::Missing => OnDisk::Missing,
                WireOnDisk::NotAFile { what } => OnDisk::NotAFile {
                    what: known_what(&what),
                },
            };
            let entry = ManagedEntry {
                record: entry.record,
                on_disk,
            };
            (path, entry)
        })
        .collect();
    Inventory {
        generation: doc.generation,
        pending: doc.pending,
        managed,
        unmanaged: doc.unmanaged,
    }
}

/// The static text of what stands at a path, as [`OnDisk::NotAFile`] keeps it.
fn known_what(what: &str) -> &'static str {
    match what {
        "a folder" => "a folder",
        "a symbolic link" => "a symbolic link",
        "a special file" => "a special file",
        // The first agents said "behind a symbolic link".
        "behind a symbolic link" | LINK_ON_PATH => LINK_ON_PATH,
        _ => "not a regular file",
    }
}

/// The wire form of a drift mode.
fn wire_drift(mode: DriftMode) -> WireDrift {
    match mode {
        DriftMode::Revert => WireDrift::Revert,
        DriftMode::Report => WireDrift::Report,
    }
}

/// The name of an agent hook, or the refusal of a command line: an agent runs only
/// the hooks its own agent.toml defines, so no command is ever sent to one.
fn hook_name(
    target: &str,
    hook: Option<WorkerHook>,
    which: &str,
) -> Result<Option<HookName>, LinkError> {
    match hook {
        None => Ok(None),
        Some(WorkerHook::Named { hook }) => Ok(Some(HookName(hook))),
        Some(WorkerHook::Command(spec)) => Err(LinkError::Refused(format!(
            "`{which}` is the command line `{}`, but agent {target} runs no command it is sent: define it as [hooks.NAME] in the agent's agent.toml and name it in the worker group (`{which}: {{hook: NAME}}`); nothing was sent",
            spec.command.join(" ")
        ))),
    }
}

/// The wire form of hooks for the agent at `target`: names only.
fn wire_hooks(target: &str, hooks: Hooks) -> Result<WireHooks, LinkError> {
    Ok(WireHooks {
        check: hook_name(target, hooks.check, "check")?,
        reload: hook_name(target, hooks.reload, "reload")?,
        worker: hooks.worker,
        ring: hooks.ring,
        redact: hooks.redact,
    })
}

/// The wire form of a batch, its hooks and the drift mode (if the link has one).
fn generation_request(
    batch: Batch,
    hooks: WireHooks,
    drift: Option<DriftMode>,
) -> GenerationRequest {
    let engine = base64::engine::general_purpose::STANDARD;
    let files = batch
        .files
        .into_iter()
        .map(|(path, file)| {
            let wire = WireFile {
                content: engine.encode(&file.content),
                sha256: file.sha256,
                mode: file.mode,
            };
            (path, wire)
        })
        .collect();
    GenerationRequest {
        deployment: batch.deployment,
        expected_generation: batch.expected_generation,
        files,
        hooks: Some(hooks),
        drift: drift.map(wire_drift),
    }
}

impl Link for HttpAgent {
    fn location(&self) -> String {
        self.base.clone()
    }

    async fn inventory(&self) -> Result<Inventory, LinkError> {
        let response = self.get("/v1/inventory", &[]).await?;
        let doc: InventoryDoc = self.json(response).await?;
        Ok(inventory_of(doc))
    }

    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, LinkError> {
        let response = self.get("/v1/file", &[("path", path)]).await?;
        match response.status() {
            StatusCode::OK => {
                let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
                Ok(Some(bytes.to_vec()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.failure(response).await.1.into()),
        }
    }

    async fn switch(&self, batch: Batch, hooks: Hooks) -> Result<Applied, SwitchError> {
        let expected = batch.expected_generation;
        let hooks = wire_hooks(&self.base, hooks).map_err(SwitchError::NotSwitched)?;
        let named = [&hooks.check, &hooks.reload].into_iter().flatten().count();
        let hooks_time = HOOK_TIMEOUT_MAX * u32::try_from(named).unwrap_or(2);
        let body = generation_request(batch, hooks, self.drift);
        let response = self
            .send(|| {
                Ok(self
                    .request(Method::PUT, "/v1/generation")?
                    .timeout(SWITCH_TIMEOUT + hooks_time)
                    .json(&body))
            })
            .await
            .map_err(not_switched)?;
        self.switched(response, expected).await
    }

    async fn clone_file(&self, from: &str, to: &str) -> Result<(), LinkError> {
        let body = CloneRequest {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        let response = self
            .send(|| {
                Ok(self
                    .request(Method::POST, "/v1/clone")?
                    .timeout(READ_TIMEOUT)
                    .json(&body))
            })
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.failure(response).await.1.into())
    }
}
