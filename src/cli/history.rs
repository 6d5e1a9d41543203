//! `ringops history` and `ringops show`: the record of deployments, read with
//! [`StoreReader`], which never blocks on a writer and never creates the state. Neither
//! command needs the repository.

use super::{Context, Failure, Outcome, emit};
use crate::adapters::store::{StoreError, StoreReader};
use crate::model::deployment::DeploymentId;
use crate::report::history::{self as report, DeploymentRecord};
use clap::{Args, ValueEnum};
use std::path::Path;
use std::process::ExitCode;

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
pub fn run(ctx: &Context, args: &HistoryArgs) -> Outcome {
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
