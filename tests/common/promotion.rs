//! The world of the promotion tests: the example fleet with rings that promote dev →
//! staging → production through real gates (a command health check on staging, two of
//! three approvers, a canary and an HTTP health check on loopback for production), an
//! approvers' configuration, and helpers to move a release through them.

use super::daemon::Daemon;
use super::{Fleet, Run, files_under, output, sha256_hex};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const RINGS: &str = "examples/fleet/rings.yaml";

/// The rings of these tests: staging rolls 2 at a time behind a command check that
/// fails for a worker while `<state>/sick-<worker>` exists; production is a canary of
/// one then 2 at a time, behind 2 of 3 approvers and an HTTP check on loopback.
pub fn rings(fleet: &Fleet, port: u16, production_extra: &str, staging_extra: &str) -> String {
    let state = fleet.state.path().display();
    format!(
        r#"apiVersion: ringops/v1
kind: Ring
metadata: {{name: dev}}
spec:
  track: {{branch: main}}
  autoDeploy: true
  values: {{log_level: debug, max_retries: 1}}
---
apiVersion: ringops/v1
kind: Ring
metadata: {{name: staging}}
spec:
  promotesFrom: dev
  strategy: {{type: rolling, maxParallel: 2}}
  health:
    command: [sh, -c, 'echo "$RINGOPS_WORKER" >> {state}/health.log; test ! -e {state}/sick-$RINGOPS_WORKER']
    timeout: 5s
    healthyDeadline: 1s
  values: {{log_level: info, max_retries: 3}}
{staging_extra}---
apiVersion: ringops/v1
kind: Ring
metadata: {{name: production}}
spec:
  promotesFrom: staging
  approvals: {{required: 2, approvers: [alice, bob, carol]}}
  strategy: {{type: canary, canary: 1, maxParallel: 2}}
  health:
    http: "http://127.0.0.1:{port}/{{{{ worker.name }}}}"
    timeout: 2s
    healthyDeadline: 1s
  autoRevert: true
  values: {{log_level: warn, max_retries: 5}}
{production_extra}"#
    )
}

/// A health endpoint on loopback: 200 for every path unless its worker is in `sick`.
pub struct Endpoint {
    pub port: u16,
    pub sick: Arc<std::sync::Mutex<Vec<String>>>,
    _up: Arc<AtomicBool>,
}

impl Endpoint {
    pub fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sick: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let (list, alive) = (Arc::clone(&sick), Arc::clone(&up));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if !alive.load(Ordering::SeqCst) {
                    break;
                }
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let bad = list.lock().expect("lock").iter().any(|w| w == path);
                let status = if bad {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Endpoint {
            port,
            sick,
            _up: up,
        }
    }

    pub fn make_sick(&self, worker: &str) {
        self.sick.lock().expect("lock").push(worker.to_owned());
    }
}

/// The fleet with these tests' rings, an approvers' configuration, and dev applied.
pub struct World {
    pub fleet: Fleet,
    pub endpoint: Endpoint,
    pub config: tempfile::TempDir,
}

impl World {
    pub fn new(production_extra: &str, staging_extra: &str) -> World {
        let fleet = Fleet::new();
        let endpoint = Endpoint::start();
        // Five staging workers: rolling two at a time is 2, 2, 1.
        fleet.repo.edit(
            "examples/fleet/groups.yaml",
            "    - {name: core-stg-2, ring: staging, address: 10.0.2.22, labels: {region: us}}\n",
            "    - {name: core-stg-2, ring: staging, address: 10.0.2.22, labels: {region: us}}\n    - {name: core-stg-3, ring: staging, address: 10.0.2.23, labels: {region: us}}\n",
        );
        fleet.repo.write(
            RINGS,
            &rings(&fleet, endpoint.port, production_extra, staging_extra),
        );
        fleet.repo.commit("rings for promotion tests");
        let config = tempfile::tempdir().expect("config");
        let mut toml = String::new();
        for (name, emergency) in [("alice", true), ("bob", false), ("carol", false)] {
            let token = format!("{name}-token");
            std::fs::write(config.path().join(name), format!("{token}\n")).expect("token");
            toml.push_str(&format!(
                "[[approvers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nemergency = {emergency}\n",
                sha256_hex(token.as_bytes())
            ));
        }
        std::fs::write(config.path().join("mallory"), "mallory-token\n").expect("token");
        std::fs::write(config.path().join("ringops.toml"), toml).expect("config");
        let world = World {
            fleet,
            endpoint,
            config,
        };
        world.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
        world
    }

    /// Adds `text` to the configuration file.
    pub fn configure(&self, text: &str) {
        let path = self.config.path().join("ringops.toml");
        let mut toml = std::fs::read_to_string(&path).expect("config");
        toml.push_str(text);
        std::fs::write(path, toml).expect("config");
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.fleet.command(args);
        cmd.arg("--config")
            .arg(self.config.path().join("ringops.toml"));
        output(&mut cmd)
    }

    pub fn token(&self, name: &str) -> PathBuf {
        self.config.path().join(name)
    }

    /// Edits the archive module (every ring's workers get new files); not committed.
    pub fn archive_as_avro(&self) {
        self.fleet.repo.edit(
            "examples/fleet/modules/archive.yaml",
            "format: parquet",
            "format: avro",
        );
    }

    /// `promote production --emergency` with `who`'s token.
    pub fn emergency_promotion(&self, who: &str, reason: &str) -> Run {
        let token = self.token(who);
        let token = token.to_str().expect("UTF-8");
        self.run(&[
            "promote",
            "production",
            "--emergency",
            "--reason",
            reason,
            "--token-file",
            token,
        ])
    }

    pub fn as_approver(&self, verb: &str, id: &str, who: &str, extra: &[&str]) -> Run {
        let token = self.token(who);
        let token = token.to_str().expect("UTF-8");
        let mut args = vec![verb, id, "--token-file", token];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Promotes staging, then production, approved by alice and bob: production's
    /// canary is switched and the rollout waits to be continued. Its deployment id.
    pub fn canary_production(&self) -> String {
        self.run(&["promote", "staging"]).expect(0);
        let id = deployment_id(&self.run(&["promote", "production"]));
        self.as_approver("approve", &id, "alice", &[]).expect(0);
        self.as_approver("approve", &id, "bob", &[]).expect(0);
        id
    }

    /// Deploys the branch head to dev, promotes it to staging and queues it for
    /// production (awaiting approval): the queued deployment's id.
    pub fn queue_production(&self) -> String {
        self.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
        self.run(&["promote", "staging"]).expect(0);
        deployment_id(&self.run(&["promote", "production"]))
    }

    /// Commits `freeze: true` for production on the tracked branch.
    pub fn freeze_production_at_the_head(&self) {
        self.fleet.repo.edit(
            RINGS,
            "  autoRevert: true\n  values: {log_level: warn",
            "  autoRevert: true\n  freeze: true\n  values: {log_level: warn",
        );
        self.fleet.repo.commit("incident: freeze production");
    }

    /// [`World::canary_production`] continued to the end: production Active.
    pub fn release_production(&self) -> String {
        let id = self.canary_production();
        self.run(&["promote", "production", "--continue"]).expect(0);
        id
    }

    /// Moves `id`'s creation `ago` into the past, as if it had been queued that much
    /// longer. The approval timeout counts from a deployment's creation and the binary
    /// reads the wall clock (it takes no clock to inject), so this is how a test passes
    /// the timeout without waiting for it. Only while no ringops process runs.
    pub fn backdate(&self, id: &str, ago: std::time::Duration) {
        let db = self
            .fleet
            .state
            .path()
            .join(ringops::adapters::store::DB_FILE);
        let conn = rusqlite::Connection::open(&db).expect("open the state");
        let ms = i64::try_from(ago.as_millis()).expect("fits");
        let changed = conn
            .execute(
                "UPDATE deployments SET created_at = created_at - ?1 WHERE id = ?2",
                rusqlite::params![ms, id],
            )
            .expect("backdate");
        assert_eq!(changed, 1, "no deployment {id} to backdate");
    }

    pub fn show(&self, id: &str) -> String {
        self.run(&["show", id]).expect(0).stdout.clone()
    }

    pub fn state_of(&self, id: &str) -> String {
        let show = self.show(id);
        let line = show
            .lines()
            .find(|l| l.trim_start().starts_with("state:"))
            .unwrap_or_default();
        line.split(':').nth(1).unwrap_or_default().trim().to_owned()
    }

    /// Every worker whose name starts with `prefix` and that holds files: each file's
    /// sha256 by path (its `.ringops/` records left out).
    pub fn workers(&self, prefix: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let root = self.fleet.state.path().join("workers");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&root).expect("workers") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let files: BTreeMap<String, String> = files_under(&path)
                .into_iter()
                .filter(|(p, _)| !p.starts_with(".ringops/"))
                .map(|(p, bytes)| (p, sha256_hex(&bytes)))
                .collect();
            if name.starts_with(prefix) && !files.is_empty() {
                out.push((name, files));
            }
        }
        out.sort();
        out
    }

    /// Whether the worker holds any file.
    pub fn holds(&self, worker: &str) -> bool {
        self.workers(worker).iter().any(|(n, _)| n == worker)
    }

    pub fn health_log(&self) -> Vec<String> {
        let log = self.fleet.state.path().join("health.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The deployment id a `promote` printed (`Deployment d-000004 ...`).
pub fn deployment_id(run: &Run) -> String {
    run.stdout
        .split_whitespace()
        .skip_while(|w| *w != "Deployment")
        .nth(1)
        .unwrap_or_else(|| panic!("no deployment id in:\n{}", run.stdout))
        .to_owned()
}

pub fn sick_marker(world: &World, worker: &str) -> PathBuf {
    world.fleet.state.path().join(format!("sick-{worker}"))
}

/// A `ringops daemon` on the world's fleet, polling Git every `poll` and scanning for
/// drift every 200 ms, logging at debug.
pub fn start_daemon(world: &World, poll: &str) -> Daemon {
    let mut cmd = world.fleet.command(&[
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        poll,
        "--drift-interval",
        "200ms",
    ]);
    cmd.arg("--config")
        .arg(world.config.path().join("ringops.toml"))
        .env("RINGOPS_LOG", "info,ringops=debug");
    Daemon::start(cmd)
}
