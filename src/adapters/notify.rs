//! Notifications of deployment state changes to the `notify` targets of the
//! configuration: a generic JSON webhook and Slack-compatible incoming webhooks. Owns
//! the queues, the HTTP posts (reqwest), retries and the delivery counters; knows
//! nothing of when a deployment changes state (the engine calls [`Notifier::send`]).
//!
//! Delivery never holds up a rollout: [`Notifier::send`] only puts the event on each
//! target's bounded queue (dropping the oldest event there when it is full) and
//! returns. One background task per target posts its events in order, each attempt
//! bounded by a timeout and retried with backoff (doubling, with jitter); so a slow or
//! dead target delays only itself. Failures are logged with the target's name and host,
//! never its URL (a Slack URL is a secret) or token, and counted ([`Notifier::stats`])
//! for `/metrics`. [`Notifier::flush`] waits for the queues to empty on shutdown; once
//! the last handle is dropped, each task delivers what is still queued, then ends.

mod deliver;
mod queue;

use crate::model::deployment::{DeploymentId, DeploymentState, Timestamp};
use deliver::{Retry, Target};
use queue::Queue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use deliver::{slack_text, summary};
pub use queue::TargetStats;

/// One deployment state change, as posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The deployment (`d-000012`).
    pub deployment: DeploymentId,
    /// Its ring.
    pub ring: String,
    /// The commit it deploys.
    pub commit: String,
    /// The state it entered.
    pub state: DeploymentState,
    /// Who or what moved it (an approver, `daemon`, `cli`).
    pub actor: String,
    /// Why, as recorded with the transition.
    pub reason: String,
    /// When.
    pub at: Timestamp,
    /// Where to see it over HTTP (the daemon's API), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Event {
    /// The deployment `d` entering `state` at `at`.
    pub fn of(
        d: &crate::model::deployment::Deployment,
        state: DeploymentState,
        at: Timestamp,
    ) -> Self {
        Event {
            deployment: d.id,
            ring: d.ring.clone(),
            commit: d.commit.clone(),
            state,
            actor: d.actor.clone(),
            reason: d.reason.clone(),
            at,
            link: None,
        }
    }

    /// The command that shows the deployment: `ringops show d-000012`.
    pub fn show_command(&self) -> String {
        format!("ringops show {}", self.deployment)
    }
}

/// Kind of a notification target.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// POST the event as JSON.
    Webhook,
    /// POST `{"text": "…"}` with a one-line summary (Slack, Mattermost, Rocket.Chat).
    Slack,
}

impl TargetKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
        }
    }
}

/// One `[[notify]]` target as configured.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `webhook` or `slack`.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// Where to POST. A Slack URL is a secret: it is never logged.
    pub url: String,
    /// Name in logs and metrics; default `<type>:<host>`.
    pub name: Option<String>,
    /// Webhook only: file holding a token sent with each post (absolute, or resolved
    /// by the caller).
    pub token_file: Option<PathBuf>,
    /// Webhook only: header carrying the token as it is; default
    /// `Authorization: Bearer <token>`.
    pub header: Option<String>,
}

/// How notifications are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// Where to.
    pub targets: Vec<TargetConfig>,
    /// Events each target's queue holds; the oldest is dropped beyond that.
    pub queue: usize,
    /// Time limit of one attempt to post.
    pub timeout: Duration,
    /// Attempts per event and target, the first included.
    pub attempts: u32,
    /// Pause after the first failed attempt, doubled after each further one; each
    /// pause is lengthened by a random part of itself (see [`crate::adapters::backoff`]).
    pub backoff: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            queue: 256,
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Why notifications cannot be set up. Raised at start, so a daemon with a broken
/// `notify` configuration does not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A target's URL is not an http(s) URL. The URL is not shown (it may be secret).
    #[error("notify target {target}: the url is not an http(s) URL")]
    Url {
        /// The target.
        target: String,
    },
    /// A token file could not be read.
    #[error("notify target {target}: cannot read the token file {}", path.display())]
    TokenFile {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A token is empty or cannot be sent in a header.
    #[error("notify target {target}: the token in {} is empty or not a valid header value", path.display())]
    Token {
        /// The target.
        target: String,
        /// The file.
        path: PathBuf,
    },
    /// `header` is not a valid header name.
    #[error("notify target {target}: `{header}` is not a valid header name")]
    Header {
        /// The target.
        target: String,
        /// The name given.
        header: String,
    },
    /// `header` without a `token_file` to send in it.
    #[error("notify target {target}: `header` needs a `token_file` holding its value")]
    HeaderWithoutToken {
        /// The target.
        target: String,
    },
    /// `token_file` or `header` on a Slack target, which takes no token.
    #[error("notify target {target}: a slack target takes no token_file or header")]
    SlackToken {
        /// The target.
        target: String,
    },
    /// `queue` or `attempts` is zero.
    #[error("notify: `{0}` must be at least 1")]
    Zero(&'static str),
    /// Not called inside a tokio runtime.
    #[error("notify: needs a tokio runtime to run its delivery tasks")]
    NoRuntime,
    /// The HTTP client could not be built (TLS setup).
    #[error("notify: cannot set up the HTTP client")]
    Client {
        /// Why.
        source: reqwest::Error,
    },
}

/// Events still queued or being posted when [`Notifier::flush`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pending} notification(s) still pending")]
pub struct FlushTimedOut {
    /// Events not yet delivered or given up on, over all targets.
    pub pending: usize,
}

/// Delivery counters over all targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Events posted successfully.
    pub delivered: u64,
    /// Events given up on after their last attempt.
    pub failed: u64,
    /// Events dropped from a full queue.
    pub dropped: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Events queued or being posted now.
    pub pending: usize,
}

/// The handle deployments are notified through. Cheap to clone; when the last clone is
/// dropped the delivery tasks finish their queues and end.
#[derive(Clone, Debug)]
pub struct Notifier {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queues: Vec<Arc<Queue>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for queue in &self.queues {
            queue.close();
        }
    }
}

impl Notifier {
    /// Sets up the targets (reads token files, checks URLs) and starts one delivery
    /// task per target on the current tokio runtime.
    pub fn start(settings: NotifySettings) -> Result<Self, NotifyError> {
        if settings.queue == 0 {
            return Err(NotifyError::Zero("queue"));
        }
        if settings.attempts == 0 {
            return Err(NotifyError::Zero("attempts"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("ringops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| NotifyError::Client { source })?;
        let retry = Retry {
            timeout: settings.timeout,
            attempts: settings.attempts,
            backoff: settings.backoff,
        };
        let mut queues = Vec::new();
        for (name, config) in named(&settings.targets) {
            let target = Target::new(name.clone(), config)?;
            let queue = Arc::new(Queue::new(name, settings.queue));
            runtime.spawn(deliver::drain(queue.clone(), target, client.clone(), retry));
            queues.push(queue);
        }
        Ok(Self {
            shared: Arc::new(Shared { queues }),
        })
    }

    /// A notifier without targets: [`Notifier::send`] does nothing.
    pub fn disabled() -> Self {
        Self {
            shared: Arc::new(Shared { queues: Vec::new() }),
        }
    }

    /// Queues `event` for every target and returns at once; never blocks on delivery.
    pub fn send(&self, event: Event) {
        let event = Arc::new(event);
        for queue in &self.shared.queues {
            queue.push(event.clone());
        }
    }

    /// Waits until every queued event was delivered or given up on, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushTimedOut> {
        let deadline = Instant::now() + timeout;
        for queue in &self.shared.queues {
            if !queue.idle_by(deadline).await {
                let pending = self.shared.queues.iter().map(|q| q.pending()).sum();
                return Err(FlushTimedOut { pending });
            }
        }
        Ok(())
    }

    /// Delivery counters over all targets.
    pub fn stats(&self) -> NotifyStats {
        let mut total = NotifyStats::default();
        for s in self.stats_by_target().values() {
            total.delivered += s.delivered;
            total.failed += s.failed;
            total.dropped += s.dropped;
            total.retried += s.retried;
            total.pending += s.pending;
        }
        total
    }

    /// Delivery counters per target name.
    pub fn stats_by_target(&self) -> BTreeMap<String, TargetStats> {
        let queues = self.shared.queues.iter();
        queues.map(|q| (q.name().to_owned(), q.stats())).collect()
    }
}

/// Each target with its name: as configured, else `<type>:<host>`, made unique with
/// `#2`, `#3`… in configuration order.
fn named(targets: &[TargetConfig]) -> Vec<(String, &TargetConfig)> {
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    targets
        .iter()
        .map(|t| {
            let base = t.name.clone().unwrap_or_else(|| default_name(t));
            let n = taken.entry(base.clone()).or_insert(0);
            *n += 1;
            let name = if *n == 1 { base } else { format!("{base}#{n}") };
            (name, t)
        })
        .collect()
}

/// `<type>:<host>`, or just the type when the URL has no host.
fn default_name(target: &TargetConfig) -> String {
    let kind = target.kind.as_str();
    let url = reqwest::Url::parse(&target.url).ok();
    match url.as_ref().and_then(|u| u.host_str()) {
        Some(host) => format!("{kind}:{host}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests;
