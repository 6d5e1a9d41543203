//! The daemon's loop, shaped as a controller: every trigger (a push through the ref
//! watch, the webhook or the poll; a hot edit seen by the worker watch; the full drift
//! scan; SIGHUP) sends a [`Request`] into one bounded channel (see [`super::triggers`]);
//! the loop merges them in a [`Queue`], runs one at a time through `Controller::handle`
//! (which says when to wake next: soon when the writer lock was held, when a failed
//! deployment's backoff ends), tells systemd how it goes and stops cleanly on SIGTERM.

use super::passes::{Pass, pass_deploy, pass_repair, redeploy, set_ready};
use super::queue::{Next, Queue, Request};
use super::reconcile::{Paths, Reconciler, watched_workers};
use super::triggers::Triggers;
use super::watch::WorkerWatch;
use crate::adapters::secrets::HostSecrets;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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
    /// How many workers are read or switched at once.
    pub concurrency: usize,
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

/// Requests the channel holds before a trigger waits for room (the loop merges what it
/// receives, so this bounds memory, not work).
const CHANNEL: usize = 16;

/// Runs until SIGTERM or SIGINT. `reload` reads the configuration again for SIGHUP; an
/// error keeps the old settings.
pub async fn run(
    settings: Settings,
    shared: Shared,
    reload: impl Fn() -> Result<Settings, String>,
) -> Result<(), DaemonError> {
    let mut stop = Stop::new()?;
    let mut controller = Controller::new(settings, shared.clone(), reload)?;
    let mut queue = Queue::default();
    if controller.start(&mut stop, &mut queue).await.is_some() {
        controller.serve(&mut stop, &mut queue).await;
    }
    drop(controller);
    stopping(&shared).await;
    Ok(())
}

/// The daemon between passes: its settings, its memory, the worker watch and the
/// triggers feeding [`Controller::rx`].
struct Controller<R> {
    settings: Settings,
    shared: Shared,
    reconciler: Reconciler,
    workers: WorkerWatch,
    triggers: Triggers,
    rx: mpsc::Receiver<Request>,
    reload: R,
}

impl<R: Fn() -> Result<Settings, String>> Controller<R> {
    /// Sets up the worker watch and the triggers (the ticks start after [`Self::start`]).
    fn new(settings: Settings, shared: Shared, reload: R) -> Result<Self, DaemonError> {
        let setup = |e: &dyn std::fmt::Display| DaemonError::Setup(e.to_string());
        let hangup = signal(SignalKind::hangup()).map_err(|e| setup(&e))?;
        let (edits_tx, edits) = mpsc::unbounded_channel();
        let workers = WorkerWatch::new(edits_tx).map_err(|e| setup(&e))?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let trigger = Arc::clone(&shared.trigger);
        let triggers = Triggers::new(tx, &settings, trigger, edits, hangup);
        let mut reconciler = Reconciler::new(settings.retry_backoff);
        reconciler.concurrency = settings.concurrency;
        reconciler.waiting = shared.metrics.waiting().clone();
        Ok(Controller {
            reconciler,
            settings,
            shared,
            workers,
            triggers,
            rx,
            reload,
        })
    }

    /// The first deploy pass, then a full drift pass, then up for systemd; `None` when a
    /// stop signal came meanwhile.
    async fn start(&mut self, stop: &mut Stop, queue: &mut Queue) -> Option<()> {
        let grace = self.settings.stop_grace;
        let pass = pass_deploy(&mut self.reconciler, &self.settings, &self.shared, true);
        let first = stop.during(pass, grace).await?;
        let again = Request::Deploy { force: false };
        schedule(queue, self.next(first == Pass::Busy, again));
        let pass = pass_repair(&mut self.reconciler, &self.settings, &self.shared, None);
        let busy = stop.during(pass, grace).await?;
        schedule(queue, self.next(busy, Request::Repair { only: None }));
        self.workers
            .update(&watched_workers(&self.settings.paths.state_dir));
        // Up for systemd either way (a source that is down at boot must not make the unit
        // fail); /readyz waits for a deploy pass that succeeded.
        notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
        tracing::info!("started");
        if first == Pass::Done {
            set_ready(&self.shared);
        }
        self.triggers.start_ticks(&self.settings);
        self.triggers.start_watchdog();
        Some(())
    }

    /// Handles requests one at a time until a stop signal.
    async fn serve(&mut self, stop: &mut Stop, queue: &mut Queue) {
        loop {
            let request = tokio::select! {
                biased;
                () = stop.signalled() => return,
                request = due(queue, &mut self.rx) => request,
            };
            let grace = self.settings.stop_grace;
            let Some(next) = stop.during(self.handle(&request), grace).await else {
                return;
            };
            schedule(queue, next);
        }
    }

    /// Runs one request's pass; the worker watch then follows the workers the state
    /// names (not after a hot edit's repair, which changes no deployment).
    async fn handle(&mut self, request: &Request) -> Next {
        let (reconciler, settings, shared) = (&mut self.reconciler, &self.settings, &self.shared);
        let busy = match request {
            Request::Deploy { force } => redeploy(reconciler, settings, shared, *force).await,
            Request::Repair { only } => {
                pass_repair(reconciler, settings, shared, only.as_ref()).await
            }
            Request::Reload => self.reload().await,
        };
        if !matches!(request, Request::Repair { only: Some(_) }) {
            self.workers
                .update(&watched_workers(&self.settings.paths.state_dir));
        }
        self.next(busy, request.retried())
    }

    /// SIGHUP: new settings (an error keeps the old ones), then a forced deploy pass
    /// with them; true when the writer lock was held.
    async fn reload(&mut self) -> bool {
        notify_reloading();
        let busy = match (self.reload)() {
            Ok(new) => {
                self.settings = new;
                self.reconciler.backoff = self.settings.retry_backoff;
                self.reconciler.concurrency = self.settings.concurrency;
                self.triggers.reload(&self.settings);
                tracing::info!("configuration reloaded");
                redeploy(&mut self.reconciler, &self.settings, &self.shared, true).await
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, keeping the old one: {e}");
                false
            }
        };
        notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
        busy
    }

    /// When to wake next after a pass: `again` soon if the lock was `busy`, and at the
    /// reconciler's next retry.
    fn next(&self, busy: bool, again: Request) -> Next {
        Next {
            again: busy.then_some(again),
            retry_at: self.reconciler.next_retry(),
        }
    }
}

/// The next request due: queued ones merged with all that arrived, waiting for a new
/// one or for the queue's next wake-up time.
async fn due(queue: &mut Queue, rx: &mut mpsc::Receiver<Request>) -> Request {
    loop {
        while let Ok(request) = rx.try_recv() {
            queue.push(request);
        }
        if let Some(request) = queue.pop(Instant::now()) {
            return request;
        }
        tokio::select! {
            Some(request) = rx.recv() => queue.push(request),
            () = until(queue.wake_at()) => {}
        }
    }
}

/// Takes what a pass left into the queue, logging the start of a wait for the lock.
fn schedule(queue: &mut Queue, next: Next) {
    if queue.schedule(next, Instant::now()) {
        tracing::info!("another ringops holds the writer lock; trying again shortly");
    }
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
    fn new() -> Result<Self, DaemonError> {
        let setup = |e: std::io::Error| DaemonError::Setup(e.to_string());
        Ok(Stop {
            term: signal(SignalKind::terminate()).map_err(setup)?,
            int: signal(SignalKind::interrupt()).map_err(setup)?,
        })
    }

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

/// Sleeps until `at`, or forever.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Tells systemd (when it supervises us) how things stand.
pub(super) fn notify(states: &[NotifyState]) {
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
