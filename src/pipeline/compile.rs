//! The whole compiler: a [`Bundle`] and secrets → every ring's [`DesiredState`], or every
//! problem found. A bundle with any problem renders nothing.

use super::catalog::Catalog;
use super::expand::expand_all;
use super::load::load;
use super::params::SecretSource;
use super::render::Renderer;
use super::template::Templates;
use crate::model::manifest::{Document, Resource};
use crate::model::{Bundle, DesiredState, Diagnostic, Diagnostics};
use std::collections::{BTreeMap, BTreeSet};

/// Which rings to render.
#[derive(Clone, Copy, Debug)]
pub enum Rings<'r> {
    /// Every ring: what `validate` checks.
    All,
    /// One ring: what `plan` and `render` need. Other rings are still checked, not rendered.
    One(&'r str),
}

/// A compiled bundle.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Every ring the bundle defines, in name order.
    pub rings: Vec<String>,
    /// Desired states of the rendered rings.
    pub states: BTreeMap<String, DesiredState>,
}

/// Where a bundle's workflows are, as [`super::incremental`] needs to know it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Manifest files that hold workflows and nothing else, with those workflows' names.
    pub workflow_files: BTreeMap<String, Vec<String>>,
    /// Every workflow's name, with its file.
    pub workflows: BTreeMap<String, String>,
    /// Workflows that some ring's `overrides` name.
    pub overridden: BTreeSet<String>,
}

/// Compiles a bundle; returns every problem, sorted, if there is any.
pub fn compile(
    bundle: &Bundle,
    secrets: &(dyn SecretSource + Sync),
    which: Rings,
) -> Result<Compiled, Vec<Diagnostic>> {
    compile_with_inventory(bundle, secrets, which).0
}

/// [`compile`], and the bundle's [`Inventory`] (only meaningful when it compiled).
pub fn compile_with_inventory(
    bundle: &Bundle,
    secrets: &(dyn SecretSource + Sync),
    which: Rings,
) -> (Result<Compiled, Vec<Diagnostic>>, Inventory) {
    let mut diags = Diagnostics::default();
    let loaded = load(bundle, &mut diags);
    let cat = Catalog::build(&loaded, bundle, &mut diags);
    let inventory = inventory(&loaded.documents, &cat);
    let workflows = expand_all(&cat, &mut diags);
    let templates = Templates::compile(&cat, bundle, &mut diags);
    let renderer = Renderer {
        cat: &cat,
        workflows: &workflows,
        templates: &templates,
        secrets,
    };
    let mut compiled = Compiled {
        rings: cat.rings.keys().map(|r| (*r).to_owned()).collect(),
        states: BTreeMap::new(),
    };
    for ring in cat.rings.keys() {
        let wanted = match which {
            Rings::All => true,
            Rings::One(r) => r == *ring,
        };
        let state = renderer.ring(ring, wanted, &mut diags);
        if wanted {
            compiled.states.insert((*ring).to_owned(), state);
        }
    }
    let result = if diags.is_empty() {
        Ok(compiled)
    } else {
        Err(diags.into_sorted())
    };
    (result, inventory)
}

/// The [`Inventory`] of parsed documents.
fn inventory(documents: &[Document], cat: &Catalog) -> Inventory {
    let mut inv = Inventory::default();
    let mut mixed = BTreeSet::new();
    for doc in documents {
        if let Resource::Workflow(_) = doc.resource {
            inv.workflows
                .insert(doc.name().to_owned(), doc.file.clone());
            let names = inv.workflow_files.entry(doc.file.clone()).or_default();
            names.push(doc.name().to_owned());
        } else {
            mixed.insert(doc.file.as_str());
        }
    }
    inv.workflow_files
        .retain(|file, _| !mixed.contains(file.as_str()));
    inv.overridden = cat
        .rings
        .values()
        .flat_map(|r| &r.spec.overrides)
        .map(|o| o.workflow.value.clone())
        .collect();
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Artifact;

    const FLEET: &str = r#"
apiVersion: ringops/v1
kind: Ring
metadata: {name: dev}
spec:
  values: {level: debug}
  overrides:
    - {workflow: wf, step: pipe.b, with: {n: 7}}
---
apiVersion: ringops/v1
kind: WorkerGroup
metadata: {name: edge}
spec:
  workers:
    - {name: e1, ring: dev, address: 10.0.0.1}
---
apiVersion: ringops/v1
kind: WorkerGroup
metadata: {name: core}
spec:
  workers:
    - {name: c1, ring: dev, address: 10.0.0.2}
    - {name: c2, ring: dev, address: 10.0.0.3}
---
apiVersion: ringops/v1
kind: Blueprint
metadata: {name: job}
spec:
  params:
    n: {type: int, default: 1}
    key: {type: string, sensitive: true, default: ""}
  files:
    - path: job.conf
      template: |
        step={{ step.name }} n={{ params.n }} level={{ ring.values.level }} on={{ worker.name }}
        key={{ params.key }}
---
apiVersion: ringops/v1
kind: Blueprint
metadata: {name: send}
spec:
  files:
    - path: send.conf
      template: "to={% for r in transport.receivers %}{{ r.address }} {% endfor %}"
---
apiVersion: ringops/v1
kind: Transport
metadata: {name: http}
spec:
  sender: {blueprint: send}
  receiver: {blueprint: job}
---
apiVersion: ringops/v1
kind: Module
metadata: {name: pair}
spec:
  params: {n: {type: int, default: 3}}
  inputs: [in]
  channels: {mid: {}}
  steps:
    - {name: a, blueprint: job, with: {n: {param: n}}, inputs: [in], outputs: [mid]}
    - {name: b, blueprint: job, inputs: [mid]}
---
apiVersion: ringops/v1
kind: Workflow
metadata: {name: wf}
spec:
  channels: {raw: {transport: http}}
  steps:
    - {name: src, blueprint: job, with: {key: {secret: k}}, placement: {group: edge}, outputs: [raw]}
    - {name: pipe, module: pair, with: {n: 5}, placement: {group: core, replicas: 1}, inputs: [raw]}
"#;

    fn bundle(text: &str) -> Bundle {
        Bundle {
            files: BTreeMap::from([("fleet.yaml".to_owned(), text.as_bytes().to_vec())]),
            ..Bundle::default()
        }
    }

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([("k".to_owned(), "s3cret".to_owned())])
    }

    fn dev(text: &str) -> Result<DesiredState, Vec<Diagnostic>> {
        let mut c = compile(&bundle(text), &secrets(), Rings::One("dev"))?;
        Ok(c.states.remove("dev").unwrap_or_default())
    }

    #[test]
    fn modules_transports_overrides_and_secrets() {
        let state = dev(FLEET).unwrap();
        let e1 = &state.workers["e1"].artifacts;
        assert_eq!(
            e1.keys().collect::<Vec<_>>(),
            ["wf/_raw.sender/send.conf", "wf/src/job.conf"]
        );
        let src = &e1["wf/src/job.conf"];
        assert!(src.content.contains("key=s3cret"));
        assert_eq!(src.sensitive, ["s3cret"]);
        assert!(src.sources.contains(&"secret:k".to_owned()));
        let receivers = &e1["wf/_raw.sender/send.conf"].content;
        let pipe_a: Vec<&str> = state
            .workers
            .iter()
            .filter(|(_, w)| w.artifacts.contains_key("wf/pipe.a.0/job.conf"))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(pipe_a.len(), 1);
        let address = state.workers[pipe_a[0]].address.clone().unwrap();
        assert_eq!(&**receivers, format!("to={address} "));
        let all: Vec<&Artifact> = state
            .workers
            .values()
            .flat_map(|w| w.artifacts.values())
            .collect();
        let a = all
            .iter()
            .find(|a| a.content.starts_with("step=pipe.a"))
            .unwrap();
        assert!(
            a.content.contains(" n=5 "),
            "module param passed through: {}",
            a.content
        );
        let b = all
            .iter()
            .find(|a| a.content.starts_with("step=pipe.b"))
            .unwrap();
        assert!(
            b.content.contains(" n=7 "),
            "ring override applied: {}",
            b.content
        );
    }

    #[test]
    fn compiling_twice_is_byte_identical() {
        assert_eq!(dev(FLEET).unwrap(), dev(FLEET).unwrap());
    }

    #[test]
    fn a_runaway_template_is_an_error_not_a_hang() {
        let text = FLEET.replace(
            "key={{ params.key }}",
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
        );
        let diags = dev(&text).unwrap_err();
        assert!(
            diags.iter().any(|d| d.code == "template-render"),
            "{diags:?}"
        );
    }

    #[test]
    fn an_oversized_artifact_is_an_error_not_an_allocation() {
        let text = FLEET.replace(
            "key={{ params.key }}",
            "{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}",
        );
        let diags = dev(&text).unwrap_err();
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("larger than 8 MiB")),
            "{diags:?}"
        );
    }

    #[test]
    fn render_errors_of_jobs_with_secrets_hide_their_details() {
        let text = FLEET.replace("key={{ params.key }}", "{{ params.key | int }}{{ nope }}");
        let diags = dev(&text).unwrap_err();
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages.iter().all(|m| !m.contains("s3cret")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("details hidden")),
            "{messages:?}"
        );
    }

    /// The name of an undefined variable comes from the template's text, so it is given
    /// even for a job with secrets; a key computed from a secret is not shown.
    #[test]
    fn an_undefined_variable_is_named_also_in_a_job_with_secrets() {
        for (template, named) in [
            ("{{ params.retentoin_days }}", "params.retentoin_days"),
            ("{{ params[params.key] }}", "params[...]"),
        ] {
            let text = FLEET.replace("key={{ params.key }}", template);
            let diags = dev(&text).unwrap_err();
            let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
            let expected = format!("undefined variable {named}");
            assert!(
                messages.iter().any(|m| m.ends_with(&expected)),
                "{messages:?}"
            );
            assert!(
                messages.iter().all(|m| !m.contains("s3cret")),
                "{messages:?}"
            );
        }
    }

    #[test]
    fn channel_names_cannot_make_paths() {
        let text = FLEET.replace("raw", "../../x");
        let diags = dev(&text).unwrap_err();
        assert!(diags.iter().any(|d| d.code == "invalid-name"), "{diags:?}");
    }

    #[test]
    fn errors_are_all_reported_and_nothing_renders() {
        let text = FLEET
            .replace("blueprint: send", "blueprint: nope")
            .replace("{n: 7}", "{n: seven}");
        let diags = dev(&text).unwrap_err();
        let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"unknown-blueprint"), "{codes:?}");
        assert!(codes.contains(&"wrong-param-type"), "{codes:?}");
    }
}
