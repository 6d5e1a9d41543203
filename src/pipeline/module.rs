//! Module import for the expand stage: a step with `module: NAME` becomes the module's
//! steps, named `<step>.<inner>`, with the module's params and ports bound to what the
//! importing step gives.
//!
//! Owns the checks of an import (params, port counts, nested modules). It may not bind
//! channels to producers and consumers; that is [`super::channels`].

use super::catalog::Entry;
use super::channels::declare_channels;
use super::checks::check_name;
use super::expand::{
    Arg, ChannelRef, Expanded, Job, args, is_secret, missing_placement, param_ref,
};
use crate::model::Diagnostics;
use crate::model::Spanned;
use crate::model::manifest::{ModuleSpec, ParamType, Placement, Step, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One module being imported by one step.
struct Import<'a> {
    step: &'a Step,
    wf_file: &'a str,
    mfile: &'a str,
    spec: &'a ModuleSpec,
    /// The importing step's name: the prefix of the module's steps and channels.
    prefix: &'a str,
    /// Params the importing step gives.
    given: BTreeMap<String, Arg>,
    /// Module port name → the importing step's channel.
    ports: BTreeMap<String, &'a Spanned<String>>,
}

/// Expands a module imported by `step` into jobs named `<step>.<inner>`.
pub fn import_module<'a>(
    wf: &mut Expanded<'a>,
    step: &'a Step,
    wf_file: &'a str,
    module: Entry<'a, ModuleSpec>,
    diags: &mut Diagnostics,
) {
    let spec = module.spec;
    let given = args(wf_file, &step.with);
    check_module_args(wf_file, step, spec, &given, diags);
    let import = Import {
        step,
        wf_file,
        mfile: module.file(),
        spec,
        prefix: step.name.value.as_str(),
        given,
        ports: bind_ports(wf_file, step, spec, diags),
    };
    wf.channels.extend(declare_channels(
        import.mfile,
        &spec.channels,
        Some(import.prefix),
        diags,
    ));
    for inner in &spec.steps {
        if let Some(job) = import.job(inner, diags) {
            wf.jobs.push(job);
        }
    }
}

impl<'a> Import<'a> {
    /// The job of one of the module's steps, or `None` after a reported problem.
    fn job(&self, inner: &'a Step, diags: &mut Diagnostics) -> Option<Job<'a>> {
        check_name(self.mfile, &inner.name, "step", diags);
        let (Some(blueprint), None) = (&inner.blueprint, &inner.module) else {
            diags.error(
                self.mfile,
                inner.name.at,
                "step-kind",
                "a module's step needs a `blueprint` (modules cannot import modules)",
            );
            return None;
        };
        let Some(placement) = self.placement(inner) else {
            missing_placement(self.wf_file, self.step, diags);
            return None;
        };
        Some(Job {
            name: format!("{}.{}", self.prefix, inner.name.value),
            blueprint,
            with: pass_params(self.mfile, &inner.with, self.spec, &self.given),
            placement,
            inputs: inner.inputs.iter().map(|c| self.channel(c)).collect(),
            outputs: inner.outputs.iter().map(|c| self.channel(c)).collect(),
            file: self.mfile,
            at: inner.name.at,
            sources: BTreeSet::from([self.wf_file.to_owned(), self.mfile.to_owned()]),
        })
    }

    /// The inner step's placement, else the importing step's.
    fn placement(&self, inner: &'a Step) -> Option<&'a Placement> {
        inner.placement.as_ref().or(self.step.placement.as_ref())
    }

    /// A channel named by an inner step. A port resolves to the importing step's channel,
    /// located where the step names it; a channel the module declares gets the prefix.
    fn channel(&self, c: &'a Spanned<String>) -> ChannelRef<'a> {
        if let Some(bound) = self.ports.get(c.value.as_str()) {
            return ChannelRef {
                name: bound.value.clone(),
                file: self.wf_file,
                at: bound.at,
            };
        }
        let name = if self.spec.channels.contains_key(&c.value) {
            format!("{}.{}", self.prefix, c.value)
        } else {
            c.value.clone()
        };
        ChannelRef {
            name,
            file: self.mfile,
            at: c.at,
        }
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
                format!(
                    "param `{name}` must be of type {}, not {}",
                    p.kind.name(),
                    ParamType::of(&arg.value)
                ),
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
