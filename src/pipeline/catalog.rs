//! Index stage: documents → a [`Catalog`] by kind and name, with every check that needs
//! only one document or a name lookup (duplicates, names, references, rings, workers, paths).
//!
//! Owns the catalog and the checks that need lookups in it; checks of a single value
//! (names, targets, durations, paths) are in [`super::checks`]. It may not expand
//! workflows or look at rendering.

use super::checks::{
    check_approvals, check_artifact_path, check_artifact_paths_apart, check_duration, check_hook,
    check_hook_reach, check_name, check_params, check_target, check_template_source, check_window,
    ring_durations,
};
use super::load::Loaded;
use super::module::check_module;
use crate::model::manifest::{
    BlueprintSpec, Document, ModuleSpec, Resource, RingSpec, TransportSpec, Worker,
    WorkerGroupSpec, WorkflowSpec,
};
use crate::model::{Bundle, Diagnostics, Pos, Spanned};
use std::collections::{BTreeMap, BTreeSet};

/// A document together with its typed spec.
#[derive(Debug)]
pub struct Entry<'a, S> {
    /// The document.
    pub doc: &'a Document,
    /// Its spec.
    pub spec: &'a S,
}

impl<S> Clone for Entry<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Entry<'_, S> {}

impl<'a, S> Entry<'a, S> {
    /// The file holding the document.
    pub fn file(&self) -> &'a str {
        &self.doc.file
    }
}

/// A worker with the group it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct WorkerEntry<'a> {
    /// The worker group's name.
    pub group: &'a str,
    /// The group's document.
    pub doc: &'a Document,
    /// The worker.
    pub worker: &'a Worker,
}

/// Every resource of a bundle by kind and name.
#[derive(Debug, Default)]
pub struct Catalog<'a> {
    /// Rings by name.
    pub rings: BTreeMap<&'a str, Entry<'a, RingSpec>>,
    /// Worker groups by name.
    pub groups: BTreeMap<&'a str, Entry<'a, WorkerGroupSpec>>,
    /// Workflows by name.
    pub workflows: BTreeMap<&'a str, Entry<'a, WorkflowSpec>>,
    /// Blueprints by name.
    pub blueprints: BTreeMap<&'a str, Entry<'a, BlueprintSpec>>,
    /// Modules by name.
    pub modules: BTreeMap<&'a str, Entry<'a, ModuleSpec>>,
    /// Transports by name.
    pub transports: BTreeMap<&'a str, Entry<'a, TransportSpec>>,
    /// Workers by name, over all groups.
    pub workers: BTreeMap<&'a str, WorkerEntry<'a>>,
    /// `(kind, name)` of documents that failed to parse: references to them are not
    /// reported again.
    pub broken: BTreeSet<(String, String)>,
}

impl<'a> Catalog<'a> {
    /// Indexes documents and checks what one document or a name lookup can tell.
    pub fn build(loaded: &'a Loaded, bundle: &Bundle, diags: &mut Diagnostics) -> Self {
        let docs = &loaded.documents;
        let mut cat = Catalog {
            broken: loaded.broken.clone(),
            ..Catalog::default()
        };
        for doc in docs {
            check_name(&doc.file, &doc.metadata.name, doc.resource.kind(), diags);
            cat.insert(doc, diags);
        }
        cat.index_workers(diags);
        cat.check_rings(diags);
        cat.check_blueprints(bundle, diags);
        cat.check_modules(diags);
        cat.check_transports(diags);
        cat
    }

    fn insert(&mut self, doc: &'a Document, diags: &mut Diagnostics) {
        let name = doc.name();
        let first = match &doc.resource {
            Resource::Ring(s) => insert(&mut self.rings, name, doc, s),
            Resource::WorkerGroup(s) => insert(&mut self.groups, name, doc, s),
            Resource::Workflow(s) => insert(&mut self.workflows, name, doc, s),
            Resource::Blueprint(s) => insert(&mut self.blueprints, name, doc, s),
            Resource::Module(s) => insert(&mut self.modules, name, doc, s),
            Resource::Transport(s) => insert(&mut self.transports, name, doc, s),
        };
        if let Some(first) = first {
            diags.error(
                &doc.file,
                doc.metadata.name.at,
                "duplicate-name",
                format!(
                    "{} `{name}` is already defined at {}:{}",
                    doc.resource.kind(),
                    first.file,
                    first.metadata.name.at.line
                ),
            );
        }
    }

    fn index_workers(&mut self, diags: &mut Diagnostics) {
        let groups: Vec<(&'a str, Entry<'a, WorkerGroupSpec>)> =
            self.groups.iter().map(|(k, v)| (*k, *v)).collect();
        let mut targets: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for (group, entry) in groups {
            let hooks = [("check", &entry.spec.check), ("reload", &entry.spec.reload)];
            for (which, hook) in hooks {
                if let Some(hook) = hook {
                    check_hook(entry.file(), hook, diags);
                    let workers = &entry.spec.workers;
                    check_hook_reach(entry.file(), (group, which), hook, workers, diags);
                }
            }
            for worker in &entry.spec.workers {
                check_name(entry.file(), &worker.name, "worker", diags);
                if !self.rings.contains_key(worker.ring.value.as_str()) {
                    self.unknown(diags, entry.file(), &worker.ring, "ring");
                }
                if let Some(target) = &worker.target {
                    check_target(entry.file(), target, diags);
                    let key = target.value.trim_end_matches('/');
                    let here = (worker.name.value.as_str(), entry.file());
                    if let Some((other, file)) = targets.insert(key, here) {
                        diags.error(
                            entry.file(),
                            target.at,
                            "duplicate-target",
                            format!(
                                "worker `{}` has the same target as worker `{other}` ({file}): each worker needs a directory of its own",
                                worker.name.value
                            ),
                        );
                    }
                }
                let new = WorkerEntry {
                    group,
                    doc: entry.doc,
                    worker,
                };
                if let Some(old) = self.workers.insert(&worker.name.value, new) {
                    diags.error(
                        entry.file(),
                        worker.name.at,
                        "duplicate-name",
                        format!(
                            "worker `{}` is already defined at {}:{}",
                            worker.name.value, old.doc.file, old.worker.name.at.line
                        ),
                    );
                }
            }
        }
    }

    fn check_rings(&self, diags: &mut Diagnostics) {
        for (name, ring) in &self.rings {
            let file = ring.file();
            if let Some(from) = &ring.spec.promotes_from {
                if ring.spec.auto_deploy {
                    diags.error(
                        file,
                        from.at,
                        "auto-deploy-promoted-ring",
                        format!(
                            "ring `{name}` has `autoDeploy: true` but receives only what ring `{}` ran (`promotesFrom`): remove `autoDeploy` and move it on with `ringops promote {name}`",
                            from.value
                        ),
                    );
                }
                if !self.rings.contains_key(from.value.as_str()) {
                    self.unknown(diags, file, from, "ring");
                } else if self.promotion_cycle(name) {
                    diags.error(
                        file,
                        from.at,
                        "ring-cycle",
                        format!("ring `{name}` promotes from itself through `promotesFrom`"),
                    );
                }
            }
            for duration in ring_durations(ring.spec) {
                check_duration(file, duration, diags);
            }
            if let Some(approvals) = &ring.spec.approvals {
                check_approvals(file, approvals, diags);
            }
            if let Some(window) = &ring.spec.window {
                check_window(file, window, diags);
            }
        }
    }

    /// True when following `promotesFrom` from `start` comes back to it.
    fn promotion_cycle(&self, start: &str) -> bool {
        let mut current = start;
        for _ in 0..=self.rings.len() {
            let next = self
                .rings
                .get(current)
                .and_then(|r| r.spec.promotes_from.as_ref());
            match next {
                Some(next) if next.value == start => return true,
                Some(next) => current = &next.value,
                None => return false,
            }
        }
        false
    }

    fn check_blueprints(&self, bundle: &Bundle, diags: &mut Diagnostics) {
        for (name, bp) in &self.blueprints {
            let file = bp.file();
            check_params(file, &bp.spec.params, diags);
            if bp.spec.files.is_empty() {
                diags.error(
                    file,
                    bp.doc.metadata.name.at,
                    "no-files",
                    format!("blueprint `{name}` has no files"),
                );
            }
            for spec in &bp.spec.files {
                check_artifact_path(file, &spec.path, diags);
                check_template_source(file, spec, bundle, diags);
            }
            check_artifact_paths_apart(file, name, &bp.spec.files, diags);
        }
    }

    /// Checks every module once, imported or not; see [`check_module`]. Its steps'
    /// blueprints must exist.
    fn check_modules(&self, diags: &mut Diagnostics) {
        for (name, module) in &self.modules {
            let file = module.file();
            check_params(file, &module.spec.params, diags);
            check_module(file, name, module.spec, diags);
            for blueprint in module
                .spec
                .steps
                .iter()
                .filter_map(|s| s.blueprint.as_ref())
            {
                if !self.blueprints.contains_key(blueprint.value.as_str()) {
                    self.unknown(diags, file, blueprint, "blueprint");
                }
            }
        }
    }

    fn check_transports(&self, diags: &mut Diagnostics) {
        for transport in self.transports.values() {
            for adapter in [&transport.spec.sender, &transport.spec.receiver] {
                if !self
                    .blueprints
                    .contains_key(adapter.blueprint.value.as_str())
                {
                    let file = transport.file();
                    self.unknown(diags, file, &adapter.blueprint, "blueprint");
                }
            }
        }
    }

    /// Reports a reference to a resource that does not exist, listing those that do.
    /// `what` is `ring`, `group`, `workflow`, `blueprint`, `module` or `transport`.
    pub fn unknown(&self, diags: &mut Diagnostics, file: &str, name: &Spanned<String>, what: &str) {
        let (kind, known): (&str, Vec<&str>) = match what {
            "ring" => ("Ring", self.rings.keys().copied().collect()),
            "group" => ("WorkerGroup", self.groups.keys().copied().collect()),
            "workflow" => ("Workflow", self.workflows.keys().copied().collect()),
            "blueprint" => ("Blueprint", self.blueprints.keys().copied().collect()),
            "module" => ("Module", self.modules.keys().copied().collect()),
            _ => ("Transport", self.transports.keys().copied().collect()),
        };
        if self.broken.contains(&(kind.to_owned(), name.value.clone())) {
            return;
        }
        let hint = if known.is_empty() {
            format!("no {what} is defined")
        } else {
            format!("known: {}", known.join(", "))
        };
        diags.error(
            file,
            name.at,
            unknown_code(what),
            format!("unknown {what} `{}` ({hint})", name.value),
        );
    }

    /// The workers of a group that belong to a ring, sorted by name.
    pub fn workers_in(&self, group: &str, ring: &str) -> Vec<&'a Worker> {
        let Some(entry) = self.groups.get(group) else {
            return Vec::new();
        };
        let mut workers: Vec<&Worker> = entry
            .spec
            .workers
            .iter()
            .filter(|w| w.ring.value == ring)
            .collect();
        workers.sort_by(|a, b| a.name.value.cmp(&b.name.value));
        workers
    }
}

fn insert<'a, S>(
    map: &mut BTreeMap<&'a str, Entry<'a, S>>,
    name: &'a str,
    doc: &'a Document,
    spec: &'a S,
) -> Option<&'a Document> {
    match map.get(name) {
        Some(existing) => Some(existing.doc),
        None => {
            map.insert(name, Entry { doc, spec });
            None
        }
    }
}

fn unknown_code(what: &str) -> &'static str {
    match what {
        "ring" => "unknown-ring",
        "blueprint" => "unknown-blueprint",
        "module" => "unknown-module",
        "transport" => "unknown-transport",
        "group" => "unknown-group",
        "channel" => "unknown-channel",
        "param" => "unknown-param",
        _ => "unknown-reference",
    }
}

/// Position used when a whole document is at fault.
pub fn doc_pos(doc: &Document) -> Pos {
    doc.metadata.name.at
}
