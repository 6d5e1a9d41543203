//! The daemon's triggers: small tasks that turn each kind of wake-up into a [`Request`]
//! in the loop's one bounded channel, and nothing else. A push (the ref watch or the
//! webhook, both through [`super::run::Shared::trigger`]) and the poll become a deploy,
//! a hot edit on a worker (the worker watch, debounced and batched) and the drift scan a
//! repair, SIGHUP a reload. Also pings systemd's watchdog.
//!
//! The filesystem watches' callbacks never touch the bounded channel (they run on
//! notify's thread and must not block or lose a worker's name): they wake a
//! [`Notify`] or feed an unbounded channel of names, and a task here forwards them,
//! waiting for room in the channel; while it waits, further names are batched.

use super::queue::Request;
use super::run::Settings;
use super::watch::watch_refs;
use crate::adapters::git::mirror::RepoLocation;
use sd_notify::NotifyState;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::Signal;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

/// How long a burst of events on worker files (an editor writes several times) is
/// gathered before the repair is asked for.
const DEBOUNCE: Duration = Duration::from_millis(5);

/// The running trigger tasks; dropping it stops them.
pub struct Triggers {
    tx: mpsc::Sender<Request>,
    trigger: Arc<Notify>,
    /// Pushes, hot edits, SIGHUP and the watchdog: for the life of the loop.
    tasks: JoinSet<()>,
    /// The poll and the drift scan: restarted with new settings.
    ticks: JoinSet<()>,
    /// The local repository's ref watch, if any: replaced with new settings.
    refs: Option<notify::RecommendedWatcher>,
}

impl Triggers {
    /// Forwards pushes (the ref watch of `settings`' repository and `trigger`), the
    /// worker names of hot edits and SIGHUP into `tx`. The poll and the drift scan wait
    /// for [`Triggers::start_ticks`].
    pub fn new(
        tx: mpsc::Sender<Request>,
        settings: &Settings,
        trigger: Arc<Notify>,
        edits: mpsc::UnboundedReceiver<String>,
        hangup: Signal,
    ) -> Self {
        let mut tasks = JoinSet::new();
        tasks.spawn(forward_pushes(Arc::clone(&trigger), tx.clone()));
        tasks.spawn(forward_edits(edits, tx.clone()));
        tasks.spawn(forward_hangups(hangup, tx.clone()));
        let refs = ref_watch(settings, &trigger);
        Triggers {
            tx,
            trigger,
            tasks,
            ticks: JoinSet::new(),
            refs,
        }
    }

    /// (Re)starts the poll and the drift scan on `settings`' periods, each first due one
    /// period from now.
    pub fn start_ticks(&mut self, settings: &Settings) {
        // Dropping the old set aborts its tasks.
        self.ticks = JoinSet::new();
        let poll = Request::Deploy { force: false };
        let scan = Request::Repair { only: None };
        self.ticks
            .spawn(every(settings.poll_interval, poll, self.tx.clone()));
        self.ticks
            .spawn(every(settings.drift_interval, scan, self.tx.clone()));
    }

    /// Follows `settings` (after a reload): a new ref watch, the ticks restarted.
    pub fn reload(&mut self, settings: &Settings) {
        self.refs = ref_watch(settings, &self.trigger);
        self.start_ticks(settings);
    }

    /// Pings systemd's watchdog from its own task, when it asks for pings: a long pass
    /// (a slow hook) must not look like a hang.
    pub fn start_watchdog(&mut self) {
        if let Some(period) = sd_notify::watchdog_enabled() {
            self.tasks.spawn(async move {
                let mut tick = ticker(period / 2);
                loop {
                    tick.tick().await;
                    super::run::notify(&[NotifyState::Watchdog]);
                }
            });
        }
    }
}

/// A push (ref watch, webhook): deploy.
async fn forward_pushes(trigger: Arc<Notify>, tx: mpsc::Sender<Request>) {
    loop {
        trigger.notified().await;
        if tx.send(Request::Deploy { force: false }).await.is_err() {
            return;
        }
    }
}

/// Hot edits: repair the workers edited, gathered over [`DEBOUNCE`] and while the loop
/// has no room.
async fn forward_edits(mut edits: mpsc::UnboundedReceiver<String>, tx: mpsc::Sender<Request>) {
    while let Some(first) = edits.recv().await {
        tokio::time::sleep(DEBOUNCE).await;
        let mut names = BTreeSet::from([first]);
        while let Ok(more) = edits.try_recv() {
            names.insert(more);
        }
        let request = Request::Repair { only: Some(names) };
        if tx.send(request).await.is_err() {
            return;
        }
    }
}

/// SIGHUP: reload.
async fn forward_hangups(mut hangup: Signal, tx: mpsc::Sender<Request>) {
    while hangup.recv().await.is_some() {
        if tx.send(Request::Reload).await.is_err() {
            return;
        }
    }
}

/// `request` every `period`, the first one period from now.
async fn every(period: Duration, request: Request, tx: mpsc::Sender<Request>) {
    let mut tick = ticker(period);
    loop {
        tick.tick().await;
        if tx.send(request.clone()).await.is_err() {
            return;
        }
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
