//! Promotion through the rings with the real binary: rolling batches with a command
//! health check, a canary paused until continued, approvals from tokens (distinct,
//! unknown, rejected, timed out), a window that holds a promotion, an emergency
//! promotion, a pause, an auto-revert that leaves every worker as it was, and the gate an
//! incoming commit cannot lower. Health endpoints are real HTTP servers on loopback.

mod common;

use common::promotion::{RINGS, World, deployment_id, sick_marker, start_daemon};
use common::{output, sha256_hex};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// Twice the approval timeout of [`queued_with_approval_timeout`].
const HOURS_2: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

#[test]
fn staging_rolls_out_two_workers_at_a_time_each_batch_checked() {
    let world = World::new("", "");
    let run = world.run(&["promote", "staging", "--reason", "weekly"]);
    run.expect(0);
    let id = deployment_id(&run);
    assert!(
        run.stdout
            .contains("is Active on ring staging (3 batch(es))"),
        "{}",
        run.stdout
    );
    let show = world.show(&id);
    let batch1 = show
        .find("batch 1/3 (core-stg-1, core-stg-2): healthy")
        .expect(&show);
    let switch2 = show
        .find("batch 2/3 (core-stg-3, edge-stg-1): switching")
        .expect(&show);
    assert!(
        batch1 < switch2,
        "batch 2 started before batch 1 was healthy:\n{show}"
    );
    assert!(show.contains("weekly (promotion of"), "{show}");
    let mut log = world.health_log();
    log.sort();
    assert_eq!(
        log,
        [
            "core-stg-1",
            "core-stg-2",
            "core-stg-3",
            "edge-stg-1",
            "edge-stg-2"
        ]
    );
    for name in [
        "core-stg-1",
        "core-stg-2",
        "core-stg-3",
        "edge-stg-1",
        "edge-stg-2",
    ] {
        assert!(world.holds(name), "{name} holds nothing");
    }
    // The same bundle again: nothing to promote.
    let again = world.run(&["promote", "staging"]);
    assert!(
        again.expect(0).stdout.contains("Nothing to promote"),
        "{}",
        again.stdout
    );
}

#[test]
fn an_unhealthy_batch_with_auto_revert_leaves_every_worker_byte_identical() {
    let world = World::new("", "  autoRevert: true\n");
    world.run(&["promote", "staging"]).expect(0);
    let before = world.workers("");
    // A new commit reaches dev; its promotion to staging fails in the second batch.
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let before_dev = world.workers("");
    assert_ne!(before, before_dev, "dev did not change");
    std::fs::write(sick_marker(&world, "edge-stg-2"), "").expect("marker");
    let run = world.run(&["promote", "staging"]);
    run.expect(1);
    assert!(run.stderr.contains("is RolledBack"), "{}", run.stderr);
    assert!(run.stderr.contains("edge-stg-2"), "{}", run.stderr);
    let staging_now: Vec<_> = world
        .workers("")
        .into_iter()
        .filter(|(n, _)| n.contains("-stg-"))
        .collect();
    let staging_before: Vec<_> = before_dev
        .into_iter()
        .filter(|(n, _)| n.contains("-stg-"))
        .collect();
    assert_eq!(
        staging_now, staging_before,
        "a staging worker differs after the revert"
    );
    let status = world
        .run(&["status", "--ring", "staging"])
        .expect(0)
        .stdout
        .clone();
    assert!(status.contains("RolledBack"), "{status}");
}

#[test]
fn an_unhealthy_batch_without_auto_revert_fails_and_leaves_the_ring_for_a_person() {
    let world = World::new("", "");
    std::fs::write(sick_marker(&world, "core-stg-1"), "").expect("marker");
    let run = world.run(&["promote", "staging"]);
    run.expect(1);
    assert!(
        run.stderr.contains("is Failed") && run.stderr.contains("core-stg-1"),
        "{}",
        run.stderr
    );
    // The first batch stays switched; the second never started.
    assert!(world.holds("core-stg-1") && world.holds("core-stg-2"));
    assert!(!world.holds("core-stg-3") && !world.holds("edge-stg-1") && !world.holds("edge-stg-2"));
}

#[test]
fn production_needs_two_distinct_approvers_then_pauses_after_its_canary() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    let run = world.run(&["promote", "production", "--reason", "release 7"]);
    run.expect(0);
    let id = deployment_id(&run);
    assert!(
        run.stdout.contains("Queued: awaiting approval (0 of 2"),
        "{}",
        run.stdout
    );
    assert!(world.workers("core-prod").is_empty());

    let unknown = world.as_approver("approve", &id, "mallory", &[]);
    unknown.expect(1);
    assert!(
        unknown.stderr.contains("does not belong to any approver"),
        "{}",
        unknown.stderr
    );
    assert!(
        !unknown.stderr.contains("mallory-token"),
        "{}",
        unknown.stderr
    );
    let first = world.as_approver("approve", &id, "alice", &[]);
    assert!(
        first.expect(0).stdout.contains("awaiting approval (1 of 2"),
        "{}",
        first.stdout
    );
    // The approver sees what they approve: the plan against the workers as they are.
    assert!(
        first
            .stdout
            .contains(&format!("Plan for ring production: the workers → {id}"))
            && first.stdout.contains("worker core-prod-1\n  + "),
        "{}",
        first.stdout
    );
    let again = world.as_approver("approve", &id, "alice", &[]);
    assert!(
        again.expect(0).stdout.contains("awaiting approval (1 of 2"),
        "{}",
        again.stdout
    );
    assert_eq!(world.state_of(&id), "Queued");

    // bob's token from the environment instead of a file.
    let mut approve = world.fleet.command(&["approve", &id]);
    approve
        .arg("--config")
        .arg(world.config.path().join("ringops.toml"))
        .env("RINGOPS_TOKEN", "bob-token");
    let second = output(&mut approve);
    second.expect(0);
    assert!(
        second
            .stdout
            .contains("1 of 4 batch(es) done; canary healthy"),
        "{}",
        second.stdout
    );
    assert!(world.holds("core-prod-1"), "the canary holds nothing");
    assert!(world.workers("edge-prod").is_empty() && !world.holds("core-prod-2"));
    let show = world.show(&id);
    assert!(
        show.contains("approved by alice") && show.contains("approved by bob"),
        "{show}"
    );

    let done = world.run(&["promote", "production", "--continue"]);
    done.expect(0);
    assert!(
        done.stdout
            .contains("is Active on ring production (4 batch(es))"),
        "{}",
        done.stdout
    );
    let production = world
        .workers("")
        .into_iter()
        .filter(|(n, _)| n.contains("-prod-"));
    assert_eq!(
        production.count(),
        6,
        "not every production worker holds its files"
    );
}

#[test]
fn a_rejection_fails_the_deployment_and_an_expired_wait_is_rejected() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    let id = deployment_id(&world.run(&["promote", "production"]));
    let no_reason = world.as_approver("reject", &id, "carol", &[]);
    no_reason.expect(1);
    world
        .as_approver("reject", &id, "carol", &["--reason", "freeze week"])
        .expect(0);
    assert_eq!(world.state_of(&id), "Failed");
    assert!(world.show(&id).contains("rejected by carol: freeze week"));
    let late = world.as_approver("approve", &id, "alice", &[]);
    late.expect(1);
    assert!(
        late.stderr.contains("not awaiting approval"),
        "{}",
        late.stderr
    );
}

/// A world whose production ring rejects a deployment that waited an hour without its
/// approvals, and a deployment of it queued. Nothing times out by itself while a test
/// runs; [`World::backdate`] moves the deployment past the hour.
fn queued_with_approval_timeout() -> (World, String) {
    let world = World::new("", "");
    // The approval timeout is part of the trusted definition: at the branch head.
    world.fleet.repo.edit(
        RINGS,
        "approvers: [alice, bob, carol]}",
        "approvers: [alice, bob, carol], timeout: 1h}",
    );
    world.fleet.repo.commit("approval timeout");
    let id = world.queue_production();
    (world, id)
}

#[test]
fn approvals_time_out() {
    let (world, id) = queued_with_approval_timeout();
    // Within the hour an approval counts (1 of 2) and the deployment waits on.
    let early = world.as_approver("approve", &id, "alice", &[]);
    early.expect(0);
    assert!(
        early.stdout.contains(&format!("Approved {id} as alice")),
        "{}",
        early.stdout
    );
    assert_eq!(world.state_of(&id), "Queued");
    world.backdate(&id, HOURS_2);
    let late = world.as_approver("approve", &id, "alice", &[]);
    late.expect(1);
    assert!(
        late.stderr.contains("approval timed out"),
        "{}",
        late.stderr
    );
    assert_eq!(world.state_of(&id), "Failed");
}

#[test]
fn an_approval_past_the_timeout_is_refused_even_when_it_would_complete_the_gate() {
    let (world, id) = queued_with_approval_timeout();
    world.as_approver("approve", &id, "alice", &[]).expect(0);
    world.backdate(&id, HOURS_2);
    let late = world.as_approver("approve", &id, "bob", &[]);
    late.expect(1);
    assert!(
        late.stderr.contains("approval timed out") && late.stderr.contains("not recorded"),
        "{}",
        late.stderr
    );
    assert_eq!(world.state_of(&id), "Failed");
    let show = world.show(&id);
    assert!(!show.contains("approved by bob"), "{show}");
    assert!(
        world.workers("core-prod").is_empty(),
        "a production worker was written"
    );
}

#[test]
fn a_closed_window_holds_a_promotion_and_an_emergency_bypasses_it() {
    // Never open: 30 February does not exist.
    let world = World::new("  window: {cron: \"0 0 30 2 *\", duration: 1m}\n", "");
    world.run(&["promote", "staging"]).expect(0);
    let run = world.run(&["promote", "production"]);
    let id = deployment_id(&run);
    world.as_approver("approve", &id, "alice", &[]).expect(0);
    let held = world.as_approver("approve", &id, "bob", &[]);
    held.expect(0);
    assert!(
        held.stdout.contains("waiting for the ring's window"),
        "{}",
        held.stdout
    );
    assert_eq!(world.state_of(&id), "Queued");
    world
        .run(&["fail", "production", "--reason", "hotfix instead"])
        .expect(0);

    let refused = world.emergency_promotion("bob", "CVE");
    refused.expect(1);
    assert!(
        refused
            .stderr
            .contains("bob may not promote with --emergency"),
        "{}",
        refused.stderr
    );
    // An emergency approver of other rings is not one of production's approvers.
    std::fs::write(world.token("dave"), "dave-token\n").expect("token");
    world.configure(&format!(
        "[[approvers]]\nname = \"dave\"\ntoken_sha256 = \"{}\"\nemergency = true\n",
        sha256_hex(b"dave-token")
    ));
    let outsider = world.emergency_promotion("dave", "CVE");
    outsider.expect(1);
    assert!(
        outsider.stderr.contains(
            "dave may not promote ring `production` with --emergency: not one of its approvers (alice, bob, carol)"
        ),
        "{}",
        outsider.stderr
    );
    let urgent = world.emergency_promotion("alice", "CVE-2026-1");
    urgent.expect(0);
    let id = deployment_id(&urgent);
    world
        .run(&["promote", "production", "--continue"])
        .expect(0);
    let show = world.show(&id);
    assert!(
        show.contains("EMERGENCY: CVE-2026-1") && show.contains("actor:        alice"),
        "{show}"
    );
    assert_eq!(world.state_of(&id), "Active");
}

#[test]
fn a_paused_ring_holds_its_rollout_until_resumed() {
    let world = World::new("", "");
    world
        .run(&["pause", "staging", "--reason", "incident 42"])
        .expect(0);
    let run = world.run(&["promote", "staging"]);
    run.expect(0);
    assert!(
        run.stdout.contains("0 of 3 batch(es) done; ring paused"),
        "{}",
        run.stdout
    );
    let id = deployment_id(&run);
    assert!(world.show(&id).contains("incident 42"));
    assert!(world.workers("core-stg").is_empty());
    let resumed = world.run(&["resume", "staging"]);
    resumed.expect(0);
    assert!(
        resumed.stdout.contains("is Active on ring staging"),
        "{}",
        resumed.stdout
    );
}

#[test]
fn a_paused_all_at_once_ring_refuses_apply_until_resumed() {
    let world = World::new("", "");
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world
        .run(&["pause", "dev", "--reason", "incident 43"])
        .expect(0);
    let before = world.workers("");
    let refused = world.run(&["apply", "--ring", "dev", "--yes"]);
    refused.expect(1);
    assert!(
        refused
            .stderr
            .contains("ring `dev` is paused (incident 43); `ringops resume dev` first"),
        "{}",
        refused.stderr
    );
    assert_eq!(world.workers(""), before, "a worker changed");
    world.run(&["resume", "dev"]).expect(0);
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    assert_ne!(
        world.workers(""),
        before,
        "nothing was deployed once resumed"
    );
}

#[test]
fn a_canary_that_turns_unhealthy_is_reverted() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    let before = world.workers("");
    world.endpoint.make_sick("core-prod-1");
    let id = deployment_id(&world.run(&["promote", "production"]));
    world.as_approver("approve", &id, "alice", &[]).expect(0);
    let run = world.as_approver("approve", &id, "bob", &[]);
    run.expect(1);
    assert!(
        run.stderr.contains("RolledBack") && run.stderr.contains("core-prod-1"),
        "{}",
        run.stderr
    );
    assert_eq!(
        world.workers(""),
        before,
        "a worker differs after the revert"
    );
}

#[test]
fn a_commit_cannot_lower_its_own_rings_approval_gate() {
    let world = World::new("", "");
    world.release_production();
    // A commit that drops production's gate and changes what production runs.
    world.fleet.repo.edit(
        RINGS,
        "  approvals: {required: 2, approvers: [alice, bob, carol]}\n",
        "",
    );
    world
        .fleet
        .repo
        .edit(RINGS, "log_level: warn", "log_level: error");
    world.archive_as_avro();
    world.fleet.repo.commit("no more approvals");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    world.run(&["promote", "staging"]).expect(0);
    let run = world.run(&["promote", "production"]);
    run.expect(0);
    assert!(
        run.stdout.contains("awaiting approval (0 of 2"),
        "the gate was lowered by the commit itself:\n{}",
        run.stdout
    );
}

#[test]
fn the_daemon_keeps_a_paused_canary_on_its_new_files_and_reverts_edits_to_them() {
    let world = World::new("", "");
    world.release_production();
    // A second release stops after its canary: core-prod-1 runs it, the rest the first.
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    world.canary_production();
    let canary = world.workers("core-prod-1");
    let others = world.workers("core-prod-2");

    let daemon = start_daemon(&world, "1h");
    daemon.wait_log_times("full drift scan done", 3);
    assert_eq!(
        world.workers("core-prod-1"),
        canary,
        "the canary was put back on the Active files"
    );
    assert_eq!(world.workers("core-prod-2"), others);

    let ini = world
        .fleet
        .worker("core-prod-1")
        .join("invoices/archive.store/writer.ini");
    let deployed = std::fs::read_to_string(&ini).expect("writer.ini");
    assert!(deployed.contains("format = avro"), "{deployed}");
    std::fs::write(&ini, "hot edit\n").expect("hot edit");
    daemon.wait_log_times("drift: ", 1);
    daemon.wait_log_times("full drift scan done", 6);
    assert_eq!(std::fs::read_to_string(&ini).expect("writer.ini"), deployed);
}

#[test]
fn apply_refuses_a_ring_that_promotes_from_another_or_is_gated_and_rolls_a_staged_one_in_batches() {
    let world = World::new("", "");
    for (ring, from) in [("staging", "dev"), ("production", "staging")] {
        let refused = world.run(&["apply", "--ring", ring, "--yes"]);
        refused.expect(1);
        let expected = format!(
            "ring `{ring}` receives only bundles that ring `{from}` ran (promotesFrom: {from}); \
             deploy it with `ringops promote {ring}` (in an emergency: `ringops promote {ring} \
             --emergency --reason ...`); nothing was changed"
        );
        assert!(refused.stderr.contains(&expected), "{}", refused.stderr);
    }
    assert!(world.workers("core-stg").is_empty() && world.workers("core-prod").is_empty());
    let history = world.run(&["history"]).expect(0).stdout.clone();
    assert!(
        !history.contains("staging") && !history.contains("production"),
        "{history}"
    );

    // Rings that promote from none: production's approvals still send it to `promote`;
    // staging is applied directly, batch by batch with its health check.
    world.fleet.repo.edit(RINGS, "  promotesFrom: dev\n", "");
    world
        .fleet
        .repo
        .edit(RINGS, "  promotesFrom: staging\n", "");
    world
        .fleet
        .repo
        .commit("staging and production promote from no ring");
    let refused = world.run(&["apply", "--ring", "production", "--yes"]);
    refused.expect(1);
    assert!(
        refused.stderr.contains(
            "ring `production` is gated (approvals); deploy it with `ringops promote production`"
        ),
        "{}",
        refused.stderr
    );
    let run = world.run(&["apply", "--ring", "staging", "--yes"]);
    run.expect(0);
    let id = deployment_id(&run);
    let show = world.show(&id);
    assert!(show.contains("batch 3/3 (edge-stg-2): healthy"), "{show}");
    assert_eq!(world.health_log().len(), 5);
}

/// A webhook receiver on loopback that keeps every body posted to it.
fn receiver() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                kept.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let mut out = stream;
            let _ = out.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

#[test]
fn every_state_a_promotion_enters_is_posted_to_the_webhook_and_slack() {
    let world = World::new("", "");
    let (hook, posted) = receiver();
    let (slack, said) = receiver();
    world.configure(&format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/deployments\"\n\
         [[notify]]\ntype = \"slack\"\nurl = \"http://127.0.0.1:{slack}/services/T0/B0/x\"\n"
    ));
    let id = deployment_id(&world.run(&["promote", "staging", "--reason", "weekly"]));
    let states: Vec<(String, String)> = posted
        .lock()
        .expect("lock")
        .iter()
        .map(|body| {
            let doc: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(doc["ring"], "staging", "{doc}");
            (
                doc["deployment"].as_str().unwrap_or_default().to_owned(),
                doc["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["Queued", "Building", "Deploying", "Validating", "Active"]
        .iter()
        .map(|s| (id.clone(), (*s).to_owned()))
        .collect();
    assert_eq!(states, want);
    let texts = said.lock().expect("lock").clone();
    assert_eq!(texts.len(), 5, "{texts:?}");
    assert!(
        texts
            .iter()
            .all(|t| t.contains("\"text\"") && t.contains(&id)),
        "{texts:?}"
    );
}

#[test]
fn the_daemon_rejects_a_promotion_whose_approvals_timed_out() {
    let (world, id) = queued_with_approval_timeout();
    assert_eq!(world.state_of(&id), "Queued");
    world.backdate(&id, HOURS_2);
    let daemon = start_daemon(&world, "200ms");
    daemon.wait_log_times("approval timed out", 1);
    assert_eq!(world.state_of(&id), "Failed");
    assert!(
        world
            .show(&id)
            .contains("approval timed out; rejected by the daemon")
    );
}

#[test]
fn a_ring_whose_source_is_unhealthy_is_not_promoted() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    std::fs::write(sick_marker(&world, "core-stg-3"), "").expect("marker");
    let run = world.run(&["promote", "production"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("cannot promote `production`: ring `staging` is not healthy: core-stg-3"),
        "{}",
        run.stderr
    );
    assert!(
        world
            .run(&["history", "--ring", "production"])
            .expect(0)
            .stdout
            .lines()
            .count()
            <= 1
    );
}

#[test]
fn the_daemon_posts_every_state_of_its_deployments() {
    let world = World::new("", "");
    let (hook, posted) = receiver();
    world.configure(&format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/deployments\"\n"
    ));
    let daemon = start_daemon(&world, "200ms");
    world.archive_as_avro();
    world.fleet.repo.commit("avro");
    daemon.wait_log_times("deployed deployment=", 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let states = loop {
        let states: Vec<String> = posted
            .lock()
            .expect("lock")
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b).expect("JSON")["state"].to_string()
            })
            .collect();
        if states.len() >= 5 || std::time::Instant::now() > deadline {
            break states;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        states,
        [
            "\"Queued\"",
            "\"Building\"",
            "\"Deploying\"",
            "\"Validating\"",
            "\"Active\""
        ]
    );
}

#[test]
fn failing_a_paused_canary_reverts_it() {
    let world = World::new("", "");
    let id = world.canary_production();
    assert!(world.holds("core-prod-1"), "the canary holds nothing");
    let run = world.run(&["fail", "production", "--reason", "canary looks wrong"]);
    run.expect(0);
    assert!(run.stdout.contains("is RolledBack"), "{}", run.stdout);
    assert!(!world.holds("core-prod-1"), "the canary kept the new files");
    assert!(world.show(&id).contains("canary looks wrong"));
}

#[test]
fn a_renamed_ring_cannot_take_a_gated_rings_workers_with_apply() {
    let world = World::new("", "");
    world.release_production();
    // On a side branch: production renamed prod2, its gate dropped.
    world.fleet.repo.git(&["checkout", "--quiet", "-b", "pr"]);
    let groups = world.fleet.repo.read("examples/fleet/groups.yaml");
    world.fleet.repo.write(
        "examples/fleet/groups.yaml",
        &groups.replace("ring: production", "ring: prod2"),
    );
    let rings = world.fleet.repo.read(RINGS);
    let rings = rings
        .replace("metadata: {name: production}", "metadata: {name: prod2}")
        .replace(
            "  approvals: {required: 2, approvers: [alice, bob, carol]}\n",
            "",
        );
    world.fleet.repo.write(RINGS, &rings);
    world.fleet.repo.commit("rename production");
    world.fleet.repo.git(&["checkout", "--quiet", "main"]);
    let before = world.workers("core-prod");
    let run = world.run(&["apply", "--ring", "prod2", "--rev", "pr", "--yes"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("ring `prod2` is new and would take worker")
            && run.stderr.contains("which ring `production` runs"),
        "{}",
        run.stderr
    );
    assert_eq!(world.workers("core-prod"), before);
}

#[test]
fn a_freeze_pushed_while_a_canary_waits_stops_it_from_going_on_until_lifted() {
    let world = World::new("", "");
    let id = world.canary_production();
    let before = world.workers("");
    world.freeze_production_at_the_head();

    let refused = world.run(&["promote", "production", "--continue"]);
    refused.expect(1);
    assert!(
        refused
            .stderr
            .contains(&format!("{id} of ring `production` does not go on now"))
            && refused.stderr.contains("frozen"),
        "{}",
        refused.stderr
    );
    assert_eq!(world.workers(""), before, "a worker changed");
    assert_eq!(world.state_of(&id), "Deploying");

    world.fleet.repo.edit(RINGS, "  freeze: true\n", "");
    world.fleet.repo.commit("incident over");
    world
        .run(&["promote", "production", "--continue"])
        .expect(0);
    assert_eq!(world.state_of(&id), "Active");
}

#[test]
fn a_rollback_to_an_older_commit_keeps_the_newer_gates() {
    let world = World::new("", "");
    world.run(&["promote", "staging"]).expect(0);
    // Staging gains an approval gate; promoted through the old (ungated) definition.
    world.fleet.repo.edit(
        RINGS,
        "  values: {log_level: info, max_retries: 3}\n",
        "  values: {log_level: info, max_retries: 3}\n  approvals: {required: 1, approvers: [carol]}\n",
    );
    world.archive_as_avro();
    world.fleet.repo.commit("staging needs carol");
    world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    world.run(&["promote", "staging"]).expect(0);

    // Back to the first commit, which had no approval gate.
    world
        .run(&[
            "rollback",
            "--ring",
            "staging",
            "--reason",
            "avro broke",
            "--yes",
        ])
        .expect(0);
    let held = world.run(&["promote", "staging"]);
    held.expect(0);
    assert!(
        held.stdout
            .contains("awaiting approval (0 of 1; approvers: carol)"),
        "the rollback brought back the older, ungated definition:\n{}",
        held.stdout
    );
}

/// Production released once (its gates trusted from that commit), a new bundle queued
/// for it awaiting approval, then a freeze of production pushed to the tracked head:
/// the queued deployment's id.
fn queued_then_frozen_at_the_head() -> (World, String) {
    let world = World::new("", "");
    world.release_production();
    world.archive_as_avro();
    world.fleet.repo.commit("archive as avro");
    let id = world.queue_production();
    world.freeze_production_at_the_head();
    (world, id)
}

#[test]
fn the_cli_and_the_daemon_hold_a_queued_promotion_for_a_freeze_raised_at_the_head() {
    let (world, id) = queued_then_frozen_at_the_head();
    let approved = world.as_approver("approve", &id, "alice", &[]);
    approved.expect(0);
    assert!(
        approved.stdout.contains("Queued: ring is frozen"),
        "{}",
        approved.stdout
    );
    assert_eq!(world.state_of(&id), "Queued");

    let (world, id) = queued_then_frozen_at_the_head();
    let daemon = start_daemon(&world, "200ms");
    daemon.wait_log("held: ring is frozen");
    assert_eq!(world.state_of(&id), "Queued");
    assert!(
        world.show(&id).contains("ring is frozen (`freeze: true`)"),
        "{}",
        world.show(&id)
    );
}
