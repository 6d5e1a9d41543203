//! Parameter resolution for the render stage: a job's `with` values checked against its
//! blueprint (known names, types, required params), defaults filled in and `{secret: NAME}`
//! references replaced through a [`SecretSource`]. Values that must not be shown are
//! collected so that artifacts and messages can hide them.
//!
//! Owns [`SecretSource`] and secret naming. It may not read secrets itself (that is the
//! edge, `adapters::secrets`) and does not render templates.

use super::catalog::Entry;
use super::expand::{Arg, secret_ref};
use crate::model::manifest::{BlueprintSpec, ParamSpec, ParamType, Value};
use crate::model::{Diagnostics, Pos};
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

/// Parameters of a job after defaults, overrides and secrets.
#[derive(Default)]
pub(super) struct Params {
    /// Values by param name.
    pub values: BTreeMap<String, Value>,
    /// Texts to hide: secret values and values of `sensitive` params, sorted.
    pub sensitive: Vec<String>,
    /// Names of the secrets used.
    pub secrets: Vec<String>,
    /// Names of the params whose values are hidden (secrets and sensitive params).
    pub hidden: BTreeSet<String>,
}

/// What a hidden string param renders as when a plan shows an artifact.
pub const PLACEHOLDER: &str = "(sensitive value)";

impl Params {
    /// The values with every hidden param replaced by a placeholder of its type, or
    /// `None` when nothing is hidden. Plans show artifacts rendered from these, so a
    /// secret never reaches a plan, however a template transforms it.
    pub fn redacted(&self) -> Option<BTreeMap<String, Value>> {
        if self.hidden.is_empty() {
            return None;
        }
        let mut values = self.values.clone();
        for name in &self.hidden {
            if let Some(v) = values.get_mut(name) {
                *v = placeholder(v);
            }
        }
        Some(values)
    }

    /// A digest of the hidden values, compared between two sides of a plan to say that
    /// a hidden value changed without showing it. Never printed.
    pub fn hidden_digest(&self) -> Option<String> {
        if self.hidden.is_empty() {
            return None;
        }
        let hidden: BTreeMap<&String, &Value> = self
            .values
            .iter()
            .filter(|(name, _)| self.hidden.contains(*name))
            .collect();
        let text = serde_json::to_string(&hidden).unwrap_or_default();
        Some(crate::model::desired::sha256_hex(text.as_bytes()))
    }

    fn hide(&mut self, name: &str, value: &Value) {
        self.hidden.insert(name.to_owned());
        self.sensitive.extend(sensitive_texts(value));
    }
}

/// A value of the same type that reveals nothing.
fn placeholder(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::String(PLACEHOLDER.to_owned()),
        Value::Number(n) if n.is_f64() => serde_json::json!(0.0),
        Value::Number(_) => serde_json::json!(0),
        Value::Bool(_) => Value::Bool(false),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(serde_json::Map::new()),
        Value::Null => Value::Null,
    }
}

/// The job whose parameters are resolved: its file, position and name.
pub(super) type Owner<'o> = (&'o str, Pos, &'o str);

/// Resolves a job's parameters against its blueprint: types, required, defaults, secrets.
/// Returns `None` when any problem was reported.
pub(super) fn resolve(
    bp: &Entry<BlueprintSpec>,
    with: &BTreeMap<String, Arg>,
    owner: Owner,
    secrets: &dyn SecretSource,
    diags: &mut Diagnostics,
) -> Option<Params> {
    let mut params = Params::default();
    let mut ok = true;
    for (name, arg) in with {
        match given(bp, name, arg, secrets, &mut params, diags) {
            Some(value) => {
                params.values.insert(name.clone(), value);
            }
            None => ok = false,
        }
    }
    ok &= fill_defaults(bp, with, owner, &mut params, diags);
    // Short texts would mask unrelated lines; the redacted render already hides them.
    params.sensitive.retain(|s| s.len() >= 4);
    params.sensitive.sort();
    params.sensitive.dedup();
    ok.then_some(params)
}

/// The checked value of one given param, with its secret resolved; `None` after a problem.
fn given(
    bp: &Entry<BlueprintSpec>,
    name: &str,
    arg: &Arg,
    secrets: &dyn SecretSource,
    params: &mut Params,
    diags: &mut Diagnostics,
) -> Option<Value> {
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
        return None;
    };
    let (value, secret) = match secret_ref(&arg.value) {
        Some(secret) => {
            let v = lookup(secrets, secret, arg, diags)?;
            params.secrets.push(secret.to_owned());
            (Value::String(v), true)
        }
        None => (arg.value.clone(), false),
    };
    check_type(bp, name, spec, arg, &value, diags)?;
    if secret || spec.sensitive || arg.sensitive {
        params.hide(name, &value);
    }
    Some(value)
}

fn check_type(
    bp: &Entry<BlueprintSpec>,
    name: &str,
    spec: &ParamSpec,
    arg: &Arg,
    value: &Value,
    diags: &mut Diagnostics,
) -> Option<()> {
    if spec.kind.admits(value) {
        return Some(());
    }
    diags.error(
        &arg.file,
        arg.at,
        "wrong-param-type",
        format!(
            "param `{name}` of blueprint `{}` must be of type {}, not {}",
            bp.doc.name(),
            spec.kind.name(),
            ParamType::of(value)
        ),
    );
    None
}

/// Adds the defaults of params not given; false when a required one is missing.
fn fill_defaults(
    bp: &Entry<BlueprintSpec>,
    with: &BTreeMap<String, Arg>,
    (file, at, job): Owner,
    params: &mut Params,
    diags: &mut Diagnostics,
) -> bool {
    let mut ok = true;
    for (name, spec) in &bp.spec.params {
        if params.values.contains_key(name) || with.contains_key(name) {
            continue;
        }
        match &spec.default {
            Some(d) => {
                if spec.sensitive {
                    params.hide(name, &d.value);
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
    ok
}

/// The value of secret `name`, or a diagnostic at `arg` saying why there is none.
fn lookup(
    secrets: &dyn SecretSource,
    name: &str,
    arg: &Arg,
    diags: &mut Diagnostics,
) -> Option<String> {
    if !is_valid_secret_name(name) {
        diags.error(
            &arg.file,
            arg.at,
            "secret-name",
            format!("invalid secret name `{name}`: use letters, digits, `-`, `_` and `.`"),
        );
        return None;
    }
    let value = secrets.secret(name);
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

/// The texts by which a hidden value could show up in a line: each scalar, and each line
/// of a multi-line string.
fn sensitive_texts(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if s.contains('\n') => std::iter::once(s.clone())
            .chain(
                s.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 4)
                    .map(str::to_owned),
            )
            .collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().flat_map(sensitive_texts).collect(),
        Value::Object(map) => map.values().flat_map(sensitive_texts).collect(),
        other => vec![other.to_string()],
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
