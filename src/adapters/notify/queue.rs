//! One target's bounded queue of events and its counters: filled by `send` without
//! waiting, emptied by the target's delivery task, watched by `flush`.

use super::Event;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

/// Delivery counters of one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetStats {
    /// Events posted successfully.
    pub delivered: u64,
    /// Events given up on after their last attempt.
    pub failed: u64,
    /// Events dropped because the queue was full (the oldest goes).
    pub dropped: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Events queued or being posted now.
    pub pending: usize,
}

/// A bounded queue that drops its oldest event when full.
#[derive(Debug)]
pub(super) struct Queue {
    name: String,
    capacity: usize,
    items: Mutex<VecDeque<Arc<Event>>>,
    /// Woken on a new event and on close; one consumer.
    wake: Notify,
    /// Woken when nothing is pending any more.
    idle: Notify,
    /// Events queued plus the one being posted.
    pending: AtomicUsize,
    closed: AtomicBool,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

impl Queue {
    /// An empty queue for target `name` holding at most `capacity` events.
    pub(super) fn new(name: String, capacity: usize) -> Self {
        Self {
            name,
            capacity: capacity.max(1),
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            idle: Notify::new(),
            pending: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// The target's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Adds `event`, dropping the oldest queued event when full. Never waits.
    pub(super) fn push(&self, event: Arc<Event>) {
        let dropped = {
            let mut items = self.lock();
            let dropped = (items.len() >= self.capacity).then(|| items.pop_front());
            if dropped.is_none() {
                self.pending.fetch_add(1, Ordering::SeqCst);
            }
            items.push_back(event);
            dropped.flatten()
        };
        self.wake.notify_one();
        if let Some(old) = dropped {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                target_name = %self.name,
                deployment = %old.deployment,
                state = %old.state,
                dropped_total = total,
                "notification queue full: dropped the oldest event"
            );
        }
    }

    /// The next event to post; `None` once the queue is closed and empty.
    pub(super) async fn next(&self) -> Option<Arc<Event>> {
        loop {
            if let Some(event) = self.lock().pop_front() {
                return Some(event);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            self.wake.notified().await;
        }
    }

    /// Records how the event last taken from [`Queue::next`] ended.
    pub(super) fn done(&self, delivered: bool) {
        let counter = if delivered {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Counts an attempt that will be tried again.
    pub(super) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// No more events will come: the consumer ends once the queue is empty.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Events queued or being posted.
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether nothing is pending by `deadline`.
    pub(super) async fn idle_by(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if timeout_at(deadline, idle).await.is_err() {
                return self.pending() == 0;
            }
        }
    }

    /// The counters now.
    pub(super) fn stats(&self) -> TargetStats {
        TargetStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            pending: self.pending(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Event>>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
