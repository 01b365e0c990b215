//! Why a command failed, in plain words, with what to do about it and its exit code.

use std::fmt;

/// A failure to report: what happened, what to do, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// What happened.
    pub what: String,
    /// What the operator can do about it.
    pub todo: String,
    /// The process exit code.
    pub code: u8,
}

impl Failure {
    /// A failure to do the job (exit code 3).
    pub fn new(what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self { what: what.into(), todo: todo.into(), code: crate::EXIT_FAILED }
    }

    /// A failure from an error of the engine, with advice.
    pub fn from_error(doing: &str, error: &dyn std::error::Error, todo: impl Into<String>) -> Self {
        let mut what = format!("{doing}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            what.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Self::new(what, todo)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\n  what to do: {}", self.what, self.todo)
    }
}
