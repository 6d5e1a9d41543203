//! The gates in force for a ring, decided once for the CLI, the daemon and the API.
//!
//! Gates come from the ring's trusted definition: the one in the commit of its newest
//! deployment that became Active through its gates, else the one at the tracked head;
//! never from the commit being deployed, so a commit cannot lower its own gate. A
//! freeze is the exception: the tracked head and the commit being deployed may raise
//! one at once (never lift one by themselves).

use super::EngineError;
use crate::adapters::git::{Source, SourceError};
use crate::adapters::store::Store;
use crate::model::manifest::RingSpec;
use crate::model::{Bundle, DesiredState};
use crate::pipeline::policy::ring_spec;
use crate::pipeline::rollout::Gates;

/// Where a ring's gates are read from.
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    /// The repository.
    pub source: &'a Source,
    /// The manifests' folder in it.
    pub path: &'a str,
    /// The tracked branch, as named (`main`, `HEAD`).
    pub rev: &'a str,
    /// The tracked branch's head, as read now.
    pub head: &'a Bundle,
}

/// A ring's trusted definition; `None` when the ring is not defined there.
///
/// A commit gone from the repository (history rewritten and collected) would hold the
/// ring forever; the head is read instead, with a warning.
pub fn trusted_spec(
    store: &Store,
    trust: &Trust<'_>,
    ring: &str,
) -> Result<Option<RingSpec>, EngineError> {
    let Some(gated) = store.gated(ring)? else {
        return Ok(ring_spec(trust.head, ring));
    };
    if trust.head.commit.as_deref() == Some(gated.commit.as_str()) {
        return Ok(ring_spec(trust.head, ring));
    }
    match trust.source.bundle_at(&gated.commit, trust.path) {
        Ok(bundle) => Ok(ring_spec(&bundle, ring)),
        Err(SourceError::BadRevision { message, .. }) => {
            tracing::warn!(
                ring,
                deployment = %gated.id,
                commit = gated.commit,
                "the commit of the ring's last gated deployment is gone from the repository ({message}); its gates are read at `{}`", trust.rev
            );
            Ok(ring_spec(trust.head, ring))
        }
        Err(e) => Err(e.into()),
    }
}

/// The gates in force for `ring` now: its trusted definition's, frozen as well when
/// the tracked head or the `incoming` bundle (the one being deployed) freezes it.
pub fn effective(
    store: &Store,
    trust: &Trust<'_>,
    ring: &str,
    incoming: Option<&Bundle>,
) -> Result<Gates, EngineError> {
    let spec = trusted_spec(store, trust, ring)?.ok_or_else(|| EngineError::Untrusted {
        ring: ring.to_owned(),
        head: trust.rev.to_owned(),
    })?;
    let gates = with_incoming(parse(ring, &spec)?, trust.head, ring);
    Ok(match incoming {
        Some(bundle) => with_incoming(gates, bundle, ring),
        None => gates,
    })
}

/// `gates`, frozen as well when `bundle` (a commit on its way in) freezes `ring`: a
/// commit may raise a freeze at once, never lift one by itself.
pub fn with_incoming(mut gates: Gates, bundle: &Bundle, ring: &str) -> Gates {
    gates.freeze |= raises_freeze(bundle, ring);
    gates
}

/// The gates of a ring that has no trusted definition yet (new in the commit being
/// deployed, not at the tracked head): its own, as long as it was never deployed and
/// takes no worker another ring's Active deployment holds (a renamed ring must not
/// escape the old one's gates).
pub fn of_new_ring(
    store: &Store,
    incoming: &Bundle,
    desired: &DesiredState,
) -> Result<Option<Gates>, EngineError> {
    let ring = &desired.ring;
    let own = ring_spec(incoming, ring);
    let Some(spec) = own.filter(|_| matches!(store.active(ring), Ok(None))) else {
        return Ok(None);
    };
    for other in store.rings()? {
        let Some(active) = store.active(&other)? else {
            continue;
        };
        let held = store.artifacts(active.id)?;
        if let Some(worker) = desired.workers.keys().find(|w| held.contains_key(*w)) {
            return Err(EngineError::TakenWorker {
                ring: ring.clone(),
                worker: worker.clone(),
                owner: other,
                deployment: active.id,
            });
        }
    }
    parse(ring, &spec).map(Some)
}

fn parse(ring: &str, spec: &RingSpec) -> Result<Gates, EngineError> {
    Gates::from_spec(spec).map_err(|source| EngineError::Gates {
        ring: ring.to_owned(),
        source,
    })
}

fn raises_freeze(bundle: &Bundle, ring: &str) -> bool {
    ring_spec(bundle, ring).is_some_and(|s| s.freeze)
}
