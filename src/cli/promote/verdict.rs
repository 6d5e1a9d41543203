//! `approve` and `reject`: an approver's verdict on a deployment queued for approval,
//! bound to what it would write now.

use super::rollout::{gates_and_desired, proceed};
use super::{VerdictArgs, internal};
use crate::adapters::store::gates::Verdict;
use crate::adapters::store::{Store, StoreError};
use crate::cli::apply::{open_writer, plan_against_workers};
use crate::cli::identity::{ApproverEntry, identify, read_token};
use crate::cli::{Context, Failure, Outcome, emit};
use crate::engine::promotion::{self, Ballot, Cast};
use crate::model::deployment::{Deployment, DeploymentId, DeploymentState, Waiting};
use crate::model::plan::Revision;
use crate::report;
use chrono::Utc;
use std::path::PathBuf;
use std::process::ExitCode;

/// `ringops approve DEPLOYMENT`: records the token holder's approval of what the
/// deployment would write now; the last approval needed starts the rollout.
pub fn approve(ctx: &Context, args: &VerdictArgs) -> Outcome {
    verdict(ctx, args, Verdict::Approved)
}

/// `ringops reject DEPLOYMENT --reason`: records the rejection; the deployment fails.
pub fn reject(ctx: &Context, args: &VerdictArgs) -> Outcome {
    if args.reason.trim().is_empty() {
        return Err(Failure::user("a rejection needs a --reason"));
    }
    verdict(ctx, args, Verdict::Rejected)
}

/// Records the token holder's `verdict` on a deployment awaiting approval; a rejection
/// fails it, an approval prints what is approved and starts it when the gates let it.
fn verdict(ctx: &Context, args: &VerdictArgs, verdict: Verdict) -> Outcome {
    let approver = approver(ctx, args.token_file.as_ref())?;
    let (_lock, mut store) = open_writer(ctx, "ringops approve", args.wait)?;
    let d = awaiting_approval(&store, &args.deployment)?;
    let (gates, bundle, desired) = gates_and_desired(ctx, &store, &d)?;
    let allowed = gates
        .approvals
        .as_ref()
        .is_some_and(|a| a.approvers.contains(&approver.name));
    if !allowed {
        return Err(Failure::user(format!(
            "{} is not an approver of ring `{}`",
            approver.name, d.ring
        )));
    }
    if verdict == Verdict::Approved {
        // What is approved: the plan against the workers as they are now.
        let head = Revision {
            rev: d.id.to_string(),
            commit: bundle.commit.clone(),
        };
        let (plan, _) = plan_against_workers(ctx, &bundle, &desired, head)?;
        emit(&report::text::render(&plan, true))?;
    }
    // The approval binds to what would be written now, which may differ from what was
    // queued (then it counts for nothing).
    let ballot = Ballot {
        approver: &approver.name,
        verdict,
        fingerprint: &desired.fingerprint(),
        reason: &args.reason,
    };
    match promotion::cast(&mut store, &d, &gates, &ballot, Utc::now()).map_err(internal)? {
        Cast::Approved => {}
        Cast::Rejected(d) => {
            emit(&format!("Deployment {} rejected; it is Failed.\n", d.id))?;
            return Ok(ExitCode::SUCCESS);
        }
        Cast::TimedOut(d) => {
            return Err(Failure::user(format!(
                "{}: approval timed out; rejected (the approval was not recorded)",
                d.id
            )));
        }
    }
    emit(&format!("Approved {} as {}.\n", d.id, approver.name))?;
    proceed(ctx, &mut store, &d, &gates, &desired)
}

/// The deployment `id` names, refused unless it is Queued awaiting approval.
fn awaiting_approval(store: &Store, id: &str) -> Result<Deployment, Failure> {
    let id: DeploymentId = id
        .parse()
        .map_err(|e| Failure::User(anyhow::Error::new(e)))?;
    let d = match store.get(id) {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            return Err(Failure::user(format!(
                "no deployment {id} (see `ringops history`)"
            )));
        }
        Err(e) => return Err(internal(e)),
    };
    let waiting = store.rollout(id).map_err(internal)?.and_then(|r| r.waiting);
    if d.state != DeploymentState::Queued || waiting != Some(Waiting::Approval) {
        return Err(Failure::user(format!(
            "{id} is {} and not awaiting approval",
            d.state
        )));
    }
    Ok(d)
}

/// The approver whose token is given.
pub(super) fn approver(ctx: &Context, file: Option<&PathBuf>) -> Result<ApproverEntry, Failure> {
    let token = read_token(file.map(PathBuf::as_path)).map_err(|e| Failure::User(e.into()))?;
    identify(ctx.approvers(), &token)
        .cloned()
        .map_err(|e| Failure::User(e.into()))
}
