//! Notifications posted to real receivers on loopback (axum): the JSON webhook with its
//! token, a Slack-style receiver, a receiver that fails and then recovers, one that
//! refuses, one that never answers, one held until the test lets it answer. Outcomes
//! are counted and awaited with `flush`; the only time bounds are generous outer ones.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ringops::adapters::notify::{
    Event, Notifier, NotifySettings, TargetConfig, TargetKind, TargetStats,
};
use ringops::model::deployment::{DeploymentId, DeploymentState, Timestamp};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Outer bound on anything awaited: far beyond what it needs.
const BOUND: Duration = Duration::from_secs(30);

/// One post as received.
struct Post {
    headers: HeaderMap,
    body: serde_json::Value,
    /// When it arrived.
    at: Instant,
}

#[derive(Clone)]
struct Script {
    /// The status of the n-th post (from 0).
    status: Arc<dyn Fn(usize) -> StatusCode + Send + Sync>,
    /// Posts are answered only once this is true.
    gate: watch::Receiver<bool>,
    hits: Arc<AtomicUsize>,
    posts: mpsc::UnboundedSender<Post>,
}

async fn record(State(s): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let n = s.hits.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let _ = s.posts.send(Post { headers, body, at });
    let mut gate = s.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    (s.status)(n)
}

/// A receiver on loopback.
struct Receiver {
    url: String,
    hits: Arc<AtomicUsize>,
    posts: mpsc::UnboundedReceiver<Post>,
    gate: watch::Sender<bool>,
}

impl Receiver {
    /// The next post, within [`BOUND`].
    async fn next(&mut self) -> Post {
        tokio::time::timeout(BOUND, self.posts.recv())
            .await
            .expect("a post within the bound")
            .expect("the receiver runs")
    }
}

/// A receiver answering the n-th post with `status(n)`; `open` says whether it answers
/// at once or waits for its gate.
async fn receiver(
    open: bool,
    status: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
) -> Receiver {
    let (posts_tx, posts) = mpsc::unbounded_channel();
    let (gate, gate_rx) = watch::channel(open);
    let hits = Arc::new(AtomicUsize::new(0));
    let script = Script {
        status: Arc::new(status),
        gate: gate_rx,
        hits: hits.clone(),
        posts: posts_tx,
    };
    let app = Router::new()
        .route("/services/T0/B0/SECRETPATH", post(record))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/services/T0/B0/SECRETPATH"),
        hits,
        posts,
        gate,
    }
}

fn ok(_: usize) -> StatusCode {
    StatusCode::OK
}

fn event(n: u64, state: DeploymentState) -> Event {
    Event {
        deployment: DeploymentId(n),
        ring: "production".to_owned(),
        commit: "0123abcdef0123abcdef0123abcdef0123abcdef".to_owned(),
        state,
        actor: "alice".to_owned(),
        reason: "batch 1/2 (edge-1) unhealthy: HTTP 503".to_owned(),
        at: Timestamp::from_unix_seconds(1_780_000_000),
        link: None,
    }
}

fn target(kind: TargetKind, url: &str) -> TargetConfig {
    TargetConfig {
        kind,
        url: url.to_owned(),
        name: None,
        token_file: None,
        header: None,
    }
}

fn settings(targets: Vec<TargetConfig>) -> NotifySettings {
    NotifySettings {
        targets,
        queue: 16,
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(10),
    }
}

/// A URL nothing listens at.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", listener.local_addr().unwrap())
}

async fn flushed(notifier: &Notifier) {
    notifier
        .flush(BOUND)
        .await
        .expect("flushed within the bound");
}

fn only(notifier: &Notifier) -> TargetStats {
    let stats = notifier.stats_by_target();
    assert_eq!(stats.len(), 1);
    stats.into_values().next().unwrap()
}

#[tokio::test]
async fn a_webhook_receives_each_event_as_json_with_the_token() {
    let mut rx = receiver(true, ok).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mut webhook = target(TargetKind::Webhook, &rx.url);
    webhook.token_file = Some(token);
    let notifier = Notifier::start(settings(vec![webhook])).unwrap();
    notifier.send(event(12, DeploymentState::Deploying));
    notifier.send(event(12, DeploymentState::Failed));
    flushed(&notifier).await;

    let first = rx.next().await;
    assert_eq!(first.headers["authorization"], "Bearer s3cret-token");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.body["state"], "Deploying");
    let second = rx.next().await.body;
    assert_eq!(
        second,
        serde_json::json!({
            "type": "deployment_state",
            "deployment": "d-000012",
            "ring": "production",
            "commit": "0123abcdef0123abcdef0123abcdef0123abcdef",
            "state": "Failed",
            "actor": "alice",
            "reason": "batch 1/2 (edge-1) unhealthy: HTTP 503",
            "at": "2026-05-28T20:26:40.000Z",
            "command": "ringops show d-000012",
            "summary": "ringops: production d-000012 (0123abc) is Failed by alice: \
                        batch 1/2 (edge-1) unhealthy: HTTP 503 — ringops show d-000012",
        })
    );
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (2, 0, 0));
    assert_eq!(stats.pending, 0);
}

#[tokio::test]
async fn a_custom_header_carries_the_token_as_it_is() {
    let mut rx = receiver(true, ok).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token").unwrap();
    let mut webhook = target(TargetKind::Webhook, &rx.url);
    webhook.token_file = Some(token);
    webhook.header = Some("X-Ringops-Token".to_owned());
    let notifier = Notifier::start(settings(vec![webhook])).unwrap();
    notifier.send(event(3, DeploymentState::Active));
    let post = rx.next().await;
    assert_eq!(post.headers["x-ringops-token"], "s3cret-token");
    assert!(post.headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_slack_receiver_gets_one_line_of_text() {
    let mut rx = receiver(true, ok).await;
    let slack = target(TargetKind::Slack, &rx.url);
    let notifier = Notifier::start(settings(vec![slack])).unwrap();
    notifier.send(Event {
        link: Some("http://127.0.0.1:7070/api/v1/deployments/d-000012".to_owned()),
        reason: "edge-1: exit status: 1; output:\nsmoke <failed>".to_owned(),
        ..event(12, DeploymentState::RolledBack)
    });
    let body = rx.next().await.body;
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 1, "only text: {body}");
    assert_eq!(
        body["text"],
        "ringops: production d-000012 (0123abc) is RolledBack by alice: edge-1: exit status: 1; \
         output: smoke &lt;failed&gt; — ringops show d-000012 \
         <http://127.0.0.1:7070/api/v1/deployments/d-000012|details>"
    );
    flushed(&notifier).await;
    assert_eq!(only(&notifier).delivered, 1);
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt() {
    let mut rx = receiver(true, |n| {
        if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    })
    .await;
    let backoff = Duration::from_millis(50);
    let notifier = Notifier::start(NotifySettings {
        backoff,
        ..settings(vec![target(TargetKind::Webhook, &rx.url)])
    })
    .unwrap();
    notifier.send(event(7, DeploymentState::Active));
    flushed(&notifier).await;
    assert_eq!(rx.hits.load(Ordering::SeqCst), 3);
    // It backed off between attempts: the pause, then twice the pause.
    let mut at = Vec::new();
    for _ in 0..3 {
        at.push(rx.next().await.at);
    }
    let gaps = [at[1] - at[0], at[2] - at[1]];
    assert!(
        gaps[0] >= backoff && gaps[1] >= backoff * 2,
        "attempts {gaps:?} apart, backoff {backoff:?}"
    );
    let stats = only(&notifier);
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (1, 0, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let rx = receiver(true, |_| StatusCode::NOT_FOUND).await;
    let notifier = Notifier::start(settings(vec![target(TargetKind::Webhook, &rx.url)])).unwrap();
    notifier.send(event(7, DeploymentState::Active));
    flushed(&notifier).await;
    assert_eq!(rx.hits.load(Ordering::SeqCst), 1);
    let stats = only(&notifier);
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 0));
}

#[tokio::test]
async fn a_dead_receiver_is_counted_and_send_returns_at_once() {
    let notifier =
        Notifier::start(settings(vec![target(TargetKind::Webhook, &refused_url())])).unwrap();
    for n in 0..3 {
        notifier.send(event(n, DeploymentState::Failed));
    }
    flushed(&notifier).await;
    let stats = notifier.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried, stats.pending),
        (0, 3, 6, 0),
        "three attempts per event: {stats:?}"
    );
}

#[tokio::test]
async fn a_slow_receiver_does_not_block_send() {
    // Connections complete in the backlog; nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let notifier = Notifier::start(NotifySettings {
        queue: 4,
        timeout: Duration::from_secs(60),
        ..settings(vec![target(TargetKind::Webhook, &url)])
    })
    .unwrap();
    let started = Instant::now();
    for n in 0..50 {
        notifier.send(event(n, DeploymentState::Deploying));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "send waited");
    let stats = only(&notifier);
    // The queue holds 4; the delivery task may already have taken one to post.
    assert!((45..=46).contains(&stats.dropped), "{stats:?}");
    assert_eq!(stats.pending as u64 + stats.dropped, 50);
    let pending = notifier
        .flush(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(pending.pending, stats.pending);
    drop(silent);
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_events() {
    let mut rx = receiver(false, ok).await;
    let notifier = Notifier::start(NotifySettings {
        queue: 3,
        ..settings(vec![target(TargetKind::Webhook, &rx.url)])
    })
    .unwrap();
    notifier.send(event(1, DeploymentState::Queued));
    assert_eq!(rx.next().await.body["deployment"], "d-000001", "held");
    for n in 2..=10 {
        notifier.send(event(n, DeploymentState::Queued));
    }
    assert_eq!(only(&notifier).dropped, 6);
    rx.gate.send_replace(true);
    flushed(&notifier).await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(rx.next().await.body["deployment"].clone());
    }
    assert_eq!(rest, ["d-000008", "d-000009", "d-000010"]);
    let stats = only(&notifier);
    assert_eq!((stats.delivered, stats.dropped), (4, 6));
}

#[tokio::test]
async fn a_dead_target_does_not_hold_up_another() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck = format!("http://{}/hook", silent.local_addr().unwrap());
    let mut rx = receiver(true, ok).await;
    let notifier = Notifier::start(NotifySettings {
        timeout: Duration::from_secs(60),
        ..settings(vec![
            target(TargetKind::Webhook, &stuck),
            target(TargetKind::Slack, &rx.url),
        ])
    })
    .unwrap();
    notifier.send(event(5, DeploymentState::Active));
    assert!(rx.next().await.body["text"].is_string());
    let stats = notifier.stats_by_target();
    let names: Vec<&str> = stats.keys().map(String::as_str).collect();
    assert_eq!(names, ["slack:127.0.0.1", "webhook:127.0.0.1"]);
    assert_eq!(stats["webhook:127.0.0.1"].pending, 1);
    drop(silent);
}

#[tokio::test]
async fn what_is_queued_is_delivered_after_the_notifier_is_dropped() {
    let mut rx = receiver(true, ok).await;
    let notifier = Notifier::start(settings(vec![target(TargetKind::Webhook, &rx.url)])).unwrap();
    for n in 1..=3 {
        notifier.send(event(n, DeploymentState::Active));
    }
    drop(notifier);
    for n in 1..=3 {
        assert_eq!(rx.next().await.body["deployment"], format!("d-{n:06}"));
    }
}

/// Log lines written by `tracing`, kept for the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_without_the_url_or_the_token() {
    // The current-thread test runtime runs the delivery tasks on this thread, so the
    // thread's default subscriber sees their logs.
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let rx = receiver(true, |_| StatusCode::BAD_GATEWAY).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token").unwrap();
    let mut webhook = target(TargetKind::Webhook, &rx.url);
    webhook.token_file = Some(token);
    let refused = refused_url().replace("/hook", "/services/T0/B0/SECRETPATH");
    let notifier =
        Notifier::start(settings(vec![webhook, target(TargetKind::Slack, &refused)])).unwrap();
    notifier.send(event(9, DeploymentState::Failed));
    flushed(&notifier).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("notification not delivered").count(),
        2,
        "{text}"
    );
    assert!(text.contains("webhook:127.0.0.1"), "{text}");
    assert!(text.contains("HTTP 502 Bad Gateway"), "{text}");
    assert!(text.contains("trying again"), "{text}");
    assert!(!text.contains("SECRETPATH"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
