//! The daemon with real agents: `ringops daemon` (the real binary) deploying the example
//! fleet's dev ring to three `ringops agent` processes on loopback ports, driven by
//! commits, killed and restarted agents and hot edits. A rollout waits for an agent
//! killed mid-rollout and completes once it is back; an agent down past the progress
//! deadline fails (and reverts) the rollout, shows as unreachable in `status` and the
//! metrics, and is brought back to the Active deployment by reconcile when it returns;
//! a `drift: report` ring's agents record hot edits and leave them; a group naming
//! its agents' hooks gets them run around every switch the daemon makes. Over mutual
//! TLS, agents trusting an old and a new daemon CA take deployments from a daemon
//! showing either, and the daemon fails a deployment at a revoked agent, naming it,
//! with nothing sent to it. Every wait is
//! bounded and names what it waited for; every process is killed when a test ends.

mod common;

use common::agent::{AGENT_HOOKS, Agent, AgentFleet, DEV_WORKERS, RINGS, core_hooks};
use common::daemon::Daemon;
use common::pki::Pki;
use common::{files_under, worker_files};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the daemon-with-agents tests do with [`AgentFleet`].
impl AgentFleet {
    /// The daemon on a free port: 200 ms poll, 1 s drift scan, no retry of a failed
    /// deployment within the test.
    fn daemon(&self) -> Daemon {
        self.daemon_with(&[])
    }

    /// [`AgentFleet::daemon`] with more arguments.
    fn daemon_with(&self, extra: &[&str]) -> Daemon {
        let mut cmd = self.command(&[
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "200ms",
            "--drift-interval",
            "1s",
            "--retry-backoff",
            "1h",
        ]);
        cmd.args(extra);
        let daemon = Daemon::start(cmd);
        daemon.wait_ready();
        daemon
    }

    /// `ringops <args>` with the agent token.
    fn run(&self, args: &[&str]) -> common::Run {
        common::output(&mut self.command(args))
    }

    /// The state of deployment `id` of ring dev, if recorded.
    fn state(&self, id: &str) -> Option<String> {
        let run = self.run(&["history", "--ring", "dev", "--format", "json"]);
        let doc: Value = serde_json::from_str(&run.expect(0).stdout).expect("history JSON");
        doc["deployments"]
            .as_array()?
            .iter()
            .find(|d| d["id"] == id)
            .and_then(|d| d["state"].as_str().map(str::to_owned))
    }

    /// Waits until deployment `id` of ring dev is in `state`.
    #[track_caller]
    fn wait_state(&self, daemon: &Daemon, id: &str, state: &str) {
        daemon.wait_until(&format!("{id} {state}"), || {
            self.state(id).as_deref() == Some(state)
        });
    }

    fn agent(&mut self, worker: &str) -> &mut Agent {
        self.agents.get_mut(worker).expect("agent")
    }

    /// The deployment the agent of `worker` says it last applied.
    fn deployment_on(&self, worker: &str) -> Value {
        self.agents[worker].inventory()["deployment"].clone()
    }

    /// Commits a new dev log level (every dev worker's files change).
    fn change_log_level(&self, to: &str) {
        self.fleet.repo.edit(
            RINGS,
            "values: {log_level: debug, max_retries: 1}",
            &format!("values: {{log_level: {to}, max_retries: 1}}"),
        );
        self.fleet.repo.commit(&format!("dev logs at {to}"));
    }
}

/// The value of `ringops_worker_unreachable` for a dev worker, if exposed.
fn unreachable_gauge(daemon: &Daemon, worker: &str) -> Option<String> {
    let text = daemon.get("/metrics").body;
    let series = format!("ringops_worker_unreachable{{ring=\"dev\",worker=\"{worker}\"}} ");
    let line = text.lines().find(|l| l.starts_with(&series))?;
    Some(line[series.len()..].trim().to_owned())
}

#[test]
fn a_rollout_waits_for_an_agent_killed_mid_rollout_and_completes_once_it_is_back() {
    let mut remote = AgentFleet::start(
        None,
        &[(
            "strategy: {type: allAtOnce}",
            "strategy: {type: rolling, maxParallel: 1}\n  health: {command: [sh, -c, 'sleep 1'], progressDeadline: 60s}",
        )],
    );
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    for worker in DEV_WORKERS {
        assert_eq!(remote.deployment_on(worker), "d-000001", "{worker}");
    }

    remote.change_log_level("trace");
    daemon.wait_until("the first batch of d-000002 on core-dev-1", || {
        remote.deployment_on("core-dev-1") == "d-000002"
    });
    remote.agent("edge-dev-1").kill();
    daemon.wait_until("the rollout to wait for edge-dev-1", || {
        daemon.stderr().contains("worker unreachable; trying again")
            && daemon.stderr().contains("edge-dev-1")
    });
    assert_eq!(remote.state("d-000002").as_deref(), Some("Deploying"));
    remote.agent("edge-dev-1").restart();
    remote.wait_state(&daemon, "d-000002", "Active");
    for worker in DEV_WORKERS {
        assert_eq!(remote.deployment_on(worker), "d-000002", "{worker}");
        let files = worker_files(&remote.agents[worker].dir());
        let text: String = files
            .values()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(text.contains("trace"), "{worker} holds the new files");
    }
}

#[test]
fn an_agent_down_past_the_deadline_fails_the_rollout_and_reconcile_brings_it_back() {
    let mut remote = AgentFleet::start(
        None,
        &[(
            "strategy: {type: allAtOnce}",
            "strategy: {type: rolling, maxParallel: 1}\n  health: {command: [sh, -c, 'true'], progressDeadline: 3s}\n  autoRevert: true",
        )],
    );
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    let before: BTreeMap<&str, _> = DEV_WORKERS
        .iter()
        .map(|w| (*w, worker_files(&remote.agents[w].dir())))
        .collect();
    daemon.wait_until("edge-dev-1 reachable in the metrics", || {
        unreachable_gauge(&daemon, "edge-dev-1").as_deref() == Some("0")
    });

    remote.agent("edge-dev-1").kill();
    let started = Instant::now();
    remote.change_log_level("trace");
    remote.wait_state(&daemon, "d-000002", "RolledBack");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "failed before the progress deadline"
    );
    let show = remote.run(&["show", "d-000002"]).expect(0).stdout.clone();
    assert!(
        show.contains("edge-dev-1") && show.contains("still unreachable"),
        "{show}"
    );
    for worker in ["core-dev-1", "core-dev-2"] {
        assert_eq!(
            worker_files(&remote.agents[worker].dir()),
            before[worker],
            "{worker} reverted"
        );
    }
    let status = remote
        .run(&["status", "--ring", "dev"])
        .expect(0)
        .stdout
        .clone();
    let line = status
        .lines()
        .find(|l| l.contains("edge-dev-1"))
        .unwrap_or_default();
    assert!(line.contains("unreachable"), "{status}");
    daemon.wait_until("edge-dev-1 unreachable in the metrics", || {
        unreachable_gauge(&daemon, "edge-dev-1").as_deref() == Some("1")
    });

    // It comes back as a new host (an empty directory): reconcile restores d-000001.
    let edge = remote.agent("edge-dev-1");
    std::fs::remove_dir_all(edge.dir()).expect("wipe the worker directory");
    edge.restart();
    daemon.wait_until("edge-dev-1 back at the Active deployment", || {
        worker_files(&remote.agents["edge-dev-1"].dir()) == before["edge-dev-1"]
    });
    daemon.wait_until("edge-dev-1 reachable again in the metrics", || {
        unreachable_gauge(&daemon, "edge-dev-1").as_deref() == Some("0")
    });
    assert_eq!(remote.deployment_on("edge-dev-1"), "d-000001");
}

#[test]
fn a_report_ring_s_agents_record_hot_edits_and_leave_them_in_place() {
    let remote = AgentFleet::start(
        None,
        &[(
            "strategy: {type: allAtOnce}\n  drift: revert",
            "strategy: {type: allAtOnce}\n  drift: report",
        )],
    );
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    let agent = &remote.agents["core-dev-1"];
    assert_eq!(agent.inventory()["drift_mode"], "report");
    let files = worker_files(&agent.dir());
    let path = files.keys().next().expect("a managed file").clone();
    std::fs::write(agent.dir().join(&path), "hot edit\n").expect("edit");
    daemon.wait_until("the agent to record the hot edit", || {
        let inventory = agent.inventory();
        inventory["drift"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["path"] == path.as_str() && d["action"] == "reported")
        })
    });
    // The daemon's drift pass (every second) saw it too, and reported it only.
    daemon.wait_until("the daemon to record the drift", || {
        daemon.stderr().contains("reported (ring drift: report)")
    });
    assert_eq!(
        std::fs::read_to_string(agent.dir().join(&path)).expect("read"),
        "hot edit\n",
        "a report ring's hot edit was reverted"
    );
}

#[test]
fn sigterm_stops_a_daemon_waiting_for_an_unreachable_agent_after_its_grace() {
    let mut remote = AgentFleet::start(
        None,
        &[(
            "strategy: {type: allAtOnce}",
            "strategy: {type: rolling, maxParallel: 1}\n  health: {command: [sh, -c, 'true'], progressDeadline: 30m}",
        )],
    );
    let daemon = remote.daemon_with(&["--stop-grace", "1s"]);
    remote.wait_state(&daemon, "d-000001", "Active");
    remote.agent("edge-dev-1").kill();
    remote.change_log_level("trace");
    daemon.wait_until("the rollout to wait for edge-dev-1", || {
        daemon.stderr().contains("worker unreachable; trying again")
    });

    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopping took {:?}, not about the 1 s grace",
        asked.elapsed()
    );
    assert!(
        daemon
            .stderr()
            .contains("did not finish in time; leaving it"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(remote.state("d-000002").as_deref(), Some("Deploying"));

    // The next start marks the interrupted rollout failed, naming why.
    remote.agent("edge-dev-1").restart();
    let again = remote.daemon();
    remote.wait_state(&again, "d-000002", "Failed");
    let show = remote.run(&["show", "d-000002"]).expect(0).stdout.clone();
    assert!(show.contains("interrupted"), "{show}");
    // ... and the tracked head is deployed again, now that every agent answers.
    remote.wait_state(&again, "d-000003", "Active");
    for worker in DEV_WORKERS {
        assert_eq!(remote.deployment_on(worker), "d-000003", "{worker}");
    }
}

#[test]
fn an_all_at_once_deployment_waits_for_an_unreachable_agent_and_completes_once_it_is_back() {
    let mut remote = AgentFleet::start(None, &[]);
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    remote.agent("edge-dev-1").kill();
    remote.change_log_level("trace");
    daemon.wait_until("the deployment to wait for edge-dev-1", || {
        daemon.stderr().contains("worker unreachable; trying again")
    });
    assert_eq!(remote.state("d-000002").as_deref(), Some("Deploying"));
    daemon.wait_until(
        "the metrics to show edge-dev-1 unreachable meanwhile",
        || unreachable_gauge(&daemon, "edge-dev-1").as_deref() == Some("1"),
    );
    remote.agent("edge-dev-1").restart();
    remote.wait_state(&daemon, "d-000002", "Active");
    for worker in DEV_WORKERS {
        assert_eq!(remote.deployment_on(worker), "d-000002", "{worker}");
    }
    daemon.wait_until("the metrics to show edge-dev-1 reachable again", || {
        unreachable_gauge(&daemon, "edge-dev-1").as_deref() == Some("0")
    });
}

#[test]
fn ringops_apply_tells_fresh_agents_the_ring_s_drift_mode() {
    let remote = AgentFleet::start(
        None,
        &[(
            "strategy: {type: allAtOnce}\n  drift: revert",
            "strategy: {type: allAtOnce}\n  drift: report",
        )],
    );
    remote.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    for worker in DEV_WORKERS {
        let inventory = remote.agents[worker].inventory();
        assert_eq!(inventory["drift_mode"], "report", "{worker}: {inventory}");
    }
}

#[test]
fn a_flooded_agent_refuses_past_its_cap_heals_switches_cuts_its_slow_clients_and_stops_in_time() {
    const CAP: usize = 16;
    let mut remote = AgentFleet::start(None, &[]);
    let agent = remote.agent("core-dev-1");
    agent.kill();
    let serving = agent.home.path().join("serving.toml");
    let limits = "stop_grace = \"1s\"\n[http]\nmax_connections = 16\n\
                  header_timeout = \"8s\"\nbody_timeout = \"8s\"\nbody_min_rate_kib = 1\n";
    let text = std::fs::read_to_string(&serving).expect("serving.toml");
    std::fs::write(&serving, format!("{text}{limits}")).expect("serving.toml");
    agent.restart();
    let addr = agent.addr;
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    let dir = remote.agents["core-dev-1"].dir();
    let ini = dir.join("invoices/archive.store/writer.ini");
    let deployed = std::fs::read_to_string(&ini).expect("deployed");
    let body_head = format!(
        "PUT /v1/generation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100000\r\n\r\n",
        common::agent::TOKEN
    );

    let flood = common::flood::Flood::open(addr, CAP + 20, &body_head);
    daemon.wait_until("the connections past the cap to be closed", || {
        flood.closed() >= 20
    });
    assert!(common::flood::refused(
        addr,
        "/v1/healthz",
        common::daemon::BOUND
    ));
    std::fs::write(&ini, format!("{deployed}# hot edit\n")).expect("hot edit");
    daemon.wait_until("the agent to heal a hot edit while flooded", || {
        std::fs::read_to_string(&ini).is_ok_and(|t| t == deployed)
    });
    // The daemon's kept-alive connection may hold one of the slots.
    assert!(
        flood.open_now() >= CAP - 1,
        "the flood still held the cap: {} open",
        flood.open_now()
    );
    // Through the daemon's kept-alive connection, or once the timeouts free a slot.
    remote.change_log_level("trace");
    remote.wait_state(&daemon, "d-000002", "Active");
    let files = worker_files(&dir);
    assert!(
        files
            .values()
            .any(|b| String::from_utf8_lossy(b).contains("trace")),
        "core-dev-1 holds d-000002's files"
    );
    daemon.wait_until("the agent's timeouts to cut every slow client", || {
        flood.closed() == flood.size
    });
    drop(flood);

    let flood = common::flood::Flood::open(addr, CAP + 20, &body_head);
    daemon.wait_until("the connections past the cap to be closed", || {
        flood.closed() >= 20
    });
    let agent = remote.agent("core-dev-1");
    let asked = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(common::daemon::BOUND);
    assert_eq!(status.code(), Some(0), "{}", agent.stderr());
    assert!(
        asked.elapsed() < Duration::from_secs(7),
        "stopped after {:?}: before the 8 s timeouts, bounded by the 1 s stop grace",
        asked.elapsed()
    );
    assert!(
        agent
            .stderr()
            .contains("HTTP connections still open after the stop grace")
    );
}

#[test]
fn the_daemon_deploys_to_agents_whose_group_names_hooks_and_they_run_there() {
    let spy = tempfile::tempdir().expect("spy");
    let (file, from, to) = core_hooks(spy.path(), true);
    let remote = AgentFleet::start_with(None, &[(file, from, &to)], AGENT_HOOKS);
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    remote.change_log_level("trace");
    remote.wait_state(&daemon, "d-000002", "Active");
    for worker in ["core-dev-1", "core-dev-2"] {
        assert_eq!(remote.deployment_on(worker), "d-000002", "{worker}");
        let once = format!("check {worker} dev\nreload {worker} dev\n");
        assert_eq!(
            remote.agents[worker].hooks_log(),
            once.repeat(2),
            "{worker}"
        );
    }
    assert_eq!(
        remote.agents["edge-dev-1"].hooks_log(),
        "",
        "edge has no hooks"
    );
    assert!(
        files_under(spy.path()).is_empty(),
        "the group's command lines ran nowhere"
    );
}

/// The dev agents over mutual TLS with web-1's certificate (all on 127.0.0.1), taking
/// daemon certificates from the CAs in `client_ca`; the daemon's client environment
/// presenting `client` of `pki`.
fn mutual_tls_fleet(pki: &Pki, client_ca: &std::path::Path) -> AgentFleet {
    let mut remote = pki.fleet(client_ca);
    remote.client_env = pki.daemon_env("daemon-client", true);
    remote
}

/// Whether some file of `worker`'s agent holds `text`.
fn agent_holds(remote: &AgentFleet, worker: &str, text: &str) -> bool {
    worker_files(&remote.agents[worker].dir())
        .values()
        .any(|content| String::from_utf8_lossy(content).contains(text))
}

#[test]
fn agents_trusting_an_old_and_a_new_daemon_ca_take_deployments_across_the_switch() {
    let (Some(old), Some(new)) = (Pki::new(), Pki::new()) else {
        return;
    };
    let both = old.path("daemon-cas.pem");
    common::pki::bundle(
        &both,
        &[old.path("daemon-ca.pem"), new.path("daemon-ca.pem")],
    );
    let mut remote = mutual_tls_fleet(&old, &both);
    let daemon = remote.daemon();
    remote.wait_state(&daemon, "d-000001", "Active");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(30));
    // The daemon now presents a certificate of the new daemon CA.
    let mut env = old.daemon_env("daemon-client", true);
    env.retain(|(name, _)| !name.starts_with("RINGOPS_AGENT_CLIENT"));
    env.extend(
        new.daemon_env("daemon-client", false)
            .into_iter()
            .filter(|(name, _)| name.starts_with("RINGOPS_AGENT_CLIENT")),
    );
    // And trusts the agent CAs new and old, the old one second.
    let agent_cas = new.path("agent-cas.pem");
    common::pki::bundle(
        &agent_cas,
        &[new.path("agent-ca.pem"), old.path("agent-ca.pem")],
    );
    env.retain(|(name, _)| *name != "RINGOPS_AGENT_CA_FILE");
    env.push(("RINGOPS_AGENT_CA_FILE", agent_cas));
    remote.client_env = env;
    let daemon = remote.daemon();
    remote.change_log_level("trace");
    remote.wait_state(&daemon, "d-000002", "Active");
    for worker in DEV_WORKERS {
        assert!(agent_holds(&remote, worker, "trace"), "{worker}");
    }
}

#[test]
fn the_daemon_refuses_a_revoked_agent_naming_it_and_sends_it_nothing() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let mut remote = mutual_tls_fleet(&pki, &pki.path("daemon-ca.pem"));
    let target = pki.serve_revoked(remote.agent("edge-dev-1"));
    let daemon = remote.daemon();
    let says = format!("agent {target} refused by TLS: its certificate is revoked");
    daemon.wait_until("the daemon to refuse the revoked agent", || {
        daemon.stderr().contains(&says)
    });
    remote.wait_state(&daemon, "d-000001", "Failed");
    let status = remote.run(&["status", "--ring", "dev"]).stdout;
    assert!(
        status.contains(&format!("worker edge-dev-1: {says}")),
        "{status}"
    );
    assert!(
        worker_files(&remote.agents["edge-dev-1"].dir()).is_empty(),
        "nothing reached the revoked agent"
    );
}
