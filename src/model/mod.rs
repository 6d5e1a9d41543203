//! The vocabulary of ringops: manifests as written, the compiled desired state,
//! plans and diagnostics. Plain data only; no IO and no behaviour beyond small helpers.

pub mod deployment;
pub mod desired;
pub mod diagnostic;
pub mod manifest;
pub mod observed;
pub mod plan;
pub mod target;

pub use desired::{Artifact, Bundle, DesiredState, WorkerState};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use plan::{Action, ActionKind, Plan, PlanSummary, WorkerPlan};
pub use target::Target;

/// A 1-based line and column in a repository file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// A value with the position in its manifest where it was written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spanned<T> {
    /// The value itself.
    pub value: T,
    /// Where it was written.
    pub at: Pos,
}

impl<T> Spanned<T> {
    /// Wraps a value with a position.
    pub fn new(value: T, at: Pos) -> Self {
        Self { value, at }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
