//! `ringops history` and `ringops show`: the record of deployments, read with
//! [`StoreReader`], which never blocks on a writer and never creates the state; and
//! `history --prune`, the one writer here, which hides old finished records with
//! [`Store::prune`](crate::adapters::store::Store::prune) while holding the writer lock
//! (like every writer, it first marks deployments a crashed writer left in progress as
//! Failed). None of them needs the repository.

use super::apply::open_writer;
use super::{Context, Failure, Outcome, emit};
use crate::adapters::store::{DB_FILE, StoreError, StoreReader};
use crate::model::deployment::DeploymentId;
use crate::report::history::{self as report, DeploymentRecord, Pruned};
use clap::{Args, ValueEnum};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Output formats of `history`, `show` and `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For programs; versioned by `format_version`.
    Json,
}

/// Arguments of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this ring.
    #[arg(long)]
    pub ring: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show at most this many deployments, newest first.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Hide finished deployments and drift events older than --older-than from history
    /// (kept for audit: `show` still finds them). Never a ring's Active deployment nor
    /// the last one before it that was Active.
    #[arg(long, requires = "older_than", conflicts_with_all = ["ring", "limit"])]
    pub prune: bool,
    /// With --prune: how old a record must be, e.g. 30d, 720h, 2weeks.
    #[arg(long, value_name = "DURATION", requires = "prune", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// With --prune: wait for another ringops writing the state instead of failing.
    #[arg(long, requires = "prune")]
    pub wait: bool,
}

/// A `--older-than` value: a humantime duration (`30d`, `720h`, `1h 30m`).
fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("not a duration ({e}); write a number and a unit, e.g. 30d, 720h or 90min")
    })
}

/// Arguments of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The deployment id, e.g. d-000042.
    pub deployment: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Prints the deployments, newest first. A state that does not exist yet has none.
/// With `--prune`, prunes instead.
pub fn run(ctx: &Context, args: &HistoryArgs) -> Outcome {
    match (args.prune, args.older_than) {
        (true, Some(older_than)) => return prune(ctx, older_than, args),
        (true, None) => return Err(Failure::user("--prune needs --older-than DURATION")),
        (false, _) => {}
    }
    let ring = args.ring.as_deref();
    let (deployments, more) = match open_reader(ctx.state_dir())? {
        None => (Vec::new(), false),
        Some(reader) => {
            // One more than asked tells whether the limit left some out.
            let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
            let mut found = reader
                .history(ring, limit.saturating_add(1))
                .map_err(store_failure)?;
            let more = found.len() > limit;
            found.truncate(limit);
            (found, more)
        }
    };
    emit(&match args.format {
        Format::Text => report::history_text(&deployments, ring, more),
        Format::Json => report::history_json(&deployments),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Hides records older than `older_than` from history under the writer lock, and
/// prints what went. A state that does not exist yet has nothing to prune and is not
/// created (the lock would create its folder).
fn prune(ctx: &Context, older_than: Duration, args: &HistoryArgs) -> Outcome {
    let state_dir = ctx.state_dir();
    let mut pruned = Pruned {
        older_than,
        deployments: Vec::new(),
        drift_events: 0,
    };
    if state_dir.join(DB_FILE).is_file() {
        let command = format!(
            "ringops history --prune --older-than {}",
            humantime::format_duration(older_than)
        );
        let (_lock, mut store) = open_writer(ctx, &command, args.wait)?;
        let report = store.prune(older_than).map_err(store_failure)?;
        pruned.drift_events = report.drift_events;
        pruned.deployments = report
            .deployments
            .into_iter()
            .map(|id| store.get(id))
            .collect::<Result<_, _>>()
            .map_err(store_failure)?;
    }
    emit(&match args.format {
        Format::Text => report::prune_text(&pruned),
        Format::Json => report::prune_json(&pruned),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one deployment: its fields, events, worker outcomes and artifacts.
pub fn show(ctx: &Context, args: &ShowArgs) -> Outcome {
    let id: DeploymentId = args
        .deployment
        .parse()
        .map_err(|e| Failure::User(anyhow::Error::new(e)))?;
    let unknown = || Failure::user(format!("no deployment {id} (see `ringops history`)"));
    let Some(reader) = open_reader(ctx.state_dir())? else {
        return Err(unknown());
    };
    let deployment = match reader.get(id) {
        Err(StoreError::NotFound(_)) => return Err(unknown()),
        found => found.map_err(store_failure)?,
    };
    let record = DeploymentRecord {
        deployment,
        events: reader.events(id).map_err(store_failure)?,
        workers: reader.workers(id).map_err(store_failure)?,
        artifacts: reader.artifacts(id).map_err(store_failure)?,
    };
    emit(&match args.format {
        Format::Text => report::show_text(&record),
        Format::Json => report::show_json(&record),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the state read-only; `None` when there is no state yet (nothing was ever
/// applied). Creates nothing.
pub(super) fn open_reader(state_dir: &Path) -> Result<Option<StoreReader>, Failure> {
    match StoreReader::open(state_dir) {
        Ok(reader) => Ok(Some(reader)),
        Err(StoreError::NotReady { found: 0, .. }) => Ok(None),
        Err(e) => Err(store_failure(e)),
    }
}

/// A state error as a command failure: what the user can act on (a newer state, one not
/// yet brought up to date, an unknown id) is exit 1; the rest broke underneath.
pub(super) fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::Newer { .. } | StoreError::NotReady { .. } | StoreError::NotFound(_) => {
            Failure::User(e.into())
        }
        e => Failure::Internal(e.into()),
    }
}
