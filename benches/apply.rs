//! End-to-end benchmark of the real release binary against local worker directories, on a
//! synthetic fleet (`ringops::fleetgen`) whose `dev` ring holds over 100,000 artifacts:
//! 5,000 workflows x 5 steps, 100 workers per ring (104,139 artifacts in `dev`); the head
//! commit changes 1% of the workflows.
//!
//! Measures, each as median / min / max wall time and peak RSS over a few runs:
//! - first apply: `apply --ring dev --rev HEAD~1 --yes` into an empty state folder;
//! - no-op plan: `plan --ring dev --head HEAD~1` against the workers just written;
//! - 1% apply: `apply --ring dev --rev HEAD --yes`, reset between runs by applying
//!   `HEAD~1` again (the reset is the same change backwards and is reported too). The
//!   reset reads `HEAD~1` from the compiled-state cache; `HEAD` is compiled incrementally
//!   each time (a commit this close to the memo's compile is not stored);
//! - 1% apply of a commit never compiled: `apply --ring dev --rev fresh-N --yes`, where
//!   each tag `fresh-N` is the base with another 1% of the workflows changed
//!   (`FleetOptions::revision` N), reset between runs by applying `HEAD~1` again. Every
//!   timed run compiles a commit this state folder has not seen (incrementally, from
//!   the memo of the last compile).
//!
//! Targets (2-core host): no-op plan under 1 s, 1% apply under 2 s (also of a commit
//! never compiled).
//!
//! Run with `cargo bench --bench apply` (a few minutes). Knobs, as environment variables:
//! `RINGOPS_BENCH_WORKFLOWS` (5000), `RINGOPS_BENCH_WORKERS` (100), `RINGOPS_BENCH_RUNS`
//! (5 plans, 3 applies; first applies are 2), `RINGOPS_BENCH_DIR` (the parent of the
//! temporary folder; default the system's). Peak RSS needs `/usr/bin/time`.

use ringops::fleetgen::{FleetOptions, bundle, generate};
use ringops::pipeline::{NoSecrets, Rings, compile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RING: &str = "dev";
const BIN: &str = env!("CARGO_BIN_EXE_ringops");

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such
    // argument and expects a quick exit.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let opts = FleetOptions {
        workflows: knob("RINGOPS_BENCH_WORKFLOWS", 5000),
        steps: 5,
        workers: knob("RINGOPS_BENCH_WORKERS", 100),
        revision: 0,
        percent: 1,
    };
    let runs = knob("RINGOPS_BENCH_RUNS", 0);
    let (plans, applies, firsts) = match runs {
        0 => (5, 3, 2),
        n => (n, n, n),
    };
    let fresh_runs = if runs == 0 { 5 } else { runs };
    let tmp = match std::env::var_os("RINGOPS_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("temporary folder");
    let repo = tmp.path().join("fleet");
    let started = Instant::now();
    let (files, artifacts, workers) = write_fleet(&repo, &opts, fresh_runs);
    eprintln!(
        "fleet: {} workflows x {} steps, {} workers per ring: {files} manifest files; \
         ring {RING}: {artifacts} artifacts on {workers} workers (generated in {:.1} s)",
        opts.workflows,
        opts.steps,
        opts.workers,
        started.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    let mut first = Vec::new();
    let mut state = PathBuf::new();
    for n in 0..firsts {
        state = tmp.path().join(format!("state-{n}"));
        first.push(run(&repo, &["apply", "--rev", "HEAD~1", "--yes"], &state));
    }
    results.push(("first apply (HEAD~1, empty workers)", first));
    let noop = (0..plans)
        .map(|_| run(&repo, &["plan", "--head", "HEAD~1"], &state))
        .collect();
    results.push(("no-op plan (HEAD~1, nothing changed)", noop));
    let (mut forward, mut back) = (Vec::new(), Vec::new());
    for _ in 0..applies {
        forward.push(run(&repo, &["apply", "--rev", "HEAD", "--yes"], &state));
        back.push(run(&repo, &["apply", "--rev", "HEAD~1", "--yes"], &state));
    }
    results.push(("1% apply (HEAD~1 -> HEAD)", forward));
    results.push(("1% apply back (HEAD -> HEAD~1)", back));
    let mut fresh = Vec::new();
    for n in 0..fresh_runs {
        let tag = format!("fresh-{}", n + 2);
        fresh.push(run(&repo, &["apply", "--rev", &tag, "--yes"], &state));
        run(&repo, &["apply", "--rev", "HEAD~1", "--yes"], &state);
    }
    results.push(("1% apply, never compiled (HEAD~1 -> N)", fresh));

    println!("\nringops apply bench: ring {RING}, {artifacts} artifacts on {workers} workers");
    println!(
        "{:<40} {:>5} {:>9} {:>9} {:>9} {:>12}",
        "", "runs", "median", "min", "max", "peak RSS"
    );
    for (name, samples) in &results {
        print_row(name, samples);
    }
}

/// One timed run of the binary.
struct Sample {
    wall: Duration,
    rss_kib: Option<u64>,
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `ringops <args> --ring dev --state <state>` in `repo`, under `/usr/bin/time`
/// when it exists (for the peak RSS); panics with its output if it fails.
fn run(repo: &Path, args: &[&str], state: &Path) -> Sample {
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut cmd = Command::new(time);
        cmd.args(["-f", "%M"]).arg(BIN);
        cmd
    } else {
        Command::new(BIN)
    };
    cmd.args(args)
        .args(["--ring", RING, "--state"])
        .arg(state)
        .current_dir(repo)
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RINGOPS_") {
            cmd.env_remove(key);
        }
    }
    let started = Instant::now();
    let out = cmd.output().expect("run ringops");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ringops {args:?} failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rss_kib = time
        .exists()
        .then(|| stderr.lines().last()?.trim().parse().ok())
        .flatten();
    let summary = String::from_utf8_lossy(&out.stdout);
    let last = summary.lines().last().unwrap_or("");
    eprintln!(
        "  {:>7.2} s  ringops {}: {last}",
        wall.as_secs_f64(),
        args.join(" ")
    );
    Sample { wall, rss_kib }
}

fn print_row(name: &str, samples: &[Sample]) {
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    let rss = samples
        .iter()
        .filter_map(|s| s.rss_kib)
        .max()
        .map_or("-".to_owned(), |k| format!("{} MiB", k / 1024));
    let n = walls.len();
    let median = (walls[(n - 1) / 2] + walls[n / 2]) / 2.0;
    println!(
        "{name:<40} {:>5} {:>8.2}s {:>8.2}s {:>8.2}s {rss:>12}",
        n,
        median,
        walls[0],
        walls[walls.len() - 1],
    );
}

/// Writes the fleet's base and head revisions as two commits of a new repository, then
/// revisions 2 to `fresh + 1` as commits tagged `fresh-N`, each on the base; returns the
/// number of manifest files, and the artifacts and workers of the ring.
fn write_fleet(repo: &Path, opts: &FleetOptions, fresh: usize) -> (usize, usize, usize) {
    let base = generate(opts);
    let head = generate(&opts.at_revision(1));
    std::fs::create_dir_all(repo).expect("repository folder");
    git(repo, &["init", "--quiet", "--initial-branch=main"]);
    write_files(repo, &base, &BTreeMap::new());
    git(repo, &["add", "--all"]);
    git(repo, &["commit", "--quiet", "-m", "fleet: base"]);
    write_files(repo, &head, &base);
    git(repo, &["add", "--all"]);
    git(repo, &["commit", "--quiet", "-m", "fleet: head"]);
    for n in 2..fresh as u32 + 2 {
        git(repo, &["checkout", "--quiet", "--detach", "main~1"]);
        write_files(repo, &generate(&opts.at_revision(n)), &base);
        git(
            repo,
            &["commit", "--quiet", "-am", &format!("fleet: revision {n}")],
        );
        git(repo, &["tag", &format!("fresh-{n}")]);
    }
    git(repo, &["checkout", "--quiet", "main"]);
    let compiled = compile(&bundle(&base, ""), &NoSecrets, Rings::One(RING))
        .unwrap_or_else(|d| panic!("the generated fleet does not compile: {d:?}"));
    let state = &compiled.states[RING];
    (base.len(), state.artifact_count(), state.workers.len())
}

/// Writes the files of `files` that differ from `previous`.
fn write_files(repo: &Path, files: &BTreeMap<String, String>, previous: &BTreeMap<String, String>) {
    for (path, text) in files {
        if previous.get(path) == Some(text) {
            continue;
        }
        let full = repo.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).expect("folder");
        }
        std::fs::write(&full, text).expect("write manifest");
    }
}

/// `git <args>` in `repo`, isolated from the host's configuration.
fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
