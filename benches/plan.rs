//! Plan benchmark on a synthetic fleet (`ringops::fleetgen`): 1,000 workflows × 5 steps,
//! 3 rings, 100 workers per ring; the head revision changes 1% of the workflows.
//!
//! Target: the plan between two such commits under 2 s and 1 GiB peak memory. Also
//! measures compiling the head incrementally from the base's memo.
//! Run with `cargo bench --bench plan`.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ringops::fleetgen::{FleetOptions, bundle, generate};
use ringops::model::{Bundle, DesiredState};
use ringops::pipeline::incremental::{Memo, compile_reusing};
use ringops::pipeline::plan::{PlanInput, plan};
use ringops::pipeline::{NoSecrets, Rings, compile, compile_with_inventory};
use std::hint::black_box;
use std::time::Duration;

const RING: &str = "dev";

fn fleet() -> (Bundle, Bundle) {
    let base = FleetOptions {
        workflows: 1000,
        steps: 5,
        workers: 100,
        revision: 0,
        percent: 1,
    };
    let head = base.at_revision(1);
    (bundle(&generate(&base), ""), bundle(&generate(&head), ""))
}

fn desired(b: &Bundle) -> DesiredState {
    let mut compiled = compile(b, &NoSecrets, Rings::One(RING))
        .unwrap_or_else(|d| panic!("generated fleet does not compile: {d:?}"));
    compiled.states.remove(RING).expect("ring is rendered")
}

fn plan_input(base: &Bundle, head: &Bundle) -> PlanInput {
    PlanInput {
        changed_files: base.changed_files(head),
        ..PlanInput::default()
    }
}

fn benches(c: &mut Criterion) {
    let (base, head) = fleet();
    let (base_state, head_state) = (desired(&base), desired(&head));
    let summary = plan(&base_state, &head_state, plan_input(&base, &head)).summary;
    eprintln!(
        "fleet: {} files; ring {RING}: {} workers, {} artifacts; plan: {} workers changed, {} updates",
        base.files.len(),
        base_state.workers.len(),
        base_state.artifact_count(),
        summary.workers_changed,
        summary.update,
    );

    let mut group = c.benchmark_group("plan");
    // Flat sampling: iterations take up to a second or more, so 10 equal samples of a few
    // iterations each keep the whole run to about a minute on 2 cores.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
    group.bench_function("compile+plan dev ring", |b| {
        b.iter(|| {
            let before = desired(&base);
            let after = desired(&head);
            black_box(plan(&before, &after, plan_input(&base, &head)))
        })
    });
    group.bench_function("compile one side", |b| b.iter(|| black_box(desired(&head))));
    let (_, inventory) = compile_with_inventory(&base, &NoSecrets, Rings::One(RING));
    let memo = Memo::new(&base, RING, &inventory, "base");
    // The base state is cloned here; ringops reads it from the compiled-state cache.
    group.bench_function("compile one side from the base's memo", |b| {
        b.iter(|| {
            let reused =
                compile_reusing(&head, &NoSecrets, RING, &memo, || Some(base_state.clone()));
            black_box(reused.expect("the head reuses the base"))
        })
    });
    group.bench_function("plan only", |b| {
        b.iter(|| black_box(plan(&base_state, &head_state, plan_input(&base, &head))))
    });
    group.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
