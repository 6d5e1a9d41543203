//! Worker directory tests with real files in temp dirs: applying, pruning and drift
//! here; refusals and crash recovery in the submodules.

mod cache;
mod recovery;
mod refusals;

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use tempfile::TempDir;

pub(super) fn batch(deployment: &str, files: &[(&str, &str)]) -> Batch {
    Batch {
        deployment: deployment.to_owned(),
        expected_generation: None,
        files: files
            .iter()
            .map(|(p, c)| (p.to_string(), FileSpec::new(c.as_bytes().to_vec(), 0o644)))
            .collect(),
    }
}

pub(super) fn setup() -> (TempDir, WorkerDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = WorkerDir::new(tmp.path().join("worker"));
    (tmp, dir)
}

pub(super) fn read(dir: &WorkerDir, path: &str) -> String {
    fs::read_to_string(dir.root().join(path)).unwrap()
}

/// Every file below the root except `.ringops/lock`, with its content.
pub(super) fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                );
            } else if rel != ".ringops/lock" {
                out.insert(rel, fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// The files a batch should leave, as [`snapshot`] lists them (without folders).
pub(super) fn files_of(root: &Path) -> BTreeMap<String, String> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/') && !p.starts_with(".ringops"))
        .collect()
}

pub(super) fn expected(b: &Batch) -> BTreeMap<String, String> {
    b.files
        .iter()
        .map(|(p, f)| (p.clone(), String::from_utf8(f.content.to_vec()).unwrap()))
        .collect()
}

#[test]
fn apply_creates_files_and_the_record() {
    let (_tmp, dir) = setup();
    let b = batch(
        "d1",
        &[("wf/a/job.yaml", "a\n"), ("wf/b.1/conf/x.yaml", "x\n")],
    );
    let applied = dir.apply(&b).unwrap();
    assert_eq!(applied.generation, 1);
    assert_eq!(applied.written, ["wf/a/job.yaml", "wf/b.1/conf/x.yaml"]);
    assert_eq!(read(&dir, "wf/a/job.yaml"), "a\n");
    let mode = fs::metadata(dir.root().join("wf/a/job.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.root().join(".ringops/managed.json")).unwrap())
            .unwrap();
    assert_eq!(record["generation"], 1);
    assert_eq!(record["files"]["wf/a/job.yaml"]["deployment"], "d1");
    assert_eq!(record["files"]["wf/a/job.yaml"]["mode"], 0o644);
    assert_eq!(
        record["files"]["wf/a/job.yaml"]["sha256"],
        b.files["wf/a/job.yaml"].sha256
    );
    let inv = dir.inventory().unwrap();
    assert_eq!(inv.generation, 1);
    assert!(!inv.pending);
    assert_eq!(inv.drifted().count(), 0);
    assert!(inv.unmanaged.is_empty());
    assert!(!dir.root().join(".ringops/staging").exists());
    assert!(!dir.root().join(".ringops/journal.json").exists());
}

#[test]
fn applying_the_same_batch_again_writes_nothing() {
    let (_tmp, dir) = setup();
    let b = batch("d1", &[("wf/a/job.yaml", "a\n"), ("wf/b/job.yaml", "b\n")]);
    dir.apply(&b).unwrap();
    let mtime = |p: &str| {
        fs::metadata(dir.root().join(p))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = [mtime("wf/a/job.yaml"), mtime(".ringops/managed.json")];
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = Batch {
        deployment: "d2".into(),
        ..b.clone()
    };
    let applied = dir.apply(&again).unwrap();
    assert_eq!(applied.generation, 1);
    assert!(applied.written.is_empty() && applied.removed.is_empty());
    assert_eq!(applied.unchanged, 2);
    assert_eq!(
        before,
        [mtime("wf/a/job.yaml"), mtime(".ringops/managed.json")]
    );
    let inv = dir.inventory().unwrap();
    assert_eq!(
        inv.managed["wf/a/job.yaml"].record.deployment, "d1",
        "who wrote it"
    );
}

#[test]
fn update_adds_changes_and_prunes_removing_emptied_job_folders() {
    let (_tmp, dir) = setup();
    let old = batch(
        "d1",
        &[
            ("wf/a/job.yaml", "a\n"),
            ("wf/b/x/job.yaml", "b\n"),
            ("wf/c/job.yaml", "c\n"),
        ],
    );
    dir.apply(&old).unwrap();
    let new = batch(
        "d2",
        &[
            ("wf/a/job.yaml", "a2\n"),
            ("wf/c/job.yaml", "c\n"),
            ("other/d/job.yaml", "d\n"),
        ],
    );
    let applied = dir.apply(&new).unwrap();
    assert_eq!(applied.generation, 2);
    assert_eq!(applied.written, ["other/d/job.yaml", "wf/a/job.yaml"]);
    assert_eq!(applied.removed, ["wf/b/x/job.yaml"]);
    assert_eq!(applied.unchanged, 1);
    assert_eq!(files_of(dir.root()), expected(&new));
    assert!(
        !dir.root().join("wf/b").exists(),
        "emptied job folder removed"
    );
    let inv = dir.inventory().unwrap();
    assert_eq!(inv.managed["wf/a/job.yaml"].record.deployment, "d2");
    assert_eq!(inv.managed["wf/c/job.yaml"].record.deployment, "d1");
    // Pruning everything leaves an empty root with its record.
    let applied = dir.apply(&batch("d3", &[])).unwrap();
    assert_eq!(applied.removed.len(), 3);
    assert!(files_of(dir.root()).is_empty());
    assert!(!dir.root().join("wf").exists() && !dir.root().join("other").exists());
}

#[test]
fn unmanaged_files_survive_prune_and_keep_their_folder() {
    let (_tmp, dir) = setup();
    dir.apply(&batch(
        "d1",
        &[("wf/a/job.yaml", "a\n"), ("wf/b/job.yaml", "b\n")],
    ))
    .unwrap();
    fs::write(dir.root().join("wf/a/notes.txt"), "mine").unwrap();
    fs::write(dir.root().join("top.txt"), "mine too").unwrap();
    let applied = dir
        .apply(&batch("d2", &[("wf/b/job.yaml", "b\n")]))
        .unwrap();
    assert_eq!(applied.removed, ["wf/a/job.yaml"]);
    assert_eq!(read(&dir, "wf/a/notes.txt"), "mine");
    assert_eq!(read(&dir, "top.txt"), "mine too");
    assert_eq!(
        dir.inventory().unwrap().unmanaged,
        ["top.txt", "wf/a/notes.txt"]
    );
}

#[test]
fn inventory_reports_hot_edits_and_apply_reverts_them() {
    let (_tmp, dir) = setup();
    let b = batch(
        "d1",
        &[
            ("wf/a/job.yaml", "a\n"),
            ("wf/b/job.yaml", "b\n"),
            ("wf/c/job.yaml", "c\n"),
            ("wf/d/job.yaml", "d\n"),
        ],
    );
    dir.apply(&b).unwrap();
    fs::write(dir.root().join("wf/a/job.yaml"), "edited\n").unwrap();
    fs::remove_file(dir.root().join("wf/b/job.yaml")).unwrap();
    fs::set_permissions(
        dir.root().join("wf/c/job.yaml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::remove_file(dir.root().join("wf/d/job.yaml")).unwrap();
    fs::create_dir(dir.root().join("wf/d/job.yaml")).unwrap();
    let inv = dir.inventory().unwrap();
    let drift: BTreeMap<&str, &OnDisk> = inv
        .drifted()
        .map(|(p, e)| (p.as_str(), &e.on_disk))
        .collect();
    assert_eq!(drift.len(), 4, "{drift:?}");
    assert!(
        matches!(drift["wf/a/job.yaml"], OnDisk::File { sha256, .. } if *sha256 == sha256_hex(b"edited\n"))
    );
    assert_eq!(drift["wf/b/job.yaml"], &OnDisk::Missing);
    assert!(matches!(
        drift["wf/c/job.yaml"],
        OnDisk::File { mode: 0o600, .. }
    ));
    assert_eq!(
        drift["wf/d/job.yaml"],
        &OnDisk::NotAFile { what: "a folder" }
    );
    let applied = dir.apply(&b).unwrap();
    assert_eq!(
        applied.written,
        [
            "wf/a/job.yaml",
            "wf/b/job.yaml",
            "wf/c/job.yaml",
            "wf/d/job.yaml"
        ]
    );
    assert_eq!(files_of(dir.root()), expected(&b));
    assert_eq!(dir.inventory().unwrap().drifted().count(), 0);
}

#[test]
fn a_file_can_become_a_folder_and_back() {
    let (_tmp, dir) = setup();
    let file = batch("d1", &[("wf/a/conf", "flat\n")]);
    let folder = batch("d2", &[("wf/a/conf/deep/x.yaml", "x\n")]);
    dir.apply(&file).unwrap();
    dir.apply(&folder).unwrap();
    assert_eq!(files_of(dir.root()), expected(&folder));
    dir.apply(&file).unwrap();
    assert_eq!(files_of(dir.root()), expected(&file));
    // Not when the folder holds a file ringops does not manage.
    dir.apply(&folder).unwrap();
    fs::write(dir.root().join("wf/a/conf/mine"), "mine").unwrap();
    let err = dir.apply(&file).unwrap_err();
    assert!(matches!(err, WorkerDirError::InTheWay { .. }), "{err:?}");
    assert_eq!(read(&dir, "wf/a/conf/deep/x.yaml"), "x\n");
}

#[test]
fn a_mode_change_rewrites_the_file() {
    let (_tmp, dir) = setup();
    let mut b = batch("d1", &[("wf/a/run.sh", "#!/bin/sh\n")]);
    dir.apply(&b).unwrap();
    b.files.get_mut("wf/a/run.sh").unwrap().mode = 0o755;
    assert_eq!(dir.apply(&b).unwrap().written, ["wf/a/run.sh"]);
    let mode = fs::metadata(dir.root().join("wf/a/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        dir.inventory().unwrap().managed["wf/a/run.sh"].record.mode,
        0o755
    );
}

#[test]
fn inventory_of_a_missing_directory_is_empty_and_creates_nothing() {
    let (_tmp, dir) = setup();
    assert_eq!(dir.inventory().unwrap(), Inventory::default());
    dir.recover().unwrap();
    assert!(!dir.root().exists());
}
