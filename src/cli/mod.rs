//! The command line: clap arguments, then thin commands over the library.
//! The only layer (with `main`) that uses anyhow.

pub mod agent;
pub mod apply;
pub mod clone;
pub mod config;
pub mod daemon;
pub mod drift;
pub mod history;
pub mod identity;
pub mod notify;
pub mod plan;
pub mod promote;
pub mod render;
pub mod rollback;
pub mod status;
pub mod validate;

use crate::adapters::git::mirror::{MirrorError, RepoLocation};
use crate::adapters::git::{BlobMemo, Source, SourceError};
use crate::adapters::render_dir::RenderDirError;
use crate::adapters::secrets::HostSecrets;
use crate::model::{Bundle, Diagnostic};
use crate::pipeline::load::is_manifest;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// ringops: a GitOps reconciler for workflow fleets.
#[derive(Debug, Parser)]
#[command(name = "ringops", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (default: ./ringops.toml when it exists).
    #[arg(long, global = true, value_name = "FILE", env = "RINGOPS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository holding the manifests: a folder (default: the one containing the current
    /// directory) or a URL to mirror under the state folder (https, ssh, git, file).
    #[arg(long, global = true, value_name = "DIR|URL", env = "RINGOPS_REPO")]
    pub repo: Option<PathBuf>,
    /// Folder of the manifests inside the repository.
    #[arg(long, global = true, value_name = "SUBDIR", env = "RINGOPS_PATH")]
    pub path: Option<String>,
    /// Folder of the state: database, objects, local workers (default ./.ringops).
    #[arg(
        long = "state",
        global = true,
        value_name = "DIR",
        env = "RINGOPS_STATE"
    )]
    pub state_dir: Option<PathBuf>,
    /// The tracked branch: what `apply` deploys when no --rev is given (default HEAD).
    #[arg(long, global = true, value_name = "BRANCH", env = "RINGOPS_BRANCH")]
    pub branch: Option<String>,
    /// Folder with one file per secret, consulted before $CREDENTIALS_DIRECTORY and RINGOPS_SECRET_<NAME>.
    #[arg(long, global = true, value_name = "DIR", env = "RINGOPS_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifests at a commit; print every error as file:line:col.
    Validate(validate::ValidateArgs),
    /// Write the desired artifacts of every worker of a ring under a folder.
    Render(render::RenderArgs),
    /// Show what would change on each worker of a ring if HEAD replaced BASE.
    Plan(plan::PlanArgs),
    /// Apply a ring's desired state to its workers and record the deployment.
    Apply(apply::ApplyArgs),
    /// Per ring: the active deployment and whether its workers are in sync.
    Status(status::StatusArgs),
    /// The record of deployments.
    History(history::HistoryArgs),
    /// One deployment: its states, workers and artifacts.
    Show(history::ShowArgs),
    /// Files on the workers that differ from what the Active deployment wrote.
    Drift(drift::DriftArgs),
    /// Deploy an earlier successful deployment's files again, from the object store.
    Rollback(rollback::RollbackArgs),
    /// Run as a service: deploy every new commit to the auto-deploy rings, revert drift,
    /// serve the HTTP API.
    Daemon(daemon::DaemonArgs),
    /// Lift the pin a rollback put on a ring (the daemon deploys to it again) and its
    /// pause (a rollout it held goes on).
    Resume(rollback::ResumeArgs),
    /// Copy a managed artifact to a new path that ringops will leave alone.
    Clone(clone::CloneArgs),
    /// Move the bundle Active in the ring a ring promotes from into it, through its
    /// gates (freeze, window, approvals) and its rollout strategy.
    Promote(promote::PromoteArgs),
    /// Approve a deployment awaiting approval (identity from your approver token).
    Approve(promote::VerdictArgs),
    /// Reject a deployment awaiting approval; it fails.
    Reject(promote::VerdictArgs),
    /// Hold a ring: no new batch of its rollouts starts until `resume`.
    Pause(promote::HoldArgs),
    /// Stop a ring's queued or paused rollout (reverting it where `autoRevert` is set).
    Fail(promote::HoldArgs),
    /// Run the worker agent: serve one worker directory to the daemon over HTTPS
    /// (`--config agent.toml`).
    Agent(agent::AgentArgs),
}

/// Which manifests to read: a revision or the work tree.
#[derive(Debug, Args)]
pub struct Revision {
    /// Commit, branch or tag to read (default HEAD).
    #[arg(long, value_name = "REV", conflicts_with = "worktree")]
    pub rev: Option<String>,
    /// Read the files in the work tree, including uncommitted edits.
    #[arg(long)]
    pub worktree: bool,
}

/// Why a command failed: something the user can fix (exit 1) or not (exit 2).
#[derive(Debug)]
pub enum Failure {
    /// A mistake in what was asked.
    User(anyhow::Error),
    /// Something broke underneath.
    Internal(anyhow::Error),
}

impl Failure {
    /// A user mistake with a message.
    pub fn user(message: impl std::fmt::Display) -> Self {
        Failure::User(anyhow::anyhow!("{message}"))
    }
}

impl Failure {
    /// A user mistake when `user`, otherwise an internal failure.
    fn classify(user: bool, e: impl Into<anyhow::Error>) -> Self {
        if user {
            Failure::User(e.into())
        } else {
            Failure::Internal(e.into())
        }
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::classify(e.is_user_error(), e)
    }
}

impl From<MirrorError> for Failure {
    fn from(e: MirrorError) -> Self {
        Failure::classify(!matches!(e, MirrorError::Create { .. }), e)
    }
}

impl From<RenderDirError> for Failure {
    fn from(e: RenderDirError) -> Self {
        Failure::classify(e.is_user_error(), e)
    }
}

/// An engine error as a command failure: unsupported targets, bad worker paths and
/// failing hooks are the user's to fix; the rest broke underneath.
pub fn engine_failure(e: crate::engine::EngineError) -> Failure {
    Failure::classify(e.is_user_error(), e)
}

/// Runs the async engine to completion on a runtime made for this command.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::Internal(anyhow::Error::new(e).context("cannot start the runtime"))
        })?;
    Ok(runtime.block_on(future))
}

/// Repository files that differ between the ring's Active deployment and `head`: the
/// reasons a plan against the workers gives. Every file when nothing is Active yet, or
/// when the Active commit cannot be read any more.
pub fn changed_since_active(
    ctx: &Context,
    ring: &str,
    head: &Bundle,
) -> std::collections::BTreeSet<String> {
    let active = crate::adapters::store::StoreReader::open(ctx.state_dir())
        .ok()
        .and_then(|r| r.active(ring).ok().flatten());
    let changed = match (active, &head.commit) {
        (Some(active), Some(head_commit)) => ctx.source().ok().and_then(|source| {
            source
                .changed_files(&active.commit, head_commit, &ctx.path)
                .ok()
        }),
        _ => None,
    };
    changed.unwrap_or_else(|| head.files.keys().cloned().collect())
}

/// Leaves a command's largest values (a ring's compiled and observed state: hundreds of
/// thousands of allocations) to the operating system, which reclaims them at exit far
/// faster than freeing them one by one (about 0.1 s for 100,000 artifacts). Only for
/// values a one-shot command is done with just before it returns; never in the daemon,
/// whose memory must be freed.
fn leave_to_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Outcome of a command.
pub type Outcome = Result<ExitCode, Failure>;

/// Runs the parsed command line; the state changes a writing command made are posted
/// to the configured notification targets.
pub fn run(cli: Cli) -> Outcome {
    if let Command::Agent(args) = &cli.command {
        return agent::run(cli.config.as_deref(), args);
    }
    let ctx = Context::new(&cli)?;
    let writes = matches!(
        cli.command,
        Command::Apply(_)
            | Command::Rollback(_)
            | Command::Promote(_)
            | Command::Approve(_)
            | Command::Reject(_)
            | Command::Fail(_)
            | Command::Resume(_)
    );
    if !writes {
        return dispatch(&cli, &ctx);
    }
    let notifications = notify::Notifications::start(&ctx.notify)?;
    let outcome = dispatch(&cli, &ctx);
    notifications.finish(&ctx);
    outcome
}

fn dispatch(cli: &Cli, ctx: &Context) -> Outcome {
    match &cli.command {
        Command::Validate(args) => validate::run(ctx, args),
        Command::Render(args) => render::run(ctx, args),
        Command::Plan(args) => plan::run(ctx, args),
        Command::Apply(args) => apply::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::History(args) => history::run(ctx, args),
        Command::Show(args) => history::show(ctx, args),
        Command::Drift(args) => drift::run(ctx, args),
        Command::Rollback(args) => rollback::run(ctx, args),
        Command::Clone(args) => clone::run(ctx, args),
        Command::Resume(args) => rollback::resume(ctx, args),
        Command::Daemon(args) => daemon::run(cli, ctx, args),
        Command::Promote(args) => promote::promote(ctx, args),
        Command::Approve(args) => promote::approve(ctx, args),
        Command::Reject(args) => promote::reject(ctx, args),
        Command::Pause(args) => promote::pause(ctx, args),
        Command::Fail(args) => promote::fail(ctx, args),
        Command::Agent(args) => agent::run(cli.config.as_deref(), args),
    }
}

/// What commands need: where the repository, manifests, state and secrets are.
pub struct Context {
    repo: RepoLocation,
    /// Set once a remote repository's mirror was fetched by this command.
    fetched: std::sync::atomic::AtomicBool,
    path: String,
    state_dir: PathBuf,
    branch: Option<String>,
    secrets: HostSecrets,
    approvers: Vec<identity::ApproverEntry>,
    notify: Vec<crate::adapters::notify::TargetConfig>,
    /// Blobs read from the repository so far: each is inflated once per command.
    blobs: BlobMemo,
    /// How many workers are read or switched at once.
    concurrency: usize,
}

impl Context {
    fn new(cli: &Cli) -> Result<Self, Failure> {
        let cwd = std::env::current_dir().map_err(|e| Failure::Internal(e.into()))?;
        let file = config::FileConfig::find(cli.config.as_deref(), &cwd)
            .map_err(|e| Failure::User(e.into()))?;
        let repo = file.repo_location(cli.repo.as_deref(), &cwd)?;
        let concurrency = file.concurrency();
        // Absolute, because worker locations are recorded from it.
        let state_dir = cwd.join(
            cli.state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(".ringops")),
        );
        Ok(Context {
            concurrency,
            repo,
            fetched: std::sync::atomic::AtomicBool::new(false),
            path: cli.path.clone().or(file.path).unwrap_or_default(),
            state_dir,
            branch: cli.branch.clone().or(file.branch),
            secrets: HostSecrets::new(cli.secrets_dir.clone().or(file.secrets_dir)),
            approvers: file.approvers,
            notify: file.notify,
            blobs: BlobMemo::default(),
        })
    }

    /// The repository; opened only by the commands that read manifests. A remote one is
    /// fetched into its mirror first (once per command).
    fn source(&self) -> Result<Source, Failure> {
        use std::sync::atomic::Ordering;
        if let RepoLocation::Remote(remote) = &self.repo
            && !self.fetched.load(Ordering::SeqCst)
        {
            remote.fetch(&self.state_dir)?;
            self.fetched.store(true, Ordering::SeqCst);
        }
        let source = Source::open(&self.repo.open_path(&self.state_dir))?;
        Ok(source.with_blobs(self.blobs.clone()))
    }

    /// The approvers the configuration knows.
    pub fn approvers(&self) -> &[identity::ApproverEntry] {
        &self.approvers
    }

    /// Where the manifests' repository is.
    pub fn repo(&self) -> &RepoLocation {
        &self.repo
    }

    /// The revision commands deploy by default: the tracked branch, or HEAD.
    pub fn default_rev(&self) -> String {
        self.branch.clone().unwrap_or_else(|| "HEAD".to_owned())
    }

    /// What the engine runs with for this command.
    pub fn engine(&self) -> crate::engine::Context {
        crate::engine::Context::new(&self.state_dir).with_concurrency(self.concurrency)
    }

    /// The state folder: `--state`, `state_dir` in the configuration, or `./.ringops`.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The bundle a [`Revision`] names; holding no manifest at all is a mistake (a
    /// mistyped `--path` must not validate as an empty, error-free fleet).
    fn bundle(&self, rev: &Revision) -> Result<Bundle, Failure> {
        let source = self.source()?;
        let (bundle, at) = if rev.worktree {
            let bundle = source.bundle_worktree(&self.path)?;
            (bundle, "in the work tree".to_owned())
        } else {
            let name = rev.rev.as_deref().unwrap_or("HEAD");
            (source.bundle_at(name, &self.path)?, format!("at `{name}`"))
        };
        if !bundle.files.keys().any(|p| is_manifest(p)) {
            let under = if bundle.root.is_empty() {
                "the repository root".to_owned()
            } else {
                format!("`{}`", bundle.root)
            };
            return Err(Failure::user(format!(
                "no manifests (*.yaml or *.yml files) under {under} {at}; check --repo and --path"
            )));
        }
        Ok(bundle)
    }
}

/// Prints diagnostics to stdout and returns exit 1.
fn print_diagnostics(diags: &[Diagnostic]) -> Outcome {
    emit(&crate::report::diagnostics(diags))?;
    Ok(ExitCode::from(1))
}

/// Writes to stdout (styles stripped unless it is a terminal without `NO_COLOR`).
/// A reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = anstream::stdout();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Internal(e.into())),
        _ => Ok(()),
    }
}
