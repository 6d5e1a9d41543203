//! The agent's service on 127.0.0.1, reached through the HTTP link: the two sides
//! of the wire protocol tested together. Every wait is bounded.

use super::*;
use crate::adapters::http_auth::Secret;
use crate::adapters::link::HttpAgent;
use crate::adapters::link::http::AgentError;
use crate::adapters::worker_dir::WorkerDir;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

const TOKEN: &str = "agent-t0ken";

/// Awaits `future`, failing the test with `what` after a few seconds.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// An agent serving a temporary worker directory, stopped when dropped.
struct Running {
    agent: Arc<Agent>,
    dir: tempfile::TempDir,
    base: String,
    _stop: oneshot::Sender<()>,
}

impl Running {
    async fn start(body_limit: usize) -> Running {
        Running::start_with(body_limit, BTreeMap::new()).await
    }

    /// An agent whose agent.toml defines `hooks`.
    async fn start_with(body_limit: usize, hooks: BTreeMap<String, HookSpec>) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = Secret::new(TOKEN).expect("token");
        let agent = Agent::new(dir.path().join("w"), token, body_limit).with_hooks(hooks);
        let agent = Arc::new(agent);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = Limits::default();
        tokio::spawn(serve(
            listener,
            None,
            Arc::clone(&agent),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Running {
            agent,
            dir,
            base,
            _stop: stop,
        }
    }

    fn link(&self, token: &str) -> HttpAgent {
        HttpAgent::with_token_text(&self.base, token)
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("w")
    }

    /// A raw `PUT /v1/generation`, bypassing the link's own encoding.
    async fn put_raw(&self, body: serde_json::Value) -> (u16, ErrorDoc) {
        let response = within(
            "PUT /v1/generation",
            reqwest::Client::new()
                .put(format!("{}/v1/generation", self.base))
                .bearer_auth(TOKEN)
                .json(&body)
                .send(),
        )
        .await
        .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("an error document"))
    }
}

fn batch(deployment: &str, expected: Option<u64>, files: &[(&str, &str)]) -> Batch {
    Batch {
        deployment: deployment.to_owned(),
        expected_generation: expected,
        files: files
            .iter()
            .map(|(p, c)| ((*p).to_owned(), FileSpec::new(c.as_bytes().to_vec(), 0o644)))
            .collect(),
    }
}

fn wire_file(content: &[u8], sha256: &str) -> serde_json::Value {
    let content = base64::engine::general_purpose::STANDARD.encode(content);
    serde_json::json!({"content": content, "sha256": sha256, "mode": 0o644})
}

#[tokio::test]
async fn a_generation_is_switched_and_read_back_through_the_link() {
    let agent = Running::start(1 << 20).await;
    let link = agent.link(TOKEN);
    let applied = within(
        "the first switch",
        link.switch(
            batch("d1", Some(0), &[("wf/job/a.ini", "a=1\n")]),
            Hooks::default(),
        ),
    )
    .await
    .expect("switched");
    assert_eq!((applied.generation, applied.written.len()), (1, 1));
    let on_disk = std::fs::read_to_string(agent.root().join("wf/job/a.ini")).expect("written");
    assert_eq!(on_disk, "a=1\n");
    let inventory = within("inventory", link.inventory()).await.expect("read");
    assert_eq!(
        inventory,
        WorkerDir::new(agent.root()).inventory().expect("local")
    );
    let bytes = within("read", link.read("wf/job/a.ini"))
        .await
        .expect("read");
    assert_eq!(bytes.as_deref(), Some(&b"a=1\n"[..]));
    let missing = within("read", link.read("wf/job/none"))
        .await
        .expect("read");
    assert_eq!(missing, None);
    within("clone", link.clone_file("wf/job/a.ini", "wf/job/b.ini"))
        .await
        .expect("cloned");
    assert!(agent.root().join("wf/job/b.ini").is_file());
}

/// A hook of the agent's agent.toml running `script` with `sh -c`.
fn sh(script: &str) -> HookSpec {
    HookSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn the_link_sends_hook_names_only_and_the_agent_runs_its_own_command() {
    let spy = tempfile::tempdir().expect("spy");
    let ran = spy.path().join("ran");
    let script = format!(
        "echo \"$RINGOPS_WORKER $RINGOPS_RING\" >> {}",
        ran.display()
    );
    let hooks = BTreeMap::from([("reload-jobs".to_owned(), sh(&script))]);
    let agent = Running::start_with(1 << 20, hooks).await;
    let link = agent.link(TOKEN);
    let pwned = spy.path().join("pwned");
    let command = Hooks {
        reload: Some(WorkerHook::Command(sh(&format!(
            "touch {}",
            pwned.display()
        )))),
        ..Hooks::default()
    };
    let files = [("wf/job/a.ini", "a=1\n")];
    let refused = within(
        "a switch with a command",
        link.switch(batch("d1", Some(0), &files), command),
    )
    .await
    .expect_err("a command is never sent");
    assert!(
        matches!(&refused, SwitchError::NotSwitched(LinkError::Refused(m)) if m.contains("[hooks.NAME]")),
        "{refused:?}"
    );
    let named = Hooks {
        reload: Some(WorkerHook::Named {
            hook: "reload-jobs".into(),
        }),
        worker: "w1".into(),
        ring: "dev".into(),
        ..Hooks::default()
    };
    let local = agent
        .agent
        .dir()
        .switch(batch("d1", Some(0), &files), named.clone());
    let refused = within("a local switch with a name", local)
        .await
        .expect_err("a folder has no named hooks");
    assert!(
        matches!(refused, SwitchError::NotSwitched(LinkError::Refused(_))),
        "{refused:?}"
    );
    assert!(
        !agent.root().join("wf").exists() && !pwned.exists(),
        "nothing written or run"
    );
    within(
        "a switch naming a hook",
        link.switch(batch("d1", Some(0), &files), named),
    )
    .await
    .expect("switched");
    assert_eq!(
        std::fs::read_to_string(&ran).expect("the hook ran"),
        "w1 dev\n"
    );
    assert!(agent.root().join("wf/job/a.ini").is_file());
}

#[tokio::test]
async fn a_stale_generation_is_a_generation_mismatch_and_changes_nothing() {
    let agent = Running::start(1 << 20).await;
    let link = agent.link(TOKEN);
    within(
        "switch",
        link.switch(batch("d1", Some(0), &[("wf/job/a", "1")]), Hooks::default()),
    )
    .await
    .expect("switched");
    let stale = batch("d2", Some(0), &[("wf/job/a", "2")]);
    let err = within("stale switch", link.switch(stale, Hooks::default()))
        .await
        .expect_err("stale");
    assert!(
        matches!(
            err,
            SwitchError::NotSwitched(LinkError::Dir(WorkerDirError::GenerationMismatch {
                expected: 0,
                found: 1,
                ..
            }))
        ),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(agent.root().join("wf/job/a")).expect("a"),
        "1"
    );
}

#[tokio::test]
async fn a_wrong_token_gets_401_and_the_error_does_not_show_either_token() {
    let agent = Running::start(1 << 20).await;
    let link = agent.link("wrong-secret-value");
    let err = within("inventory", link.inventory())
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        matches!(err, LinkError::Agent(AgentError::Unauthorized { .. })),
        "{text}"
    );
    assert!(text.contains(&agent.base) && text.contains("401"), "{text}");
    assert!(
        !text.contains("wrong-secret-value") && !text.contains(TOKEN),
        "{text}"
    );
    let err = within(
        "switch",
        link.switch(batch("d", None, &[("wf/j/a", "x")]), Hooks::default()),
    )
    .await
    .expect_err("refused");
    assert!(err.error().to_string().contains("401"), "{err:?}");
    assert!(!agent.root().exists(), "nothing written");
}

#[tokio::test]
async fn tampered_payloads_are_refused_with_nothing_written() {
    let agent = Running::start(1 << 20).await;
    let good = wire_file(b"x", &sha256_hex(b"x"));
    let cases = [
        (
            serde_json::json!({"wf/job/a": wire_file(b"x", &sha256_hex(b"y"))}),
            422,
            "sha256",
        ),
        (
            serde_json::json!({"../etc/passwd": good.clone()}),
            422,
            "`..`",
        ),
        (
            serde_json::json!({"/etc/passwd": good.clone()}),
            422,
            "relative",
        ),
        (
            serde_json::json!({".ringops/managed.json": good.clone()}),
            422,
            ".ringops",
        ),
        (
            serde_json::json!({"wf/job/a": {"content": "%%%", "sha256": "00", "mode": 420}}),
            400,
            "base64",
        ),
    ];
    for (files, status, says) in cases {
        let body = serde_json::json!({
            "deployment": "d", "expected_generation": null,
            "files": {"wf/job/ok": good.clone()}
        });
        let mut body = body;
        for (k, v) in files.as_object().expect("object") {
            body["files"][k] = v.clone();
        }
        let (got, doc) = agent.put_raw(body).await;
        assert_eq!(got, status, "{doc:?}");
        assert!(doc.error.contains(says), "{says}: {}", doc.error);
        assert!(!agent.root().exists(), "nothing written for {says}");
    }
}

#[tokio::test]
async fn a_symbolic_link_on_the_way_is_refused() {
    let agent = Running::start(1 << 20).await;
    let outside = tempfile::tempdir().expect("outside");
    std::fs::create_dir_all(agent.root()).expect("root");
    std::os::unix::fs::symlink(outside.path(), agent.root().join("wf")).expect("link");
    let link = agent.link(TOKEN);
    let err = within(
        "switch",
        link.switch(batch("d", None, &[("wf/job/a", "x")]), Hooks::default()),
    )
    .await
    .expect_err("refused");
    assert!(err.error().to_string().contains("symbolic link"), "{err:?}");
    assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let agent = Running::start(1024).await;
    let big = "x".repeat(4096);
    let body = serde_json::json!({
        "deployment": "d", "expected_generation": null,
        "files": {"wf/job/a": wire_file(big.as_bytes(), &sha256_hex(big.as_bytes()))}
    });
    let (status, doc) = agent.put_raw(body).await;
    assert_eq!((status, doc.kind), (413, ErrorKind::TooLarge));
}

#[tokio::test]
async fn an_unreachable_agent_is_named_with_the_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let err = within(
        "inventory",
        HttpAgent::with_token_text(&base, TOKEN).inventory(),
    )
    .await
    .expect_err("unreachable");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("agent {base} is unreachable")),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn paths_the_agent_refuses() {
    let refused: BTreeMap<&str, bool> = [
        ("wf/job/a.ini", false),
        ("wf/job/sub/a.ini", false),
        ("wf/a.ini", true),
        ("../x/y", true),
        ("wf/../../y", true),
        ("/abs/x/y", true),
        (".ringops/x/y", true),
        ("wf//y", true),
    ]
    .into_iter()
    .collect();
    for (path, refuse) in refused {
        assert_eq!(worker_path_problem(path).is_some(), refuse, "{path}");
    }
}

#[tokio::test]
async fn self_heal_reverts_a_hot_edit_and_records_it_once() {
    let agent = Running::start(1 << 20).await;
    let link = agent.link(TOKEN);
    let files = [("wf/job/a", "1"), ("wf/job/b", "2")];
    within(
        "switch",
        link.switch(batch("d1", Some(0), &files), Hooks::default()),
    )
    .await
    .expect("switched");
    std::fs::write(agent.root().join("wf/job/a"), "hot edit").expect("edit");
    std::fs::remove_file(agent.root().join("wf/job/b")).expect("delete");
    std::fs::write(agent.root().join("wf/job/mine"), "unmanaged").expect("unmanaged");
    within("a heal pass", crate::agent::heal::pass(&agent.agent)).await;
    assert_eq!(
        std::fs::read_to_string(agent.root().join("wf/job/a")).expect("a"),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(agent.root().join("wf/job/b")).expect("b"),
        "2"
    );
    assert_eq!(
        std::fs::read_to_string(agent.root().join("wf/job/mine")).expect("mine"),
        "unmanaged"
    );
    within("a second pass", crate::agent::heal::pass(&agent.agent)).await;
    let drift = inventory_doc(
        &agent.agent,
        WorkerDir::new(agent.root()).inventory().expect("inv"),
    )
    .drift;
    let seen: Vec<(&str, &str, &str)> = drift
        .iter()
        .map(|d| (d.path.as_str(), d.what.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("wf/job/a", "edited", "reverted"),
            ("wf/job/b", "missing", "reverted")
        ]
    );
    // The daemon plans against the generation the revert produced.
    let inventory = within("inventory", link.inventory()).await.expect("read");
    let next = batch("d2", Some(inventory.generation), &[("wf/job/a", "3")]);
    within("switch", link.switch(next, Hooks::default()))
        .await
        .expect("switched after a revert");
}

#[tokio::test]
async fn a_report_generation_only_records_drift_once() {
    let agent = Running::start(1 << 20).await;
    let body = serde_json::json!({
        "deployment": "d1", "expected_generation": 0, "drift": "report",
        "files": {"wf/job/a": wire_file(b"1", &sha256_hex(b"1"))}
    });
    let response = within(
        "PUT",
        reqwest::Client::new()
            .put(format!("{}/v1/generation", agent.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    std::fs::write(agent.root().join("wf/job/a"), "hot edit").expect("edit");
    for _ in 0..2 {
        within("a heal pass", crate::agent::heal::pass(&agent.agent)).await;
    }
    assert_eq!(
        std::fs::read_to_string(agent.root().join("wf/job/a")).expect("a"),
        "hot edit"
    );
    let doc = inventory_doc(
        &agent.agent,
        WorkerDir::new(agent.root()).inventory().expect("inv"),
    );
    assert_eq!(doc.drift_mode, DriftMode::Report);
    assert_eq!(doc.drift.len(), 1, "{:?}", doc.drift);
    assert_eq!(doc.drift[0].action, "reported");
}
