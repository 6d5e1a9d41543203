//! `ringops daemon` end to end: the real binary in the background, on a real Git
//! repository and real worker folders, driven by commits, hot edits, HTTP calls and
//! signals. Every wait is bounded and names what it waited for; a failure shows the
//! daemon's log. The daemon is killed when a test ends, however it ends.

mod common;

use common::daemon::{BOUND, Daemon, Response};
use common::{FLEET, Fleet, Repo, files_under, output, project, ringops_in};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER_INI: &str = "invoices/archive.store/writer.ini";
const INVOICES: &str = "examples/fleet/workflows/invoices.yaml";
const DEV_WORKERS: [&str; 3] = ["core-dev-1", "core-dev-2", "edge-dev-1"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every managed or unmanaged file of a worker (its `.ringops/` records left out).
fn worker_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = files_under(dir);
    files.retain(|path, _| !path.starts_with(".ringops/"));
    files
}

/// Commits `retention_days: <days>` for the invoices archive (core-dev-1's writer.ini
/// then says `retention_days = <days>`); returns the commit.
fn set_retention(repo: &Repo, days: u32) -> String {
    let text = repo.read(INVOICES);
    let start = text.find("retention_days: ").expect("retention_days") + 16;
    let end = start + text[start..].find('}').expect("end of the map");
    repo.write(
        INVOICES,
        &format!("{}{days}{}", &text[..start], &text[end..]),
    );
    repo.commit(&format!("retention {days}"))
}

fn retention(days: u32) -> String {
    format!("retention_days = {days}\n")
}

/// `ringops history --format json` of ring dev, newest first.
fn history(fleet: &Fleet) -> Vec<Value> {
    let run = fleet.run(&[
        "history", "--ring", "dev", "--format", "json", "--limit", "100",
    ]);
    let doc: Value = serde_json::from_str(&run.expect(0).stdout).expect("history JSON");
    doc["deployments"].as_array().expect("deployments").clone()
}

#[test]
fn the_daemon_deploys_dev_at_start_and_then_every_new_commit() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    for worker in DEV_WORKERS {
        assert!(
            !worker_files(&fleet.worker(worker)).is_empty(),
            "{worker} was deployed before /readyz"
        );
    }
    assert!(
        !fleet.worker("core-stg-1").exists(),
        "staging is not auto-deployed"
    );
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    assert!(read(&ini).contains(&retention(90)), "{}", read(&ini));
    assert!(
        daemon.stdout().contains("Plan for ring dev"),
        "the first plan is printed"
    );

    let head = set_retention(&fleet.repo, 91);
    daemon.wait_until("the new commit on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
    daemon.wait_until("the new commit's deployment to be Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == head.as_str() && newest["state"] == "Active"
    });
    let deployments = history(&fleet);
    let [newest, first] = &deployments[..] else {
        panic!("two deployments: {deployments:#?}");
    };
    assert_eq!(newest["commit"], head.as_str());
    assert_eq!(newest["actor"], "daemon");
    assert_eq!(first["state"], "Superseded");
    // Full drift scans go by (counted in the metrics): the daemon's own writes are not
    // drift.
    let scans = daemon.stderr().matches("drift").count();
    daemon.wait_drift_scans(2);
    let drift = daemon.get("/api/v1/drift").json();
    assert_eq!(drift["drift_events"], Value::Array(vec![]), "{drift:#}");
    assert_eq!(daemon.stderr().matches("drift").count(), scans);
}

#[test]
fn hot_edits_and_deletions_are_reverted_at_once_and_unmanaged_files_left_alone() {
    let fleet = Fleet::new();
    // A full scan only every hour: the reverts below come from the worker watch.
    let daemon = Daemon::of(
        &fleet,
        &["--poll-interval", "200ms", "--drift-interval", "1h"],
    );
    daemon.wait_ready();
    let edited = fleet.worker("core-dev-1").join(WRITER_INI);
    let deleted = fleet.worker("core-dev-2").join(WRITER_INI);
    let (edited_text, deleted_text) = (read(&edited), read(&deleted));
    let unmanaged = fleet.worker("core-dev-1").join("invoices/notes.txt");
    std::fs::write(&unmanaged, "mine\n").expect("unmanaged file");

    std::fs::write(&edited, edited_text.replace("parquet", "csv")).expect("hot edit");
    std::fs::remove_file(&deleted).expect("delete");
    daemon.wait_until("the hot edit to be reverted", || {
        read(&edited) == edited_text
    });
    daemon.wait_until("the deleted file to be restored", || {
        read(&deleted) == deleted_text
    });
    assert_eq!(
        read(&unmanaged),
        "mine\n",
        "unmanaged files are never touched"
    );

    // A set: a pass may catch a write half done and revert twice.
    let kinds = || {
        let doc = daemon.get("/api/v1/drift").json();
        doc["drift_events"]
            .as_array()
            .expect("drift_events")
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["worker"], e["path"], e["kind"], e["summary"]
                )
            })
            .collect::<BTreeSet<String>>()
    };
    daemon.wait_until("both drift events in /api/v1/drift", || kinds().len() >= 2);
    assert_eq!(
        kinds(),
        BTreeSet::from([
            format!(r#""core-dev-1" "{WRITER_INI}" "Edited" "edited; reverted""#),
            format!(r#""core-dev-2" "{WRITER_INI}" "Missing" "missing; reverted""#),
        ])
    );
    daemon.wait_log("drift: edited; reverted ring=dev worker=core-dev-1");
    let metrics = daemon.get("/metrics").body;
    assert!(
        metrics.contains(r#"ringops_drift_events_total{ring="dev",kind="#),
        "{metrics}"
    );
    fleet.run(&["drift", "--detailed-exitcode"]).expect(0);
    assert_eq!(history(&fleet).len(), 1, "a revert is not a new deployment");
}

#[test]
fn a_drift_revert_is_noted_on_the_active_deployment_like_drift_fix() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let file = fleet.worker("core-dev-1").join(WRITER_INI);
    let deployed = read(&file);
    std::fs::write(&file, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_until("the hot edit to be reverted", || read(&file) == deployed);
    // The note is written just after the file, in the same pass.
    daemon.wait_until("the revert noted on d-000001", || {
        let show = fleet.run(&["show", "d-000001"]);
        let out = &show.expect(0).stdout;
        out.contains("drift") && out.contains("reverted")
    });
}

#[test]
fn a_daemon_with_a_relative_state_dir_reverts_drift() {
    let fleet = Fleet::new();
    let cwd = fleet.state.path();
    let mut cmd = ringops_in(cwd);
    cmd.args([
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--drift-interval",
        "1s",
    ])
    .args(["--repo", fleet.repo.path_str(), "--path", FLEET])
    .args(["--state", "relative"])
    .arg("--secrets-dir")
    .arg(project().join("examples/secrets"));
    let daemon = Daemon::start(cmd);
    daemon.wait_ready();
    let file = cwd.join("relative/workers/core-dev-1").join(WRITER_INI);
    let deployed = read(&file);
    assert!(
        !deployed.is_empty(),
        "deployed under the relative state folder"
    );
    std::fs::write(&file, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_until("the hot edit to be reverted", || read(&file) == deployed);
    assert!(
        !daemon.stderr().contains("drift pass failed"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn a_commit_that_does_not_compile_is_a_failed_deployment_and_the_next_good_one_proceeds() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let before: Vec<_> = DEV_WORKERS.map(|w| worker_files(&fleet.worker(w))).into();
    let good = fleet.repo.read(INVOICES);
    fleet
        .repo
        .write(INVOICES, &format!("{good}\ttab: indented\n"));
    let broken = fleet.repo.commit("a YAML syntax error");

    daemon.wait_until("a Failed deployment of the broken commit", || {
        history(&fleet)
            .iter()
            .any(|d| d["commit"] == broken.as_str())
    });
    let deployments = history(&fleet);
    let failed = &deployments[0];
    assert_eq!(failed["state"], "Failed", "{failed:#}");
    assert_eq!(failed["actor"], "daemon");
    let error = failed["error"].as_str().expect("an error");
    assert!(error.contains("does not compile"), "{error}");
    assert!(error.contains("workflows/invoices.yaml"), "{error}");
    assert_eq!(deployments[1]["state"], "Active", "d-000001 stays Active");
    let after: Vec<_> = DEV_WORKERS.map(|w| worker_files(&fleet.worker(w))).into();
    assert!(
        before == after,
        "a commit that does not compile touches no worker"
    );
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{12,40}\b", "[commit]")]}, {
        insta::assert_snapshot!("failed-build-error", error);
    });

    fleet.repo.write(INVOICES, &good);
    let fixed = set_retention(&fleet.repo, 91);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    daemon.wait_until("the next good commit on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
    daemon.wait_until("the good commit Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == fixed.as_str() && newest["state"] == "Active"
    });
    let failed = history(&fleet)
        .iter()
        .filter(|d| d["state"] == "Failed")
        .count();
    assert_eq!(failed, 1, "the broken commit is recorded once");
}

/// HMAC-SHA256 of `body` with `secret`, in hex.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The fleet checked out in a linked worktree on branch `deploy`: the daemon started
/// there watches the worktree's Git folder, which a ref update made from the main
/// repository does not touch. With an hour-long poll, only the webhook wakes it.
fn blind_worktree(fleet: &Fleet) -> (tempfile::TempDir, std::path::PathBuf) {
    let outside = tempfile::tempdir().expect("temp dir");
    let worktree = outside.path().join("deploy");
    fleet.repo.git(&["branch", "deploy"]);
    let path = worktree.to_str().expect("UTF-8");
    fleet
        .repo
        .git(&["worktree", "add", "--quiet", path, "deploy"]);
    (outside, worktree)
}

#[test]
fn an_oversized_webhook_body_gets_its_413_whole_before_the_connection_closes() {
    use std::io::Read;
    let fleet = Fleet::new();
    let secrets = common::secrets_dir(&[("webhook", "s3cret\n")]);
    let mut cmd = fleet.command(&["daemon", "--listen", "127.0.0.1:0", "--poll-interval", "1h"]);
    cmd.arg("--webhook-secret-file")
        .arg(secrets.path().join("webhook"));
    let daemon = Daemon::start(cmd);
    daemon.wait_ready();
    let addr = daemon.listening().expect("listening");
    let body = vec![b' '; 4 << 20];
    // Several times: a reset that discards the answer depends on timing.
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(BOUND)).expect("timeout");
        let head = format!(
            "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Hub-Signature-256: sha256=00\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send the head");
        stream.write_all(&body).expect("the whole body is taken");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("the answer arrives whole, no reset");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.contains("the body is larger than 1048576 bytes"),
            "{answer}"
        );
    }
}

#[test]
fn the_webhook_checks_signatures_and_limits_and_a_good_call_triggers_a_deploy() {
    let fleet = Fleet::new();
    let (_outside, worktree) = blind_worktree(&fleet);
    let secrets = common::secrets_dir(&[("webhook", "s3cret\n")]);
    let mut cmd = ringops_in(&worktree);
    // Drift scans every 200 ms: they never deploy, but show the daemon's loop going
    // round (a deploy the refused calls triggered would run before the next scan).
    cmd.args(["daemon", "--listen", "127.0.0.1:0", "--poll-interval", "1h"])
        .args(["--drift-interval", "200ms", "--repo"])
        .arg(&worktree)
        .args(["--path", FLEET, "--state"])
        .arg(fleet.state.path())
        .arg("--secrets-dir")
        .arg(project().join("examples/secrets"))
        .arg("--webhook-secret-file")
        .arg(secrets.path().join("webhook"));
    let daemon = Daemon::start(cmd);
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    set_retention(&fleet.repo, 91);
    fleet.repo.git(&["update-ref", "refs/heads/deploy", "main"]);

    let body = br#"{"ref":"refs/heads/deploy"}"#;
    let post =
        |headers: &[(&str, &str)], body: &[u8]| daemon.request("POST", "/hooks/git", headers, body);
    let wrong = format!("sha256={}", hmac_hex(b"wrong", body));
    assert_eq!(post(&[("X-Hub-Signature-256", &wrong)], body).status, 401);
    assert_eq!(post(&[], body).status, 401, "no signature");
    let malformed = post(&[("X-Hub-Signature-256", "md5=00")], body);
    assert_eq!(malformed.status, 401, "{}", malformed.body);
    assert_eq!(post(&[("X-Gitlab-Token", "guess")], body).status, 401);
    let huge = vec![b' '; (1 << 20) + 1];
    let signed = format!("sha256={}", hmac_hex(b"s3cret", &huge));
    let too_large = post(&[("X-Hub-Signature-256", &signed)], &huge);
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    // Refused calls trigger nothing, and nothing else deploys for this daemon: once its
    // loop has gone round past them (two scans), still 90.
    daemon.wait_drift_scans(2);
    assert!(
        read(&ini).contains(&retention(90)),
        "deployed without a webhook call"
    );

    let good = format!("sha256={}", hmac_hex(b"s3cret", body));
    let accepted = post(&[("X-Hub-Signature-256", &good)], body);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let doc = accepted.json();
    assert_eq!(
        (&doc["accepted"], &doc["style"], &doc["ref"]),
        (
            &Value::Bool(true),
            &"GitHub".into(),
            &"refs/heads/deploy".into()
        )
    );
    daemon.wait_until("the webhook's deploy on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
    let gitea = post(&[("X-Gitea-Signature", &hmac_hex(b"s3cret", body))], body);
    assert_eq!(gitea.status, 202, "{}", gitea.body);
    assert_eq!(post(&[("X-Gitlab-Token", "s3cret")], body).status, 202);

    // A flood: the burst allowance (5) runs out, later calls get 429 and Retry-After.
    let flood: Vec<Response> = (0..5)
        .map(|_| post(&[("X-Hub-Signature-256", &good)], body))
        .collect();
    let limited = flood.iter().find(|r| r.status == 429);
    let limited = limited.unwrap_or_else(|| panic!("no 429 in {flood:#?}"));
    assert!(limited.headers.contains_key("retry-after"), "{limited:#?}");
    let metrics = daemon.get("/metrics").body;
    for line in [
        r#"ringops_webhook_requests_total{result="bad_signature"} 2"#,
        r#"ringops_webhook_requests_total{result="missing_signature"} 1"#,
        r#"ringops_webhook_requests_total{result="malformed"} 1"#,
        r#"ringops_webhook_requests_total{result="too_large"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// Checks the OpenMetrics text format line by line: comments are HELP, TYPE or UNIT of
/// a declared family, every sample belongs to the family declared last and has a
/// number for value, and `# EOF` is the last line. Returns the samples.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("does not end with `# EOF`:\n{text}"));
    let mut family = String::new();
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name) = (words.next(), words.next().expect("a family name"));
            assert!(
                matches!(kind, Some("HELP" | "TYPE" | "UNIT")),
                "unexpected comment: {line}"
            );
            assert!(words.next().is_some_and(|w| !w.is_empty()), "{line}");
            family = name.to_owned();
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name = series.split('{').next().expect("name");
        assert!(
            !family.is_empty() && name.starts_with(&family),
            "{line} outside its family ({family})"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

#[test]
fn metrics_parse_as_openmetrics_and_the_api_answers_json_behind_its_token() {
    let fleet = Fleet::new();
    let secrets = common::secrets_dir(&[("api-token", "t0ken\n")]);
    let token = secrets.path().join("api-token");
    let daemon = Daemon::of(
        &fleet,
        &["--api-token-file", token.to_str().expect("UTF-8")],
    );
    daemon.wait_ready();
    let auth = [("Authorization", "Bearer t0ken")];
    let get = |path: &str| daemon.request("GET", path, &auth, b"");

    let health = daemon.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let refused = daemon.get("/metrics");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.headers["www-authenticate"], "Bearer");
    assert_eq!(daemon.get("/api/v1/rings").status, 401);

    let metrics = get("/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let content_type = &metrics.headers["content-type"];
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let samples = parse_openmetrics(&metrics.body);
    let active = r#"ringops_deployments{ring="dev",state="Active"}"#;
    assert_eq!(samples.get(active), Some(&1.0), "{}", metrics.body);
    let synced = r#"ringops_last_successful_sync_timestamp_seconds{ring="dev"}"#;
    assert!(
        samples.get(synced).is_some_and(|t| *t > 1.7e9),
        "{}",
        metrics.body
    );
    assert_eq!(samples.get("ringops_source_fetch_errors_total"), Some(&0.0));
    // The start-up drift scan is a full one.
    let scans = samples.get("ringops_drift_scan_duration_seconds_count");
    assert!(scans.is_some_and(|n| *n >= 1.0), "{}", metrics.body);

    let json = |path: &str, status: u16| {
        let response = get(path);
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert_eq!(
            response.headers["content-type"], "application/json",
            "{path}"
        );
        let doc = response.json();
        assert_eq!(doc["format_version"], 1, "{path}: {doc:#}");
        doc
    };
    let rings = json("/api/v1/rings", 200);
    assert_eq!(rings["rings"][0]["ring"], "dev", "{rings:#}");
    assert_eq!(rings["rings"][0]["active"]["id"], "d-000001", "{rings:#}");
    let deployments = json("/api/v1/deployments?ring=dev&limit=1", 200);
    assert_eq!(
        deployments["deployments"][0]["actor"], "daemon",
        "{deployments:#}"
    );
    let one = json("/api/v1/deployments/d-000001", 200);
    assert!(one.to_string().contains("core-dev-1"), "{one:#}");
    json("/api/v1/deployments/d-000099", 404);
    json("/api/v1/deployments/nonsense", 400);
    assert_eq!(
        json("/api/v1/drift", 200)["drift_events"],
        Value::Array(vec![])
    );
    json("/api/v1/nothing-here", 404);
    let hook = daemon.request("POST", "/hooks/git", &[], b"{}");
    assert_eq!(hook.status, 404, "no webhook secret: the webhook is off");
}

const CONFIG: &str = "poll_interval = \"200ms\"\ndrift_interval = \"1s\"\n";

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_sigterm_exits_0_promptly() {
    let fleet = Fleet::new();
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("ringops.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let mut all = vec!["--config", config.to_str().expect("UTF-8")];
    all.extend(["daemon", "--listen", "127.0.0.1:0"]);
    let daemon = Daemon::start(fleet.command(&all));
    daemon.wait_ready();

    std::fs::write(&config, format!("{CONFIG}bogus = 1\n")).expect("broken config");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration not reloaded, keeping the old one");
    assert!(daemon.stderr().contains("bogus"), "{}", daemon.stderr());
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    set_retention(&fleet.repo, 91);
    daemon.wait_until("a commit deployed after the refused reload", || {
        read(&ini).contains(&retention(91))
    });

    std::fs::write(&config, CONFIG).expect("good config");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded");
    assert_eq!(daemon.get("/healthz").status, 200);

    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(daemon.stderr().contains("stopped"), "{}", daemon.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(TcpStream::connect(daemon.addr).is_err(), "the API stopped");
}

#[test]
fn a_rollback_pins_the_ring_until_a_new_commit() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let bad = set_retention(&fleet.repo, 91);
    daemon.wait_until("the bad commit Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == bad.as_str() && newest["state"] == "Active"
    });
    let rollback = fleet.run(&[
        "rollback", "--ring", "dev", "--reason", "x", "--yes", "--wait",
    ]);
    assert!(
        rollback.expect(0).stdout.contains("Ring dev is pinned"),
        "{}",
        rollback.stdout
    );
    assert!(read(&ini).contains(&retention(90)));

    // Several polls and drift scans go by (two scans, at least a second of 200 ms
    // polls): the daemon leaves the ring where it is.
    daemon.wait_drift_scans(2);
    assert!(
        read(&ini).contains(&retention(90)),
        "the pinned commit came back"
    );
    let deployments = history(&fleet);
    assert_eq!(deployments.len(), 3, "{deployments:#?}");
    assert_eq!(deployments[0]["rollback_of"], "d-000001");
    assert_eq!(deployments[0]["state"], "Active");
    let rings = daemon.get("/api/v1/rings").body;
    assert!(rings.contains(&bad), "the pin names the commit: {rings}");
    let status = fleet.run(&["status"]);
    assert!(
        status.expect(0).stdout.contains("pinned by rollback"),
        "{}",
        status.stdout
    );

    // A restarted daemon deploys at start: the pin still holds.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(BOUND).success());
    drop(daemon);
    let daemon = Daemon::ready(&fleet);
    daemon.wait_log("pinned by a rollback: not deploying this commit again");
    assert!(
        read(&ini).contains(&retention(90)),
        "the restart deployed the pin"
    );
    assert_eq!(history(&fleet).len(), 3);

    let next = set_retention(&fleet.repo, 92);
    daemon.wait_until("the next commit on core-dev-1", || {
        read(&ini).contains(&retention(92))
    });
    daemon.wait_log("pin lifted");
    daemon.wait_until("the next commit Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == next.as_str() && newest["state"] == "Active"
    });
}

/// Lifecycle states a deployment passes through; none is left behind by a daemon.
const IN_PROGRESS: [&str; 5] = [
    "Queued",
    "Building",
    "Deploying",
    "Validating",
    "RollingBack",
];

#[test]
fn a_burst_of_commits_ends_on_the_newest() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let commits: Vec<String> = (91..=95)
        .map(|days| set_retention(&fleet.repo, days))
        .collect();
    let newest = &commits[4];
    daemon.wait_until("the newest commit Active", || {
        let d = &history(&fleet)[0];
        d["commit"] == newest.as_str() && d["state"] == "Active"
    });
    assert!(read(&ini).contains(&retention(95)), "{}", read(&ini));
    let deployments = history(&fleet);
    let new = deployments.len() - 1;
    assert!((1..=5).contains(&new), "{deployments:#?}");
    for d in &deployments {
        let state = d["state"].as_str().expect("state");
        assert!(!IN_PROGRESS.contains(&state), "{d:#}");
    }
}

#[test]
fn resume_lets_the_running_daemon_deploy_the_tracked_head_again() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let head = set_retention(&fleet.repo, 91);
    daemon.wait_until("the head Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == head.as_str() && newest["state"] == "Active"
    });
    let args = [
        "rollback", "--ring", "dev", "--reason", "x", "--yes", "--wait",
    ];
    fleet.run(&args).expect(0);
    assert!(read(&ini).contains(&retention(90)));
    let resume = fleet.run(&["resume", "dev", "--wait"]);
    assert!(
        resume.expect(0).stdout.contains("resumed"),
        "{}",
        resume.stdout
    );
    daemon.wait_until("the tracked head deployed again", || {
        read(&ini).contains(&retention(91))
    });
}

/// A generated fleet (hundreds of artifacts per worker) with two commits that change
/// every workflow, and what ring dev's workers hold at each.
struct Generated {
    repo: Repo,
    head: String,
    /// worker → path → content, at the first commit and at the second.
    expected: [BTreeMap<String, BTreeMap<String, Vec<u8>>>; 2],
}

impl Generated {
    fn new() -> Generated {
        use ringops::fleetgen::{FleetOptions, generate};
        let repo = Repo::init();
        let options = FleetOptions {
            workflows: 80,
            steps: 4,
            workers: 10,
            revision: 0,
            percent: 100,
        };
        let mut commits = Vec::new();
        for revision in [0, 1] {
            for (path, text) in generate(&options.at_revision(revision)) {
                repo.write(&format!("fleet/{path}"), &text);
            }
            commits.push(repo.commit(&format!("revision {revision}")));
        }
        let expected = [0, 1].map(|i| render(&repo, &commits[i]));
        let head = commits.pop().expect("head");
        Generated {
            repo,
            head,
            expected,
        }
    }
}

/// `ringops render --ring dev` at `rev`, read back by worker.
fn render(repo: &Repo, rev: &str) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let out = tempfile::tempdir().expect("dir");
    output(
        ringops_in(repo.path())
            .args(["render", "--ring", "dev", "--rev", rev])
            .args([
                "--path",
                "fleet",
                "--repo",
                repo.path_str(),
                "--out",
                out.path().to_str().expect("UTF-8"),
            ]),
    )
    .expect(0);
    let entries = std::fs::read_dir(out.path()).expect("render output");
    entries
        .map(|e| e.expect("entry").path())
        .map(|dir| {
            (
                dir.file_name().expect("name").to_string_lossy().into(),
                files_under(&dir),
            )
        })
        .collect()
}

#[test]
fn sigterm_during_an_apply_exits_0_and_tears_no_file() {
    let generated = Generated::new();
    // Start on the first commit: check the second out only once the daemon is ready.
    generated.repo.git(&["checkout", "--quiet", "HEAD~1"]);
    let state = tempfile::tempdir().expect("state");
    let mut cmd = ringops_in(generated.repo.path());
    cmd.args([
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "100ms",
    ])
    .args([
        "--repo",
        generated.repo.path_str(),
        "--path",
        "fleet",
        "--state",
    ])
    .arg(state.path());
    let daemon = Daemon::start(cmd);
    // Serving before the first deployment (seconds for this fleet) is done.
    assert_eq!(daemon.get("/healthz").status, 200);
    let early = daemon.get("/readyz");
    assert!(
        early.status == 503 && early.body.contains("not ready") || early.status == 200,
        "{early:?}"
    );
    daemon.wait_ready();
    let workers = state.path().join("workers");
    let staging = || {
        std::fs::read_dir(&workers).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|w| w.path().join(".ringops/staging").exists())
        })
    };
    assert!(!staging(), "the first deployment left no staging folder");
    generated
        .repo
        .git(&["checkout", "--quiet", &generated.head]);
    daemon.wait_until("a worker staging the second commit", staging);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());

    for (worker, old) in &generated.expected[0] {
        let new = &generated.expected[1][worker];
        for (path, bytes) in worker_files(&workers.join(worker)) {
            let whole = old.get(&path) == Some(&bytes) || new.get(&path) == Some(&bytes);
            assert!(
                whole,
                "{worker}/{path} is neither the old file nor the new one"
            );
        }
    }
    let run = output(
        ringops_in(generated.repo.path())
            .args(["history", "--format", "json"])
            .args([
                "--repo",
                generated.repo.path_str(),
                "--state",
                state.path().to_str().expect("UTF-8"),
            ]),
    );
    let doc: Value = serde_json::from_str(&run.expect(0).stdout).expect("JSON");
    let deployments = doc["deployments"].as_array().expect("deployments");
    for d in deployments {
        let state = d["state"].as_str().expect("state");
        assert!(!IN_PROGRESS.contains(&state), "left in progress: {d:#}");
    }
    // The pass in progress completed before the daemon stopped.
    assert_eq!(deployments[0]["commit"], generated.head.as_str());
    assert_eq!(deployments[0]["state"], "Active", "{:#}", deployments[0]);
    for (worker, new) in &generated.expected[1] {
        assert!(
            worker_files(&workers.join(worker)) == *new,
            "{worker} is not on the new commit"
        );
    }
}

#[test]
fn a_force_push_to_an_older_commit_is_deployed_as_the_new_head() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    set_retention(&fleet.repo, 91);
    daemon.wait_until("the new commit", || read(&ini).contains(&retention(91)));
    fleet.repo.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
    daemon.wait_until("the older head", || read(&ini).contains(&retention(90)));
}

#[test]
fn a_rewritten_history_that_lost_the_active_commit_still_deploys_the_new_head() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let lost = set_retention(&fleet.repo, 91);
    daemon.wait_until("the new commit Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == lost.as_str() && newest["state"] == "Active"
    });
    drop(daemon);
    // History rewritten and collected: the Active deployment's commit is gone.
    fleet.repo.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
    let head = set_retention(&fleet.repo, 92);
    fleet
        .repo
        .git(&["reflog", "expire", "--expire=now", "--all"]);
    fleet.repo.git(&["gc", "--quiet", "--prune=now"]);
    let gone = Command::new("git")
        .args(["cat-file", "-e", &lost])
        .current_dir(fleet.repo.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| !s.success());
    assert!(gone, "the lost commit {lost} is still in the repository");
    let daemon = Daemon::ready(&fleet);
    daemon.wait_until("the new head Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == head.as_str() && newest["state"] == "Active"
    });
    assert!(read(&ini).contains(&retention(92)));
    assert!(
        daemon.stderr().contains("is gone from the repository"),
        "{}",
        daemon.stderr()
    );
    let plan = fleet.run(&["plan", "--ring", "dev", "--detailed-exitcode"]);
    plan.expect(0);
}

#[test]
fn a_commit_that_only_adds_a_hook_is_deployed() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    fleet.repo.edit(
        "examples/fleet/groups.yaml",
        "features: [disk]",
        "features: [disk]\n  reload: {command: [sh, -c, 'true']}",
    );
    let head = fleet.repo.commit("core reloads its runtime");
    daemon.wait_until("the hook-only commit Active", || {
        let newest = &history(&fleet)[0];
        newest["commit"] == head.as_str() && newest["state"] == "Active"
    });
}

#[test]
fn a_deleted_job_folder_is_restored_and_still_watched() {
    let fleet = Fleet::new();
    let daemon = Daemon::of(
        &fleet,
        &["--poll-interval", "200ms", "--drift-interval", "1h"],
    );
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let deployed = read(&ini);
    let folder = ini.parent().expect("job folder");
    std::fs::remove_dir_all(folder).expect("rm -r the job folder");
    daemon.wait_until("the job folder restored", || read(&ini) == deployed);
    // Only the worker watch reverts edits here (no scan for an hour): the restored
    // folder must be watched like the rest.
    std::fs::write(&ini, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_until("the edit in the restored folder reverted", || {
        read(&ini) == deployed
    });
}

#[test]
fn drift_on_a_report_ring_is_recorded_once_and_left_in_place() {
    let fleet = Fleet::new();
    let daemon = Daemon::ready(&fleet);
    fleet.run(&["promote", "staging", "--wait"]).expect(0);
    let ini = fleet.worker("core-stg-1").join(WRITER_INI);
    let edited = format!("{}# hot edit\n", read(&ini));
    std::fs::write(&ini, &edited).expect("hot edit");
    let events = || {
        let doc = daemon.get("/api/v1/drift?ring=staging").json();
        doc["drift_events"]
            .as_array()
            .expect("drift_events")
            .clone()
    };
    daemon.wait_until("the staging drift recorded", || !events().is_empty());
    // A second edit on the worker: the pass it wakes reads the first edit again.
    let other = fleet
        .worker("core-stg-1")
        .join("invoices/archive.seal/processor.toml");
    let other_edited = format!("{}# hot edit\n", read(&other));
    std::fs::write(&other, &other_edited).expect("hot edit");
    daemon.wait_until("the second staging drift recorded", || events().len() >= 2);
    assert_eq!(read(&other), other_edited, "drift: report only records");
    assert_eq!(read(&ini), edited, "drift: report only records");
    let events = events();
    assert_eq!(
        events.len(),
        2,
        "each drifted file recorded once: {events:#?}"
    );
    for event in &events {
        assert_eq!(event["summary"], "edited; reported (ring drift: report)");
    }
}

#[test]
fn a_daemon_started_on_a_commit_that_does_not_compile_is_ready_and_records_it() {
    let fleet = Fleet::new();
    let good = fleet.repo.read(INVOICES);
    fleet
        .repo
        .write(INVOICES, &format!("{good}\ttab: indented\n"));
    let broken = fleet.repo.commit("broken");
    let daemon = Daemon::ready(&fleet);
    let deployments = history(&fleet);
    assert_eq!(deployments.len(), 1, "{deployments:#?}");
    assert_eq!(deployments[0]["commit"], broken.as_str());
    assert_eq!(deployments[0]["state"], "Failed");
    assert!(worker_files(&fleet.worker("core-dev-1")).is_empty());
    fleet.repo.write(INVOICES, &good);
    fleet.repo.commit("fixed");
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    daemon.wait_until("the fixed commit", || read(&ini).contains(&retention(90)));
}

#[test]
fn settings_the_daemon_cannot_use_stop_it_at_start_with_exit_1() {
    let fleet = Fleet::new();
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("ringops.toml");
    std::fs::write(&config, "bogus = 1\n").expect("config");
    let config = config.to_str().expect("UTF-8");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = held.local_addr().expect("address").to_string();
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").expect("secret");
    let empty = empty.to_str().expect("UTF-8");
    for (args, message) in [
        (vec!["--config", config, "daemon"], "unknown field `bogus`"),
        (vec!["daemon", "--listen", &taken], "cannot listen on"),
        (
            vec!["daemon", "--listen", "0.0.0.0:0"],
            "without an API token",
        ),
        (
            vec!["daemon", "--listen", "nowhere"],
            "listen address `nowhere`",
        ),
        (vec!["daemon", "--webhook-secret-file", empty], "is empty"),
    ] {
        let daemon = Daemon::spawn(fleet.command(&args));
        let status = daemon.wait_exit(BOUND);
        let stderr = daemon.stderr();
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn a_hot_edit_made_while_another_writer_holds_the_lock_is_reverted_once_it_is_free() {
    use ringops::adapters::lock::WriterLock;
    let fleet = Fleet::new();
    let daemon = Daemon::of(
        &fleet,
        &["--poll-interval", "200ms", "--drift-interval", "1h"],
    );
    daemon.wait_ready();
    let file = fleet.worker("core-dev-1").join(WRITER_INI);
    let deployed = read(&file);
    let lock = WriterLock::acquire(fleet.state.path(), "a test writing", false).expect("lock");
    std::fs::write(&file, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_log("another ringops holds the writer lock");
    drop(lock);
    daemon.wait_until("the hot edit reverted once the lock is free", || {
        read(&file) == deployed
    });
}

#[test]
fn a_commit_pushed_while_another_writer_holds_the_lock_is_deployed_once_it_is_free() {
    use ringops::adapters::lock::WriterLock;
    let fleet = Fleet::new();
    let daemon = Daemon::of(&fleet, &["--poll-interval", "1h", "--drift-interval", "1h"]);
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    let lock = WriterLock::acquire(fleet.state.path(), "a test writing", false).expect("lock");
    set_retention(&fleet.repo, 91);
    daemon.wait_log("another ringops holds the writer lock");
    drop(lock);
    daemon.wait_until("the commit deployed once the lock is free", || {
        read(&ini).contains(&retention(91))
    });
}

/// A Git smart-HTTP server on loopback: `git http-backend` (CGI) serving the bare
/// repositories under a folder, behind Basic authentication with the user `ringops` and
/// a token. One request per connection.
struct GitHttp {
    addr: SocketAddr,
    /// Requests refused for a missing or wrong `Authorization`.
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl GitHttp {
    fn serve(root: &Path, token: &str) -> GitHttp {
        use base64::Engine;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("ringops:{token}"));
        let expected = format!("Basic {credentials}");
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&refused);
        let root = root.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, expected, count) = (root.clone(), expected.clone(), count.clone());
                std::thread::spawn(move || git_http_exchange(stream, &root, &expected, &count));
            }
        });
        GitHttp { addr, refused }
    }

    fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

/// Answers one request on `stream`: 401 without the expected credentials, else the
/// CGI's answer.
fn git_http_exchange(
    stream: TcpStream,
    root: &Path,
    expected: &str,
    refused: &std::sync::atomic::AtomicUsize,
) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut out = stream;
    if headers.get("authorization").map(String::as_str) != Some(expected) {
        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let body = read_body(&mut reader, &headers);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env(
            "CONTENT_TYPE",
            headers.get("content-type").map_or("", String::as_str),
        )
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            headers.get("content-encoding").map_or("", String::as_str),
        )
        .env("REMOTE_USER", "ringops")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend");
    cgi.stdin
        .take()
        .expect("stdin")
        .write_all(&body)
        .expect("CGI input");
    let answer = cgi.wait_with_output().expect("CGI output").stdout;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| answer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .expect("CGI headers");
    let (head, content) = (&answer[..split.0], &answer[split.0 + split.1..]);
    let head = String::from_utf8_lossy(head);
    let mut status = "200 OK".to_owned();
    let mut response = String::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            Some(_) => response.push_str(&format!("{line}\r\n")),
            None => {}
        }
    }
    let head = format!(
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(content);
}

/// A request body sent with `Content-Length` or chunked.
fn read_body(reader: &mut impl std::io::BufRead, headers: &BTreeMap<String, String>) -> Vec<u8> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    body.resize(length, 0);
    reader.read_exact(&mut body).expect("body");
    body
}

/// A bare `origin.git` cloned from the fleet's repository, under a served folder.
fn bare_origin(fleet: &Fleet) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let origin = root.path().join("origin.git");
    let origin = origin.to_str().expect("UTF-8");
    fleet
        .repo
        .git(&["clone", "--quiet", "--bare", fleet.repo.path_str(), origin]);
    fleet.repo.git(&["remote", "add", "origin", origin]);
    root
}

#[test]
fn a_remote_repository_is_mirrored_with_its_token_and_its_new_commits_deployed() {
    let fleet = Fleet::new();
    let root = bare_origin(&fleet);
    let token = "t0ken-never-logged";
    let server = GitHttp::serve(root.path(), token);
    let config = tempfile::tempdir().expect("temp dir");
    let token_file = config.path().join("git-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let toml = config.path().join("ringops.toml");
    std::fs::write(
        &toml,
        format!(
            "repo = \"{}\"\ntoken_file = \"git-token\"\n",
            server.url("origin.git")
        ),
    )
    .expect("config");
    let daemon_in = |dir: &Path| {
        let mut cmd = ringops_in(dir);
        cmd.args([
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "200ms",
        ])
        .args(["--drift-interval", "1h", "--config"])
        .arg(&toml)
        .args(["--path", FLEET, "--state"])
        .arg(fleet.state.path())
        .arg("--secrets-dir")
        .arg(project().join("examples/secrets"));
        cmd
    };
    let daemon = Daemon::start(daemon_in(config.path()));
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    assert!(read(&ini).contains(&retention(90)), "{}", daemon.stderr());
    assert!(
        server.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "no 401 seen: the token was sent unasked"
    );

    let older = fleet.repo.git(&["rev-parse", "HEAD"]);
    set_retention(&fleet.repo, 91);
    fleet.repo.git(&["push", "--quiet", "origin", "main"]);
    daemon.wait_until("the pushed commit on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
    fleet.repo.git(&[
        "push",
        "--quiet",
        "--force",
        "origin",
        &format!("{}:main", older.trim()),
    ]);
    daemon.wait_until("the force-pushed older commit on core-dev-1", || {
        read(&ini).contains(&retention(90))
    });

    // A revoked token: fetches fail, are counted and logged, and the workers stay put.
    std::fs::write(&token_file, "revoked\n").expect("token file");
    daemon.wait_until("a failed fetch in the metrics", || {
        daemon
            .get("/metrics")
            .body
            .lines()
            .any(|l| l.starts_with("ringops_source_fetch_errors_total ") && !l.ends_with(" 0"))
    });
    daemon.wait_log("fetch failed");
    assert!(read(&ini).contains(&retention(90)));
    let logs = format!("{}{}", daemon.stderr(), daemon.stdout());
    assert!(
        !logs.contains(token) && !logs.contains("revoked"),
        "a credential in the logs:\n{logs}"
    );
    assert!(fleet.state.path().join("mirrors").is_dir());
}

#[test]
fn commands_read_a_remote_through_its_mirror_and_name_it_when_it_cannot_be_fetched() {
    let fleet = Fleet::new();
    let root = bare_origin(&fleet);
    let plan = |repo: &str| {
        let mut cmd = ringops_in(fleet.repo.path());
        cmd.args([
            "plan", "--ring", "dev", "--repo", repo, "--path", FLEET, "--state",
        ])
        .arg(fleet.state.path())
        .arg("--secrets-dir")
        .arg(project().join("examples/secrets"));
        output(&mut cmd)
    };
    let url = format!("file://{}", root.path().join("origin.git").display());
    let run = plan(&url);
    run.expect(0);
    assert!(run.stdout.contains("core-dev-1"), "{}", run.stdout);

    let missing = format!("file://{}", root.path().join("gone.git").display());
    let run = plan(&missing);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!("cannot fetch {missing}")),
        "{}",
        run.stderr
    );

    let run = plan("https://bot:pw@example.invalid/f.git");
    run.expect(1);
    assert!(
        run.stderr.contains("must not carry credentials") && !run.stderr.contains("bot:pw"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_daemon_whose_remote_is_down_is_live_not_ready_until_a_fetch_succeeds() {
    let fleet = Fleet::new();
    let root = tempfile::tempdir().expect("temp dir");
    let origin = root.path().join("origin.git");
    let url = format!("file://{}", origin.display());
    let mut cmd = ringops_in(fleet.repo.path());
    cmd.args([
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "200ms",
    ])
    .args([
        "--drift-interval",
        "1h",
        "--repo",
        &url,
        "--path",
        FLEET,
        "--state",
    ])
    .arg(fleet.state.path())
    .arg("--secrets-dir")
    .arg(project().join("examples/secrets"));
    let daemon = Daemon::start(cmd);
    daemon.wait_log("fetch failed");
    assert_eq!(daemon.get("/healthz").status, 200);
    assert_eq!(daemon.get("/readyz").status, 503);
    assert!(!fleet.worker("core-dev-1").exists());

    let origin = origin.to_str().expect("UTF-8");
    fleet
        .repo
        .git(&["clone", "--quiet", "--bare", fleet.repo.path_str(), origin]);
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    assert!(read(&ini).contains(&retention(90)), "{}", daemon.stderr());
}

#[test]
fn a_deployment_that_failed_on_a_worker_is_tried_again_with_backoff_until_it_succeeds() {
    let fleet = Fleet::new();
    let marker = fleet.state.path().join("config-validator-broken");
    let check = format!("test ! -e {}", marker.display());
    fleet.repo.edit(
        &format!("{FLEET}/groups.yaml"),
        "features: [disk]",
        &format!("features: [disk]\n  check: {{command: [sh, -c, {check:?}]}}"),
    );
    fleet.repo.commit("check hook");
    // No polls: only the ref watch and the retry timer deploy. Drift scans every
    // 200 ms never deploy; they show the loop going round at the end.
    let daemon = Daemon::of(
        &fleet,
        &[
            "--poll-interval",
            "1h",
            "--drift-interval",
            "200ms",
            "--retry-backoff",
            "300ms",
        ],
    );
    daemon.wait_ready();
    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    assert!(read(&ini).contains(&retention(90)));

    // The validator breaks; the next commit (seen through the ref watch) fails on
    // core-dev-1, and is tried again 300 ms later, then 600 ms after that.
    std::fs::write(&marker, "").expect("marker");
    set_retention(&fleet.repo, 91);
    daemon.wait_log("trying again in 300ms");
    daemon.wait_log("trying again in 600ms");
    // The backoff was waited: the second attempt failed at least 300 ms after the first.
    let first = daemon.log_time("trying again in 300ms", 1);
    let second = daemon.log_time("trying again in 600ms", 1);
    assert!(
        second - first >= chrono::TimeDelta::milliseconds(300),
        "tried again {:?} after the first failure",
        second - first
    );
    assert!(
        read(&ini).contains(&retention(90)),
        "a failed check switched the worker"
    );
    let failed = history(&fleet)
        .iter()
        .filter(|d| d["state"] == "Failed")
        .count();
    assert!(failed >= 2, "{failed} failed attempts recorded");

    std::fs::remove_file(&marker).expect("repair the validator");
    daemon.wait_until("the retried deployment on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
    daemon.wait_log_times("state=Active", 2);
    let succeeded = daemon.log_time("state=Active", 2);
    assert!(
        succeeded - second >= chrono::TimeDelta::milliseconds(600),
        "succeeded {:?} after the second failure, before its 600 ms backoff",
        succeeded - second
    );
    // The loop goes round (two scans, any due retry served first): no retry follows.
    let attempts = daemon.stderr().matches("trying again in").count();
    daemon.wait_drift_scans(2);
    assert_eq!(
        daemon.stderr().matches("trying again in").count(),
        attempts,
        "retries went on after the success"
    );
}

#[test]
fn the_daemon_rolls_a_staged_dev_ring_batch_by_batch_and_leaves_a_frozen_one_alone() {
    let fleet = Fleet::new();
    let rings = "examples/fleet/rings.yaml";
    fleet.repo.edit(
        rings,
        "strategy: {type: allAtOnce}",
        "strategy: {type: rolling, maxParallel: 1}\n  health: {command: [sh, -c, 'test -d \"$RINGOPS_WORKER_DIR\"']}",
    );
    fleet.repo.commit("dev rolls one worker at a time");
    let daemon = Daemon::ready(&fleet);
    let show = fleet.run(&["show", "d-000001"]).expect(0).stdout.clone();
    for batch in [
        "batch 1/3 (core-dev-1): healthy",
        "batch 3/3 (edge-dev-1): healthy",
    ] {
        assert!(show.contains(batch), "{batch} in\n{show}");
    }
    drop(daemon);

    // A commit that freezes dev is not deployed; the one that lifts the freeze is.
    let frozen = Fleet::new();
    let daemon = Daemon::ready(&frozen);
    let ini = frozen.worker("core-dev-1").join(WRITER_INI);
    frozen.repo.edit(
        rings,
        "  autoDeploy: true",
        "  autoDeploy: true\n  freeze: true",
    );
    set_retention(&frozen.repo, 91);
    daemon.wait_log("not deploying: it is gated (a freeze)");
    assert!(
        read(&ini).contains(&retention(90)),
        "a frozen commit was deployed"
    );
    frozen.repo.edit(
        rings,
        "  autoDeploy: true\n  freeze: true",
        "  autoDeploy: true",
    );
    frozen.repo.commit("unfreeze dev");
    daemon.wait_until("the unfrozen commit on core-dev-1", || {
        read(&ini).contains(&retention(91))
    });
}

#[test]
fn a_dev_canary_waiting_to_be_continued_is_not_deployed_again_on_every_poll() {
    let fleet = Fleet::new();
    fleet.repo.edit(
        "examples/fleet/rings.yaml",
        "strategy: {type: allAtOnce}",
        "strategy: {type: canary, canary: 1, maxParallel: 2}",
    );
    fleet.repo.commit("dev is a canary");
    let daemon = Daemon::ready(&fleet);
    // Polls go by (two drift scans, at least a second of 200 ms polls).
    daemon.wait_drift_scans(2);
    assert_eq!(history(&fleet).len(), 1, "the same commit deployed again");
    set_retention(&fleet.repo, 91);
    daemon.wait_log("not deploying: d-000001 is under way");
    let deployments = history(&fleet);
    assert_eq!(deployments.len(), 1, "{deployments:#?}");
    assert_eq!(deployments[0]["state"], "Deploying");
}

/// Slow clients opened against the daemon: past its connection cap by this many.
const PAST_THE_CAP: usize = 20;

/// The daemon with `config` (a `ringops.toml`) written beside it, ready.
fn daemon_with_config(fleet: &Fleet, config: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("config dir");
    let path = dir.path().join("ringops.toml");
    std::fs::write(&path, config).expect("config");
    let mut all = vec!["--config", path.to_str().expect("UTF-8")];
    all.extend(["daemon", "--listen", "127.0.0.1:0"]);
    let daemon = Daemon::start(fleet.command(&all));
    daemon.wait_ready();
    (daemon, dir)
}

/// A full head announcing a large webhook body (the daemon reads it before any check).
const WEBHOOK_HEAD: &str = "POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";

#[test]
fn a_flood_of_slow_clients_past_the_cap_is_refused_while_commits_deploy_and_edits_revert_and_sigterm_waits_only_stop_grace()
 {
    let fleet = Fleet::new();
    // Timeouts far longer than the test: only the cap and the stop grace act on the flood.
    let config = "poll_interval = \"200ms\"\ndrift_interval = \"1h\"\nstop_grace = \"2s\"\n\
                  [http]\nmax_connections = 16\nheader_timeout = \"5m\"\nbody_timeout = \"5m\"\n";
    let (daemon, _config) = daemon_with_config(&fleet, config);
    let flood = common::flood::Flood::open(daemon.addr, 16 + PAST_THE_CAP, WEBHOOK_HEAD);
    daemon.wait_until("the connections past the cap to be closed", || {
        flood.closed() >= PAST_THE_CAP
    });
    assert!(
        common::flood::refused(daemon.addr, "/healthz", BOUND),
        "a request past the cap is closed unanswered"
    );

    let ini = fleet.worker("core-dev-1").join(WRITER_INI);
    set_retention(&fleet.repo, 91);
    daemon.wait_until("a commit deployed while flooded", || {
        read(&ini).contains(&retention(91))
    });
    let deployed = read(&ini);
    std::fs::write(&ini, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_until("a hot edit reverted while flooded", || {
        read(&ini) == deployed
    });
    assert_eq!(flood.open_now(), 16, "the flood held the cap throughout");
    assert!(
        daemon
            .stderr()
            .contains("connections are open (max_connections)"),
        "{}",
        daemon.stderr()
    );

    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "stopped after {:?}, not bounded by the 2 s stop grace",
        asked.elapsed()
    );
    assert!(
        daemon
            .stderr()
            .contains("HTTP connections still open after the stop grace"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn slow_heads_slow_bodies_and_idle_connections_are_cut_off_by_the_daemon_s_timeouts() {
    let fleet = Fleet::new();
    let config = "poll_interval = \"200ms\"\ndrift_interval = \"1h\"\n\
                  [http]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\nbody_min_rate_kib = 1\n";
    let (daemon, _config) = daemon_with_config(&fleet, config);
    let flood = common::flood::Flood::open(daemon.addr, 6, WEBHOOK_HEAD);
    daemon.wait_until("every slow client to be cut off", || flood.closed() == 6);
    assert_eq!(daemon.get("/healthz").status, 200);
}
