//! The server on 127.0.0.1 with raw sockets: the cap, the header timeout, the body rate
//! and the stop grace. Every wait is bounded.

use super::*;
use axum::routing::{get, post};
use std::io::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Awaits `future`, failing the test with `what` after a few seconds.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn limits() -> Limits {
    Limits {
        max_connections: 2,
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        body_min_rate: 1024,
        stop_grace: Duration::from_millis(500),
    }
}

/// A server of `/` and `POST /echo` (the body's length), its address, its stop and task.
async fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/echo",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, None, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// Reads until the server closes the connection; what it sent (a reset counts as closed).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match stream.read_to_end(&mut out).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_ok(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("send");
    until_closed(&mut stream).await
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_served_again_when_one_closes() {
    let (addr, _stop, _task) = start(Limits {
        header_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET / HT").await.expect("half a head");
        held.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let _ = third.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(within("the refusal", until_closed(&mut third)).await, "");
    held.clear();
    let answer = within("an answer once a slot is free", async {
        loop {
            let answer = get_ok(addr).await;
            if !answer.is_empty() {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
}

#[tokio::test]
async fn a_head_or_a_body_that_dawdles_is_cut_off() {
    let (addr, _stop, _task) = start(limits()).await;
    let mut head = TcpStream::connect(addr).await.expect("connect");
    head.write_all(b"GET / HT").await.expect("half a head");
    within("the slow head cut off", until_closed(&mut head)).await;

    let mut body = TcpStream::connect(addr).await.expect("connect");
    body.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .await
        .expect("head and a little body");
    let answer = within("the slow body cut off", until_closed(&mut body)).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("a kept-alive request");
    let answer = within("the idle connection closed", until_closed(&mut idle)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stop_waits_for_no_client_past_the_grace() {
    let (addr, stop, task) = start(Limits {
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut body = TcpStream::connect(addr).await.expect("connect");
    body.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .await
        .expect("head and a little body");
    let mut head = TcpStream::connect(addr).await.expect("connect");
    head.write_all(b"GET / HT").await.expect("half a head");
    // Both are served (the second waits in its head) before the stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).expect("serving");
    within("serve to return after the grace", task)
        .await
        .expect("task");
    within("the half head closed", until_closed(&mut head)).await;
    within("the slow body closed", until_closed(&mut body)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener closed"
    );
}

#[test]
fn resource_errors_pause_the_accept_loop_and_are_named() {
    let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
    let reset = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
    assert!(is_resource_exhaustion(&emfile) && is_fd_exhaustion(&emfile));
    assert!(!is_resource_exhaustion(&reset));
    let mut warnings = Warnings::default();
    assert!(warnings.accept_failed(&emfile));
    assert!(!warnings.accept_failed(&reset));
    assert_eq!(
        warnings.failed.held_back, 1,
        "the second within 10 s is held back"
    );
}
