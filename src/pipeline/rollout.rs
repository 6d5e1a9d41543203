//! Rollout stage: what a ring's gates ask of a deployment, decided without IO. The
//! batches a strategy switches workers in, whether approvals are complete, and whether
//! a deployment window is open. The clock is an argument, never read here.

use crate::model::deployment::Waiting;
use crate::model::manifest::{self, DriftMode, RingSpec, StrategyKind};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

/// A ring's gates and rollout settings, resolved from its spec.
#[derive(Clone, Debug)]
pub struct Gates {
    /// Approvals a deployment needs before it starts.
    pub approvals: Option<ApprovalGate>,
    /// How workers are switched.
    pub strategy: Strategy,
    /// Health checking after each batch.
    pub health: HealthTiming,
    /// The ring's `health:` as written (what to probe), if it sets one.
    pub probe: Option<crate::model::manifest::Health>,
    /// A failed batch puts every touched worker back.
    pub auto_revert: bool,
    /// When deployments may start.
    pub window: Option<Window>,
    /// Nothing may start.
    pub freeze: bool,
    /// The daemon deploys every new commit of the tracked branch to the ring.
    pub auto_deploy: bool,
    /// What the ring does about drift (agents are told with each generation).
    pub drift: DriftMode,
    /// The ring whose Active bundle `promote` brings in, if any.
    pub promotes_from: Option<String>,
}

/// `approvals:` of a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalGate {
    /// Distinct approvers needed.
    pub required: u32,
    /// Names allowed to approve.
    pub approvers: BTreeSet<String>,
    /// A deployment waiting longer is rejected.
    pub timeout: Option<Duration>,
}

/// How a deployment switches its workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    /// allAtOnce, rolling or canary.
    pub kind: StrategyKind,
    /// Workers in the canary batch.
    pub canary: u32,
    /// Workers switched at once after the canary (rolling and canary).
    pub max_parallel: u32,
    /// Go on after a healthy canary without `promote --continue`.
    pub auto_promote: bool,
}

/// The health settings' durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthTiming {
    /// One probe's timeout.
    pub timeout: Duration,
    /// How long a worker must stay healthy.
    pub min_healthy: Duration,
    /// How long a worker has to become healthy.
    pub healthy_deadline: Duration,
    /// How long the whole deployment may take.
    pub progress_deadline: Duration,
}

impl Default for HealthTiming {
    fn default() -> Self {
        HealthTiming {
            timeout: Duration::from_secs(10),
            min_healthy: Duration::ZERO,
            healthy_deadline: Duration::from_secs(5 * 60),
            progress_deadline: Duration::from_secs(30 * 60),
        }
    }
}

/// A recurring deployment window: opens at each `cron` time in `timezone`, stays open
/// for `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    cron: croner::Cron,
    /// How long the window stays open.
    pub duration: Duration,
    timezone: chrono_tz::Tz,
}

/// Why a ring's gates cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GateError {
    /// A duration does not parse.
    #[error("invalid duration `{0}`")]
    Duration(String),
    /// The window's cron expression does not parse.
    #[error("invalid window cron `{cron}`: {message}")]
    Cron {
        /// The expression.
        cron: String,
        /// The parser's explanation.
        message: String,
    },
    /// The window's time zone is unknown.
    #[error("unknown window timezone `{0}` (e.g. `Europe/Paris`, `UTC`)")]
    Timezone(String),
}

fn duration(text: &str) -> Result<Duration, GateError> {
    humantime::parse_duration(text).map_err(|_| GateError::Duration(text.to_owned()))
}

fn duration_or(text: Option<&String>, default: Duration) -> Result<Duration, GateError> {
    text.map_or(Ok(default), |t| duration(t))
}

impl Gates {
    /// Whether deploying the ring takes batches or health checks (else all at once).
    pub fn staged(&self) -> bool {
        self.strategy.kind != StrategyKind::AllAtOnce || self.probe.is_some()
    }

    /// The gates only a promotion passes (approvals, a window, a freeze), named; empty
    /// when the ring may be deployed directly.
    pub fn promotion_only(&self) -> Vec<&'static str> {
        let mut held = Vec::new();
        if self.approvals.is_some() {
            held.push("approvals");
        }
        if self.window.is_some() {
            held.push("a window");
        }
        if self.freeze {
            held.push("a freeze");
        }
        held
    }

    /// The gates of a ring that declares none: every worker at once, nothing held.
    pub fn ungated() -> Self {
        Gates {
            approvals: None,
            strategy: Strategy::from_spec(None),
            health: HealthTiming::default(),
            probe: None,
            auto_revert: false,
            window: None,
            freeze: false,
            auto_deploy: false,
            drift: DriftMode::default(),
            promotes_from: None,
        }
    }

    /// The gates `spec` declares, with defaults for what it leaves out.
    pub fn from_spec(spec: &RingSpec) -> Result<Self, GateError> {
        let approvals = spec
            .approvals
            .as_ref()
            .map(ApprovalGate::from_spec)
            .transpose()?;
        let strategy = Strategy::from_spec(spec.strategy.as_ref());
        let health = match &spec.health {
            None => HealthTiming::default(),
            Some(h) => HealthTiming::from_spec(h)?,
        };
        let window = spec.window.as_ref().map(Window::from_spec).transpose()?;
        Ok(Gates {
            approvals,
            strategy,
            health,
            probe: spec.health.clone(),
            auto_revert: spec.auto_revert,
            window,
            freeze: spec.freeze,
            auto_deploy: spec.auto_deploy,
            drift: spec.drift,
            promotes_from: spec.promotes_from.as_ref().map(|p| p.value.clone()),
        })
    }
}

impl ApprovalGate {
    /// The gate a ring's `approvals:` declares.
    fn from_spec(a: &manifest::Approvals) -> Result<Self, GateError> {
        Ok(ApprovalGate {
            required: a.required.value,
            approvers: a.approvers.iter().cloned().collect(),
            timeout: a.timeout.as_ref().map(|t| duration(&t.value)).transpose()?,
        })
    }
}

impl HealthTiming {
    /// The durations a ring's `health:` sets, with the defaults for those it leaves out.
    fn from_spec(h: &manifest::Health) -> Result<Self, GateError> {
        let defaults = HealthTiming::default();
        Ok(HealthTiming {
            timeout: duration_or(h.timeout.as_ref().map(|s| &s.value), defaults.timeout)?,
            min_healthy: duration_or(
                h.min_healthy.as_ref().map(|s| &s.value),
                defaults.min_healthy,
            )?,
            healthy_deadline: duration_or(
                h.healthy_deadline.as_ref().map(|s| &s.value),
                defaults.healthy_deadline,
            )?,
            progress_deadline: duration_or(
                h.progress_deadline.as_ref().map(|s| &s.value),
                defaults.progress_deadline,
            )?,
        })
    }
}

/// One step of a rollout: the workers switched together, and whether the rollout
/// waits for a person after it (a canary without `autoPromote`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Workers of the batch, in the order given.
    pub workers: Vec<String>,
    /// Wait for `promote --continue` once this batch is healthy.
    pub pause_after: bool,
}

impl Strategy {
    /// The strategy a ring's `strategy:` declares; all at once when it has none.
    fn from_spec(spec: Option<&manifest::Strategy>) -> Self {
        spec.map_or(
            Strategy {
                kind: StrategyKind::AllAtOnce,
                canary: 0,
                max_parallel: 0,
                auto_promote: false,
            },
            |s| Strategy {
                kind: s.kind,
                canary: s.canary.unwrap_or(1),
                max_parallel: s.max_parallel.unwrap_or(1).max(1),
                auto_promote: s.auto_promote,
            },
        )
    }

    /// The batches `workers` are switched in.
    pub fn batches(&self, workers: &[String]) -> Vec<Batch> {
        let batch = |w: &[String], pause_after| Batch {
            workers: w.to_vec(),
            pause_after,
        };
        if workers.is_empty() {
            return Vec::new();
        }
        match self.kind {
            StrategyKind::AllAtOnce => vec![batch(workers, false)],
            StrategyKind::Rolling => chunks(workers, self.max_parallel),
            StrategyKind::Canary => {
                let first = (self.canary.max(1) as usize).min(workers.len());
                let (canary, rest) = workers.split_at(first);
                let mut out = vec![batch(canary, !self.auto_promote && !rest.is_empty())];
                out.extend(chunks(rest, self.max_parallel));
                out
            }
        }
    }
}

fn chunks(workers: &[String], size: u32) -> Vec<Batch> {
    workers
        .chunks(size.max(1) as usize)
        .map(|c| Batch {
            workers: c.to_vec(),
            pause_after: false,
        })
        .collect()
}

/// One approval as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The approver's name (from their token).
    pub approver: String,
    /// The deployment fingerprint the approver saw.
    pub fingerprint: String,
}

/// Where a deployment stands with its approval gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalStatus {
    /// No gate, or enough distinct approvers approved this fingerprint.
    Approved,
    /// Waiting: `have` of `need` distinct approvers so far.
    Waiting {
        /// Valid approvals so far.
        have: u32,
        /// Approvals required.
        need: u32,
    },
    /// Waited longer than the gate's timeout.
    TimedOut,
}

impl ApprovalGate {
    /// Counts the approvals of allowed approvers that bind to `fingerprint` (an approval
    /// of another fingerprint saw a different plan and is void), each approver once.
    pub fn status(
        &self,
        approvals: &[Approval],
        fingerprint: &str,
        waited: Duration,
    ) -> ApprovalStatus {
        let distinct: BTreeSet<&str> = approvals
            .iter()
            .filter(|a| a.fingerprint == fingerprint && self.approvers.contains(&a.approver))
            .map(|a| a.approver.as_str())
            .collect();
        let have = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
        if have >= self.required {
            ApprovalStatus::Approved
        } else if self.timeout.is_some_and(|t| waited >= t) {
            ApprovalStatus::TimedOut
        } else {
            ApprovalStatus::Waiting {
                have,
                need: self.required,
            }
        }
    }
}

/// What a queued deployment's gates say at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing holds it: roll it out.
    Go,
    /// Held: what it waits for (a freeze, approvals, a window) and why, in words.
    Wait {
        /// What it waits for.
        waiting: Waiting,
        /// Why, for the record and the person.
        why: String,
    },
    /// It waited for approvals longer than the gate's timeout.
    TimedOut,
}

/// Where a queued deployment stands with its gates.
#[derive(Clone, Copy, Debug)]
pub struct Queued<'a> {
    /// Its id, for the instructions in [`Decision::Wait`].
    pub id: &'a str,
    /// What it would write now.
    pub fingerprint: &'a str,
    /// Its approvals so far.
    pub approvals: &'a [Approval],
    /// How long it has been queued.
    pub waited: Duration,
    /// Promoted with `--emergency`: nothing holds it.
    pub emergency: bool,
}

impl Gates {
    /// What the gates say about `queued` at `now`: a freeze, missing approvals (or their
    /// timeout), then a closed window hold it, in that order.
    pub fn decide(&self, queued: &Queued<'_>, now: DateTime<Utc>) -> Decision {
        if queued.emergency {
            return Decision::Go;
        }
        if self.freeze
            && let Some((waiting, why)) = self.closed(now)
        {
            return Decision::Wait { waiting, why };
        }
        if let Some(gate) = &self.approvals {
            match gate.status(queued.approvals, queued.fingerprint, queued.waited) {
                ApprovalStatus::Approved => {}
                ApprovalStatus::TimedOut => return Decision::TimedOut,
                ApprovalStatus::Waiting { have, need } => {
                    let who: Vec<&str> = gate.approvers.iter().map(String::as_str).collect();
                    let why = format!(
                        "awaiting approval ({have} of {need}; approvers: {}); `ringops approve {}`",
                        who.join(", "),
                        queued.id
                    );
                    return Decision::Wait {
                        waiting: Waiting::Approval,
                        why,
                    };
                }
            }
        }
        match self.closed(now) {
            Some((waiting, why)) => Decision::Wait { waiting, why },
            None => Decision::Go,
        }
    }

    /// What keeps the ring shut at `now` whatever was approved: a freeze or a closed
    /// window, as `(waiting, explanation)`. A rollout checks it again before it goes on.
    pub fn closed(&self, now: DateTime<Utc>) -> Option<(Waiting, String)> {
        if self.freeze {
            return Some((
                Waiting::Freeze,
                "ring is frozen (`freeze: true`)".to_owned(),
            ));
        }
        let window = self.window.as_ref().filter(|w| !w.is_open(now))?;
        let opens = window
            .next_open(now)
            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
        Some((
            Waiting::Window,
            format!("waiting for the ring's window (opens {opens})"),
        ))
    }
}

impl Window {
    /// The window a ring's `window:` declares.
    fn from_spec(w: &manifest::Window) -> Result<Self, GateError> {
        let zone = w.timezone.as_ref().map(|z| z.value.as_str());
        Window::new(&w.cron.value, &w.duration.value, zone)
    }

    /// A window opening at `cron` (five fields) in `timezone` (default UTC) for `duration`.
    pub fn new(cron: &str, duration_text: &str, timezone: Option<&str>) -> Result<Self, GateError> {
        let parsed = croner::Cron::from_str(cron).map_err(|e| GateError::Cron {
            cron: cron.to_owned(),
            message: e.to_string(),
        })?;
        let timezone = match timezone {
            None => chrono_tz::UTC,
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map_err(|_| GateError::Timezone(name.to_owned()))?,
        };
        Ok(Window {
            cron: parsed,
            duration: duration(duration_text)?,
            timezone,
        })
    }

    /// Whether the window is open at `now`: it opened at most `duration` ago.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.timezone);
        let Ok(opened) = self.cron.find_previous_occurrence(&local, true) else {
            return false;
        };
        let open_for = chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX);
        local < opened + open_for
    }

    /// When the window next opens after `now` (`now` itself when it is open).
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(now) {
            return Some(now);
        }
        let local = now.with_timezone(&self.timezone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("w{i}")).collect()
    }

    fn sizes(batches: &[Batch]) -> Vec<(usize, bool)> {
        batches
            .iter()
            .map(|b| (b.workers.len(), b.pause_after))
            .collect()
    }

    fn strategy(
        kind: StrategyKind,
        canary: u32,
        max_parallel: u32,
        auto_promote: bool,
    ) -> Strategy {
        Strategy {
            kind,
            canary,
            max_parallel,
            auto_promote,
        }
    }

    #[test]
    fn strategies_cut_workers_into_batches() {
        let all = strategy(StrategyKind::AllAtOnce, 0, 0, false);
        assert_eq!(sizes(&all.batches(&names(5))), [(5, false)]);
        let rolling = strategy(StrategyKind::Rolling, 0, 2, false);
        assert_eq!(
            sizes(&rolling.batches(&names(5))),
            [(2, false), (2, false), (1, false)]
        );
        assert_eq!(rolling.batches(&names(5))[2].workers, ["w5"]);
        let canary = strategy(StrategyKind::Canary, 1, 2, false);
        assert_eq!(
            sizes(&canary.batches(&names(5))),
            [(1, true), (2, false), (2, false)]
        );
        let auto = strategy(StrategyKind::Canary, 2, 3, true);
        assert_eq!(sizes(&auto.batches(&names(5))), [(2, false), (3, false)]);
        // A canary as large as the ring has nothing to pause for.
        assert_eq!(sizes(&canary.batches(&names(1))), [(1, false)]);
        assert!(rolling.batches(&[]).is_empty());
    }

    fn gate(required: u32, timeout: Option<u64>) -> ApprovalGate {
        ApprovalGate {
            required,
            approvers: ["alice", "bob", "carol"].map(String::from).into(),
            timeout: timeout.map(Duration::from_secs),
        }
    }

    fn approval(who: &str, fingerprint: &str) -> Approval {
        Approval {
            approver: who.into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn approvals_count_distinct_allowed_approvers_of_the_same_plan() {
        let g = gate(2, Some(3600));
        let wait = Duration::from_secs(10);
        let waiting = |have| ApprovalStatus::Waiting { have, need: 2 };
        assert_eq!(g.status(&[], "f1", wait), waiting(0));
        let twice = [approval("alice", "f1"), approval("alice", "f1")];
        assert_eq!(g.status(&twice, "f1", wait), waiting(1));
        let stranger = [approval("alice", "f1"), approval("mallory", "f1")];
        assert_eq!(g.status(&stranger, "f1", wait), waiting(1));
        let other_plan = [approval("alice", "f1"), approval("bob", "f0")];
        assert_eq!(g.status(&other_plan, "f1", wait), waiting(1));
        let two = [approval("alice", "f1"), approval("bob", "f1")];
        assert_eq!(g.status(&two, "f1", wait), ApprovalStatus::Approved);
        // The fingerprint changed after both approved: void.
        assert_eq!(g.status(&two, "f2", wait), waiting(0));
        assert_eq!(
            g.status(&[], "f1", Duration::from_secs(3600)),
            ApprovalStatus::TimedOut
        );
        assert_eq!(gate(2, None).status(&[], "f1", Duration::MAX), waiting(0));
    }

    #[test]
    fn a_window_is_open_for_its_duration_after_each_start_in_its_zone() {
        // Tuesdays 02:00 Paris time, for two hours.
        let w = Window::new("0 2 * * 2", "2h", Some("Europe/Paris")).unwrap();
        // 2026-11-24 is a Tuesday; Paris is UTC+1 in November.
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        assert!(!w.is_open(at(24, 0, 59)));
        assert!(w.is_open(at(24, 1, 0)));
        assert!(w.is_open(at(24, 2, 59)));
        assert!(!w.is_open(at(24, 3, 0)));
        let next_tuesday = Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap();
        assert_eq!(w.next_open(at(24, 3, 0)), Some(next_tuesday));
        assert_eq!(w.next_open(at(24, 1, 30)), Some(at(24, 1, 30)));
    }

    #[test]
    fn gates_hold_for_a_freeze_then_approvals_then_a_closed_window() {
        let at = |h| Utc.with_ymd_and_hms(2026, 11, 24, h, 0, 0).unwrap();
        let mut gates = Gates {
            approvals: Some(gate(1, Some(60))),
            strategy: strategy(StrategyKind::AllAtOnce, 0, 0, false),
            health: HealthTiming::default(),
            probe: None,
            auto_revert: false,
            window: Some(Window::new("0 2 * * 2", "2h", None).unwrap()),
            freeze: true,
            auto_deploy: false,
            drift: DriftMode::Revert,
            promotes_from: None,
        };
        let none: [Approval; 0] = [];
        let one = [approval("bob", "f1")];
        let queued = |approvals, waited, emergency| Queued {
            id: "d-000007",
            fingerprint: "f1",
            approvals,
            waited: Duration::from_secs(waited),
            emergency,
        };
        let waiting = |d: Decision| match d {
            Decision::Wait { waiting, .. } => waiting,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            waiting(gates.decide(&queued(&one, 0, false), at(2))),
            Waiting::Freeze
        );
        assert_eq!(gates.decide(&queued(&none, 0, true), at(9)), Decision::Go);
        gates.freeze = false;
        let wait = gates.decide(&queued(&none, 0, false), at(2));
        assert!(
            matches!(&wait, Decision::Wait { why, .. } if why.contains("`ringops approve d-000007`"))
        );
        assert_eq!(
            gates.decide(&queued(&none, 60, false), at(2)),
            Decision::TimedOut
        );
        assert_eq!(
            waiting(gates.decide(&queued(&one, 0, false), at(9))),
            Waiting::Window
        );
        assert_eq!(gates.decide(&queued(&one, 0, false), at(3)), Decision::Go);
    }

    #[test]
    fn bad_windows_are_refused_by_name() {
        assert!(matches!(
            Window::new("61 * * * *", "1h", None),
            Err(GateError::Cron { .. })
        ));
        assert_eq!(
            Window::new("0 2 * * 2", "1h", Some("Mars/Olympus")),
            Err(GateError::Timezone("Mars/Olympus".into()))
        );
        assert_eq!(
            Window::new("0 2 * * 2", "soon", None),
            Err(GateError::Duration("soon".into()))
        );
    }
}
