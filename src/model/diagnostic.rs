//! Problems found in a user's manifests: data with a location, never an `Err`.

use super::Pos;
use serde::Serialize;
use std::fmt;

/// One problem in the manifests, located at `file:line:col`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// File path relative to the repository root.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// Stable machine-readable code, e.g. `unknown-blueprint`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic at a position of a file.
    pub fn new(file: &str, at: Pos, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: at.line,
            col: at.col,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// An accumulator of diagnostics; stages push into it and keep going.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Records a problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Records a problem at a position of a file.
    pub fn error(&mut self, file: &str, at: Pos, code: &'static str, message: impl Into<String>) {
        self.push(Diagnostic::new(file, at, code, message));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems sorted by location, duplicates removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.0.sort();
        self.0.dedup();
        self.0
    }
}
