//! Place stage: which workers run a job. Rendezvous (highest-random-weight) hashing,
//! so adding or removing a worker changes the set of workers running a replicated job by
//! at most that one worker.
//!
//! Owns the choice of workers in a ring and the checks that choice needs (the group
//! exists, has eligible workers, enough for `replicas`, and offers the blueprint's
//! features). It may not render anything or look at parameters.

use super::catalog::{Catalog, Entry};
use super::expand::Job;
use crate::model::manifest::{BlueprintSpec, Worker};
use crate::model::{Diagnostics, Pos};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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
/// Replica `r` goes to the free worker with the highest `hash(key, r, worker)`. A worker
/// that leaves frees its replica, which one new worker takes, possibly through a chain in
/// which later replicas swap workers; a worker that joins takes at most one replica and
/// pushes out at most one worker. So the *set* of workers changes by at most one, while
/// replica numbers may shift. (No pure function of the worker set can keep every replica
/// number: `{a,b}→{a,c}→{b,c}` and `{a,b}→{b,c}` would need `c` on two numbers.)
/// Returns `None` when there are fewer candidates than replicas.
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

/// Each group's workers in one ring, sorted by name: looked up once per ring rather
/// than once per job.
pub struct RingWorkers<'a> {
    by_group: HashMap<&'a str, Vec<&'a Worker>>,
}

impl<'a> RingWorkers<'a> {
    /// The workers of every group of the catalog in `ring`.
    pub fn new(cat: &Catalog<'a>, ring: &str) -> Self {
        let by_group = cat
            .groups
            .keys()
            .map(|group| (*group, cat.workers_in(group, ring)))
            .collect();
        Self { by_group }
    }

    fn of(&self, group: &str) -> &[&'a Worker] {
        self.by_group.get(group).map_or(&[], Vec::as_slice)
    }
}

/// The workers `job` of `workflow` runs on in `ring` (whose workers `pool` holds), or
/// `None` after a reported problem. With `check_only` the placement is checked but not
/// computed (the slots are empty).
pub fn slots<'a>(
    cat: &Catalog<'a>,
    pool: &RingWorkers<'a>,
    workflow: &str,
    job: &Job<'a>,
    ring: &str,
    check_only: bool,
    diags: &mut Diagnostics,
) -> Option<Vec<Slot<'a>>> {
    let (placement, file) = (job.placement, job.placement_file);
    let group = placement.group.value.as_str();
    if !cat.groups.contains_key(group) {
        cat.unknown(diags, file, &placement.group, "group");
        return None;
    }
    let candidates = candidates(pool, job);
    if candidates.is_empty() {
        no_workers(job, ring, diags);
        return None;
    }
    let replicas = placement.replicas.as_ref().map(|r| r.value);
    if replicas == Some(0) {
        zero_replicas(job, diags);
        return None;
    }
    let slots = if check_only {
        // Only validity matters for a ring that is checked, not rendered.
        (replicas.unwrap_or(0) as usize <= candidates.len()).then(Vec::new)
    } else {
        place(&format!("{workflow}/{}", job.name), &candidates, replicas)
    };
    if slots.is_none() {
        too_few_workers(job, ring, candidates.len(), diags);
    }
    slots
}

/// Reports a job whose group has no (matching) workers in `ring`.
fn no_workers(job: &Job<'_>, ring: &str, diags: &mut Diagnostics) {
    let placement = job.placement;
    let selector = match placement.selector.is_empty() {
        true => "",
        false => " matching the selector",
    };
    diags.error(
        job.placement_file,
        placement.group.at,
        "no-workers",
        format!(
            "step `{}` is placed on group `{}`, which has no workers{selector} in ring `{ring}`",
            job.name, placement.group.value
        ),
    );
}

/// Reports a job that asks for 0 replicas.
fn zero_replicas(job: &Job<'_>, diags: &mut Diagnostics) {
    let placement = job.placement;
    let at = placement
        .replicas
        .as_ref()
        .map_or(placement.group.at, |r| r.at);
    diags.error(
        job.placement_file,
        at,
        "replicas",
        format!(
            "step `{}` asks for 0 replicas; use at least 1, or remove the step",
            job.name
        ),
    );
}

/// The workers of the job's group in the ring that match its selector, by name.
fn candidates<'a>(pool: &RingWorkers<'a>, job: &Job<'a>) -> Vec<&'a str> {
    let placement = job.placement;
    pool.of(&placement.group.value)
        .iter()
        .filter(|w| {
            placement
                .selector
                .iter()
                .all(|(k, v)| w.labels.get(k) == Some(v))
        })
        .map(|w| w.name.value.as_str())
        .collect()
}

fn too_few_workers(job: &Job, ring: &str, eligible: usize, diags: &mut Diagnostics) {
    let placement = job.placement;
    let at = placement
        .replicas
        .as_ref()
        .map_or(placement.group.at, |r| r.at);
    diags.error(
        job.placement_file,
        at,
        "replicas",
        format!(
            "{} replicas asked but group `{}` has only {eligible} eligible {} in ring `{ring}`",
            placement.replicas.as_ref().map(|r| r.value).unwrap_or(0),
            placement.group.value,
            if eligible == 1 { "worker" } else { "workers" }
        ),
    );
}

/// Reports each feature the blueprint requires that `group` does not offer.
pub fn check_features(
    cat: &Catalog,
    bp: &Entry<BlueprintSpec>,
    group: &str,
    file: &str,
    at: Pos,
    diags: &mut Diagnostics,
) {
    let Some(g) = cat.groups.get(group) else {
        return;
    };
    for feature in &bp.spec.requires {
        if !g.spec.features.contains(&feature.value) {
            diags.error(
                file,
                at,
                "missing-feature",
                format!(
                    "blueprint `{}` requires feature `{}`, which group `{group}` does not offer",
                    bp.doc.name(),
                    feature.value
                ),
            );
        }
    }
}

/// The rendezvous weight of `worker` for replica `replica` of the job `key`: the first 8
/// bytes (big-endian) of sha256(key, 0, replica as 4 little-endian bytes, worker).
fn score(key: &str, replica: u32, worker: &str) -> u64 {
    let len = key.len() + 5 + worker.len();
    if len > 55 {
        return score_hashed(key, replica, worker);
    }
    // The message fits one padded block: one compression, without the hasher's
    // buffering (placement computes millions of these).
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key.as_bytes());
    block[key.len() + 1..key.len() + 5].copy_from_slice(&replica.to_le_bytes());
    block[key.len() + 5..len].copy_from_slice(worker.as_bytes());
    block[len] = 0x80;
    block[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &[block]);
    (u64::from(state[0]) << 32) | u64::from(state[1])
}

/// SHA-256's initial hash value.
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// [`score`] through the hasher, for messages longer than one block.
fn score_hashed(key: &str, replica: u32, worker: &str) -> u64 {
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

    /// Workers running the job before and not after.
    fn set_change(before: &[Slot], after: &[Slot]) -> usize {
        let after: std::collections::BTreeSet<&str> = after.iter().map(|s| s.worker).collect();
        before.iter().filter(|s| !after.contains(s.worker)).count()
    }

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
    fn the_one_block_score_is_the_hashed_score() {
        for key_len in [0, 1, 20, 46, 50, 51, 60] {
            for worker_len in [0, 1, 5, 9, 30] {
                let key = "k".repeat(key_len);
                let worker = "w".repeat(worker_len);
                for replica in [0, 1, 7, u32::MAX] {
                    let want = score_hashed(&key, replica, &worker);
                    assert_eq!(
                        score(&key, replica, &worker),
                        want,
                        "{key_len} {worker_len}"
                    );
                }
            }
        }
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
            prop_assert!(set_change(&before, &after) <= 1);
        }

        #[test]
        fn removing_any_worker_changes_the_set_by_at_most_one(n in 2usize..20, r in 1u32..5, gone in 0usize..20, seed in 0u64..1000) {
            let owned = names(n);
            let ws: Vec<&str> = owned.iter().map(String::as_str).collect();
            let r = r.min(n as u32 - 1);
            let key = format!("k{seed}");
            let before = place(&key, &ws, Some(r)).unwrap();
            let fewer: Vec<&str> = ws.iter().copied().filter(|w| *w != ws[gone % n]).collect();
            let after = place(&key, &fewer, Some(r)).unwrap();
            prop_assert!(set_change(&before, &after) <= 1);
        }
    }
}
