//! The agent's wire protocol (version 1): the JSON documents `ringops agent` serves and
//! the HTTP link sends. Pure serde types shared by both sides, so they cannot
//! drift apart.
//!
//! | route                   | body in                | answer                                      |
//! |-------------------------|------------------------|---------------------------------------------|
//! | `GET /v1/healthz`       |                        | 200 [`Health`]                              |
//! | `GET /v1/inventory`     |                        | 200 [`InventoryDoc`]                        |
//! | `PUT /v1/generation`    | [`GenerationRequest`]  | 200 [`AppliedDoc`]; 400, 409, 413, 422, 503 |
//! | `GET /v1/file?path=`    |                        | 200 the bytes; 404 [`ErrorDoc`]             |
//! | `POST /v1/clone`        | [`CloneRequest`]       | 204; 422                                    |
//!
//! Every request carries `Authorization: Bearer <token>` (401 otherwise). Errors are
//! [`ErrorDoc`]s whose `kind` tells the client what happened without parsing messages.
//!
//! No field carries a command: a generation names the hooks to run ([`HookName`]), and
//! the agent runs only those its own `agent.toml` defines. A command line where a name
//! goes (as ringops sent before hooks were named) is refused with [`COMMANDS_REFUSED`].

use crate::adapters::worker_dir::ManagedFile;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The protocol version every document carries.
pub const FORMAT_VERSION: u32 = 1;

/// `GET /v1/healthz`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `ok`.
    pub status: String,
    /// The generation of the worker directory.
    pub generation: u64,
}

/// One file of a generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFile {
    /// The bytes, standard base64.
    pub content: String,
    /// Hex sha256 of the decoded bytes; the agent refuses the generation when it differs.
    pub sha256: String,
    /// Permission bits, at most `0o777`.
    pub mode: u32,
}

/// The longest timeout `agent.toml` may give a hook: a check and a reload together
/// stay within the agent's own request limit, and the daemon waits as long for them.
pub const HOOK_TIMEOUT_MAX: Duration = Duration::from_secs(240);

/// Why a generation carrying a command line is refused (400): the migration, in short.
pub const COMMANDS_REFUSED: &str = "this generation gives a hook as a command line, and an agent runs no command it is sent: define it in the agent's agent.toml as [hooks.NAME] (command, timeout) and name it in the worker group (`check: {hook: NAME}`); see the README, \"Remote workers: the agent\"";

/// The name of a hook the agent's `agent.toml` defines (`[hooks.NAME]`). Read only
/// from a JSON string: anything else (a command) is refused with [`COMMANDS_REFUSED`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HookName(pub String);

impl<'de> Deserialize<'de> for HookName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HookNameVisitor)
    }
}

struct HookNameVisitor;

impl<'de> serde::de::Visitor<'de> for HookNameVisitor {
    type Value = HookName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name of a hook the agent's agent.toml defines")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<HookName, E> {
        Ok(HookName(name.to_owned()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<HookName, A::Error> {
        Err(serde::de::Error::custom(COMMANDS_REFUSED))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<HookName, A::Error> {
        Err(serde::de::Error::custom(COMMANDS_REFUSED))
    }
}

/// Which of the agent's hooks run around the switch, and what they are told.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireHooks {
    /// The agent hook run on the staged set before the switch.
    #[serde(default)]
    pub check: Option<HookName>,
    /// The agent hook run after the switch.
    #[serde(default)]
    pub reload: Option<HookName>,
    /// The worker's name (`RINGOPS_WORKER`).
    #[serde(default)]
    pub worker: String,
    /// The ring (`RINGOPS_RING`).
    #[serde(default)]
    pub ring: String,
    /// Values the hooks' output must never show.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// What the agent does about a hot edit of a managed file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMode {
    /// Put the applied content back, and record it.
    #[default]
    Revert,
    /// Only record it.
    Report,
}

/// `PUT /v1/generation`: the whole desired file set of the worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// The deployment writing it.
    pub deployment: String,
    /// The generation this one replaces; `null` replaces whatever is there.
    pub expected_generation: Option<u64>,
    /// Every file the worker should hold, by `<workflow>/<job>/<file>`.
    pub files: BTreeMap<String, WireFile>,
    /// The agent's hooks to run around the switch, by name.
    #[serde(default)]
    pub hooks: Option<WireHooks>,
    /// What the agent does about hot edits until the next generation (default revert).
    #[serde(default)]
    pub drift: Option<DriftMode>,
}

/// The answer to a successful `PUT /v1/generation`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppliedDoc {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The generation the directory is at now.
    pub generation: u64,
    /// Files written.
    pub written: Vec<String>,
    /// Managed files removed.
    pub removed: Vec<String>,
    /// Files already as asked.
    pub unchanged: usize,
}

/// What stands at a managed path (the shape [`crate::adapters::worker_dir::OnDisk`]
/// serializes to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireOnDisk {
    /// A regular file.
    File {
        /// Hex sha256.
        sha256: String,
        /// Permission bits.
        mode: u32,
    },
    /// Nothing.
    Missing,
    /// Something else.
    NotAFile {
        /// What it is.
        what: String,
    },
}

/// A managed file: the record and what is there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireEntry {
    /// What ringops wrote.
    pub record: ManagedFile,
    /// What is there now.
    pub on_disk: WireOnDisk,
}

/// One hot edit the agent saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSeen {
    /// The managed path.
    pub path: String,
    /// `edited`, `missing` or `replaced`.
    pub what: String,
    /// `reverted` or `reported`.
    pub action: String,
    /// The generation it drifted from.
    pub generation: u64,
}

/// `GET /v1/inventory`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InventoryDoc {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The generation of `managed.json`.
    pub generation: u64,
    /// A switch was committed but not finished.
    pub pending: bool,
    /// The deployment of the last generation the agent applied, when it knows it.
    pub deployment: Option<String>,
    /// What the agent does about hot edits.
    pub drift_mode: DriftMode,
    /// Every managed path.
    pub managed: BTreeMap<String, WireEntry>,
    /// Files ringops does not manage.
    pub unmanaged: Vec<String>,
    /// Hot edits seen since the agent started, oldest first (at most
    /// [`DRIFT_KEPT`]).
    pub drift: Vec<DriftSeen>,
}

/// How many drift records the inventory keeps.
pub const DRIFT_KEPT: usize = 256;

/// `POST /v1/clone`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// A managed path.
    pub from: String,
    /// A new path nothing occupies.
    pub to: String,
}

/// Why a request failed, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Missing or wrong token (401).
    Unauthorized,
    /// The body is not a valid document (400).
    Malformed,
    /// The body is over the limit (413).
    TooLarge,
    /// A path, mode, checksum or hook name was refused; nothing was written (422).
    Refused,
    /// The check hook failed; nothing was switched (422).
    CheckFailed,
    /// `expected_generation` is not the worker's (409).
    StaleGeneration,
    /// The files were switched but the reload hook failed (500).
    ReloadFailed,
    /// Another writer holds the worker directory (503).
    Busy,
    /// No such file or route (404).
    NotFound,
    /// Something broke on the agent; the cause is in its log (500).
    Internal,
}

/// An error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDoc {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// What happened, for people.
    pub error: String,
    /// What happened, for programs.
    pub kind: ErrorKind,
    /// With [`ErrorKind::StaleGeneration`]: the generation the worker is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}
