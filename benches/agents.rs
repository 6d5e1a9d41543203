//! Benchmark of the HTTP link against many agents on loopback: 200 real `ringops
//! agent` processes (each with its own worker directory and 127.0.0.1 port), 50
//! artifacts of 1 KiB each, reached through `HttpAgent` with at most 32 switches in
//! flight (the default `max_concurrent_workers`). `RINGOPS_BENCH_IN_PROCESS=1` serves
//! the agents' routers in this process instead (no process per agent).
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
//! `RINGOPS_BENCH_CONCURRENCY` (32), `RINGOPS_BENCH_IN_PROCESS` (unset).
//!
//! With processes, each agent watches its folder with inotify: past the host's
//! `fs.inotify.max_user_instances` (often 128) an agent logs that it falls back to its
//! 30 s sweep, which changes nothing measured here.

use ringops::adapters::link::{Hooks, HttpAgent, Link};
use ringops::adapters::worker_dir::{Batch, FileSpec};
use ringops::agent::{Agent, api};
use ringops::daemon::webhook::Secret;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
    let in_process = std::env::var_os("RINGOPS_BENCH_IN_PROCESS").is_some();
    let mut workers = Vec::with_capacity(agents);
    let mut processes = Processes(Vec::new());
    if in_process {
        for i in 0..agents {
            let dir = tmp.path().join(format!("agent-{i}"));
            workers.push(start_agent(dir).await);
        }
    } else {
        let started = Instant::now();
        let homes: Vec<_> = (0..agents)
            .map(|i| tmp.path().join(format!("agent-{i}")))
            .collect();
        for home in &homes {
            processes.0.push(spawn_agent(home));
        }
        for home in &homes {
            workers.push(wait_listening(home, &mut processes).await);
        }
        println!(
            "{agents} agent processes listening after {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    let how = if in_process {
        "in this process"
    } else {
        "one process each"
    };
    println!(
        "{agents} agents on loopback ({how}), {files} artifacts of 1 KiB each, {concurrency} switches in flight"
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

/// An agent over `dir` on a free loopback port; its link.
async fn start_agent(dir: std::path::PathBuf) -> HttpAgent {
    let token = Secret::new(TOKEN).expect("token");
    let agent = Arc::new(Agent::new(dir, token, 64 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = format!("http://{}", listener.local_addr().expect("addr"));
    let limits = ringops::adapters::http_server::Limits::default();
    tokio::spawn(api::serve(
        listener,
        None,
        agent,
        limits,
        std::future::pending(),
    ));
    HttpAgent::with_token_text(&target, TOKEN)
}

/// Agent processes, killed when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `ringops agent` in `home` (created) on a free loopback port, logging to
/// `home/stderr`.
fn spawn_agent(home: &Path) -> Child {
    std::fs::create_dir_all(home).expect("agent home");
    std::fs::write(home.join("token"), format!("{TOKEN}\n")).expect("token");
    let config = "listen = \"127.0.0.1:0\"\ndir = \"worker\"\ntoken_file = \"token\"\nallow_plain_http = true\nbody_limit_mb = 64\n";
    std::fs::write(home.join("agent.toml"), config).expect("config");
    let log = std::fs::File::create(home.join("stderr")).expect("log");
    Command::new(env!("CARGO_BIN_EXE_ringops"))
        .args(["agent", "--config", "agent.toml"])
        .current_dir(home)
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ringops agent")
}

/// Waits (at most 60 s) for the agent of `home` to log its address; its link.
async fn wait_listening(home: &Path, processes: &mut Processes) -> HttpAgent {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(home.join("stderr")).unwrap_or_default();
        let addr = log
            .split("agent listening addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(addr) = addr {
            return HttpAgent::with_token_text(&format!("http://{addr}"), TOKEN);
        }
        let exited = processes
            .0
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(Some(_))));
        assert!(!exited, "an agent exited before listening:\n{log}");
        assert!(
            Instant::now() < deadline,
            "no agent address in {} after 60 s:\n{log}",
            home.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
