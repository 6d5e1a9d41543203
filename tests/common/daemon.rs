//! A real `ringops daemon` process for the integration tests: started in the
//! background with its stdout and stderr in files, asked over HTTP on its loopback
//! port, waited on with bounded polls that show its log on failure; killed when
//! dropped. Used by the daemon, promotion and daemon-with-agents tests.

use super::Fleet;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long anything the daemon does may take: generous, for a debug build on a busy
/// two-core machine running the tests in parallel.
pub const BOUND: Duration = Duration::from_secs(30);

/// A running `ringops daemon`, killed (SIGKILL) when dropped. Its stdout and stderr go
/// to files, read for assertions and shown when a wait times out.
pub struct Daemon {
    child: RefCell<Child>,
    pub addr: SocketAddr,
    logs: tempfile::TempDir,
}

impl Daemon {
    /// Starts `cmd` (a `ringops daemon` command) and waits for its HTTP API address.
    pub fn start(cmd: Command) -> Daemon {
        let mut daemon = Daemon::spawn(cmd);
        daemon.wait_until("the HTTP API to listen", || daemon.listening().is_some());
        daemon.addr = daemon.listening().expect("address");
        daemon
    }

    /// Starts `cmd` without waiting for anything.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let logs = tempfile::Builder::new()
            .prefix("ringops-test-daemon-")
            .tempdir()
            .expect("temp dir");
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).expect("log");
        // Never talk to a systemd supervising the test run itself.
        for key in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
        ] {
            cmd.env_remove(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("start ringops daemon");
        Daemon {
            child: RefCell::new(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
        }
    }

    /// The daemon of `fleet` on a free port: `--listen 127.0.0.1:0` then `args`.
    pub fn of(fleet: &Fleet, args: &[&str]) -> Daemon {
        let mut all = vec!["daemon", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Daemon::start(fleet.command(&all))
    }

    /// [`Daemon::of`] with a 200 ms poll and a 1 s drift scan, ready.
    pub fn ready(fleet: &Fleet) -> Daemon {
        let daemon = Daemon::of(
            fleet,
            &["--poll-interval", "200ms", "--drift-interval", "1s"],
        );
        daemon.wait_ready();
        daemon
    }

    /// The address of the log line `HTTP API listening addr=...`.
    pub fn listening(&self) -> Option<SocketAddr> {
        super::logged_address(&self.stderr(), "HTTP API listening addr=")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    /// Polls `done` every 10 ms for [`BOUND`]; panics naming `what`, with the log, on
    /// timeout or when the daemon exits first.
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + BOUND;
        while !done() {
            if let Some(status) = self.child.borrow_mut().try_wait().expect("try_wait") {
                panic!(
                    "the daemon exited ({status}) while waiting for {what}\n--- stderr\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {BOUND:?} waiting for {what}\n--- stderr\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for `/readyz` to answer 200 (the first deploy and drift passes are done).
    #[track_caller]
    pub fn wait_ready(&self) {
        self.wait_until("/readyz to answer 200", || {
            self.get("/readyz").status == 200
        });
    }

    /// Waits for `text` in the log.
    #[track_caller]
    pub fn wait_log(&self, text: &str) {
        self.wait_until(&format!("`{text}` in the log"), || {
            self.stderr().contains(text)
        });
    }

    /// Waits until the log holds `text` at least `times` times.
    #[track_caller]
    pub fn wait_log_times(&self, text: &str, times: usize) {
        self.wait_until(&format!("{times} x `{text}` in the log"), || {
            self.stderr().matches(text).count() >= times
        });
    }

    /// The value of one series of `/metrics`, named as the exposition writes it
    /// (`ringops_source_fetch_errors_total`, `ringops_deployments{ring="dev",state="Active"}`),
    /// if it is there.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").body;
        let line = text.lines().find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })?;
        line[series.len()..].trim().parse().ok()
    }

    /// How many full drift scans (every ring's workers) the daemon finished so far.
    pub fn drift_scans(&self) -> f64 {
        self.metric("ringops_drift_scan_duration_seconds_count")
            .unwrap_or(0.0)
    }

    /// Waits until `more` full drift scans finished after this call. The daemon's loop
    /// runs one trigger at a time and serves a due poll, retry or trigger before a scan,
    /// so two scans ending prove the loop went round for at least a drift interval and
    /// handled whatever else was due: the positive event before asserting that nothing
    /// else happened. `more` should be 2 or more (a scan under way at the call counts).
    #[track_caller]
    pub fn wait_drift_scans(&self, more: u32) {
        let from = self.drift_scans();
        self.wait_until(
            &format!("{more} more full drift scans (from {from})"),
            || self.drift_scans() >= from + f64::from(more),
        );
    }

    /// When the daemon wrote the `nth` (from 1) log line holding `text`: the time at
    /// the start of the line. Panics, with the log, when there are fewer such lines.
    #[track_caller]
    pub fn log_time(&self, text: &str, nth: usize) -> chrono::DateTime<chrono::FixedOffset> {
        let log = self.stderr();
        let line = log
            .lines()
            .filter(|l| l.contains(text))
            .nth(nth - 1)
            .unwrap_or_else(|| panic!("no log line #{nth} holding `{text}`\n--- stderr\n{log}"));
        let stamp = line.split_whitespace().next().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("no time at the start of `{line}`: {e}"))
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.borrow().id()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's,
        // not yet reaped (the guard reaps it only on drop or in `wait_exit`).
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits (at most `within`) for the daemon to exit.
    #[track_caller]
    pub fn wait_exit(&self, within: Duration) -> ExitStatus {
        let mut child = self.child.borrow_mut();
        super::wait_for_exit(&mut child, within, "the daemon", || self.stderr())
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// One HTTP/1.0 request on a fresh connection (the server closes it after answering).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the daemon");
        stream.set_read_timeout(Some(BOUND)).expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send the head");
        // The server may refuse a large body (413) before reading it and close.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let mut chunk = [0; 16 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            raw.extend_from_slice(&chunk[..n]);
        }
        Response::parse(&String::from_utf8_lossy(&raw))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP response, its header names lowercased.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn parse(raw: &str) -> Response {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {raw:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}
