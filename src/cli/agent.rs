//! `ringops agent --config agent.toml`: the settings, the token, logging, then the
//! agent's HTTP service until SIGTERM or SIGINT.

use super::daemon::{LogFormat, init_logging};
use super::{Failure, Outcome};
use crate::adapters::http_auth::{Secret, read_secret};
use crate::agent::config::{self, Serving, Settings, TOKEN_CREDENTIAL};
use crate::agent::{Agent, Auth, api, heal, tls};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `agent` (the configuration file is the global `--config`).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: Option<&Path>, args: &AgentArgs) -> Outcome {
    let path = config.ok_or_else(|| {
        Failure::user("ringops agent needs --config <agent.toml> (listen, dir, tls_cert, tls_key, client_ca or token_file)")
    })?;
    let settings = config::load(path).map_err(|e| Failure::User(e.into()))?;
    init_logging(args.log_format);
    let (auth, tls) = match &settings.serving {
        Serving::Tls { cert, key, clients } => {
            let config = tls::server_config(cert, key, clients.as_ref())
                .map_err(|e| Failure::User(e.into()))?;
            let auth = match clients {
                Some(_) => Auth::ClientCertificate,
                None => Auth::Token(token(&settings)?),
            };
            (auth, Some(config))
        }
        Serving::Plain => (Auth::Token(token(&settings)?), None),
    };
    let agent = Agent::new(settings.dir.clone(), auth, settings.body_limit)
        .with_hooks(settings.hooks.clone());
    let agent = Arc::new(agent);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(e.into()))?;
    runtime.block_on(serve(&settings, agent, tls))?;
    Ok(ExitCode::SUCCESS)
}

/// Binds, then serves plain or TLS until a stop signal.
async fn serve(
    settings: &Settings,
    agent: Arc<Agent>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Result<(), Failure> {
    let listen = settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::user(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Internal(e.into()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (wake, woken) = tokio::sync::mpsc::channel(1);
    let watch = heal::watch(&settings.dir, wake.clone())
        .inspect_err(|e| {
            tracing::warn!(
                error = %e,
                "cannot watch the worker directory; hot edits are found every {:?} only (inotify limits: raise fs.inotify.max_user_watches)",
                heal::SWEEP
            );
        })
        .ok();
    let healing = tokio::spawn(heal::run(Arc::clone(&agent), woken));
    tracing::info!(%addr, %scheme, dir = %settings.dir.display(), "agent listening");
    api::serve(listener, tls, agent, settings.http, stop_signal()).await;
    healing.abort();
    drop((watch, wake));
    tracing::info!("agent stopped");
    Ok(())
}

/// The agent token: `token_file`, else the systemd credential `agent-token`.
fn token(settings: &Settings) -> Result<Secret, Failure> {
    let path = settings
        .token_file
        .clone()
        .or_else(|| super::config::credential(TOKEN_CREDENTIAL))
        .ok_or_else(|| {
            Failure::user(format!(
                "no agent token: set token_file in the configuration, or give the service the credential `{TOKEN_CREDENTIAL}`"
            ))
        })?;
    read_secret(&path).map_err(|e| Failure::User(e.into()))
}

/// Completes on the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping: finishing the requests in flight");
}
