//! Posting events to one target: the target as resolved at start (URL checked, token
//! read), the delivery task with its retries (pausing by [`Backoff`]), and what is
//! posted (the event as JSON, or a one-line Slack text).

use super::queue::Queue;
use super::{Event, NotifyError, TargetConfig, TargetKind};
use crate::adapters::backoff::Backoff;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest reason kept in a one-line summary.
const REASON_KEPT: usize = 300;

/// A target ready to post to. Not `Debug`: its URL and token are secrets.
pub(super) struct Target {
    name: String,
    kind: TargetKind,
    url: Url,
    /// Host of the URL, the only part of it ever logged.
    host: String,
    auth: Option<(HeaderName, HeaderValue)>,
}

impl Target {
    /// Checks `config` and reads its token file.
    pub(super) fn new(name: String, config: &TargetConfig) -> Result<Self, NotifyError> {
        let url = Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| NotifyError::Url {
                target: name.clone(),
            })?;
        let auth = match (config.kind, &config.token_file) {
            (TargetKind::Slack, None) if config.header.is_none() => None,
            (TargetKind::Slack, _) => return Err(NotifyError::SlackToken { target: name }),
            (TargetKind::Webhook, None) if config.header.is_none() => None,
            (TargetKind::Webhook, None) => {
                return Err(NotifyError::HeaderWithoutToken { target: name });
            }
            (TargetKind::Webhook, Some(path)) => {
                Some(auth_header(&name, path, config.header.as_deref())?)
            }
        };
        Ok(Self {
            host: url.host_str().unwrap_or_default().to_owned(),
            name,
            kind: config.kind,
            url,
            auth,
        })
    }
}

/// The header carrying the token in `path`: `header: <token>`, or
/// `Authorization: Bearer <token>` by default. Marked sensitive.
fn auth_header(
    target: &str,
    path: &Path,
    header: Option<&str>,
) -> Result<(HeaderName, HeaderValue), NotifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyError::TokenFile {
        target: target.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    let bad_token = || NotifyError::Token {
        target: target.to_owned(),
        path: path.to_owned(),
    };
    if token.is_empty() {
        return Err(bad_token());
    }
    let (name, value) = match header {
        None => (AUTHORIZATION, format!("Bearer {token}")),
        Some(h) => {
            let name = HeaderName::from_bytes(h.as_bytes()).map_err(|_| NotifyError::Header {
                target: target.to_owned(),
                header: h.to_owned(),
            })?;
            (name, token.to_owned())
        }
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| bad_token())?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Time limit, attempts and backoff of each delivery.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retry {
    pub(super) timeout: Duration,
    /// Attempts per event, the first included; they bound the waits (no cap).
    pub(super) attempts: u32,
    /// The first pause of the [`Backoff`] between attempts.
    pub(super) backoff: Duration,
}

/// Posts the queue's events to `target` in order until the queue is closed and empty.
pub(super) async fn drain(queue: Arc<Queue>, target: Target, client: Client, retry: Retry) {
    while let Some(event) = queue.next().await {
        let delivered = deliver(&queue, &target, &client, retry, &event).await;
        queue.done(delivered);
    }
}

/// Posts one event, retrying with backoff; whether it was delivered.
async fn deliver(
    queue: &Queue,
    target: &Target,
    client: &Client,
    retry: Retry,
    event: &Event,
) -> bool {
    let mut pauses = Backoff::new(retry.backoff, Duration::MAX);
    for attempt in 1..=retry.attempts {
        let failure = match post(target, client, retry.timeout, event).await {
            Ok(()) => return true,
            Err(failure) => failure,
        };
        if failure.retryable() && attempt < retry.attempts {
            queue.retried();
            let pause = pauses.next_delay();
            tracing::debug!(
                target_name = %target.name,
                host = %target.host,
                deployment = %event.deployment,
                attempt,
                error = %failure,
                "notification attempt failed; trying again in {pause}"
            );
            tokio::time::sleep(pause.wait).await;
            continue;
        }
        tracing::warn!(
            target_name = %target.name,
            host = %target.host,
            deployment = %event.deployment,
            state = %event.state,
            attempts = attempt,
            error = %failure,
            "notification not delivered"
        );
        break;
    }
    false
}

/// Why one post failed. Never holds the URL.
#[derive(Debug)]
enum PostFailure {
    Status(StatusCode),
    TimedOut(Duration),
    Send(String),
}

impl PostFailure {
    /// Worth another attempt: no answer, a server error, or "slow down".
    fn retryable(&self) -> bool {
        match self {
            Self::Status(s) => {
                s.is_server_error()
                    || *s == StatusCode::TOO_MANY_REQUESTS
                    || *s == StatusCode::REQUEST_TIMEOUT
            }
            Self::TimedOut(_) | Self::Send(_) => true,
        }
    }
}

impl fmt::Display for PostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "HTTP {s}"),
            Self::TimedOut(after) => {
                write!(f, "no answer within {}", humantime::format_duration(*after))
            }
            Self::Send(message) => f.write_str(message),
        }
    }
}

/// One attempt to post `event` to `target`.
async fn post(
    target: &Target,
    client: &Client,
    timeout: Duration,
    event: &Event,
) -> Result<(), PostFailure> {
    let request = client.post(target.url.clone()).timeout(timeout);
    let request = match target.kind {
        TargetKind::Webhook => request.json(&WebhookBody::new(event)),
        TargetKind::Slack => request.json(&SlackBody {
            text: slack_text(event),
        }),
    };
    let request = match &target.auth {
        Some((name, value)) => request.header(name.clone(), value.clone()),
        None => request,
    };
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            PostFailure::TimedOut(timeout)
        } else {
            PostFailure::Send(crate::adapters::causes(&e.without_url()))
        }
    })?;
    match response.status() {
        s if s.is_success() => Ok(()),
        s => Err(PostFailure::Status(s)),
    }
}

/// What a generic webhook receives: the event, a summary line and the command that
/// shows the deployment.
#[derive(Serialize)]
struct WebhookBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    event: &'a Event,
    command: String,
    summary: String,
}

impl<'a> WebhookBody<'a> {
    fn new(event: &'a Event) -> Self {
        Self {
            kind: "deployment_state",
            event,
            command: event.show_command(),
            summary: summary(event),
        }
    }
}

/// What a Slack incoming webhook receives.
#[derive(Serialize)]
struct SlackBody {
    text: String,
}

/// One line about the event: `ringops: production d-000012 (0123abc) is Failed by
/// alice: batch 1/3 unhealthy — ringops show d-000012`.
pub fn summary(event: &Event) -> String {
    let commit: String = event.commit.chars().take(7).collect();
    let mut line = format!(
        "ringops: {} {} ({commit}) is {}",
        event.ring, event.deployment, event.state
    );
    if !event.actor.is_empty() {
        line.push_str(&format!(" by {}", event.actor));
    }
    let reason = crate::report::one_line(&event.reason, REASON_KEPT);
    if !reason.is_empty() {
        line.push_str(&format!(": {reason}"));
    }
    line.push_str(&format!(" — {}", event.show_command()));
    line
}

/// The Slack text of an event: its [`summary`] with `&`, `<`, `>` escaped as Slack
/// requires, and a link to it when one is known.
pub fn slack_text(event: &Event) -> String {
    let mut text = slack_escape(&summary(event));
    if let Some(link) = &event.link {
        text.push_str(&format!(" <{}|details>", slack_escape(link)));
    }
    text
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
