//! Manifests as written in the repository: one [`Document`] per YAML document.
//!
//! Field names follow `../shared/DESIGN.md` (camelCase on disk). Unknown fields are
//! rejected when parsing. Values that diagnostics point at are [`Spanned`].

use super::{Pos, Spanned};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A parameter or value as written: any YAML value.
pub type Value = serde_json::Value;

/// Parameters passed to a blueprint or module, by name.
pub type With = BTreeMap<String, Spanned<Value>>;

/// The only `apiVersion` this release understands.
pub const API_VERSION: &str = "ringops/v1";

/// One parsed manifest document.
#[derive(Clone, Debug)]
pub struct Document {
    /// Repository-relative path of the file holding the document.
    pub file: String,
    /// Position of the `kind` value.
    pub kind_at: Pos,
    /// `metadata`.
    pub metadata: Metadata,
    /// The kind and its `spec`.
    pub resource: Resource,
}

impl Document {
    /// The document's `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name.value
    }
}

/// The six kinds of resource and their specs.
#[derive(Clone, Debug)]
pub enum Resource {
    /// A stage of rollout.
    Ring(Box<RingSpec>),
    /// A named set of workers.
    WorkerGroup(WorkerGroupSpec),
    /// A graph of steps connected by channels.
    Workflow(WorkflowSpec),
    /// A parameterised template for the files of one job.
    Blueprint(BlueprintSpec),
    /// A reusable list of steps.
    Module(ModuleSpec),
    /// How a channel crosses worker groups.
    Transport(TransportSpec),
}

impl Resource {
    /// The kind as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Ring(_) => "Ring",
            Resource::WorkerGroup(_) => "WorkerGroup",
            Resource::Workflow(_) => "Workflow",
            Resource::Blueprint(_) => "Blueprint",
            Resource::Module(_) => "Module",
            Resource::Transport(_) => "Transport",
        }
    }
}

/// `metadata` of every document.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique name within the kind.
    pub name: Spanned<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `kind: Ring`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingSpec {
    /// The ring whose Active bundle this ring promotes.
    pub promotes_from: Option<Spanned<String>>,
    /// The branch this ring follows (the first ring).
    pub track: Option<Track>,
    /// Deploy every new commit of the tracked branch.
    #[serde(default)]
    pub auto_deploy: bool,
    /// Values visible to templates as `ring.values`.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// Step parameters replaced in this ring.
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// Approval gate.
    pub approvals: Option<Approvals>,
    /// Rollout strategy.
    pub strategy: Option<Strategy>,
    /// Health checks after each batch.
    pub health: Option<Health>,
    /// Revert a failed rollout automatically.
    #[serde(default)]
    pub auto_revert: bool,
    /// What to do about drift.
    #[serde(default)]
    pub drift: DriftMode,
    /// When deployments may happen.
    pub window: Option<Window>,
    /// Block every deployment.
    #[serde(default)]
    pub freeze: bool,
}

/// `track:` of a ring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// Branch name.
    pub branch: Spanned<String>,
}

/// A ring's replacement of some parameters of one step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Workflow name.
    pub workflow: Spanned<String>,
    /// Step name (`<step>.<inner>` for a module's step).
    pub step: Spanned<String>,
    /// Parameters that replace the step's.
    pub with: With,
}

/// `approvals:` of a ring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// Distinct approvers needed.
    pub required: Spanned<u32>,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Auto-reject after this long.
    pub timeout: Option<Spanned<String>>,
}

/// `strategy:` of a ring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Strategy {
    /// allAtOnce, rolling or canary.
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Workers in the canary batch.
    pub canary: Option<u32>,
    /// Workers switched at once.
    pub max_parallel: Option<u32>,
    /// Continue after a healthy canary without a person.
    #[serde(default)]
    pub auto_promote: bool,
}

/// Rollout strategies.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StrategyKind {
    /// Every worker at once.
    #[default]
    AllAtOnce,
    /// `maxParallel` workers at a time.
    Rolling,
    /// A canary batch first.
    Canary,
}

/// `health:` of a ring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Health {
    /// URL template to GET.
    pub http: Option<String>,
    /// Command to run.
    pub command: Option<Vec<String>>,
    /// Timeout of one check.
    pub timeout: Option<Spanned<String>>,
    /// How long a worker must stay healthy.
    pub min_healthy: Option<Spanned<String>>,
    /// Deadline to become healthy.
    pub healthy_deadline: Option<Spanned<String>>,
    /// Deadline of the whole deployment.
    pub progress_deadline: Option<Spanned<String>>,
}

/// What a ring does about drift.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DriftMode {
    /// Put managed artifacts back.
    #[default]
    Revert,
    /// Only record drift.
    Report,
}

/// `window:` of a ring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Cron expression of the window's start.
    pub cron: Spanned<String>,
    /// How long the window stays open.
    pub duration: Spanned<String>,
    /// Time zone of the cron expression.
    pub timezone: Option<Spanned<String>>,
}

/// `kind: WorkerGroup`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGroupSpec {
    /// Features every worker of the group offers.
    #[serde(default)]
    pub features: Vec<String>,
    /// The workers, each in one ring.
    #[serde(default)]
    pub workers: Vec<Worker>,
    /// Run on staged files before a switch.
    pub check: Option<Spanned<Hook>>,
    /// Run after a switch.
    pub reload: Option<Spanned<Hook>>,
}

/// One worker of a group.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// Unique worker name.
    pub name: Spanned<String>,
    /// The ring the worker belongs to.
    pub ring: Spanned<String>,
    /// Network address, visible to templates.
    pub address: Option<String>,
    /// Labels for placement selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How to reach the worker: `dir:/abs/path` or `https://host:port`.
    pub target: Option<Spanned<String>>,
}

/// A hook of a worker group: a command line that ringops runs for local workers, the
/// name of a hook that each agent worker's `agent.toml` defines, or both (a group
/// with workers of each kind).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Program and arguments, for local workers.
    pub command: Option<Spanned<Vec<String>>>,
    /// The agent hook's name, for workers reached through an agent.
    pub hook: Option<Spanned<String>>,
    /// Time limit of `command` (a named hook's is set in `agent.toml`).
    pub timeout: Option<Spanned<String>>,
}

/// `kind: Workflow`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Channels between steps.
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<Channel>>,
    /// The steps.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// A channel connecting producer steps to consumer steps.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The transport used when the channel crosses worker groups.
    pub transport: Option<Spanned<String>>,
}

/// One step of a workflow or module.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Step name, unique in its workflow.
    pub name: Spanned<String>,
    /// Blueprint rendering the step's job.
    pub blueprint: Option<Spanned<String>>,
    /// Module expanded in place of the step.
    pub module: Option<Spanned<String>>,
    /// Parameters.
    #[serde(default)]
    pub with: With,
    /// Where the step runs.
    pub placement: Option<Placement>,
    /// Channels consumed.
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    /// Channels produced.
    #[serde(default)]
    pub outputs: Vec<Spanned<String>>,
}

/// Where a step runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Worker group.
    pub group: Spanned<String>,
    /// Number of workers; every worker of the group in the ring when omitted.
    pub replicas: Option<Spanned<u32>>,
    /// Labels a worker must carry.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// `kind: Blueprint`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueprintSpec {
    /// Worker features the job needs.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    /// Declared parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<ParamSpec>>,
    /// Files of the job.
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// A declared parameter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// Type of the value.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Must be given.
    #[serde(default)]
    pub required: bool,
    /// Value when not given.
    pub default: Option<Spanned<Value>>,
    /// Never shown in plans, logs or errors.
    #[serde(default)]
    pub sensitive: bool,
    /// What the parameter is for.
    pub description: Option<String>,
}

/// Types of parameters.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Text.
    String,
    /// Whole number.
    Int,
    /// true or false.
    Bool,
    /// Number.
    Float,
    /// Sequence.
    List,
    /// Mapping.
    Map,
}

impl ParamType {
    /// The type's name as written.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Float => "float",
            ParamType::List => "list",
            ParamType::Map => "map",
        }
    }

    /// The name of a value's type, for messages; never the value itself, which may be secret.
    pub fn of(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "map",
        }
    }

    /// Whether a value has this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Int => value.is_i64() || value.is_u64(),
            ParamType::Bool => value.is_boolean(),
            ParamType::Float => value.is_number(),
            ParamType::List => value.is_array(),
            ParamType::Map => value.is_object(),
        }
    }
}

/// One file of a blueprint's job.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSpec {
    /// Path inside the job directory.
    pub path: Spanned<String>,
    /// Inline template text.
    pub template: Option<Spanned<String>>,
    /// Template file, relative to the manifest's directory.
    pub template_file: Option<Spanned<String>>,
}

/// `kind: Module`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    /// Declared parameters, referenced by steps as `{param: NAME}`.
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<ParamSpec>>,
    /// Input ports, bound in order to the importing step's `inputs`.
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    /// Output ports, bound in order to the importing step's `outputs`.
    #[serde(default)]
    pub outputs: Vec<Spanned<String>>,
    /// Channels internal to the module, named `<step>.<channel>` once expanded.
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<Channel>>,
    /// The module's steps.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// `kind: Transport`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSpec {
    /// Job placed on the producer's workers.
    pub sender: AdapterSpec,
    /// Job placed on the consumer's workers.
    pub receiver: AdapterSpec,
}

/// A transport's sender or receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    /// Blueprint rendering the adapter job.
    pub blueprint: Spanned<String>,
    /// Parameters.
    #[serde(default)]
    pub with: With,
}
