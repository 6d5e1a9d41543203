//! `history`, `show` and `status` through the binary, over a state built with the store
//! API (fixed clock) and worker directories written with `WorkerDir::apply`. No Git
//! repository anywhere: `--repo` points at a folder that does not exist, to prove these
//! commands never open one.

mod common;

use common::World;

use DeploymentState::*;
use ringops::adapters::lock::WriterLock;
use ringops::adapters::store::{ManualClock, Store};
use ringops::adapters::worker_dir::{Batch, FileSpec, WorkerDir};
use ringops::model::deployment::{
    DeploymentId, DeploymentState, NewDeployment, Timestamp, WorkerOutcome, WrittenArtifact,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const START: i64 = 1_700_000_000;

fn new(ring: &str, commit: char, reason: &str) -> NewDeployment {
    NewDeployment {
        ring: ring.to_owned(),
        commit: commit.to_string().repeat(40),
        tree: format!("{commit}0").repeat(20),
        fingerprint: format!("{commit}f").repeat(32),
        actor: "alice".to_owned(),
        reason: reason.to_owned(),
        rollback_of: None,
    }
}

fn content(path: &str) -> FileSpec {
    let mode = if path.ends_with(".sh") { 0o755 } else { 0o644 };
    FileSpec::new(format!("# {path}\n").into_bytes(), mode)
}

/// Writes `paths` to a local worker's directory and returns them as recorded artifacts.
fn write_worker(
    state: &Path,
    worker: &str,
    id: DeploymentId,
    paths: &[&str],
) -> Vec<WrittenArtifact> {
    let files: BTreeMap<String, FileSpec> = paths
        .iter()
        .map(|p| ((*p).to_owned(), content(p)))
        .collect();
    let batch = Batch {
        deployment: id.to_string(),
        expected_generation: None,
        files: files.clone(),
    };
    WorkerDir::new(state.join("workers").join(worker))
        .apply(&batch)
        .expect("apply worker dir");
    files
        .into_iter()
        .map(|(path, f)| WrittenArtifact {
            path,
            sha256: f.sha256,
            mode: f.mode,
        })
        .collect()
}

/// Walks a new deployment to Active, a few seconds per step.
fn activate(store: &mut Store, clock: &ManualClock, new: &NewDeployment) -> DeploymentId {
    let id = store.create_deployment(new).expect("create").id;
    for (state, message) in [
        (Building, "compiling"),
        (Deploying, "writing workers"),
        (Validating, "switched"),
    ] {
        clock.advance(Duration::from_secs(2));
        store.transition(id, state, message).expect("transition");
    }
    clock.advance(Duration::from_secs(2));
    store.activate(id, "active").expect("activate");
    id
}

/// dev: d-000001 (Superseded) then d-000003 (Active, on w1 in sync, w2 drifted, w3 with
/// no directory); prod: d-000002 (Failed).
fn populated() -> World {
    let world = World::new();
    let state = world.state();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(START)));
    let mut store = Store::open_with_clock(&state, clock.clone()).expect("open store");

    let first = activate(&mut store, &clock, &new("dev", 'a', "first rollout"));
    let w1 = write_worker(&state, "w1", first, &["etl/load/job.yaml"]);
    store.record_artifacts(first, "w1", &w1).expect("artifacts");
    store
        .record_worker(first, "w1", WorkerOutcome::Applied, "1 written")
        .expect("worker");

    clock.advance(Duration::from_secs(60));
    let failed = store
        .create_deployment(&new("prod", 'b', "promote to prod"))
        .expect("create")
        .id;
    clock.advance(Duration::from_secs(1));
    store
        .transition(failed, Building, "compiling")
        .expect("building");
    store
        .transition(failed, Failed, "worker p1: permission denied")
        .expect("fail");

    clock.advance(Duration::from_secs(60));
    let id = store
        .create_deployment(&new("dev", 'c', "add extract job\nticket OPS-7"))
        .expect("create")
        .id;
    for (state, message) in [(Building, "compiling"), (Deploying, "writing 3 workers")] {
        clock.advance(Duration::from_secs(1));
        store.transition(id, state, message).expect("transition");
    }
    let w1 = write_worker(&state, "w1", id, &["etl/load/job.yaml"]);
    let w2 = write_worker(
        &state,
        "w2",
        id,
        &["etl/extract/job.yaml", "etl/extract/run.sh"],
    );
    let w3 = vec![WrittenArtifact {
        path: "etl/report/job.yaml".to_owned(),
        sha256: "0".repeat(64),
        mode: 0o644,
    }];
    for (worker, artifacts, outcome, message) in [
        ("w1", &w1, WorkerOutcome::Unchanged, ""),
        ("w2", &w2, WorkerOutcome::Applied, "2 written"),
        ("w3", &w3, WorkerOutcome::Applied, "1 written"),
    ] {
        store
            .record_artifacts(id, worker, artifacts)
            .expect("artifacts");
        store
            .record_worker(id, worker, outcome, message)
            .expect("worker");
    }
    clock.advance(Duration::from_secs(1));
    store.note(id, "w1 already up to date").expect("note");
    store
        .transition(id, Validating, "switched")
        .expect("validating");
    clock.advance(Duration::from_secs(1));
    store
        .activate(id, "active; superseded d-000001")
        .expect("activate");

    // Hand edits after the deployment: drift on w2, an unmanaged file on w1.
    let workers = state.join("workers");
    std::fs::write(workers.join("w2/etl/extract/run.sh"), "echo hot fix\n").expect("hot edit");
    std::fs::write(workers.join("w1/etl/load/notes.txt"), "mine\n").expect("unmanaged");
    world
}

#[test]
fn history_lists_newest_first() {
    let world = populated();
    let run = world.ringops(&["history"]);
    run.expect(0);
    insta::assert_snapshot!("history-text", run.stdout);

    let run = world.ringops(&["history", "--ring", "dev", "--limit", "1"]);
    run.expect(0);
    insta::assert_snapshot!("history-dev-limit-1", run.stdout);

    let doc = world.json(&["history", "--format", "json"]);
    assert_eq!(doc["format_version"], 1);
    let deployments = doc["deployments"].as_array().expect("deployments");
    let ids: Vec<&str> = deployments
        .iter()
        .map(|d| d["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["d-000003", "d-000002", "d-000001"]);
    let newest = &deployments[0];
    assert_eq!(newest["ring"], "dev");
    assert_eq!(newest["state"], "Active");
    assert_eq!(newest["commit"], "c".repeat(40));
    assert_eq!(newest["reason"], "add extract job\nticket OPS-7");
    assert_eq!(newest["created_at"], "2023-11-14T22:15:29.000Z");
    assert_eq!(deployments[1]["error"], "worker p1: permission denied");
    assert_eq!(deployments[2]["state"], "Superseded");

    let run = world.ringops(&["history", "--limit", "0"]);
    run.expect(1);
    assert!(run.stderr.contains("--limit"), "{}", run.stderr);

    let doc = world.json(&["history", "--ring", "prod", "--format", "json"]);
    assert_eq!(doc["deployments"].as_array().map(Vec::len), Some(1));
}

#[test]
fn show_prints_the_whole_record() {
    let world = populated();
    let run = world.ringops(&["show", "d-000003"]);
    run.expect(0);
    insta::assert_snapshot!("show-text", run.stdout);

    let doc = world.json(&["show", "d-3", "--format", "json"]);
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["deployment"]["id"], "d-000003");
    assert_eq!(doc["deployment"]["state"], "Active");
    let states: Vec<&Value> = doc["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["state"])
        .collect();
    assert_eq!(
        states,
        [
            "Queued",
            "Building",
            "Deploying",
            "",
            "Validating",
            "Active"
        ]
        .map(|s| if s.is_empty() {
            Value::Null
        } else {
            Value::from(s)
        })
        .iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(doc["workers"][1]["worker"], "w2");
    assert_eq!(doc["workers"][1]["outcome"], "Applied");
    let w2 = doc["artifacts"]["w2"].as_array().expect("w2 artifacts");
    assert_eq!(w2.len(), 2);
    assert_eq!(w2[1]["path"], "etl/extract/run.sh");
    assert_eq!(w2[1]["mode"], 0o755);
    assert_eq!(w2[1]["sha256"].as_str().map(str::len), Some(64));

    let failed = world.json(&["show", "d-000002", "--format", "json"]);
    assert_eq!(
        failed["deployment"]["error"],
        "worker p1: permission denied"
    );
    assert_eq!(failed["workers"], Value::Array(vec![]));
}

#[test]
fn status_shows_sync_drift_and_unreachable_workers() {
    let world = populated();
    let run = world.ringops(&["status"]);
    run.expect(0);
    world
        .filters()
        .bind(|| insta::assert_snapshot!("status-text", run.stdout));

    let doc = world.json(&["status", "--ring", "dev", "--format", "json"]);
    assert_eq!(doc["format_version"], 1);
    let rings = doc["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 1);
    let dev = &rings[0];
    assert_eq!(dev["active"]["id"], "d-000003");
    assert_eq!(dev["latest"], Value::Null);
    let workers = &dev["workers"];
    assert_eq!(workers[0]["worker"], "w1");
    assert_eq!(workers[0]["sync"], "in_sync");
    assert_eq!(workers[1]["sync"], "drifted");
    assert_eq!(workers[1]["files"], 2);
    assert_eq!(
        workers[1]["drifted"],
        serde_json::json!([{"path": "etl/extract/run.sh", "how": "edited"}])
    );
    assert_eq!(workers[2]["sync"], "unreachable");
    assert_eq!(doc["writer"], serde_json::json!({"lock": "free"}));

    let prod = world.json(&["status", "--ring", "prod", "--format", "json"]);
    assert_eq!(prod["rings"][0]["active"], Value::Null);
    assert_eq!(prod["rings"][0]["latest"]["state"], "Failed");
}

#[test]
fn readers_do_not_wait_for_the_writer_and_name_it() {
    let world = populated();
    let lock = WriterLock::acquire(&world.state(), "apply --ring dev", false).expect("lock");
    let doc = world.json(&["status", "--format", "json"]);
    let writer = &doc["writer"];
    assert_eq!(writer["lock"], "held");
    assert_eq!(writer["pid"], std::process::id());
    assert_eq!(writer["command"], "apply --ring dev");
    assert_eq!(writer["since"], lock.holder().since.as_str());
    let run = world.ringops(&["status"]);
    run.expect(0);
    let expected = format!(
        "writer lock: held by pid {} running `apply --ring dev` since ",
        std::process::id()
    );
    assert!(run.stdout.contains(&expected), "{}", run.stdout);
    world.ringops(&["history"]).expect(0);
    world.ringops(&["show", "d-000001"]).expect(0);
}

#[test]
fn unknown_and_malformed_ids_are_user_errors() {
    let world = populated();
    let run = world.ringops(&["show", "d-000099"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        "error: no deployment d-000099 (see `ringops history`)\n"
    );
    for bad in ["42", "d-4x", "deploy-1"] {
        let run = world.ringops(&["show", bad]);
        run.expect(1);
        assert_eq!(
            run.stderr,
            format!("error: `{bad}` is not a deployment id; ids look like d-000042\n")
        );
        assert_eq!(run.stdout, "");
    }
}

#[test]
fn a_missing_state_has_no_deployments_and_stays_missing() {
    let world = World::new();
    let run = world.ringops(&["history"]);
    run.expect(0);
    assert_eq!(run.stdout, "no deployments yet\n");
    let run = world.ringops(&["history", "--ring", "dev"]);
    assert_eq!(run.stdout, "no deployments of ring dev yet\n");
    let doc = world.json(&["history", "--format", "json"]);
    assert_eq!(
        doc,
        serde_json::json!({"format_version": 1, "deployments": []})
    );
    let run = world.ringops(&["status"]);
    run.expect(0);
    assert_eq!(run.stdout, "no deployments yet\nwriter lock: free\n");
    let doc = world.json(&["status", "--format", "json"]);
    assert_eq!(doc["rings"], Value::Array(vec![]));
    let run = world.ringops(&["show", "d-000001"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        "error: no deployment d-000001 (see `ringops history`)\n"
    );
    assert!(!world.state().exists(), "reading created the state folder");
}
