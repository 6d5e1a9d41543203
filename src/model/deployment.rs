//! The vocabulary of deployments: ids, the lifecycle of DESIGN.md, timestamps and the
//! records the state keeps about each deployment (events, worker outcomes, artifacts
//! written) and about drift. Plain data and the transition rule; storing them is the job of
//! `adapters::store`, and reading the clock is the caller's.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A deployment's id: a sequence number shown as `d-000042`, so ids sort in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId(pub u64);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d-{:06}", self.0)
    }
}

/// A string that is not a deployment id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a deployment id; ids look like d-000042")]
pub struct ParseDeploymentIdError(pub String);

impl FromStr for DeploymentId {
    type Err = ParseDeploymentIdError;
    /// Accepts `d-000042` and the unpadded `d-42`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDeploymentIdError(s.to_owned());
        let digits = s.strip_prefix("d-").ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map(DeploymentId).map_err(|_| bad())
    }
}

impl Serialize for DeploymentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A value that names none of a fieldless enum's variants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {what} ({expected})")]
pub struct ParseNameError {
    /// What was expected (`deployment state`).
    pub what: &'static str,
    /// What was given.
    pub value: String,
    /// The names accepted.
    pub expected: String,
}

/// Declares a fieldless enum stored and shown by its variants' names (the exact names of
/// DESIGN.md), with `ALL`, `as_str`, `Display` and a `FromStr` that ignores ASCII case.
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($what:literal) {
        $($(#[$vmeta:meta])* $variant:ident,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseNameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| ParseNameError {
                        what: $what,
                        value: s.to_owned(),
                        expected: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    })
            }
        }
    };
}

named_enum! {
    /// Where a deployment is in its lifecycle:
    /// Queued → Building → Deploying → Validating → Active → Superseded, with Failed and
    /// RollingBack → RolledBack on the way.
    pub enum DeploymentState ("deployment state") {
        /// Recorded, not started.
        Queued,
        /// Compiling the bundle into artifacts.
        Building,
        /// Writing artifacts to workers.
        Deploying,
        /// Checking the workers after the switch.
        Validating,
        /// What the ring runs now. At most one per ring.
        Active,
        /// Stopped with an error. Final.
        Failed,
        /// Undoing what it wrote.
        RollingBack,
        /// What it wrote was undone. Final.
        RolledBack,
        /// Was Active; a newer deployment replaced it. Final.
        Superseded,
    }
}

impl DeploymentState {
    /// No way out: Failed, RolledBack, Superseded.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack | Self::Superseded)
    }

    /// Work in progress that only a running process moves on: Building, Deploying,
    /// Validating, RollingBack. Found in the state after a crash, they are interrupted.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            Self::Building | Self::Deploying | Self::Validating | Self::RollingBack
        )
    }

    /// Whether the lifecycle allows going from `self` to `to`. Every state that is neither
    /// final nor Active may fail; Active leaves only by being superseded or rolled back, so a
    /// ring that once had an Active deployment keeps one until something replaces it.
    pub fn can_become(self, to: DeploymentState) -> bool {
        use DeploymentState::*;
        match (self, to) {
            (Queued, Building) | (Building, Deploying) | (Deploying, Validating) => true,
            (Validating, Active) | (Active, Superseded) | (RollingBack, RolledBack) => true,
            (Deploying | Validating | Active, RollingBack) => true,
            (from, Failed) => !from.is_final() && from != Active,
            _ => false,
        }
    }
}

/// What an unfinished rollout waits for before its next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Waiting {
    /// Approvals its ring's gate needs.
    Approval,
    /// Its ring's deployment window to open.
    Window,
    /// Its ring's freeze to be lifted.
    Freeze,
    /// `promote --continue` after a healthy canary.
    Continue,
    /// `resume` of its ring, which a person paused.
    Paused,
}

impl Waiting {
    /// Every reason, in declaration order.
    pub const ALL: &'static [Waiting] = &[
        Waiting::Approval,
        Waiting::Window,
        Waiting::Freeze,
        Waiting::Continue,
        Waiting::Paused,
    ];

    /// The word stored in the state (an empty word there means "running").
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Approval => "approval",
            Waiting::Window => "window",
            Waiting::Freeze => "freeze",
            Waiting::Continue => "continue",
            Waiting::Paused => "paused",
        }
    }

    /// Whether only time or a gate's verdict moves it on (the daemon looks at these),
    /// rather than a person's `--continue` or `resume`.
    pub fn is_gate(self) -> bool {
        matches!(self, Waiting::Approval | Waiting::Window | Waiting::Freeze)
    }

    /// The stored word read back: `None` for the empty word (running) and for a word this
    /// version does not know.
    pub fn from_stored(word: &str) -> Option<Waiting> {
        Self::ALL.iter().copied().find(|w| w.as_str() == word)
    }

    /// How a person would say it.
    pub fn describe(self) -> &'static str {
        match self {
            Waiting::Approval => "awaiting approval",
            Waiting::Window => "waiting for its window",
            Waiting::Freeze => "held by a freeze",
            Waiting::Continue => "paused after its canary",
            Waiting::Paused => "its ring is paused",
        }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC. Shown as RFC 3339.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// From whole seconds since the epoch.
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// This time minus a duration (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 in UTC with milliseconds: `2026-05-01T12:00:00.250Z`.
    pub fn to_rfc3339_millis(self) -> String {
        let (date, ms) = self.split();
        format!("{date}.{ms:03}Z")
    }

    /// The date-time to the second and the milliseconds left over.
    fn split(self) -> (String, i64) {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rest / 3600, rest % 3600 / 60, rest % 60);
        (format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}"), ms)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC to the second: `2026-05-01T12:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Z", self.split().0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339_millis())
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What starting a deployment needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDeployment {
    /// The ring it deploys to.
    pub ring: String,
    /// Commit id of the bundle.
    pub commit: String,
    /// Tree id of the bundle's manifest folder.
    pub tree: String,
    /// The desired state's fingerprint (`DesiredState::fingerprint`).
    pub fingerprint: String,
    /// Who asked: a user name, `daemon`, `webhook:<id>`.
    pub actor: String,
    /// Why, in the actor's words.
    pub reason: String,
    /// For a rollback, the deployment whose artifacts it restores.
    pub rollback_of: Option<DeploymentId>,
}

/// One deployment as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// Its id.
    pub id: DeploymentId,
    /// The ring it deploys to.
    pub ring: String,
    /// Commit id of the bundle.
    pub commit: String,
    /// Tree id of the bundle's manifest folder.
    pub tree: String,
    /// The desired state's fingerprint.
    pub fingerprint: String,
    /// Where it is now.
    pub state: DeploymentState,
    /// Who asked.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// What made it fail, when it failed.
    pub error: Option<String>,
    /// For a rollback, the deployment whose artifacts it restores.
    pub rollback_of: Option<DeploymentId>,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
    /// When it became Active, if it ever did.
    pub activated_at: Option<Timestamp>,
    /// When the attempt ended (Active, Failed or RolledBack).
    pub finished_at: Option<Timestamp>,
    /// When it was pruned from history; kept for audit, hidden from history.
    pub expires_at: Option<Timestamp>,
    /// It changed nothing on its ring's workers: the ring already had its desired state,
    /// and it carries its commit on to the next ring.
    pub unchanged: bool,
}

/// How a deployment that changed nothing on its ring's workers is described.
pub const NO_CHANGES: &str = "no changes on this ring's workers";

/// Something that happened to a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentEvent {
    /// When.
    pub at: Timestamp,
    /// The state it entered, or None for a note.
    pub state: Option<DeploymentState>,
    /// What happened, in words.
    pub message: String,
}

named_enum! {
    /// How one worker fared in a deployment.
    pub enum WorkerOutcome ("worker outcome") {
        /// Its new artifacts were switched in.
        Applied,
        /// It already held the desired artifacts.
        Unchanged,
        /// It could not be updated; the message says why.
        Failed,
        /// It was switched, then put back to the previous artifacts.
        Restored,
        /// Not attempted (an earlier worker failed).
        Skipped,
        /// It failed or was switched, and putting the previous artifacts back failed
        /// too: it may hold a mix; the message says what happened.
        RestoreFailed,
    }
}

/// How one worker fared, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerRecord {
    /// The worker.
    pub worker: String,
    /// The outcome.
    pub outcome: WorkerOutcome,
    /// Details (the error, what was restored).
    pub message: String,
    /// When it was recorded.
    pub at: Timestamp,
}

/// One managed file a deployment left on a worker: enough to restore it from the objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct WrittenArtifact {
    /// Worker-relative path.
    pub path: String,
    /// Hex sha256 of the content, the key in the object store.
    pub sha256: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// A ring held back by a rollback: the daemon does not deploy `commit` to it again until
/// the tracked branch moves past it or someone resumes the ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// The ring.
    pub ring: String,
    /// The commit that was rolled back.
    pub commit: String,
    /// The rollback deployment that pinned it.
    pub deployment: DeploymentId,
    /// The rollback's reason.
    pub reason: String,
    /// When.
    pub since: Timestamp,
}

/// Where a deployment put one worker's files and what ran around the switch: enough
/// to reach the worker again (status, drift, rollback) without the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Placement {
    /// The worker's target: `dir:/abs/path` for a local directory.
    pub location: String,
    /// The group's check hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::model::desired::WorkerHook>,
    /// The group's reload hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<crate::model::desired::WorkerHook>,
    /// Paths of artifacts holding sensitive values: never shown, not even as a diff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

named_enum! {
    /// How a managed file differs from the Active deployment.
    pub enum DriftKind ("drift kind") {
        /// Its content or mode was changed.
        Edited,
        /// It is gone.
        Missing,
        /// A managed file that should no longer exist.
        Extra,
    }
}

/// One drifted file seen on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The ring.
    pub ring: String,
    /// The worker.
    pub worker: String,
    /// Worker-relative path.
    pub path: String,
    /// How it differs.
    pub kind: DriftKind,
    /// A short description, never holding sensitive values.
    pub summary: String,
}

/// Drift as recorded, with the time it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DriftEvent {
    /// When it was seen.
    pub at: Timestamp,
    /// What was seen.
    #[serde(flatten)]
    pub drift: Drift,
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentState::*;

    #[test]
    fn ids_show_padded_and_parse_both_ways() {
        assert_eq!(DeploymentId(42).to_string(), "d-000042");
        assert_eq!(DeploymentId(1_234_567).to_string(), "d-1234567");
        assert_eq!("d-000042".parse(), Ok(DeploymentId(42)));
        assert_eq!("d-42".parse(), Ok(DeploymentId(42)));
        for bad in [
            "42",
            "d-",
            "d-4x",
            "d--1",
            "D-1",
            "d-99999999999999999999999",
        ] {
            assert!(bad.parse::<DeploymentId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn states_round_trip_by_exact_name() {
        for &state in DeploymentState::ALL {
            assert_eq!(state.to_string().parse(), Ok(state));
        }
        assert_eq!("RollingBack".parse(), Ok(RollingBack));
        assert_eq!("rolledback".parse(), Ok(RolledBack));
        let err = "Rolling back"
            .parse::<DeploymentState>()
            .expect_err("not a state");
        assert_eq!(
            err.to_string(),
            "`Rolling back` is not a deployment state (Queued, Building, Deploying, Validating, \
             Active, Failed, RollingBack, RolledBack, Superseded)"
        );
        assert_eq!("restored".parse(), Ok(WorkerOutcome::Restored));
        assert_eq!(DriftKind::Extra.to_string(), "Extra");
    }

    #[test]
    fn lifecycle_of_design() {
        let legal = [
            (Queued, Building),
            (Building, Deploying),
            (Deploying, Validating),
            (Validating, Active),
            (Active, Superseded),
            (Deploying, RollingBack),
            (Validating, RollingBack),
            (Active, RollingBack),
            (RollingBack, RolledBack),
            (Queued, Failed),
            (Building, Failed),
            (Deploying, Failed),
            (Validating, Failed),
            (RollingBack, Failed),
        ];
        for &from in DeploymentState::ALL {
            for &to in DeploymentState::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} → {to}");
            }
        }
    }

    #[test]
    fn final_states_have_no_way_out() {
        for &state in DeploymentState::ALL.iter().filter(|s| s.is_final()) {
            assert!(DeploymentState::ALL.iter().all(|to| !state.can_become(*to)));
        }
    }

    #[test]
    fn timestamps_show_as_rfc3339_utc() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        let t = Timestamp::from_unix_seconds(1_709_210_096).plus(Duration::from_millis(250));
        assert_eq!(t.to_string(), "2024-02-29T12:34:56Z");
        assert_eq!(t.to_rfc3339_millis(), "2024-02-29T12:34:56.250Z");
        assert_eq!(
            Timestamp(-1).to_rfc3339_millis(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            serde_json::to_string(&t).ok().as_deref(),
            Some("\"2024-02-29T12:34:56.250Z\"")
        );
        assert_eq!(
            t.minus(Duration::from_secs(86_400)).to_string(),
            "2024-02-28T12:34:56Z"
        );
    }
}
