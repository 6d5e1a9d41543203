//! Rings carry every commit: a commit that changes only a later ring (a production
//! value, a production worker, a new ring after production) still moves through dev
//! and staging, recorded there as changing nothing on their workers, and reaches the
//! ring it changes, with the real binary and the real daemon. Also what `status` says
//! of rings never deployed and of a canary waiting to go on.

mod common;

use common::Run;
use common::daemon::Daemon;
use common::promotion::{RINGS, World, deployment_id, start_daemon};
use std::collections::BTreeMap;

const GROUPS: &str = "examples/fleet/groups.yaml";

/// The last production worker of the core group as the fleet lists it.
const CORE_PROD_3: &str =
    "    - {name: core-prod-3, ring: production, address: 10.0.3.23, labels: {region: us}}\n";

/// Files of every worker whose name starts with `prefix`, by worker.
fn files(world: &World, prefix: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    world.workers(prefix).into_iter().collect()
}

/// The newest deployment of `ring` as `history --format json` gives it.
fn newest(world: &World, ring: &str) -> serde_json::Value {
    let run = world.run(&[
        "history", "--ring", ring, "--format", "json", "--limit", "1",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&run.expect(0).stdout).expect("JSON");
    doc["deployments"][0].clone()
}

/// Asserts that the run recorded a deployment of `ring` that changed nothing on its
/// workers and is Active.
fn assert_unchanged(run: &Run, ring: &str) {
    let said = format!("is Active on ring {ring}: no changes on this ring's workers");
    assert!(run.stdout.contains(&said), "{}{}", run.stdout, run.stderr);
}

/// Promotes staging (`--wait`: a daemon may hold the writer lock for a moment).
fn promote_staging(world: &World) -> Run {
    let run = world.run(&["promote", "staging", "--wait"]);
    run.expect(0);
    run
}

/// Promotes production and has alice and bob approve it; the last approval's output.
fn promote_and_approve_production(world: &World) -> Run {
    let id = deployment_id(&world.run(&["promote", "production", "--wait"]));
    world
        .as_approver("approve", &id, "alice", &["--wait"])
        .expect(0);
    let last = world.as_approver("approve", &id, "bob", &["--wait"]);
    last.expect(0);
    last
}

/// Commits `message` and waits until the daemon recorded the head in dev as changing
/// nothing there.
fn commit_and_wait_for_dev(world: &World, daemon: &Daemon, message: &str) -> String {
    let head = world.fleet.repo.commit(message);
    daemon.wait_until("dev records the new commit", || {
        let d = newest(world, "dev");
        d["commit"] == head.as_str() && d["state"] == "Active"
    });
    let d = newest(world, "dev");
    assert_eq!(d["unchanged"], true, "{d}");
    head
}

/// A production value: dev and staging carry it unchanged, production gets it through
/// its approvals and canary.
fn a_production_value(world: &World, daemon: &Daemon) {
    world.fleet.repo.edit(
        RINGS,
        "values: {log_level: warn, max_retries: 5}",
        "values: {log_level: error, max_retries: 5}",
    );
    let (dev, staging) = (files(world, "core-dev"), files(world, "core-stg"));
    let probes = world.health_log().len();
    let head = commit_and_wait_for_dev(world, daemon, "production logs errors only");
    assert_unchanged(&promote_staging(world), "staging");
    assert_eq!(
        world.health_log().len(),
        probes,
        "a change of nothing was probed"
    );
    let approved = promote_and_approve_production(world);
    assert!(
        approved.stdout.contains("canary healthy"),
        "{}",
        approved.stdout
    );
    world
        .run(&["promote", "production", "--continue", "--wait"])
        .expect(0);
    assert_eq!(newest(world, "production")["commit"], head.as_str());
    let ini = world
        .fleet
        .worker("core-prod-2")
        .join("invoices/archive.store/writer.ini");
    let text = std::fs::read_to_string(&ini).expect("writer.ini");
    assert!(text.contains("log_level = error"), "{text}");
    assert_eq!(files(world, "core-dev"), dev, "dev's workers changed");
    assert_eq!(
        files(world, "core-stg"),
        staging,
        "staging's workers changed"
    );
}

/// A production worker: production's rollout writes it (the group's jobs spread anew).
fn a_production_worker(world: &World, daemon: &Daemon) {
    let added = CORE_PROD_3
        .replace("core-prod-3", "core-prod-4")
        .replace(".23", ".24");
    world
        .fleet
        .repo
        .edit(GROUPS, CORE_PROD_3, &format!("{CORE_PROD_3}{added}"));
    let head = commit_and_wait_for_dev(world, daemon, "a fourth core production worker");
    assert_unchanged(&promote_staging(world), "staging");
    promote_and_approve_production(world);
    world
        .run(&["promote", "production", "--continue", "--wait"])
        .expect(0);
    assert!(world.holds("core-prod-4"), "the new worker holds nothing");
    let active = newest(world, "production");
    assert_eq!(active["commit"], head.as_str(), "{active}");
    assert_eq!(active["state"], "Active", "{active}");
}

/// A new ring after production: every ring before it carries the commit unchanged
/// (production's approvals still hold it), then the new ring is promoted from production.
fn a_ring_after_production(world: &World, daemon: &Daemon) {
    let ring = "\n---\napiVersion: ringops/v1\nkind: Ring\nmetadata: {name: edge-lab}\n\
                spec:\n  promotesFrom: production\n  values: {log_level: warn, max_retries: 5}\n";
    let mut rings = world.fleet.repo.read(RINGS);
    rings.push_str(ring);
    world.fleet.repo.write(RINGS, &rings);
    let edge_prod_3 =
        "    - {name: edge-prod-3, ring: production, address: 10.0.3.13, labels: {region: us}}\n";
    let edge_lab =
        "    - {name: edge-lab-1, ring: edge-lab, address: 10.0.4.11, labels: {region: eu}}\n";
    let core_lab = [
        "    - {name: core-lab-1, ring: edge-lab, address: 10.0.4.21, labels: {region: eu}}\n",
        "    - {name: core-lab-2, ring: edge-lab, address: 10.0.4.22, labels: {region: us}}\n",
    ]
    .concat();
    let repo = &world.fleet.repo;
    repo.edit(GROUPS, edge_prod_3, &format!("{edge_prod_3}{edge_lab}"));
    repo.edit(GROUPS, CORE_PROD_3, &format!("{CORE_PROD_3}{core_lab}"));
    let production = files(world, "core-prod");
    let head = commit_and_wait_for_dev(world, daemon, "a lab ring after production");
    let status = world.run(&["status"]).expect(0).stdout.clone();
    assert!(status.contains("ring edge-lab: never deployed"), "{status}");
    assert_unchanged(&promote_staging(world), "staging");
    let approved = promote_and_approve_production(world);
    assert_unchanged(&approved, "production");
    assert_eq!(files(world, "core-prod"), production, "production changed");
    let lab = world.run(&["promote", "edge-lab", "--wait"]);
    lab.expect(0);
    assert!(world.holds("core-lab-1"), "{}", lab.stdout);
    assert_eq!(newest(world, "edge-lab")["commit"], head.as_str());
}

#[test]
fn commits_that_change_only_later_rings_reach_them_through_every_ring() {
    let world = World::new("", "");
    world.release_production();
    let daemon = start_daemon(&world, "200ms");
    daemon.wait_ready();
    a_production_value(&world, &daemon);
    a_production_worker(&world, &daemon);
    a_ring_after_production(&world, &daemon);
    let history = world
        .run(&["history", "--ring", "staging"])
        .expect(0)
        .stdout
        .clone();
    let marked = history
        .lines()
        .filter(|l| l.contains("(no changes on this ring's workers)"))
        .count();
    assert_eq!(marked, 3, "{history}");
}

#[test]
fn apply_records_a_commit_that_changes_nothing_on_dev_and_show_says_so() {
    let world = World::new("", "");
    world.fleet.repo.edit(
        RINGS,
        "values: {log_level: info, max_retries: 3}",
        "values: {log_level: error, max_retries: 3}",
    );
    let head = world.fleet.repo.commit("staging logs errors only");
    let dev = files(&world, "core-dev");
    let run = world.run(&["apply", "--ring", "dev", "--yes"]);
    run.expect(0);
    assert_unchanged(&run, "dev");
    assert_eq!(files(&world, "core-dev"), dev);
    let id = deployment_id(&run);
    let show = world.show(&id);
    assert!(
        show.contains("no changes on this ring's workers: the ring already had this desired state"),
        "{show}"
    );
    assert!(show.contains("core-dev-1  Unchanged"), "{show}");
    let again = world.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        again.expect(0).stdout.contains("Nothing to apply."),
        "{}",
        again.stdout
    );
    // Staging now sees its own change in the commit dev ran.
    let staging = world.run(&["promote", "staging"]);
    staging.expect(0);
    assert!(
        staging
            .stdout
            .contains("is Active on ring staging (3 batch(es))"),
        "{}",
        staging.stdout
    );
    assert_eq!(newest(&world, "staging")["commit"], head.as_str());
    assert_eq!(newest(&world, "staging")["unchanged"], false);
}

#[test]
fn status_shows_rings_never_deployed_and_a_canary_waiting_to_go_on() {
    let world = World::new("", "");
    let before = world.run(&["status"]).expect(0).stdout.clone();
    assert!(before.contains("ring staging: never deployed"), "{before}");
    assert!(
        before.contains("ring production: never deployed"),
        "{before}"
    );
    world.release_production();
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let id = world.canary_production();
    let status = world
        .run(&["status", "--ring", "production"])
        .expect(0)
        .stdout
        .clone();
    assert!(
        status.contains(&format!("latest: {id} Deploying at "))
            && status.contains("paused after its canary; `ringops promote production --continue`"),
        "{status}"
    );
    let canary = format!("core-prod-1  switched to {id} (");
    assert!(status.contains(&canary), "{status}");
    assert!(
        status.contains("waiting for the rollout to go on"),
        "{status}"
    );
    assert!(!status.contains("drifted"), "{status}");
    assert!(status.contains("core-prod-2  in sync ("), "{status}");
    let doc = world.run(&["status", "--ring", "production", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&doc.expect(0).stdout).expect("JSON");
    let ring = &doc["rings"][0];
    assert_eq!(ring["waiting"], "continue", "{doc}");
    let workers = ring["workers"].as_array().expect("workers");
    let canary = workers
        .iter()
        .find(|w| w["worker"] == "core-prod-1")
        .expect("canary");
    assert_eq!(canary["sync"], "waiting", "{doc}");
    assert_eq!(canary["deployment"], id.as_str(), "{doc}");

    // A real edit of the canary's files is drift from the rollout's files.
    let ini = world
        .fleet
        .worker("core-prod-1")
        .join("invoices/archive.store/writer.ini");
    std::fs::write(&ini, "hot edit\n").expect("hot edit");
    let status = world
        .run(&["status", "--ring", "production"])
        .expect(0)
        .stdout
        .clone();
    assert!(status.contains("core-prod-1  drifted (1 file)"), "{status}");
}

/// Commits a change of production's values only: nothing changes on dev or staging.
fn production_only_commit(world: &World) -> String {
    world.fleet.repo.edit(
        RINGS,
        "values: {log_level: warn, max_retries: 5}",
        "values: {log_level: error, max_retries: 5}",
    );
    world.fleet.repo.commit("production logs errors only")
}

fn writer_ini(world: &World, worker: &str) -> String {
    let ini = world
        .fleet
        .worker(worker)
        .join("invoices/archive.store/writer.ini");
    std::fs::read_to_string(ini).expect("writer.ini")
}

#[test]
fn a_rollback_after_a_commit_that_changed_nothing_goes_back_to_other_files() {
    let world = World::new("", "");
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    production_only_commit(&world);
    assert_unchanged(&world.run(&["apply", "--ring", "dev", "--yes"]), "dev");
    assert!(writer_ini(&world, "core-dev-1").contains("format = avro"));
    let back = world.run(&["rollback", "--ring", "dev", "--reason", "bad avro", "--yes"]);
    back.expect(0);
    assert!(back.stdout.contains("d-000001"), "{}", back.stdout);
    assert!(writer_ini(&world, "core-dev-1").contains("format = parquet"));
}

#[test]
fn a_paused_ring_holds_a_promotion_that_changes_nothing_until_resumed() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    production_only_commit(&world);
    assert_unchanged(&world.run(&["apply", "--ring", "dev", "--yes"]), "dev");
    world
        .run(&["pause", "staging", "--reason", "incident"])
        .expect(0);
    let held = world.run(&["promote", "staging"]);
    assert!(
        held.expect(0)
            .stdout
            .contains("ring paused, continue with `ringops resume staging`"),
        "{}",
        held.stdout
    );
    let id = deployment_id(&held);
    assert_ne!(world.state_of(&id), "Active");
    let resumed = world.run(&["resume", "staging"]);
    assert_unchanged(&resumed, "staging");
    assert_eq!(world.state_of(&id), "Active");
}

#[test]
fn a_drifted_ring_gets_a_real_rollout_not_a_record_of_nothing() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    let ini = world
        .fleet
        .worker("core-stg-1")
        .join("invoices/archive.store/writer.ini");
    let deployed = std::fs::read_to_string(&ini).expect("writer.ini");
    std::fs::write(&ini, "hot edit\n").expect("hot edit");
    production_only_commit(&world);
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let run = world.run(&["promote", "staging"]);
    run.expect(0);
    assert!(
        !run.stdout.contains("no changes on this ring's workers"),
        "{}",
        run.stdout
    );
    assert_eq!(newest(&world, "staging")["unchanged"], false);
    assert_eq!(std::fs::read_to_string(&ini).expect("writer.ini"), deployed);
}

#[test]
fn a_queued_promotion_of_nothing_is_abandoned_when_a_rollback_changed_the_ring() {
    let world = World::new("", "");
    world.release_production();
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    world.release_production();
    assert!(writer_ini(&world, "core-prod-2").contains("format = avro"));
    // A change of dev's values: nothing changes on staging or production.
    world.fleet.repo.edit(
        RINGS,
        "values: {log_level: debug, max_retries: 1}",
        "values: {log_level: debug, max_retries: 2}",
    );
    world.fleet.repo.commit("dev retries twice");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert_unchanged(&world.run(&["promote", "staging"]), "staging");
    let id = deployment_id(&world.run(&["promote", "production"]));
    let rollback = [
        "rollback",
        "--ring",
        "production",
        "--reason",
        "avro is bad",
        "--yes",
    ];
    world.run(&rollback).expect(0);
    assert!(writer_ini(&world, "core-prod-2").contains("format = parquet"));
    world.as_approver("approve", &id, "alice", &[]).expect(0);
    let last = world.as_approver("approve", &id, "bob", &[]);
    last.expect(1);
    assert!(
        last.stderr
            .contains("the ring's Active deployment changed since (a rollback?); promote again"),
        "{}",
        last.stderr
    );
    assert_eq!(world.state_of(&id), "Failed");
    assert!(writer_ini(&world, "core-prod-2").contains("format = parquet"));
}
