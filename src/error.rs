//! Errors that end a command before or outside the per-row flow, each with its exit code.

use crate::checkpoint::CheckpointError;
use crate::exit_code::ExitCode;

/// A command-level failure. The message is printed once by `main`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Usage or configuration: nothing was sent (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Fatal: credentials, permissions, checkpoint (exit 3).
    #[error("{0}")]
    Fatal(String),
}

impl AppError {
    /// An input with a header and nothing else.
    pub fn no_data_rows(source: &crate::input::Source) -> Self {
        AppError::Usage(format!(
            "{} has a header but no data rows: is the export complete?",
            source.display_name()
        ))
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Usage(_) => ExitCode::Usage,
            AppError::Fatal(_) => ExitCode::Fatal,
        }
    }
}

impl From<CheckpointError> for AppError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::Mismatch { .. }
            | CheckpointError::Missing { .. }
            | CheckpointError::InTheWay { .. } => AppError::Usage(error.to_string()),
            _ => AppError::Fatal(error.to_string()),
        }
    }
}

impl From<crate::config::ConfigError> for AppError {
    fn from(error: crate::config::ConfigError) -> Self {
        AppError::Usage(error.0)
    }
}
