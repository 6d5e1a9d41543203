//! The stat cache: inventory trusts it only for exactly the stat it recorded, so every
//! kind of drift is still seen; a missing or damaged cache only costs hashing.

use super::*;
use crate::adapters::worker_dir::stat_cache::{STAT_CACHE, StatCache};
use crate::model::desired::sha256_hex;
use std::collections::BTreeSet;
use std::time::Duration;

/// Longer than any filesystem timestamp tick, so what was written before it is no
/// longer "racily clean".
const TICK: Duration = Duration::from_millis(30);

fn four() -> Batch {
    batch(
        "d1",
        &[
            ("wf/a/job.yaml", "a\n"),
            ("wf/b/job.yaml", "b\n"),
            ("wf/c/deep/x.yaml", "c\n"),
            ("other/d/job.yaml", "d\n"),
        ],
    )
}

/// Applies `b`, lets a tick pass, and applies it again, which writes nothing but records
/// every file and folder in the cache.
fn settled(b: &Batch) -> (TempDir, WorkerDir) {
    let (tmp, dir) = setup();
    dir.apply(b).unwrap();
    std::thread::sleep(TICK);
    assert!(dir.apply(b).unwrap().written.is_empty());
    (tmp, dir)
}

fn cache_of(dir: &WorkerDir) -> StatCache {
    StatCache::read(&Disk::new(dir.root()))
}

fn drift(dir: &WorkerDir) -> BTreeMap<String, OnDisk> {
    let inv = dir.inventory().unwrap();
    inv.drifted()
        .map(|(p, e)| (p.clone(), e.on_disk.clone()))
        .collect()
}

#[test]
fn a_settled_directory_is_wholly_in_the_cache_and_inventory_trusts_it() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    let cache = cache_of(&dir);
    let files: BTreeSet<&String> = cache.files.keys().collect();
    assert_eq!(files, b.files.keys().collect());
    let dirs: BTreeSet<&str> = cache.dirs.keys().map(String::as_str).collect();
    let want = [
        "",
        "other",
        "other/d",
        "wf",
        "wf/a",
        "wf/b",
        "wf/c",
        "wf/c/deep",
    ];
    assert_eq!(dirs, BTreeSet::from(want));
    assert!(drift(&dir).is_empty());

    // Proof that a known stat is not rehashed: a cache claiming other content for the
    // exact stat on disk is believed (the cache is only ever written by ringops).
    let path = dir.root().join(".ringops").join(STAT_CACHE);
    let text = fs::read_to_string(&path).unwrap();
    let real = &b.files["wf/a/job.yaml"].sha256;
    fs::write(&path, text.replace(real.as_str(), &"0".repeat(64))).unwrap();
    assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/a/job.yaml"]);
}

#[test]
fn an_edit_keeping_size_and_mtime_is_still_seen() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    let path = dir.root().join("wf/a/job.yaml");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(TICK);
    fs::write(&path, "A\n").unwrap();
    // `touch -d` back to the old mtime: only the ctime still tells.
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    let drift = drift(&dir);
    assert!(
        matches!(&drift["wf/a/job.yaml"], OnDisk::File { sha256, .. } if *sha256 == sha256_hex(b"A\n")),
        "{drift:?}"
    );
}

#[test]
fn edits_right_after_an_apply_are_seen() {
    let b = four();
    let (_tmp, dir) = setup();
    dir.apply(&b).unwrap();
    fs::write(dir.root().join("wf/a/job.yaml"), "A\n").unwrap();
    assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/a/job.yaml"]);

    // And right after an apply that recorded everything.
    let (_tmp, dir) = settled(&b);
    fs::write(dir.root().join("wf/b/job.yaml"), "B\n").unwrap();
    fs::write(dir.root().join("wf/c/deep/new.txt"), "mine").unwrap();
    assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/b/job.yaml"]);
    let inv = dir.inventory().unwrap();
    assert_eq!(inv.unmanaged, ["wf/c/deep/new.txt"]);
}

#[test]
fn every_kind_of_drift_is_seen_through_the_cache() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    std::thread::sleep(TICK);
    let root = dir.root();
    fs::remove_file(root.join("wf/a/job.yaml")).unwrap();
    fs::set_permissions(
        root.join("wf/b/job.yaml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::remove_dir_all(root.join("wf/c/deep")).unwrap();
    fs::write(root.join("wf/c/deep"), "a file where a folder was").unwrap();
    fs::remove_file(root.join("other/d/job.yaml")).unwrap();
    fs::create_dir(root.join("other/d/job.yaml")).unwrap();
    fs::write(root.join("other/d/job.yaml/inside"), "x").unwrap();
    fs::create_dir_all(root.join("new/deeper")).unwrap();
    fs::write(root.join("new/deeper/f"), "x").unwrap();
    let drift = drift(&dir);
    assert_eq!(drift["wf/a/job.yaml"], OnDisk::Missing);
    assert!(matches!(
        drift["wf/b/job.yaml"],
        OnDisk::File { mode: 0o600, .. }
    ));
    assert_eq!(drift["wf/c/deep/x.yaml"], OnDisk::Missing);
    assert_eq!(
        drift["other/d/job.yaml"],
        OnDisk::NotAFile { what: "a folder" }
    );
    let inv = dir.inventory().unwrap();
    assert_eq!(
        inv.unmanaged,
        ["new/deeper/f", "other/d/job.yaml/inside", "wf/c/deep"]
    );
    // Apply repairs what it may and records the result.
    fs::remove_file(root.join("wf/c/deep")).unwrap();
    fs::remove_dir_all(root.join("other/d/job.yaml")).unwrap();
    let applied = dir.apply(&b).unwrap();
    assert_eq!(applied.written.len(), 4);
    assert!(self::drift(&dir).is_empty());
    assert_eq!(dir.inventory().unwrap().unmanaged, ["new/deeper/f"]);
}

#[test]
fn a_missing_or_damaged_cache_only_costs_hashing() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    let path = dir.root().join(".ringops").join(STAT_CACHE);
    let whole = fs::read_to_string(&path).unwrap();
    std::thread::sleep(TICK);
    fs::write(dir.root().join("wf/a/job.yaml"), "A\n").unwrap();
    for damaged in ["", "garbage", &whole[..whole.len() - 4]] {
        fs::write(&path, damaged).unwrap();
        assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/a/job.yaml"]);
    }
    fs::remove_file(&path).unwrap();
    assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/a/job.yaml"]);
    // The next apply rebuilds it.
    dir.apply(&b).unwrap();
    std::thread::sleep(TICK);
    dir.apply(&b).unwrap();
    assert_eq!(cache_of(&dir).files.len(), 4);
}

#[test]
fn inventory_writes_nothing_and_a_switch_updates_the_cache() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    let before = snapshot(dir.root());
    dir.inventory().unwrap();
    assert_eq!(snapshot(dir.root()), before);

    let mut next = b.clone();
    next.files.remove("wf/c/deep/x.yaml");
    next.files.insert(
        "wf/e/job.yaml".into(),
        FileSpec::new(b"e\n".to_vec(), 0o644),
    );
    std::thread::sleep(TICK);
    dir.apply(&next).unwrap();
    let cache = cache_of(&dir);
    assert!(!cache.files.contains_key("wf/c/deep/x.yaml"));
    assert!(
        !cache.dirs.contains_key("wf/c/deep"),
        "removed folder dropped"
    );
    assert!(drift(&dir).is_empty());
    assert_eq!(files_of(dir.root()), expected(&next));
}

#[test]
fn recover_rebuilds_the_cache_after_replaying() {
    let b = four();
    let (_tmp, dir) = settled(&b);
    let mut next = b.clone();
    next.files.insert(
        "wf/a/job.yaml".into(),
        FileSpec::new(b"a2\n".to_vec(), 0o644),
    );
    dir.apply_until(&next, Stop::AfterJournal).unwrap();
    std::thread::sleep(TICK);
    dir.recover().unwrap();
    assert!(!dir.root().join(".ringops/stat-cache.tmp").exists());
    let cache = cache_of(&dir);
    let stamp_of = |p: &str| {
        let meta = fs::symlink_metadata(dir.root().join(p)).unwrap();
        super::super::stat_cache::Stamp::of(&meta).unwrap()
    };
    assert_eq!(
        cache.sha("wf/a/job.yaml", &stamp_of("wf/a/job.yaml")),
        Some(next.files["wf/a/job.yaml"].sha256.as_str())
    );
    assert!(drift(&dir).is_empty());
}

#[test]
fn a_written_file_is_recorded_only_while_it_is_as_written() {
    use super::super::stat_cache::Stamp;
    let (_tmp, dir) = setup();
    let path = dir.root().join("f");
    fs::create_dir_all(dir.root()).unwrap();
    fs::write(&path, "one\n").unwrap();
    let written = Stamp::of(&fs::metadata(&path).unwrap()).unwrap();
    let renamed = dir.root().join("g");
    fs::rename(&path, &renamed).unwrap();
    let after = Stamp::of(&fs::metadata(&renamed).unwrap()).unwrap();
    assert!(after.same_content_as_written(&written));
    std::thread::sleep(TICK);
    fs::write(&renamed, "two\n").unwrap();
    let edited = Stamp::of(&fs::metadata(&renamed).unwrap()).unwrap();
    assert!(!edited.same_content_as_written(&written));
}

#[test]
fn an_apply_carries_untouched_listings_over_and_later_changes_are_still_seen() {
    let b = four();
    let (_tmp, dir) = setup();
    fs::create_dir_all(dir.root().join("junk")).unwrap();
    fs::write(dir.root().join("junk/keep.txt"), "mine").unwrap();
    dir.apply(&b).unwrap();
    std::thread::sleep(TICK);
    dir.apply(&b).unwrap();
    assert!(cache_of(&dir).dirs.contains_key("junk"));

    // Unmanaged files land in a folder on the way to a managed file and in one that
    // is not; then an apply touches only `other/d`.
    std::thread::sleep(TICK);
    fs::write(dir.root().join("wf/b/new.txt"), "mine").unwrap();
    fs::write(dir.root().join("junk/more.txt"), "mine").unwrap();
    let mut next = b.clone();
    next.files.insert(
        "other/d/job.yaml".into(),
        FileSpec::new(b"d2\n".to_vec(), 0o644),
    );
    std::thread::sleep(TICK);
    assert_eq!(dir.apply(&next).unwrap().written, ["other/d/job.yaml"]);
    let cache = cache_of(&dir);
    // The apply saw `wf/b` changed on its way to `wf/b/job.yaml`: listed anew.
    let names = |d: &str| -> Vec<String> {
        let mut n: Vec<String> = cache.dirs[d].entries.iter().map(|e| e.0.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names("wf/b"), ["job.yaml", "new.txt"]);
    // `junk` was carried over as it was: stale, so never trusted for its new stat.
    assert_eq!(names("junk"), ["keep.txt"]);
    let inv = dir.inventory().unwrap();
    assert_eq!(
        inv.unmanaged,
        ["junk/keep.txt", "junk/more.txt", "wf/b/new.txt"]
    );
    assert!(drift(&dir).is_empty());

    // An edit right after is drift, whatever the cache carried.
    fs::write(dir.root().join("wf/a/job.yaml"), "A\n").unwrap();
    assert_eq!(drift(&dir).keys().collect::<Vec<_>>(), ["wf/a/job.yaml"]);
}
