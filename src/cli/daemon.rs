//! `ringops daemon`: settings from flags and `ringops.toml`, logging, the HTTP service
//! and the reconcile loop.

use super::config::FileConfig;
use super::{Cli, Context, Failure, Outcome};
use crate::adapters::http_auth::{Secret, is_loopback, read_secret};
use crate::adapters::http_server::Limits;
use crate::adapters::notify::{Notifier, NotifySettings};
use crate::adapters::secrets::HostSecrets;
use crate::daemon::http::{self, Service};
use crate::daemon::reconcile::Paths;
use crate::daemon::run::{self, DaemonError, Settings, Shared};
use clap::{Args, ValueEnum};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Coloured lines on a terminal, plain lines under journald, else plain with times.
    #[default]
    Auto,
    /// Plain lines with times.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Address of the HTTP API (default 127.0.0.1:7070; `listen` in ringops.toml).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// How often to look for a new commit without being told (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub poll_interval: Option<Duration>,
    /// How often to read every worker in full for drift (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub drift_interval: Option<Duration>,
    /// How long after a deployment failed on a worker it is tried again, doubling each
    /// time up to 15 min (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// How long SIGTERM waits for a pass in progress (a switch, a rollout waiting for a
    /// health check or an unreachable agent) before leaving it for the next start to
    /// mark failed (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stop_grace: Option<Duration>,
    /// File holding the Git webhook's secret (default: the systemd credential
    /// `webhook-secret` when there is one; none: the webhook is off).
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the bearer token `/metrics` and `/api/v1/*` require.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// Runs the daemon until SIGTERM.
pub fn run(cli: &Cli, ctx: &Context, args: &DaemonArgs) -> Outcome {
    init_logging(args.log_format);
    let file = read_config(cli)?;
    let settings = settings_from(cli, ctx, args, &file)?;
    let listen = listen_addr(args, &file)?;
    let shared = Shared::default();
    let service = service(args, &file, listen, &settings, &shared)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(e.into()))?;
    let reload = || {
        let file = read_config(cli).map_err(|e| message(&e))?;
        settings_from(cli, ctx, args, &file).map_err(|e| message(&e))
    };
    runtime.block_on(async {
        let mut shared = shared;
        shared.notifier = start_notifier(&file)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::user(format!("cannot listen on {listen}: {e}")))?;
        let limits = file.http.limits(settings.stop_grace);
        let daemon = run::run(settings, shared, reload);
        serve_while(listener, service, limits, daemon).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The HTTP service over what the loop shares, with the webhook secret and the API
/// token read; refuses a non-loopback `listen` without a token.
fn service(
    args: &DaemonArgs,
    file: &FileConfig,
    listen: SocketAddr,
    settings: &Settings,
    shared: &Shared,
) -> Result<Service, Failure> {
    let webhook_secret = secret(
        args.webhook_secret_file
            .clone()
            .or(file.webhook_secret_file.clone()),
        "webhook-secret",
    )?;
    let api_token = secret(
        args.api_token_file.clone().or(file.api_token_file.clone()),
        "api-token",
    )?;
    if !is_loopback(&listen) && api_token.is_none() {
        return Err(Failure::user(format!(
            "refusing to serve the API on {listen} without an API token: set api_token_file, or listen on 127.0.0.1"
        )));
    }
    Ok(Service {
        state_dir: settings.paths.state_dir.clone(),
        ready: Arc::clone(&shared.ready),
        metrics: Arc::clone(&shared.metrics),
        trigger: Arc::clone(&shared.trigger),
        webhook_secret,
        api_token,
    })
}

/// The notifier posting to the configured targets; none when there are none. Starts
/// its tasks, so it runs inside the runtime.
fn start_notifier(file: &FileConfig) -> Result<Option<Notifier>, Failure> {
    if file.notify.is_empty() {
        return Ok(None);
    }
    let settings = NotifySettings {
        targets: file.notify.clone(),
        ..Default::default()
    };
    let notifier = Notifier::start(settings).map_err(|e| Failure::User(e.into()))?;
    Ok(Some(notifier))
}

/// Serves `service` on `listener` while `daemon` (the reconcile loop) runs. The server
/// stops at SIGTERM or SIGINT, draining its connections (at most `limits.stop_grace`)
/// while the loop finishes its pass, or when the loop returns.
async fn serve_while(
    listener: tokio::net::TcpListener,
    service: Service,
    limits: Limits,
    daemon: impl Future<Output = Result<(), DaemonError>>,
) -> Result<(), Failure> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::clone(&stop);
    let signalled = stop_signal().map_err(|e| Failure::Internal(e.into()))?;
    let server = tokio::spawn(http::serve(listener, service, limits, async move {
        tokio::select! {
            () = signalled => {}
            () = stopped.notified() => {}
        }
    }));
    let result = daemon.await;
    stop.notify_one();
    let _ = server.await;
    result.map_err(|e| Failure::Internal(e.into()))
}

/// Completes at the first SIGTERM or SIGINT (the loop watches them too).
fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn message(failure: &Failure) -> String {
    match failure {
        Failure::User(e) | Failure::Internal(e) => crate::adapters::causes(e.as_ref()),
    }
}

fn read_config(cli: &Cli) -> Result<FileConfig, Failure> {
    let cwd = std::env::current_dir().map_err(|e| Failure::Internal(e.into()))?;
    FileConfig::find(cli.config.as_deref(), &cwd).map_err(|e| Failure::User(e.into()))
}

/// Flags win over the file, the file over defaults.
fn settings_from(
    cli: &Cli,
    ctx: &Context,
    args: &DaemonArgs,
    file: &FileConfig,
) -> Result<Settings, Failure> {
    let duration = |flag: Option<Duration>, key: &Option<String>, name: &str| match (flag, key) {
        (Some(d), _) => Ok(d),
        (None, Some(text)) => humantime::parse_duration(text)
            .map_err(|e| Failure::user(format!("{name} = \"{text}\" in the configuration: {e}"))),
        (None, None) => Ok(Duration::from_secs(60)),
    };
    let cwd = std::env::current_dir().map_err(|e| Failure::Internal(e.into()))?;
    Ok(Settings {
        paths: Paths {
            repo: file.repo_location(cli.repo.as_deref(), &cwd)?,
            path: cli.path.clone().or(file.path.clone()).unwrap_or_default(),
            branch: cli.branch.clone().or(file.branch.clone()),
            state_dir: ctx.state_dir().to_owned(),
        },
        secrets: HostSecrets::new(cli.secrets_dir.clone().or(file.secrets_dir.clone())),
        poll_interval: duration(args.poll_interval, &file.poll_interval, "poll_interval")?,
        drift_interval: duration(args.drift_interval, &file.drift_interval, "drift_interval")?,
        retry_backoff: match (args.retry_backoff, &file.retry_backoff) {
            (None, None) => Duration::from_secs(30),
            (flag, key) => duration(flag, key, "retry_backoff")?,
        },
        stop_grace: match (args.stop_grace, &file.stop_grace) {
            (None, None) => Duration::from_secs(30),
            (flag, key) => duration(flag, key, "stop_grace")?,
        },
        concurrency: file.concurrency(),
    })
}

fn listen_addr(args: &DaemonArgs, file: &FileConfig) -> Result<SocketAddr, Failure> {
    let text = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
    text.parse().map_err(|e| {
        Failure::user(format!(
            "listen address `{text}`: {e} (e.g. 127.0.0.1:7070)"
        ))
    })
}

/// A secret from `file`, else from the systemd credential `credential`, else none.
fn secret(file: Option<PathBuf>, credential: &str) -> Result<Option<Secret>, Failure> {
    let path = file.or_else(|| super::config::credential(credential));
    match path {
        None => Ok(None),
        Some(p) => read_secret(&p)
            .map(Some)
            .map_err(|e| Failure::User(anyhow::Error::new(e))),
    }
}

/// Human lines on a terminal, plain lines for journald (it adds times), JSON on request.
pub(super) fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RINGOPS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,notify=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Auto if journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto if std::io::stderr().is_terminal() => builder.try_init(),
        LogFormat::Auto | LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
