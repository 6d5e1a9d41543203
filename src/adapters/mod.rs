//! IO at the edges, one external concern per file: Git sources, host secrets,
//! rendered output on disk, health checks and notifications over HTTP, the HTTP server
//! the daemon and the agent share; the one
//! backoff schedule their retries (and the engine's and daemon's) wait by.

pub mod backoff;
pub mod config_file;
pub mod git;
pub mod health;
pub mod hooks;
pub mod http_auth;
pub mod http_server;
pub mod link;
pub mod lock;
pub mod notify;
pub mod objects;
pub mod render_dir;
pub mod secrets;
pub mod store;
pub mod worker_dir;

/// True when `e` says the process (`EMFILE`) or the system (`ENFILE`) has no file
/// descriptor left: "too many open files", whatever was being opened.
pub fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// An error and its causes on one line, each message once (a cause already quoted by
/// an outer message is not repeated).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}
