//! `agent.toml`: raw keys → checked [`Settings`], every problem reported with its line.
//!
//! `[hooks.NAME]` tables are the only commands the agent runs: the daemon names one
//! (`check`/`reload` of a worker group), never sends a command line.

use crate::adapters::http_auth::is_loopback;
use crate::adapters::link::http::wire::HOOK_TIMEOUT_MAX;
use crate::model::desired::{HookSpec, hook_name_problem};
use crate::pipeline::checks::DEFAULT_HOOK_TIMEOUT;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The systemd credential holding the token when `token_file` is not set.
pub const TOKEN_CREDENTIAL: &str = "agent-token";

/// Default largest `PUT /v1/generation` body: 256 MiB.
pub const DEFAULT_BODY_LIMIT_MB: usize = 256;

/// `agent.toml` as written. Unknown keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. `0.0.0.0:7443`.
    pub listen: String,
    /// The worker directory.
    pub dir: PathBuf,
    /// File holding the bearer token (default: the systemd credential `agent-token`).
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates (one or more) that a client's certificate must chain to:
    /// mutual TLS, replacing the token.
    pub client_ca: Option<PathBuf>,
    /// PEM certificate revocation lists for the client certificates (needs `client_ca`).
    pub client_crl: Option<PathBuf>,
    /// Serve plain HTTP; accepted only for a loopback `listen` (tests).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Largest generation body in MiB (default 256).
    pub body_limit_mb: Option<usize>,
    /// On SIGTERM, how long open connections may still run (default `30s`).
    #[serde(default, deserialize_with = "crate::adapters::http_server::duration")]
    pub stop_grace: Option<std::time::Duration>,
    /// Connection cap and client timeouts.
    #[serde(default)]
    pub http: crate::adapters::http_server::HttpConfig,
    /// The hooks the daemon may name, by name.
    #[serde(default)]
    pub hooks: BTreeMap<HookKey, FileHook>,
}

/// The name of a `[hooks.NAME]` table, checked as it is read (so an error has its line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HookKey(pub String);

impl TryFrom<String> for HookKey {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match hook_name_problem(&name) {
            Some(problem) => Err(format!("hook name `{name}` {problem}")),
            None => Ok(Self(name)),
        }
    }
}

/// One `[hooks.NAME]` table: what the agent runs when the daemon names it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHook {
    /// Program and arguments, run without a shell.
    pub command: HookCommand,
    /// Time limit, e.g. `30s` (default 30s, at most [`HOOK_TIMEOUT_MAX`]).
    #[serde(default)]
    pub timeout: HookTimeout,
}

/// A hook's program and arguments: at least a program.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct HookCommand(pub Vec<String>);

impl TryFrom<Vec<String>> for HookCommand {
    type Error = &'static str;

    fn try_from(command: Vec<String>) -> Result<Self, &'static str> {
        match command.first() {
            Some(program) if !program.is_empty() => Ok(Self(command)),
            _ => {
                Err("a hook's `command` needs a program: a list like [\"/usr/sbin/nginx\", \"-t\"]")
            }
        }
    }
}

/// A hook's time limit: a duration from 1 ms to [`HOOK_TIMEOUT_MAX`].
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct HookTimeout(pub Duration);

impl Default for HookTimeout {
    fn default() -> Self {
        Self(DEFAULT_HOOK_TIMEOUT)
    }
}

impl TryFrom<String> for HookTimeout {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let timeout = humantime::parse_duration(&text)
            .map_err(|e| format!("invalid duration `{text}`: {e} (e.g. `30s`, `2m`)"))?;
        if timeout.is_zero() || timeout > HOOK_TIMEOUT_MAX {
            return Err(format!(
                "timeout `{text}` is out of range: from 1ms to {}",
                humantime::format_duration(HOOK_TIMEOUT_MAX)
            ));
        }
        Ok(Self(timeout))
    }
}

/// How the agent serves: TLS, or plain HTTP on loopback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serving {
    /// rustls with this certificate chain and key.
    Tls {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
        /// Mutual TLS: the client certificates accepted, instead of a token.
        clients: Option<ClientAuth>,
    },
    /// Plain HTTP (loopback only).
    Plain,
}

/// The client certificates a mutual-TLS agent accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM CA certificates; a client certificate must chain to one of them.
    pub ca: PathBuf,
    /// PEM revocation lists, when set.
    pub crl: Option<PathBuf>,
}

/// Checked settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The worker directory (absolute).
    pub dir: PathBuf,
    /// The token file, if the configuration names one.
    pub token_file: Option<PathBuf>,
    /// TLS or plain.
    pub serving: Serving,
    /// Largest body in bytes.
    pub body_limit: usize,
    /// Connection cap, client timeouts and stop grace of the HTTP server.
    pub http: crate::adapters::http_server::Limits,
    /// The hooks the daemon may name, by name.
    pub hooks: BTreeMap<String, HookSpec>,
}

/// Why `agent.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    /// The file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] crate::adapters::config_file::ConfigError),
    /// The keys are valid alone but not together.
    #[error("{path}: {message}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads and checks `path`; relative paths in it are taken from its folder.
pub fn load(path: &Path) -> Result<Settings, AgentConfigError> {
    let file = crate::adapters::config_file::read(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    check(path, file, base)
}

/// Parses the text of `path`, locating errors by line and column.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, AgentConfigError> {
    Ok(crate::adapters::config_file::parse(path, text)?)
}

/// The settings `file` asks for, or why they cannot be used together.
pub fn check(path: &Path, file: FileConfig, base: &Path) -> Result<Settings, AgentConfigError> {
    let unusable = |message: String| AgentConfigError::Unusable {
        path: path.to_owned(),
        message,
    };
    let listen: SocketAddr = file.listen.parse().map_err(|e| {
        unusable(format!(
            "listen = \"{}\": {e} (e.g. 0.0.0.0:7443)",
            file.listen
        ))
    })?;
    let rebase = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let serving = serving(&file, listen, rebase).map_err(unusable)?;
    if matches!(
        &serving,
        Serving::Tls {
            clients: Some(_),
            ..
        }
    ) && file.token_file.is_some()
    {
        return Err(unusable(
            "client_ca replaces the token: remove token_file (with mutual TLS the agent holds no shared secret)".to_owned(),
        ));
    }
    let body_limit = file.body_limit_mb.unwrap_or(DEFAULT_BODY_LIMIT_MB);
    if body_limit == 0 {
        return Err(unusable("body_limit_mb must be at least 1".to_owned()));
    }
    Ok(Settings {
        listen,
        dir: rebase(file.dir),
        token_file: file.token_file.map(rebase),
        serving,
        body_limit: body_limit.saturating_mul(1 << 20),
        http: file.http.limits(
            file.stop_grace
                .unwrap_or(crate::adapters::http_server::DEFAULT_STOP_GRACE),
        ),
        hooks: hooks_of(file.hooks),
    })
}

/// TLS (mutual with `client_ca`) or plain HTTP on loopback, or why neither.
fn serving(
    file: &FileConfig,
    listen: SocketAddr,
    rebase: impl Fn(PathBuf) -> PathBuf,
) -> Result<Serving, String> {
    let clients = match (&file.client_ca, &file.client_crl) {
        (Some(ca), crl) => Some(ClientAuth {
            ca: rebase(ca.clone()),
            crl: crl.clone().map(&rebase),
        }),
        (None, Some(_)) => return Err("client_crl needs client_ca".to_owned()),
        (None, None) => None,
    };
    match (&file.tls_cert, &file.tls_key) {
        (Some(cert), Some(key)) => Ok(Serving::Tls {
            cert: rebase(cert.clone()),
            key: rebase(key.clone()),
            clients,
        }),
        (Some(_), None) | (None, Some(_)) => {
            Err("tls_cert and tls_key go together: set both".to_owned())
        }
        (None, None) if clients.is_some() => {
            Err("client_ca needs TLS: set tls_cert and tls_key".to_owned())
        }
        (None, None) if file.allow_plain_http && is_loopback(&listen) => Ok(Serving::Plain),
        (None, None) if file.allow_plain_http => Err(format!(
            "allow_plain_http is accepted only on a loopback address, not {listen}: set tls_cert and tls_key"
        )),
        (None, None) => Err(
            "no TLS: set tls_cert and tls_key (or allow_plain_http = true on a loopback listen, for tests)".to_owned(),
        ),
    }
}

/// The hooks of the file as the hook runner takes them.
fn hooks_of(hooks: BTreeMap<HookKey, FileHook>) -> BTreeMap<String, HookSpec> {
    hooks
        .into_iter()
        .map(|(HookKey(name), hook)| {
            let spec = HookSpec {
                command: hook.command.0,
                timeout: hook.timeout.0,
            };
            (name, spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, AgentConfigError> {
        let path = Path::new("/etc/ringops/agent.toml");
        check(path, parse(path, text)?, Path::new("/etc/ringops"))
    }

    #[test]
    fn unknown_keys_are_located() {
        let err = settings("listen = \"127.0.0.1:7443\"\ndir = \"w\"\ntoken_fil = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/ringops/agent.toml:3:1: unknown field `token_fil`"),
            "{err}"
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let plain = "dir = \"w\"\nallow_plain_http = true\n";
        let ok = settings(&format!("listen = \"127.0.0.1:0\"\n{plain}")).unwrap();
        assert_eq!(ok.serving, Serving::Plain);
        assert_eq!(ok.dir, Path::new("/etc/ringops/w"));
        let err = settings(&format!("listen = \"0.0.0.0:7443\"\n{plain}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only on a loopback address"), "{err}");
        let err = settings("listen = \"127.0.0.1:0\"\ndir = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no TLS"), "{err}");
    }

    #[test]
    fn client_ca_is_mutual_tls_without_a_token() {
        let head = "listen = \"0.0.0.0:7443\"\ndir = \"w\"\n";
        let tls = "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        let ok = settings(&format!(
            "{head}{tls}client_ca = \"daemon-ca.pem\"\nclient_crl = \"/crl.pem\"\n"
        ))
        .unwrap();
        let clients = ClientAuth {
            ca: PathBuf::from("/etc/ringops/daemon-ca.pem"),
            crl: Some(PathBuf::from("/crl.pem")),
        };
        assert!(
            matches!(&ok.serving, Serving::Tls { clients: Some(c), .. } if *c == clients),
            "{:?}",
            ok.serving
        );
        let refused = [
            format!("{head}{tls}client_ca = \"ca.pem\"\ntoken_file = \"token\"\n"),
            format!("{head}{tls}client_crl = \"crl.pem\"\n"),
            "listen = \"127.0.0.1:0\"\ndir = \"w\"\nallow_plain_http = true\nclient_ca = \"ca.pem\"\n".to_owned(),
        ];
        let said: Vec<String> = refused
            .iter()
            .map(|text| settings(text).unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!("client-ca-refusals", said.join("\n"));
    }

    #[test]
    fn hooks_are_read_by_name_and_each_problem_has_its_line() {
        let head = "listen = \"127.0.0.1:0\"\ndir = \"w\"\nallow_plain_http = true\n";
        let ok = settings(&format!(
            "{head}[hooks.validate]\ncommand = [\"/usr/sbin/nginx\", \"-t\"]\ntimeout = \"10s\"\n[hooks.reload]\ncommand = [\"true\"]\n"
        ))
        .unwrap();
        assert_eq!(
            ok.hooks["validate"],
            HookSpec {
                command: vec!["/usr/sbin/nginx".into(), "-t".into()],
                timeout: Duration::from_secs(10),
            }
        );
        assert_eq!(ok.hooks["reload"].timeout, DEFAULT_HOOK_TIMEOUT);
        let cases = [
            (
                "[hooks.validate]\ncommand = []\n",
                "5:11",
                "needs a program",
            ),
            (
                "[hooks.validate]\ncommand = [\"x\"]\ntimeout = \"1h\"\n",
                "6:11",
                "out of range",
            ),
            (
                "[hooks.validate]\ncommand = [\"x\"]\ntimeout = \"soon\"\n",
                "6:11",
                "invalid duration",
            ),
            ("[hooks.Validate]\ncommand = [\"x\"]\n", "4:8", "lowercase"),
            (
                "[hooks.validate]\ncommand = [\"x\"]\nshell = true\n",
                "6:1",
                "unknown field",
            ),
        ];
        for (hooks, at, says) in cases {
            let err = settings(&format!("{head}{hooks}")).unwrap_err().to_string();
            let located = format!("/etc/ringops/agent.toml:{at}: ");
            assert!(
                err.starts_with(&located) && err.contains(says),
                "{at} {says}: {err}"
            );
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let err = settings("listen = \"0.0.0.0:7443\"\ndir = \"w\"\ntls_cert = \"c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("go together"), "{err}");
        let ok = settings(
            "listen = \"0.0.0.0:7443\"\ndir = \"/w\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            ok.serving,
            Serving::Tls {
                cert: "/etc/ringops/c.pem".into(),
                key: "/etc/ringops/k.pem".into(),
                clients: None,
            }
        );
    }
}
