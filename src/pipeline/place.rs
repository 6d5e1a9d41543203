//! Place stage: which workers run a job. Rendezvous (highest-random-weight) hashing,
//! so adding or removing a worker moves only the replicas that must move.

use sha2::{Digest, Sha256};

/// One placed instance of a job: the worker and, for `replicas: N`, the replica index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'w> {
    /// Worker name.
    pub worker: &'w str,
    /// Replica index when the step sets `replicas`.
    pub replica: Option<u32>,
}

/// Places a job on `candidates`: all of them, or `replicas` chosen by rendezvous hashing.
///
/// Replica `r` goes to the free worker with the highest `hash(key, r, worker)`, so each
/// replica keeps its worker while that worker stays eligible. Returns `None` when there
/// are fewer candidates than replicas.
pub fn place<'w>(
    key: &str,
    candidates: &[&'w str],
    replicas: Option<u32>,
) -> Option<Vec<Slot<'w>>> {
    let Some(n) = replicas else {
        return Some(
            candidates
                .iter()
                .map(|w| Slot {
                    worker: w,
                    replica: None,
                })
                .collect(),
        );
    };
    if n as usize > candidates.len() {
        return None;
    }
    let mut taken = vec![false; candidates.len()];
    let mut slots = Vec::with_capacity(n as usize);
    for r in 0..n {
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .max_by_key(|(_, w)| (score(key, r, w), **w))
            .map(|(i, _)| i)?;
        taken[best] = true;
        slots.push(Slot {
            worker: candidates[best],
            replica: Some(r),
        });
    }
    Some(slots)
}

fn score(key: &str, replica: u32, worker: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(replica.to_le_bytes());
    h.update(worker.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("w-{i}")).collect()
    }

    #[test]
    fn without_replicas_every_worker_gets_one() {
        let ws = ["a", "b"];
        let slots = place("wf/s", &ws, None).unwrap();
        assert_eq!(slots.len(), 2);
        assert!(slots.iter().all(|s| s.replica.is_none()));
    }

    #[test]
    fn too_many_replicas_is_none() {
        assert!(place("wf/s", &["a"], Some(2)).is_none());
    }

    proptest! {
        #[test]
        fn placement_ignores_candidate_order(n in 1usize..20, r in 1u32..5, seed in 0u64..1000) {
            let owned = names(n);
            let mut ws: Vec<&str> = owned.iter().map(String::as_str).collect();
            let r = r.min(n as u32);
            let a = place(&format!("k{seed}"), &ws, Some(r)).unwrap();
            ws.reverse();
            let b = place(&format!("k{seed}"), &ws, Some(r)).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn removing_an_unused_worker_moves_nothing(n in 2usize..20, r in 1u32..4, seed in 0u64..1000) {
            let owned = names(n);
            let ws: Vec<&str> = owned.iter().map(String::as_str).collect();
            let r = r.min(n as u32 - 1);
            let key = format!("k{seed}");
            let before = place(&key, &ws, Some(r)).unwrap();
            let unused = ws.iter().find(|w| !before.iter().any(|s| s.worker == **w)).unwrap();
            let fewer: Vec<&str> = ws.iter().copied().filter(|w| w != unused).collect();
            prop_assert_eq!(before, place(&key, &fewer, Some(r)).unwrap());
        }

        #[test]
        fn adding_a_worker_moves_at_most_the_replicas_it_wins(n in 1usize..20, r in 1u32..4, seed in 0u64..1000) {
            let owned = names(n + 1);
            let ws: Vec<&str> = owned.iter().map(String::as_str).collect();
            let r = r.min(n as u32);
            let key = format!("k{seed}");
            let before = place(&key, &ws[..n], Some(r)).unwrap();
            let after = place(&key, &ws, Some(r)).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let won = after.iter().filter(|s| s.worker == ws[n]).count();
            // The new worker takes at most one replica; the chain it displaces is bounded by r.
            prop_assert!(won <= 1);
            prop_assert!(won == 1 || moved == 0);
        }
    }
}
