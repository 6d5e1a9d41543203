//! What apply refuses, writing nothing: paths that leave the job folder, links on the
//! way that ringops did not make drift of (a link replacing its own folder is repaired),
//! wrong checksums and modes, stale generations, unmanaged files in the way.

use super::*;
use std::os::unix::fs::symlink;

/// A worker with `outside/job.yaml` ("precious") and `wf/a` a link to `outside`;
/// the outside folder's snapshot.
fn linked_job_folder() -> (
    TempDir,
    WorkerDir,
    std::path::PathBuf,
    BTreeMap<String, String>,
) {
    let (tmp, dir) = setup();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("job.yaml"), "precious\n").unwrap();
    fs::create_dir_all(dir.root().join("wf")).unwrap();
    symlink(&outside, dir.root().join("wf/a")).unwrap();
    let before = snapshot(&outside);
    (tmp, dir, outside, before)
}

/// Replaces job folder `wf/a` with a link to `outside`.
fn link_over_job_folder(dir: &WorkerDir, outside: &Path) {
    fs::remove_dir_all(dir.root().join("wf/a")).unwrap();
    symlink(outside, dir.root().join("wf/a")).unwrap();
}

#[test]
fn a_symlinked_job_folder_is_never_followed() {
    let (_tmp, dir, outside, before) = linked_job_folder();
    let err = dir
        .apply(&batch("d1", &[("wf/a/job.yaml", "x\n")]))
        .unwrap_err();
    assert!(
        matches!(&err, WorkerDirError::SymlinkInPath { link, .. } if link == "wf/a"),
        "{err:?}"
    );
    assert!(err.is_user_error());
    assert_eq!(snapshot(&outside), before);
    assert!(!dir.root().join(".ringops/managed.json").exists());
}

/// A job folder replaced by a link after ringops wrote it is drift: the files behind it
/// are forgotten, never removed through it, and a switch that writes there puts a real
/// folder in the link's place; the link's target is left alone.
#[test]
fn a_link_over_a_job_folder_of_ringops_is_drift_that_a_switch_repairs() {
    let (_tmp, dir, outside, before) = linked_job_folder();
    fs::remove_file(dir.root().join("wf/a")).unwrap();
    let files = [("wf/a/job.yaml", "x\n"), ("wf/b/job.yaml", "b\n")];
    dir.apply(&batch("d1", &files)).unwrap();
    link_over_job_folder(&dir, &outside);
    let inv = dir.inventory().unwrap();
    assert_eq!(
        inv.managed["wf/a/job.yaml"].on_disk,
        OnDisk::NotAFile {
            what: crate::adapters::worker_dir::LINK_ON_PATH
        }
    );
    assert_eq!(inv.unmanaged, ["wf/a"]);
    let repaired = dir.apply(&batch("d1", &files)).unwrap();
    assert_eq!(repaired.written, ["wf/a/job.yaml"]);
    let meta = fs::symlink_metadata(dir.root().join("wf/a")).unwrap();
    assert!(meta.is_dir(), "the link is still there");
    assert_eq!(read(&dir, "wf/a/job.yaml"), "x\n");
    assert_eq!(snapshot(&outside), before);
    assert!(dir.inventory().unwrap().drifted().next().is_none());

    // Pruned while behind a link: forgotten, the link and its target left alone.
    link_over_job_folder(&dir, &outside);
    dir.apply(&batch("d2", &[("wf/b/job.yaml", "b\n")]))
        .unwrap();
    let link = fs::symlink_metadata(dir.root().join("wf/a")).unwrap();
    assert!(link.is_symlink());
    assert_eq!(snapshot(&outside), before);
    let managed = dir.inventory().unwrap().managed;
    assert!(!managed.contains_key("wf/a/job.yaml"));
}

#[test]
fn a_managed_file_replaced_by_a_link_is_replaced_not_written_through() {
    let (tmp, dir) = setup();
    let outside = tmp.path().join("outside.yaml");
    fs::write(&outside, "precious\n").unwrap();
    let b = batch("d1", &[("wf/a/job.yaml", "x\n")]);
    dir.apply(&b).unwrap();
    let target = dir.root().join("wf/a/job.yaml");
    fs::remove_file(&target).unwrap();
    symlink(&outside, &target).unwrap();
    let inv = dir.inventory().unwrap();
    assert_eq!(
        inv.managed["wf/a/job.yaml"].on_disk,
        OnDisk::NotAFile {
            what: "a symbolic link"
        }
    );
    assert_eq!(dir.apply(&b).unwrap().written, ["wf/a/job.yaml"]);
    assert!(
        !fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(&dir, "wf/a/job.yaml"), "x\n");
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
    // Pruning it removes the link, not what it points at.
    fs::remove_file(&target).unwrap();
    symlink(&outside, &target).unwrap();
    dir.apply(&batch("d2", &[])).unwrap();
    assert!(!target.exists());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
}

#[test]
fn paths_that_leave_the_job_folder_are_refused_before_anything_is_written() {
    let (_tmp, dir) = setup();
    for bad in [
        "../escape/x/y",
        "/etc/passwd",
        "wf/a/../../../x",
        "wf/./a/x",
        ".ringops/a/b",
        "wf/job.yaml",
        "Wf/a/x",
        "wf/a/x y",
        "wf//a",
    ] {
        let err = dir
            .apply(&batch("d1", &[("wf/a/ok.yaml", "ok\n"), (bad, "x\n")]))
            .unwrap_err();
        assert!(
            matches!(&err, WorkerDirError::InvalidPath { path, .. } if path == bad),
            "{bad}: {err:?}"
        );
        assert!(err.is_user_error());
        assert!(
            err.to_string().contains(&dir.root().display().to_string()),
            "{err}"
        );
        assert!(!dir.root().exists(), "nothing written for {bad}");
    }
}

#[test]
fn a_wrong_checksum_or_mode_is_refused_before_anything_is_written() {
    let (_tmp, dir) = setup();
    let mut b = batch("d1", &[("wf/a/ok.yaml", "ok\n"), ("wf/b/job.yaml", "x\n")]);
    b.files.get_mut("wf/b/job.yaml").unwrap().sha256 = sha256_hex(b"y\n");
    let err = dir.apply(&b).unwrap_err();
    assert!(
        matches!(&err, WorkerDirError::ShaMismatch { path, .. } if path == "wf/b/job.yaml"),
        "{err:?}"
    );
    assert!(!err.is_user_error() && !err.is_transient());
    assert!(!dir.root().exists());
    let mut b = batch("d1", &[("wf/a/ok.yaml", "ok\n")]);
    b.files.get_mut("wf/a/ok.yaml").unwrap().mode = 0o4755;
    assert!(matches!(
        dir.apply(&b).unwrap_err(),
        WorkerDirError::InvalidMode { mode: 0o4755, .. }
    ));
    assert!(!dir.root().exists());
}

#[test]
fn an_artifact_where_another_needs_a_folder_is_refused() {
    let (_tmp, dir) = setup();
    let err = dir
        .apply(&batch(
            "d1",
            &[("wf/a/conf", "x\n"), ("wf/a/conf/b", "y\n")],
        ))
        .unwrap_err();
    assert!(
        matches!(&err, WorkerDirError::Collision { file, .. } if file == "wf/a/conf"),
        "{err:?}"
    );
    assert!(!dir.root().exists());
}

#[test]
fn a_generation_other_than_planned_is_refused() {
    let (_tmp, dir) = setup();
    dir.apply(&batch("d1", &[("wf/a/job.yaml", "a\n")]))
        .unwrap();
    let mut b = batch("d2", &[("wf/a/job.yaml", "b\n")]);
    b.expected_generation = Some(0);
    let err = dir.apply(&b).unwrap_err();
    assert!(
        matches!(
            err,
            WorkerDirError::GenerationMismatch {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_user_error());
    assert_eq!(read(&dir, "wf/a/job.yaml"), "a\n");
    b.expected_generation = Some(1);
    assert_eq!(dir.apply(&b).unwrap().generation, 2);
}

#[test]
fn an_unmanaged_file_in_the_way_is_refused_unless_identical() {
    let (_tmp, dir) = setup();
    fs::create_dir_all(dir.root().join("wf/a")).unwrap();
    fs::write(dir.root().join("wf/a/job.yaml"), "mine\n").unwrap();
    fs::write(dir.root().join("wf/a/same.yaml"), "same\n").unwrap();
    fs::set_permissions(
        dir.root().join("wf/a/same.yaml"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = dir
        .apply(&batch("d1", &[("wf/a/job.yaml", "x\n")]))
        .unwrap_err();
    assert!(matches!(err, WorkerDirError::InTheWay { .. }), "{err:?}");
    assert_eq!(read(&dir, "wf/a/job.yaml"), "mine\n");
    // A file ringops would write byte for byte is taken over without a write.
    let applied = dir
        .apply(&batch("d1", &[("wf/a/same.yaml", "same\n")]))
        .unwrap();
    assert!(applied.written.is_empty());
    assert_eq!(applied.generation, 1);
    assert!(
        dir.inventory()
            .unwrap()
            .managed
            .contains_key("wf/a/same.yaml")
    );
}

#[test]
fn a_record_naming_paths_outside_is_refused_as_damaged() {
    let (tmp, dir) = setup();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    dir.apply(&batch("d1", &[("wf/a/job.yaml", "a\n")]))
        .unwrap();
    let record = dir.root().join(".ringops/managed.json");
    let text = fs::read_to_string(&record)
        .unwrap()
        .replace("wf/a/job.yaml", "../victim");
    fs::write(&record, text).unwrap();
    let err = dir.apply(&batch("d2", &[])).unwrap_err();
    assert!(matches!(err, WorkerDirError::Corrupt { .. }), "{err:?}");
    assert!(matches!(
        dir.inventory().unwrap_err(),
        WorkerDirError::Corrupt { .. }
    ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn a_second_writer_is_told_the_directory_is_busy() {
    let (_tmp, dir) = setup();
    dir.apply(&batch("d1", &[("wf/a/job.yaml", "a\n")]))
        .unwrap();
    let held = File::open(dir.root().join(".ringops/lock")).unwrap();
    held.try_lock().unwrap();
    let err = dir.apply(&batch("d2", &[])).unwrap_err();
    assert!(matches!(err, WorkerDirError::Busy { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(dir.inventory().is_ok(), "readers take no lock");
    drop(held);
    dir.apply(&batch("d2", &[])).unwrap();
}

#[test]
fn a_link_at_the_records_folder_is_refused() {
    let (tmp, dir) = setup();
    fs::create_dir_all(dir.root()).unwrap();
    symlink(tmp.path(), dir.root().join(".ringops")).unwrap();
    let err = dir
        .apply(&batch("d1", &[("wf/a/job.yaml", "a\n")]))
        .unwrap_err();
    assert!(matches!(err, WorkerDirError::InTheWay { .. }), "{err:?}");
    assert!(!tmp.path().join("managed.json").exists());
}
