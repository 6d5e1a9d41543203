//! Health checks of workers after a batch of a rollout: is each worker healthy, without
//! a break, for `minHealthy`, and that before `healthyDeadline`? Owns rendering a ring's
//! `health.http` URL template per worker, probing (HTTP with reqwest, commands through
//! [`crate::adapters::hooks`]) and the verdict with its reason. Knows nothing of
//! deployments, batches or what happens to an unhealthy worker: the engine decides.
//!
//! A worker is probed every [`HealthCheck::interval`]. It is [`Verdict::Healthy`] once
//! its probes passed without a failure for `min_healthy` (one passing probe when that is
//! zero); a failure restarts that clock, as Nomad's `min_healthy_time` does. It is
//! [`Verdict::Unhealthy`] when no new probe can start before `healthy_deadline`; the
//! probe running then still gets its own `timeout`, so a check takes at most
//! `healthy_deadline + timeout`. Dropping the future stops every probe (a command's
//! process group is killed).
//!
//! HTTP probes GET the rendered URL without a proxy, following no redirects: a 2xx
//! within `timeout` passes. Command probes run the argv in the worker's folder with
//! `RINGOPS_WORKER`, `RINGOPS_WORKER_ADDRESS`, `RINGOPS_WORKER_GROUP`, `RINGOPS_RING`
//! and `RINGOPS_WORKER_DIR` set (empty when unknown); exit 0 within `timeout` passes.

mod probe;
mod verdict;

use crate::model::manifest::Health;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, context};
use reqwest::{Client, Url};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

pub use probe::{BODY_KEPT, OUTPUT_KEPT, ProbeFailure};
use verdict::Tally;
pub use verdict::{Healthy, Unhealthy, Verdict, all_healthy};

/// Longest pause between two probes of a worker.
pub const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest pause between two probes of a worker.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Budget of one URL render: a hostile template cannot hang a rollout.
const FUEL: u64 = 100_000;

/// Name of the URL template in its environment (and in render errors).
const URL_TEMPLATE: &str = "health.http";

/// What a health check probes: a ring's `health.http` or `health.command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// GET this URL template (minijinja, with `worker` and `ring` in its context).
    Http {
        /// The template, e.g. `http://{{ worker.address }}:9000/healthz`.
        url: String,
    },
    /// Run this program with these arguments (no shell).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

impl Probe {
    /// The probe a ring's `health:` sets: `None` when it sets neither `http` nor
    /// `command`, an error when it sets both or an empty command.
    pub fn from_manifest(health: &Health) -> Result<Option<Self>, HealthError> {
        match (&health.http, &health.command) {
            (Some(_), Some(_)) => Err(HealthError::BothProbes),
            (Some(url), None) => Ok(Some(Self::Http { url: url.clone() })),
            (None, Some(argv)) if argv.first().is_none_or(String::is_empty) => {
                Err(HealthError::EmptyCommand)
            }
            (None, Some(argv)) => Ok(Some(Self::Command { argv: argv.clone() })),
            (None, None) => Ok(None),
        }
    }
}

/// A ring's health check with its durations resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: Probe,
    /// How long one probe may take.
    pub timeout: Duration,
    /// How long a worker must pass every probe before it is healthy.
    pub min_healthy: Duration,
    /// How long after the check started a new probe may still start.
    pub healthy_deadline: Duration,
}

impl HealthCheck {
    /// The pause between probe starts: a fifth of `min_healthy`, between
    /// [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
    pub fn interval(&self) -> Duration {
        (self.min_healthy / 5).clamp(MIN_INTERVAL, MAX_INTERVAL)
    }
}

/// A worker as a health check sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Worker {
    /// The worker's name.
    pub name: String,
    /// Its address, if it has one (`worker.address` in the URL template).
    pub address: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its worker group.
    pub group: String,
    /// Its ring.
    pub ring: String,
    /// Its folder, where a command runs; the current folder when `None`.
    pub dir: Option<PathBuf>,
}

/// Why a health check could not be run at all: the check is misconfigured. Unlike an
/// unhealthy worker, trying again does not help.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// `health:` sets both `http` and `command`.
    #[error("health: set either `http` or `command`, not both")]
    BothProbes,
    /// `health.command` has no program.
    #[error("health: `command` needs a program: a list like [\"./smoke-test\", \"--quick\"]")]
    EmptyCommand,
    /// The URL template does not compile.
    #[error("health: the `http` template `{template}` is invalid")]
    Template {
        /// The template.
        template: String,
        /// Why.
        source: minijinja::Error,
    },
    /// The URL template uses `worker.address` and the worker has none.
    #[error("health: worker {worker} has no address for the `http` template `{template}`")]
    NoAddress {
        /// The worker.
        worker: String,
        /// The template.
        template: String,
    },
    /// The URL template does not render for a worker.
    #[error("health: the `http` template does not render for worker {worker}")]
    Render {
        /// The worker.
        worker: String,
        /// Why.
        source: minijinja::Error,
    },
    /// The rendered URL is not an http(s) URL with a host.
    #[error("health: the URL for worker {worker} is `{url}`, not an http(s) URL: {problem}")]
    NotHttp {
        /// The worker.
        worker: String,
        /// The rendered URL.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("health: cannot set up the HTTP client")]
    Client {
        /// Why.
        source: reqwest::Error,
    },
}

/// Checks workers against one health check. Cheap to clone; clones share one HTTP
/// client and the compiled URL template.
#[derive(Clone, Debug)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    check: HealthCheck,
    client: Client,
    templates: Environment<'static>,
}

/// What one worker's probes go to, resolved before any probe runs.
#[derive(Clone, Debug)]
enum Target {
    Http(Url),
    Command {
        argv: Vec<String>,
        cwd: PathBuf,
        env: Vec<(&'static str, String)>,
    },
}

impl HealthChecker {
    /// A checker for `check`: compiles its URL template and sets up the HTTP client.
    pub fn new(check: HealthCheck) -> Result<Self, HealthError> {
        let mut templates = Environment::new();
        templates.set_undefined_behavior(UndefinedBehavior::Strict);
        templates.set_fuel(Some(FUEL));
        match &check.probe {
            Probe::Http { url } => templates
                .add_template_owned(URL_TEMPLATE, url.clone())
                .map_err(|source| HealthError::Template {
                    template: url.clone(),
                    source,
                })?,
            Probe::Command { argv } if argv.first().is_none_or(String::is_empty) => {
                return Err(HealthError::EmptyCommand);
            }
            Probe::Command { .. } => {}
        }
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ringops-health/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| HealthError::Client { source })?;
        let inner = Inner {
            check,
            client,
            templates,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The check this checker runs.
    pub fn check(&self) -> &HealthCheck {
        &self.inner.check
    }

    /// The URL a worker's HTTP probes GET; `None` for a command check.
    pub fn url_for(&self, worker: &Worker) -> Result<Option<Url>, HealthError> {
        match &self.inner.check.probe {
            Probe::Http { url } => self.render_url(url, worker).map(Some),
            Probe::Command { .. } => Ok(None),
        }
    }

    /// Checks one worker until it is healthy or the deadline passed. Errors only when
    /// the check cannot be run for it (its URL does not render to an http(s) URL).
    pub async fn check_worker(&self, worker: &Worker) -> Result<Verdict, HealthError> {
        let target = self.target(worker)?;
        Ok(self.watch(&worker.name, &target).await)
    }

    /// Checks `workers` concurrently, each as [`HealthChecker::check_worker`], by name.
    /// Every URL is rendered before any probe runs, so a misconfigured check fails at
    /// once, naming the first worker it fails for.
    pub async fn check_all(
        &self,
        workers: &[Worker],
    ) -> Result<BTreeMap<String, Verdict>, HealthError> {
        let targets = workers
            .iter()
            .map(|w| Ok((w.name.clone(), self.target(w)?)))
            .collect::<Result<Vec<_>, HealthError>>()?;
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        for (name, target) in targets {
            let checker = self.clone();
            let task_name = name.clone();
            let task = tasks.spawn(async move { checker.watch(&task_name, &target).await });
            names.insert(task.id(), name);
        }
        let mut verdicts = BTreeMap::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, verdict) = match joined {
                Ok((id, verdict)) => (id, verdict),
                Err(e) => (e.id(), self.broken(&e)),
            };
            if let Some(name) = names.remove(&id) {
                verdicts.insert(name, verdict);
            }
        }
        Ok(verdicts)
    }

    /// The verdict for a worker whose check task panicked.
    fn broken(&self, e: &tokio::task::JoinError) -> Verdict {
        let failure = ProbeFailure::Internal {
            message: e.to_string(),
        };
        Verdict::Unhealthy(
            Tally::default()
                .failed(failure)
                .unhealthy(&self.inner.check),
        )
    }

    /// Where a worker's probes go.
    fn target(&self, worker: &Worker) -> Result<Target, HealthError> {
        match &self.inner.check.probe {
            Probe::Http { url } => self.render_url(url, worker).map(Target::Http),
            Probe::Command { argv } => Ok(command_target(argv, worker)),
        }
    }

    /// Renders the URL template for `worker` and checks it is http(s) with a host.
    fn render_url(&self, template: &str, worker: &Worker) -> Result<Url, HealthError> {
        let rendered = self
            .inner
            .templates
            .get_template(URL_TEMPLATE)
            .and_then(|t| t.render(url_context(worker)))
            .map_err(|source| match source.kind() {
                ErrorKind::UndefinedError
                    if worker.address.is_none() && template.contains("address") =>
                {
                    HealthError::NoAddress {
                        worker: worker.name.clone(),
                        template: template.to_owned(),
                    }
                }
                _ => HealthError::Render {
                    worker: worker.name.clone(),
                    source,
                },
            })?;
        http_url(&rendered).map_err(|problem| HealthError::NotHttp {
            worker: worker.name.clone(),
            url: rendered.clone(),
            problem,
        })
    }

    /// Probes until healthy or past the deadline.
    async fn watch(&self, worker: &str, target: &Target) -> Verdict {
        let check = &self.inner.check;
        let started = Instant::now();
        let deadline = started + check.healthy_deadline;
        let mut tally = Tally::default();
        loop {
            let probe_started = Instant::now();
            let result = self.probe(target).await;
            if let Err(failure) = &result {
                tracing::debug!(worker, %failure, "health probe failed");
            }
            if let Some(healthy) = tally.record(probe_started, Instant::now(), result, check) {
                return Verdict::Healthy(Healthy {
                    probes: healthy,
                    elapsed: started.elapsed(),
                });
            }
            let next = (probe_started + check.interval()).max(Instant::now());
            if next >= deadline {
                return Verdict::Unhealthy(tally.unhealthy(check));
            }
            sleep_until(next).await;
        }
    }

    /// One probe of a target.
    async fn probe(&self, target: &Target) -> Result<(), ProbeFailure> {
        let timeout = self.inner.check.timeout;
        match target {
            Target::Http(url) => probe::http(&self.inner.client, url, timeout).await,
            Target::Command { argv, cwd, env } => {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                probe::command(argv, timeout, cwd, &env).await
            }
        }
    }
}

/// The render context of the URL template: `worker` (name, address when known, labels,
/// group, ring) and `ring` (name), as blueprint templates see them.
fn url_context(worker: &Worker) -> minijinja::Value {
    let mut fields: BTreeMap<&str, minijinja::Value> = BTreeMap::from([
        ("name", worker.name.as_str().into()),
        ("labels", minijinja::Value::from(Serde(&worker.labels))),
        ("group", worker.group.as_str().into()),
        ("ring", worker.ring.as_str().into()),
    ]);
    if let Some(address) = &worker.address {
        fields.insert("address", address.as_str().into());
    }
    context! {
        worker => fields,
        ring => context! { name => worker.ring.as_str() },
    }
}

/// `text` as an http(s) URL with a host, or what is wrong with it.
fn http_url(text: &str) -> Result<Url, String> {
    if !text.contains("://") {
        return Err("it does not start with http:// or https://".to_owned());
    }
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme is `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".to_owned());
    }
    Ok(url)
}

/// A command check's program, folder and variables for `worker`.
fn command_target(argv: &[String], worker: &Worker) -> Target {
    let dir = worker.dir.as_deref();
    let dir_text = dir.map(|d| d.to_string_lossy().into_owned());
    let env = vec![
        ("RINGOPS_WORKER", worker.name.clone()),
        (
            "RINGOPS_WORKER_ADDRESS",
            worker.address.clone().unwrap_or_default(),
        ),
        ("RINGOPS_WORKER_GROUP", worker.group.clone()),
        ("RINGOPS_RING", worker.ring.clone()),
        ("RINGOPS_WORKER_DIR", dir_text.unwrap_or_default()),
    ];
    Target::Command {
        argv: argv.to_vec(),
        cwd: dir.unwrap_or(Path::new(".")).to_owned(),
        env,
    }
}

#[cfg(test)]
mod tests;
