//! Render stage: jobs placed on a ring's workers → artifacts, through minijinja with
//! strict undefined. The context holds no commit id and no time, so output depends only
//! on the manifests, the ring and the secrets.

use super::catalog::{Catalog, Entry, template_path};
use super::expand::{Arg, ChannelInfo, Expanded, Job, secret_ref};
use super::place::{Slot, place};
use crate::model::manifest::{BlueprintSpec, Placement, RingSpec, Value, With};
use crate::model::{Artifact, Bundle, DesiredState, Diagnostics, Pos, WorkerState};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, context};
use std::collections::{BTreeMap, BTreeSet};

/// Where secret values come from; implemented at the edge (files, credentials, env).
pub trait SecretSource {
    /// The value of a secret, if it can be found.
    fn secret(&self, name: &str) -> Option<String>;
}

/// A secret source that knows nothing; every reference is unresolved.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str) -> Option<String> {
        None
    }
}

impl SecretSource for BTreeMap<String, String> {
    fn secret(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Instructions one template render may execute; far above any real job file.
const FUEL: u64 = 1_000_000;

/// Where a template's text was written, to locate its errors.
#[derive(Clone, Debug)]
struct Origin {
    file: String,
    first_line: u32,
    sources: Vec<String>,
}

/// Every blueprint file's template, compiled once.
pub struct Templates {
    env: Environment<'static>,
    origins: BTreeMap<String, Origin>,
}

impl Templates {
    /// Compiles every blueprint template, reporting syntax errors where they were written.
    pub fn compile(cat: &Catalog, bundle: &Bundle, diags: &mut Diagnostics) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A hostile template cannot hang the compiler: each render gets a bounded budget.
        env.set_fuel(Some(FUEL));
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        let mut origins = BTreeMap::new();
        for (name, bp) in &cat.blueprints {
            for (i, file) in bp.spec.files.iter().enumerate() {
                let Some((text, origin)) = template_text(bp, file, bundle) else {
                    continue;
                };
                let key = template_key(name, i);
                match env.add_template_owned(key.clone(), text) {
                    Ok(()) => {
                        origins.insert(key, origin);
                    }
                    Err(e) => diags.error(
                        &origin.file,
                        error_pos(&origin, &e),
                        "template-syntax",
                        format!(
                            "template syntax error in blueprint `{name}` file `{}`: {}",
                            file.path.value,
                            describe(&e)
                        ),
                    ),
                }
            }
        }
        Templates { env, origins }
    }
}

fn template_key(blueprint: &str, index: usize) -> String {
    format!("{blueprint}#{index}")
}

fn template_text(
    bp: &Entry<BlueprintSpec>,
    file: &crate::model::manifest::FileSpec,
    bundle: &Bundle,
) -> Option<(String, Origin)> {
    let manifest = bp.file();
    if let Some(inline) = &file.template {
        let origin = Origin {
            file: manifest.to_owned(),
            first_line: inline_first_line(bundle, manifest, inline.at),
            sources: vec![manifest.to_owned()],
        };
        return Some((inline.value.clone(), origin));
    }
    let tf = file.template_file.as_ref()?;
    let path = template_path(manifest, &tf.value);
    let text = String::from_utf8(bundle.files.get(&path)?.clone()).ok()?;
    let origin = Origin {
        file: path.clone(),
        first_line: 1,
        sources: vec![manifest.to_owned(), path],
    };
    Some((text, origin))
}

/// The line where an inline template's text starts: after a `|` or `>` block indicator.
fn inline_first_line(bundle: &Bundle, file: &str, at: Pos) -> u32 {
    let line = bundle
        .files
        .get(file)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|t| t.lines().nth(at.line.saturating_sub(1) as usize));
    let indicator = line
        .and_then(|l| l.chars().nth(at.col.saturating_sub(1) as usize))
        .is_some_and(|c| c == '|' || c == '>');
    if indicator { at.line + 1 } else { at.line }
}

fn error_pos(origin: &Origin, e: &minijinja::Error) -> Pos {
    let offset = e.line().unwrap_or(1).max(1) as u32 - 1;
    Pos {
        line: origin.first_line + offset,
        col: 1,
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Parameters of a job after defaults, overrides and secrets.
#[derive(Default)]
struct Params {
    values: BTreeMap<String, Value>,
    sensitive: Vec<String>,
    secrets: Vec<String>,
}

/// Renders one ring's desired state.
pub struct Renderer<'a> {
    /// The catalog.
    pub cat: &'a Catalog<'a>,
    /// Expanded workflows.
    pub workflows: &'a [Expanded<'a>],
    /// Compiled templates.
    pub templates: &'a Templates,
    /// Secret values.
    pub secrets: &'a dyn SecretSource,
}

/// A job instance about to be rendered.
struct Render<'r> {
    workflow: &'r str,
    job: &'r str,
    blueprint: &'r str,
    slot: Slot<'r>,
    replicas: Option<u32>,
    group: &'r str,
    params: &'r Params,
    sources: &'r BTreeSet<String>,
    inputs: minijinja::Value,
    outputs: minijinja::Value,
    transport: minijinja::Value,
}

impl<'a> Renderer<'a> {
    /// Renders every workflow onto the workers of `ring`; with `files` false it only
    /// checks placement and parameters.
    pub fn ring(&self, ring: &str, files: bool, diags: &mut Diagnostics) -> DesiredState {
        let Some(ring_entry) = self.cat.rings.get(ring) else {
            return DesiredState::default();
        };
        let mut state = DesiredState {
            ring: ring.to_owned(),
            workers: self.worker_states(ring),
        };
        self.check_overrides(ring_entry, diags);
        let ring_value = context! { name => ring, values => Serde(&ring_entry.spec.values) };
        let workers = self.worker_values(ring);
        for wf in self.workflows {
            let mut out = Output {
                ring_value: &ring_value,
                workers: &workers,
                ring_file: ring_entry.file(),
                files,
                state: &mut state,
                diags,
            };
            self.workflow(wf, ring, ring_entry.spec, &mut out);
        }
        state
    }

    fn worker_states(&self, ring: &str) -> BTreeMap<String, WorkerState> {
        self.cat
            .workers
            .iter()
            .filter(|(_, w)| w.worker.ring.value == ring)
            .map(|(name, w)| {
                let state = WorkerState {
                    group: w.group.to_owned(),
                    address: w.worker.address.clone(),
                    target: w.worker.target.as_ref().map(|t| t.value.clone()),
                    artifacts: BTreeMap::new(),
                };
                ((*name).to_owned(), state)
            })
            .collect()
    }

    fn worker_values(&self, ring: &str) -> BTreeMap<&'a str, minijinja::Value> {
        self.cat
            .workers
            .iter()
            .filter(|(_, w)| w.worker.ring.value == ring)
            .map(|(name, w)| {
                let v = context! {
                    name => *name,
                    address => w.worker.address.clone(),
                    labels => Serde(&w.worker.labels),
                    group => w.group,
                    ring => ring,
                };
                (*name, v)
            })
            .collect()
    }

    fn check_overrides(&self, ring: &Entry<RingSpec>, diags: &mut Diagnostics) {
        for o in &ring.spec.overrides {
            let wf = self.workflows.iter().find(|w| w.name == o.workflow.value);
            match wf {
                None => self
                    .cat
                    .unknown(diags, ring.file(), &o.workflow, "workflow"),
                Some(wf) if !wf.jobs.iter().any(|j| j.name == o.step.value) => diags.error(
                    ring.file(),
                    o.step.at,
                    "unknown-step",
                    format!(
                        "override names step `{}`, which workflow `{}` does not have",
                        o.step.value, wf.name
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    fn workflow(&self, wf: &Expanded, ring: &str, spec: &RingSpec, out: &mut Output) {
        let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(wf.jobs.len());
        for job in &wf.jobs {
            let overrides = spec
                .overrides
                .iter()
                .filter(|o| o.workflow.value == wf.name && o.step.value == job.name)
                .map(|o| &o.with);
            let placed = self.job(wf, job, ring, overrides, out);
            slots.push(placed.unwrap_or_default());
        }
        for (name, channel) in &wf.channels {
            if channel.crossing {
                self.adapters(wf, name, channel, &slots, ring, out);
            }
        }
    }

    /// Renders one job on its workers; returns where it was placed.
    fn job<'w>(
        &self,
        wf: &Expanded,
        job: &'a Job<'a>,
        ring: &'w str,
        overrides: impl Iterator<Item = &'a With>,
        out: &mut Output,
    ) -> Option<Vec<Slot<'a>>> {
        let bp = self.cat.blueprints.get(job.blueprint.value.as_str())?;
        let mut with = job.with.clone();
        for o in overrides {
            for (k, v) in o {
                let arg = Arg {
                    value: v.value.clone(),
                    file: out.ring_file.to_owned(),
                    at: v.at,
                };
                with.insert(k.clone(), arg);
            }
        }
        let params = self.params(bp, &with, (job.file, job.at, &job.name), out.diags);
        let slots = self.slots(wf.name, job, ring, !out.files, out.diags);
        self.check_features(bp, job.placement, job.file, job.blueprint.at, out.diags);
        let (params, slots) = (params?, slots?);
        let mut sources = job.sources.clone();
        sources.insert(bp.file().to_owned());
        let inputs = channel_list(wf, job.inputs.iter().map(|c| c.name.as_str()));
        let outputs = channel_list(wf, job.outputs.iter().map(|c| c.name.as_str()));
        for slot in &slots {
            let r = Render {
                workflow: wf.name,
                job: &job.name,
                blueprint: &job.blueprint.value,
                slot: *slot,
                replicas: job.placement.replicas.as_ref().map(|r| r.value),
                group: &job.placement.group.value,
                params: &params,
                sources: &sources,
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                transport: minijinja::Value::from(()),
            };
            self.render(&r, out);
        }
        Some(slots)
    }

    /// Renders the sender and receiver jobs of a channel that crosses worker groups.
    fn adapters(
        &self,
        wf: &Expanded,
        name: &str,
        channel: &ChannelInfo,
        slots: &[Vec<Slot>],
        ring: &str,
        out: &mut Output,
    ) {
        let Some(tname) = channel.transport else {
            return;
        };
        let Some(transport) = self.cat.transports.get(tname.value.as_str()) else {
            return;
        };
        let hosts = |jobs: &[usize]| -> BTreeSet<&str> {
            jobs.iter()
                .flat_map(|&j| slots[j].iter().map(|s| s.worker))
                .collect()
        };
        let senders = hosts(&channel.producers);
        let receivers = hosts(&channel.consumers);
        let endpoint_list = |set: &BTreeSet<&str>| -> Vec<minijinja::Value> {
            set.iter()
                .map(|w| {
                    let address = self
                        .cat
                        .workers
                        .get(w)
                        .and_then(|e| e.worker.address.clone());
                    context! { worker => *w, address => address }
                })
                .collect()
        };
        let tvalue = context! {
            name => tname.value.clone(),
            channel => name,
            senders => endpoint_list(&senders),
            receivers => endpoint_list(&receivers),
        };
        for (role, adapter, hosts) in [
            ("sender", &transport.spec.sender, &senders),
            ("receiver", &transport.spec.receiver, &receivers),
        ] {
            let Some(bp) = self.cat.blueprints.get(adapter.blueprint.value.as_str()) else {
                continue;
            };
            let job_name = format!("_{name}.{role}");
            let file = transport.file();
            let with = adapter
                .with
                .iter()
                .map(|(k, v)| {
                    let arg = Arg {
                        value: v.value.clone(),
                        file: file.to_owned(),
                        at: v.at,
                    };
                    (k.clone(), arg)
                })
                .collect();
            let at = adapter.blueprint.at;
            let Some(params) = self.params(bp, &with, (file, at, &job_name), out.diags) else {
                continue;
            };
            let mut sources = BTreeSet::from([
                wf.entry.file().to_owned(),
                file.to_owned(),
                bp.file().to_owned(),
            ]);
            sources.extend(wf.jobs.iter().flat_map(|j| j.sources.iter().cloned()));
            let channels = channel_list(wf, [name]);
            for worker in hosts {
                let Some(entry) = self.cat.workers.get(worker) else {
                    continue;
                };
                if entry.worker.ring.value != ring {
                    continue;
                }
                self.check_group_features(bp, entry.group, file, at, out.diags);
                let r = Render {
                    workflow: wf.name,
                    job: &job_name,
                    blueprint: &adapter.blueprint.value,
                    slot: Slot {
                        worker,
                        replica: None,
                    },
                    replicas: None,
                    group: entry.group,
                    params: &params,
                    sources: &sources,
                    inputs: if role == "receiver" {
                        minijinja::Value::from(Vec::<minijinja::Value>::new())
                    } else {
                        channels.clone()
                    },
                    outputs: if role == "sender" {
                        minijinja::Value::from(Vec::<minijinja::Value>::new())
                    } else {
                        channels.clone()
                    },
                    transport: tvalue.clone(),
                };
                self.render(&r, out);
            }
        }
    }

    /// Resolves a job's parameters against its blueprint: types, required, defaults, secrets.
    fn params(
        &self,
        bp: &Entry<BlueprintSpec>,
        with: &BTreeMap<String, Arg>,
        owner: (&str, Pos, &str),
        diags: &mut Diagnostics,
    ) -> Option<Params> {
        let (file, at, job) = owner;
        let mut params = Params::default();
        let mut ok = true;
        for (name, arg) in with {
            let Some(spec) = bp.spec.params.get(name) else {
                diags.error(
                    &arg.file,
                    arg.at,
                    "unknown-param",
                    format!(
                        "unknown param `{name}` for blueprint `{}` (declared: {})",
                        bp.doc.name(),
                        declared(bp)
                    ),
                );
                ok = false;
                continue;
            };
            let value = match secret_ref(&arg.value) {
                Some(secret) => match self.secret(secret, arg, diags) {
                    Some(v) => {
                        params.secrets.push(secret.to_owned());
                        params.sensitive.push(v.clone());
                        Value::String(v)
                    }
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => arg.value.clone(),
            };
            if !spec.kind.admits(&value) {
                diags.error(
                    &arg.file,
                    arg.at,
                    "wrong-param-type",
                    format!(
                        "param `{name}` of blueprint `{}` must be of type {}",
                        bp.doc.name(),
                        spec.kind.name()
                    ),
                );
                ok = false;
                continue;
            }
            if spec.sensitive {
                params.sensitive.push(sensitive_text(&value));
            }
            params.values.insert(name.clone(), value);
        }
        for (name, spec) in &bp.spec.params {
            if params.values.contains_key(name) || with.contains_key(name) {
                continue;
            }
            match &spec.default {
                Some(d) => {
                    if spec.sensitive {
                        params.sensitive.push(sensitive_text(&d.value));
                    }
                    params.values.insert(name.clone(), d.value.clone());
                }
                None if spec.required => {
                    diags.error(
                        file,
                        at,
                        "missing-param",
                        format!(
                            "step `{job}` is missing required param `{name}` of blueprint `{}`",
                            bp.doc.name()
                        ),
                    );
                    ok = false;
                }
                None => {
                    params.values.insert(name.clone(), Value::Null);
                }
            }
        }
        params.sensitive.retain(|s| !s.is_empty());
        params.sensitive.sort();
        params.sensitive.dedup();
        ok.then_some(params)
    }

    fn secret(&self, name: &str, arg: &Arg, diags: &mut Diagnostics) -> Option<String> {
        if !is_valid_secret_name(name) {
            diags.error(
                &arg.file,
                arg.at,
                "secret-name",
                format!("invalid secret name `{name}`: use letters, digits, `-`, `_` and `.`"),
            );
            return None;
        }
        let value = self.secrets.secret(name);
        if value.is_none() {
            diags.error(
                &arg.file,
                arg.at,
                "unresolved-secret",
                format!(
                    "secret `{name}` not found (looked in --secrets-dir, $CREDENTIALS_DIRECTORY and ${})",
                    secret_env_name(name)
                ),
            );
        }
        value
    }

    /// The workers a job runs on in this ring.
    fn slots(
        &self,
        workflow: &str,
        job: &'a Job<'a>,
        ring: &str,
        check_only: bool,
        diags: &mut Diagnostics,
    ) -> Option<Vec<Slot<'a>>> {
        let placement = job.placement;
        let owner = (job.file, job.at);
        let group = placement.group.value.as_str();
        if !self.cat.groups.contains_key(group) {
            self.cat.unknown(diags, owner.0, &placement.group, "group");
            return None;
        }
        let candidates: Vec<&'a str> = self
            .cat
            .workers_in(group, ring)
            .into_iter()
            .filter(|w| {
                placement
                    .selector
                    .iter()
                    .all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .map(|w| w.name.value.as_str())
            .collect();
        if candidates.is_empty() {
            let selector = if placement.selector.is_empty() {
                ""
            } else {
                " matching the selector"
            };
            diags.error(
                owner.0,
                placement.group.at,
                "no-workers",
                format!("group `{group}` has no workers{selector} in ring `{ring}`"),
            );
            return None;
        }
        let replicas = placement.replicas.as_ref().map(|r| r.value);
        let slots = if check_only {
            // Only validity matters for a ring that is checked, not rendered.
            (replicas.unwrap_or(0) as usize <= candidates.len()).then(Vec::new)
        } else {
            place(&format!("{workflow}/{}", job.name), &candidates, replicas)
        };
        if slots.is_none() {
            let at = placement.replicas.as_ref().map(|r| r.at).unwrap_or(owner.1);
            diags.error(
                owner.0,
                at,
                "replicas",
                format!(
                    "{} replicas asked but group `{group}` has only {} eligible {} in ring `{ring}`",
                    replicas.unwrap_or(0),
                    candidates.len(),
                    if candidates.len() == 1 { "worker" } else { "workers" }
                ),
            );
        }
        slots
    }

    fn check_features(
        &self,
        bp: &Entry<BlueprintSpec>,
        placement: &Placement,
        file: &str,
        at: Pos,
        diags: &mut Diagnostics,
    ) {
        self.check_group_features(bp, &placement.group.value, file, at, diags);
    }

    fn check_group_features(
        &self,
        bp: &Entry<BlueprintSpec>,
        group: &str,
        file: &str,
        at: Pos,
        diags: &mut Diagnostics,
    ) {
        let Some(g) = self.cat.groups.get(group) else {
            return;
        };
        for feature in &bp.spec.requires {
            if !g.spec.features.contains(&feature.value) {
                diags.error(
                    file,
                    at,
                    "missing-feature",
                    format!(
                        "blueprint `{}` requires feature `{}`, which group `{group}` does not offer",
                        bp.doc.name(),
                        feature.value
                    ),
                );
            }
        }
    }

    /// Renders every file of one job instance into its worker's artifacts.
    fn render(&self, r: &Render, out: &mut Output) {
        if !out.files {
            return;
        }
        let Some(bp) = self.cat.blueprints.get(r.blueprint) else {
            return;
        };
        let Some(worker) = out.workers.get(r.slot.worker) else {
            return;
        };
        let dir = match r.slot.replica {
            Some(i) => format!("{}/{}.{i}", r.workflow, r.job),
            None => format!("{}/{}", r.workflow, r.job),
        };
        let ctx = context! {
            params => minijinja::Value::from(Serde(&r.params.values)),
            step => context! { name => r.job, replica => r.slot.replica, replicas => r.replicas, group => r.group },
            workflow => context! { name => r.workflow },
            worker => worker,
            ring => out.ring_value,
            inputs => r.inputs.clone(),
            outputs => r.outputs.clone(),
            transport => r.transport.clone(),
        };
        let group_file = self.cat.groups.get(r.group).map(|g| g.file().to_owned());
        for (i, file) in bp.spec.files.iter().enumerate() {
            let key = template_key(r.blueprint, i);
            let Some(origin) = self.templates.origins.get(&key) else {
                continue;
            };
            let Ok(template) = self.templates.env.get_template(&key) else {
                continue;
            };
            match template.render(&ctx) {
                Ok(content) => {
                    let mut sources: BTreeSet<String> = r.sources.clone();
                    sources.extend(origin.sources.iter().cloned());
                    sources.insert(out.ring_file.to_owned());
                    sources.extend(group_file.iter().cloned());
                    sources.extend(r.params.secrets.iter().map(|s| format!("secret:{s}")));
                    let artifact = Artifact::new(
                        content,
                        sources.into_iter().collect(),
                        r.params.sensitive.clone(),
                    );
                    if let Some(ws) = out.state.workers.get_mut(r.slot.worker) {
                        ws.artifacts
                            .insert(format!("{dir}/{}", file.path.value), artifact);
                    }
                }
                Err(e) => {
                    let mut message = format!(
                        "cannot render blueprint `{}` file `{}` for step `{}`: {}",
                        r.blueprint,
                        file.path.value,
                        r.job,
                        describe(&e)
                    );
                    for s in &r.params.sensitive {
                        message = message.replace(s.as_str(), "(sensitive value)");
                    }
                    out.diags.error(
                        &origin.file,
                        error_pos(origin, &e),
                        "template-render",
                        message,
                    );
                }
            }
        }
    }
}

/// Where rendered artifacts and problems go for one ring.
struct Output<'o> {
    ring_value: &'o minijinja::Value,
    workers: &'o BTreeMap<&'o str, minijinja::Value>,
    ring_file: &'o str,
    files: bool,
    state: &'o mut DesiredState,
    diags: &'o mut Diagnostics,
}

fn channel_list<'n>(wf: &Expanded, names: impl IntoIterator<Item = &'n str>) -> minijinja::Value {
    let list: Vec<minijinja::Value> = names
        .into_iter()
        .map(|n| {
            let ch = wf.channels.get(n);
            context! {
                channel => n,
                transport => ch.and_then(|c| c.transport.map(|t| t.value.clone())),
                crossing => ch.is_some_and(|c| c.crossing),
            }
        })
        .collect();
    minijinja::Value::from(list)
}

fn declared(bp: &Entry<BlueprintSpec>) -> String {
    if bp.spec.params.is_empty() {
        "none".to_owned()
    } else {
        bp.spec
            .params
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn sensitive_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Secret names may hold letters, digits, `-`, `_` and `.`, and are never `.` or `..`.
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The environment variable consulted for a secret: `RINGOPS_SECRET_<NAME>`.
pub fn secret_env_name(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("RINGOPS_SECRET_{upper}")
}
