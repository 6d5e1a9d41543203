//! What the daemon loop is asked to do, and the queue that merges it. Every trigger (a
//! push, a poll, a hot edit, the drift scan, SIGHUP) arrives as a [`Request`]; a handled
//! request leaves a [`Next`] (run again soon because the writer lock was held, or deploy
//! again when a failed deployment's backoff ends). The [`Queue`] merges requests of one
//! kind and says which runs next, and when. Owns no IO and reads no clock: the time
//! comes in as an argument.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How soon a pass that found the writer lock held is tried again.
pub const RETRY: Duration = Duration::from_millis(100);

/// One piece of work for the daemon loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Look at the tracked branch and deploy its head where it is new (`force`: also
    /// where it is not).
    Deploy {
        /// Deploy even a commit already handled.
        force: bool,
    },
    /// Compare workers with what they should hold and repair drift.
    Repair {
        /// Only these workers (a hot edit); `None`: every worker (the full drift scan).
        only: Option<BTreeSet<String>>,
    },
    /// Read the configuration again (SIGHUP), then deploy with it.
    Reload,
}

impl Request {
    /// What runs again when this request found the writer lock held: a deploy (a
    /// reload's deploy too, unforced), or the same repair.
    pub fn retried(&self) -> Request {
        match self {
            Request::Deploy { .. } | Request::Reload => Request::Deploy { force: false },
            Request::Repair { only } => Request::Repair { only: only.clone() },
        }
    }
}

/// What a handled request leaves to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// The writer lock was held: run this again after [`RETRY`].
    pub again: Option<Request>,
    /// When a failed deployment's backoff ends (the reconciler's next retry).
    pub retry_at: Option<Instant>,
}

/// Requests waiting to run, merged by kind: a queued deploy absorbs further deploys, a
/// queued full repair absorbs every repair, and the workers of hot edits add up.
#[derive(Debug, Default)]
pub struct Queue {
    reload: bool,
    /// `Some(force)`: a deploy is queued.
    deploy: Option<bool>,
    /// `Some(None)`: every worker; `Some(Some(names))`: these workers.
    repair: Option<Option<BTreeSet<String>>>,
    /// The writer lock was held: no deploy or repair runs before this.
    held_until: Option<Instant>,
    /// A failed deployment is due to be tried again then.
    retry_at: Option<Instant>,
}

impl Queue {
    /// Adds `request`, merged with what is queued.
    pub fn push(&mut self, request: Request) {
        match request {
            Request::Reload => self.reload = true,
            Request::Deploy { force } => {
                self.deploy = Some(force || self.deploy == Some(true));
            }
            Request::Repair { only } => self.repair = Some(merge(self.repair.take(), only)),
        }
    }

    /// The request to run at `now`, if one is due: a reload first (it waits for no
    /// lock), then a deploy, then a repair.
    pub fn pop(&mut self, now: Instant) -> Option<Request> {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.push(Request::Deploy { force: false });
        }
        if std::mem::take(&mut self.reload) {
            return Some(Request::Reload);
        }
        if self.held_until.is_some_and(|at| at > now) {
            return None;
        }
        if let Some(force) = self.deploy.take() {
            return Some(Request::Deploy { force });
        }
        self.repair.take().map(|only| Request::Repair { only })
    }

    /// When a request falls due that is not due now (`None`: only a new request wakes
    /// the loop).
    pub fn wake_at(&self) -> Option<Instant> {
        let queued = self.reload || self.deploy.is_some() || self.repair.is_some();
        let held = self.held_until.filter(|_| queued);
        held.into_iter().chain(self.retry_at).min()
    }

    /// Takes what a request handled at `now` left: a request that found the lock held
    /// runs again after [`RETRY`] (true when this starts a spell of waiting for the lock,
    /// to be logged once); the retry time is taken as the reconciler's, but never
    /// earlier than [`RETRY`] from now, so a retry the pass could not take (its ring held
    /// by a gate, a failed fetch) is not tried again in a tight loop.
    pub fn schedule(&mut self, next: Next, now: Instant) -> bool {
        let started_waiting = next.again.is_some() && self.held_until.is_none();
        match next.again {
            Some(again) => {
                self.push(again);
                self.held_until = Some(now + RETRY);
            }
            None => self.held_until = None,
        }
        self.retry_at = next.retry_at.map(|at| at.max(now + RETRY));
        started_waiting
    }
}

/// A queued repair and a new one as one: every worker when either is, else the union.
fn merge(
    queued: Option<Option<BTreeSet<String>>>,
    only: Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (queued, only) {
        (None, only) => only,
        (Some(None), _) | (_, None) => None,
        (Some(Some(mut names)), Some(more)) => {
            names.extend(more);
            Some(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repair(names: &[&str]) -> Request {
        Request::Repair {
            only: Some(names.iter().map(|n| (*n).to_owned()).collect()),
        }
    }

    fn drain(queue: &mut Queue, now: Instant) -> Vec<Request> {
        std::iter::from_fn(|| queue.pop(now)).collect()
    }

    #[test]
    fn requests_of_one_kind_merge_and_run_reload_deploy_repair() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.push(repair(&["w2"]));
        queue.push(Request::Deploy { force: false });
        queue.push(repair(&["w1"]));
        queue.push(Request::Deploy { force: true });
        queue.push(Request::Deploy { force: false });
        queue.push(Request::Reload);
        let order = drain(&mut queue, now);
        let expected = [
            Request::Reload,
            Request::Deploy { force: true },
            repair(&["w1", "w2"]),
        ];
        assert_eq!(order, expected);
        assert_eq!(queue.wake_at(), None);
    }

    #[test]
    fn a_full_repair_absorbs_the_hot_edits() {
        let mut queue = Queue::default();
        queue.push(repair(&["w1"]));
        queue.push(Request::Repair { only: None });
        queue.push(repair(&["w2"]));
        let order = drain(&mut queue, Instant::now());
        assert_eq!(order, [Request::Repair { only: None }]);
    }

    #[test]
    fn a_request_that_found_the_lock_held_waits_and_the_spell_is_noted_once() {
        let now = Instant::now();
        let mut queue = Queue::default();
        let busy = || Next {
            again: Some(repair(&["w1"])),
            retry_at: None,
        };
        assert!(
            queue.schedule(busy(), now),
            "the first busy pass starts a spell"
        );
        queue.push(Request::Deploy { force: false });
        assert_eq!(queue.pop(now), None, "held by the lock");
        assert_eq!(queue.wake_at(), Some(now + RETRY));
        let later = now + RETRY;
        assert_eq!(queue.pop(later), Some(Request::Deploy { force: false }));
        assert!(!queue.schedule(busy(), later), "still the same spell");
        assert_eq!(queue.pop(later), None);
        let free = later + RETRY;
        assert_eq!(queue.pop(free), Some(repair(&["w1"])));
        assert!(!queue.schedule(Next::default(), free));
        assert_eq!(queue.wake_at(), None);
    }

    #[test]
    fn a_reload_does_not_wait_for_the_lock() {
        let now = Instant::now();
        let mut queue = Queue::default();
        let again = Some(Request::Deploy { force: false });
        queue.schedule(
            Next {
                again,
                retry_at: None,
            },
            now,
        );
        queue.push(Request::Reload);
        assert_eq!(queue.pop(now), Some(Request::Reload));
        assert_eq!(queue.pop(now), None);
    }

    #[test]
    fn a_due_retry_becomes_a_deploy_never_sooner_than_the_lock_retry() {
        let now = Instant::now();
        let mut queue = Queue::default();
        let later = now + Duration::from_secs(5);
        queue.schedule(
            Next {
                again: None,
                retry_at: Some(later),
            },
            now,
        );
        assert_eq!(queue.wake_at(), Some(later));
        assert_eq!(queue.pop(now), None);
        assert_eq!(queue.pop(later), Some(Request::Deploy { force: false }));
        // A retry the pass could not take is already due: not again at once.
        let past = Some(now);
        queue.schedule(
            Next {
                again: None,
                retry_at: past,
            },
            later,
        );
        assert_eq!(queue.wake_at(), Some(later + RETRY));
        assert_eq!(queue.pop(later), None);
    }

    #[test]
    fn a_request_that_found_the_lock_held_is_retried_as_what_it_left() {
        let only = repair(&["w1"]);
        assert_eq!(only.retried(), only);
        let unforced = Request::Deploy { force: false };
        assert_eq!(Request::Deploy { force: true }.retried(), unforced);
        assert_eq!(Request::Reload.retried(), unforced);
    }
}
