//! Render stage: jobs placed on a ring's workers → artifacts, through minijinja with
//! strict undefined. The context holds no commit id and no time, so output depends only
//! on the manifests, the ring and the secrets.
//!
//! Owns the template context, ring overrides and where artifacts go. Templates are
//! compiled in [`super::template`], parameters resolved in [`super::params`], workers
//! chosen in [`super::place`] and the transport jobs of crossing channels set up in
//! [`super::crossing`]; this module may not change the catalog or the expanded workflows.

use super::catalog::{Catalog, Entry};
use super::expand::{Expanded, Job, args};
use super::params::{self, Params, SecretSource};
use super::place::{self, Slot};
use super::template::{Origin, Templates, error_pos, plain_cause, render_cause};
use crate::model::desired::{HookSpec, WorkerHook};
use crate::model::manifest::{Hook, RingSpec, With, WorkerGroupSpec};
use crate::model::{Artifact, DesiredState, Diagnostics, Spanned, Target, WorkerState};
use minijinja::value::Serde;
use minijinja::{Template, Value, context};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Renders one ring's desired state.
pub struct Renderer<'a> {
    /// The catalog.
    pub cat: &'a Catalog<'a>,
    /// Expanded workflows.
    pub workflows: &'a [Expanded<'a>],
    /// Compiled templates.
    pub templates: &'a Templates,
    /// Secret values (looked up from several threads).
    pub secrets: &'a (dyn SecretSource + Sync),
}

/// A job instance about to be rendered.
pub(super) struct Render<'r> {
    /// Workflow name.
    pub workflow: &'r str,
    /// Job name: `<step>`, `<step>.<inner>` or `_<channel>.<role>`.
    pub job: &'r str,
    /// Blueprint name.
    pub blueprint: &'r str,
    /// The worker (and replica) it renders for.
    pub slot: Slot<'r>,
    /// The step's `replicas`, if set.
    pub replicas: Option<u32>,
    /// The worker group.
    pub group: &'r str,
    /// Resolved parameters.
    pub params: &'r Params,
    /// Repository files the job is built from.
    pub sources: &'r BTreeSet<String>,
    /// `inputs` in the template context.
    pub inputs: Value,
    /// `outputs` in the template context.
    pub outputs: Value,
    /// `transport` in the template context (none for workflow jobs).
    pub transport: Value,
}

/// Where rendered artifacts and problems go for one workflow in one ring. Names of
/// workers live as long as the catalog (`'n`).
pub(super) struct Output<'o, 'n> {
    ring_value: &'o Value,
    workers: &'o BTreeMap<&'n str, Value>,
    /// Each group's workers in the ring.
    pool: &'o place::RingWorkers<'n>,
    ring_file: &'o str,
    files: bool,
    /// Artifacts in the order they were rendered: worker, path, artifact.
    rendered: Vec<(&'n str, String, Artifact)>,
    /// Problems found while rendering.
    pub diags: &'o mut Diagnostics,
}

/// What rendering one workflow gave.
type Part<'n> = (Vec<(&'n str, String, Artifact)>, Diagnostics);

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
        let pool = place::RingWorkers::new(self.cat, ring);
        // Workflows render independently, several at a time; their artifacts and
        // problems are then taken in workflow order, so the result is the same as one
        // by one.
        let parts: Vec<Part> = self
            .workflows
            .par_iter()
            .map(|wf| {
                let mut wf_diags = Diagnostics::default();
                let mut out = Output {
                    ring_value: &ring_value,
                    workers: &workers,
                    pool: &pool,
                    ring_file: ring_entry.file(),
                    files,
                    rendered: Vec::new(),
                    diags: &mut wf_diags,
                };
                self.workflow(wf, ring, ring_entry.spec, &mut out);
                (out.rendered, wf_diags)
            })
            .collect();
        collect_parts(&mut state, parts, diags);
        state
    }

    fn worker_states(&self, ring: &str) -> BTreeMap<String, WorkerState> {
        self.cat
            .workers
            .iter()
            .filter(|(_, w)| w.worker.ring.value == ring)
            .map(|(name, w)| {
                let target: Option<Target> =
                    w.worker.target.as_ref().and_then(|t| t.value.parse().ok());
                let agent = matches!(target, Some(Target::Agent { .. }));
                let state = WorkerState {
                    group: w.group.to_owned(),
                    address: w.worker.address.clone(),
                    target,
                    artifacts: BTreeMap::new(),
                    check: self.hook(w.group, agent, |g| &g.check),
                    reload: self.hook(w.group, agent, |g| &g.reload),
                };
                ((*name).to_owned(), state)
            })
            .collect()
    }

    /// A hook of `group` as the engine runs it on one worker (checked by the catalog):
    /// the agent hook's name on a worker reached through an `agent`, else the command.
    fn hook(
        &self,
        group: &str,
        agent: bool,
        which: impl Fn(&WorkerGroupSpec) -> &Option<Spanned<Hook>>,
    ) -> Option<WorkerHook> {
        let hook = which(self.cat.groups.get(group)?.spec).as_ref()?;
        if agent {
            let name = hook.hook.as_ref()?;
            return Some(WorkerHook::Named {
                hook: name.value.clone(),
            });
        }
        let timeout = hook
            .timeout
            .as_ref()
            .and_then(|t| humantime::parse_duration(&t.value).ok())
            .unwrap_or(super::checks::DEFAULT_HOOK_TIMEOUT);
        Some(WorkerHook::Command(HookSpec {
            command: hook.command.as_ref()?.value.clone(),
            timeout,
        }))
    }

    fn worker_values(&self, ring: &str) -> BTreeMap<&'a str, Value> {
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

    fn workflow(
        &self,
        wf: &'a Expanded<'a>,
        ring: &str,
        spec: &'a RingSpec,
        out: &mut Output<'_, 'a>,
    ) {
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
                self.crossing(wf, name, channel, &slots, ring, out);
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
        out: &mut Output<'_, 'a>,
    ) -> Option<Vec<Slot<'a>>> {
        let bp = self.cat.blueprints.get(job.blueprint.value.as_str())?;
        let mut with = job.with.clone();
        for o in overrides {
            with.extend(args(out.ring_file, o));
        }
        let owner = (job.file, job.at, job.name.as_str());
        let params = params::resolve(bp, &with, owner, self.secrets, out.diags);
        let slots = place::slots(
            self.cat, out.pool, wf.name, job, ring, !out.files, out.diags,
        );
        let group = &job.placement.group.value;
        place::check_features(self.cat, bp, group, job.file, job.blueprint.at, out.diags);
        let (params, slots) = (params?, slots?);
        let mut sources = job.sources.clone();
        sources.insert(bp.file().to_owned());
        let inputs = channel_list(wf, job.inputs.iter().map(|c| c.name.as_str()));
        let outputs = channel_list(wf, job.outputs.iter().map(|c| c.name.as_str()));
        let mut prepared = None;
        for slot in &slots {
            let r = Render {
                workflow: wf.name,
                job: &job.name,
                blueprint: &job.blueprint.value,
                slot: *slot,
                replicas: job.placement.replicas.as_ref().map(|r| r.value),
                group,
                params: &params,
                sources: &sources,
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                transport: Value::from(()),
            };
            if !out.files {
                continue;
            }
            let prepared = prepared.get_or_insert_with(|| self.prepare(&r, out.ring_file));
            self.render_prepared(&r, prepared, out);
        }
        Some(slots)
    }

    /// Renders every file of one job instance into its worker's artifacts.
    pub(super) fn render(&self, r: &Render, out: &mut Output) {
        if !out.files {
            return;
        }
        let prepared = self.prepare(r, out.ring_file);
        self.render_prepared(r, &prepared, out);
    }

    /// What every instance of the job `r` is an instance of shares.
    fn prepare(&self, r: &Render, ring_file: &str) -> Prepared<'_> {
        let Some(bp) = self.cat.blueprints.get(r.blueprint) else {
            return Prepared::default();
        };
        let group_file = self.cat.groups.get(r.group).map(|g| g.file());
        let files = bp
            .spec
            .files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let (template, origin) = self.templates.get(r.blueprint, i)?;
                let sources = artifact_sources(r, origin, group_file, ring_file);
                Some(PreparedFile {
                    template,
                    origin,
                    path: &file.path.value,
                    sources,
                })
            })
            .collect();
        Prepared {
            params: Value::from(Serde(&r.params.values)),
            redacted: r.params.redacted().map(|v| Value::from(Serde(&v))),
            hidden_digest: r.params.hidden_digest(),
            files,
        }
    }

    /// Renders every file of one job instance with what its job shares.
    fn render_prepared(&self, r: &Render, prepared: &Prepared, out: &mut Output) {
        let Some((&worker_name, worker)) = out.workers.get_key_value(r.slot.worker) else {
            return;
        };
        let dir = match r.slot.replica {
            Some(i) => format!("{}/{}.{i}", r.workflow, r.job),
            None => format!("{}/{}", r.workflow, r.job),
        };
        let ctx = render_context(r, &prepared.params, worker, out.ring_value);
        let shown_ctx = prepared
            .redacted
            .as_ref()
            .map(|v| render_context(r, v, worker, out.ring_value));
        for file in prepared.files.iter().flatten() {
            let PreparedFile {
                template,
                origin,
                path,
                sources,
            } = file;
            match render_capped(template, &ctx) {
                Ok(content) => {
                    let shown = shown_ctx
                        .as_ref()
                        .map(|c| render_capped(template, c).unwrap_or_else(|_| HIDDEN.to_owned()));
                    let artifact =
                        Artifact::new(content, sources.clone(), r.params.sensitive.clone())
                            .with_shown(shown, prepared.hidden_digest.clone());
                    out.rendered
                        .push((worker_name, format!("{dir}/{path}"), artifact));
                }
                Err(failure) => {
                    let message = render_error(r, path, &failure);
                    let (RenderFailure::Template(e) | RenderFailure::TooLarge(e)) = &failure;
                    out.diags.error(
                        &origin.file,
                        error_pos(origin, e),
                        "template-render",
                        message,
                    );
                }
            }
        }
    }
}

/// What a template sees: `params`, `step`, `workflow`, `worker`, `ring`, `inputs`,
/// `outputs` and `transport`.
fn render_context(r: &Render, params: &Value, worker: &Value, ring: &Value) -> Value {
    context! {
        params => params.clone(),
        step => context! { name => r.job, replica => r.slot.replica, replicas => r.replicas, group => r.group },
        workflow => context! { name => r.workflow },
        worker => worker,
        ring => ring,
        inputs => r.inputs.clone(),
        outputs => r.outputs.clone(),
        transport => r.transport.clone(),
    }
}

/// Every source a rendered file of a job is built from, sorted.
fn artifact_sources(
    r: &Render,
    origin: &Origin,
    group_file: Option<&str>,
    ring_file: &str,
) -> Vec<String> {
    let mut sources: BTreeSet<String> = r.sources.clone();
    sources.extend(origin.sources.iter().cloned());
    sources.insert(ring_file.to_owned());
    sources.extend(group_file.map(str::to_owned));
    sources.extend(r.params.secrets.iter().map(|s| format!("secret:{s}")));
    sources.into_iter().collect()
}

/// What all instances of one job share: its parameters as template values, the digest
/// of its hidden values, and each blueprint file's template, path and sources (`None`
/// for a file whose template did not compile).
#[derive(Default)]
struct Prepared<'t> {
    params: Value,
    redacted: Option<Value>,
    hidden_digest: Option<String>,
    files: Vec<Option<PreparedFile<'t>>>,
}

struct PreparedFile<'t> {
    template: Template<'t, 't>,
    origin: &'t Origin,
    path: &'t str,
    sources: Vec<String>,
}

/// Puts each workflow's artifacts into its workers' states, in workflow order (a later
/// artifact at the same path replaces an earlier one, as one by one), every worker's
/// several at a time; and every problem into `diags`.
fn collect_parts(state: &mut DesiredState, parts: Vec<Part>, diags: &mut Diagnostics) {
    let index: BTreeMap<&str, usize> = state
        .workers
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let mut per_worker: Vec<Vec<(String, Artifact)>> = index.keys().map(|_| Vec::new()).collect();
    for (rendered, wf_diags) in parts {
        for (worker, path, artifact) in rendered {
            if let Some(&i) = index.get(worker) {
                per_worker[i].push((path, artifact));
            }
        }
        for d in wf_diags.into_sorted() {
            diags.push(d);
        }
    }
    let mut states: Vec<&mut WorkerState> = state.workers.values_mut().collect();
    states
        .par_iter_mut()
        .zip(per_worker)
        .for_each(|(ws, artifacts)| ws.artifacts.extend(artifacts));
}

/// What a plan shows of an artifact whose redacted rendering failed.
const HIDDEN: &str = "(content hidden: it holds sensitive values)\n";

/// Most bytes one rendered file may have; a larger one is an error, not an allocation.
pub const MAX_ARTIFACT_BYTES: usize = 8 << 20;

/// Why a render failed; each with minijinja's error, which knows the line.
enum RenderFailure {
    Template(minijinja::Error),
    TooLarge(minijinja::Error),
}

/// Renders into a buffer that refuses to grow past [`MAX_ARTIFACT_BYTES`].
fn render_capped(template: &minijinja::Template, ctx: &Value) -> Result<String, RenderFailure> {
    let mut buffer = Capped::default();
    match template.render_captured_to(ctx, &mut buffer) {
        // minijinja writes only whole `str`s, so the bytes are UTF-8 (kept without a copy).
        Ok(_) => Ok(String::from_utf8(buffer.bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Err(e) if buffer.overflowed => Err(RenderFailure::TooLarge(e)),
        Err(e) => Err(RenderFailure::Template(e)),
    }
}

/// An output buffer that fails the write that would take it past the cap.
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + bytes.len() > MAX_ARTIFACT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("artifact too large"));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The message of a render error. For a job with hidden params only the kind of error
/// is given: its details could quote a transformed secret. The limits and an undefined
/// variable's name come from ringops and the template's text, so they are always given.
fn render_error(r: &Render, path: &str, failure: &RenderFailure) -> String {
    let cause = match failure {
        RenderFailure::TooLarge(_) => format!(
            "the output is larger than {} MiB: ringops stops a render at this limit so that a \
             template cannot fill the memory and the workers' disks",
            MAX_ARTIFACT_BYTES >> 20
        ),
        RenderFailure::Template(e) if r.params.hidden.is_empty() => render_cause(e),
        RenderFailure::Template(e) if plain_cause(e).is_some() => render_cause(e),
        RenderFailure::Template(e) => {
            format!(
                "{} (details hidden: the job has sensitive params)",
                e.kind()
            )
        }
    };
    format!(
        "cannot render blueprint `{}` file `{path}` for step `{}`: {cause}",
        r.blueprint, r.job
    )
}

/// The `inputs` or `outputs` of the template context: each channel with its transport
/// and whether it crosses worker groups.
pub(super) fn channel_list<'n>(wf: &Expanded, names: impl IntoIterator<Item = &'n str>) -> Value {
    let list: Vec<Value> = names
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
    Value::from(list)
}
