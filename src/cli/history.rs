//! `ringops history` and `ringops show`: the record of deployments.

use super::{Context, Failure, Outcome};
use clap::Args;

/// Arguments of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this ring.
    #[arg(long)]
    pub ring: Option<String>,
}

/// Arguments of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The deployment id, e.g. d-000042.
    pub deployment: String,
}

/// Prints the deployments, newest first.
pub fn run(_ctx: &Context, _args: &HistoryArgs) -> Outcome {
    Err(Failure::user("`history` is not implemented yet"))
}

/// Prints one deployment.
pub fn show(_ctx: &Context, _args: &ShowArgs) -> Outcome {
    Err(Failure::user("`show` is not implemented yet"))
}
