//! Remote repositories over ssh: a real OpenSSH server on a loopback port serving a
//! bare repository, reached by the real binary with a key file and checked against a
//! known_hosts file (an unknown host key or a wrong key is refused, naming the URL).
//! Skipped with a note when `sshd` or `ssh-keygen` is not installed; under CI that
//! fails instead (`.ci/run` installs them).

mod common;

use common::{FLEET, Fleet, output, project, ringops_in};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// An OpenSSH server on 127.0.0.1 accepting one client key, killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// `None` when OpenSSH is not installed (a skip note; under CI a failure).
    fn start() -> Option<Sshd> {
        if !common::require_tool(SSHD, "openssh-server")
            || !common::require_tool("ssh-keygen", "openssh-client")
        {
            return None;
        }
        // sshd refuses to start without its privilege separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("temp dir");
        for key in ["host", "client", "stranger"] {
            keygen(&dir.path().join(key));
        }
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let port = free_port();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("config");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let sshd = Sshd { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(sshd)
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A home folder whose `.ssh/known_hosts` knows this server's host key.
    fn home_knowing_the_host(&self) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("home");
        std::fs::create_dir(home.path().join(".ssh")).expect(".ssh");
        let public = std::fs::read_to_string(self.key("host.pub")).expect("host key");
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let line = format!("[127.0.0.1]:{} {}\n", self.port, key.join(" "));
        std::fs::write(home.path().join(".ssh/known_hosts"), line).expect("known_hosts");
        home
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

#[test]
fn a_repository_over_ssh_is_fetched_with_the_key_file_and_a_known_host_only() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let fleet = Fleet::new();
    let origin = sshd.dir.path().join("origin.git");
    let origin = origin.to_str().expect("UTF-8");
    fleet
        .repo
        .git(&["clone", "--quiet", "--bare", fleet.repo.path_str(), origin]);
    let url = format!("ssh://{}@127.0.0.1:{}{origin}", user(), sshd.port);
    let home = sshd.home_knowing_the_host();
    let plan = |key: &str, home: &Path, state: &str| {
        let config = home.join("ringops.toml");
        let key = sshd.key(key);
        std::fs::write(
            &config,
            format!("repo = \"{url}\"\nssh_key_file = \"{}\"\n", key.display()),
        )
        .expect("config");
        let mut cmd = ringops_in(fleet.repo.path());
        cmd.env("HOME", home)
            .args(["plan", "--ring", "dev", "--path", FLEET, "--config"])
            .arg(&config)
            .arg("--state")
            .arg(fleet.state.path().join(state))
            .arg("--secrets-dir")
            .arg(project().join("examples/secrets"));
        output(&mut cmd)
    };

    let run = plan("client", home.path(), "a");
    run.expect(0);
    assert!(
        run.stdout.contains("20 to create") && run.stdout.contains("core-dev-1"),
        "{}",
        run.stdout
    );

    let run = plan("stranger", home.path(), "b");
    run.expect(1);
    assert!(
        run.stderr.contains(&format!("cannot fetch {url}"))
            && run.stderr.contains("authentication"),
        "{}",
        run.stderr
    );

    let unknown = tempfile::tempdir().expect("home");
    std::fs::create_dir(unknown.path().join(".ssh")).expect(".ssh");
    let run = plan("client", unknown.path(), "c");
    run.expect(1);
    assert!(run.stderr.contains("hostkey"), "{}", run.stderr);
}
