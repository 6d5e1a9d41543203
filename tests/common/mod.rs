//! Shared helpers of the integration tests: real Git repositories in temporary
//! folders, built with the `git` CLI, and runs of the real `ringops` binary.
//!
//! Every process is isolated from the host: no global or system Git config, fixed
//! commit dates (so commit ids are reproducible), and none of the `RINGOPS_*`,
//! `CREDENTIALS_DIRECTORY` or colour variables of the environment running the tests.

#![allow(dead_code)] // each test crate uses a different subset

pub mod agent;
pub mod daemon;
pub mod flood;
pub mod pki;
pub mod promotion;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Whether the tests run in CI: `CI` set to anything but empty, `0` or `false` (CI
/// services set `CI=true`; `.ci/run` does too). There a test never skips: a missing
/// tool fails it.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Waits (at most `within`) for `child` to exit; past that, fails naming `who` and
/// showing its `stderr`.
#[track_caller]
pub fn wait_for_exit(
    child: &mut Child,
    within: Duration,
    who: &str,
    stderr: impl Fn() -> String,
) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{who} did not exit within {within:?}\n--- stderr\n{}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `cmd` (a name looked up in `PATH`, or a path with a `/`) is installed, for a
/// test that needs it. When it is not: under CI this panics naming the Debian `package`
/// to install; elsewhere it prints a skip note and returns false, and the test returns
/// without checking anything.
#[track_caller]
pub fn require_tool(cmd: &str, package: &str) -> bool {
    if installed(cmd) {
        return true;
    }
    skip(&format!("needs `{cmd}` (apt-get install {package})"));
    false
}

/// Notes that the calling test skips the rest of its checks for `why`: a visible line on
/// the real stderr (not the output libtest captures and hides for passing tests); under
/// CI a panic instead, since CI must check everything.
#[track_caller]
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        !in_ci(),
        "{test}: {why}; CI is set, so this fails instead of skipping"
    );
    let _ = writeln!(std::io::stderr().lock(), "{test}: skipped: {why}");
}

/// Why a check of a unit's `systemd-analyze security` exposure is skipped when the
/// installed systemd-analyze has no offline check.
pub const NO_OFFLINE_SECURITY: &str = "needs `systemd-analyze security --offline`, from systemd 250 or later \
     (apt-get install systemd on Debian 12 or later)";

/// An executable file at `cmd`, or named `cmd` in a folder of `PATH`.
fn installed(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        return executable(Path::new(cmd));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(cmd))))
}

/// The address a process logged after `marker` (e.g. `listening addr=`), if it did.
pub fn logged_address(log: &str, marker: &str) -> Option<std::net::SocketAddr> {
    let rest = log.split(marker).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The project root (where `Cargo.toml` is).
pub fn project() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/<rel>` of the project.
pub fn fixture(rel: &str) -> PathBuf {
    project().join("fixtures").join(rel)
}

/// A fixed date for every commit, so commit ids do not depend on the clock.
const DATE: &str = "2024-01-02T03:04:05+00:00";

/// Variables of the host that would change what `git` or `ringops` do.
fn isolate(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("RINGOPS_") || key.starts_with("GIT_") {
            cmd.env_remove(&*key);
        }
    }
    for key in [
        "CREDENTIALS_DIRECTORY",
        "NO_COLOR",
        "CLICOLOR",
        "CLICOLOR_FORCE",
        "TERM",
    ] {
        cmd.env_remove(key);
    }
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", DATE)
        .env("GIT_COMMITTER_DATE", DATE);
}

/// The outcome of one process.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// A `ringops` command isolated from the host, to run in `dir`.
pub fn ringops_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringops"));
    isolate(&mut cmd);
    cmd.current_dir(dir);
    cmd
}

/// Runs a prepared command.
pub fn output(cmd: &mut Command) -> Run {
    run(cmd)
}

/// A Git repository in a temporary folder, removed when dropped.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// `git init -b main` in a new temporary folder.
    pub fn init() -> Repo {
        // Nearly every test drives the `git` command line: without it they fail (under
        // CI or not), naming the package rather than skipping.
        assert!(
            installed("git"),
            "these tests need `git` (apt-get install git)"
        );
        let dir = tempfile::Builder::new()
            .prefix("ringops-test-repo-")
            .tempdir()
            .expect("temp dir");
        let repo = Repo { dir };
        repo.git(&["init", "--quiet", "-b", "main"]);
        repo
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The work tree as a string, for command lines.
    pub fn path_str(&self) -> &str {
        self.path().to_str().expect("UTF-8 temp path")
    }

    /// Runs `git` in the repository; panics unless it succeeds. Returns stdout, trimmed.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        isolate(&mut cmd);
        cmd.args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.path());
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "git {args:?} failed: {}", out.stderr);
        out.stdout.trim().to_owned()
    }

    /// Copies the tree under `from` into the repository at `to` ("" for the root).
    pub fn copy_in(&self, from: &Path, to: &str) {
        copy_tree(from, &self.path().join(to));
    }

    /// Makes the work tree hold exactly the tree under `from` (`.git` kept).
    pub fn replace_with(&self, from: &Path) {
        for entry in std::fs::read_dir(self.path()).expect("read work tree") {
            let path = entry.expect("entry").path();
            if path.file_name() == Some(OsStr::new(".git")) {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove dir");
            } else {
                std::fs::remove_file(&path).expect("remove file");
            }
        }
        self.copy_in(from, "");
    }

    /// Writes a file of the work tree, creating its folders.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Reads a file of the work tree.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Replaces the only occurrence of `from` in a work-tree file by `to`.
    #[track_caller]
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(text.matches(from).count(), 1, "`{from}` once in {rel}");
        self.write(rel, &text.replace(from, to));
    }

    /// Stages everything and commits; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs `ringops <args> --repo <this repo>` from the repository's root.
    pub fn ringops(&self, args: &[&str]) -> Run {
        run(ringops_in(self.path())
            .args(args)
            .args(["--repo", self.path_str()]))
    }

    /// Like [`Repo::ringops`] with extra environment variables.
    pub fn ringops_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = ringops_in(self.path());
        cmd.args(args).args(["--repo", self.path_str()]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }
}

/// Copies a folder tree (regular files only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir` (recursively), by `/`-separated relative path.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A temporary folder holding one file per secret.
pub fn secrets_dir(secrets: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ringops-test-secrets-")
        .tempdir()
        .expect("temp dir");
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), value).expect("write secret");
    }
    dir
}

/// A temporary folder for `render --out`.
pub fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ringops-test-out-")
        .tempdir()
        .expect("temp dir")
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Insta settings that hide commit ids: full (40 hex) and short (12 hex). Artifact
/// hashes and fingerprints (64 hex) are deterministic and stay.
pub fn commit_filters() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{40}\b", "[commit]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[short]");
    settings.set_prepend_module_to_snapshot(true);
    settings
}

/// The example fleet's folder inside test repositories.
pub const FLEET: &str = "examples/fleet";

/// A repository holding the example fleet, committed once, and a state folder.
pub struct Fleet {
    /// The repository.
    pub repo: Repo,
    /// The state folder (`--state`).
    pub state: tempfile::TempDir,
}

impl Fleet {
    /// The example fleet in a new repository, one commit.
    pub fn new() -> Self {
        let repo = Repo::init();
        repo.copy_in(&project().join(FLEET), FLEET);
        repo.commit("example fleet");
        let state = tempfile::tempdir().expect("state dir");
        Fleet { repo, state }
    }

    /// Runs `ringops <args>` on the fleet with its state and the example secrets.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        output(&mut cmd)
    }

    /// The command [`Fleet::run`] runs, to start it in the background.
    pub fn command(&self, args: &[&str]) -> Command {
        let secrets = project().join("examples/secrets");
        let mut cmd = ringops_in(self.repo.path());
        cmd.args(args)
            .args(["--repo", self.repo.path_str(), "--path", FLEET])
            .arg("--state")
            .arg(self.state.path())
            .arg("--secrets-dir")
            .arg(secrets);
        cmd
    }

    /// A local worker's directory.
    pub fn worker(&self, name: &str) -> PathBuf {
        self.state.path().join("workers").join(name)
    }
}

/// A temporary folder holding `state/`, an empty `cwd/`, and no repository: for
/// commands that only read or write the state.
pub struct World {
    /// The folder.
    pub dir: tempfile::TempDir,
}

impl World {
    /// A new, empty world.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("cwd")).expect("mkdir cwd");
        Self { dir }
    }

    /// The state folder.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `ringops <args> --state <state> --repo <nowhere>`, run from the empty `cwd/`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = ringops_in(&self.dir.path().join("cwd"));
        cmd.args(args)
            .arg("--state")
            .arg(self.state())
            .arg("--repo")
            .arg(self.dir.path().join("no-repo-here"));
        cmd
    }

    /// Runs [`World::command`].
    pub fn ringops(&self, args: &[&str]) -> Run {
        output(&mut self.command(args))
    }

    /// `ringops <args>`, expected to exit 0 with JSON on stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let run = self.ringops(args);
        run.expect(0);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    }

    /// Insta settings hiding the temporary folder.
    pub fn filters(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        let root = self.dir.path().display().to_string();
        let escaped: String = root
            .chars()
            .flat_map(|c| match c {
                '.' | '+' | '(' | ')' | '[' | ']' | '$' | '^' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        settings.add_filter(&escaped, "[TMP]");
        settings
    }
}

/// Every file of a worker directory but its `.ringops/` records, by relative path.
pub fn worker_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == ".ringops") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("inside");
                out.insert(
                    rel.display().to_string(),
                    std::fs::read(&path).expect("read"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A process started in the background with its stdout and stderr in files, so a test
/// can wait for what it prints while it runs. Killed when dropped.
pub struct Background {
    child: Child,
    logs: tempfile::TempDir,
}

/// How long a background process may take to print or end: generous, for a debug
/// build on a busy two-core machine.
const BACKGROUND_BOUND: Duration = Duration::from_secs(30);

impl Background {
    /// Starts `cmd` with no input and its output in files.
    pub fn spawn(cmd: &mut Command) -> Background {
        let logs = tempfile::Builder::new()
            .prefix("ringops-test-child-")
            .tempdir()
            .expect("temp dir");
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Background { child, logs }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits until its stderr holds `text`; panics, showing its output, when it ends
    /// first or after 30 s.
    #[track_caller]
    pub fn wait_stderr(&mut self, text: &str) {
        let deadline = Instant::now() + BACKGROUND_BOUND;
        while !self.stderr().contains(text) {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "it ended ({status}) before printing `{text}`\n--- stderr\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{text}` not printed within {BACKGROUND_BOUND:?}\n--- stderr\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most 30 s) for it to end; its exit status.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BACKGROUND_BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "it did not end within {BACKGROUND_BOUND:?}\n--- stderr\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
