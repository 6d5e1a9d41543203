//! The certificates of the README's `openssl` steps (the blocks after each
//! `<!-- openssl-steps -->`), made by running those exact steps with `sh` in a
//! temporary folder, the example agents' addresses replaced by 127.0.0.1.

use super::agent::{Agent, AgentFleet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The README's example addresses of agents web-1 and web-2.
const EXAMPLE_ADDRESSES: [&str; 2] = ["IP:10.0.3.21", "IP:10.0.3.22"];

/// A folder holding agent-ca, daemon-ca, daemon-client, web-1, web-2 (`.pem`, `.key`)
/// and agent-crl.pem, as the README makes them.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// The dev agents over mutual TLS, each serving web-1's certificate (all on
    /// 127.0.0.1) and taking clients with a certificate from the CAs of `client_ca`.
    pub fn fleet(&self, client_ca: &Path) -> AgentFleet {
        let (cert, key) = self.server("web-1");
        let toml = format!("client_ca = \"{}\"\n", client_ca.display());
        AgentFleet::start_with(Some((&cert, &key)), &[], &toml)
    }

    /// Restarts `agent` serving web-2's certificate and runs the README's step that
    /// revokes it; the agent's target.
    pub fn serve_revoked(&self, agent: &mut Agent) -> String {
        let (cert, key) = self.server("web-2");
        let serving = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            self.path("daemon-ca.pem").display()
        );
        std::fs::write(agent.home.path().join("serving.toml"), serving).expect("serving");
        agent.kill();
        agent.restart();
        self.run_step(1);
        agent.target()
    }

    /// Runs the README's first block; `None` without `openssl` (a skip note; under CI
    /// a failure).
    pub fn new() -> Option<Pki> {
        if !super::require_tool("openssl", "openssl") {
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.run_step(0);
        Some(pki)
    }

    /// Runs the README's block `index` (0: make everything, 1: revoke web-2) here.
    pub fn run_step(&self, index: usize) {
        let mut script = readme_steps()
            .get(index)
            .unwrap_or_else(|| panic!("the README has no openssl block {index}"))
            .clone();
        for address in EXAMPLE_ADDRESSES {
            assert!(
                script.contains(address) || index > 0,
                "{address} in the README"
            );
            script = script.replace(address, "IP:127.0.0.1");
        }
        let out = Command::new("sh")
            .args(["-euc", &script])
            .current_dir(self.dir.path())
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "the README's openssl block {index} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `name.pem` (or any file) in the folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A server certificate and its key, as [`super::agent::Agent::start`] takes them.
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// The environment of a daemon presenting `client` (a name) and trusting the agent
    /// CA, with the agent CA's revocation list when `crl`.
    pub fn daemon_env(&self, client: &str, crl: bool) -> Vec<(&'static str, PathBuf)> {
        let mut env = vec![
            ("RINGOPS_AGENT_CA_FILE", self.path("agent-ca.pem")),
            (
                "RINGOPS_AGENT_CLIENT_CERT_FILE",
                self.path(&format!("{client}.pem")),
            ),
            (
                "RINGOPS_AGENT_CLIENT_KEY_FILE",
                self.path(&format!("{client}.key")),
            ),
        ];
        if crl {
            env.push(("RINGOPS_AGENT_CRL_FILE", self.path("agent-crl.pem")));
        }
        env
    }
}

/// The `sh` blocks of the README that follow `<!-- openssl-steps -->`.
fn readme_steps() -> Vec<String> {
    let readme = std::fs::read_to_string(super::project().join("README.md")).expect("README");
    readme
        .split("<!-- openssl-steps -->\n```sh\n")
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap_or_default().to_owned())
        .collect()
}

/// Whether `openssl verify` accepts `cert` against `ca` (and `crl` when given).
pub fn verifies(ca: &Path, cert: &Path, crl: Option<&Path>) -> bool {
    let mut verify = Command::new("openssl");
    verify.arg("verify").arg("-CAfile").arg(ca);
    if let Some(crl) = crl {
        verify.arg("-crl_check").arg("-CRLfile").arg(crl);
    }
    let out = verify.arg(cert).output().expect("run openssl verify");
    out.status.success()
}

/// Writes the PEM files `parts` one after the other to `out` (a CA file during a
/// rotation).
pub fn bundle(out: &Path, parts: &[PathBuf]) {
    let text: Vec<String> = parts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    std::fs::write(out, text.concat()).expect("write the bundle");
}
