//! Expand stage: workflows → flat jobs. Imports modules as `<step>.<inner>`, binds
//! channels, checks producers, consumers, cycles and crossings. Ring-independent.
//!
//! Owns the expanded vocabulary ([`Expanded`], [`Job`], [`ChannelInfo`], [`Arg`]) and a
//! workflow's own steps; module import is in [`super::module`] and channel binding and
//! graph checks in [`super::channels`]. It may not look at rings or workers.

use super::catalog::{Catalog, Entry};
use super::channels::{bind_channels, check_cycles, declare_channels};
use super::checks::check_name;
use super::module::import_module;
use crate::model::manifest::{Placement, Step, Value, WorkflowSpec};
use crate::model::{Diagnostics, Pos, Spanned};
use std::collections::{BTreeMap, BTreeSet};

/// A parameter value with where it was written.
#[derive(Clone, Debug)]
pub struct Arg {
    /// The value (may still be a `{secret: NAME}` reference).
    pub value: Value,
    /// File it was written in.
    pub file: String,
    /// Position in that file.
    pub at: Pos,
    /// Passed through a module param marked `sensitive`: never shown.
    pub sensitive: bool,
}

/// One job of a workflow after module expansion: a step bound to a blueprint.
#[derive(Clone, Debug)]
pub struct Job<'a> {
    /// `<step>` or `<step>.<inner>`.
    pub name: String,
    /// Blueprint name.
    pub blueprint: &'a Spanned<String>,
    /// Parameters as given (before defaults and ring overrides).
    pub with: BTreeMap<String, Arg>,
    /// Where the job runs.
    pub placement: &'a Placement,
    /// File the placement was written in: the importing step's for a module's step
    /// that inherits it.
    pub placement_file: &'a str,
    /// Channels consumed.
    pub inputs: Vec<ChannelRef<'a>>,
    /// Channels produced.
    pub outputs: Vec<ChannelRef<'a>>,
    /// File of the step (the module's file for an inner step).
    pub file: &'a str,
    /// Position of the step's name.
    pub at: Pos,
    /// Repository files the job is built from (workflow, module).
    pub sources: BTreeSet<String>,
}

/// A channel named in a step's `inputs` or `outputs`, with where the name was written.
#[derive(Clone, Debug)]
pub struct ChannelRef<'a> {
    /// Expanded channel name.
    pub name: String,
    /// File the name was written in.
    pub file: &'a str,
    /// Position of the name.
    pub at: Pos,
}

/// A channel after expansion, with who produces and consumes it.
#[derive(Clone, Debug)]
pub struct ChannelInfo<'a> {
    /// Transport used when crossing groups.
    pub transport: Option<&'a Spanned<String>>,
    /// File where it was declared.
    pub file: &'a str,
    /// Where it was declared.
    pub at: Pos,
    /// Indexes of producing jobs.
    pub producers: Vec<usize>,
    /// Indexes of consuming jobs.
    pub consumers: Vec<usize>,
    /// Producers and consumers are in different worker groups.
    pub crossing: bool,
}

/// A workflow ready for placement and rendering.
#[derive(Clone, Debug)]
pub struct Expanded<'a> {
    /// Workflow name.
    pub name: &'a str,
    /// The workflow's entry.
    pub entry: Entry<'a, WorkflowSpec>,
    /// Jobs in manifest order.
    pub jobs: Vec<Job<'a>>,
    /// Channels by expanded name.
    pub channels: BTreeMap<String, ChannelInfo<'a>>,
}

/// Expands every workflow of the catalog.
pub fn expand_all<'a>(cat: &Catalog<'a>, diags: &mut Diagnostics) -> Vec<Expanded<'a>> {
    cat.workflows
        .iter()
        .map(|(name, entry)| expand(cat, name, *entry, diags))
        .collect()
}

fn expand<'a>(
    cat: &Catalog<'a>,
    name: &'a str,
    entry: Entry<'a, WorkflowSpec>,
    diags: &mut Diagnostics,
) -> Expanded<'a> {
    let file = entry.file();
    let mut wf = Expanded {
        name,
        entry,
        jobs: Vec::new(),
        channels: declare_channels(file, &entry.spec.channels, None, diags),
    };
    let mut seen = BTreeMap::new();
    for step in &entry.spec.steps {
        check_name(file, &step.name, "step", diags);
        if let Some(first) = seen.insert(step.name.value.as_str(), step.name.at) {
            duplicate_step(file, step, first, diags);
            continue;
        }
        add_step(cat, &mut wf, file, step, diags);
    }
    bind_channels(cat, &mut wf, diags);
    check_cycles(&wf, diags);
    wf
}

fn duplicate_step(file: &str, step: &Step, first: Pos, diags: &mut Diagnostics) {
    diags.error(
        file,
        step.name.at,
        "duplicate-name",
        format!(
            "step `{}` is already defined at line {}",
            step.name.value, first.line
        ),
    );
}

/// Adds the job of a `blueprint` step, or the jobs of a `module` step.
fn add_step<'a>(
    cat: &Catalog<'a>,
    wf: &mut Expanded<'a>,
    file: &'a str,
    step: &'a Step,
    diags: &mut Diagnostics,
) {
    match (&step.blueprint, &step.module) {
        (Some(bp), None) => {
            if let Some(job) = direct_job(cat, file, step, bp, diags) {
                wf.jobs.push(job);
            }
        }
        (None, Some(module)) => match cat.modules.get(module.value.as_str()) {
            Some(m) => import_module(wf, step, file, *m, diags),
            None => cat.unknown(diags, file, module, "module"),
        },
        _ => diags.error(
            file,
            step.name.at,
            "step-kind",
            format!(
                "step `{}` needs exactly one of `blueprint` or `module`",
                step.name.value
            ),
        ),
    }
}

fn direct_job<'a>(
    cat: &Catalog<'a>,
    file: &'a str,
    step: &'a Step,
    blueprint: &'a Spanned<String>,
    diags: &mut Diagnostics,
) -> Option<Job<'a>> {
    if !cat.blueprints.contains_key(blueprint.value.as_str()) {
        cat.unknown(diags, file, blueprint, "blueprint");
    }
    let Some(placement) = &step.placement else {
        missing_placement(file, step, diags);
        return None;
    };
    Some(Job {
        name: step.name.value.clone(),
        blueprint,
        with: args(file, &step.with),
        placement,
        placement_file: file,
        inputs: refs(file, &step.inputs),
        outputs: refs(file, &step.outputs),
        file,
        at: step.name.at,
        sources: BTreeSet::from([file.to_owned()]),
    })
}

/// Reports a step without `placement`.
pub(super) fn missing_placement(file: &str, step: &Step, diags: &mut Diagnostics) {
    diags.error(
        file,
        step.name.at,
        "missing-placement",
        format!(
            "step `{}` has no `placement` (which worker group runs it?)",
            step.name.value
        ),
    );
}

/// Parameters as written in `file`, with where each was written.
pub(super) fn args(file: &str, with: &BTreeMap<String, Spanned<Value>>) -> BTreeMap<String, Arg> {
    with.iter()
        .map(|(k, v)| {
            let arg = Arg {
                value: v.value.clone(),
                file: file.to_owned(),
                at: v.at,
                sensitive: false,
            };
            (k.clone(), arg)
        })
        .collect()
}

fn refs<'a>(file: &'a str, list: &'a [Spanned<String>]) -> Vec<ChannelRef<'a>> {
    list.iter()
        .map(|s| ChannelRef {
            name: s.value.clone(),
            file,
            at: s.at,
        })
        .collect()
}

/// The name in a `{param: NAME}` value.
pub fn param_ref(value: &Value) -> Option<&str> {
    single_key(value, "param")
}

/// The name in a `{secret: NAME}` value.
pub fn secret_ref(value: &Value) -> Option<&str> {
    single_key(value, "secret")
}

/// True for a `{secret: NAME}` value.
pub fn is_secret(value: &Value) -> bool {
    secret_ref(value).is_some()
}

fn single_key<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.get(key)?.as_str()
}
