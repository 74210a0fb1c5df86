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

impl From<crate::input::InputError> for AppError {
    /// A problem with the input file: exit 2. A file that looks like Windows-1252 gets the
    /// exact command that reads it, the user's own with `--encoding windows-1252`.
    fn from(error: crate::input::InputError) -> Self {
        let mut text = error.to_string();
        if matches!(error, crate::input::InputError::LooksLikeWindows1252 { .. }) {
            let args: Vec<String> = std::env::args().collect();
            text.push_str(&format!("\n  run again as: {}", with_windows_1252(&args)));
        }
        AppError::Usage(text)
    }
}

/// The command line `args` with `--encoding windows-1252` instead of any `--encoding` it
/// has, quoted for a POSIX shell. (Secrets are never flags, so the line holds none.)
fn with_windows_1252(args: &[String]) -> String {
    let mut words = Vec::with_capacity(args.len() + 2);
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg == "--encoding" {
            skip_value = true;
        } else if !arg.starts_with("--encoding=") {
            words.push(shell_quoted(arg));
        }
    }
    words.extend(["--encoding".to_owned(), "windows-1252".to_owned()]);
    words.join(" ")
}

fn shell_quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rerun_command_reads_windows_1252_and_keeps_everything_else() {
        let args = [
            "podero-onboard",
            "run",
            "my export.csv",
            "--encoding",
            "utf-8",
            "-q",
        ]
        .map(String::from);
        assert_eq!(
            with_windows_1252(&args),
            "podero-onboard run 'my export.csv' -q --encoding windows-1252"
        );
        let args = ["x", "--encoding=utf-16", "it's.csv"].map(String::from);
        assert_eq!(
            with_windows_1252(&args),
            "x 'it'\\''s.csv' --encoding windows-1252"
        );
    }
}
