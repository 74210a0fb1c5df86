//! What the operator reads after a run: the summary (text on stderr, `--json` on stdout)
//! and the per-row CSV report. One file per format, each a pure function of a [`Summary`]
//! or of rows read from the checkpoint.

pub mod csv;
pub mod json;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::outcome::Tally;

/// Version of the `--json` summary's shape; bumped only on incompatible changes.
pub const SUMMARY_VERSION: u32 = 1;

/// Everything a run reports. Field names are stable: scripts read `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// [`SUMMARY_VERSION`].
    pub summary_version: u32,
    /// completed | completed_with_failures | interrupted | aborted | dry_run.
    pub outcome: &'static str,
    /// The process exit code.
    pub exit_code: i32,
    /// Why the run was aborted, if it was.
    pub abort_reason: Option<String>,
    /// The input file name, or `<stdin>`.
    pub input: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// The run's id in the checkpoint's `runs` table.
    pub run_id: i64,
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
}

/// Requests sent in the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Requests {
    /// All requests, token requests included.
    pub total: u64,
    /// By HTTP status (`network` = no response).
    pub by_status: BTreeMap<String, u64>,
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

/// Rows that are not done, by reason.
#[derive(Clone, Debug, Serialize)]
pub struct FailureGroup {
    /// failed | unresolved | invalid | conflict | duplicate.
    pub state: String,
    /// The HTTP status, or the column for invalid rows.
    pub cause: String,
    /// Rows in the group.
    pub count: u64,
    /// The first few lines.
    pub lines: Vec<u64>,
    /// The first row's message.
    pub example: String,
}

impl Summary {
    /// Whether every row of the input is done.
    pub fn all_done(&self) -> bool {
        let r = &self.rows;
        r.invalid + r.failed + r.tally.unresolved + r.tally.skipped_failed + r.not_processed == 0
    }
}

/// Creates (truncating) a file for rows of customer data, owner-only and never through a
/// symlink ([`crate::files`]): the report and the links' `--out`. Called before any
/// request, so an unwritable path fails in the first second.
pub fn create_private(path: &std::path::Path) -> Result<std::fs::File, crate::files::FileError> {
    crate::files::create_private(path, crate::files::Existing::Truncate)
}
