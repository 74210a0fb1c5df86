//! `run`'s jobs on the engine: the plan pages (staged rows joined with their history, read
//! through the writer), each row decided by the [`plan`], the rows with work grouped per
//! owner (a user, or a customer known only by its CRM id) into a [`UserJob`], each job through the [`worker`], each outcome to the writer.
//! Skipped rows are counted (sent to the writer) and never leave the pager.
//!
//! The dry run reads the same pages with the same decisions and only counts them, so its
//! plan is exactly what the run then does.

use super::config::Settings;
use super::plan::{self, Action, BuildingStep};
use super::worker::{self, UserJob};
use crate::checkpoint::outcome::{RowOutcome, RowResult, Tally};
use crate::checkpoint::row::PlannedRow;
use crate::checkpoint::writer::{Sender, WriteError, Writer};
use crate::engine::{self, Drive, Ending, Pages};
use crate::report::Plan;

/// A row with work: the row, whether its user needs a PUT, and its building step.
pub struct Work {
    row: PlannedRow,
    put: bool,
    step: BuildingStep,
}

impl From<Vec<Work>> for UserJob {
    fn from(work: Vec<Work>) -> Self {
        let first = &work[0].row;
        UserJob {
            user_id: first.user_id,
            lookup: first.lookup.then(|| first.external_user_id.clone()),
            new_customer: first.new_customer,
            user_payload: first.user_payload.clone(),
            put: work.iter().any(|w| w.put),
            rows: work.into_iter().map(|w| (w.row, w.step)).collect(),
        }
    }
}

/// The plan pages, decided row by row.
struct PlanPages {
    writer: Sender,
    options: plan::Options,
}

impl Pages for PlanPages {
    type Row = PlannedRow;
    type Work = Work;
    type Cursor = (String, String);
    type Key = String;

    async fn fetch(
        &mut self,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<PlannedRow>, WriteError> {
        self.writer.plan_page(after, limit).await
    }

    fn cursor(row: &PlannedRow) -> (String, String) {
        (row.owner(), row.row_key.clone())
    }

    fn keep(&mut self, page: Vec<PlannedRow>) -> Vec<Work> {
        let mut skipped = Tally::default();
        let mut work = Vec::with_capacity(page.len());
        for row in page {
            match plan::decide(&row, self.options) {
                Action::Skip(skip) => skipped.skip(skip),
                Action::Work { put, building } => work.push(Work {
                    row,
                    put,
                    step: building,
                }),
            }
        }
        if skipped != Tally::default() {
            self.writer.skipped(skipped);
        }
        work
    }

    /// One job per owner: a user, or a customer known only by its CRM id (so never two
    /// creates for one CRM id in flight).
    fn key(work: &Work) -> String {
        work.row.owner()
    }
}

/// The user jobs of the plan, in key order.
fn user_jobs(
    writer: Sender,
    options: plan::Options,
) -> impl futures::Stream<Item = Result<UserJob, WriteError>> {
    use futures::TryStreamExt;
    engine::jobs(PlanPages { writer, options }).map_ok(UserJob::from)
}

/// Every planned row through the workers; outcomes are logged and go to the writer.
pub async fn drive(drive: &Drive<'_>, writer: &Writer, settings: &Settings) -> Ending {
    let sender = writer.sender();
    let work = |job| worker::process(drive.client, &sender, settings, job);
    let record = |outcome: RowOutcome| {
        log_outcome(&outcome);
        sender.outcome(outcome);
    };
    drive
        .run(user_jobs(sender.clone(), settings.plan), work, record)
        .await
}

/// The plan a real run would follow: the same job stream (with the same options, e.g.
/// `--retry-failed`), nothing sent.
pub async fn dry_plan(writer: &Writer, options: plan::Options) -> Result<Plan, WriteError> {
    use futures::StreamExt;
    let mut plan = Plan {
        create_users: options.create_users,
        ..Plan::default()
    };
    let mut jobs = std::pin::pin!(user_jobs(writer.sender(), options));
    while let Some(job) = jobs.next().await {
        let job = job?;
        if job.lookup.is_some() {
            plan.look_up += 1;
        }
        for (row, step) in job.rows {
            match (step, &row.prior) {
                (BuildingStep::NoBuilding, _) => plan.user_only += 1,
                (BuildingStep::Update, _) => plan.update_building += 1,
                (BuildingStep::Create, None) => plan.onboard += 1,
                (BuildingStep::Create, Some(_)) => plan.retry += 1,
                (BuildingStep::Keep, _) => plan.update += 1,
                (BuildingStep::Resolve, _) => plan.verify += 1,
            }
        }
    }
    // Skips were counted by the writer; wait until it has applied every message.
    writer.sender().flush().await?;
    let tally = writer.tally();
    let tally = tally.lock().expect("tally lock");
    plan.skip_done = tally.skipped_done;
    plan.skip_failed = tally.skipped_failed;
    Ok(plan)
}

/// `-v`: one line per row (never a credential: outcomes hold none).
fn log_outcome(outcome: &RowOutcome) {
    let (line, user, building) = (outcome.line, outcome.user_id, &outcome.building_name);
    match &outcome.result {
        RowResult::Created(id) => {
            tracing::info!(line, %user, building, building_id = %id, "created")
        }
        RowResult::Adopted(id) => {
            tracing::info!(line, %user, building, building_id = %id, "verified: building existed")
        }
        RowResult::Updated => tracing::info!(line, %user, building, "user updated"),
        RowResult::BuildingUpdated => {
            tracing::info!(line, %user, building, "building updated (its fields changed)")
        }
        RowResult::AdoptedExisting(id) => {
            tracing::info!(line, %user, building, building_id = %id, "adopted an existing building")
        }
        RowResult::UserOnly => tracing::info!(line, %user, "user-only row: user up to date"),
        RowResult::Failed { message, .. } => {
            tracing::info!(line, %user, building, error = %message, "failed")
        }
        RowResult::Unresolved { message } => {
            tracing::info!(line, %user, building, reason = %message, "unresolved")
        }
    }
}
