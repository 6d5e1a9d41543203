//! A real `ringops agent` process for the integration tests: on a free loopback port,
//! over plain HTTP or TLS, serving a worker directory in its own temporary home; killed
//! when dropped; and the example fleet with its dev workers behind such agents. Used by
//! the agent tests and the daemon-with-agents tests.

use super::{Fleet, ringops_in};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The token every test agent answers.
pub const TOKEN: &str = "agent-test-token-5f1c";
/// How long an agent may take to start: generous, for a debug build on a busy machine.
pub const BOUND: Duration = Duration::from_secs(20);

/// The example fleet's dev workers.
pub const DEV_WORKERS: [&str; 3] = ["core-dev-1", "core-dev-2", "edge-dev-1"];
/// The example fleet's worker groups, where targets are set.
pub const GROUPS: &str = "examples/fleet/groups.yaml";
/// The example fleet's rings.
pub const RINGS: &str = "examples/fleet/rings.yaml";

/// `[hooks.*]` of the test agents: `validate` logs the check of a complete staged set
/// (and fails while `{home}/fail-check` exists), `reload-jobs` logs the reload; both
/// to `{home}/hooks.log`.
pub const AGENT_HOOKS: &str = r#"
[hooks.validate]
command = ["sh", "-c", 'if test -e {home}/fail-check; then echo check refused by the test >&2; exit 1; fi; test -f "$RINGOPS_STAGED_DIR/invoices/archive.store/writer.ini" && echo "check $RINGOPS_WORKER $RINGOPS_RING" >> {home}/hooks.log']
timeout = "10s"

[hooks.reload-jobs]
command = ["sh", "-c", 'echo "reload $RINGOPS_WORKER $RINGOPS_RING" >> {home}/hooks.log']
"#;

/// The edit giving the `core` group `check` and `reload` hooks: `named` adds the agent
/// hooks' names beside command lines that would leave a file in `spy`.
pub fn core_hooks(spy: &Path, named: bool) -> (&'static str, &'static str, String) {
    let spy = spy.display();
    let (check, reload) = match named {
        true => (", hook: validate", ", hook: reload-jobs"),
        false => ("", ""),
    };
    let hooks = format!(
        "features: [disk]\n  check: {{command: [touch, {spy}/check]{check}}}\n  reload: {{command: [touch, {spy}/reload]{reload}}}"
    );
    (GROUPS, "features: [disk]", hooks)
}

/// The example fleet with its dev workers behind agents (by worker name), and a file
/// holding the agents' token.
pub struct AgentFleet {
    pub fleet: Fleet,
    pub agents: BTreeMap<&'static str, Agent>,
    pub token_file: tempfile::NamedTempFile,
    /// More environment for `ringops` (e.g. a client certificate for mutual TLS).
    pub client_env: Vec<(&'static str, PathBuf)>,
}

impl AgentFleet {
    /// Dev workers behind agents over plain HTTP, or TLS with `tls` (certificate and key
    /// files); the rings file edited by `rings` (pairs of text to replace); committed.
    pub fn start(tls: Option<(&Path, &Path)>, rings: &[(&str, &str)]) -> AgentFleet {
        let edits: Vec<(&str, &str, &str)> = rings.iter().map(|(f, t)| (RINGS, *f, *t)).collect();
        AgentFleet::start_with(tls, &edits, "")
    }

    /// [`AgentFleet::start`] with `edits` (file, text, replacement) and `agent_toml`
    /// added to each agent's configuration (`{home}` standing for the agent's home).
    pub fn start_with(
        tls: Option<(&Path, &Path)>,
        edits: &[(&str, &str, &str)],
        agent_toml: &str,
    ) -> AgentFleet {
        let fleet = Fleet::new();
        let agents: BTreeMap<&str, Agent> = DEV_WORKERS
            .iter()
            .map(|w| (*w, Agent::start_with(tls, agent_toml)))
            .collect();
        for (worker, agent) in &agents {
            let from = format!("{{name: {worker}, ring: dev,");
            let to = format!(
                "{{name: {worker}, ring: dev, target: \"{}\",",
                agent.target()
            );
            fleet.repo.edit(GROUPS, &from, &to);
        }
        for (file, from, to) in edits {
            fleet.repo.edit(file, from, to);
        }
        fleet.repo.commit("dev workers behind agents");
        let mut token_file = tempfile::NamedTempFile::new().expect("token file");
        writeln!(token_file, "{TOKEN}").expect("write token");
        AgentFleet {
            fleet,
            agents,
            token_file,
            client_env: Vec::new(),
        }
    }

    /// `ringops <args>` on the fleet, with the agents' token.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.fleet.command(args);
        cmd.env("RINGOPS_AGENT_TOKEN_FILE", self.token_file.path());
        cmd.envs(self.client_env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A running `ringops agent`, killed (SIGKILL) when dropped.
pub struct Agent {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its home: `agent.toml`, `token`, `stderr` and the worker directory `worker/`.
    pub home: tempfile::TempDir,
}

impl Agent {
    /// An agent on a free loopback port serving a new worker directory over plain HTTP,
    /// or over TLS with `tls` (certificate and key files).
    pub fn start(tls: Option<(&Path, &Path)>) -> Agent {
        Agent::start_with(tls, "")
    }

    /// [`Agent::start`] with `extra` at the end of its `agent.toml` (`{home}` standing
    /// for the agent's home), e.g. `[hooks.NAME]` tables.
    pub fn start_with(tls: Option<(&Path, &Path)>, extra: &str) -> Agent {
        let home = tempfile::Builder::new()
            .prefix("ringops-test-agent-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(home.path().join("token"), format!("{TOKEN}\n")).expect("token");
        let serving = match tls {
            Some((cert, key)) => format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            None => "allow_plain_http = true\n".to_owned(),
        };
        let extra = extra.replace("{home}", &home.path().display().to_string());
        let serving = format!("{serving}{extra}");
        std::fs::write(home.path().join("serving.toml"), serving).expect("serving");
        Agent::spawn(home, "127.0.0.1:0")
    }

    /// Starts the agent of `home` listening on `listen`; waits for its address.
    pub fn spawn(home: tempfile::TempDir, listen: &str) -> Agent {
        let child = Agent::child(home.path(), listen);
        let mut agent = Agent {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            home,
        };
        agent.addr = agent.wait_listening();
        agent
    }

    /// A `ringops agent` process for `home`, logging to `home/stderr`.
    fn child(home: &Path, listen: &str) -> Child {
        let serving = std::fs::read_to_string(home.join("serving.toml")).expect("serving");
        // With mutual TLS an agent holds no token (and refuses one).
        let token = match serving.contains("client_ca") {
            true => "",
            false => "token_file = \"token\"\n",
        };
        let config = format!("listen = \"{listen}\"\ndir = \"worker\"\n{token}{serving}");
        std::fs::write(home.join("agent.toml"), config).expect("config");
        let log = std::fs::File::create(home.join("stderr")).expect("log");
        ringops_in(home)
            .args(["agent", "--config", "agent.toml"])
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ringops agent")
    }

    /// Waits for the `agent listening` log line; the address in it.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(addr) = self.listening() {
                return addr;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "the agent exited ({status}) before listening\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {BOUND:?} waiting for the agent to listen\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the agent (SIGKILL, as a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's,
        // not yet reaped (only `kill`, `wait_exit` and drop reap it).
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits (at most `within`) for the agent to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let log = self.home.path().join("stderr");
        let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
        super::wait_for_exit(&mut self.child, within, "the agent", stderr)
    }

    /// Starts the killed agent again on the same port.
    pub fn restart(&mut self) {
        self.child = Agent::child(self.home.path(), &self.addr.to_string());
        assert_eq!(self.wait_listening(), self.addr, "the same port");
    }

    fn listening(&self) -> Option<SocketAddr> {
        super::logged_address(&self.stderr(), "agent listening addr=")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.home.path().join("stderr")).unwrap_or_default()
    }

    pub fn target(&self) -> String {
        let tls = std::fs::read_to_string(self.home.path().join("serving.toml"))
            .is_ok_and(|s| s.contains("tls_cert"));
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn dir(&self) -> PathBuf {
        self.home.path().join("worker")
    }

    /// One HTTP/1.0 request with `token`; the status and the body.
    pub fn request(&self, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the agent");
        stream.set_read_timeout(Some(BOUND)).expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send the head");
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_owned())
    }

    /// What the test hooks of [`AGENT_HOOKS`] logged.
    pub fn hooks_log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("hooks.log")).unwrap_or_default()
    }

    pub fn inventory(&self) -> Value {
        let (status, body) = self.request("GET", "/v1/inventory", TOKEN, b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
