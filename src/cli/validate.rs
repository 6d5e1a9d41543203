//! `ringops validate`: compile every ring, print every problem.

use super::{Context, Outcome, Revision, emit, print_diagnostics};
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
        Err(diags) => print_diagnostics(&diags),
        Ok(compiled) => {
            let mut text = String::new();
            for (ring, state) in &compiled.states {
                text.push_str(&format!(
                    "ring {ring}: {} workers, {} artifacts
",
                    state.workers.len(),
                    state.artifact_count()
                ));
            }
            text.push_str(
                "ok: no errors
",
            );
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
