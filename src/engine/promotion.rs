//! What a ring's gates say of an unfinished deployment, decided once for the CLI, the
//! daemon and the API ([`next`]), and acting on it ([`advance`]): recording what it
//! waits for ([`hold`]), failing it ([`reject`], [`abandon`]), or running its next
//! batches ([`run`]).

use super::deploy::{Deployed, Ending, OnFailure, Rollout, deploy, end_failed};
use super::{Context, EngineError, targets_from_record};
use crate::adapters::store::gates::{RolloutState, Verdict, approvals};
use crate::adapters::store::{Store, StoreError};
use crate::model::DesiredState;
use crate::model::deployment::{Deployment, DeploymentState, Waiting, WorkerOutcome};
use crate::pipeline::rollout::{Decision, Gates, Queued};
use chrono::{DateTime, Utc};
use std::borrow::Borrow;
use std::time::Duration;

/// Whether `d` waited for approvals past its ring's `approvals.timeout` at `now`: then
/// no approval may be recorded any more (it is rejected instead), even one that would
/// complete the gate.
fn approval_timed_out(d: &Deployment, gates: &Gates, now: DateTime<Utc>) -> bool {
    let waited = now.timestamp_millis().saturating_sub(d.created_at.0);
    let waited = Duration::from_millis(u64::try_from(waited).unwrap_or(0));
    let timeout = gates.approvals.as_ref().and_then(|a| a.timeout);
    timeout.is_some_and(|t| waited >= t)
}

/// An approver's verdict on a deployment awaiting approval.
pub struct Ballot<'a> {
    /// The approver (from their token).
    pub approver: &'a str,
    /// Approved or rejected.
    pub verdict: Verdict,
    /// What the deployment would write now: an approval binds to it.
    pub fingerprint: &'a str,
    /// Why (a rejection's reason).
    pub reason: &'a str,
}

/// What [`cast`] did with a verdict.
#[derive(Debug)]
pub enum Cast {
    /// The approval is recorded; the deployment waits on or may start ([`advance`]).
    Approved,
    /// The rejection is recorded and the deployment Failed.
    Rejected(Deployment),
    /// The approval came past the gate's timeout: not recorded, the deployment Failed.
    TimedOut(Deployment),
}

/// Records `ballot` on `d` at `now`, for every caller (CLI, API): a rejection fails the
/// deployment; an approval past the ring's `approvals.timeout` is refused, even one
/// that would complete the gate, and the deployment is rejected instead.
pub fn cast(
    store: &mut Store,
    d: &Deployment,
    gates: &Gates,
    ballot: &Ballot<'_>,
    now: DateTime<Utc>,
) -> Result<Cast, StoreError> {
    if ballot.verdict == Verdict::Approved && approval_timed_out(d, gates, now) {
        let why = format!(
            "approval timed out; rejected when {} approved",
            ballot.approver
        );
        return Ok(Cast::TimedOut(reject(store, d, &why)?));
    }
    let (approver, verdict) = (ballot.approver, ballot.verdict);
    store.record_verdict(d.id, approver, verdict, ballot.fingerprint, ballot.reason)?;
    if verdict == Verdict::Rejected {
        let why = format!("rejected by {approver}: {}", ballot.reason);
        return Ok(Cast::Rejected(reject(store, d, &why)?));
    }
    Ok(Cast::Approved)
}

/// What a deployment's gates say of its next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing holds it: run its next batches.
    Start,
    /// Held until `waiting` is satisfied.
    Wait {
        /// What it waits for.
        waiting: Waiting,
        /// Why, for the record and the person.
        why: String,
    },
    /// It must not run: an approver rejected it, or its approvals timed out.
    Reject {
        /// Why.
        why: String,
    },
}

/// What `gates` say at `now` of the ring's unfinished deployment `d`.
///
/// Not started yet (Queued): a freeze, then approvals (a rejection or their timeout
/// rejects it), then a closed window hold it; `--emergency` bypasses them all. Stopped
/// between batches: a pause of its ring, then a freeze or a closed window (unless an
/// emergency), then a canary waiting for `promote --continue` hold it.
pub fn next(
    store: &Store,
    d: &Deployment,
    gates: &Gates,
    now: DateTime<Utc>,
) -> Result<Step, StoreError> {
    let verdicts = store.verdicts(d.id)?;
    if let Some(no) = verdicts.iter().find(|v| v.verdict == Verdict::Rejected) {
        let why = format!("{} was rejected by {}", d.id, no.approver);
        return Ok(Step::Reject { why });
    }
    let rollout = store.rollout(d.id)?.unwrap_or_default();
    if d.state == DeploymentState::Queued && rollout.batches_done == 0 {
        let approvals = approvals(&verdicts);
        let waited = now.timestamp_millis().saturating_sub(d.created_at.0);
        let id = d.id.to_string();
        let queued = Queued {
            id: &id,
            fingerprint: &d.fingerprint,
            approvals: &approvals,
            waited: Duration::from_millis(u64::try_from(waited).unwrap_or(0)),
            emergency: rollout.emergency,
        };
        return Ok(match gates.decide(&queued, now) {
            Decision::Go => Step::Start,
            Decision::Wait { waiting, why } => Step::Wait { waiting, why },
            Decision::TimedOut => Step::Reject {
                why: "approval timed out".to_owned(),
            },
        });
    }
    Ok(between_batches(store, d, gates, &rollout, now)?.unwrap_or(Step::Start))
}

/// What holds a rollout stopped between batches, if anything.
fn between_batches(
    store: &Store,
    d: &Deployment,
    gates: &Gates,
    rollout: &RolloutState,
    now: DateTime<Utc>,
) -> Result<Option<Step>, StoreError> {
    if let Some(pause) = store.ring_pause(&d.ring)? {
        let why = format!(
            "its ring is paused ({}); `ringops resume {}`",
            pause.reason, d.ring
        );
        return Ok(Some(Step::Wait {
            waiting: Waiting::Paused,
            why,
        }));
    }
    if !rollout.emergency
        && let Some((waiting, why)) = gates.closed(now)
    {
        return Ok(Some(Step::Wait { waiting, why }));
    }
    if rollout.waiting == Some(Waiting::Continue) {
        let why = format!(
            "canary healthy; waiting for `ringops promote {} --continue`",
            d.ring
        );
        return Ok(Some(Step::Wait {
            waiting: Waiting::Continue,
            why,
        }));
    }
    Ok(None)
}

/// What [`advance`] did with a deployment.
#[derive(Debug)]
pub enum Advanced {
    /// Held: what it waits for is recorded (`noted`: the reason is new).
    Held {
        /// What it waits for.
        waiting: Waiting,
        /// Why, in words.
        why: String,
        /// The reason was noted now (it differs from the last one noted).
        noted: bool,
    },
    /// Failed by its gates (rejected, approvals timed out) or because its commit no
    /// longer compiles.
    Rejected {
        /// The deployment, Failed.
        deployment: Deployment,
        /// Why.
        why: String,
    },
    /// Run from where it stopped.
    Ran(Deployed),
}

/// How [`advance`] acts for whoever moves a deployment on.
pub struct Mover<'a> {
    /// Who moves it (noted when gates open on a queued deployment or reject it).
    pub actor: &'a str,
    /// Secret values that hook output must never show.
    pub redact: &'a [String],
    /// When it is.
    pub now: DateTime<Utc>,
}

/// Moves the unfinished deployment `d` on as `gates` say now ([`next`]): records what
/// holds it, fails it when rejected or timed out, or runs it from where it stopped.
/// `desired` compiles its commit, called only to run it; `None` (it no longer compiles)
/// fails it.
pub async fn advance<D: Borrow<DesiredState>>(
    ctx: &Context,
    store: &mut Store,
    d: &Deployment,
    gates: &Gates,
    mover: &Mover<'_>,
    desired: impl FnOnce() -> Option<D>,
) -> Result<Advanced, EngineError> {
    match next(store, d, gates, mover.now)? {
        Step::Wait { waiting, why } => {
            let noted = hold(store, d, waiting, &why)?;
            Ok(Advanced::Held {
                waiting,
                why,
                noted,
            })
        }
        Step::Reject { why } => {
            let why = format!("{why}; rejected by {}", mover.actor);
            let deployment = reject(store, d, &why)?;
            Ok(Advanced::Rejected { deployment, why })
        }
        Step::Start => {
            let Some(desired) = desired() else {
                let why = "its commit no longer compiles for the ring; promote again".to_owned();
                let deployment = reject(store, d, &why)?;
                return Ok(Advanced::Rejected { deployment, why });
            };
            let waited = store.rollout(d.id)?.and_then(|r| r.waiting);
            if d.state == DeploymentState::Queued && waited.is_some_and(Waiting::is_gate) {
                store.note(d.id, &format!("gates open: started by {}", mover.actor))?;
            }
            let ran = run(ctx, store, d, desired.borrow(), gates, mover.redact).await?;
            Ok(Advanced::Ran(ran))
        }
    }
}

/// Records that `d` waits for `waiting`, noting `why` unless it is what was noted last;
/// true when it noted something new.
pub fn hold(
    store: &mut Store,
    d: &Deployment,
    waiting: Waiting,
    why: &str,
) -> Result<bool, StoreError> {
    let rollout = store.rollout(d.id)?.unwrap_or_default();
    if rollout.waiting != Some(waiting) {
        store.set_rollout(d.id, &rollout.waiting_for(waiting))?;
    }
    let last = store.events(d.id)?.pop();
    let new = last.is_none_or(|e| e.message != why);
    if new {
        store.note(d.id, why)?;
    }
    Ok(new)
}

/// Fails the queued deployment `d` for `why`; it no longer waits for anything.
pub fn reject(store: &mut Store, d: &Deployment, why: &str) -> Result<Deployment, StoreError> {
    let rollout = store.rollout(d.id)?.unwrap_or_default();
    if rollout.waiting.is_some() {
        let running = RolloutState::running(rollout.emergency, rollout.batches_done as usize);
        store.set_rollout(d.id, &running)?;
    }
    store.transition(d.id, DeploymentState::Failed, why)
}

/// Runs the unfinished deployment `d` of `desired` from where it stopped, as `gates`
/// say. When what would be written is no longer what was queued (and approved), it is
/// abandoned instead: "promote again".
pub async fn run(
    ctx: &Context,
    store: &mut Store,
    d: &Deployment,
    desired: &DesiredState,
    gates: &Gates,
    redact: &[String],
) -> Result<Deployed, EngineError> {
    let ring_moved = d.unchanged
        && d.state == DeploymentState::Queued
        && store
            .active(&d.ring)?
            .is_none_or(|a| a.fingerprint != d.fingerprint);
    if ring_moved {
        let why = "it was queued as changing nothing, but the ring's Active deployment changed since (a rollback?); promote again";
        let deployment = reject(store, d, why)?;
        let end = super::deploy::RolloutEnd::Failed {
            deployment,
            reason: why.to_owned(),
        };
        return Ok(Deployed {
            end,
            changed: Vec::new(),
        });
    }
    if desired.fingerprint() != d.fingerprint {
        let why = "what would be written changed since it was queued (workers, secrets or ringops); promote again";
        let ended = abandon(ctx, store, d, gates.auto_revert, why.to_owned(), redact).await?;
        let end = super::deploy::RolloutEnd::Failed {
            deployment: ended,
            reason: why.to_owned(),
        };
        return Ok(Deployed {
            end,
            changed: Vec::new(),
        });
    }
    let rollout = store.rollout(d.id)?.unwrap_or_default();
    let done = rollout.batches_done as usize;
    store.set_rollout(d.id, &RolloutState::running(rollout.emergency, done))?;
    let plan = Rollout::gated(ctx, desired, gates, done, rollout.emergency)?;
    deploy(ctx, store, d, &plan).await
}

/// Ends the unfinished deployment `d` for `reason`: a Queued one fails; one under way
/// fails too, or with `auto_revert` puts back every worker it recorded (from the object
/// store, so it needs no compile) on the previous Active deployment.
pub async fn abandon(
    ctx: &Context,
    store: &mut Store,
    d: &Deployment,
    auto_revert: bool,
    reason: String,
    redact: &[String],
) -> Result<Deployment, EngineError> {
    let touched: Vec<String> = store
        .workers(d.id)?
        .into_iter()
        .filter(|w| w.outcome != WorkerOutcome::Skipped)
        .map(|w| w.worker)
        .collect();
    if d.state == DeploymentState::Queued || touched.is_empty() {
        return Ok(reject(store, d, &reason)?);
    }
    let targets = targets_from_record(ctx, store, d.id, None, redact)?;
    let ending = Ending {
        targets: &targets,
        touched: &touched,
        how: match auto_revert {
            true => OnFailure::Revert,
            false => OnFailure::Leave,
        },
        reason,
    };
    end_failed(ctx, store, d, ending).await
}

pub mod intake;
#[cfg(test)]
mod tests;
