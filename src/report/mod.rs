//! What the operator reads: `run`'s summary (text on stderr, `--json` on stdout), the
//! per-row CSV report, the records `export` prints (CSV or JSON lines), and the owner-only
//! files and stdout every command writes through. One file per format, each a pure
//! function of a [`Summary`] or of rows read from the checkpoint. (`links`' smaller
//! summary lives with the command.)

pub mod csv;
pub mod json;
pub mod records;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::Client;
use crate::checkpoint::outcome::Tally;
use crate::checkpoint::query::FailureGroup;
use crate::engine::Conclusion;
use crate::error::AppError;
use crate::exit_code::ExitCode;

/// Version of the `--json` summary's shape; bumped only on incompatible changes.
pub const SUMMARY_VERSION: u32 = 1;

/// What every command's `--json` summary starts with (`run`'s and `links`'): which run,
/// on what, and its verdict. Field names are stable: scripts read `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryHeader {
    /// The version of the command's summary shape.
    pub summary_version: u32,
    /// The command, in every summary but `run`'s (which predates the field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'static str>,
    /// completed | completed_with_failures | interrupted | aborted | dry_run.
    pub outcome: &'static str,
    /// The process exit code.
    pub exit_code: ExitCode,
    /// Why the run was aborted, if it was.
    pub abort_reason: Option<String>,
    /// The input file name, or `<stdin>`.
    pub input: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// The run's id in the checkpoint's `runs` table.
    pub run_id: i64,
}

impl SummaryHeader {
    /// A header whose verdict ([`conclude`](Self::conclude)) comes at the end.
    pub fn new(
        summary_version: u32,
        command: Option<&'static str>,
        input: &crate::input::Source,
        checkpoint: &std::path::Path,
        run_id: i64,
    ) -> Self {
        SummaryHeader {
            summary_version,
            command,
            outcome: "completed",
            exit_code: ExitCode::Success,
            abort_reason: None,
            input: input.display_name(),
            checkpoint: checkpoint.display().to_string(),
            run_id,
        }
    }

    /// Takes the engine's verdict.
    pub fn conclude(&mut self, conclusion: Conclusion) {
        self.outcome = conclusion.outcome;
        self.exit_code = conclusion.exit_code;
        self.abort_reason = conclusion.abort_reason;
    }
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Which run, and its verdict.
    #[serde(flatten)]
    pub header: SummaryHeader,
    /// Wall time, seconds.
    pub duration_secs: f64,
    /// Row counts.
    pub rows: RowCounts,
    /// For `--dry-run`: what a real run would do.
    pub plan: Option<Plan>,
    /// Requests sent.
    pub requests: Requests,
    /// Request rates.
    pub rate: Rates,
    /// `--create-users`: how the customers the checkpoint had no record of were checked
    /// (`user_list`: one list spared their lookups; `per_customer`: a lookup each).
    pub new_customers_checked_by: crate::api::Way,
    /// Rows not done, grouped by reason, largest group first.
    pub failures: Vec<FailureGroup>,
}

/// Row counts of a run. `failed`, `unresolved` and `invalid` rows make the exit code 1.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowCounts {
    /// Data rows read.
    pub read: u64,
    /// Distinct valid rows.
    pub valid: u64,
    /// Rejected by validation (never sent).
    pub invalid: u64,
    /// Repeats of an earlier line (processed once).
    pub duplicates: u64,
    /// Counts from the pipeline.
    #[serde(flatten)]
    pub tally: Tally,
    /// All failures of this run (permanent + transient).
    pub failed: u64,
    /// Planned rows left unprocessed because the run stopped early.
    pub not_processed: u64,
    /// Rows in the checkpoint that are no longer in the input (left untouched on the server).
    pub vanished: u64,
}

/// A dry run's plan.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Plan {
    /// New rows: user update + building creation.
    pub onboard: u64,
    /// Done rows whose user fields changed: user update only.
    pub update: u64,
    /// Rows that failed before and will be tried again.
    pub retry: u64,
    /// Rows whose earlier POST outcome is unknown: verified before any re-send.
    pub verify: u64,
    /// Done rows whose building fields changed: GET + PUT of the building.
    pub update_building: u64,
    /// User-only rows to update (no building).
    pub user_only: u64,
    /// Done and unchanged: no call.
    pub skip_done: u64,
    /// Failed permanently, unchanged: not retried without --retry-failed.
    pub skip_failed: u64,
    /// Customers known only by their CRM id: looked up in Podero (and, with
    /// `--create-users`, created if missing) before their rows.
    pub look_up: u64,
    /// Whether `--create-users` was given (the customers not found would be created).
    pub create_users: bool,
}

/// Requests sent in the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Requests {
    /// All requests, token requests included.
    pub total: u64,
    /// By HTTP status (`network` = no response).
    pub by_status: BTreeMap<String, u64>,
}

impl Requests {
    /// What `client` sent (nothing without a client).
    pub fn of(client: Option<&Client>) -> Self {
        client.map_or_else(Requests::default, |c| Requests {
            total: c.stats().total(),
            by_status: c.stats().snapshot(),
        })
    }
}

/// Rates in requests per second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rates {
    /// `--rate`.
    pub limit: f64,
    /// The adaptive rate at the end of the run.
    pub effective: f64,
    /// Requests divided by duration.
    pub achieved: f64,
}

impl Summary {
    /// Whether every row of the input is done.
    pub fn all_done(&self) -> bool {
        let r = &self.rows;
        r.invalid + r.failed + r.tally.unresolved + r.tally.skipped_failed + r.not_processed == 0
    }
}

/// Creates the file of `flag` (`--report`, `--out`) now, owner-only, so an unwritable path
/// fails in the first second, before any request.
pub fn create_for(flag: &str, path: &std::path::Path) -> Result<std::fs::File, AppError> {
    create_private(path).map_err(|e| {
        AppError::Usage(format!(
            "cannot write {flag} {}: {e}; choose a writable {flag} path",
            path.display()
        ))
    })
}

/// Writes to stdout (every command's machine output goes through here); a closed pipe
/// (`| head`) ends the command quietly, it is not an error of the run.
pub fn print_stdout(text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout_written(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )
}

/// The result of writing to stdout: a closed pipe (`| head`) is the reader's choice, not
/// an error.
pub fn stdout_written(written: std::io::Result<()>) -> Result<(), AppError> {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(AppError::Fatal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Creates (truncating) a file for rows of customer data, owner-only and never through a
/// symlink ([`crate::files`]): the report and the links' `--out`. Called before any
/// request, so an unwritable path fails in the first second.
pub fn create_private(path: &std::path::Path) -> Result<std::fs::File, crate::files::FileError> {
    crate::files::create_private(path, crate::files::Existing::Truncate)
}
