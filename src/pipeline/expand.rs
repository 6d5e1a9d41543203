//! Expand stage: workflows → flat jobs. Imports modules as `<step>.<inner>`, binds
//! channels, checks producers, consumers, cycles and crossings. Ring-independent.

use super::catalog::{Catalog, Entry, check_name};
use crate::model::manifest::{Channel, ModuleSpec, Placement, Step, Value, WorkflowSpec};
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
            diags.error(
                file,
                step.name.at,
                "duplicate-name",
                format!(
                    "step `{}` is already defined at line {}",
                    step.name.value, first.line
                ),
            );
            continue;
        }
        match (&step.blueprint, &step.module) {
            (Some(bp), None) => {
                if let Some(job) = direct_job(cat, file, step, bp, diags) {
                    wf.jobs.push(job);
                }
            }
            (None, Some(module)) => match cat.modules.get(module.value.as_str()) {
                Some(m) => import_module(&mut wf, step, file, *m, diags),
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
    bind_channels(cat, &mut wf, diags);
    check_cycles(&wf, diags);
    wf
}

fn declare_channels<'a>(
    file: &'a str,
    channels: &'a BTreeMap<String, Spanned<Channel>>,
    prefix: Option<&str>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, ChannelInfo<'a>> {
    channels
        .iter()
        .map(|(name, ch)| {
            check_name(file, &Spanned::new(name.clone(), ch.at), "channel", diags);
            let full = match prefix {
                Some(p) => format!("{p}.{name}"),
                None => name.clone(),
            };
            let info = ChannelInfo {
                transport: ch.value.transport.as_ref(),
                file,
                at: ch.at,
                producers: Vec::new(),
                consumers: Vec::new(),
                crossing: false,
            };
            (full, info)
        })
        .collect()
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
        inputs: refs(file, &step.inputs),
        outputs: refs(file, &step.outputs),
        file,
        at: step.name.at,
        sources: BTreeSet::from([file.to_owned()]),
    })
}

fn missing_placement(file: &str, step: &Step, diags: &mut Diagnostics) {
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

fn args(file: &str, with: &BTreeMap<String, Spanned<Value>>) -> BTreeMap<String, Arg> {
    with.iter()
        .map(|(k, v)| {
            let arg = Arg {
                value: v.value.clone(),
                file: file.to_owned(),
                at: v.at,
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

/// Expands a module imported by `step` into jobs named `<step>.<inner>`.
fn import_module<'a>(
    wf: &mut Expanded<'a>,
    step: &'a Step,
    wf_file: &'a str,
    module: Entry<'a, ModuleSpec>,
    diags: &mut Diagnostics,
) {
    let spec = module.spec;
    let mfile = module.file();
    let given = args(wf_file, &step.with);
    check_module_args(wf_file, step, spec, &given, diags);
    let ports = bind_ports(wf_file, step, spec, diags);
    let prefix = step.name.value.as_str();
    wf.channels
        .extend(declare_channels(mfile, &spec.channels, Some(prefix), diags));
    for inner in &spec.steps {
        check_name(mfile, &inner.name, "step", diags);
        if inner.module.is_some() || inner.blueprint.is_none() {
            diags.error(
                mfile,
                inner.name.at,
                "step-kind",
                "a module's step needs a `blueprint` (modules cannot import modules)",
            );
            continue;
        }
        let Some(placement) = inner.placement.as_ref().or(step.placement.as_ref()) else {
            missing_placement(wf_file, step, diags);
            continue;
        };
        // A port resolves to the importing step's channel, located where the step names it.
        let map_channel = |c: &'a Spanned<String>| -> ChannelRef<'a> {
            if let Some(bound) = ports.get(c.value.as_str()) {
                return ChannelRef {
                    name: bound.value.clone(),
                    file: wf_file,
                    at: bound.at,
                };
            }
            let name = if spec.channels.contains_key(&c.value) {
                format!("{prefix}.{}", c.value)
            } else {
                c.value.clone()
            };
            ChannelRef {
                name,
                file: mfile,
                at: c.at,
            }
        };
        wf.jobs.push(Job {
            name: format!("{prefix}.{}", inner.name.value),
            blueprint: inner.blueprint.as_ref().expect("checked above"),
            with: pass_params(mfile, &inner.with, spec, &given),
            placement,
            inputs: inner.inputs.iter().map(map_channel).collect(),
            outputs: inner.outputs.iter().map(map_channel).collect(),
            file: mfile,
            at: inner.name.at,
            sources: BTreeSet::from([wf_file.to_owned(), mfile.to_owned()]),
        });
    }
}

fn check_module_args(
    file: &str,
    step: &Step,
    spec: &ModuleSpec,
    given: &BTreeMap<String, Arg>,
    diags: &mut Diagnostics,
) {
    for (name, arg) in given {
        match spec.params.get(name) {
            None => diags.error(
                file,
                arg.at,
                "unknown-param",
                format!(
                    "unknown param `{name}` for module `{}`",
                    step.module.as_ref().map(|m| m.value.as_str()).unwrap_or("")
                ),
            ),
            Some(p) if !is_secret(&arg.value) && !p.kind.admits(&arg.value) => diags.error(
                file,
                arg.at,
                "wrong-param-type",
                format!("param `{name}` must be of type {}", p.kind.name()),
            ),
            Some(_) => {}
        }
    }
    for (name, p) in &spec.params {
        if p.required && !given.contains_key(name) {
            diags.error(
                file,
                step.name.at,
                "missing-param",
                format!(
                    "step `{}` is missing required param `{name}`",
                    step.name.value
                ),
            );
        }
    }
}

/// Maps module port names to the importing step's channels, positionally.
fn bind_ports<'a>(
    file: &str,
    step: &'a Step,
    spec: &ModuleSpec,
    diags: &mut Diagnostics,
) -> BTreeMap<String, &'a Spanned<String>> {
    let mut ports = BTreeMap::new();
    for (what, theirs, ours) in [
        ("inputs", &spec.inputs, &step.inputs),
        ("outputs", &spec.outputs, &step.outputs),
    ] {
        if theirs.len() != ours.len() {
            diags.error(
                file,
                step.name.at,
                "module-ports",
                format!(
                    "step `{}` gives {} {what} but module `{}` has {}",
                    step.name.value,
                    ours.len(),
                    step.module.as_ref().map(|m| m.value.as_str()).unwrap_or(""),
                    theirs.len()
                ),
            );
        }
        for (port, channel) in theirs.iter().zip(ours) {
            ports.insert(port.value.clone(), channel);
        }
    }
    ports
}

/// Replaces `{param: NAME}` values of a module's step with the importing step's values.
fn pass_params(
    mfile: &str,
    with: &BTreeMap<String, Spanned<Value>>,
    spec: &ModuleSpec,
    given: &BTreeMap<String, Arg>,
) -> BTreeMap<String, Arg> {
    let mut out = BTreeMap::new();
    for (key, value) in with {
        let arg = match param_ref(&value.value) {
            Some(p) => match given.get(p) {
                Some(arg) => arg.clone(),
                None => match spec.params.get(p).and_then(|s| s.default.as_ref()) {
                    Some(d) => Arg {
                        value: d.value.clone(),
                        file: mfile.to_owned(),
                        at: d.at,
                    },
                    None => continue,
                },
            },
            None => Arg {
                value: value.value.clone(),
                file: mfile.to_owned(),
                at: value.at,
            },
        };
        out.insert(key.clone(), arg);
    }
    out
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

/// Records producers and consumers; checks every channel is declared, fed and read.
fn bind_channels(cat: &Catalog, wf: &mut Expanded, diags: &mut Diagnostics) {
    for (i, job) in wf.jobs.iter().enumerate() {
        for (list, is_output) in [(&job.inputs, false), (&job.outputs, true)] {
            for channel in list {
                let name = &channel.name;
                match wf.channels.get_mut(name) {
                    Some(ch) if is_output => ch.producers.push(i),
                    Some(ch) => ch.consumers.push(i),
                    None => diags.error(
                        channel.file,
                        channel.at,
                        "unknown-channel",
                        format!(
                            "step `{}` uses channel `{name}`, which is not declared in `channels`",
                            job.name
                        ),
                    ),
                }
            }
        }
    }
    for (name, ch) in wf.channels.iter_mut() {
        if ch.producers.is_empty() {
            diags.error(
                ch.file,
                ch.at,
                "channel-producer",
                format!("channel `{name}` has no producer (no step lists it in `outputs`)"),
            );
        }
        if ch.consumers.is_empty() {
            diags.error(
                ch.file,
                ch.at,
                "channel-consumer",
                format!("channel `{name}` has no consumer (no step lists it in `inputs`)"),
            );
        }
        let groups = |jobs: &[usize]| -> BTreeSet<&str> {
            jobs.iter()
                .map(|&j| wf.jobs[j].placement.group.value.as_str())
                .collect()
        };
        let (from, to) = (groups(&ch.producers), groups(&ch.consumers));
        ch.crossing = from.union(&to).count() > 1;
        check_transport(cat, name, ch, (&from, &to), diags);
    }
}

fn check_transport(
    cat: &Catalog,
    name: &str,
    ch: &ChannelInfo,
    (from, to): (&BTreeSet<&str>, &BTreeSet<&str>),
    diags: &mut Diagnostics,
) {
    let list = |groups: &BTreeSet<&str>| {
        let names: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
        names.join(", ")
    };
    match ch.transport {
        Some(t) if !cat.transports.contains_key(t.value.as_str()) => {
            cat.unknown(diags, ch.file, t, "transport")
        }
        None if ch.crossing => diags.error(
            ch.file,
            ch.at,
            "channel-transport",
            format!(
                "channel `{name}` crosses worker groups (from {} to {}) but has no `transport`",
                list(from),
                list(to)
            ),
        ),
        _ => {}
    }
}

/// Reports a cycle in the step graph (producer → consumer), naming its steps.
fn check_cycles(wf: &Expanded, diags: &mut Diagnostics) {
    let n = wf.jobs.len();
    let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for ch in wf.channels.values() {
        for &p in &ch.producers {
            next[p].extend(ch.consumers.iter().copied());
        }
    }
    let mut state = vec![0u8; n];
    let mut stack = Vec::new();
    for start in 0..n {
        if let Some(cycle) = dfs(start, &next, &mut state, &mut stack) {
            let names: Vec<&str> = cycle.iter().map(|&j| wf.jobs[j].name.as_str()).collect();
            let first = &wf.jobs[cycle[0]];
            diags.error(
                first.file,
                first.at,
                "cycle",
                format!("workflow `{}` has a cycle: {}", wf.name, names.join(" → ")),
            );
            return;
        }
    }
}

fn dfs(
    node: usize,
    next: &[BTreeSet<usize>],
    state: &mut [u8],
    stack: &mut Vec<usize>,
) -> Option<Vec<usize>> {
    match state[node] {
        2 => return None,
        1 => {
            let from = stack.iter().position(|&j| j == node).unwrap_or(0);
            let mut cycle = stack[from..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        _ => {}
    }
    state[node] = 1;
    stack.push(node);
    for &m in &next[node] {
        if let Some(cycle) = dfs(m, next, state, stack) {
            return Some(cycle);
        }
    }
    stack.pop();
    state[node] = 2;
    None
}
