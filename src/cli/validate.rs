//! `ringops validate`: compile every ring, print every problem.

use super::{Context, Outcome, Revision, print_diagnostics};
use crate::pipeline::{Rings, compile};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    revision: Revision,
}

/// Exit 0 when the manifests are valid, 1 printing every error otherwise.
pub fn run(ctx: &Context, args: &ValidateArgs) -> Outcome {
    let bundle = ctx.bundle(&args.revision)?;
    match compile(&bundle, &ctx.secrets, Rings::All) {
        Err(diags) => Ok(print_diagnostics(&diags)),
        Ok(compiled) => {
            for (ring, state) in &compiled.states {
                println!(
                    "ring {ring}: {} workers, {} artifacts",
                    state.workers.len(),
                    state.artifact_count()
                );
            }
            println!("ok: no errors");
            Ok(ExitCode::SUCCESS)
        }
    }
}
