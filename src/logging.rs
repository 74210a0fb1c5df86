//! Logs on stderr via `tracing`. Only this crate's events are shown (HTTP libraries stay
//! silent at every level), and nothing logged ever carries a credential: tokens live in
//! [`crate::secret::Secret`], which formats as `[redacted]`.

use std::io::IsTerminal;

use crate::cli::LogFormat;

/// Installs the subscriber: warnings by default, `-v` info (one line per row), `-vv`
/// debug (every request, retries, tokens obtained — never their values).
pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("podero_onboard={level}"));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(color).without_time().try_init(),
    };
}
