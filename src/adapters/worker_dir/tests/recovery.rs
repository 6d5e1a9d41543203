//! Crashes simulated by stopping a switch early, then recovery.

use super::*;

/// Old and new sets that write, replace and remove files and folders.
fn old_and_new() -> (Batch, Batch) {
    let old = batch(
        "d1",
        &[
            ("wf/a/job.yaml", "a1\n"),
            ("wf/b/job.yaml", "b1\n"),
            ("wf/c/conf", "c1\n"),
            ("wf/keep/job.yaml", "k\n"),
        ],
    );
    let new = batch(
        "d2",
        &[
            ("wf/a/job.yaml", "a2\n"),
            ("wf/c/conf/x.yaml", "c2\n"),
            ("wf/d/job.yaml", "d2\n"),
            ("wf/keep/job.yaml", "k\n"),
        ],
    );
    (old, new)
}

#[test]
fn a_crash_at_any_step_recovers_to_the_old_or_the_new_set() {
    let (old, new) = old_and_new();
    // 2 removals (wf/b, wf/c/conf) and 3 renames.
    let mut stops = vec![Stop::AfterStaging, Stop::AfterJournal, Stop::BeforeRecord];
    stops.extend((1..=5).map(Stop::AfterOps));
    for stop in stops {
        let (_tmp, dir) = setup();
        dir.apply(&old).unwrap();
        dir.apply_until(&new, stop).unwrap();
        // No file is ever torn: each holds its old or its new content.
        for (path, content) in files_of(dir.root()) {
            let known = [&old, &new]
                .iter()
                .any(|b| expected(b).get(&path) == Some(&content));
            assert!(known, "{stop:?}: {path} holds {content:?}");
        }
        let committed = stop != Stop::AfterStaging;
        let inv = dir.inventory().unwrap();
        assert_eq!(inv.pending, committed, "{stop:?}");
        assert_eq!(inv.generation, if committed { 2 } else { 1 }, "{stop:?}");
        dir.recover().unwrap();
        let want = if committed { &new } else { &old };
        assert_eq!(files_of(dir.root()), expected(want), "{stop:?}");
        let inv = dir.inventory().unwrap();
        assert!(
            !inv.pending && inv.drifted().count() == 0,
            "{stop:?}: {inv:?}"
        );
        assert!(!dir.root().join(".ringops/staging").exists(), "{stop:?}");
        assert!(
            !dir.root().join(".ringops/journal.json").exists(),
            "{stop:?}"
        );
        assert_eq!(dir.root().join("wf/b").exists(), !committed, "{stop:?}");
        // Replaying again changes nothing; the next apply finds nothing to do.
        dir.recover().unwrap();
        assert_eq!(files_of(dir.root()), expected(want), "{stop:?}");
        assert!(dir.apply(want).unwrap().written.is_empty(), "{stop:?}");
    }
}

#[test]
fn apply_finishes_a_half_replayed_switch_before_its_own() {
    let (old, new) = old_and_new();
    let (_tmp, dir) = setup();
    dir.apply(&old).unwrap();
    dir.apply_until(&new, Stop::AfterOps(3)).unwrap();
    let mut next = new.clone();
    next.expected_generation = Some(2);
    let applied = dir.apply(&next).unwrap();
    assert_eq!(applied.generation, 2);
    assert!(applied.written.is_empty());
    assert_eq!(files_of(dir.root()), expected(&new));
}

#[test]
fn leftover_staging_without_a_journal_is_thrown_away() {
    let (old, new) = old_and_new();
    let (_tmp, dir) = setup();
    dir.apply(&old).unwrap();
    dir.apply_until(&new, Stop::AfterStaging).unwrap();
    assert!(dir.root().join(".ringops/staging/0").exists());
    fs::write(dir.root().join(".ringops/journal.json.tmp"), "{\"trunc").unwrap();
    dir.recover().unwrap();
    assert!(!dir.root().join(".ringops/staging").exists());
    assert!(!dir.root().join(".ringops/journal.json.tmp").exists());
    assert_eq!(files_of(dir.root()), expected(&old));
    assert_eq!(dir.inventory().unwrap().generation, 1);
}
