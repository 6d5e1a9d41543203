//! The hook runner with real processes (`sh`, `true`, `false`, `sleep`): success,
//! failure, timeouts and what they leave behind, the environment, redaction, bounded
//! output, and programs or folders that are not there. Error messages are snapshots.

use super::*;
use std::time::Duration;

/// A bound for anything that should be quick; generous for a loaded 2-core machine.
const QUICK: Duration = Duration::from_secs(5);

fn spec(command: &[&str], timeout: Duration) -> HookSpec {
    HookSpec {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    }
}

/// Runs `command` as a check hook in `cwd`.
async fn check_in(
    cwd: &Path,
    command: &[&str],
    timeout: Duration,
    redact: &[&str],
) -> Result<HookOutput, HookError> {
    let env = [("RINGOPS_WORKER", "edge-1"), ("RINGOPS_RING", "dev")];
    let run = HookRun {
        name: "check",
        cwd,
        env: &env,
        redact,
    };
    super::run(&spec(command, timeout), run).await
}

async fn check(command: &[&str], timeout: Duration) -> Result<HookOutput, HookError> {
    let dir = tempfile::tempdir().expect("temp dir");
    check_in(dir.path(), command, timeout, &[]).await
}

/// The message as `main` prints it: the error and its causes.
fn message(e: HookError) -> String {
    crate::adapters::causes(&e)
}

/// Whether a process runs (a zombie, dead but not yet reaped by its parent, does not).
#[cfg(target_os = "linux")]
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Waits up to [`QUICK`] for a process to stop running.
#[cfg(target_os = "linux")]
async fn gone(pid: u32) -> bool {
    let until = Instant::now() + QUICK;
    while alive(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
}

#[tokio::test]
async fn success_returns_both_streams_and_the_run_variables() {
    let command = [
        "sh",
        "-c",
        "echo out; echo err >&2; echo \"$RINGOPS_WORKER $RINGOPS_RING\"",
    ];
    let done = check(&command, QUICK).await.expect("hook succeeds");
    let mut lines: Vec<&str> = done.output.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["edge-1 dev", "err", "out"], "{:?}", done.output);
    assert!(done.elapsed < QUICK, "{:?}", done.elapsed);
    let done = check(&["true"], QUICK).await.expect("true succeeds");
    assert_eq!(done.output, "");
}

#[tokio::test]
async fn a_failing_hook_reports_its_status_and_output() {
    let command = [
        "sh",
        "-c",
        "echo 'nginx: [emerg] unknown directive \"lsiten\" in job.conf:3' >&2; \
         echo 'nginx: configuration file job.conf test failed' >&2; exit 3",
    ];
    let err = check(&command, QUICK).await.expect_err("exit 3 fails");
    let HookError::Failed { status, .. } = &err else {
        panic!("expected Failed, got {err:?}");
    };
    assert_eq!(status.code(), Some(3));
    insta::assert_snapshot!("failed", message(err));

    let err = check(&["false"], QUICK).await.expect_err("false fails");
    insta::assert_snapshot!("failed-silently", message(err));
}

#[tokio::test]
async fn a_slow_hook_is_killed_at_its_timeout_and_reaped() {
    let started = Instant::now();
    let command = ["sh", "-c", "echo $$; exec sleep 30"];
    let err = check(&command, Duration::from_millis(300))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    let HookError::TimedOut { output, .. } = &err else {
        panic!("expected TimedOut, got {err:?}");
    };
    let pid: u32 = output.trim().parse().expect("the hook's pid");
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} was not reaped"
    );
    let err = check(&["sleep", "30"], Duration::from_millis(300))
        .await
        .expect_err("times out");
    insta::assert_snapshot!("timed-out", message(err));
}

/// `sh` starts a grandchild that keeps the output pipes open after `sh` is killed: the
/// run must not wait for it.
#[tokio::test]
async fn a_grandchild_holding_the_output_does_not_hold_up_the_caller() {
    let started = Instant::now();
    let command = ["sh", "-c", "sleep 10 & echo $!; sleep 10"];
    let err = check(&command, Duration::from_millis(300))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert!(matches!(err, HookError::TimedOut { .. }), "{err:?}");
}

/// Needs `killpg` (the `libc` crate): see `kill`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let command = ["sh", "-c", "sleep 30 & echo $!; sleep 30"];
    let err = check(&command, Duration::from_millis(300))
        .await
        .expect_err("times out");
    let HookError::TimedOut { output, .. } = &err else {
        panic!("expected TimedOut, got {err:?}");
    };
    let grandchild: u32 = output.trim().parse().expect("the grandchild's pid");
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_process_left_behind_after_success_is_not_waited_for() {
    let started = Instant::now();
    let command = ["sh", "-c", "sleep 5 & echo started"];
    let done = check(&command, Duration::from_secs(30))
        .await
        .expect("succeeds");
    assert_eq!(done.output, "started\n");
    assert!(started.elapsed() < Duration::from_secs(3), "{started:?}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_hook_leads_its_own_process_group() {
    let done = check(&["sh", "-c", "echo $$; cat /proc/$$/stat"], QUICK)
        .await
        .expect("succeeds");
    let (pid, stat) = done.output.split_once('\n').expect("pid, then stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // After the command name: state, ppid, pgrp.
    assert_eq!(fields[2], pid, "pgrp of {pid}: {stat}");
    assert_eq!(fields[1], std::process::id().to_string(), "{stat}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_run_kills_the_hook() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = ["sh", "-c", "echo $$ > pid; exec sleep 30"];
    let running = check_in(dir.path(), &command, Duration::from_secs(60), &[]);
    let pid_file = dir.path().join("pid");
    let stopped = tokio::time::timeout(Duration::from_millis(1000), running).await;
    assert!(stopped.is_err(), "the hook cannot finish in a second");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the hook wrote its pid within a second")
        .trim()
        .parse()
        .expect("pid");
    assert!(gone(pid).await, "the hook {pid} outlived its dropped run");
}

#[tokio::test]
async fn stdin_is_empty_and_the_hook_runs_in_its_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let done = check_in(dir.path(), &["sh", "-c", "cat; pwd -P"], QUICK, &[])
        .await
        .expect("cat ends at once on an empty stdin");
    let here = dir.path().canonicalize().expect("canonical");
    assert_eq!(done.output, format!("{}\n", here.display()));
}

#[test]
fn secrets_and_where_they_live_are_not_inherited() {
    let vars = [
        ("PATH", "/usr/bin"),
        ("RINGOPS_SECRET_TOKEN", "hunter2"),
        ("RINGOPS_SECRET_", "x"),
        ("CREDENTIALS_DIRECTORY", "/run/credentials/ringops.service"),
        ("RINGOPS_SECRETS_DIR", "/etc/ringops/secrets"),
        ("RINGOPS_STATE", "/var/lib/ringops"),
        ("MY_RINGOPS_SECRET_NOTE", "kept: not the prefix"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let kept: Vec<String> = inherited(vars)
        .map(|(k, _)| k.into_string().expect("UTF-8"))
        .collect();
    assert_eq!(kept, ["PATH", "RINGOPS_STATE", "MY_RINGOPS_SECRET_NOTE"]);
}

#[tokio::test]
async fn the_environment_is_inherited() {
    let done = check(&["sh", "-c", "echo \"${PATH:+PATH is set}\""], QUICK)
        .await
        .expect("succeeds");
    assert_eq!(done.output, "PATH is set\n");
}

#[tokio::test]
async fn secret_values_never_appear_in_output_or_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The value comes in as an argument, so the test's own source is not what leaks.
    let command = [
        "sh",
        "-c",
        "echo \"token=$1\" >&2; echo \"rejected $1 for $2\" >&2; exit 1",
        "sh",
        "hunter2",
        "s3cr3t-db",
    ];
    let redact = ["hunter2", "s3cr3t-db"];
    let err = check_in(dir.path(), &command, QUICK, &redact)
        .await
        .expect_err("exit 1");
    let text = message(err);
    assert!(
        !text.contains("hunter2") && !text.contains("s3cr3t"),
        "{text}"
    );
    insta::assert_snapshot!("redacted", text);

    let command = [
        "sh",
        "-c",
        "printf %s \"$1\"; printf %s \"$1\" >&2",
        "sh",
        "hunter2",
    ];
    let done = check_in(dir.path(), &command, QUICK, &redact)
        .await
        .expect("succeeds");
    assert_eq!(done.output, format!("{SENSITIVE}{SENSITIVE}"));
}

#[tokio::test]
async fn huge_output_keeps_only_its_end() {
    let command = [
        "sh",
        "-c",
        "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo 'secret: hunter2'; echo 'last line'",
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let done = check_in(dir.path(), &command, Duration::from_secs(60), &["hunter2"])
        .await
        .expect("succeeds");
    let (note, kept) = done.output.split_once('\n').expect("note line");
    let cut: usize = note
        .strip_prefix("… (")
        .and_then(|n| n.strip_suffix(" bytes cut)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a note of what was cut: {note:?}"));
    assert_eq!(kept.len(), KEEP);
    assert!(cut > 3_000_000 - KEEP, "{cut}");
    assert!(kept.ends_with("last line\n"), "{kept}");
    assert!(kept.contains("secret: (sensitive value)\n"), "{kept}");
    assert!(!kept.contains("hunter2"));
}

#[tokio::test]
async fn a_missing_program_or_folder_is_named() {
    let err = check(&["ringops-no-such-program", "-t"], QUICK)
        .await
        .expect_err("no such program");
    assert!(matches!(err, HookError::Spawn { .. }), "{err:?}");
    insta::assert_snapshot!("missing-program", message(err));

    let nowhere = Path::new("/nonexistent/ringops-hook-folder");
    let err = check_in(nowhere, &["true"], QUICK, &[])
        .await
        .expect_err("no such folder");
    insta::assert_snapshot!("missing-folder", message(err));

    let err = check(&[], QUICK).await.expect_err("no program");
    insta::assert_snapshot!("empty-command", message(err));
}
