//! The workers switches are waiting for right now because they do not answer, so that
//! the daemon's metrics can show them unreachable while a deployment waits (its loop,
//! busy with the deployment, runs no drift pass meanwhile).

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

static WAITING: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// Every `(ring, worker)` a switch is waiting for now.
pub fn waiting_for() -> BTreeSet<(String, String)> {
    WAITING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// A worker being waited for, until dropped (however the wait ends: switched, given up,
/// or the daemon stopping).
#[derive(Debug)]
pub(crate) struct Waiting {
    key: (String, String),
}

impl Waiting {
    /// Notes that a switch waits for `worker` of `ring`.
    pub(crate) fn new(ring: &str, worker: &str) -> Waiting {
        let key = (ring.to_owned(), worker.to_owned());
        WAITING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        Waiting { key }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_waited_for_until_its_guard_is_dropped() {
        let guard = Waiting::new("ring-waiting-test", "w1");
        assert!(waiting_for().contains(&("ring-waiting-test".to_owned(), "w1".to_owned())));
        drop(guard);
        assert!(!waiting_for().iter().any(|(r, _)| r == "ring-waiting-test"));
    }
}
