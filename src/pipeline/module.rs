//! Module import for the expand stage: a step with `module: NAME` becomes the module's
//! steps, named `<step>.<inner>`, with the module's params and ports bound to what the
//! importing step gives.
//!
//! Owns the checks of a module on its own ([`check_module`]: names, duplicates,
//! `{param: NAME}` references, the channels its steps name) and of an import (params,
//! port counts, nested modules). It may not bind channels to producers and consumers;
//! that is [`super::channels`].

use super::catalog::Entry;
use super::channels::declare_channels;
use super::checks::check_name;
use super::expand::{
    Arg, ChannelRef, Expanded, Job, args, is_secret, missing_placement, param_ref,
};
use crate::model::manifest::{ModuleSpec, ParamType, Placement, Step, Value};
use crate::model::{Diagnostics, Pos, Spanned};
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
    let mut seen = BTreeSet::new();
    for inner in &spec.steps {
        // A second step of the same name is reported by `check_module`.
        if !seen.insert(inner.name.value.as_str()) {
            continue;
        }
        if let Some(job) = import.job(inner, diags) {
            wf.jobs.push(job);
        }
    }
}

/// Checks a module once, whether or not a step imports it: port and step names are
/// valid and unique, `{param: NAME}` values name declared params, and every channel a
/// step names is a port or one of the module's `channels`.
pub fn check_module(file: &str, name: &str, spec: &ModuleSpec, diags: &mut Diagnostics) {
    check_ports(file, spec, diags);
    let mut seen = BTreeMap::new();
    for step in &spec.steps {
        check_name(file, &step.name, "step", diags);
        if let Some(first) = seen.insert(step.name.value.as_str(), step.name.at) {
            duplicate(file, &step.name, "step", first, diags);
        }
        check_param_refs(file, name, spec, step, diags);
        check_step_channels(file, name, spec, step, diags);
    }
}

/// Port names are valid, unique over `inputs` and `outputs`, and not also a channel.
fn check_ports(file: &str, spec: &ModuleSpec, diags: &mut Diagnostics) {
    let mut seen = BTreeMap::new();
    for port in spec.inputs.iter().chain(&spec.outputs) {
        check_name(file, port, "port", diags);
        if let Some(first) = seen.insert(port.value.as_str(), port.at) {
            duplicate(file, port, "port", first, diags);
        } else if let Some(channel) = spec.channels.get(&port.value) {
            diags.error(
                file,
                port.at,
                "duplicate-name",
                format!(
                    "port `{}` is also a channel in `channels` (line {}): give one of them another name",
                    port.value, channel.at.line
                ),
            );
        }
    }
}

fn duplicate(file: &str, name: &Spanned<String>, what: &str, first: Pos, diags: &mut Diagnostics) {
    diags.error(
        file,
        name.at,
        "duplicate-name",
        format!(
            "{what} `{}` is already defined at line {}",
            name.value, first.line
        ),
    );
}

/// Reports `{param: NAME}` values naming a param the module does not declare.
fn check_param_refs(
    file: &str,
    module: &str,
    spec: &ModuleSpec,
    step: &Step,
    diags: &mut Diagnostics,
) {
    for value in step.with.values() {
        let Some(p) = param_ref(&value.value) else {
            continue;
        };
        if spec.params.contains_key(p) {
            continue;
        }
        let declared: Vec<&str> = spec.params.keys().map(String::as_str).collect();
        let hint = if declared.is_empty() {
            "it declares no params".to_owned()
        } else {
            format!("declared: {}", declared.join(", "))
        };
        diags.error(
            file,
            value.at,
            "unknown-param",
            format!("module `{module}` has no param `{p}` ({hint})"),
        );
    }
}

/// Reports channels a module's step names that are neither a port nor an internal
/// channel: they would otherwise bind to a workflow channel of the same name.
fn check_step_channels(
    file: &str,
    module: &str,
    spec: &ModuleSpec,
    step: &Step,
    diags: &mut Diagnostics,
) {
    for c in step.inputs.iter().chain(&step.outputs) {
        let is_port = spec
            .inputs
            .iter()
            .chain(&spec.outputs)
            .any(|p| p.value == c.value);
        if !is_port && !spec.channels.contains_key(&c.value) {
            diags.error(
                file,
                c.at,
                "unknown-channel",
                format!(
                    "module `{module}` step `{}` uses channel `{}`, which is neither a port \
                     (inputs/outputs) nor in the module's `channels`",
                    step.name.value, c.value
                ),
            );
        }
    }
}

impl<'a> Import<'a> {
    /// The job of one of the module's steps, or `None` after a reported problem.
    fn job(&self, inner: &'a Step, diags: &mut Diagnostics) -> Option<Job<'a>> {
        let (Some(blueprint), None) = (&inner.blueprint, &inner.module) else {
            diags.error(
                self.mfile,
                inner.name.at,
                "step-kind",
                "a module's step needs a `blueprint` (modules cannot import modules)",
            );
            return None;
        };
        let Some((placement, placement_file)) = self.placement(inner) else {
            missing_placement(self.wf_file, self.step, diags);
            return None;
        };
        Some(Job {
            name: format!("{}.{}", self.prefix, inner.name.value),
            blueprint,
            with: pass_params(self.mfile, &inner.with, self.spec, &self.given),
            placement,
            placement_file,
            inputs: inner
                .inputs
                .iter()
                .filter_map(|c| self.channel(c))
                .collect(),
            outputs: inner
                .outputs
                .iter()
                .filter_map(|c| self.channel(c))
                .collect(),
            file: self.mfile,
            at: inner.name.at,
            sources: BTreeSet::from([self.wf_file.to_owned(), self.mfile.to_owned()]),
        })
    }

    /// The inner step's placement, else the importing step's; with the file it is in.
    fn placement(&self, inner: &'a Step) -> Option<(&'a Placement, &'a str)> {
        let own = inner.placement.as_ref().map(|p| (p, self.mfile));
        own.or_else(|| self.step.placement.as_ref().map(|p| (p, self.wf_file)))
    }

    /// A channel named by an inner step. A port resolves to the importing step's channel,
    /// located where the step names it; a channel the module declares gets the prefix.
    /// Anything else is `None`: never the workflow's channel of the same name. An unknown
    /// name is reported by [`check_module`], an unbound port by the port count check.
    fn channel(&self, c: &'a Spanned<String>) -> Option<ChannelRef<'a>> {
        if let Some(bound) = self.ports.get(c.value.as_str()) {
            return Some(ChannelRef {
                name: bound.value.clone(),
                file: self.wf_file,
                at: bound.at,
            });
        }
        self.spec
            .channels
            .contains_key(&c.value)
            .then(|| ChannelRef {
                name: format!("{}.{}", self.prefix, c.value),
                file: self.mfile,
                at: c.at,
            })
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

/// Replaces `{param: NAME}` values of a module's step with the importing step's values,
/// else the module param's default. Dropped (so the blueprint's default applies): an
/// optional param given no value and without default, and an undeclared name, which
/// [`check_module`] reports.
fn pass_params(
    mfile: &str,
    with: &BTreeMap<String, Spanned<Value>>,
    spec: &ModuleSpec,
    given: &BTreeMap<String, Arg>,
) -> BTreeMap<String, Arg> {
    let mut out = BTreeMap::new();
    for (key, value) in with {
        let arg = match param_ref(&value.value) {
            Some(p) => {
                let Some(declared) = spec.params.get(p) else {
                    continue;
                };
                let sensitive = declared.sensitive;
                let arg = match given.get(p) {
                    Some(arg) => arg.clone(),
                    None => match declared.default.as_ref() {
                        Some(d) => Arg {
                            value: d.value.clone(),
                            file: mfile.to_owned(),
                            at: d.at,
                            sensitive,
                        },
                        None => continue,
                    },
                };
                Arg {
                    sensitive: arg.sensitive || sensitive,
                    ..arg
                }
            }
            None => Arg {
                value: value.value.clone(),
                file: mfile.to_owned(),
                at: value.at,
                sensitive: false,
            },
        };
        out.insert(key.clone(), arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Resource;
    use crate::pipeline::load::{Loaded, parse_file};

    /// `check_module`'s errors for a module spec written as YAML.
    fn check(spec: &str) -> Vec<String> {
        let text =
            format!("apiVersion: ringops/v1\nkind: Module\nmetadata: {{name: m}}\nspec:\n{spec}");
        let (mut loaded, mut diags) = (Loaded::default(), Diagnostics::default());
        parse_file("m.yaml", &text, &mut loaded, &mut diags);
        let Resource::Module(module) = &loaded.documents[0].resource else {
            panic!("not a module: {:?}", diags.into_sorted())
        };
        check_module("m.yaml", "m", module, &mut diags);
        diags
            .into_sorted()
            .into_iter()
            .map(|d| format!("{}:{} {} {}", d.line, d.col, d.code, d.message))
            .collect()
    }

    #[test]
    fn a_sound_module_has_no_errors() {
        let errors = check(
            "  params: {a: {type: int}}\n  inputs: [i]\n  outputs: [o]\n  channels: {c: {}}\n\
             \x20 steps:\n    - {name: s, blueprint: b, with: {x: {param: a}}, inputs: [i], outputs: [c]}\n\
             \x20   - {name: t, blueprint: b, inputs: [c], outputs: [o]}\n",
        );
        assert_eq!(errors, Vec::<String>::new());
    }

    #[test]
    fn param_references_must_be_declared() {
        let errors = check(
            "  params: {a: {type: int}}\n  steps:\n    - {name: s, blueprint: b, with: {x: {param: z}}}\n",
        );
        assert_eq!(
            errors,
            ["7:41 unknown-param module `m` has no param `z` (declared: a)"]
        );
        let errors = check("  steps:\n    - {name: s, blueprint: b, with: {x: {param: z}}}\n");
        assert_eq!(
            errors,
            ["6:41 unknown-param module `m` has no param `z` (it declares no params)"]
        );
    }

    #[test]
    fn ports_are_valid_unique_and_not_channels() {
        let errors =
            check("  inputs: [i, Bad]\n  outputs: [i, c]\n  channels: {c: {}}\n  steps: []\n");
        assert_eq!(
            errors,
            [
                "5:15 invalid-name invalid port name `Bad`: use lowercase letters, digits and `-` (at most 63)",
                "6:13 duplicate-name port `i` is already defined at line 5",
                "6:16 duplicate-name port `c` is also a channel in `channels` (line 7): give one of them another name",
            ]
        );
    }

    #[test]
    fn steps_are_unique_and_name_only_their_module_s_channels() {
        let errors = check(
            "  inputs: [i]\n  steps:\n    - {name: s, blueprint: b, inputs: [i]}\n\
             \x20   - {name: s, blueprint: b, outputs: [w]}\n",
        );
        assert_eq!(
            errors,
            [
                "8:14 duplicate-name step `s` is already defined at line 7",
                "8:41 unknown-channel module `m` step `s` uses channel `w`, which is neither a port (inputs/outputs) nor in the module's `channels`",
            ]
        );
    }
}
