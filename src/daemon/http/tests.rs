//! The service over real HTTP on 127.0.0.1 with a real state; every wait is bounded.

use super::api::OPENMETRICS;
use super::openmetrics::{find as value, parse};
use super::*;
use crate::adapters::store::{ManualClock, Store};
use crate::model::deployment::{
    DeploymentId, DeploymentState, Drift, DriftKind, NewDeployment, Timestamp, WorkerOutcome,
    WrittenArtifact,
};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode as Status;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &[u8] = b"webhook-s3cret";
const PUSH: &[u8] = br#"{"ref":"refs/heads/main","after":"c4"}"#;

/// Awaits `future`, failing the test with `what` after a few seconds.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Whether the trigger holds a pending wake-up (consuming it).
async fn triggered(trigger: &Notify) -> bool {
    tokio::time::timeout(Duration::from_millis(200), trigger.notified())
        .await
        .is_ok()
}

struct Running {
    base: String,
    client: reqwest::Client,
    trigger: Arc<Notify>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        within(path, self.client.get(url).send())
            .await
            .expect("GET")
    }

    async fn text(&self, path: &str) -> (Status, String) {
        let response = self.get(path).await;
        let status = response.status();
        (status, within(path, response.text()).await.expect("body"))
    }

    async fn hook(&self, headers: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/hooks/git", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        within("the webhook", request.send()).await.expect("POST")
    }
}

async fn start(service: Service) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (trigger, ready) = (service.trigger.clone(), service.ready.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, service, Limits::default(), async {
        let _ = stopped.await;
    }));
    Running {
        base,
        client: reqwest::Client::new(),
        trigger,
        ready,
        stop,
        task,
    }
}

fn secret(bytes: &[u8]) -> Secret {
    Secret::new(bytes).expect("not empty")
}

fn sign(key: &[u8], body: &[u8]) -> String {
    let mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key");
    hex::encode(mac.chain_update(body).finalize().into_bytes())
}

fn github(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![(
        "x-hub-signature-256",
        format!("sha256={}", sign(SECRET, body)),
    )]
}

fn hook_service(dir: &std::path::Path) -> Service {
    Service {
        webhook_secret: Some(secret(SECRET)),
        ..Service::new(dir)
    }
}

fn new(ring: &str, commit: &str) -> NewDeployment {
    NewDeployment {
        ring: ring.to_owned(),
        commit: commit.to_owned(),
        tree: format!("tree-{commit}"),
        fingerprint: format!("fp-{commit}"),
        actor: "alice".to_owned(),
        reason: format!("deploy {commit}"),
        rollback_of: None,
    }
}

/// Creates a deployment of `commit` and walks it to Active.
fn activate(store: &mut Store, ring: &str, commit: &str) -> DeploymentId {
    let id = store
        .create_deployment(&new(ring, commit))
        .expect("create")
        .id;
    for state in [
        DeploymentState::Building,
        DeploymentState::Deploying,
        DeploymentState::Validating,
    ] {
        store
            .transition(id, state, &format!("to {state}"))
            .expect("transition");
    }
    store.activate(id, "switched").expect("activate");
    id
}

/// A state at fixed times: dev with d-000001 Superseded, d-000002 Active (one worker, one
/// artifact) and d-000003 Failed; prod with d-000004 Active, pinned off commit c0; one
/// drift event on dev.
fn state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(
        1_700_000_000,
    )));
    let mut store = Store::open_with_clock(dir.path(), clock.clone()).expect("open");
    activate(&mut store, "dev", "c1");
    clock.advance(Duration::from_secs(60));
    let d2 = activate(&mut store, "dev", "c2");
    store
        .record_worker(d2, "w1", WorkerOutcome::Applied, "")
        .expect("worker");
    let artifact = WrittenArtifact {
        path: "app.conf".to_owned(),
        sha256: "ab".repeat(32),
        mode: 0o644,
    };
    store
        .record_artifacts(d2, "w1", &[artifact])
        .expect("artifacts");
    clock.advance(Duration::from_secs(60));
    let d3 = store
        .create_deployment(&new("dev", "c3"))
        .expect("create")
        .id;
    store
        .transition(d3, DeploymentState::Building, "building")
        .expect("building");
    store
        .transition(d3, DeploymentState::Failed, "render failed: boom")
        .expect("failed");
    clock.advance(Duration::from_secs(60));
    let d4 = activate(&mut store, "prod", "c1");
    store
        .set_pin("prod", "c0", d4, "rolled back: c0 broke the gateway")
        .expect("pin");
    clock.advance(Duration::from_secs(60));
    let drift = Drift {
        ring: "dev".to_owned(),
        worker: "w1".to_owned(),
        path: "app.conf".to_owned(),
        kind: DriftKind::Edited,
        summary: "1 line changed".to_owned(),
    };
    store.record_drift(&[drift]).expect("drift");
    dir
}

#[tokio::test]
async fn healthz_answers_ok() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(Service::new(dir.path())).await;
    assert_eq!(s.text("/healthz").await, (Status::OK, "ok\n".to_owned()));
    assert_eq!(s.get("/nope").await.status(), Status::NOT_FOUND);
}

#[tokio::test]
async fn readyz_flips_when_the_daemon_is_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(Service::new(dir.path())).await;
    assert_eq!(s.get("/readyz").await.status(), Status::SERVICE_UNAVAILABLE);
    s.ready.store(true, Ordering::Release);
    assert_eq!(s.text("/readyz").await, (Status::OK, "ready\n".to_owned()));
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(Service::new(dir.path())).await;
    assert_eq!(s.get("/healthz").await.status(), Status::OK);
    s.stop.send(()).expect("still serving");
    within("serve to return", s.task).await.expect("task");
}

#[tokio::test]
async fn metrics_parse_and_count_the_deployments_of_the_state() {
    let dir = state();
    let s = start(Service::new(dir.path())).await;
    let response = s.get("/metrics").await;
    assert_eq!(response.status(), Status::OK);
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some(OPENMETRICS)
    );
    let text = within("the metrics", response.text()).await.expect("body");
    let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let count = |ring, state| {
        value(
            &samples,
            "ringops_deployments",
            &[("ring", ring), ("state", state)],
        )
    };
    assert_eq!(count("dev", "Active"), Some(1.0));
    assert_eq!(count("dev", "Superseded"), Some(1.0));
    assert_eq!(count("dev", "Failed"), Some(1.0));
    assert_eq!(count("dev", "Queued"), Some(0.0));
    assert_eq!(count("prod", "Active"), Some(1.0));
    assert_eq!(
        value(&samples, "ringops_source_fetch_errors_total", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn without_a_state_everything_is_empty_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(Service::new(dir.path().join("not-yet"))).await;
    let (status, text) = s.text("/metrics").await;
    assert_eq!(status, Status::OK);
    let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        samples.iter().all(|s| s.name != "ringops_deployments"),
        "{text}"
    );
    for (path, field) in [
        ("/api/v1/rings", "rings"),
        ("/api/v1/deployments", "deployments"),
        ("/api/v1/drift", "drift_events"),
    ] {
        let (status, body) = s.text(path).await;
        assert_eq!(status, Status::OK, "{path}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            doc,
            serde_json::json!({"format_version": 1, field: []}),
            "{path}"
        );
    }
    assert_eq!(
        s.get("/api/v1/deployments/d-1").await.status(),
        Status::NOT_FOUND
    );
    assert!(
        !dir.path().join("not-yet").exists(),
        "reading never creates the state"
    );
}

#[tokio::test]
async fn api_documents_have_stable_shapes() {
    let dir = state();
    let s = start(Service::new(dir.path())).await;
    for (name, path) in [
        ("rings", "/api/v1/rings"),
        ("deployments", "/api/v1/deployments"),
        ("deployments-dev-2", "/api/v1/deployments?ring=dev&limit=2"),
        ("deployment", "/api/v1/deployments/d-000002"),
        ("drift", "/api/v1/drift?ring=dev"),
        ("unknown-deployment", "/api/v1/deployments/d-99"),
        ("malformed-id", "/api/v1/deployments/42"),
        ("zero-limit", "/api/v1/deployments?limit=0"),
        ("bad-limit", "/api/v1/drift?limit=many"),
    ] {
        let response = s.get(path).await;
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}"
        );
        let body = within(path, response.text()).await.expect("body");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["format_version"], 1, "{path}");
        insta::assert_snapshot!(name, format!("GET {path}\n{status}\n{body}"));
    }
}

#[tokio::test]
async fn each_webhook_style_is_accepted_and_triggers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(hook_service(dir.path())).await;
    let styles = [
        github(PUSH),
        vec![("x-gitea-signature", sign(SECRET, PUSH))],
        vec![(
            "x-gitlab-token",
            String::from_utf8_lossy(SECRET).into_owned(),
        )],
    ];
    for (headers, style) in styles.iter().zip(["GitHub", "Gitea", "GitLab"]) {
        let response = s.hook(headers, PUSH.to_vec()).await;
        assert_eq!(response.status(), Status::ACCEPTED, "{style}");
        let doc: serde_json::Value = within("body", response.json()).await.expect("JSON");
        let expected = serde_json::json!({"format_version": 1, "accepted": true,
                                          "style": style, "ref": "refs/heads/main"});
        assert_eq!(doc, expected);
        assert!(triggered(&s.trigger).await, "{style} woke the daemon");
    }
}

#[tokio::test]
async fn refused_webhook_calls_trigger_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(hook_service(dir.path())).await;
    let tampered = br#"{"ref":"refs/heads/evil","after":"c4"}"#.to_vec();
    let cases = [
        (github(PUSH), tampered, Status::UNAUTHORIZED),
        (
            vec![("x-gitlab-token", "guess".to_owned())],
            PUSH.to_vec(),
            Status::UNAUTHORIZED,
        ),
        (Vec::new(), PUSH.to_vec(), Status::UNAUTHORIZED),
        (
            vec![("x-hub-signature-256", "sha256=nothex".to_owned())],
            PUSH.to_vec(),
            Status::UNAUTHORIZED,
        ),
        (
            github(&[b' '; 2 << 20]),
            vec![b' '; 2 << 20],
            Status::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (headers, body, expected) in cases {
        let response = s.hook(&headers, body).await;
        assert_eq!(response.status(), expected, "{headers:?}");
        let doc: serde_json::Value = within("body", response.json()).await.expect("JSON");
        assert!(doc["error"].is_string(), "{doc}");
    }
    assert!(
        !triggered(&s.trigger).await,
        "nothing refused may trigger a fetch"
    );
    let (_, text) = s.text("/metrics").await;
    let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let result = |r| value(&samples, "ringops_webhook_requests_total", &[("result", r)]);
    assert_eq!(result("bad_signature"), Some(2.0));
    assert_eq!(result("missing_signature"), Some(1.0));
    assert_eq!(result("malformed"), Some(1.0));
    assert_eq!(result("too_large"), Some(1.0));
    assert_eq!(result("accepted"), Some(0.0));
}

#[tokio::test]
async fn without_a_secret_the_webhook_is_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(Service::new(dir.path())).await;
    let response = s.hook(&github(PUSH), PUSH.to_vec()).await;
    assert_eq!(response.status(), Status::NOT_FOUND);
    assert!(!triggered(&s.trigger).await);
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_wakes_the_daemon_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(hook_service(dir.path())).await;
    let (mut accepted, mut limited) = (0, 0);
    for _ in 0..20 {
        let response = s.hook(&github(PUSH), PUSH.to_vec()).await;
        match response.status() {
            Status::ACCEPTED => accepted += 1,
            Status::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(response.headers().contains_key("retry-after"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        accepted >= 1 && limited >= 1,
        "{accepted} accepted, {limited} limited"
    );
    assert!(triggered(&s.trigger).await, "the flood woke the daemon");
    assert!(!triggered(&s.trigger).await, "and only once");
}

#[tokio::test]
async fn the_api_token_guards_the_api_and_metrics_only() {
    let dir = state();
    let service = Service {
        api_token: Some(secret(b"t0ken")),
        ..Service::new(dir.path())
    };
    let s = start(service).await;
    for path in ["/api/v1/rings", "/api/v1/deployments/d-1", "/metrics"] {
        let url = format!("{}{path}", s.base);
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dDBrZW4="),
            Some("Bearer t0ke"),
        ] {
            let mut request = s.client.get(&url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = within(path, request.send()).await.expect("GET");
            assert_eq!(response.status(), Status::UNAUTHORIZED, "{path} {auth:?}");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
        }
        let request = s.client.get(&url).bearer_auth("t0ken");
        let response = within(path, request.send()).await.expect("GET");
        assert_eq!(response.status(), Status::OK, "{path}");
    }
    assert_eq!(s.get("/healthz").await.status(), Status::OK);
    assert_eq!(s.get("/readyz").await.status(), Status::SERVICE_UNAVAILABLE);
}
