//! `ringops plan`: what would change on each worker of a ring between two commits.

use super::{Context, Failure, Outcome, emit};
use crate::adapters::git::Source;
use crate::engine;
use crate::model::plan::Revision;
use crate::model::{Bundle, DesiredState, Plan};
use crate::pipeline::plan::{PlanInput, plan};
use crate::report;
use crate::report::saved::{Facts, SavedPlan};
use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// Output formats of a plan.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// For a terminal; coloured only on a terminal and without NO_COLOR.
    Text,
    /// For a pull-request comment.
    Markdown,
    /// For programs; schema in the README.
    Json,
}

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Ring to plan.
    #[arg(long)]
    ring: String,
    /// The revision being replaced (e.g. the PR's base). Omitted: plan from nothing
    /// deployed, so every artifact is created.
    #[arg(long, value_name = "REV")]
    base: Option<String>,
    /// The revision replacing it (default: the tracked branch, or HEAD).
    #[arg(long, visible_alias = "rev", value_name = "REV")]
    head: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Also save the plan (against the workers) for `ringops apply PLAN.json`.
    #[arg(long, value_name = "PLAN.json", conflicts_with = "base")]
    out: Option<std::path::PathBuf>,
}

impl PlanArgs {
    /// Whether exit codes follow Terraform's `-detailed-exitcode`.
    pub fn detailed_exitcode(&self) -> bool {
        self.detailed_exitcode
    }
}

/// Prints the plan; exit 1 naming the errors of a side that does not compile.
pub fn run(ctx: &Context, args: &PlanArgs) -> Outcome {
    let source = ctx.source()?;
    let head_name = args.head.clone().unwrap_or_else(|| ctx.default_rev());
    let (plan, head_bundle) = match &args.base {
        Some(base_rev) => plan_between(ctx, args, &source, base_rev, &head_name)?,
        None => plan_against_workers(ctx, args, &source, &head_name)?,
    };
    let text = match args.format {
        Format::Text => report::text::render(&plan, true),
        Format::Markdown => report::markdown::render(&plan),
        Format::Json => report::json::render(&plan),
    };
    emit(&text)?;
    let empty = plan.summary.is_empty();
    super::leave_to_exit((plan, head_bundle));
    Ok(match (args.detailed_exitcode, empty) {
        (true, false) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// The head revision as the plan names it: the name asked for and the bundle's commit.
fn head_revision(head_name: &str, bundle: &Bundle) -> Revision {
    Revision {
        rev: head_name.to_owned(),
        commit: bundle.commit.clone(),
    }
}

/// The plan from `base_rev` to the head, both compiled from the source (`--base`); the
/// workers are not read. Returns the head's bundle beside it.
fn plan_between(
    ctx: &Context,
    args: &PlanArgs,
    source: &Source,
    base_rev: &str,
    head_name: &str,
) -> Result<(Plan, Bundle), Failure> {
    let head_bundle = source.bundle_at(head_name, &ctx.path)?;
    let base_bundle = source.bundle_at(base_rev, &ctx.path)?;
    // The two sides compile independently: one thread each.
    let (base, head) = both_sides(
        || desired(ctx, "base", base_rev, &base_bundle, &args.ring, true),
        || desired(ctx, "head", head_name, &head_bundle, &args.ring, false),
    )?;
    let input = PlanInput {
        path: head_bundle.root.clone(),
        base: Some(Revision {
            rev: base_rev.to_owned(),
            commit: base_bundle.commit.clone(),
        }),
        head: head_revision(head_name, &head_bundle),
        changed_files: base_bundle.changed_files(&head_bundle),
    };
    let plan = plan(&base, &head, input);
    super::leave_to_exit((base, head, base_bundle));
    Ok((plan, head_bundle))
}

/// The plan from what the ring's workers hold to the head (no `--base`), saved for
/// `apply PLAN.json` with `--out`. Returns the head's bundle beside it.
fn plan_against_workers(
    ctx: &Context,
    args: &PlanArgs,
    source: &Source,
    head_name: &str,
) -> Result<(Plan, Bundle), Failure> {
    // The workers are read while the head side compiles.
    let (ahead, compiled) = super::apply::with_read_ahead(ctx, &args.ring, || {
        let bundle = source.bundle_at(head_name, &ctx.path)?;
        let head = desired(ctx, "head", head_name, &bundle, &args.ring, false)?;
        Ok::<_, Failure>((bundle, head))
    })?;
    let (head_bundle, head) = compiled?;
    let (plan, observed) = super::apply::plan_against_workers_with(
        ctx,
        &head_bundle,
        &head,
        head_revision(head_name, &head_bundle),
        ahead,
    )?;
    if let Some(out) = &args.out {
        save(ctx, &plan, &observed, out)?;
    }
    super::leave_to_exit((head, observed));
    Ok((plan, head_bundle))
}

/// Writes the plan with what `apply PLAN.json` checks again, atomically.
fn save(
    ctx: &Context,
    plan: &Plan,
    observed: &crate::model::observed::ObservedState,
    out: &std::path::Path,
) -> Result<(), Failure> {
    let active = match super::history::open_reader(ctx.state_dir())? {
        Some(reader) => reader
            .active(&plan.ring)
            .map_err(super::history::store_failure)?
            .map(|a| a.id.to_string()),
        None => None,
    };
    let facts = Facts {
        commit: plan.head.commit.clone().unwrap_or_default(),
        active_deployment: active,
        workers: observed.digests.clone(),
    };
    let text = SavedPlan::new(plan, facts).to_json();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let fail = |e: std::io::Error| Failure::user(format!("cannot write {}: {e}", out.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(fail)?;
    tmp.persist(out).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Runs the base and the head side on a scoped thread each. A panic of either becomes
/// an internal error naming the side; when both fail, both errors are reported, base
/// first, and the failure is internal if either one is.
fn both_sides<T: Send>(
    base: impl FnOnce() -> Result<T, Failure> + Send,
    head: impl FnOnce() -> Result<T, Failure> + Send,
) -> Result<(T, T), Failure> {
    let (base, head) = std::thread::scope(|scope| {
        let base = scope.spawn(base);
        let head = scope.spawn(head);
        (joined("base", base.join()), joined("head", head.join()))
    });
    match (base, head) {
        (Ok(base), Ok(head)) => Ok((base, head)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(base), Err(head)) => {
            let internal =
                matches!(base, Failure::Internal(_)) || matches!(head, Failure::Internal(_));
            let (Failure::User(base) | Failure::Internal(base)) = base;
            let (Failure::User(head) | Failure::Internal(head)) = head;
            // `main` prefixes the first with `error: `; the second gets its own.
            let both = anyhow::anyhow!("{base:#}\nerror: {head:#}");
            Err(if internal {
                Failure::Internal(both)
            } else {
                Failure::User(both)
            })
        }
    }
}

/// A side's result, or an internal error if its thread panicked.
fn joined<T>(side: &str, result: std::thread::Result<Result<T, Failure>>) -> Result<T, Failure> {
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        Err(Failure::Internal(anyhow::anyhow!(
            "compiling the {side} side panicked (a bug in ringops): {message}"
        )))
    })
}

/// One side's desired state of the ring; a ring missing from the base is empty.
fn desired(
    ctx: &Context,
    side: &str,
    rev: &str,
    bundle: &Bundle,
    ring: &str,
    may_lack_ring: bool,
) -> Result<DesiredState, Failure> {
    let compiled = engine::compile::compile_ring(ctx.state_dir(), bundle, &ctx.secrets, ring);
    let mut compiled = compiled.map_err(|diags| {
        Failure::user(format!(
            "{side} `{rev}` does not compile:\n{}",
            report::diagnostics(&diags).trim_end()
        ))
    })?;
    match compiled.states.remove(ring) {
        Some(state) => Ok(state),
        None if may_lack_ring => Ok(DesiredState {
            ring: ring.to_owned(),
            ..DesiredState::default()
        }),
        None => Err(Failure::user(format!(
            "ring `{ring}` is not defined at {side} `{rev}` (rings: {})",
            if compiled.rings.is_empty() {
                "none".to_owned()
            } else {
                compiled.rings.join(", ")
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(message: &str) -> Result<u8, Failure> {
        Err(Failure::user(message))
    }

    fn message(failure: Failure) -> (bool, String) {
        match failure {
            Failure::User(e) => (true, crate::adapters::causes(e.as_ref())),
            Failure::Internal(e) => (false, crate::adapters::causes(e.as_ref())),
        }
    }

    #[test]
    fn both_sides_errors_are_reported_base_first() {
        let err = both_sides(|| user("base broke"), || user("head broke")).unwrap_err();
        assert_eq!(message(err), (true, "base broke\nerror: head broke".into()));
        let err = both_sides(|| Ok(1), || user("head broke")).unwrap_err();
        assert_eq!(message(err), (true, "head broke".into()));
        assert_eq!(both_sides(|| Ok(1), || Ok(2)).ok(), Some((1, 2)));
    }

    #[test]
    fn a_panic_on_either_side_is_an_internal_error_naming_it() {
        for side in ["base", "head"] {
            let boom = |s: &str| -> Result<u8, Failure> {
                if s == side {
                    panic!("boom on {s}");
                }
                Ok(0)
            };
            let err = both_sides(|| boom("base"), || boom("head")).unwrap_err();
            assert_eq!(
                message(err),
                (
                    false,
                    format!(
                        "compiling the {side} side panicked (a bug in ringops): boom on {side}"
                    )
                )
            );
        }
        // A panic beside a user error is still internal; both are named.
        let err = both_sides(|| user("base broke"), || panic!("static")).unwrap_err();
        assert_eq!(
            message(err),
            (
                false,
                "base broke\nerror: compiling the head side panicked (a bug in ringops): static"
                    .into()
            )
        );
    }
}
