//! `run`'s summary, built from how the engine ended, the writer's tally, the staging counts
//! and the checkpoint (the types and their renderings are in [`crate::report`]).

use std::time::Instant;

use super::RunConfig;
use crate::api::{Client, Way};
use crate::checkpoint::Checkpoint;
use crate::checkpoint::outcome::Tally;
use crate::checkpoint::stage::Staged;
use crate::checkpoint::writer::WriteError;
use crate::engine::Ending;
use crate::error::AppError;
use crate::progress::Reading;
use crate::report::{self, Plan, Rates, Requests, RowCounts, Summary, SummaryHeader};

/// What the progress display shows of `run`'s counters.
pub fn reading(tally: &Tally) -> Reading {
    Reading {
        processed: tally.processed(),
        failed: tally.failed(),
        unresolved: Some(tally.unresolved),
    }
}

/// What the summary is built from.
pub struct Summarized<'a> {
    /// The run's settings.
    pub config: &'a RunConfig,
    /// The checkpoint, back from the writer.
    pub checkpoint: &'a Checkpoint,
    /// The run's id.
    pub run_id: i64,
    /// What staging found.
    pub staged: &'a Staged,
    /// The writer's counters.
    pub tally: Tally,
    /// The dry run's plan (`None` for a real run).
    pub plan: Option<Result<Plan, WriteError>>,
    /// The client, if one was connected.
    pub client: Option<&'a Client>,
    /// When the run started.
    pub started: Instant,
    /// `--strict` found invalid rows: nothing was sent.
    pub blocked: bool,
    /// How the new customers were checked (one user list, or a lookup each).
    pub new_customers: Way,
}

impl Summarized<'_> {
    /// The summary, its outcome and exit code decided by [`Ending::conclude`].
    pub fn summary(mut self, ending: Ending) -> Result<Summary, AppError> {
        let duration = self.started.elapsed().as_secs_f64();
        let (plan, ending) = match self.plan.take() {
            Some(Ok(plan)) => (Some(plan), ending),
            Some(Err(error)) => (None, Ending::Aborted(error.to_string())),
            None => (None, ending),
        };
        let requests = Requests::of(self.client);
        let header = SummaryHeader::new(
            report::SUMMARY_VERSION,
            None,
            &self.config.input.source,
            &self.config.checkpoint,
            self.run_id,
        );
        let mut summary = Summary {
            header,
            duration_secs: duration,
            rows: self.row_counts(plan.is_some())?,
            plan,
            rate: Rates {
                limit: self.config.client.as_ref().map_or(0.0, |c| c.rate),
                effective: self.client.map_or(0.0, Client::effective_rate),
                achieved: requests.total as f64 / duration.max(0.001),
            },
            requests,
            new_customers_checked_by: self.new_customers,
            failures: self.checkpoint.failure_groups()?,
        };
        let dry_run = summary.plan.is_some();
        let troubled = self.blocked
            || if dry_run {
                summary.rows.invalid > 0
            } else {
                !summary.all_done()
            };
        let mut conclusion = ending.conclude(dry_run, troubled);
        if self.blocked && conclusion.abort_reason.is_none() {
            conclusion.abort_reason = Some(format!(
                "--strict: {} invalid rows, so nothing was sent; fix them (see the report) and \
                 run again",
                self.staged.invalid
            ));
        }
        summary.header.conclude(conclusion);
        Ok(summary)
    }

    fn row_counts(&self, dry_run: bool) -> Result<RowCounts, AppError> {
        let processed = self.tally.processed();
        Ok(RowCounts {
            read: self.staged.rows_read,
            valid: self.staged.valid,
            invalid: self.staged.invalid,
            duplicates: self.staged.duplicates,
            failed: self.tally.failed(),
            not_processed: if dry_run {
                0
            } else {
                self.staged.valid.saturating_sub(processed)
            },
            vanished: self.staged.vanished,
            tally: self.tally.clone(),
        })
    }
}
