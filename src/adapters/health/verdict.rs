//! What a worker's probes add up to: the running [`Tally`] and the [`Verdict`] with
//! its reason. No IO and no clock: the times of each probe are given.

use super::{HealthCheck, ProbeFailure};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How a worker's health check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It passed every probe for `min_healthy`.
    Healthy(Healthy),
    /// It did not by the deadline.
    Unhealthy(Unhealthy),
}

impl Verdict {
    /// Whether the worker is healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy(h) => write!(f, "healthy ({} probes)", h.probes),
            Self::Unhealthy(u) => write!(f, "unhealthy: {u}"),
        }
    }
}

/// A worker that became healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthy {
    /// Probes run, failed ones included.
    pub probes: u32,
    /// From the start of the check to the probe that made it healthy.
    pub elapsed: Duration,
}

/// A worker that did not become healthy, and why. Its `Display` is the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    /// The last failed probe, if any failed.
    pub last_failure: Option<ProbeFailure>,
    /// Probes run.
    pub probes: u32,
    /// Probes that failed.
    pub failures: u32,
    /// Times it failed after having passed (flapping).
    pub flaps: u32,
    /// The longest time it passed every probe.
    pub longest_healthy: Duration,
    /// Whether the last probe passed (it recovered, too late).
    pub passing_at_end: bool,
    /// The `min_healthy` it needed.
    pub min_healthy: Duration,
    /// The `healthy_deadline` it missed.
    pub deadline: Duration,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fmt_d = |d: Duration| humantime::format_duration(round_ms(d)).to_string();
        let (min, deadline) = (fmt_d(self.min_healthy), fmt_d(self.deadline));
        let longest = fmt_d(self.longest_healthy);
        match &self.last_failure {
            Some(last) if !self.passing_at_end => {
                let (failed, probes) = (self.failures, self.probes);
                write!(
                    f,
                    "{last} ({failed} of {probes} probes failed within {deadline}"
                )?;
                if self.flaps > 0 {
                    let times = format!(
                        "{} {}",
                        self.flaps,
                        crate::report::plural(self.flaps as usize, "time", "times")
                    );
                    write!(f, "; it passed, then failed again {times}")?;
                    write!(f, ", healthy for at most {longest} of the {min} needed")?;
                }
                f.write_str(")")
            }
            last => {
                write!(f, "healthy for only {longest} of the {min} needed ")?;
                write!(f, "by the {deadline} deadline")?;
                match last {
                    Some(last) => write!(f, "; last failure: {last}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `d` to whole milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
/// The probes of one worker so far.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    probes: u32,
    failures: u32,
    flaps: u32,
    /// Start of the first probe of the current run of passing probes.
    passing_since: Option<Instant>,
    longest: Duration,
    last_failure: Option<ProbeFailure>,
}

impl Tally {
    /// Counts a probe that ran from `started` to `ended`; the number of probes when the
    /// worker is now healthy.
    pub(super) fn record(
        &mut self,
        started: Instant,
        ended: Instant,
        result: Result<(), ProbeFailure>,
        check: &HealthCheck,
    ) -> Option<u32> {
        self.probes += 1;
        match result {
            Ok(()) => {
                let since = *self.passing_since.get_or_insert(started);
                let run = ended.saturating_duration_since(since);
                self.longest = self.longest.max(run);
                (run >= check.min_healthy).then_some(self.probes)
            }
            Err(failure) => {
                self.failures += 1;
                if self.passing_since.take().is_some() {
                    self.flaps += 1;
                }
                self.last_failure = Some(failure);
                None
            }
        }
    }

    /// This tally after one more failed probe (for a probe that could not run).
    pub(super) fn failed(mut self, failure: ProbeFailure) -> Self {
        self.probes += 1;
        self.failures += 1;
        self.passing_since = None;
        self.last_failure = Some(failure);
        self
    }

    /// The verdict on a worker that did not become healthy.
    pub(super) fn unhealthy(self, check: &HealthCheck) -> Unhealthy {
        Unhealthy {
            passing_at_end: self.passing_since.is_some(),
            last_failure: self.last_failure,
            probes: self.probes,
            failures: self.failures,
            flaps: self.flaps,
            longest_healthy: self.longest,
            min_healthy: check.min_healthy,
            deadline: check.healthy_deadline,
        }
    }
}

/// `Ok` when every worker is healthy, else the unhealthy ones by name with their
/// reasons (`edge-2: HTTP 503 …; edge-3: connection refused …`).
pub fn all_healthy(verdicts: &BTreeMap<String, Verdict>) -> Result<(), String> {
    let unhealthy: Vec<String> = verdicts
        .iter()
        .filter_map(|(worker, verdict)| match verdict {
            Verdict::Healthy(_) => None,
            Verdict::Unhealthy(why) => Some(format!("{worker}: {why}")),
        })
        .collect();
    if unhealthy.is_empty() {
        Ok(())
    } else {
        Err(unhealthy.join("; "))
    }
}
