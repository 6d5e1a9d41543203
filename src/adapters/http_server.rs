//! Serving an axum [`Router`] to clients that may be slow, many or hostile: the one
//! HTTP/1 server of the daemon and the agent (hyper's connection builder; plain TCP, or
//! TLS through rustls).
//!
//! - At most [`Limits::max_connections`] connections are open at once (a TLS handshake
//!   in progress counts). One more is accepted and closed at once: a refusal the client
//!   sees immediately and that holds a file descriptor for microseconds, where leaving it
//!   in the kernel's accept queue would leave it hanging with no answer.
//! - A request's head (and before it the TLS handshake) must arrive in full within
//!   [`Limits::header_timeout`] of the connection waiting for it: from its start, or from
//!   the previous response on a kept-alive connection, so an idle keep-alive connection is
//!   closed after the same time.
//! - A request body must arrive within [`Limits::body_timeout`] plus one second per
//!   [`Limits::body_min_rate`] bytes ([`body`]).
//! - An accept that fails for want of file descriptors (`EMFILE`, `ENFILE`) or memory is
//!   logged as such and retried after [`ACCEPT_BACKOFF`]; it never ends the loop.
//! - On shutdown the listener closes, idle connections and heads in progress are closed,
//!   requests in flight may finish, and after [`Limits::stop_grace`] every connection
//!   left is dropped.
//!
//! Owns sockets and timing only: routes, auth and bodies limits are the routers'.

mod body;
mod limits;

pub use limits::{
    DEFAULT_BODY_MIN_RATE_KIB, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_STOP_GRACE, HttpConfig, Limits, duration,
};

use super::is_fd_exhaustion;
use axum::Router;
use axum::extract::Request;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long the accept loop pauses after an accept failed for want of resources.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a repeated warning (refused connections, failing accepts) is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (through `tls` when given) within `limits` until
/// `shutdown` completes; returns once every connection is closed, at most
/// [`Limits::stop_grace`] later.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limits = Limits {
        max_connections: within_file_limit(limits.max_connections),
        ..limits
    };
    let router = with_body_rate(router, limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut warnings = Warnings::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if warnings.accept_failed(&e) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            warnings.refused(peer, limits.max_connections);
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            limits,
            stopping: stopping.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            connection.run(stream, peer, tls).await;
            drop(permit);
        });
    }
    drop(listener);
    stop.send_replace(true);
    drain(connections, limits.stop_grace).await;
}

/// Waits up to `grace` for the connections to close, then drops the rest.
async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    let open = connections.len();
    if open == 0 {
        return;
    }
    tracing::info!(open, "stopping: waiting for the open HTTP connections");
    let closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, closed).await.is_err() {
        tracing::warn!(
            left = connections.len(),
            grace_s = grace.as_secs_f64(),
            "HTTP connections still open after the stop grace; closing them"
        );
        connections.shutdown().await;
    }
}

/// `router` with every request body held to `limits`' timeout and minimum rate.
fn with_body_rate(router: Router, limits: Limits) -> Router {
    router.layer(axum::middleware::map_request(move |request: Request| {
        let (grace, rate) = (limits.body_timeout, limits.body_min_rate);
        async move { request.map(|b| axum::body::Body::new(body::MinRate::new(b, grace, rate))) }
    }))
}

/// One accepted connection and what it is served with.
struct Connection {
    router: Router,
    limits: Limits,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Runs the TLS handshake if any (bounded by the header timeout), then HTTP.
    async fn run(mut self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.http(stream, peer).await;
        };
        let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream));
        let shaken = tokio::select! {
            shaken = handshake => shaken,
            () = stopped(&mut self.stopping) => return,
        };
        match shaken {
            Ok(Ok(stream)) => self.http(stream, peer).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP/1 on `io` until the client or a timeout closes it, or the server
    /// stops (then gracefully: the request in flight may finish).
    async fn http<I>(mut self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let service = TowerToHyperService::new(self.router);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = stopped(&mut self.stopping) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "HTTP connection ended");
        }
    }
}

/// Completes once the server stops (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// True when an accept failed for want of resources (pause before the next), rather
/// than because of one connection (go on at once).
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    is_fd_exhaustion(e) || matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM))
}

/// `wanted`, lowered to half the process's soft file limit (`RLIMIT_NOFILE`) when it is
/// above it, so Git, the state and the workers always keep descriptors of their own.
fn within_file_limit(wanted: usize) -> usize {
    let Some(soft) = soft_file_limit() else {
        return wanted;
    };
    let most = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if wanted > most {
        tracing::warn!(
            max_connections = wanted,
            file_limit = soft,
            "max_connections is above half the open-file limit; serving at most {most} connections"
        );
    }
    wanted.min(most)
}

/// The soft `RLIMIT_NOFILE`, when there is one.
fn soft_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Warnings that a flood would repeat: logged at most every [`WARN_EVERY`], with how
/// many were held back.
#[derive(Default)]
struct Warnings {
    refused: Throttle,
    failed: Throttle,
}

impl Warnings {
    /// Notes a connection closed at the cap.
    fn refused(&mut self, peer: SocketAddr, cap: usize) {
        if let Some(held_back) = self.refused.due() {
            tracing::warn!(
                %peer,
                held_back,
                "connection refused: {cap} connections are open (max_connections)"
            );
        }
    }

    /// Notes a failed accept; true when the loop should pause first.
    fn accept_failed(&mut self, e: &std::io::Error) -> bool {
        let pause = is_resource_exhaustion(e);
        let Some(held_back) = self.failed.due() else {
            return pause;
        };
        if is_fd_exhaustion(e) {
            tracing::warn!(
                held_back,
                error = %e,
                "cannot accept a connection: too many open files (the open-file limit is reached); pausing {ACCEPT_BACKOFF:?}"
            );
        } else if pause {
            tracing::warn!(held_back, error = %e, "cannot accept a connection: out of memory or buffers; pausing {ACCEPT_BACKOFF:?}");
        } else {
            tracing::debug!(error = %e, "a connection failed before it was accepted");
        }
        pause
    }
}

/// Lets one event in every [`WARN_EVERY`] through, counting the others.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(events held back since the last one let through)` when this one is due.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests;
