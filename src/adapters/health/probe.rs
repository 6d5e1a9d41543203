//! One probe of one worker: an HTTP GET or a command, and why it failed. Knows nothing
//! of how often probes run or what makes a worker healthy (that is the parent module).

use crate::adapters::hooks::{self, HookError, HookRun};
use crate::model::desired::HookSpec;
use reqwest::{Client, StatusCode, Url};
use std::fmt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// How much of a failed command's output a failure keeps (its end).
pub const OUTPUT_KEPT: usize = 1024;

/// How much of a failed HTTP response's body a failure keeps (its start).
pub const BODY_KEPT: usize = 200;

/// Why one probe of a worker failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The server answered with a status outside 2xx (redirects are not followed).
    Status {
        /// The status code.
        code: u16,
        /// The start of the response body, on one line.
        body: String,
    },
    /// No answer, or the command did not end, within the probe's timeout.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// Nothing listens at the address (TCP connection refused).
    Refused,
    /// The address could not be reached (name resolution, routing, TLS).
    Unreachable {
        /// The cause as reqwest reports it, without the URL.
        message: String,
    },
    /// The request failed after connecting (a broken or invalid response).
    Request {
        /// The cause as reqwest reports it, without the URL.
        message: String,
    },
    /// The command ended unsuccessfully.
    Exited {
        /// An exit code or a signal.
        status: ExitStatus,
        /// The end of what it printed (at most [`OUTPUT_KEPT`] bytes).
        output: String,
    },
    /// The command could not be run at all.
    Spawn {
        /// Why, with its cause.
        message: String,
    },
    /// The probe itself broke (a bug in ringops, not the worker).
    Internal {
        /// What happened.
        message: String,
    },
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, body } => {
                let reason = StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "HTTP {code} {reason}")?;
                if (300..400).contains(code) {
                    f.write_str(" (redirects are not followed)")?;
                }
                match body.as_str() {
                    "" => Ok(()),
                    body => write!(f, ": {body}"),
                }
            }
            Self::TimedOut { after } => {
                let after = humantime::format_duration(*after);
                write!(f, "no answer within {after}")
            }
            Self::Refused => f.write_str("connection refused"),
            Self::Unreachable { message } => write!(f, "cannot connect: {message}"),
            Self::Request { message } => write!(f, "request failed: {message}"),
            Self::Exited { status, output } => match output.trim_end() {
                "" => write!(f, "{status} with no output"),
                output => write!(f, "{status}; output:\n{output}"),
            },
            Self::Spawn { message } => write!(f, "cannot run the command: {message}"),
            Self::Internal { message } => write!(f, "the probe failed: {message}"),
        }
    }
}

/// GETs `url` once; 2xx within `timeout` passes.
pub async fn http(client: &Client, url: &Url, timeout: Duration) -> Result<(), ProbeFailure> {
    let response = client.get(url.clone()).timeout(timeout).send().await;
    let response = response.map_err(|e| request_failure(e, timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = body_start(response).await;
    Err(ProbeFailure::Status {
        code: status.as_u16(),
        body: crate::report::one_line(&String::from_utf8_lossy(&body), BODY_KEPT),
    })
}

/// The first bytes of a response's body (a little more than is kept), best effort: a
/// huge or endless body is not read to its end.
async fn body_start(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < 4 * BODY_KEPT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// The failure of a request that got no response.
fn request_failure(e: reqwest::Error, timeout: Duration) -> ProbeFailure {
    if e.is_timeout() {
        return ProbeFailure::TimedOut { after: timeout };
    }
    if refused(&e) {
        return ProbeFailure::Refused;
    }
    let connect = e.is_connect();
    let message = crate::adapters::causes(&e.without_url());
    if connect {
        ProbeFailure::Unreachable { message }
    } else {
        ProbeFailure::Request { message }
    }
}

/// Whether an IO error with kind `ConnectionRefused` is among the causes of `e`.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Runs the command once through the hook runner; exit 0 within `timeout` passes.
pub async fn command(
    argv: &[String],
    timeout: Duration,
    cwd: &Path,
    env: &[(&str, &str)],
) -> Result<(), ProbeFailure> {
    let spec = HookSpec {
        command: argv.to_vec(),
        timeout,
    };
    let run = HookRun {
        name: "health",
        cwd,
        env,
        redact: &[],
    };
    match hooks::run(&spec, run).await {
        Ok(_) => Ok(()),
        Err(HookError::Failed { status, output, .. }) => Err(ProbeFailure::Exited {
            status,
            output: tail(&output, OUTPUT_KEPT),
        }),
        Err(HookError::TimedOut { after, .. }) => Err(ProbeFailure::TimedOut { after }),
        Err(e @ (HookError::Spawn { .. } | HookError::Wait { .. })) => Err(ProbeFailure::Spawn {
            message: crate::adapters::causes(&e),
        }),
    }
}

/// The last `max` bytes of `text` (at a character boundary), after `…` when cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
