//! `ringops status`: per ring, the active deployment and its workers' sync.

use super::{Context, Failure, Outcome};
use clap::Args;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this ring.
    #[arg(long)]
    pub ring: Option<String>,
}

/// Prints the status of every ring (or one).
pub fn run(_ctx: &Context, _args: &StatusArgs) -> Outcome {
    Err(Failure::user("`status` is not implemented yet"))
}
