//! Benchmark of the HTTP transport against many agents on loopback: 200 agents (the
//! agent's real router and worker directory switch, in this process, each on its own
//! 127.0.0.1 port), 50 artifacts of 1 KiB each, reached through `HttpAgent` with at most
//! 32 switches in flight (the default `max_concurrent_workers`).
//!
//! Measures, as median / min / max wall time over a few runs:
//! - first apply: every agent receives its 50 files into an empty directory;
//! - change apply: one file of each agent changes (the whole generation is sent, as
//!   the protocol wants; the agent writes only the changed file);
//! - inventories: every agent's inventory read once (what plan, drift, status do).
//!
//! Target (2-core host): the change apply under 3 s.
//!
//! Run with `cargo bench --bench agents`. Knobs, as environment variables:
//! `RINGOPS_BENCH_AGENTS` (200), `RINGOPS_BENCH_FILES` (50), `RINGOPS_BENCH_RUNS` (5),
//! `RINGOPS_BENCH_CONCURRENCY` (32).

use ringops::adapters::transport::{Hooks, HttpAgent, Transport};
use ringops::adapters::worker_dir::{Batch, FileSpec};
use ringops::agent::{Agent, api};
use ringops::daemon::webhook::Secret;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-agent-token";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such
    // argument and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let agents = knob("RINGOPS_BENCH_AGENTS", 200);
    let files = knob("RINGOPS_BENCH_FILES", 50);
    let runs = knob("RINGOPS_BENCH_RUNS", 5);
    let concurrency = knob("RINGOPS_BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(agents, files, runs, concurrency));
}

async fn bench(agents: usize, files: usize, runs: usize, concurrency: usize) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut workers = Vec::with_capacity(agents);
    for i in 0..agents {
        let dir = tmp.path().join(format!("agent-{i}"));
        workers.push(start_agent(dir).await);
    }
    println!(
        "{agents} agents on loopback, {files} artifacts of 1 KiB each, {concurrency} switches in flight"
    );
    let first = Instant::now();
    apply_all(&workers, files, 0, concurrency).await;
    println!("first apply:   {:>8.3} s", first.elapsed().as_secs_f64());
    let mut changes = Vec::new();
    let mut reads = Vec::new();
    for run in 1..=runs {
        let start = Instant::now();
        apply_all(&workers, files, run, concurrency).await;
        changes.push(start.elapsed());
        let start = Instant::now();
        inventory_all(&workers, concurrency).await;
        reads.push(start.elapsed());
    }
    report("change apply:", &mut changes);
    report("inventories: ", &mut reads);
}

/// An agent over `dir` on a free loopback port; its transport.
async fn start_agent(dir: std::path::PathBuf) -> HttpAgent {
    let token = Secret::new(TOKEN).expect("token");
    let agent = Arc::new(Agent::new(dir, token, 64 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(api::serve(listener, agent, std::future::pending()));
    HttpAgent::with_token_text(&target, TOKEN)
}

/// The generation of revision `revision`: file 0 changes with each revision.
fn batch(files: usize, revision: usize) -> Batch {
    let files = (0..files)
        .map(|f| {
            let text = match f {
                0 => format!("revision = {revision}\n"),
                _ => format!("file = {f}\n"),
            };
            let content = text.repeat(1024 / text.len() + 1).into_bytes();
            let path = format!("bench/job-{}/file-{f}.conf", f % 5);
            (path, FileSpec::new(content, 0o644))
        })
        .collect();
    Batch {
        deployment: format!("bench-{revision}"),
        expected_generation: None,
        files,
    }
}

async fn apply_all(workers: &[HttpAgent], files: usize, revision: usize, concurrency: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        let (worker, limit) = (worker.clone(), Arc::clone(&limit));
        let batch = batch(files, revision);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            worker.switch(batch, Hooks::default()).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.expect("task") {
            panic!("switch failed: {}", e.error());
        }
    }
}

async fn inventory_all(workers: &[HttpAgent], concurrency: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        let (worker, limit) = (worker.clone(), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            worker.inventory().await
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.expect("task") {
            panic!("inventory failed: {e}");
        }
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "{what}  median {:.3} s, min {:.3} s, max {:.3} s ({} runs)",
        secs(times[times.len() / 2]),
        secs(times[0]),
        secs(times[times.len() - 1]),
        times.len()
    );
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
