//! `ringops render`: write what each worker of a ring would get, for people to read.

use super::{Context, Failure, Outcome, Revision, emit, print_diagnostics};
use crate::adapters::render_dir;
use crate::pipeline::{Rings, compile};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Ring to render.
    #[arg(long)]
    ring: String,
    /// Output folder: DIR/<worker>/<workflow>/<step>[.<replica>]/<file>.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    revision: Revision,
}

/// Renders the ring; exit 1 with every error if the manifests do not compile.
pub fn run(ctx: &Context, args: &RenderArgs) -> Outcome {
    let bundle = ctx.bundle(&args.revision)?;
    let compiled = match compile(&bundle, &ctx.secrets, Rings::One(&args.ring)) {
        Ok(c) => c,
        Err(diags) => return print_diagnostics(&diags),
    };
    let Some(state) = compiled.states.get(&args.ring) else {
        return Err(Failure::user(format!(
            "ring `{}` is not defined (rings: {})",
            args.ring,
            if compiled.rings.is_empty() {
                "none".to_owned()
            } else {
                compiled.rings.join(", ")
            }
        )));
    };
    let written = render_dir::write(&args.out, state)?;
    emit(&format!(
        "wrote {written} artifacts for {} workers of ring {} under {}\n",
        state.workers.len(),
        args.ring,
        args.out.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
