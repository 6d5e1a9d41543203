//! The daemon's Prometheus metrics, served as OpenMetrics text by `GET /metrics`.
//!
//! Owns the metric names, their labels and the registry. The daemon loop reports what it
//! did ([`Metrics::drift`], [`Metrics::reconcile`], [`Metrics::synced`],
//! [`Metrics::fetch_error`]); the HTTP service reports webhook calls and, at each scrape,
//! sets the deployments gauge from the state ([`Metrics::set_deployments`]). Reads and
//! writes nothing else.

use crate::model::deployment::DriftKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How a call of `POST /hooks/git` ended, as the `result` label of
/// `ringops_webhook_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookResult {
    /// Verified and taken: a fetch was triggered.
    Accepted,
    /// No signature or token header.
    MissingSignature,
    /// A signature header that is not what its style sends (not hex, no `sha256=`).
    Malformed,
    /// A signature or token that does not match the secret.
    BadSignature,
    /// Verified, but over the rate limit: nothing triggered.
    RateLimited,
    /// A body over the size limit.
    TooLarge,
    /// No webhook secret is configured, so the webhook is off.
    Disabled,
}

impl WebhookResult {
    /// Every result, in declaration order.
    pub const ALL: &'static [WebhookResult] = &[
        Self::Accepted,
        Self::MissingSignature,
        Self::Malformed,
        Self::BadSignature,
        Self::RateLimited,
        Self::TooLarge,
        Self::Disabled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::MissingSignature => "missing_signature",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
struct DeploymentLabels {
    ring: String,
    state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DriftLabels {
    ring: String,
    kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
struct WorkerLabels {
    ring: String,
    worker: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RingLabels {
    ring: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Buckets of the reconcile histogram: 5 ms doubling up to about 41 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the daemon, behind one registry. Share it as `Arc<Metrics>`; every
/// method takes `&self`.
pub struct Metrics {
    registry: Registry,
    state: StateFamilies,
    /// The `(ring, state)` series the last [`Metrics::set_deployments`] set; also
    /// serializes refreshes so two scrapes never interleave their updates.
    deployment_series: Mutex<BTreeSet<DeploymentLabels>>,
    /// What the drift passes and the switches waiting now say of each worker.
    worker_series: Mutex<WorkerSeries>,
    timing: TimingFamilies,
    events: EventFamilies,
    /// The notifier's totals at the last [`Metrics::notified`]: delivered, failed, dropped.
    notified_before: Mutex<[u64; 3]>,
    /// The workers the daemon's switches wait for now (shared with its engine context).
    waiting: crate::engine::waiting::WaitingSet,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The set of workers switches wait for, which these metrics show unreachable: give
    /// it to the engine context that switches.
    pub fn waiting(&self) -> &crate::engine::waiting::WaitingSet {
        &self.waiting
    }

    /// A registry with every metric; the webhook results and fetch errors start at 0.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ringops");
        let state = StateFamilies::register(&mut registry);
        let timing = TimingFamilies::register(&mut registry);
        let events = EventFamilies::register(&mut registry);
        Self {
            registry,
            state,
            deployment_series: Mutex::default(),
            worker_series: Mutex::default(),
            timing,
            events,
            notified_before: Mutex::default(),
            waiting: crate::engine::waiting::WaitingSet::default(),
        }
    }

    /// Sets the deployments gauge to `counts` of `(ring, state, count)`; series of an
    /// earlier call that `counts` no longer names are removed.
    pub fn set_deployments(&self, counts: &[(String, String, i64)]) {
        let mut series = self
            .deployment_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh: BTreeSet<DeploymentLabels> = counts
            .iter()
            .map(|(ring, state, _)| DeploymentLabels {
                ring: ring.clone(),
                state: state.clone(),
            })
            .collect();
        for gone in series.difference(&fresh) {
            self.state.deployments.remove(gone);
        }
        for (ring, state, count) in counts {
            let labels = DeploymentLabels {
                ring: ring.clone(),
                state: state.clone(),
            };
            self.state.deployments.get_or_create(&labels).set(*count);
        }
        *series = fresh;
    }

    /// Sets whether each `(ring, worker, unreachable)` of a drift pass answered. After a
    /// `full` pass (every ring's workers), series of workers it did not read are removed.
    pub fn reached(&self, reached: &[(String, String, bool)], full: bool) {
        let mut series = self
            .worker_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh: BTreeMap<WorkerLabels, bool> = reached
            .iter()
            .map(|(ring, worker, down)| (worker_labels(ring, worker), *down))
            .collect();
        if full {
            for gone in series.reached.keys().filter(|l| !fresh.contains_key(*l)) {
                self.state.worker_unreachable.remove(gone);
            }
            series.reached.clear();
        }
        for (labels, down) in &fresh {
            self.state
                .worker_unreachable
                .get_or_create(labels)
                .set(i64::from(*down));
        }
        series.reached.extend(fresh);
        self.show_waiting(&mut series, self.waiting.now());
    }

    /// Shows the workers a switch waits for now (`(ring, worker)`) as unreachable; those
    /// no longer waited for go back to what the last drift pass saw.
    fn show_waiting(&self, series: &mut WorkerSeries, now: BTreeSet<(String, String)>) {
        let now: BTreeSet<WorkerLabels> = now.iter().map(|(r, w)| worker_labels(r, w)).collect();
        for done in series.waiting.difference(&now) {
            match series.reached.get(done) {
                Some(down) => {
                    self.state
                        .worker_unreachable
                        .get_or_create(done)
                        .set(i64::from(*down));
                }
                None => {
                    self.state.worker_unreachable.remove(done);
                }
            }
        }
        for labels in &now {
            self.state.worker_unreachable.get_or_create(labels).set(1);
        }
        series.waiting = now;
    }

    /// Counts one drifted file seen on a worker of `ring`.
    pub fn drift(&self, ring: &str, kind: DriftKind) {
        self.state
            .drift_events
            .get_or_create(&DriftLabels {
                ring: ring.to_owned(),
                kind: kind.as_str().to_owned(),
            })
            .inc();
    }

    /// Records how long one reconcile pass of `ring` took.
    pub fn reconcile(&self, ring: &str, took: Duration) {
        self.timing
            .reconcile_duration
            .get_or_create(&ring_labels(ring))
            .observe(took.as_secs_f64());
    }

    /// Records how long one full drift scan took.
    pub fn drift_scan(&self, took: Duration) {
        self.timing.drift_scan_duration.observe(took.as_secs_f64());
    }

    /// Records that `ring` was last reconciled successfully at `unix_seconds`.
    pub fn synced(&self, ring: &str, unix_seconds: i64) {
        self.timing
            .last_sync
            .get_or_create(&ring_labels(ring))
            .set(unix_seconds);
    }

    /// Counts one failed read or fetch of the source.
    pub fn fetch_error(&self) {
        self.events.fetch_errors.inc();
    }

    /// Brings the notification counters level with the notifier's totals.
    pub fn notified(&self, delivered: u64, failed: u64, dropped: u64) {
        let mut before = self
            .notified_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = [delivered, failed, dropped];
        for (i, result) in ["delivered", "failed", "dropped"].into_iter().enumerate() {
            let delta = now[i].saturating_sub(before[i]);
            if delta > 0 {
                self.events
                    .notifications
                    .get_or_create(&ResultLabels { result })
                    .inc_by(delta);
            }
        }
        *before = now;
    }

    /// Counts one call of the webhook.
    pub fn webhook(&self, result: WebhookResult) {
        self.events
            .webhook_requests
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// Every metric as OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        {
            let mut series = self
                .worker_series
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.show_waiting(&mut series, self.waiting.now());
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            // Writing to a String does not fail; keep the exposition valid if it ever does.
            tracing::error!(error = %e, "cannot encode the metrics");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

/// Registers `metric` under `name` (in `unit`, when it has one) and hands it back: the
/// registry encodes a clone, the caller updates this one.
fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: M,
) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// What the state holds: deployments by state, drifted files, unreachable workers.
struct StateFamilies {
    deployments: Family<DeploymentLabels, Gauge>,
    drift_events: Family<DriftLabels, Counter>,
    worker_unreachable: Family<WorkerLabels, Gauge>,
}

impl StateFamilies {
    /// Registers the families, empty.
    fn register(registry: &mut Registry) -> Self {
        Self {
            deployments: registered(
                registry,
                "deployments",
                "Deployments in the state by ring and lifecycle state (pruned ones left out)",
                None,
                Family::default(),
            ),
            drift_events: registered(
                registry,
                "drift_events",
                "Drifted files seen on workers, by ring and kind",
                None,
                Family::default(),
            ),
            worker_unreachable: registered(
                registry,
                "worker_unreachable",
                "1 when the daemon's last read of a worker of an Active deployment (or a rollout) failed, such as an agent that is down; 0 when it answered",
                None,
                Family::default(),
            ),
        }
    }
}

/// How long passes take and when each ring last synced.
struct TimingFamilies {
    reconcile_duration: Family<RingLabels, Histogram, fn() -> Histogram>,
    drift_scan_duration: Histogram,
    last_sync: Family<RingLabels, Gauge>,
}

impl TimingFamilies {
    /// Registers the metrics, empty.
    fn register(registry: &mut Registry) -> Self {
        Self {
            reconcile_duration: registered(
                registry,
                "reconcile_duration",
                "Time one reconcile pass of a ring took",
                Some(Unit::Seconds),
                Family::new_with_constructor(reconcile_histogram as fn() -> Histogram),
            ),
            drift_scan_duration: registered(
                registry,
                "drift_scan_duration",
                "Time one full drift scan of every ring's workers took",
                Some(Unit::Seconds),
                reconcile_histogram(),
            ),
            last_sync: registered(
                registry,
                "last_successful_sync_timestamp",
                "Unix time of the ring's last reconcile pass that succeeded",
                Some(Unit::Seconds),
                Family::default(),
            ),
        }
    }
}

/// What happened around the loop: source fetch errors, webhook calls, notifications.
struct EventFamilies {
    fetch_errors: Counter,
    webhook_requests: Family<ResultLabels, Counter>,
    notifications: Family<ResultLabels, Counter>,
}

impl EventFamilies {
    /// Registers the metrics, with every webhook result at 0.
    fn register(registry: &mut Registry) -> Self {
        let events = Self {
            fetch_errors: registered(
                registry,
                "source_fetch_errors",
                "Failed reads or fetches of the Git source",
                None,
                Counter::default(),
            ),
            webhook_requests: registered(
                registry,
                "webhook_requests",
                "Calls of POST /hooks/git by result",
                None,
                Family::default(),
            ),
            notifications: registered(
                registry,
                "notifications",
                "Deployment notifications by result (delivered, failed after retries, dropped from a full queue)",
                None,
                Family::default(),
            ),
        };
        for result in WebhookResult::ALL {
            let _ = events.webhook_requests.get_or_create(&ResultLabels {
                result: result.as_str(),
            });
        }
        events
    }
}

/// What is known of each worker's reachability.
#[derive(Debug, Default)]
struct WorkerSeries {
    /// Unreachable or not, as the drift passes since the last full one saw.
    reached: BTreeMap<WorkerLabels, bool>,
    /// Shown unreachable because a switch was waiting for them at the last update.
    waiting: BTreeSet<WorkerLabels>,
}

fn worker_labels(ring: &str, worker: &str) -> WorkerLabels {
    WorkerLabels {
        ring: ring.to_owned(),
        worker: worker.to_owned(),
    }
}

fn ring_labels(ring: &str) -> RingLabels {
    RingLabels {
        ring: ring.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::http::openmetrics::{Sample, find, parse};

    type Labels<'l> = &'l [(&'l str, &'l str)];

    #[test]
    fn fresh_metrics_parse_and_show_the_zero_series() {
        let text = Metrics::new().encode();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let fetch_errors = find(&samples, "ringops_source_fetch_errors_total", &[]);
        assert_eq!(fetch_errors, Some(0.0));
        for result in WebhookResult::ALL {
            let labels = [("result", result.as_str())];
            let calls = find(&samples, "ringops_webhook_requests_total", &labels);
            assert_eq!(calls, Some(0.0), "{result:?}");
        }
        let names: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        let expected = [
            "ringops_drift_scan_duration_seconds_bucket",
            "ringops_drift_scan_duration_seconds_count",
            "ringops_drift_scan_duration_seconds_sum",
            "ringops_source_fetch_errors_total",
            "ringops_webhook_requests_total",
        ];
        assert_eq!(
            names,
            expected.into(),
            "labelled families without series are left out"
        );
    }

    #[test]
    fn every_series_is_encoded_with_its_labels() {
        let m = Metrics::new();
        m.set_deployments(&[
            ("dev".into(), "Active".into(), 1),
            ("dev".into(), "Superseded".into(), 3),
        ]);
        m.drift("dev", DriftKind::Edited);
        m.drift("dev", DriftKind::Edited);
        m.drift("prod", DriftKind::Missing);
        m.reconcile("dev", Duration::from_millis(30));
        m.reconcile("dev", Duration::from_secs(100));
        m.synced("dev", 1_700_000_000);
        m.fetch_error();
        m.webhook(WebhookResult::Accepted);
        m.webhook(WebhookResult::BadSignature);
        let text = m.encode();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for family in [
            "# TYPE ringops_deployments gauge",
            "# TYPE ringops_drift_events counter",
            "# TYPE ringops_reconcile_duration_seconds histogram",
            "# UNIT ringops_reconcile_duration_seconds seconds",
            "# TYPE ringops_last_successful_sync_timestamp_seconds gauge",
            "# UNIT ringops_last_successful_sync_timestamp_seconds seconds",
        ] {
            assert!(text.contains(family), "{family} in {text}");
        }
        let dev = [("ring", "dev")];
        let expected: &[(&str, Labels<'_>, f64)] = &[
            (
                "ringops_deployments",
                &[("ring", "dev"), ("state", "Active")],
                1.0,
            ),
            (
                "ringops_deployments",
                &[("ring", "dev"), ("state", "Superseded")],
                3.0,
            ),
            (
                "ringops_drift_events_total",
                &[("ring", "dev"), ("kind", "Edited")],
                2.0,
            ),
            (
                "ringops_drift_events_total",
                &[("ring", "prod"), ("kind", "Missing")],
                1.0,
            ),
            ("ringops_reconcile_duration_seconds_count", &dev, 2.0),
            ("ringops_reconcile_duration_seconds_sum", &dev, 100.03),
            (
                "ringops_reconcile_duration_seconds_bucket",
                &[("ring", "dev"), ("le", "0.04")],
                1.0,
            ),
            (
                "ringops_reconcile_duration_seconds_bucket",
                &[("ring", "dev"), ("le", "+Inf")],
                2.0,
            ),
            (
                "ringops_last_successful_sync_timestamp_seconds",
                &dev,
                1.7e9,
            ),
            ("ringops_source_fetch_errors_total", &[], 1.0),
            (
                "ringops_webhook_requests_total",
                &[("result", "accepted")],
                1.0,
            ),
            (
                "ringops_webhook_requests_total",
                &[("result", "bad_signature")],
                1.0,
            ),
        ];
        for (name, labels, value) in expected {
            let found = find(&samples, name, labels).unwrap_or(f64::NAN);
            assert!(
                (found - value).abs() < 1e-9,
                "{name} {labels:?}: {found} in {text}"
            );
        }
    }

    #[test]
    fn unreachable_workers_are_one_and_a_full_pass_drops_workers_gone() {
        let m = Metrics::new();
        let seen = |ring: &str, worker: &str, down| (ring.to_owned(), worker.to_owned(), down);
        m.reached(&[seen("dev", "a", false), seen("dev", "b", true)], true);
        m.reached(&[seen("dev", "a", true)], false);
        let text = m.encode();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let value = |samples: &[Sample], worker| {
            find(
                samples,
                "ringops_worker_unreachable",
                &[("ring", "dev"), ("worker", worker)],
            )
        };
        assert_eq!(value(&samples, "a"), Some(1.0), "{text}");
        assert_eq!(value(&samples, "b"), Some(1.0), "{text}");
        m.reached(&[seen("dev", "a", false)], true);
        let samples = parse(&m.encode()).unwrap_or_default();
        assert_eq!(value(&samples, "a"), Some(0.0));
        assert_eq!(value(&samples, "b"), None);
    }

    #[test]
    fn a_worker_a_switch_waits_for_is_unreachable_until_the_wait_ends() {
        let m = Metrics::new();
        let ring = "metrics-waiting-test";
        m.reached(&[(ring.to_owned(), "a".to_owned(), false)], true);
        let value = |m: &Metrics, worker| {
            let text = m.encode();
            let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            find(
                &samples,
                "ringops_worker_unreachable",
                &[("ring", ring), ("worker", worker)],
            )
        };
        let a = m.waiting().enter(ring, "a");
        let b = m.waiting().enter(ring, "b");
        assert_eq!(value(&m, "a"), Some(1.0));
        assert_eq!(value(&m, "b"), Some(1.0));
        drop((a, b));
        assert_eq!(value(&m, "a"), Some(0.0), "back to what the drift pass saw");
        assert_eq!(value(&m, "b"), None, "never seen by a drift pass");
    }

    #[test]
    fn a_refresh_drops_series_the_state_no_longer_has() {
        let m = Metrics::new();
        m.set_deployments(&[
            ("dev".into(), "Active".into(), 1),
            ("dev".into(), "Deploying".into(), 1),
        ]);
        m.set_deployments(&[("dev".into(), "Active".into(), 2)]);
        let text = m.encode();
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let count = |state| {
            find(
                &samples,
                "ringops_deployments",
                &[("ring", "dev"), ("state", state)],
            )
        };
        assert_eq!(count("Active"), Some(2.0));
        assert_eq!(count("Deploying"), None, "{text}");
        m.set_deployments(&[]);
        let samples = parse(&m.encode()).unwrap_or_default();
        assert!(samples.iter().all(|s| s.name != "ringops_deployments"));
    }
}
