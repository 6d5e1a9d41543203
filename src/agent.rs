//! `ringops agent`: the worker agent. It holds one worker directory (the same layout and
//! `.ringops/managed.json` as a local worker) and serves the wire protocol of
//! [`crate::adapters::link::http::wire`] over HTTPS, so the daemon and the CLI
//! reach a remote worker through the same [`crate::adapters::link::Link`]
//! interface as a local one.
//!
//! - [`config`]: `agent.toml`, checked in one place (every key known, TLS or loopback).
//! - [`api`]: `fn router(agent)`, the routes, the token check, the body limit, and the
//!   agent's own validation of every path and checksum before anything is written.
//! - [`tls`]: the rustls server configuration (served by [`crate::adapters::http_server`]).
//! - [`heal`]: the watch on the worker directory that records and reverts hot edits.
//! - [`memory`]: the last applied generation, kept across restarts in `.ringops/`.
//!
//! The switch itself is the local link's ([`LocalDir`]): the agent never writes a
//! worker file any other way, and runs only the hooks its own `agent.toml` defines,
//! named by the daemon (never a command sent to it). Owns no manifests, no state
//! database and no secrets but its token.

pub mod api;
pub mod config;
pub mod heal;
pub mod memory;
pub mod tls;

use crate::adapters::http_auth::Secret;
use crate::adapters::link::LocalDir;
use crate::adapters::link::http::wire::{DRIFT_KEPT, DriftMode, DriftSeen};
use crate::adapters::worker_dir::{Batch, OnDisk};
use crate::model::desired::HookSpec;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How the agent knows a request comes from the daemon (or the CLI).
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Authorization: Bearer <token>` on every request.
    Token(Secret),
    /// The TLS handshake verified the client's certificate (mutual TLS, `client_ca`):
    /// only for a server whose TLS configuration requires one, as `ringops agent` does.
    ClientCertificate,
}

impl From<Secret> for Auth {
    fn from(token: Secret) -> Self {
        Auth::Token(token)
    }
}

/// One worker directory served over HTTP, and what the agent remembers about it.
#[derive(Debug)]
pub struct Agent {
    dir: LocalDir,
    auth: Auth,
    body_limit: usize,
    /// The hooks of `agent.toml`, by name: the only commands the agent runs.
    hooks: BTreeMap<String, HookSpec>,
    /// Held for the whole of a switch: one writer at a time from this process.
    switching: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
}

/// What the agent learned from the generations it applied and the drift it saw.
#[derive(Debug, Default)]
struct Status {
    deployment: Option<String>,
    drift_mode: DriftMode,
    drift: VecDeque<DriftSeen>,
    /// The last generation applied, its `expected_generation` set to the generation it
    /// produced: what self-heal puts back.
    last: Option<Arc<Batch>>,
    /// Drift already recorded, by path, so a reported edit is recorded once.
    reported: BTreeMap<String, OnDisk>,
}

impl Agent {
    /// An agent over the worker directory `dir`, answering only clients that `auth`
    /// admits (a token, or a certificate verified by TLS), taking bodies
    /// of at most `body_limit` bytes, remembering the last generation it applied there
    /// before a restart (see [`memory`]; an unreadable memory is logged and ignored).
    pub fn new(dir: PathBuf, auth: impl Into<Auth>, body_limit: usize) -> Self {
        let mut status = Status::default();
        match memory::load(&dir) {
            Ok(Some(remembered)) => {
                tracing::info!(
                    deployment = %remembered.batch.deployment,
                    generation = remembered.batch.expected_generation,
                    "remembering the last generation applied"
                );
                status.deployment = Some(remembered.batch.deployment.clone());
                status.drift_mode = remembered.drift_mode;
                status.last = Some(Arc::new(remembered.batch));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "cannot read what the agent applied before; hot edits are only recorded until the next generation"
            ),
        }
        Self {
            dir: LocalDir::new(dir),
            auth: auth.into(),
            body_limit,
            hooks: BTreeMap::new(),
            switching: tokio::sync::Mutex::new(()),
            status: Mutex::new(status),
        }
    }

    /// The same agent, running `hooks` (from `agent.toml`) when a generation names them.
    pub fn with_hooks(self, hooks: BTreeMap<String, HookSpec>) -> Self {
        Self { hooks, ..self }
    }

    /// The worker directory.
    pub fn dir(&self) -> &LocalDir {
        &self.dir
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic while holding it leaves plain data behind; keep serving it.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a generation the agent applied: `batch` switched the directory to
    /// `generation`, with the drift mode that came with it (`None`: the one it had).
    async fn applied(&self, mut batch: Batch, generation: u64, mode: Option<DriftMode>) {
        {
            let mut status = self.status();
            status.deployment = Some(batch.deployment.clone());
            status.drift_mode = mode.unwrap_or(status.drift_mode);
            status.reported.clear();
            batch.expected_generation = Some(generation);
            status.last = Some(Arc::new(batch));
        }
        self.remember().await;
    }

    /// Notes that self-heal put the last generation back, now at `generation`.
    async fn reverted(&self, generation: u64) {
        {
            let mut status = self.status();
            if let Some(last) = status.last.as_mut() {
                Arc::make_mut(last).expected_generation = Some(generation);
            }
        }
        self.remember().await;
    }

    /// Writes the last generation to the agent's memory (a failure is logged: the
    /// agent then forgets it at a restart, and only records drift until the next one).
    async fn remember(&self) {
        let remembered = {
            let status = self.status();
            let Some(last) = status.last.as_ref() else {
                return;
            };
            memory::Remembered {
                batch: Batch::clone(last),
                drift_mode: status.drift_mode,
            }
        };
        let root = self.dir.root().to_owned();
        let saved = tokio::task::spawn_blocking(move || memory::save(&root, &remembered)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remember the last generation"),
            Err(e) => tracing::warn!(error = %e, "cannot remember the last generation"),
        }
    }

    /// True the first time `path` is seen drifted to `on_disk` since the last switch.
    fn first_sight(&self, path: &str, on_disk: &OnDisk) -> bool {
        let mut status = self.status();
        if status.reported.get(path) == Some(on_disk) {
            return false;
        }
        status.reported.insert(path.to_owned(), on_disk.clone());
        true
    }

    /// Records one hot edit, keeping the newest [`DRIFT_KEPT`].
    pub fn record_drift(&self, seen: DriftSeen) {
        let mut status = self.status();
        if status.drift.len() == DRIFT_KEPT {
            status.drift.pop_front();
        }
        status.drift.push_back(seen);
    }
}
