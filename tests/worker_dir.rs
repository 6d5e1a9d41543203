//! A worker directory survives `kill -9` at any point of an apply: a child process (this
//! test binary, re-run on an ignored helper test) applies generation after generation
//! until it is killed; then recover must leave exactly one complete generation.

use ringops::adapters::worker_dir::{Batch, FileSpec, WorkerDir};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "RINGOPS_WORKER_DIR_CRASH_CHILD";

/// Generation `n`: every file's content names `n`, and which files exist changes with
/// `n`, so each apply writes, adds and prunes (whole job folders too).
fn generation(n: u64) -> Batch {
    let mut files = std::collections::BTreeMap::new();
    for k in 0..40u64 {
        if (k + n).is_multiple_of(3) {
            continue;
        }
        let padding = "x".repeat(4096 * (k % 5) as usize);
        let content = format!("n={n} k={k}\n{padding}\n");
        files.insert(
            format!("wf/job-{}/f{k}.yaml", (k + n) % 9),
            FileSpec::new(content.into_bytes(), 0o644),
        );
    }
    Batch {
        deployment: format!("n{n}"),
        expected_generation: None,
        files,
    }
}

/// The generation a settled directory holds, checking it is exactly one whole
/// generation: every managed file intact and from the same `n`, nothing else there.
fn settled_generation(root: &Path) -> Option<u64> {
    let inventory = WorkerDir::new(root).inventory().expect("inventory");
    assert!(!inventory.pending, "a journal is left after recover");
    assert!(
        inventory.unmanaged.is_empty(),
        "stray files: {:?}",
        inventory.unmanaged
    );
    assert!(
        !root.join(".ringops/staging").exists(),
        "staging left after recover"
    );
    let first = inventory.managed.values().next()?;
    let n: u64 = first.record.deployment[1..]
        .parse()
        .expect("deployment n<N>");
    let want = generation(n);
    let have: Vec<&String> = inventory.managed.keys().collect();
    let want_paths: Vec<&String> = want.files.keys().collect();
    assert_eq!(have, want_paths, "the paths of generation {n}");
    for (path, entry) in &inventory.managed {
        assert!(entry.is_intact(), "{path} is not as written: {entry:?}");
        assert_eq!(entry.record.sha256, want.files[path].sha256, "{path}");
    }
    Some(n)
}

#[test]
#[ignore = "helper: run by a_worker_directory_survives_kill_9_at_any_point"]
fn child_applies_forever() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = WorkerDir::new(root);
    dir.recover().expect("recover");
    let inventory = dir.inventory().expect("inventory");
    let mut n = inventory
        .managed
        .values()
        .next()
        .map(|e| e.record.deployment[1..].parse::<u64>().expect("n"))
        .unwrap_or(0);
    loop {
        n += 1;
        dir.apply(&generation(n)).expect("apply");
    }
}

/// A small deterministic generator of kill delays, seeded from the clock and printed.
fn delays(rounds: usize) -> Vec<Duration> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    println!("kill delay seed {seed}");
    let mut x = seed | 1;
    (0..rounds)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(30 + x % 170)
        })
        .collect()
}

#[test]
fn a_worker_directory_survives_kill_9_at_any_point() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("worker");
    let exe = std::env::current_exe().expect("test binary");
    let mut last = 0;
    let mut interrupted = 0;
    for delay in delays(12) {
        let mut child = Command::new(&exe)
            .args([
                "child_applies_forever",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait for child");
        assert_eq!(
            status.signal(),
            Some(9),
            "the child applies until SIGKILL, it must not stop on its own: {status}"
        );
        let ringops = root.join(".ringops");
        if ringops.join("journal.json").exists() || ringops.join("staging").exists() {
            interrupted += 1;
        }
        WorkerDir::new(&root).recover().expect("recover");
        if let Some(n) = settled_generation(&root) {
            assert!(n >= last, "generation went back from {last} to {n}");
            last = n;
        }
    }
    println!("reached generation {last}; {interrupted} kills landed inside a switch");
    assert!(last > 0, "the child never finished an apply");
}
