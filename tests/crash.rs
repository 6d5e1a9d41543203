//! `kill -9` of a real `ringops apply` at several points of a rollout: no worker ever
//! holds a torn artifact (each file is the old deployment's or the new one's, whole),
//! the next `apply` marks the interrupted deployment Failed and converges every worker.

mod common;

use common::{Repo, output, ringops_in, worker_files};
use ringops::fleetgen::{FleetOptions, generate};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A generated fleet with two commits: every workflow changes between them.
struct Crash {
    repo: Repo,
    base: String,
    head: String,
    /// worker → path → content, rendered at base and at head.
    expected: [BTreeMap<String, BTreeMap<String, Vec<u8>>>; 2],
}

impl Crash {
    fn new() -> Self {
        let repo = Repo::init();
        let base = FleetOptions {
            workflows: 120,
            steps: 4,
            workers: 10,
            revision: 0,
            percent: 100,
        };
        for (path, text) in generate(&base) {
            repo.write(&format!("fleet/{path}"), &text);
        }
        let base_commit = repo.commit("base");
        for (path, text) in generate(&base.at_revision(1)) {
            repo.write(&format!("fleet/{path}"), &text);
        }
        let head_commit = repo.commit("head");
        let expected = [&base_commit, &head_commit].map(|rev| render(&repo, rev));
        Crash {
            repo,
            base: base_commit,
            head: head_commit,
            expected,
        }
    }

    fn command(&self, state: &Path, args: &[&str]) -> Command {
        let mut cmd = ringops_in(self.repo.path());
        cmd.args(args)
            .args(["--repo", self.repo.path_str(), "--path", "fleet"])
            .arg("--state")
            .arg(state);
        cmd
    }
}

/// `ringops render` of ring dev at `rev`, read back.
fn render(repo: &Repo, rev: &str) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let out = tempfile::tempdir().expect("dir");
    let run = output(ringops_in(repo.path()).args([
        "render",
        "--ring",
        "dev",
        "--rev",
        rev,
        "--path",
        "fleet",
        "--repo",
        repo.path_str(),
        "--out",
        out.path().to_str().expect("UTF-8"),
    ]));
    run.expect(0);
    let mut workers = BTreeMap::new();
    for entry in std::fs::read_dir(out.path()).expect("read") {
        let dir = entry.expect("entry").path();
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        workers.insert(name, worker_files(&dir));
    }
    workers
}

/// Where to kill the rollout.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// A worker has begun staging new files.
    Staging,
    /// A worker committed its switch journal.
    Journal,
    /// At least one worker finished switching, others not.
    Between,
}

fn worker_dirs(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("workers"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn reached(state: &Path, point: Point) -> bool {
    worker_dirs(state).iter().any(|w| {
        let reserved = w.join(".ringops");
        match point {
            Point::Staging => reserved.join("staging").exists(),
            Point::Journal => reserved.join("journal.json").exists(),
            Point::Between => std::fs::read_to_string(reserved.join("managed.json"))
                .is_ok_and(|t| t.contains("d-000002")),
        }
    })
}

/// Polls until `point` is reached, then SIGKILLs the child.
fn kill_at(child: &mut Child, state: &Path, point: Point) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if reached(state, point) {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
            return;
        }
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("apply ended ({status}) before reaching {point:?}: make the fleet larger");
        }
        assert!(Instant::now() < deadline, "never reached {point:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn kill_9_during_apply_never_tears_an_artifact_and_the_next_apply_converges() {
    let crash = Crash::new();
    for point in [Point::Staging, Point::Journal, Point::Between] {
        let state = tempfile::tempdir().expect("state");
        let apply = |rev: &str| {
            crash.command(
                state.path(),
                &["apply", "--ring", "dev", "--yes", "--rev", rev],
            )
        };
        output(&mut apply(&crash.base)).expect(0);

        let mut child = apply(&crash.head)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        kill_at(&mut child, state.path(), point);

        for dir in worker_dirs(state.path()) {
            let worker = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            for (path, bytes) in worker_files(&dir) {
                let whole = crash
                    .expected
                    .iter()
                    .any(|side| side.get(&worker).and_then(|w| w.get(&path)) == Some(&bytes));
                assert!(whole, "{point:?}: {worker}/{path} is neither old nor new");
            }
        }

        let again = output(&mut apply(&crash.head));
        assert!(
            again
                .expect(0)
                .stderr
                .contains("d-000002 of ring dev was interrupted; marked Failed"),
            "{point:?}: {}",
            again.stderr
        );
        for (worker, want) in &crash.expected[1] {
            let got = worker_files(&state.path().join("workers").join(worker));
            assert!(got == *want, "{point:?}: {worker} did not converge");
        }
        let show =
            output(&mut crash.command(state.path(), &["show", "d-000002", "--format", "json"]));
        let doc: serde_json::Value = serde_json::from_str(&show.expect(0).stdout).expect("json");
        assert_eq!(doc["deployment"]["state"], "Failed", "{point:?}");
        let error = doc["deployment"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("interrupted"), "{point:?}: {error}");
        let drift = output(&mut crash.command(state.path(), &["drift", "--detailed-exitcode"]));
        drift.expect(0);
    }
}
