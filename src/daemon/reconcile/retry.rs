//! Deployments that failed on a worker, tried again after a growing delay (each ring's
//! own [`Backoff`], kept while its failing commit stays the same); success or a build
//! failure (it would fail the same way) ends the retries.

use super::Reconciler;
use crate::adapters::backoff::Backoff;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The longest wait between two attempts at deploying the same commit.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// A failed deployment of `commit` to be tried again at `due`.
#[derive(Debug)]
struct Retry {
    commit: String,
    attempts: u32,
    due: Instant,
    /// The waits left for this commit.
    backoff: Backoff,
}

/// The retries due, by ring.
#[derive(Debug, Default)]
pub(super) struct Retries(BTreeMap<String, Retry>);

impl Retries {
    /// When the next one is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.0.values().map(|r| r.due).min()
    }
}

impl Reconciler {
    /// Whether `ring`'s failed deployment of `commit` may be tried again now.
    pub(super) fn retry_due(&self, ring: &str, commit: &str) -> bool {
        self.retries
            .0
            .get(ring)
            .is_some_and(|r| r.commit == commit && r.due <= Instant::now())
    }

    /// Notes how a deployment of `commit` to `ring` ended: a worker failure is tried
    /// again after a growing delay (from `backoff`, doubling up to [`MAX_BACKOFF`], with
    /// jitter); success or a build failure ends the retries.
    pub(super) fn note_outcome(&mut self, ring: &str, commit: &str, retryable: bool) {
        if !retryable {
            self.retries.0.remove(ring);
            return;
        }
        let (attempts, mut backoff) = match self.retries.0.remove(ring) {
            Some(r) if r.commit == commit => (r.attempts + 1, r.backoff),
            _ => (1, Backoff::new(self.backoff, MAX_BACKOFF)),
        };
        let delay = backoff.next_delay();
        tracing::warn!(ring, attempts, "deployment failed; trying again in {delay}");
        let retry = Retry {
            commit: commit.to_owned(),
            attempts,
            due: Instant::now() + delay.wait,
            backoff,
        };
        self.retries.0.insert(ring.to_owned(), retry);
    }
}
