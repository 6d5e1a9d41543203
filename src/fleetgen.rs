//! Synthetic fleets for benchmarks and load tests: the manifests of a fleet of a given
//! size, as repository-relative path → YAML text. Pure: no IO, no clock; the only
//! "randomness" is a hash of the workflow index, so the same options always give the
//! same bytes.
//!
//! # Shape
//!
//! - `rings.yaml`: `dev` (tracks `main`, auto-deploys) → `staging` → `production`
//!   (`promotesFrom` chain), each with `values` (`log_level`, `max_retries`,
//!   `sample_rate`, `bucket_prefix`, `flush_every`) and a few `overrides`.
//! - `groups.yaml`: per ring, `workers / 2` workers in group `edge` (features `[tls]`)
//!   and the rest in group `core` (features `[disk]`); at least 2 edge and 3 core
//!   workers per ring. Workers alternate `region: eu` / `region: us` labels.
//! - `transports.yaml`: transport `http` with the `http-sender` / `http-receiver`
//!   blueprints.
//! - `blueprints/`: `http-source` (edge), `stream-processor` (its template in
//!   `blueprints/templates/`, via `templateFile`), `enricher`, `aggregator` and
//!   `batch-writer` (two files); templates of 15–30 lines using `params`, `ring.values`,
//!   `worker.*` and `step.replica`.
//! - `workflows/wf-NNNN.yaml`: a chain of `steps` steps. Step 0, `ingest`, runs on
//!   `edge` with `replicas: 2` and writes channel `raw`, which crosses to `core`
//!   through the `http` transport (a sender job on each ingest worker, a receiver job
//!   on each worker of the next step). The other steps run on `core` with
//!   `replicas: 2` or `3` (chosen by hash); the last one is a `batch-writer`.
//!   Every 50th workflow (index % 50 == 25) runs `ingest` on every edge worker instead
//!   (no `replicas`), and every 10th (index % 10 == 3) pins its writer to `region: eu`.
//!
//! With the default 5 steps and 100 workers per ring that is about 21 artifacts per
//! workflow and ring: 20,906 per ring for 1,000 workflows (the same in every ring), and
//! 104,139 for 5,000 workflows (the shape of `benches/apply.rs`). Replicas are fixed, so
//! more workers add few artifacts: 28,906 for 1,000 workflows on 500 workers.
//!
//! # Revisions
//!
//! [`FleetOptions::revision`] 0 is the base. At revision 1, the workflows whose
//! `index % 100 < percent` change one param (`batch_size` of step 1); nothing else
//! differs. Revision `r` changes the next `percent` of every hundred instead (those with
//! `(index - (r - 1) * percent) % 100 < percent`), so each revision differs from the base
//! in a share of workflows no other revision touches. [`touched`] names those files.

mod blueprints;

use crate::model::Bundle;
use blueprints::STATIC_FILES;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The size and revision of a synthetic fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetOptions {
    /// Number of workflows.
    pub workflows: usize,
    /// Steps per workflow (at least 2: an ingest step and a writer).
    pub steps: usize,
    /// Workers per ring, over both groups (at least 2 edge + 3 core are generated).
    pub workers: usize,
    /// 0 for the base fleet; any other value changes the touched workflows.
    pub revision: u32,
    /// Share of workflows (0–100) that a non-zero revision changes.
    pub percent: u32,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            workflows: 1000,
            steps: 5,
            workers: 100,
            revision: 0,
            percent: 1,
        }
    }
}

impl FleetOptions {
    /// The same fleet at another revision.
    pub fn at_revision(&self, revision: u32) -> Self {
        FleetOptions {
            revision,
            ..self.clone()
        }
    }

    fn steps(&self) -> usize {
        self.steps.max(2)
    }

    fn edge_workers(&self) -> usize {
        (self.workers / 2).max(2)
    }

    fn core_workers(&self) -> usize {
        self.workers.saturating_sub(self.workers / 2).max(3)
    }
}

/// The rings, with their short names used in worker names.
const RINGS: [(&str, &str); 3] = [("dev", "dev"), ("staging", "stg"), ("production", "prod")];

/// The files of the fleet: repository-relative path → YAML (or template) text.
pub fn generate(opts: &FleetOptions) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("rings.yaml".to_owned(), rings_yaml(opts));
    files.insert("groups.yaml".to_owned(), groups_yaml(opts));
    for (path, text) in STATIC_FILES {
        files.insert((*path).to_owned(), (*text).to_owned());
    }
    for index in 0..opts.workflows {
        files.insert(workflow_path(index), workflow_yaml(opts, index));
    }
    files
}

/// A bundle of generated files under `root` ("" for the repository root).
pub fn bundle(files: &BTreeMap<String, String>, root: &str) -> Bundle {
    let root = root.trim_matches('/');
    let files = files
        .iter()
        .map(|(path, text)| {
            let path = if root.is_empty() {
                path.clone()
            } else {
                format!("{root}/{path}")
            };
            (path, text.clone().into_bytes())
        })
        .collect();
    Bundle {
        root: root.to_owned(),
        files,
        ..Bundle::default()
    }
}

/// Whether a non-zero revision changes workflow `index`: revision 1 changes those with
/// `index % 100 < percent`, and each later revision the next `percent` of every hundred,
/// so that consecutive revisions change different workflows.
pub fn is_touched(opts: &FleetOptions, index: usize) -> bool {
    let Some(later) = opts.revision.checked_sub(1) else {
        return false;
    };
    let shift = (later as usize * opts.percent as usize) % 100;
    (index % 100 + 100 - shift) % 100 < opts.percent as usize
}

/// Files of the workflows that differ between revision 0 and `opts.revision`.
pub fn touched(opts: &FleetOptions) -> BTreeSet<String> {
    (0..opts.workflows)
        .filter(|&i| is_touched(opts, i))
        .map(workflow_path)
        .collect()
}

/// Name of workflow `index`: `wf-0042`.
pub fn workflow_name(index: usize) -> String {
    format!("wf-{index:04}")
}

fn workflow_path(index: usize) -> String {
    format!("workflows/{}.yaml", workflow_name(index))
}

/// splitmix64 of a seeded index: the generator's only source of variety.
fn mix(index: usize, salt: u64) -> u64 {
    let mut z = (index as u64)
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x5EED);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rings_yaml(opts: &FleetOptions) -> String {
    let mut out = String::from(
        "# Generated by ringops::fleetgen: dev -> staging -> production.\n\
         apiVersion: ringops/v1\n\
         kind: Ring\n\
         metadata: {name: dev}\n\
         spec:\n\
         \x20 track: {branch: main}\n\
         \x20 autoDeploy: true\n\
         \x20 strategy: {type: allAtOnce}\n\
         \x20 drift: revert\n\
         \x20 values: {log_level: debug, max_retries: 1, sample_rate: 1.0, bucket_prefix: dev, flush_every: 5s}\n\
         ---\n\
         apiVersion: ringops/v1\n\
         kind: Ring\n\
         metadata: {name: staging}\n\
         spec:\n\
         \x20 promotesFrom: dev\n\
         \x20 strategy: {type: rolling, maxParallel: 10}\n\
         \x20 health: {command: [\"true\"], timeout: 5s, healthyDeadline: 1m}\n\
         \x20 drift: report\n\
         \x20 values: {log_level: info, max_retries: 3, sample_rate: 0.5, bucket_prefix: stg, flush_every: 30s}\n",
    );
    out.push_str(&overrides(opts, &[(2, "ingest", "rate_limit: 50")]));
    out.push_str(
        "---\n\
         apiVersion: ringops/v1\n\
         kind: Ring\n\
         metadata: {name: production}\n\
         spec:\n\
         \x20 promotesFrom: staging\n\
         \x20 approvals: {required: 2, approvers: [alice, bob, carol], timeout: 24h}\n\
         \x20 strategy: {type: canary, canary: 1, maxParallel: 5}\n\
         \x20 health: {http: \"http://{{ worker.address }}:9000/healthz\", timeout: 10s, minHealthy: 30s}\n\
         \x20 autoRevert: true\n\
         \x20 drift: revert\n\
         \x20 values: {log_level: warn, max_retries: 5, sample_rate: 0.1, bucket_prefix: prod, flush_every: 1m}\n",
    );
    out.push_str(&overrides(
        opts,
        &[
            (1, "ingest", "rate_limit: 5000"),
            (7, "ingest", "max_body_kb: 2048"),
        ],
    ));
    out
}

/// A ring's `overrides:` block for those of `(workflow index, step, with)` that exist.
fn overrides(opts: &FleetOptions, wanted: &[(usize, &str, &str)]) -> String {
    let mut out = String::new();
    for (index, step, with) in wanted.iter().filter(|(i, ..)| *i < opts.workflows) {
        if out.is_empty() {
            out.push_str("  overrides:\n");
        }
        let name = workflow_name(*index);
        let _ = writeln!(
            out,
            "    - {{workflow: {name}, step: {step}, with: {{{with}}}}}"
        );
    }
    out
}

fn groups_yaml(opts: &FleetOptions) -> String {
    let mut out = String::from("# Generated by ringops::fleetgen.\n");
    let groups = [
        ("edge", "tls", 1, opts.edge_workers()),
        ("core", "disk", 2, opts.core_workers()),
    ];
    for (g, (group, feature, octet, count)) in groups.into_iter().enumerate() {
        if g > 0 {
            out.push_str("---\n");
        }
        let _ = write!(
            out,
            "apiVersion: ringops/v1\nkind: WorkerGroup\nmetadata: {{name: {group}}}\n\
             spec:\n  features: [{feature}]\n  workers:\n"
        );
        for (r, (ring, short)) in RINGS.iter().enumerate() {
            for i in 1..=count {
                let region = if i % 2 == 1 { "eu" } else { "us" };
                let _ = writeln!(
                    out,
                    "    - {{name: {group}-{short}-{i:03}, ring: {ring}, address: 10.{}.{}.{}, \
                     labels: {{region: {region}, rack: r{}}}}}",
                    (r + 1) * 10 + octet,
                    (i - 1) / 250,
                    (i - 1) % 250 + 1,
                    i % 8
                );
            }
        }
    }
    out
}

/// The middle steps of a workflow, in order, cycled: (name, blueprint).
const MIDDLE: [(&str, &str); 5] = [
    ("parse", "stream-processor"),
    ("enrich", "enricher"),
    ("aggregate", "aggregator"),
    ("filter", "stream-processor"),
    ("score", "enricher"),
];

/// Name and blueprint of step `j` of `steps`.
fn step_kind(j: usize, steps: usize) -> (String, &'static str) {
    if j == 0 {
        ("ingest".to_owned(), "http-source")
    } else if j + 1 == steps {
        ("store".to_owned(), "batch-writer")
    } else {
        let (name, blueprint) = MIDDLE[(j - 1) % MIDDLE.len()];
        match (j - 1) / MIDDLE.len() {
            0 => (name.to_owned(), blueprint),
            round => (format!("{name}-{round}"), blueprint),
        }
    }
}

/// The channel step `j` writes: `raw` for the ingest step, `<step>-out` after.
fn output_channel(j: usize, steps: usize) -> String {
    match j {
        0 => "raw".to_owned(),
        _ => format!("{}-out", step_kind(j, steps).0),
    }
}

fn workflow_yaml(opts: &FleetOptions, index: usize) -> String {
    let steps = opts.steps();
    let name = workflow_name(index);
    let mut out = format!(
        "# Generated by ringops::fleetgen.\napiVersion: ringops/v1\nkind: Workflow\n\
         metadata:\n  name: {name}\n  labels: {{team: team-{:02}}}\nspec:\n  channels:\n",
        mix(index, 1) % 40
    );
    out.push_str("    raw: {transport: http}\n");
    for j in 1..steps - 1 {
        let _ = writeln!(out, "    {}: {{}}", output_channel(j, steps));
    }
    out.push_str("  steps:\n");
    for j in 0..steps {
        out.push_str(&step_yaml(opts, index, j));
    }
    out
}

fn step_yaml(opts: &FleetOptions, index: usize, j: usize) -> String {
    let steps = opts.steps();
    let (step, blueprint) = step_kind(j, steps);
    let mut out = format!("    - name: {step}\n      blueprint: {blueprint}\n      with:\n");
    for line in step_params(opts, index, j, blueprint) {
        let _ = writeln!(out, "        {line}");
    }
    let _ = writeln!(out, "      placement: {}", placement(opts, index, j, steps));
    if j > 0 {
        let _ = writeln!(out, "      inputs: [{}]", output_channel(j - 1, steps));
    }
    if j + 1 < steps {
        let _ = writeln!(out, "      outputs: [{}]", output_channel(j, steps));
    }
    out
}

fn placement(opts: &FleetOptions, index: usize, j: usize, steps: usize) -> String {
    if j == 0 {
        return if index % 50 == 25 {
            "{group: edge}".to_owned()
        } else {
            "{group: edge, replicas: 2}".to_owned()
        };
    }
    if j + 1 == steps && index % 10 == 3 {
        return "{group: core, replicas: 2, selector: {region: eu}}".to_owned();
    }
    let replicas = (2 + mix(index, 10 + j as u64) % 2) as usize;
    format!(
        "{{group: core, replicas: {}}}",
        replicas.min(opts.core_workers())
    )
}

/// The `with:` lines of step `j`; step 1's `batch_size` is what a revision changes.
fn step_params(opts: &FleetOptions, index: usize, j: usize, blueprint: &str) -> Vec<String> {
    let name = workflow_name(index);
    let h = mix(index, 100 + j as u64);
    let mut batch = 250 * (1 + h % 4);
    if j == 1 && is_touched(opts, index) {
        batch += 10 * u64::from(opts.revision);
    }
    match blueprint {
        "http-source" => vec![
            format!("port: {}", 8000 + index % 1000),
            format!("paths: [/v1/{name}, /v1/{name}/batch]"),
            format!("rate_limit: {}", 100 * (1 + h % 10)),
            format!("client_certs: {}", h.is_multiple_of(3)),
        ],
        "stream-processor" => vec![
            format!("handler: {}-{name}", step_kind(j, opts.steps()).0),
            format!("threads: {}", 1 + h % 8),
            format!("batch_size: {batch}"),
            format!(
                "options: {{schema: {name}-v{}, strict: {}}}",
                1 + h % 3,
                h.is_multiple_of(2)
            ),
        ],
        "enricher" => vec![
            format!("lookups: [customers, products-{}]", h % 5),
            format!("cache_mb: {}", 64 << (h % 4)),
            format!("batch_size: {batch}"),
        ],
        "aggregator" => vec![
            format!("window: {}m", 1 + h % 15),
            format!(
                "group_by: [tenant, {}]",
                ["region", "product", "channel"][(h % 3) as usize]
            ),
            format!("batch_size: {batch}"),
        ],
        _ => vec![
            format!("bucket: acme-{name}"),
            format!("retention_days: {}", 30 * (1 + h % 12)),
            format!("batch_size: {batch}"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionKind;
    use crate::pipeline::plan::{PlanInput, plan};
    use crate::pipeline::{NoSecrets, Rings, compile};

    fn small() -> FleetOptions {
        FleetOptions {
            workflows: 200,
            steps: 5,
            workers: 8,
            ..FleetOptions::default()
        }
    }

    fn explain(diags: &[crate::model::Diagnostic]) -> String {
        crate::report::diagnostics(diags)
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(&small()), generate(&small()));
    }

    #[test]
    fn small_fleet_compiles_without_diagnostics() {
        for steps in [2, 5, 8] {
            let opts = FleetOptions { steps, ..small() };
            let b = bundle(&generate(&opts), "fleet");
            let compiled = compile(&b, &NoSecrets, Rings::All).unwrap_or_else(|d| {
                panic!("steps={steps}:\n{}", explain(&d));
            });
            assert_eq!(compiled.rings, ["dev", "production", "staging"]);
            for state in compiled.states.values() {
                assert_eq!(state.workers.len(), 8);
                assert!(state.artifact_count() > opts.workflows * steps);
            }
        }
    }

    #[test]
    fn each_revision_touches_other_workflows() {
        let at = |revision| touched(&small().at_revision(revision));
        assert_eq!(
            at(2),
            BTreeSet::from([
                "workflows/wf-0001.yaml".into(),
                "workflows/wf-0101.yaml".into()
            ])
        );
        assert!(at(1).is_disjoint(&at(2)));
        assert_eq!(at(101), at(1));
        assert!(at(0).is_empty());
    }

    #[test]
    fn head_changes_only_the_touched_workflows() {
        let base_opts = small();
        let head_opts = base_opts.at_revision(1);
        let expected = touched(&head_opts);
        assert_eq!(
            expected,
            BTreeSet::from([
                "workflows/wf-0000.yaml".into(),
                "workflows/wf-0100.yaml".into()
            ])
        );
        let base = bundle(&generate(&base_opts), "");
        let head = bundle(&generate(&head_opts), "");
        let changed = base.changed_files(&head);
        assert_eq!(changed, expected);

        let side = |b: &Bundle| {
            let mut c = compile(b, &NoSecrets, Rings::One("dev")).unwrap_or_else(|d| {
                panic!("{}", explain(&d));
            });
            c.states.remove("dev").unwrap()
        };
        let input = PlanInput {
            changed_files: changed,
            ..PlanInput::default()
        };
        let p = plan(&side(&base), &side(&head), input);
        assert!(
            p.summary.create == 0 && p.summary.delete == 0,
            "{:?}",
            p.summary
        );
        let mut jobs = BTreeSet::new();
        for action in p.workers.iter().flat_map(|w| &w.actions) {
            assert_eq!(action.kind, ActionKind::Update, "{}", action.path);
            assert!(action.diff.as_deref().unwrap().contains("batch_size"));
            let (wf, rest) = action.path.split_once('/').unwrap();
            jobs.insert(format!("{wf}/{}", rest.split('.').next().unwrap()));
            assert_eq!(action.why, [format!("workflows/{wf}.yaml")]);
        }
        assert_eq!(
            jobs,
            BTreeSet::from(["wf-0000/parse".into(), "wf-0100/parse".into()])
        );
        assert!(p.summary.update >= 4, "{:?}", p.summary);
    }
}
