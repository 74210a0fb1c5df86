//! The documented exit codes. Scripts and cron wrappers depend on these numbers.

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Every row is done (or, for a dry run, the input is clean).
    Success = 0,
    /// The run finished, but some rows failed, are unresolved or invalid: see the report.
    RowsFailed = 1,
    /// Usage or configuration error: nothing was sent.
    Usage = 2,
    /// Aborted by a fatal error: credentials rejected, 403, the API down (circuit
    /// breaker), or the checkpoint unusable or locked.
    Fatal = 3,
    /// Interrupted by SIGINT/SIGTERM; the checkpoint is consistent, run again to resume.
    Interrupted = 130,
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", *self as i32)
    }
}

/// Summaries show the number.
impl serde::Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(*self as i32)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
