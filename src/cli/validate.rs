//! `ringops validate`: compile every ring, print every problem.

use super::{Context, Outcome, Revision, emit};
use crate::pipeline::{Rings, compile};
use crate::report;
use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// Output formats of `validate`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// `file:line:col: error: message` lines, then a count.
    Text,
    /// One JSON document, for editors and CI annotations.
    Json,
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    revision: Revision,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Exit 0 when the manifests are valid, 1 printing every error otherwise.
pub fn run(ctx: &Context, args: &ValidateArgs) -> Outcome {
    let bundle = ctx.bundle(&args.revision)?;
    let result = compile(&bundle, &ctx.secrets, Rings::All);
    let text = match args.format {
        Format::Text => report::validation_text(&result),
        Format::Json => report::json::validation(&result),
    };
    emit(&text)?;
    Ok(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    })
}
