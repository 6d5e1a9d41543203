//! `ringops apply` end to end on the example fleet: real Git repository, real worker
//! directories and SQLite state in temp folders, the real binary.

mod common;

use common::{FLEET, Fleet};
use ringops::adapters::lock::WriterLock;
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn apply_writes_every_worker_records_and_then_has_nothing_to_do() {
    let fleet = Fleet::new();
    let first = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        first
            .expect(0)
            .stdout
            .contains("Deployment d-000001 is Active on ring dev (3 of 3 workers changed)"),
        "{}",
        first.stdout
    );
    let job = fleet
        .worker("edge-dev-1")
        .join("invoices/ingest/source.yaml");
    assert!(read(&job).contains("worker: edge-dev-1"));
    assert!(
        fleet
            .worker("core-dev-1")
            .join(".ringops/managed.json")
            .is_file()
    );
    let again = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        again.expect(0).stdout.ends_with("Nothing to apply.\n"),
        "{}",
        again.stdout
    );
}

#[test]
fn hot_edits_show_as_drift_and_apply_reverts_them_leaving_unmanaged_files() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let job = fleet
        .worker("core-dev-1")
        .join("invoices/archive.store/writer.ini");
    let original = read(&job);
    std::fs::write(&job, "hot edit\n").expect("edit");
    let mine = fleet
        .worker("core-dev-1")
        .join("invoices/archive.store/notes.txt");
    std::fs::write(&mine, "keep me\n").expect("write");

    let plan = fleet.run(&["plan", "--ring", "dev", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&plan.expect(0).stdout).expect("JSON");
    let worker = &doc["workers"][0];
    assert_eq!(worker["worker"], "core-dev-1");
    assert_eq!(
        worker["actions"][0]["path"],
        "invoices/archive.store/writer.ini"
    );
    assert_eq!(worker["actions"][0]["drift"], "edited");
    assert_eq!(worker["actions"][0]["why"], serde_json::json!([]));
    assert_eq!(
        worker["unmanaged"],
        serde_json::json!(["invoices/archive.store/notes.txt"])
    );

    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert_eq!(read(&job), original, "the hot edit is reverted");
    assert_eq!(read(&mine), "keep me\n", "the unmanaged file is left alone");
}

#[test]
fn a_removed_workflow_is_pruned_from_the_workers() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let reports = fleet.worker("core-dev-1").join("reports");
    assert!(reports.is_dir());
    std::fs::remove_file(fleet.repo.path().join(FLEET).join("workflows/reports.yaml")).expect("rm");
    fleet.repo.commit("drop reports");
    let plan = fleet.run(&["plan", "--ring", "dev"]);
    assert!(
        plan.expect(0).stdout.contains("  - reports/"),
        "{}",
        plan.stdout
    );
    let apply = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        apply
            .expect(0)
            .stdout
            .contains("Deployment d-000002 is Active"),
        "{}",
        apply.stdout
    );
    assert!(!reports.exists(), "the job folders are gone");
}

#[test]
fn apply_without_yes_off_a_terminal_changes_nothing() {
    let fleet = Fleet::new();
    let run = fleet.run(&["apply", "--ring", "dev"]);
    assert!(
        run.expect(1).stderr.contains("pass --yes"),
        "{}",
        run.stderr
    );
    assert!(!fleet.worker("core-dev-1").exists());
}

#[test]
fn a_second_writer_is_refused_naming_the_first() {
    let fleet = Fleet::new();
    let _held =
        WriterLock::acquire(fleet.state.path(), "test holding the lock", false).expect("lock");
    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        run.expect(1).stderr.contains("test holding the lock"),
        "{}",
        run.stderr
    );
    assert!(!fleet.worker("core-dev-1").exists());
}

#[test]
fn a_failing_worker_fails_the_deployment_and_restores_the_others() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let before = read(
        &fleet
            .worker("core-dev-1")
            .join("invoices/archive.store/writer.ini"),
    );
    fleet.repo.edit(
        &format!("{FLEET}/modules/archive.yaml"),
        "format: parquet",
        "format: avro",
    );
    fleet.repo.commit("avro");
    // A folder of someone else's files where one of edge-dev-1's artifacts goes makes
    // it fail; the workers switch together, so core-dev-* switch and are put back.
    let blocked = fleet
        .worker("edge-dev-1")
        .join("invoices/ingest/source.yaml");
    std::fs::remove_file(&blocked).expect("rm");
    std::fs::create_dir(&blocked).expect("mkdir");
    std::fs::write(blocked.join("theirs.txt"), "not ringops'\n").expect("write");

    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let err = &run.expect(1).stderr;
    assert!(
        err.contains("deployment d-000002 failed") && err.contains("edge-dev-1"),
        "{err}"
    );
    let after = read(
        &fleet
            .worker("core-dev-1")
            .join("invoices/archive.store/writer.ini"),
    );
    assert_eq!(
        after, before,
        "core-dev-1 is back on the previous deployment"
    );
    assert!(before.contains("parquet"));
    let show = fleet.run(&["show", "d-000002"]);
    let out = &show.expect(0).stdout;
    assert!(
        out.contains("core-dev-1") && out.contains("Restored"),
        "{out}"
    );
}
