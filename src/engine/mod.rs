//! THE flow, in one place:
//!
//! ```text
//! checkpoint plan (pages, key order) ─▶ decide per row ─▶ group rows by user ─▶ skip done
//!   ─▶ take_while(no stop, breaker closed) ─▶ worker (PUT, intent, POST, resolve, or
//!      GET+PUT of a changed building; every request through the one gate)
//!   ─▶ buffer_unordered(concurrency)
//!   ─▶ one consumer: outcomes to the single checkpoint writer
//! ```
//!
//! Workers never touch SQLite: they send intents (and wait for the commit) and return
//! outcomes. Counters and progress belong to the writer.

pub mod pages;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::api::{CallError, Client};
use crate::checkpoint::outcome::{RowOutcome, RowResult, Tally};
use crate::checkpoint::writer::Msg;
use crate::commands::run::plan::{self, Action, BuildingStep, PlannedRow};
use crate::commands::run::worker::{self, Halt, JobResult};
use crate::shutdown::Shutdown;

/// Rows fetched from the checkpoint per page.
pub const PAGE_SIZE: usize = 512;

/// All rows of one user that need work: the user is updated once, then each building.
#[derive(Clone, Debug)]
pub struct UserJob {
    /// The user.
    pub user_id: Uuid,
    /// The PUT body.
    pub user_payload: String,
    /// Whether the PUT is needed (the payload differs from the one applied).
    pub put: bool,
    /// The rows and what to do about each one's building.
    pub rows: Vec<(PlannedRow, BuildingStep)>,
}

/// How the pipeline behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Users in flight at once.
    pub concurrency: usize,
    /// Which rows to work on.
    pub plan: plan::Options,
    /// Re-POST a building whose earlier POST's outcome cannot be verified.
    pub repost_unknown: bool,
    /// Wait before checking an unknown outcome, so a slow server can finish the request.
    pub settle: Duration,
    /// Most POSTs per row and run when their outcomes keep being unknown.
    pub max_posts: u32,
    /// After a stop request, how long in-flight work may take before it is abandoned.
    pub grace: Duration,
    /// `--adopt-existing`: list a user's buildings before its first POST and adopt one of
    /// the row's name.
    pub adopt_existing: bool,
}

/// Why the pipeline ended.
#[derive(Debug)]
pub enum Ending {
    /// Every planned row was processed.
    Completed,
    /// A stop was requested (signal).
    Interrupted,
    /// The API looked down; rows were left for a later run.
    Breaker(String),
    /// A fatal API error (credentials, 403, redirect).
    Fatal(CallError),
    /// The checkpoint could not be written or read.
    Checkpoint(String),
}

/// Runs every planned row through the workers. Returns when done, stopped or aborted.
pub async fn execute(
    client: &Client,
    writer: &mpsc::UnboundedSender<Msg>,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Ending {
    let halt: Arc<std::sync::Mutex<Option<Halt>>> = Arc::default();
    let halted = Arc::new(AtomicBool::new(false));
    let open = {
        let (halted, shutdown, client) = (halted.clone(), shutdown.clone(), client.clone());
        move || {
            !halted.load(Ordering::Relaxed) && !shutdown.requested() && !client.breaker().tripped()
        }
    };
    let flow = jobs(writer.clone(), settings.plan)
        .take_while(move |_| futures::future::ready(open()))
        .map(|job| async {
            match job {
                Ok(job) => worker::process(client, writer, settings, job).await,
                Err(error) => JobResult::halted(Halt::Checkpoint(error)),
            }
        })
        .buffer_unordered(settings.concurrency)
        .for_each(|result| {
            for outcome in result.outcomes {
                log_outcome(&outcome);
                let _ = writer.send(Msg::Outcome(outcome));
            }
            if let Some(stop) = result.halt {
                halted.store(true, Ordering::Relaxed);
                halt.lock().expect("halt lock").get_or_insert(stop);
            }
            futures::future::ready(())
        });
    let grace_expired = async {
        shutdown.wait().await;
        tokio::time::sleep(settings.grace).await;
    };
    tokio::select! {
        () = flow => {}
        () = grace_expired => {
            tracing::warn!("grace period over: abandoning calls in flight (their rows are verified next run)");
        }
    }
    let halt = halt.lock().expect("halt lock").take();
    ending(halt, client, shutdown)
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

fn ending(halt: Option<Halt>, client: &Client, shutdown: &Shutdown) -> Ending {
    match halt {
        Some(Halt::Fatal(error)) => Ending::Fatal(error),
        Some(Halt::Checkpoint(error)) => Ending::Checkpoint(error),
        None if client.breaker().tripped() => {
            let (failures, window) = client.breaker().window();
            Ending::Breaker(format!(
                "the API looks down: {failures} of the last {window} requests failed with server \
                 or network errors; stopped starting rows. Rows not done are kept in the \
                 checkpoint: run the same command again later to resume"
            ))
        }
        None if shutdown.requested() => Ending::Interrupted,
        None => Ending::Completed,
    }
}

/// The plan as a stream of user jobs, paged from the checkpoint through the writer.
/// Skipped rows are counted (sent to the writer) and never leave this function.
pub fn jobs(
    writer: mpsc::UnboundedSender<Msg>,
    options: plan::Options,
) -> impl futures::Stream<Item = Result<UserJob, String>> {
    let pager = Pager {
        writer,
        options,
        after: None,
        buffer: VecDeque::new(),
        exhausted: false,
    };
    stream::unfold(pager, |mut pager| async move {
        match pager.next_job().await {
            Ok(Some(job)) => Some((Ok(job), pager)),
            Ok(None) => None,
            Err(error) => {
                pager.exhausted = true;
                pager.buffer.clear();
                Some((Err(error), pager))
            }
        }
    })
}

struct Pager {
    writer: mpsc::UnboundedSender<Msg>,
    options: plan::Options,
    after: Option<(String, String)>,
    buffer: VecDeque<(PlannedRow, bool, BuildingStep)>,
    exhausted: bool,
}

impl Pager {
    /// The next user with work: adjacent rows of one user (key order) form one job.
    async fn next_job(&mut self) -> Result<Option<UserJob>, String> {
        let mut job: Option<UserJob> = None;
        loop {
            // A page may be all skips: keep reading until a row has work or the plan ends.
            while self.buffer.is_empty() && !self.exhausted {
                self.fill().await?;
            }
            let Some((row, _, _)) = self.buffer.front() else {
                return Ok(job);
            };
            if job.as_ref().is_some_and(|j| j.user_id != row.user_id) {
                return Ok(job);
            }
            let (row, put, step) = self.buffer.pop_front().expect("front exists");
            let job = job.get_or_insert_with(|| UserJob {
                user_id: row.user_id,
                user_payload: row.user_payload.clone(),
                put: false,
                rows: Vec::new(),
            });
            job.put |= put;
            job.rows.push((row, step));
        }
    }

    /// Loads a page, decides each row, keeps the rows with work, counts the rest.
    async fn fill(&mut self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        let request = Msg::Page {
            after: self.after.take(),
            limit: PAGE_SIZE,
            reply,
        };
        self.writer
            .send(request)
            .map_err(|_| "the checkpoint writer stopped".to_owned())?;
        let page = answer
            .await
            .map_err(|_| "the checkpoint writer stopped".to_owned())??;
        self.exhausted = page.len() < PAGE_SIZE;
        self.after = page
            .last()
            .map(|row| (row.user_id.to_string(), row.row_key.clone()));
        let mut skipped = Tally::default();
        for row in page {
            match plan::decide(&row, self.options) {
                Action::SkipDone => skipped.skipped_done += 1,
                Action::SkipFailed => skipped.skipped_failed += 1,
                Action::SkipNotSelected => skipped.skipped_not_selected += 1,
                Action::Work { put, building } => self.buffer.push_back((row, put, building)),
            }
        }
        if skipped != Tally::default() {
            let _ = self.writer.send(Msg::Skipped(skipped));
        }
        Ok(())
    }
}
