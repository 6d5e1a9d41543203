//! The workers switches are waiting for right now because they do not answer, so that
//! the daemon's metrics can show them unreachable while a deployment waits (its loop,
//! busy with the deployment, runs no drift pass meanwhile). One set is shared by the
//! engine context that switches and the metrics that read it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// The `(ring, worker)` pairs switches are waiting for; clones share one set.
#[derive(Clone, Debug, Default)]
pub struct WaitingSet(Arc<Mutex<BTreeSet<(String, String)>>>);

impl WaitingSet {
    /// Every `(ring, worker)` a switch is waiting for now.
    pub fn now(&self) -> BTreeSet<(String, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes that a switch waits for `worker` of `ring`, until the guard is dropped
    /// (however the wait ends: switched, given up, or the daemon stopping).
    pub fn enter(&self, ring: &str, worker: &str) -> Waiting {
        let key = (ring.to_owned(), worker.to_owned());
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        Waiting {
            set: self.clone(),
            key,
        }
    }
}

/// A worker being waited for, until dropped.
#[derive(Debug)]
pub struct Waiting {
    set: WaitingSet,
    key: (String, String),
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.set
            .0
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
        let set = WaitingSet::default();
        let guard = set.enter("dev", "w1");
        assert!(set.now().contains(&("dev".to_owned(), "w1".to_owned())));
        assert!(
            WaitingSet::default().now().is_empty(),
            "sets are not global"
        );
        drop(guard);
        assert!(set.now().is_empty());
    }
}
