//! [`next`] through every gate case, on a real state file, with the clock injected
//! (the store's for when a deployment was queued, `now` for the decision).

use super::*;
use crate::adapters::store::ManualClock;
use crate::adapters::store::gates::RolloutState;
use crate::model::deployment::{NewDeployment, Timestamp};
use crate::model::manifest::RingSpec;
use crate::pipeline::rollout::{ApprovalGate, Window};
use chrono::TimeZone;
use std::sync::Arc;

/// 2026-11-24 (a Tuesday) at `hour`:`minute` UTC.
fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, hour, minute, 0)
        .single()
        .expect("a valid time")
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let queued_at = Timestamp(at(9, 0).timestamp_millis());
    let clock = Arc::new(ManualClock::new(queued_at));
    let store = Store::open_with_clock(dir.path(), clock).expect("store");
    World { _dir: dir, store }
}

fn queue(store: &mut Store, rollout: RolloutState) -> Deployment {
    let new = NewDeployment {
        ring: "production".into(),
        commit: "c1".into(),
        tree: "t1".into(),
        fingerprint: "f1".into(),
        actor: "alice".into(),
        reason: "test".into(),
        rollback_of: None,
    };
    let d = store.create_deployment(&new).expect("create");
    store.set_rollout(d.id, &rollout).expect("rollout");
    d
}

/// A deployment stopped between batches, waiting for `waiting` (or running).
fn between(store: &mut Store, waiting: Option<Waiting>, emergency: bool) -> Deployment {
    let rollout = RolloutState {
        waiting,
        ..RolloutState::running(emergency, 1)
    };
    let d = queue(store, rollout);
    store
        .transition(d.id, DeploymentState::Building, "b")
        .expect("building");
    store
        .transition(d.id, DeploymentState::Deploying, "d")
        .expect("deploying")
}

fn ungated() -> Gates {
    let ungated = Gates::ungated();
    let from_default = Gates::from_spec(&RingSpec::default()).expect("default gates");
    assert_eq!(format!("{ungated:?}"), format!("{from_default:?}"));
    ungated
}

fn approvals(timeout_s: Option<u64>) -> Gates {
    Gates {
        approvals: Some(ApprovalGate {
            required: 1,
            approvers: ["bob".to_owned()].into(),
            timeout: timeout_s.map(Duration::from_secs),
        }),
        ..ungated()
    }
}

fn frozen(gates: Gates) -> Gates {
    Gates {
        freeze: true,
        ..gates
    }
}

/// Open on Tuesdays from 02:00 for two hours.
fn windowed(gates: Gates) -> Gates {
    let window = Window::new("0 2 * * 2", "2h", None).expect("window");
    Gates {
        window: Some(window),
        ..gates
    }
}

fn waiting(step: Step) -> Waiting {
    match step {
        Step::Wait { waiting, .. } => waiting,
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn approve(store: &mut Store, d: &Deployment, fingerprint: &str) {
    store
        .record_verdict(d.id, "bob", Verdict::Approved, fingerprint, "")
        .expect("verdict");
}

#[test]
fn a_queued_deployment_is_held_by_a_freeze_approvals_and_a_window_in_that_order() {
    let mut w = world();
    let d = queue(&mut w.store, RolloutState::running(false, 0));
    let next = |store: &Store, gates: &Gates, now| next(store, &d, gates, now).expect("next");
    assert_eq!(next(&w.store, &ungated(), at(9, 0)), Step::Start);
    let all = frozen(windowed(approvals(None)));
    assert_eq!(waiting(next(&w.store, &all, at(9, 0))), Waiting::Freeze);
    let step = next(&w.store, &windowed(approvals(None)), at(9, 0));
    assert!(
        matches!(&step, Step::Wait { waiting: Waiting::Approval, why } if why.contains(&format!("`ringops approve {}`", d.id))),
        "{step:?}"
    );
    approve(&mut w.store, &d, "f0");
    let step = next(&w.store, &approvals(None), at(9, 0));
    assert_eq!(
        waiting(step),
        Waiting::Approval,
        "an approval of another plan is void"
    );
    approve(&mut w.store, &d, "f1");
    assert_eq!(next(&w.store, &approvals(None), at(9, 0)), Step::Start);
    let gates = windowed(approvals(None));
    assert_eq!(waiting(next(&w.store, &gates, at(9, 0))), Waiting::Window);
    assert_eq!(next(&w.store, &gates, at(2, 30)), Step::Start);
}

#[test]
fn approvals_time_out_by_the_injected_clock_and_a_rejection_rejects() {
    let mut w = world();
    let d = queue(&mut w.store, RolloutState::running(false, 0));
    let gates = approvals(Some(60));
    let step = next(&w.store, &d, &gates, at(9, 0)).expect("next");
    assert_eq!(waiting(step), Waiting::Approval);
    let late = next(&w.store, &d, &gates, at(9, 1)).expect("next");
    assert_eq!(
        late,
        Step::Reject {
            why: "approval timed out".into()
        }
    );
    let other = queue(&mut w.store, RolloutState::running(false, 0));
    w.store
        .record_verdict(other.id, "bob", Verdict::Rejected, "f1", "no")
        .expect("verdict");
    let step = next(&w.store, &other, &ungated(), at(9, 0)).expect("next");
    assert!(matches!(step, Step::Reject { why } if why.contains("rejected by bob")));
}

#[test]
fn an_emergency_passes_every_gate_of_a_queued_deployment() {
    let mut w = world();
    let d = queue(&mut w.store, RolloutState::running(true, 0));
    let all = frozen(windowed(approvals(Some(1))));
    assert_eq!(
        next(&w.store, &d, &all, at(9, 5)).expect("next"),
        Step::Start
    );
}

#[test]
fn a_rollout_between_batches_is_held_by_a_pause_then_a_freeze_or_window_then_its_canary() {
    let mut w = world();
    let d = between(&mut w.store, Some(Waiting::Continue), false);
    let next = |store: &Store, gates: &Gates| next(store, &d, gates, at(9, 0)).expect("next");
    assert_eq!(waiting(next(&w.store, &ungated())), Waiting::Continue);
    assert_eq!(waiting(next(&w.store, &frozen(ungated()))), Waiting::Freeze);
    assert_eq!(
        waiting(next(&w.store, &windowed(ungated()))),
        Waiting::Window
    );
    w.store.pause_ring("production", "incident").expect("pause");
    assert_eq!(waiting(next(&w.store, &frozen(ungated()))), Waiting::Paused);
    assert!(w.store.unpause_ring("production").expect("unpause"));
    let running = between(&mut w.store, None, false);
    let step = super::next(&w.store, &running, &ungated(), at(9, 0)).expect("next");
    assert_eq!(
        step,
        Step::Start,
        "a rollout whose pause was lifted goes on"
    );
}

#[test]
fn an_emergency_rollout_between_batches_ignores_freezes_and_windows_but_not_a_pause() {
    let mut w = world();
    let d = between(&mut w.store, Some(Waiting::Paused), true);
    let gates = frozen(windowed(ungated()));
    assert_eq!(
        next(&w.store, &d, &gates, at(9, 0)).expect("next"),
        Step::Start
    );
    w.store.pause_ring("production", "incident").expect("pause");
    let step = next(&w.store, &d, &gates, at(9, 0)).expect("next");
    assert_eq!(waiting(step), Waiting::Paused);
}

#[test]
fn holding_notes_a_reason_once_and_rejecting_fails_the_deployment() {
    let mut w = world();
    let d = queue(&mut w.store, RolloutState::running(false, 0));
    for _ in 0..3 {
        hold(&mut w.store, &d, Waiting::Window, "waiting for the window").expect("hold");
    }
    let notes = w.store.events(d.id).expect("events");
    let count = notes
        .iter()
        .filter(|e| e.message == "waiting for the window")
        .count();
    assert_eq!(count, 1);
    let rollout = w.store.rollout(d.id).expect("rollout");
    assert_eq!(rollout.and_then(|r| r.waiting), Some(Waiting::Window));
    let failed = reject(&mut w.store, &d, "approval timed out").expect("reject");
    assert_eq!(failed.state, DeploymentState::Failed);
    let rollout = w.store.rollout(d.id).expect("rollout");
    assert_eq!(rollout.and_then(|r| r.waiting), None);
}

#[test]
fn an_approval_times_out_at_the_gates_timeout_whatever_it_would_complete() {
    let mut w = world();
    let d = queue(&mut w.store, RolloutState::running(false, 0));
    let gates = approvals(Some(60));
    let ballot = Ballot {
        approver: "bob",
        verdict: Verdict::Approved,
        fingerprint: "f1",
        reason: "",
    };
    let late = cast(&mut w.store, &d, &gates, &ballot, at(9, 1)).expect("cast");
    assert!(matches!(late, Cast::TimedOut(ref f) if f.state == DeploymentState::Failed));
    assert!(
        w.store.verdicts(d.id).expect("verdicts").is_empty(),
        "recorded"
    );
    assert!(!approval_timed_out(&d, &gates, at(9, 0)));
    assert!(approval_timed_out(&d, &gates, at(9, 1)));
    assert!(!approval_timed_out(&d, &approvals(None), at(23, 0)));
    assert!(!approval_timed_out(&d, &ungated(), at(23, 0)));
}
