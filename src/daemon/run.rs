//! The daemon's loop: wake on a push (ref watch, webhook, poll), on a hot edit (worker
//! watch) or on a timer (full drift scan), run one pass at a time, tell systemd how it
//! goes, reload on SIGHUP, stop cleanly on SIGTERM.

use super::reconcile::{PassReport, Paths, Reconciler, watched_workers};
use super::watch::{WorkerWatch, watch_refs};
use crate::adapters::git::mirror::{Remote, RepoLocation};
use crate::adapters::secrets::HostSecrets;
use sd_notify::NotifyState;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};

/// Everything a running daemon is configured with; SIGHUP replaces it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Repository, manifests, branch and state.
    pub paths: Paths,
    /// Where secrets come from.
    pub secrets: HostSecrets,
    /// How often to look for a new commit without being told.
    pub poll_interval: Duration,
    /// How often to read every worker in full.
    pub drift_interval: Duration,
    /// How long after a deployment failed on a worker it is first tried again.
    pub retry_backoff: Duration,
    /// How long SIGTERM waits for a pass in progress before leaving it.
    pub stop_grace: Duration,
}

/// What the loop shares with the HTTP service.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// Set after the first deploy pass that succeeded.
    pub ready: Arc<AtomicBool>,
    /// Wakes the loop to look at the repository now (the webhook).
    pub trigger: Arc<Notify>,
    /// Counters and timings.
    pub metrics: Arc<super::metrics::Metrics>,
    /// Where deployment state changes are posted, if anywhere.
    pub notifier: Option<crate::adapters::notify::Notifier>,
    /// How many state changes of each deployment were posted already.
    pub posted: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, usize>>>,
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A signal handler or a watch could not be set up.
    #[error("cannot start: {0}")]
    Setup(String),
}

/// Runs until SIGTERM or SIGINT. `reload` reads the configuration again for SIGHUP; an
/// error keeps the old settings.
pub async fn run(
    mut settings: Settings,
    shared: Shared,
    reload: impl Fn() -> Result<Settings, String>,
) -> Result<(), DaemonError> {
    let setup = |e: std::io::Error| DaemonError::Setup(e.to_string());
    let mut stop = Stop {
        term: signal(SignalKind::terminate()).map_err(setup)?,
        int: signal(SignalKind::interrupt()).map_err(setup)?,
    };
    let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
    let (drift_tx, mut drift_rx) = mpsc::unbounded_channel();
    let mut workers = WorkerWatch::new(drift_tx).map_err(|e| DaemonError::Setup(e.to_string()))?;
    let mut refs = ref_watch(&settings, &shared.trigger);
    let mut reconciler = Reconciler::new(settings.retry_backoff);
    reconciler.waiting = shared.metrics.waiting().clone();

    let mut pending = Pending::default();
    let grace = settings.stop_grace;
    let Some(first) = stop
        .during(
            pass_deploy(&mut reconciler, &settings, &shared, true),
            grace,
        )
        .await
    else {
        stopping(&shared).await;
        return Ok(());
    };
    pending.deploy = first == Pass::Busy;
    let Some(busy) = stop
        .during(
            pass_repair(&mut reconciler, &settings, &shared, None),
            grace,
        )
        .await
    else {
        stopping(&shared).await;
        return Ok(());
    };
    if busy {
        pending.repair = Some(None);
    }
    workers.update(&watched_workers(&settings.paths.state_dir));
    // Up for systemd either way (a source that is down at boot must not make the unit
    // fail); /readyz waits for a deploy pass that succeeded.
    notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
    tracing::info!("started");
    if first == Pass::Done {
        set_ready(&shared);
    }

    let mut poll = ticker(settings.poll_interval);
    let mut scan = ticker(settings.drift_interval);
    let mut retry = ticker(RETRY);
    // Pinged from its own task: a long pass (a slow hook) must not look like a hang.
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        tokio::spawn(async move {
            let mut tick = ticker(period / 2);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        })
    });
    loop {
        let retry_at = reconciler.next_retry();
        tokio::select! {
            biased;
            _ = stop.signalled() => break,
            _ = hup.recv() => {
                notify_reloading();
                match reload() {
                    Ok(new) => {
                        settings = new;
                        reconciler.backoff = settings.retry_backoff;
                        refs = ref_watch(&settings, &shared.trigger);
                        poll = ticker(settings.poll_interval);
                        scan = ticker(settings.drift_interval);
                        tracing::info!("configuration reloaded");
                        let pass = redeploy(&mut reconciler, &settings, &shared, true);
                        let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                        pending.deploy |= busy;
                    }
                    Err(e) => tracing::error!("configuration not reloaded, keeping the old one: {e}"),
                }
                notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
            }
            _ = retry.tick(), if pending.any() => {
                if std::mem::take(&mut pending.deploy) {
                    let pass = redeploy(&mut reconciler, &settings, &shared, false);
                    let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                    pending.deploy = busy;
                }
                if let Some(only) = pending.repair.take() {
                    let pass = pass_repair(&mut reconciler, &settings, &shared, only.as_ref());
                    let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                    if busy {
                        pending.repair = Some(only);
                    }
                }
                workers.update(&watched_workers(&settings.paths.state_dir));
            }
            Some(first) = drift_rx.recv() => {
                // Coalesce a burst of events (an editor writes several times).
                tokio::time::sleep(Duration::from_millis(5)).await;
                let mut names = BTreeSet::from([first]);
                while let Ok(more) = drift_rx.try_recv() {
                    names.insert(more);
                }
                let pass = pass_repair(&mut reconciler, &settings, &shared, Some(&names));
                let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                if busy {
                    pending.add_repair(Some(names));
                }
            }
            _ = shared.trigger.notified() => {
                let pass = redeploy(&mut reconciler, &settings, &shared, false);
                let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                if busy {
                    pending.add_deploy();
                }
                workers.update(&watched_workers(&settings.paths.state_dir));
            }
            _ = until(retry_at) => {
                let pass = redeploy(&mut reconciler, &settings, &shared, false);
                let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                if busy {
                    pending.add_deploy();
                }
                workers.update(&watched_workers(&settings.paths.state_dir));
            }
            _ = poll.tick() => {
                let pass = redeploy(&mut reconciler, &settings, &shared, false);
                let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                if busy {
                    pending.add_deploy();
                }
                workers.update(&watched_workers(&settings.paths.state_dir));
            }
            _ = scan.tick() => {
                let pass = pass_repair(&mut reconciler, &settings, &shared, None);
                let Some(busy) = stop.during(pass, settings.stop_grace).await else { break };
                if busy {
                    pending.add_repair(None);
                }
                workers.update(&watched_workers(&settings.paths.state_dir));
            }
        }
    }
    if let Some(task) = watchdog {
        task.abort();
    }
    drop(refs);
    stopping(&shared).await;
    Ok(())
}

/// Tells systemd the daemon is stopping and posts what notifications are left.
async fn stopping(shared: &Shared) {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    if let Some(notifier) = &shared.notifier
        && let Err(e) = notifier.flush(Duration::from_secs(5)).await
    {
        tracing::warn!(
            "{} notification(s) not delivered before stopping",
            e.pending
        );
    }
    tracing::info!("stopped");
}

/// SIGTERM and SIGINT.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    /// Resolves when either signal arrives.
    async fn signalled(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Runs `pass`; `None` when a signal came meanwhile (the daemon must stop). The
    /// pass then gets `grace` to finish (a switch in progress completes); past it, it
    /// is dropped where it waits, and the next start marks its deployment failed.
    async fn during<T>(&mut self, pass: impl Future<Output = T>, grace: Duration) -> Option<T> {
        tokio::pin!(pass);
        tokio::select! {
            biased;
            done = &mut pass => return Some(done),
            () = self.signalled() => {}
        }
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "stopping: waiting for the pass in progress to finish"
        );
        if tokio::time::timeout(grace, pass).await.is_err() {
            tracing::warn!("the pass in progress did not finish in time; leaving it");
        }
        None
    }
}

/// How soon a pass that found the writer lock held is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// Passes that found the writer lock held, to run again soon.
#[derive(Debug, Default)]
struct Pending {
    deploy: bool,
    /// `Some(None)`: every worker; `Some(Some(names))`: these workers.
    repair: Option<Option<BTreeSet<String>>>,
}

impl Pending {
    fn any(&self) -> bool {
        self.deploy || self.repair.is_some()
    }

    fn add_deploy(&mut self) {
        if !self.any() {
            busy_note();
        }
        self.deploy = true;
    }

    fn add_repair(&mut self, names: Option<BTreeSet<String>>) {
        if !self.any() {
            busy_note();
        }
        self.repair = match (self.repair.take(), names) {
            (Some(None), _) | (_, None) => Some(None),
            (Some(Some(mut old)), Some(new)) => {
                old.extend(new);
                Some(Some(old))
            }
            (None, Some(new)) => Some(Some(new)),
        };
    }
}

fn busy_note() {
    tracing::info!("another ringops holds the writer lock; trying again shortly");
}

/// Sleeps until `at`, or forever.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// An interval whose first tick is one period from now, skipping missed ticks.
fn ticker(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(10));
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// Watches a local repository's refs; without a watch the poll still finds new commits.
/// A remote's mirror changes only when the daemon fetches it, so it is not watched.
fn ref_watch(settings: &Settings, trigger: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let RepoLocation::Local(dir) = &settings.paths.repo else {
        return None;
    };
    let source = match crate::adapters::git::Source::open(dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot open the repository: {e}");
            return None;
        }
    };
    match watch_refs(source.git_dir(), Arc::clone(trigger)) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("not watching the repository's refs (polling only): {e}");
            None
        }
    }
}

/// How a deploy pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// The tracked branch's head was handled.
    Done,
    /// The writer lock was held: try again soon.
    Busy,
    /// Fetching or reading failed: tried again at the next trigger.
    Failed,
}

/// Marks the daemon ready (once).
fn set_ready(shared: &Shared) {
    if !shared.ready.swap(true, Ordering::SeqCst) {
        tracing::info!("ready");
    }
}

/// A deploy pass after start-up: the first that succeeds makes the daemon ready. True
/// when the writer lock was held (try again soon).
async fn redeploy(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    force: bool,
) -> bool {
    match pass_deploy(reconciler, settings, shared, force).await {
        Pass::Done => {
            set_ready(shared);
            false
        }
        Pass::Busy => true,
        Pass::Failed => false,
    }
}

/// One deploy pass.
async fn pass_deploy(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    force: bool,
) -> Pass {
    let started = Instant::now();
    if let RepoLocation::Remote(remote) = &settings.paths.repo
        && !fetch(remote, settings, shared).await
    {
        return Pass::Failed;
    }
    match reconciler
        .deploy(&settings.paths, &settings.secrets, force)
        .await
    {
        Ok(report) if log_pass(&report, shared, settings, started) => Pass::Busy,
        Ok(_) => Pass::Done,
        Err(e) => {
            shared.metrics.fetch_error();
            let e = crate::adapters::causes(&e);
            tracing::error!("deploy pass failed (retried on the next trigger): {e}");
            Pass::Failed
        }
    }
}

/// Brings a remote's mirror up to date; false (logged, counted) when that failed.
async fn fetch(remote: &Remote, settings: &Settings, shared: &Shared) -> bool {
    let remote = remote.clone();
    let state_dir = settings.paths.state_dir.clone();
    let fetched = tokio::task::spawn_blocking(move || remote.fetch(&state_dir)).await;
    let error = match fetched {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => crate::adapters::causes(&e),
        Err(e) => e.to_string(),
    };
    shared.metrics.fetch_error();
    tracing::error!("fetch failed (tried again at the next poll or webhook): {error}");
    false
}

/// One drift pass; true when the writer lock was held (try again soon).
async fn pass_repair(
    reconciler: &mut Reconciler,
    settings: &Settings,
    shared: &Shared,
    only: Option<&BTreeSet<String>>,
) -> bool {
    let started = Instant::now();
    let state_dir = &settings.paths.state_dir;
    match reconciler.repair(state_dir, &settings.secrets, only).await {
        Ok(report) => {
            let busy = log_pass(&report, shared, settings, started);
            if !busy {
                shared.metrics.reached(&report.reached, only.is_none());
            }
            if only.is_none() && !busy {
                let took = started.elapsed();
                shared.metrics.drift_scan(took);
                tracing::debug!(took_ms = took.as_millis(), "full drift scan done");
            }
            busy
        }
        Err(e) => {
            let e = crate::adapters::causes(&e);
            tracing::error!("drift pass failed (retried on the next event): {e}");
            false
        }
    }
}

/// Logs every event of a pass and feeds the metrics; true when the lock was held.
fn log_pass(report: &PassReport, shared: &Shared, settings: &Settings, started: Instant) -> bool {
    if report.busy {
        return true;
    }
    for ring in &report.pinned {
        tracing::info!(
            ring,
            "pinned by a rollback: not deploying this commit again"
        );
    }
    for (deployment, plan) in &report.deployments {
        if !plan.is_empty() {
            println!("{plan}");
        }
        post(shared, &settings.paths.state_dir, deployment);
        let d = deployment;
        match &d.error {
            Some(e) => tracing::error!(deployment = %d.id, ring = %d.ring, state = %d.state, "{e}"),
            None => {
                tracing::info!(deployment = %d.id, ring = %d.ring, state = %d.state, commit = %crate::report::short(&d.commit), "deployed")
            }
        }
        shared.metrics.reconcile(&d.ring, started.elapsed());
        if d.state == crate::model::deployment::DeploymentState::Active {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or_default();
            shared.metrics.synced(&d.ring, now);
        }
    }
    for (drift, reverted) in &report.drift {
        shared.metrics.drift(&drift.ring, drift.kind);
        tracing::warn!(
            ring = %drift.ring, worker = %drift.worker, path = %drift.path,
            kind = %drift.kind, reverted, "drift: {}", drift.summary
        );
    }
    false
}

/// Posts every state the deployment entered since the last post to the notification
/// targets (never waits).
fn post(shared: &Shared, state_dir: &std::path::Path, d: &crate::model::deployment::Deployment) {
    let Some(notifier) = &shared.notifier else {
        return;
    };
    let states: Vec<_> = crate::adapters::store::StoreReader::open(state_dir)
        .and_then(|r| r.events(d.id))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.state?, e.at)))
        .collect();
    let mut posted = shared.posted.lock().unwrap_or_else(|p| p.into_inner());
    let before = posted.insert(d.id.0, states.len()).unwrap_or(0);
    for (state, at) in states.into_iter().skip(before) {
        notifier.send(crate::adapters::notify::Event::of(d, state, at));
    }
    let stats = notifier.stats();
    shared
        .metrics
        .notified(stats.delivered, stats.failed, stats.dropped);
}

/// Tells systemd (when it supervises us) how things stand.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}
