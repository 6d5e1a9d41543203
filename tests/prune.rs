//! `history --prune --older-than DURATION` through the binary: over a state aged with the
//! store API and a [`ManualClock`] (old records from 2023, recent ones from an hour ago),
//! and over deployments made by the real `ringops apply` on the example fleet.
//!
//! Pruning only hides: `show` still finds a pruned deployment and shows when it was
//! pruned. A ring's Active deployment and the last one before it that was Active are
//! never pruned; a mistyped duration or a held writer lock changes nothing.

mod common;

use DeploymentState::*;
use common::{Background, Repo, Run, World, project};
use ringops::adapters::lock::WriterLock;
use ringops::adapters::store::{ManualClock, Store, StoreReader};
use ringops::model::deployment::{
    DeploymentId, DeploymentState, Drift, DriftKind, NewDeployment, Timestamp,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2023-11-14T22:13:20Z: far more than 30 days before any run of these tests.
const START: i64 = 1_700_000_000;

/// What prune tests read back besides the command's output.
impl World {
    /// The ids `history` lists, newest first.
    fn history_ids(&self) -> Vec<String> {
        ids(&self.json(&["history", "--format", "json"])["deployments"])
    }

    /// Every deployment, pruned or not, with its `expires_at`; and the drift events
    /// history still shows. Read with the library, so it proves what is stored.
    fn stored(&self) -> (Vec<(DeploymentId, Option<Timestamp>)>, usize) {
        let reader = StoreReader::open(&self.state()).expect("open state");
        let all = reader
            .history_with_pruned(None, 1000)
            .expect("history with pruned")
            .into_iter()
            .map(|d| (d.id, d.expires_at))
            .collect();
        let drift = reader.drift_events(None, 1000).expect("drift events").len();
        (all, drift)
    }
}

/// The `id` of each element of a JSON array of deployments.
fn ids(deployments: &Value) -> Vec<String> {
    deployments
        .as_array()
        .expect("an array of deployments")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

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

/// Walks a deployment from Queued through `path`, a second per step.
fn walk(
    store: &mut Store,
    clock: &ManualClock,
    new: &NewDeployment,
    path: &[DeploymentState],
) -> DeploymentId {
    let id = store.create_deployment(new).expect("create").id;
    for &state in path {
        clock.advance(Duration::from_secs(1));
        store
            .transition(id, state, &format!("to {state}"))
            .expect("transition");
    }
    id
}

const TO_ACTIVE: [DeploymentState; 4] = [Building, Deploying, Validating, Active];

fn drift(ring: &str, worker: &str) -> Drift {
    Drift {
        ring: ring.to_owned(),
        worker: worker.to_owned(),
        path: "etl/load/job.yaml".to_owned(),
        kind: DriftKind::Edited,
        summary: "content changed".to_owned(),
    }
}

/// Now, from the system clock the binary also reads.
fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    Timestamp(i64::try_from(since.as_millis()).expect("fits"))
}

/// Old records (2023), a minute apart:
/// - dev: d-000001 Superseded, d-000002 Failed, d-000003 Superseded (the last one
///   before the Active one), d-000004 Active;
/// - prod: d-000005 Active, its only deployment;
/// - staging: d-000006 Active, d-000007 RolledBack without ever being Active;
/// - two drift events.
///
/// Recent records (an hour ago): dev d-000008 Failed, one drift event.
fn aged() -> World {
    let world = World::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(START)));
    let mut store = Store::open_with_clock(&world.state(), clock.clone()).expect("open store");
    let minute = || clock.advance(Duration::from_secs(60));
    walk(&mut store, &clock, &new("dev", 'a', "first"), &TO_ACTIVE);
    minute();
    let failed = [Building, Failed];
    walk(&mut store, &clock, &new("dev", 'b', "broken"), &failed);
    minute();
    walk(&mut store, &clock, &new("dev", 'c', "second"), &TO_ACTIVE);
    minute();
    walk(&mut store, &clock, &new("dev", 'd', "third"), &TO_ACTIVE);
    minute();
    walk(&mut store, &clock, &new("prod", 'e', "promote"), &TO_ACTIVE);
    minute();
    walk(
        &mut store,
        &clock,
        &new("staging", 'f', "stage"),
        &TO_ACTIVE,
    );
    minute();
    let rolled_back = [Building, Deploying, RollingBack, RolledBack];
    walk(
        &mut store,
        &clock,
        &new("staging", '9', "bad"),
        &rolled_back,
    );
    store
        .record_drift(&[drift("dev", "w1"), drift("dev", "w2")])
        .expect("old drift");

    clock.set(now().minus(Duration::from_secs(3600)));
    walk(&mut store, &clock, &new("dev", '8', "recent"), &failed);
    store
        .record_drift(&[drift("dev", "w1")])
        .expect("new drift");
    world
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn pruned_records_leave_history_but_show_still_finds_them() {
    let world = aged();
    let run = world.ringops(&["history", "--prune", "--older-than", "30d"]);
    run.expect(0);
    insta::assert_snapshot!("prune-text", run.stdout);

    assert_eq!(
        world.history_ids(),
        strings(&["d-000008", "d-000006", "d-000005", "d-000004", "d-000003"]),
        "history keeps the recent, the Active and the last before Active of each ring"
    );
    let (stored, drift) = world.stored();
    assert_eq!(stored.len(), 8, "pruning deletes nothing");
    assert_eq!(drift, 1, "the recent drift event stays");

    let show = world.ringops(&["show", "d-000001"]);
    assert!(
        show.expect(0)
            .stdout
            .contains("\n  pruned from history at "),
        "{}",
        show.stdout
    );
    let doc = world.json(&["show", "d-000002", "--format", "json"]);
    assert_eq!(doc["deployment"]["state"], "Failed");
    let expires = doc["deployment"]["expires_at"]
        .as_str()
        .expect("expires_at");
    assert!(expires.ends_with('Z'), "{expires}");
    let kept = world.json(&["show", "d-000003", "--format", "json"]);
    assert_eq!(kept["deployment"]["expires_at"], Value::Null);

    let again = world.ringops(&["history", "--prune", "--older-than", "720h"]);
    assert_eq!(
        again.expect(0).stdout,
        "nothing to prune: no finished deployment or drift event is older than 30days\n"
    );
    assert_eq!(
        world.stored(),
        (stored, drift),
        "a second prune changes nothing"
    );
}

#[test]
fn prune_as_json_names_the_deployments_and_counts_drift() {
    let world = aged();
    let doc = world.json(&[
        "history",
        "--prune",
        "--older-than",
        "30d",
        "--format",
        "json",
    ]);
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["older_than_seconds"], 30 * 86_400);
    assert_eq!(doc["drift_events"], 2);
    let deployments = &doc["deployments"];
    assert_eq!(
        ids(deployments),
        strings(&["d-000001", "d-000002", "d-000007"])
    );
    for d in deployments.as_array().expect("array") {
        assert!(d["expires_at"].is_string(), "{d}");
    }

    let doc = world.json(&[
        "history",
        "--prune",
        "--older-than",
        "30d",
        "--format",
        "json",
    ]);
    assert_eq!(
        doc,
        serde_json::json!({"format_version": 1, "older_than_seconds": 2_592_000,
                           "deployments": [], "drift_events": 0})
    );
}

#[test]
fn the_active_and_the_last_before_it_are_never_pruned() {
    let world = aged();
    world
        .ringops(&["history", "--prune", "--older-than", "0s"])
        .expect(0);
    // Every finished record goes, the recent ones too, except per ring the Active one
    // and the newest that was Active before it (dev d-000003).
    assert_eq!(
        world.history_ids(),
        strings(&["d-000006", "d-000005", "d-000004", "d-000003"])
    );
    let status = world.json(&["status", "--format", "json"]);
    let active: Vec<&Value> = status["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|r| &r["active"]["id"])
        .collect();
    assert_eq!(active, ["d-000004", "d-000005", "d-000006"]);
    assert_eq!(world.stored().1, 0, "every drift event is old enough");
}

#[test]
fn a_bad_duration_is_a_user_error_and_changes_nothing() {
    let world = aged();
    let stored = world.stored();
    let before = common::files_under(&world.state());
    for bad in ["30", "30x", "thirty days", "soon", ""] {
        let run = world.ringops(&["history", "--prune", "--older-than", bad]);
        run.expect(1);
        assert!(
            run.stderr.contains(&format!(
                "invalid value '{bad}' for '--older-than <DURATION>'"
            )) && run.stderr.contains("e.g. 30d, 720h or 90min"),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
    }
    let run = world.ringops(&["history", "--prune", "--older-than", "30x"]);
    insta::assert_snapshot!("bad-duration", run.stderr);

    let run = world.ringops(&["history", "--older-than", "30d"]);
    assert!(run.expect(1).stderr.contains("--prune"), "{}", run.stderr);
    let run = world.ringops(&["history", "--prune"]);
    assert!(
        run.expect(1).stderr.contains("--older-than <DURATION>"),
        "{}",
        run.stderr
    );
    let run = world.ringops(&["history", "--wait"]);
    assert!(run.expect(1).stderr.contains("--prune"), "{}", run.stderr);
    for (flag, value) in [("--ring", "dev"), ("--limit", "5")] {
        let run = world.ringops(&["history", "--prune", "--older-than", "1d", flag, value]);
        assert!(
            run.expect(1).stderr.contains("cannot be used with"),
            "{}",
            run.stderr
        );
    }

    assert_eq!(common::files_under(&world.state()), before);
    assert_eq!(world.stored(), stored);
}

#[test]
fn a_held_lock_is_named_and_nothing_changes() {
    let world = aged();
    let stored = world.stored();
    let held = WriterLock::acquire(&world.state(), "apply --ring dev", false).expect("lock");
    let run = world.ringops(&["history", "--prune", "--older-than", "30d"]);
    let holder = format!(
        "another ringops is writing the state (pid {} running `apply --ring dev` since {}",
        std::process::id(),
        held.holder().since
    );
    assert!(run.expect(1).stderr.contains(&holder), "{}", run.stderr);
    assert!(run.stderr.contains("or wait for it"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(world.stored(), stored);
}

#[test]
fn wait_waits_for_the_holder_then_prunes() {
    let world = aged();
    let held = WriterLock::acquire(&world.state(), "apply --ring dev", false).expect("lock");
    let mut child = Background::spawn(&mut world.command(&[
        "history",
        "--prune",
        "--older-than",
        "30d",
        "--wait",
    ]));
    // It found the lock held and says it waits for it: only then is "nothing yet" news.
    child.wait_stderr("waiting for the writer lock (pid ");
    assert!(child.running(), "ringops did not wait: {}", child.stderr());
    assert_eq!(world.stored().1, 3, "nothing pruned while it waits");

    drop(held);
    let status = child.wait_exit();
    assert!(status.success(), "{status}: {}", child.stderr());
    let stdout = child.stdout();
    assert!(
        stdout.starts_with("pruned from history: 3 deployments and 2 drift events"),
        "{stdout}"
    );
}

/// Like every writer, prune first fails what a crashed writer left in progress; an old
/// one is then pruned with the rest.
#[test]
fn an_interrupted_deployment_is_failed_then_pruned() {
    let world = World::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(START)));
    let mut store = Store::open_with_clock(&world.state(), clock.clone()).expect("open store");
    walk(&mut store, &clock, &new("dev", 'a', "first"), &TO_ACTIVE);
    let stuck = [Building, Deploying];
    walk(&mut store, &clock, &new("dev", 'b', "crashed"), &stuck);
    drop(store);

    let run = world.ringops(&["history", "--prune", "--older-than", "30d"]);
    run.expect(0);
    assert_eq!(
        run.stderr,
        "note: deployment d-000002 of ring dev was interrupted; marked Failed\n"
    );
    assert!(
        run.stdout.contains("\nd-000002  dev   Failed  "),
        "{}",
        run.stdout
    );
    assert_eq!(world.history_ids(), strings(&["d-000001"]));
}

#[test]
fn without_a_state_there_is_nothing_to_prune_and_nothing_is_created() {
    let world = World::new();
    let run = world.ringops(&["history", "--prune", "--older-than", "30d"]);
    assert_eq!(
        run.expect(0).stdout,
        "nothing to prune: no finished deployment or drift event is older than 30days\n"
    );
    let doc = world.json(&[
        "history",
        "--prune",
        "--older-than",
        "1h",
        "--format",
        "json",
    ]);
    assert_eq!(doc["deployments"], Value::Array(vec![]));
    assert!(!world.state().exists(), "pruning created the state folder");
}

/// The example fleet in a Git repository, applied with the real binary.
struct Fleet {
    repo: Repo,
    state: tempfile::TempDir,
}

const FLEET: &str = "examples/fleet";

impl Fleet {
    fn new() -> Self {
        let repo = Repo::init();
        repo.copy_in(&project().join(FLEET), FLEET);
        repo.commit("example fleet");
        let state = tempfile::tempdir().expect("state dir");
        Fleet { repo, state }
    }

    fn run(&self, args: &[&str]) -> Run {
        let secrets = project().join("examples/secrets");
        let mut all: Vec<&str> = args.to_vec();
        let state = self.state.path().to_str().expect("UTF-8");
        all.extend(["--path", FLEET, "--state", state]);
        all.extend(["--secrets-dir", secrets.to_str().expect("UTF-8")]);
        self.repo.ringops(&all)
    }

    /// Commits a new archive format and applies it to dev.
    fn deploy_format(&self, from: &str, to: &str) {
        let archive = format!("{FLEET}/modules/archive.yaml");
        self.repo.edit(
            &archive,
            &format!("format: {from}"),
            &format!("format: {to}"),
        );
        self.repo.commit(to);
        self.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    }
}

#[test]
fn after_real_applies_only_the_active_and_the_one_before_it_stay() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    fleet.deploy_format("parquet", "avro");
    fleet.deploy_format("avro", "csv");

    let run = fleet.run(&["history", "--prune", "--older-than", "0s"]);
    let stdout = &run.expect(0).stdout;
    assert!(
        stdout.starts_with("pruned from history: 1 deployment and 0 drift events older than 0s\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nd-000001  dev   Superseded  "),
        "{stdout}"
    );

    let doc: Value =
        serde_json::from_str(&fleet.run(&["history", "--format", "json"]).expect(0).stdout)
            .expect("JSON");
    assert_eq!(ids(&doc["deployments"]), strings(&["d-000003", "d-000002"]));
    assert_eq!(doc["deployments"][0]["state"], "Active");
    assert_eq!(doc["deployments"][1]["state"], "Superseded");

    // The state stays usable by the writer that made it.
    let again = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    assert!(
        again.expect(0).stdout.ends_with("Nothing to apply.\n"),
        "{}",
        again.stdout
    );
}
