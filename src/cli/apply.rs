//! `ringops apply`: plan a ring against its workers, confirm, apply, record.

use super::{Context, Failure, Outcome};
use clap::Args;

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Ring to apply.
    #[arg(long)]
    pub ring: String,
    /// Revision to deploy (default HEAD).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
}

/// Applies the ring.
pub fn run(_ctx: &Context, _args: &ApplyArgs) -> Outcome {
    Err(Failure::user("`apply` is not implemented yet"))
}
