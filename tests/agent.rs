//! `ringops agent` end to end: several real agents (the real binary) on loopback ports,
//! reached by the real CLI through workers whose `target` is `http://127.0.0.1:PORT`.
//! Remote workers end up holding exactly what local workers of the same fleet hold; a
//! wrong token, a tampered payload and a stale generation are refused with nothing
//! written; a killed agent fails the apply naming it, and converges once restarted.
//! Agents run only the hooks their agent.toml defines, named by the worker group: a
//! command line is refused at compile time and over the wire, an unknown name too,
//! with nothing written and nothing run.
//! Over mutual TLS (certificates made by the README's `openssl` steps), another agent's
//! files (its key and certificate, the CA certificates, the old token) open no agent,
//! the daemon's client certificate deploys, and a revoked agent is refused by name with
//! nothing written.
//! Every wait is bounded and names what it waited for; agents are killed when a test
//! ends, however it ends.

mod common;

use common::agent::{
    AGENT_HOOKS, AgentFleet, BOUND, DEV_WORKERS, GROUPS, RINGS, TOKEN, core_hooks,
};
use common::{Fleet, files_under, output, sha256_hex, worker_files};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// [`AgentFleet`], over TLS trusted through `ca` when set.
struct Remote {
    inner: AgentFleet,
    ca: Option<PathBuf>,
}

impl std::ops::Deref for Remote {
    type Target = AgentFleet;

    fn deref(&self) -> &AgentFleet {
        &self.inner
    }
}

impl std::ops::DerefMut for Remote {
    fn deref_mut(&mut self) -> &mut AgentFleet {
        &mut self.inner
    }
}

impl Remote {
    /// Agents over plain HTTP.
    fn new() -> Remote {
        Remote::with(None)
    }

    /// Agents over TLS with `pki`'s certificate, trusted through its CA.
    fn with(pki: Option<&Pki>) -> Remote {
        let tls = pki.map(|p| (p.cert(), p.key()));
        let tls = tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        Remote {
            inner: AgentFleet::start(tls, &[]),
            ca: pki.map(Pki::ca),
        }
    }

    /// Agents over plain HTTP whose agent.toml ends with `agent_toml`, the fleet edited
    /// by `edits` (file, text, replacement).
    fn with_hooks(edits: &[(&str, &str, &str)], agent_toml: &str) -> Remote {
        Remote {
            inner: AgentFleet::start_with(None, edits, agent_toml),
            ca: None,
        }
    }

    /// `ringops <args>` with the agent token of `token_file`.
    fn run_with(&self, token_file: &Path, args: &[&str]) -> common::Run {
        let mut cmd = self.fleet.command(args);
        cmd.env("RINGOPS_AGENT_TOKEN_FILE", token_file);
        if let Some(ca) = &self.ca {
            cmd.env("RINGOPS_AGENT_CA_FILE", ca);
        }
        output(&mut cmd)
    }

    fn run(&self, args: &[&str]) -> common::Run {
        self.run_with(self.token_file.path(), args)
    }

    fn apply(&self) -> common::Run {
        self.run(&["apply", "--ring", "dev", "--yes"])
    }

    /// What each agent's worker directory holds, but its records.
    fn remote_files(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        self.agents
            .iter()
            .map(|(w, a)| ((*w).to_owned(), worker_files(&a.dir())))
            .collect()
    }

    /// What local dev workers of the same commit hold after a local apply.
    fn local_files(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let local = Fleet::new();
        local.repo.replace_with(self.fleet.repo.path());
        let groups = self.fleet.repo.read(GROUPS);
        let mut plain = String::new();
        for line in groups.lines() {
            let target = line.split_once(" target: \"http://");
            let line = match target.or_else(|| line.split_once(" target: \"https://")) {
                Some((before, after)) => {
                    let rest = after.split_once("\",").map_or("", |(_, r)| r);
                    format!("{before}{rest}")
                }
                None => line.to_owned(),
            };
            plain.push_str(&line);
            plain.push('\n');
        }
        local.repo.write(GROUPS, &plain);
        local.repo.commit("the same fleet, local workers");
        local.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
        DEV_WORKERS
            .iter()
            .map(|w| ((*w).to_owned(), worker_files(&local.worker(w))))
            .collect()
    }
}

/// A generation document of one file.
fn generation(expected: Option<u64>, path: &str, content: &[u8], sha256: &str) -> Vec<u8> {
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(content);
    let body = json!({
        "deployment": "tampered",
        "expected_generation": expected,
        "files": {path: {"content": content, "sha256": sha256, "mode": 0o644}},
    });
    serde_json::to_vec(&body).expect("JSON")
}

#[test]
fn apply_through_agents_writes_what_local_workers_hold_and_inventories_agree() {
    let remote = Remote::new();
    let run = remote.apply();
    run.expect(0);
    let remote_files = remote.remote_files();
    assert!(
        remote_files.values().all(|f| !f.is_empty()),
        "every agent got files"
    );
    assert_eq!(remote_files, remote.local_files());
    for (worker, agent) in &remote.agents {
        let inventory = agent.inventory();
        assert_eq!(inventory["generation"], 1, "{worker}");
        assert!(inventory["deployment"].is_string(), "{worker}: {inventory}");
        let managed = inventory["managed"].as_object().expect("managed");
        assert_eq!(managed.len(), remote_files[*worker].len(), "{worker}");
    }
    let status = remote.run(&["status"]);
    status.expect(0);
    // A second apply finds nothing to change on any agent.
    remote.apply().expect(0);
    for agent in remote.agents.values() {
        assert_eq!(agent.inventory()["generation"], 1);
    }
}

#[test]
fn a_wrong_token_is_refused_naming_the_agent_and_showing_no_token() {
    let remote = Remote::new();
    let mut wrong = tempfile::NamedTempFile::new().expect("token file");
    write!(wrong, "not-the-agent-token").expect("write");
    let run = remote.run_with(wrong.path(), &["apply", "--ring", "dev", "--yes"]);
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("401"), "{all}");
    assert!(
        remote.agents.values().any(|a| all.contains(&a.target())),
        "{all}"
    );
    assert!(
        !all.contains("not-the-agent-token") && !all.contains(TOKEN),
        "{all}"
    );
    for agent in remote.agents.values() {
        assert!(worker_files(&agent.dir()).is_empty(), "nothing written");
        assert!(
            !agent.stderr().contains("not-the-agent-token"),
            "no token in the log"
        );
        let (status, _) = agent.request("GET", "/v1/healthz", "not-the-agent-token", b"");
        assert_eq!(status, 401);
    }
}

#[test]
fn tampered_payloads_and_stale_generations_are_refused_with_nothing_written() {
    let remote = Remote::new();
    remote.apply().expect(0);
    let agent = &remote.agents["core-dev-1"];
    let before = worker_files(&agent.dir());
    let cases = [
        (
            generation(Some(1), "x/y/z", b"evil", &sha256_hex(b"good")),
            422,
            "sha256",
        ),
        (
            generation(Some(1), "../../etc/z", b"evil", &sha256_hex(b"evil")),
            422,
            "`..`",
        ),
        (
            generation(Some(1), "/etc/z", b"evil", &sha256_hex(b"evil")),
            422,
            "relative",
        ),
        (
            generation(Some(0), "x/y/z", b"evil", &sha256_hex(b"evil")),
            409,
            "generation",
        ),
        (b"{not json".to_vec(), 400, "not a generation document"),
    ];
    for (body, status, says) in cases {
        let (got, answer) = agent.request("PUT", "/v1/generation", TOKEN, &body);
        assert_eq!(got, status, "{says}: {answer}");
        assert!(answer.contains(says), "{says}: {answer}");
        assert_eq!(
            worker_files(&agent.dir()),
            before,
            "nothing written ({says})"
        );
    }
    assert!(!agent.home.path().join("etc").exists());
    assert_eq!(agent.inventory()["generation"], 1);
}

/// A generation of one file replacing generation 1, with `hooks`.
fn generation_with_hooks(hooks: serde_json::Value) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&generation(Some(1), "x/y/z", b"new", &sha256_hex(b"new")))
            .expect("JSON");
    body["hooks"] = hooks;
    serde_json::to_vec(&body).expect("JSON")
}

fn hooks_log(remote: &Remote, worker: &str) -> String {
    remote.agents[worker].hooks_log()
}

#[test]
fn a_group_s_named_hooks_run_as_each_agent_s_agent_toml_defines_them() {
    let spy = tempfile::tempdir().expect("spy");
    let (file, from, to) = core_hooks(spy.path(), true);
    let remote = Remote::with_hooks(&[(file, from, &to)], AGENT_HOOKS);
    remote.apply().expect(0);
    for worker in ["core-dev-1", "core-dev-2"] {
        let expected = format!("check {worker} dev\nreload {worker} dev\n");
        assert_eq!(hooks_log(&remote, worker), expected, "{worker}");
    }
    assert_eq!(hooks_log(&remote, "edge-dev-1"), "", "edge has no hooks");
    assert!(
        files_under(spy.path()).is_empty(),
        "the group's command lines ran nowhere"
    );

    // A failing check fails its worker before anything of it is switched.
    let agent = &remote.agents["core-dev-2"];
    std::fs::write(agent.home.path().join("fail-check"), "").expect("fail-check");
    let before = worker_files(&agent.dir());
    remote.fleet.repo.edit(
        RINGS,
        "values: {log_level: debug, max_retries: 1}",
        "values: {log_level: trace, max_retries: 1}",
    );
    remote.fleet.repo.commit("dev logs more");
    let run = remote.apply();
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("core-dev-2") && all.contains("check refused by the test"),
        "{all}"
    );
    assert_eq!(
        worker_files(&agent.dir()),
        before,
        "core-dev-2 not switched"
    );
    assert!(files_under(spy.path()).is_empty(), "no command line ran");
}

#[test]
fn a_group_command_line_for_agent_workers_is_a_compile_error_and_nothing_is_written() {
    let spy = tempfile::tempdir().expect("spy");
    let (file, from, to) = core_hooks(spy.path(), false);
    let remote = Remote::with_hooks(&[(file, from, &to)], AGENT_HOOKS);
    let run = remote.apply();
    run.expect(1);
    let error = run
        .stdout
        .lines()
        .find(|l| l.contains("`check` of group `core`"))
        .unwrap_or_else(|| panic!("no error about the check: {run:?}"));
    let error = error.replace(&spy.path().display().to_string(), "[spy]");
    insta::assert_snapshot!("agent-group-command-line", error);
    for agent in remote.agents.values() {
        assert!(worker_files(&agent.dir()).is_empty(), "nothing written");
    }
    assert!(files_under(spy.path()).is_empty(), "nothing ran");
}

#[test]
fn a_generation_carrying_a_command_line_is_refused_and_nothing_runs_or_is_written() {
    let spy = tempfile::tempdir().expect("spy");
    let remote = Remote::with_hooks(&[], AGENT_HOOKS);
    remote.apply().expect(0);
    let agent = &remote.agents["core-dev-1"];
    let before = worker_files(&agent.dir());
    let touch = json!(["touch", spy.path().join("pwned")]);
    let cases = [
        (
            json!({"check": {"command": touch, "timeout_ms": 5000}, "worker": "core-dev-1"}),
            "[hooks.NAME]",
        ),
        (json!({"reload": touch}), "[hooks.NAME]"),
        (
            json!({"check": "validate", "command": touch}),
            "unknown field `command`",
        ),
    ];
    let mut answers = Vec::new();
    for (hooks, says) in cases {
        let body = generation_with_hooks(hooks);
        let (status, answer) = agent.request("PUT", "/v1/generation", TOKEN, &body);
        assert_eq!(status, 400, "{says}: {answer}");
        let doc: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        let error = doc["error"].as_str().expect("error").to_owned();
        assert!(error.contains(says), "{says}: {error}");
        assert_eq!(
            worker_files(&agent.dir()),
            before,
            "nothing written ({says})"
        );
        answers.push(error);
    }
    insta::assert_snapshot!("agent-refuses-a-command-line", answers[0]);
    assert!(files_under(spy.path()).is_empty(), "no command ran");
    assert_eq!(hooks_log(&remote, "core-dev-1"), "", "no hook ran");
    assert_eq!(agent.inventory()["generation"], 1);
}

#[test]
fn a_hook_name_the_agent_does_not_define_is_refused_with_nothing_written() {
    let remote = Remote::with_hooks(&[], AGENT_HOOKS);
    remote.apply().expect(0);
    let agent = &remote.agents["core-dev-1"];
    let before = worker_files(&agent.dir());
    let body = generation_with_hooks(json!({"check": "nginx-test", "reload": "reload-jobs"}));
    let (status, answer) = agent.request("PUT", "/v1/generation", TOKEN, &body);
    assert_eq!(status, 422, "{answer}");
    let doc: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(doc["kind"], "refused", "{doc}");
    insta::assert_snapshot!(
        "agent-refuses-an-unknown-hook",
        doc["error"].as_str().expect("error")
    );
    assert_eq!(worker_files(&agent.dir()), before, "nothing written");
    assert_eq!(hooks_log(&remote, "core-dev-1"), "", "no hook ran");
    assert_eq!(agent.inventory()["generation"], 1);
}

#[test]
fn a_killed_agent_fails_the_apply_naming_it_and_converges_once_restarted() {
    let mut remote = Remote::new();
    remote.apply().expect(0);
    remote.fleet.repo.edit(
        "examples/fleet/rings.yaml",
        "values: {log_level: debug, max_retries: 1}",
        "values: {log_level: trace, max_retries: 1}",
    );
    remote.fleet.repo.commit("dev logs more");
    let killed = remote.agents.get_mut("edge-dev-1").expect("agent");
    killed.kill();
    let target = killed.target();
    let run = remote.apply();
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(&target) && all.contains("unreachable"),
        "{all}"
    );
    remote
        .agents
        .get_mut("edge-dev-1")
        .expect("agent")
        .restart();
    remote.apply().expect(0);
    assert_eq!(remote.remote_files(), remote.local_files());
}

/// Polls `done` every 10 ms for [`BOUND`]; panics naming `what` on timeout.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {BOUND:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_agent_reverts_a_hot_edit_by_itself_and_its_inventory_reports_it() {
    let remote = Remote::new();
    remote.apply().expect(0);
    let agent = &remote.agents["core-dev-1"];
    let files = worker_files(&agent.dir());
    let (path, content) = files.iter().next().expect("a managed file");
    let full = agent.dir().join(path);
    std::fs::write(&full, "hot edit\n").expect("edit");
    std::fs::write(agent.dir().join("notes.txt"), "mine\n").expect("unmanaged");
    wait_until(&format!("{path} to be put back"), || {
        std::fs::read(&full).ok().as_ref() == Some(content)
    });
    let inventory = agent.inventory();
    let drift = inventory["drift"].as_array().expect("drift");
    assert!(
        drift.iter().any(|d| d["path"] == path.as_str()
            && d["what"] == "edited"
            && d["action"] == "reverted"),
        "{inventory}"
    );
    assert_eq!(
        std::fs::read_to_string(agent.dir().join("notes.txt")).expect("notes"),
        "mine\n"
    );
    // The daemon's next apply plans against the generation the revert produced.
    remote.apply().expect(0);
}

#[test]
fn a_restarted_agent_remembers_its_last_generation_and_heals_at_once() {
    let mut remote = Remote::new();
    remote.apply().expect(0);
    let agent = remote.agents.get_mut("core-dev-2").expect("agent");
    let before = agent.inventory();
    agent.kill();
    agent.restart();
    let after = agent.inventory();
    assert_eq!(after["deployment"], before["deployment"], "{after}");
    assert_eq!(after["drift_mode"], "revert", "{after}");
    let files = worker_files(&agent.dir());
    let (path, content) = files.iter().next().expect("a managed file");
    let full = agent.dir().join(path);
    std::fs::write(&full, "hot edit after a restart\n").expect("edit");
    wait_until(&format!("{path} to be put back after the restart"), || {
        std::fs::read(&full).ok().as_ref() == Some(content)
    });
    let inventory = agent.inventory();
    let drift = inventory["drift"].as_array().expect("drift");
    assert!(
        drift
            .iter()
            .any(|d| d["path"] == path.as_str() && d["action"] == "reverted"),
        "{inventory}"
    );
}

/// A private CA and an agent certificate for 127.0.0.1, made with the `openssl` CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `None` when `openssl` is not installed (a skip note; under CI a failure).
    fn new() -> Option<Pki> {
        if !common::require_tool("openssl", "openssl") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [&[&str]; 3] = [
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=ringops test CA",
                ],
            ]
            .concat(),
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "agent.key",
                    "-out",
                    "agent.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            &[
                "x509",
                "-req",
                "-in",
                "agent.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "agent.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        ];
        for args in steps {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(Pki { dir })
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("agent.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("agent.key")
    }
}

#[test]
fn agents_over_tls_are_reached_through_the_private_ca() {
    let Some(pki) = Pki::new() else { return };
    let remote = Remote::with(Some(&pki));
    assert!(
        remote
            .agents
            .values()
            .all(|a| a.target().starts_with("https://"))
    );
    remote.apply().expect(0);
    assert_eq!(remote.remote_files(), remote.local_files());
    // Without the CA the agents' certificate is not trusted, and the error says so.
    let mut untrusted = remote.fleet.command(&["apply", "--ring", "dev", "--yes"]);
    untrusted.env("RINGOPS_AGENT_TOKEN_FILE", remote.token_file.path());
    let run = output(&mut untrusted);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("https://127.0.0.1:"), "{}", run.stderr);
}

/// `systemd/ringops-agent.service` starting the binary under test, in a temporary
/// folder; `None` without `systemd-analyze` (a skip note; under CI a failure).
fn agent_unit() -> Option<(tempfile::TempDir, PathBuf)> {
    if !common::require_tool("systemd-analyze", "systemd") {
        return None;
    }
    let unit = std::fs::read_to_string(common::project().join("systemd/ringops-agent.service"))
        .expect("the agent's unit");
    let unit = unit.replace("/usr/local/bin/ringops", env!("CARGO_BIN_EXE_ringops"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ringops-agent.service");
    std::fs::write(&path, unit).expect("write the unit");
    Some((dir, path))
}

#[test]
fn the_agent_unit_verifies_reads_its_token_credential_and_stays_hardened() {
    let Some((_dir, unit)) = agent_unit() else {
        return;
    };
    let text = std::fs::read_to_string(&unit).expect("unit");
    assert!(
        text.contains("\nLoadCredential=agent-token:"),
        "the token credential"
    );
    let mut verify = std::process::Command::new("systemd-analyze");
    let run = output(verify.arg("verify").arg(&unit));
    assert!(
        run.code == 0 && run.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        run.stdout,
        run.stderr
    );
    let mut security = std::process::Command::new("systemd-analyze");
    security.args(["security", "--offline=yes", "--no-pager", "--threshold=11"]);
    let run = output(security.arg(&unit));
    if run.stderr.contains("--offline") || run.stderr.contains("--threshold") {
        common::skip(common::NO_OFFLINE_SECURITY);
        return;
    }
    let overall = run.stdout.lines().last().unwrap_or_default();
    assert_eq!(run.code, 0, "exposure above 1.1: {overall}");
}

/// `ringops apply` of ring dev with the fleet's client environment.
fn apply_mtls(remote: &AgentFleet) -> common::Run {
    output(&mut remote.command(&["apply", "--ring", "dev", "--yes"]))
}

#[test]
fn the_readme_s_openssl_steps_make_both_cas_the_certificates_and_a_crl_that_revokes() {
    use common::pki::verifies;
    let Some(pki) = common::pki::Pki::new() else {
        return;
    };
    let (agent_ca, daemon_ca) = (pki.path("agent-ca.pem"), pki.path("daemon-ca.pem"));
    let crl = pki.path("agent-crl.pem");
    for agent in ["web-1.pem", "web-2.pem"] {
        assert!(verifies(&agent_ca, &pki.path(agent), Some(&crl)), "{agent}");
        assert!(!verifies(&daemon_ca, &pki.path(agent), None), "{agent}");
    }
    assert!(verifies(&daemon_ca, &pki.path("daemon-client.pem"), None));
    pki.run_step(1);
    assert!(!verifies(&agent_ca, &pki.path("web-2.pem"), Some(&crl)));
    assert!(verifies(&agent_ca, &pki.path("web-1.pem"), Some(&crl)));
}

#[test]
fn with_mutual_tls_the_daemon_s_certificate_deploys_and_another_agent_s_files_open_none() {
    let Some(pki) = common::pki::Pki::new() else {
        return;
    };
    let mut remote = pki.fleet(&pki.path("daemon-ca.pem"));
    // Agent web-2's host, taken: its key and certificate, both CA certificates, and
    // the fleet token of before (still sent by `command`).
    let stolen = [
        pki.daemon_env("web-2", false),
        vec![("RINGOPS_AGENT_CA_FILE", pki.path("agent-ca.pem"))],
    ];
    for env in stolen {
        remote.client_env = env;
        let run = apply_mtls(&remote);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr
                .contains("refused by TLS: it refused this host's client certificate"),
            "{}",
            run.stderr
        );
        for (worker, agent) in &remote.agents {
            assert!(worker_files(&agent.dir()).is_empty(), "{worker} written");
        }
    }
    remote.client_env = pki.daemon_env("daemon-client", true);
    apply_mtls(&remote).expect(0);
    for (worker, agent) in &remote.agents {
        assert!(!worker_files(&agent.dir()).is_empty(), "{worker} deployed");
    }
}

#[test]
fn a_revoked_agent_is_refused_before_anything_is_sent_naming_it() {
    let Some(pki) = common::pki::Pki::new() else {
        return;
    };
    let mut remote = pki.fleet(&pki.path("daemon-ca.pem"));
    let revoked = remote.agents.get_mut("edge-dev-1").expect("edge-dev-1");
    let target = pki.serve_revoked(revoked);
    remote.client_env = pki.daemon_env("daemon-client", true);
    let run = apply_mtls(&remote);
    assert_eq!(run.code, 1, "{run:?}");
    let says = format!("agent {target} refused by TLS: its certificate is revoked");
    assert!(run.stderr.contains(&says), "{}", run.stderr);
    for (worker, agent) in &remote.agents {
        assert!(worker_files(&agent.dir()).is_empty(), "{worker} written");
    }
}
