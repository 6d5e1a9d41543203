//! Latency of the running daemon, measured on the real binary (`cargo bench --bench
//! daemon`): push to applied (a commit on the tracked branch of a local repository
//! until the dev worker holds the new file) and drift revert (a hot edit of a managed
//! file until it is restored), each over `TRIALS` trials; prints p50, p90, p99, max.
//! Then, at scale: a daemon on a generated fleet whose dev ring holds over 100,000
//! artifacts (5,000 workflows x 5 steps on 100 workers), the duration of its no-op
//! reconciles (full drift scans of every worker with nothing changed), read from its
//! `full drift scan done took_ms=...` log lines, over `SCANS` scans.
//! `RINGOPS_BENCH_WORKFLOWS` changes the size; `RINGOPS_BENCH_SCALE=0` skips it.

use ringops::fleetgen::{FleetOptions, generate};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRIALS: usize = 60;
const SCANS: usize = 10;
const FILE: &str = "invoices/archive.store/writer.ini";

fn main() {
    latency();
    if std::env::var("RINGOPS_BENCH_SCALE").as_deref() != Ok("0") {
        no_op_reconcile_at_scale();
    }
}

/// Push-to-applied and drift-revert latency on `examples/fleet`.
fn latency() {
    let repo = tempfile::tempdir().expect("repo");
    let state = tempfile::tempdir().expect("state");
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy(&project.join("examples"), &repo.path().join("examples"));
    git(repo.path(), &["init", "--quiet", "-b", "main"]);
    commit(repo.path(), "fleet");
    let mut daemon = Daemon::start(repo.path(), state.path(), project);
    let worker = state.path().join("workers/core-dev-1").join(FILE);
    wait(|| worker.is_file(), "the first deployment");

    let module = repo.path().join("examples/fleet/workflows/invoices.yaml");
    let mut push = Vec::new();
    for trial in 0..TRIALS {
        let days = 100 + trial;
        let text = std::fs::read_to_string(&module).expect("workflow");
        let start = text.find("retention_days: ").expect("retention_days") + 16;
        let end = start
            + text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(0);
        let edited = format!("{}{days}{}", &text[..start], &text[end..]);
        std::fs::write(&module, edited).expect("edit");
        let want = format!("retention_days = {days}");
        commit(repo.path(), "retention");
        let started = Instant::now();
        wait(|| read(&worker).contains(&want), "a pushed commit");
        push.push(started.elapsed());
    }
    report("push to applied (dev ring, examples/fleet)", &mut push);

    let mut revert = Vec::new();
    for trial in 0..TRIALS {
        let deployed = read(&worker);
        std::fs::write(&worker, format!("{deployed}# hot edit {trial}\n")).expect("edit");
        let started = Instant::now();
        wait(|| read(&worker) == deployed, "a reverted edit");
        revert.push(started.elapsed());
    }
    report("drift revert (hot edit to restored)", &mut revert);
    daemon.stop();
}

/// A daemon on a generated fleet of over 100,000 artifacts in its dev ring: how long a
/// full drift scan takes when nothing changed.
fn no_op_reconcile_at_scale() {
    let workflows = std::env::var("RINGOPS_BENCH_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let opts = FleetOptions {
        workflows,
        steps: 5,
        workers: 100,
        revision: 0,
        percent: 1,
    };
    let repo = tempfile::tempdir().expect("repo");
    let state = tempfile::tempdir().expect("state");
    for (path, text) in generate(&opts) {
        let full = repo.path().join(path);
        std::fs::create_dir_all(full.parent().expect("folder")).expect("mkdir");
        std::fs::write(&full, text).expect("write manifest");
    }
    git(repo.path(), &["init", "--quiet", "-b", "main"]);
    commit(repo.path(), "generated fleet");
    let log = state.path().join("daemon.log");
    let started = Instant::now();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_ringops"))
            .args(["daemon", "--listen", "127.0.0.1:0", "--poll-interval", "1h"])
            .args([
                "--drift-interval",
                "100ms",
                "--log-format",
                "text",
                "--repo",
            ])
            .arg(repo.path())
            .arg("--state")
            .arg(state.path().join("state"))
            .env("RINGOPS_LOG", "warn,ringops=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the daemon"),
    );
    let took = || -> Vec<Duration> {
        read(&log)
            .lines()
            .filter_map(|l| {
                l.split("took_ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .map(Duration::from_millis)
            .collect()
    };
    // The first scan follows the first deployment; SCANS more are the no-op reconciles.
    let bound = Duration::from_secs(600);
    while took().len() < SCANS + 1 {
        assert!(
            started.elapsed() < bound,
            "no scans after {bound:?}:\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
    let artifacts = std::fs::read_dir(state.path().join("state/workers"))
        .expect("workers")
        .map(|w| count_files(&w.expect("worker").path()))
        .sum::<usize>();
    let mut scans = took().split_off(1);
    scans.truncate(SCANS);
    report(
        &format!("no-op reconcile (full drift scan, dev ring of {artifacts} artifacts)"),
        &mut scans,
    );
}

/// Files under `dir`, its `.ringops` records left out.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name() != ".ringops")
        .map(|e| match e.file_type().expect("type").is_dir() {
            true => count_files(&e.path()),
            false => 1,
        })
        .sum()
}

struct Daemon(Child);

impl Daemon {
    fn start(repo: &Path, state: &Path, project: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_ringops"))
            .args([
                "daemon",
                "--listen",
                "127.0.0.1:0",
                "--poll-interval",
                "10s",
            ])
            .args(["--path", "examples/fleet", "--drift-interval", "10s"])
            .arg("--repo")
            .arg(repo)
            .arg("--state")
            .arg(state)
            .arg("--secrets-dir")
            .arg(project.join("examples/secrets"))
            .env("RINGOPS_LOG", "warn")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon");
        Daemon(child)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls every 200 µs; gives up after 30 s.
fn wait(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: {} trials, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", message]);
}

fn copy(from: &Path, to: &PathBuf) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}
