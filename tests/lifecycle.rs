//! The life of a ring through the real binary: drift and `drift --fix`, rollback (also
//! after the Git history is rewritten), saved plans and their optimistic checks,
//! `clone`, `dir:` targets, unreachable workers and waiting for the writer lock.

mod common;

use common::{Background, FLEET, Fleet};
use ringops::adapters::lock::WriterLock;
use std::path::Path;

const WRITER_INI: &str = "invoices/archive.store/writer.ini";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under a folder (its `.ringops/` records left out), with its content.
fn snapshot_dir(root: &Path) -> Vec<(String, Vec<u8>)> {
    common::worker_files(root).into_iter().collect()
}

/// Commits a change of the archive module's format (touches core-dev-1's writer.ini).
fn change_format(fleet: &Fleet, to: &str) -> String {
    let file = format!("{FLEET}/modules/archive.yaml");
    let text = fleet.repo.read(&file);
    let from = ["parquet", "avro", "orc"]
        .into_iter()
        .find(|f| text.contains(&format!("format: {f}")))
        .expect("a format");
    fleet
        .repo
        .edit(&file, &format!("format: {from}"), &format!("format: {to}"));
    fleet.repo.commit(&format!("format {to}"))
}

/// Stable text for snapshots: the temp folders and commit ids vary.
fn stable(text: &str, fleet: &Fleet) -> String {
    let state = fleet.state.path().display().to_string();
    let mut out = text.replace(&state, "[STATE]");
    for commit in fleet.repo.git(&["rev-list", "--all"]).lines() {
        out = out
            .replace(commit, "[COMMIT]")
            .replace(&commit[..12], "[COMMIT]");
    }
    out
}

#[test]
fn a_hot_edit_is_drift_in_plan_and_drift_and_drift_fix_restores_it() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let file = fleet.worker("core-dev-1").join(WRITER_INI);
    let deployed = read(&file);
    std::fs::write(&file, deployed.replace("parquet", "csv")).expect("hot edit");
    let unmanaged = fleet.worker("core-dev-1").join("invoices/notes.txt");
    std::fs::write(&unmanaged, "mine\n").expect("unmanaged file");

    let plan = fleet.run(&["plan", "--ring", "dev", "--detailed-exitcode"]);
    let out = &plan.expect(2).stdout;
    assert!(out.contains("drift: edited on the worker"), "{out}");
    assert!(
        out.contains("= invoices/notes.txt (unmanaged: left alone)"),
        "{out}"
    );

    let drift = fleet.run(&["drift", "--ring", "dev", "--detailed-exitcode"]);
    insta::assert_snapshot!("drift-edited", stable(&drift.expect(2).stdout, &fleet));
    let json = fleet.run(&["drift", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.expect(0).stdout).expect("json");
    assert_eq!(doc["rings"][0]["workers"][0]["files"][0]["how"], "edited");

    let fix = fleet.run(&["drift", "--fix"]);
    assert!(
        fix.expect(0).stdout.contains("fixed: restored"),
        "{}",
        fix.stdout
    );
    assert_eq!(read(&file), deployed, "restored byte for byte");
    assert_eq!(
        read(&unmanaged),
        "mine\n",
        "unmanaged files are never touched"
    );
    fleet.run(&["drift", "--detailed-exitcode"]).expect(0);
    let show = fleet.run(&["show", "d-000001"]);
    assert!(
        show.expect(0).stdout.contains("drift fixed on core-dev-1"),
        "{}",
        show.stdout
    );
}

#[test]
fn drift_never_diffs_an_artifact_holding_secrets() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let secret = std::fs::read_to_string(common::project().join("examples/secrets/ingest-token"))
        .expect("demo secret");
    let file = fleet.worker("edge-dev-1").join("telemetry/collect/token");
    let text = read(&file);
    assert!(
        text.contains(secret.trim()),
        "the artifact holds the secret"
    );
    std::fs::write(&file, format!("{text}# edited\n")).expect("edit");
    let drift = fleet.run(&["drift", "--format", "json"]);
    let out = &drift.expect(0).stdout;
    assert!(out.contains("holds sensitive values"), "{out}");
    assert!(!out.contains(secret.trim()), "the secret leaked: {out}");
    let plan = fleet.run(&["plan", "--ring", "dev", "--format", "json"]);
    assert!(!plan.expect(0).stdout.contains(secret.trim()));
}

#[test]
fn rollback_restores_the_previous_files_even_after_history_is_rewritten() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let before: Vec<_> = ["core-dev-1", "core-dev-2", "edge-dev-1"]
        .map(|w| snapshot_dir(&fleet.worker(w)))
        .into();
    change_format(&fleet, "avro");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert!(read(&fleet.worker("core-dev-1").join(WRITER_INI)).contains("avro"));

    // The bad commit and the good one vanish from Git: rollback needs neither.
    fleet
        .repo
        .git(&["checkout", "--quiet", "--orphan", "other"]);
    fleet.repo.git(&["rm", "-r", "--quiet", "--cached", "."]);
    fleet.repo.commit("unrelated history");
    fleet.repo.git(&["branch", "-D", "main"]);
    fleet
        .repo
        .git(&["reflog", "expire", "--expire=now", "--all"]);
    fleet.repo.git(&["gc", "--quiet", "--prune=now"]);

    let missing_reason = fleet.run(&["rollback", "--ring", "dev", "--reason", " ", "--yes"]);
    assert!(missing_reason.expect(1).stderr.contains("--reason"));
    let rollback = fleet.run(&[
        "rollback",
        "--ring",
        "dev",
        "--reason",
        "avro broke",
        "--yes",
    ]);
    assert!(
        rollback
            .expect(0)
            .stdout
            .contains("Deployment d-000003 is Active"),
        "{}",
        rollback.stdout
    );
    let after: Vec<_> = ["core-dev-1", "core-dev-2", "edge-dev-1"]
        .map(|w| snapshot_dir(&fleet.worker(w)))
        .into();
    assert_eq!(after, before, "every worker is byte-identical to d-000001");
    let show = fleet.run(&["show", "d-000003", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&show.expect(0).stdout).expect("json");
    assert_eq!(doc["deployment"]["rollback_of"], "d-000001");
    assert_eq!(doc["deployment"]["reason"], "avro broke");
    let old = fleet.run(&["show", "d-000001", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&old.expect(0).stdout).expect("json");
    assert_eq!(
        doc["deployment"]["state"], "Superseded",
        "old records stay as they were"
    );
}

#[test]
fn rollback_to_names_a_deployment_and_refuses_bad_ones() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let nothing = fleet.run(&["rollback", "--ring", "dev", "--reason", "r", "--yes"]);
    assert!(
        nothing
            .expect(1)
            .stderr
            .contains("no earlier successful deployment")
    );
    change_format(&fleet, "avro");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    change_format(&fleet, "orc");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    for (to, message) in [
        ("d-000003", "is the Active deployment"),
        ("d-000042", "no deployment d-000042"),
        ("nope", "not a deployment id"),
    ] {
        let run = fleet.run(&[
            "rollback", "--ring", "dev", "--to", to, "--reason", "r", "--yes",
        ]);
        assert!(
            run.expect(1).stderr.contains(message),
            "{to}: {}",
            run.stderr
        );
    }
    let staging = fleet.run(&[
        "rollback", "--ring", "staging", "--to", "d-000001", "--reason", "r", "--yes",
    ]);
    assert!(
        staging.expect(1).stderr.contains("deployed ring `dev`"),
        "{}",
        staging.stderr
    );
    fleet
        .run(&[
            "rollback", "--ring", "dev", "--to", "d-000001", "--reason", "r", "--yes",
        ])
        .expect(0);
    assert!(read(&fleet.worker("core-dev-1").join(WRITER_INI)).contains("parquet"));

    // The rolled-back commit is pinned until someone resumes the ring.
    let status = fleet.run(&["status", "--ring", "dev"]);
    let head = fleet.repo.git(&["rev-parse", "HEAD"]);
    let pinned = format!("the daemon will not deploy {} again", &head[..12]);
    assert!(
        status.expect(0).stdout.contains(&pinned),
        "{}",
        status.stdout
    );
    let resume = fleet.run(&["resume", "dev"]);
    assert!(resume.expect(0).stdout.contains("Ring dev resumed"));
    let status = fleet.run(&["status", "--ring", "dev"]);
    assert!(
        !status.expect(0).stdout.contains("pinned"),
        "{}",
        status.stdout
    );
    let again = fleet.run(&["resume", "dev"]);
    assert!(again.expect(0).stdout.contains("is not pinned"));
}

#[test]
fn a_saved_plan_applies_exactly_or_is_refused_naming_what_changed() {
    let fleet = Fleet::new();
    let plan_file = fleet.state.path().join("dev.plan.json");
    let plan_path = plan_file.to_str().expect("UTF-8");
    fleet
        .run(&["plan", "--ring", "dev", "--out", plan_path])
        .expect(0);
    let saved: serde_json::Value = serde_json::from_str(&read(&plan_file)).expect("json");
    assert_eq!(saved["kind"], "ringops-saved-plan");
    fleet.run(&["apply", plan_path]).expect(0);

    // Stale: applied already (the Active deployment and every worker changed).
    let again = fleet.run(&["apply", plan_path]);
    let err = stable(&again.expect(1).stderr, &fleet);
    insta::assert_snapshot!("saved-plan-stale", err);

    // Stale: a worker was edited by hand after planning.
    change_format(&fleet, "avro");
    fleet
        .run(&["plan", "--ring", "dev", "--out", plan_path])
        .expect(0);
    let file = fleet
        .worker("edge-dev-1")
        .join("invoices/ingest/source.yaml");
    std::fs::write(&file, "edited\n").expect("edit");
    let before = snapshot_dir(&fleet.worker("core-dev-1"));
    let refused = fleet.run(&["apply", plan_path]);
    assert!(
        refused
            .expect(1)
            .stderr
            .contains("worker edge-dev-1 changed since the plan"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        snapshot_dir(&fleet.worker("core-dev-1")),
        before,
        "nothing applied"
    );

    // Stale: the branch moved after planning.
    fleet
        .run(&["plan", "--ring", "dev", "--out", plan_path])
        .expect(0);
    change_format(&fleet, "orc");
    let moved = fleet.run(&["apply", plan_path]);
    assert!(
        moved.expect(1).stderr.contains("`HEAD` now resolves to"),
        "{}",
        moved.stderr
    );

    // Fresh: applies without asking, exactly what was planned.
    fleet
        .run(&["plan", "--ring", "dev", "--out", plan_path])
        .expect(0);
    fleet.run(&["apply", plan_path]).expect(0);
    assert!(read(&fleet.worker("core-dev-1").join(WRITER_INI)).contains("orc"));

    std::fs::write(&plan_file, "{\"kind\": 1}").expect("garbage");
    let garbage = fleet.run(&["apply", plan_path]);
    assert!(
        garbage.expect(1).stderr.contains("not a saved plan"),
        "{}",
        garbage.stderr
    );
}

#[test]
fn clone_copies_to_an_unmanaged_path_that_apply_leaves_alone() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let clone = fleet.run(&[
        "clone",
        "--worker",
        "core-dev-1",
        WRITER_INI,
        "mine/store/writer.ini",
    ]);
    clone.expect(0);
    let copy = fleet.worker("core-dev-1").join("mine/store/writer.ini");
    let original = read(&fleet.worker("core-dev-1").join(WRITER_INI));
    assert_eq!(read(&copy), original);
    change_format(&fleet, "avro");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert_eq!(read(&copy), original, "reconciliation left the copy alone");
    fleet.run(&["drift", "--detailed-exitcode"]).expect(0);
    for (from, to, message) in [
        (WRITER_INI, "mine/store/writer.ini", "already exists"),
        (WRITER_INI, "../escape", "must stay inside"),
        (WRITER_INI, "../../escape-dir/sub/x.ini", "must stay inside"),
        (WRITER_INI, ".ringops/new/x.ini", "reserves"),
        (WRITER_INI, ".ringops/managed.json", "reserves"),
        (
            "invoices/nothing/here",
            "x/y/z",
            "not a file ringops manages",
        ),
        (
            WRITER_INI,
            "invoices/archive.seal/processor.toml",
            "managed by ringops",
        ),
    ] {
        let run = fleet.run(&["clone", "--worker", "core-dev-1", from, to]);
        assert!(
            run.expect(1).stderr.contains(message),
            "{to}: {}",
            run.stderr
        );
    }
    assert!(!fleet.state.path().join("workers/escape-dir").exists());
    assert!(!fleet.state.path().join("escape-dir").exists());
    assert!(!fleet.worker("core-dev-1").join(".ringops/new").exists());
    let nobody = fleet.run(&["clone", "--worker", "nobody", WRITER_INI, "a/b/c"]);
    assert!(
        nobody
            .expect(1)
            .stderr
            .contains("in no ring's Active deployment")
    );
}

/// Commits `target: "dir:<folder>"` for worker core-dev-2.
fn place_core_dev_2(fleet: &Fleet, folder: &Path, message: &str) {
    fleet.repo.edit(
        &format!("{FLEET}/groups.yaml"),
        "labels: {region: us}}\n    - {name: core-stg-1",
        &format!(
            "labels: {{region: us}}, target: \"dir:{}\"}}\n    - {{name: core-stg-1",
            folder.display()
        ),
    );
    fleet.repo.commit(message);
}

#[test]
fn dir_targets_are_written_there_and_an_unreachable_one_stops_apply() {
    let fleet = Fleet::new();
    let elsewhere = tempfile::tempdir().expect("dir");
    let target = elsewhere.path().join("core-dev-2");
    place_core_dev_2(&fleet, &target, "core-dev-2 elsewhere");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert!(target.join(".ringops/managed.json").is_file());
    assert!(!fleet.worker("core-dev-2").exists());
    let status = fleet.run(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.expect(0).stdout).expect("json");
    let workers = doc["rings"][0]["workers"].as_array().expect("workers");
    assert!(
        workers.iter().all(|w| w["sync"] == "in_sync"),
        "{workers:?}"
    );

    // A file where the worker's folder should be: it cannot be read.
    std::fs::remove_dir_all(&target).expect("rm");
    std::fs::write(&target, "not a folder").expect("block");
    change_format(&fleet, "avro");
    let plan = fleet.run(&["plan", "--ring", "dev"]);
    let out = &plan.expect(0).stdout;
    assert!(out.contains("worker core-dev-2 is unreachable"), "{out}");
    let before = snapshot_dir(&fleet.worker("core-dev-1"));
    let apply = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        apply
            .expect(1)
            .stderr
            .contains("worker core-dev-2 is unreachable"),
        "{}",
        apply.stderr
    );
    assert_eq!(
        snapshot_dir(&fleet.worker("core-dev-1")),
        before,
        "nothing changed"
    );
}

#[test]
fn a_worker_folder_that_is_a_symbolic_link_is_refused_and_where_it_points_is_untouched() {
    let fleet = Fleet::new();
    let elsewhere = tempfile::tempdir().expect("dir");
    let (real, link) = (elsewhere.path().join("real"), elsewhere.path().join("link"));
    std::fs::create_dir(&real).expect("real folder");
    std::os::unix::fs::symlink(&real, &link).expect("link");
    place_core_dev_2(&fleet, &link, "core-dev-2 behind a link");
    let apply = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let expected = format!(
        "worker core-dev-2 is unreachable (worker core-dev-2: worker directory {} is a symbolic link (to {}), which ringops does not follow; give the worker the real folder",
        link.display(),
        real.display()
    );
    assert!(
        apply.expect(1).stderr.contains(&expected),
        "{}",
        apply.stderr
    );
    assert_eq!(snapshot_dir(&real), Vec::new(), "written through the link");
    assert!(
        !fleet.worker("core-dev-1").exists(),
        "another worker was written"
    );
}

#[test]
fn a_job_folder_replaced_by_a_symbolic_link_is_drift_that_drift_fix_repairs() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let job = fleet.worker("core-dev-1").join("invoices/archive.store");
    let deployed = snapshot_dir(&job);
    let outside = tempfile::tempdir().expect("dir");
    std::fs::write(outside.path().join("writer.ini"), "someone else's\n").expect("write");
    let before = snapshot_dir(outside.path());
    std::fs::remove_dir_all(&job).expect("rm -r");
    std::os::unix::fs::symlink(outside.path(), &job).expect("link");

    let drift = fleet.run(&["drift", "--detailed-exitcode"]);
    let out = &drift.expect(2).stdout;
    assert!(
        out.contains("replaced by a symbolic link on its path")
            && out.contains("invoices/archive.store/writer.ini"),
        "{out}"
    );
    fleet.run(&["drift", "--fix"]).expect(0);
    let meta = std::fs::symlink_metadata(&job).expect("job folder");
    assert!(meta.is_dir(), "the link is still there");
    assert_eq!(snapshot_dir(&job), deployed);
    assert_eq!(
        snapshot_dir(outside.path()),
        before,
        "written through the link"
    );
    fleet.run(&["drift", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_writer_with_wait_goes_on_once_the_lock_is_released() {
    let fleet = Fleet::new();
    let held =
        WriterLock::acquire(fleet.state.path(), "test holding the lock", false).expect("lock");
    let mut child =
        Background::spawn(&mut fleet.command(&["apply", "--ring", "dev", "--yes", "--wait"]));
    // It found the lock held and says it waits for it: only then is "nothing yet" news.
    child.wait_stderr("waiting for the writer lock (pid ");
    assert!(
        child.stderr().contains("test holding the lock"),
        "{}",
        child.stderr()
    );
    assert!(child.running(), "it waits");
    assert!(!fleet.worker("core-dev-1").exists());
    drop(held);
    let status = child.wait_exit();
    assert!(status.success(), "{}", child.stderr());
    assert!(fleet.worker("core-dev-1").join(WRITER_INI).is_file());
}

/// A tmpfs of `size` mounted over `dir` until dropped: a disk that can really fill up.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts it; `None` (after [`common::skip`], which fails under CI) when this
    /// process may not mount (not root, or a container without the capability).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !common::require_tool("mount", "mount") {
            return None;
        }
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            common::skip("needs to mount a tmpfs (root with CAP_SYS_ADMIN)");
            return None;
        }
        Some(Tmpfs(dir.to_owned()))
    }

    /// Writes one file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("filler")).expect("filler");
        let block = vec![0u8; 1 << 16];
        loop {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn with_the_state_disk_full_history_status_and_show_still_work() {
    let fleet = Fleet::new();
    let Some(disk) = Tmpfs::mount(fleet.state.path(), "64m") else {
        return;
    };
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    disk.fill();
    let history = fleet.run(&["history"]);
    assert!(
        history.expect(0).stdout.contains("d-000001"),
        "{}",
        history.stdout
    );
    let status = fleet.run(&["status"]);
    let out = &status.expect(0).stdout;
    assert!(
        out.contains("ring dev: d-000001 Active") && out.contains("core-dev-1  in sync"),
        "{out}"
    );
    let show = fleet.run(&["show", "d-000001"]);
    assert!(
        show.expect(0).stdout.contains("state:        Active"),
        "{}",
        show.stdout
    );
    // A writer fails, saying why, and changes nothing.
    change_format(&fleet, "avro");
    let before = snapshot_dir(&fleet.worker("core-dev-1"));
    let apply = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert_ne!(apply.code, 0, "{}", apply.stdout);
    assert!(
        apply
            .stderr
            .to_lowercase()
            .contains("no space left on device"),
        "{}",
        apply.stderr
    );
    assert_eq!(snapshot_dir(&fleet.worker("core-dev-1")), before);
}
