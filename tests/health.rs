//! Health checks against real endpoints on loopback: an axum server whose answers are
//! scripted per request (healthy, turning bad on cue, flapping, recovering, redirecting),
//! a listener that never answers, a refused port, and command checks that pass, fail,
//! time out or cannot start. Verdicts depend on the sequence of answers, not on timing;
//! the only time bounds are generous outer ones, and a probe that times out is checked
//! to have waited its timeout.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ringops::adapters::health::{
    BODY_KEPT, HealthCheck, HealthChecker, OUTPUT_KEPT, Probe, ProbeFailure, Verdict, Worker,
    all_healthy,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Outer bound on any one check: far beyond what the checks below need.
const BOUND: Duration = Duration::from_secs(30);

/// The answer to the n-th request (from 0) of a scripted server.
type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Down,
    Redirect,
    HugeError,
}

#[derive(Clone)]
struct Scripted {
    script: Script,
    hits: Arc<AtomicUsize>,
}

async fn healthz(State(s): State<Scripted>) -> Response {
    let n = s.hits.fetch_add(1, Ordering::SeqCst);
    match (s.script)(n) {
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::Down => (StatusCode::SERVICE_UNAVAILABLE, "db\ndown").into_response(),
        Answer::Redirect => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
        Answer::HugeError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1 << 22)).into_response()
        }
    }
}

/// A server on loopback answering `/healthz` as `script` says; its address and hits.
async fn serve(
    script: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let state = Scripted {
        script: Arc::new(script),
        hits: hits.clone(),
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/ok", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), hits)
}

fn worker(name: &str, address: &str) -> Worker {
    Worker {
        name: name.to_owned(),
        address: Some(address.to_owned()),
        labels: BTreeMap::new(),
        group: "edge".to_owned(),
        ring: "production".to_owned(),
        dir: None,
    }
}

fn http_check(min_healthy_ms: u64, deadline_ms: u64) -> HealthChecker {
    HealthChecker::new(HealthCheck {
        probe: Probe::Http {
            url: "http://{{ worker.address }}/healthz".to_owned(),
        },
        timeout: Duration::from_secs(5),
        min_healthy: Duration::from_millis(min_healthy_ms),
        healthy_deadline: Duration::from_millis(deadline_ms),
    })
    .unwrap()
}

/// Checks one worker within [`BOUND`].
async fn verdict(checker: &HealthChecker, worker: &Worker) -> Verdict {
    tokio::time::timeout(BOUND, checker.check_worker(worker))
        .await
        .unwrap_or_else(|_| panic!("the check of {} did not end within {BOUND:?}", worker.name))
        .unwrap()
}

fn unhealthy(verdict: Verdict) -> ringops::adapters::health::Unhealthy {
    match verdict {
        Verdict::Unhealthy(u) => u,
        Verdict::Healthy(h) => panic!("expected unhealthy, got healthy after {h:?}"),
    }
}

#[tokio::test]
async fn an_endpoint_that_turns_bad_on_cue_is_unhealthy() {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let (address, _) = serve(move |_| {
        if flag.load(Ordering::SeqCst) {
            Answer::Ok
        } else {
            Answer::Down
        }
    })
    .await;
    let w = worker("edge-1", &address);
    let checker = http_check(250, 10_000);
    let first = verdict(&checker, &w).await;
    assert!(first.is_healthy(), "a healthy endpoint: {first}");
    healthy.store(false, Ordering::SeqCst);
    let u = unhealthy(verdict(&http_check(0, 300), &w).await);
    assert_eq!(
        u.last_failure,
        Some(ProbeFailure::Status {
            code: 503,
            body: "db down".to_owned()
        })
    );
    assert_eq!(u.failures, u.probes);
    assert!(
        u.to_string()
            .starts_with("HTTP 503 Service Unavailable: db down ("),
        "{u}"
    );
}

#[tokio::test]
async fn a_worker_that_flaps_inside_min_healthy_is_unhealthy() {
    // Healthy for two probes, then down for one, and again: never more than two in a
    // row, which span one interval (200 ms) and their latency, far from 1 s.
    let (address, hits) = serve(|n| if n % 3 == 2 { Answer::Down } else { Answer::Ok }).await;
    let u = unhealthy(verdict(&http_check(1_000, 3_000), &worker("edge-1", &address)).await);
    assert!(u.flaps >= 2, "{u:?}");
    assert!(u.longest_healthy < Duration::from_secs(1), "{u:?}");
    assert!(hits.load(Ordering::SeqCst) >= 6);
    assert!(
        u.to_string().contains("it passed, then failed again") || u.passing_at_end,
        "{u}"
    );
}

#[tokio::test]
async fn a_worker_that_recovers_before_the_deadline_is_healthy() {
    let (address, hits) = serve(|n| if n < 4 { Answer::Down } else { Answer::Ok }).await;
    match verdict(&http_check(200, 20_000), &worker("edge-1", &address)).await {
        Verdict::Healthy(h) => assert!(h.probes >= 5, "4 failures, then passes: {h:?}"),
        Verdict::Unhealthy(u) => panic!("it recovered: {u}"),
    }
    assert!(hits.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (address, hits) = serve(|_| Answer::Redirect).await;
    let u = unhealthy(verdict(&http_check(0, 200), &worker("edge-1", &address)).await);
    assert!(
        matches!(u.last_failure, Some(ProbeFailure::Status { code: 302, .. })),
        "{u:?}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        u.probes as usize,
        "/ok was never asked"
    );
}

#[tokio::test]
async fn only_the_start_of_an_error_body_is_kept() {
    let (address, _) = serve(|_| Answer::HugeError).await;
    let u = unhealthy(verdict(&http_check(0, 100), &worker("edge-1", &address)).await);
    let Some(ProbeFailure::Status { code: 500, body }) = &u.last_failure else {
        panic!("{u:?}");
    };
    assert_eq!(body, &format!("{}…", "x".repeat(BODY_KEPT)));
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    // Connections complete in the backlog, but nothing ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let checker = HealthChecker::new(HealthCheck {
        probe: Probe::Http {
            url: "http://{{ worker.address }}/healthz".to_owned(),
        },
        timeout: Duration::from_millis(200),
        min_healthy: Duration::ZERO,
        healthy_deadline: Duration::from_millis(100),
    })
    .unwrap();
    let started = Instant::now();
    let u = unhealthy(verdict(&checker, &worker("edge-1", &address)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert_eq!(
        u.last_failure,
        Some(ProbeFailure::TimedOut {
            after: Duration::from_millis(200)
        })
    );
    assert_eq!(
        u.to_string(),
        "no answer within 200ms (1 of 1 probes failed within 100ms)"
    );
    drop(silent);
}

#[tokio::test]
async fn a_refused_port_is_reported_as_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let u = unhealthy(
        verdict(
            &http_check(0, 200),
            &worker("edge-1", &format!("127.0.0.1:{port}")),
        )
        .await,
    );
    assert_eq!(u.last_failure, Some(ProbeFailure::Refused));
    assert!(u.to_string().starts_with("connection refused ("), "{u}");
}

#[tokio::test]
async fn check_all_reports_each_worker_by_name() {
    let (up, _) = serve(|_| Answer::Ok).await;
    let (down, _) = serve(|_| Answer::Down).await;
    let refused: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let workers = [
        worker("edge-3", &refused.to_string()),
        worker("edge-1", &up),
        worker("edge-2", &down),
    ];
    let checker = http_check(100, 1_000);
    let mut verdicts = tokio::time::timeout(BOUND, checker.check_all(&workers))
        .await
        .expect("check_all ended")
        .unwrap();
    let names: Vec<&str> = verdicts.keys().map(String::as_str).collect();
    assert_eq!(names, ["edge-1", "edge-2", "edge-3"]);
    assert!(verdicts["edge-1"].is_healthy());
    assert!(
        verdicts["edge-2"]
            .to_string()
            .starts_with("unhealthy: HTTP 503")
    );
    assert!(
        verdicts["edge-3"]
            .to_string()
            .starts_with("unhealthy: connection refused")
    );
    let summary = all_healthy(&verdicts).unwrap_err();
    assert!(summary.starts_with("edge-2: HTTP 503"), "{summary}");
    assert!(
        summary.contains("; edge-3: connection refused"),
        "{summary}"
    );
    verdicts.remove("edge-2");
    verdicts.remove("edge-3");
    assert_eq!(all_healthy(&verdicts), Ok(()));
}

fn command_check(script: &str, timeout_ms: u64, deadline_ms: u64) -> HealthChecker {
    HealthChecker::new(HealthCheck {
        probe: Probe::Command {
            argv: ["sh", "-c", script].map(str::to_owned).to_vec(),
        },
        timeout: Duration::from_millis(timeout_ms),
        min_healthy: Duration::ZERO,
        healthy_deadline: Duration::from_millis(deadline_ms),
    })
    .unwrap()
}

fn worker_in(dir: &std::path::Path) -> Worker {
    Worker {
        dir: Some(dir.to_owned()),
        ..worker("edge-1", "10.0.0.11")
    }
}

#[tokio::test]
async fn a_command_check_passes_with_the_worker_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"test "$RINGOPS_WORKER" = edge-1 && test "$RINGOPS_RING" = production &&
        test "$RINGOPS_WORKER_ADDRESS" = 10.0.0.11 && test "$RINGOPS_WORKER_GROUP" = edge &&
        test "$RINGOPS_WORKER_DIR" = "$PWD" && test -f marker"#;
    std::fs::write(dir.path().join("marker"), "").unwrap();
    let checker = command_check(script, 5_000, 5_000);
    let verdict = verdict(&checker, &worker_in(dir.path())).await;
    assert!(verdict.is_healthy(), "{verdict}");
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let checker = command_check("echo smoke test failed; exit 3", 5_000, 100);
    let u = unhealthy(verdict(&checker, &worker_in(dir.path())).await);
    let Some(ProbeFailure::Exited { status, output }) = &u.last_failure else {
        panic!("{u:?}");
    };
    assert_eq!(status.code(), Some(3));
    assert_eq!(output, "smoke test failed\n");
    assert!(
        u.to_string()
            .starts_with("exit status: 3; output:\nsmoke test failed"),
        "{u}"
    );
}

#[tokio::test]
async fn a_command_that_prints_a_lot_keeps_only_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let checker = command_check("yes line | head -n 5000; echo last; exit 1", 5_000, 100);
    let u = unhealthy(verdict(&checker, &worker_in(dir.path())).await);
    let Some(ProbeFailure::Exited { output, .. }) = &u.last_failure else {
        panic!("{u:?}");
    };
    assert!(
        output.len() <= OUTPUT_KEPT + "…".len(),
        "{} bytes kept",
        output.len()
    );
    assert!(output.ends_with("line\nlast\n"), "{output}");
}

#[tokio::test]
async fn a_command_that_hangs_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let checker = command_check("sleep 30", 200, 100);
    let started = Instant::now();
    let u = unhealthy(verdict(&checker, &worker_in(dir.path())).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert_eq!(
        u.last_failure,
        Some(ProbeFailure::TimedOut {
            after: Duration::from_millis(200)
        })
    );
}

#[tokio::test]
async fn a_command_that_cannot_start_says_so() {
    let checker = HealthChecker::new(HealthCheck {
        probe: Probe::Command {
            argv: vec!["./no-such-smoke-test".to_owned()],
        },
        timeout: Duration::from_secs(5),
        min_healthy: Duration::ZERO,
        healthy_deadline: Duration::from_millis(100),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let u = unhealthy(verdict(&checker, &worker_in(dir.path())).await);
    assert!(
        matches!(u.last_failure, Some(ProbeFailure::Spawn { .. })),
        "{u:?}"
    );
    assert!(u.to_string().contains("no-such-smoke-test"), "{u}");
}

#[tokio::test]
async fn a_command_that_passes_after_a_few_tries_is_healthy() {
    // Each probe appends a line; the fourth one passes.
    let dir = tempfile::tempdir().unwrap();
    let checker = command_check(
        "echo x >> tries; test $(wc -l < tries) -ge 4",
        5_000,
        20_000,
    );
    match verdict(&checker, &worker_in(dir.path())).await {
        Verdict::Healthy(h) => assert_eq!(h.probes, 4),
        Verdict::Unhealthy(u) => panic!("{u}"),
    }
}
