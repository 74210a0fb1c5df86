//! One user's work: PUT the user (idempotent, retried by the client), then each building:
//! record the intent durably, POST, and resolve any unknown outcome before re-sending.
//!
//! The invariant: a row whose POST may have reached the server never ends in a state
//! that leads to a blind re-POST. It ends `done` (id known), `unresolved` (verify first),
//! or stays `posting` (the next run verifies it). Only a *proven* non-creation (a 4xx, a
//! 429/503, a connect error, or a list that shows no such building) may end `failed`.

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::api::{CallError, Client, Failure, Listing, PostOutcome};
use crate::checkpoint::writer::Msg;
use crate::outcome::{RowOutcome, RowResult};
use crate::pipeline::{Settings, UserJob};
use crate::plan::{BuildingStep, PlannedRow};

/// Why the whole run must stop.
#[derive(Debug)]
pub enum Halt {
    /// Credentials rejected, 403, redirect.
    Fatal(CallError),
    /// The checkpoint could not record an intent.
    Checkpoint(String),
}

/// What a worker hands back to the single consumer.
#[derive(Debug, Default)]
pub struct JobResult {
    /// Final outcomes of the job's rows (rows left without one stay as they were).
    pub outcomes: Vec<RowOutcome>,
    /// Set when the run must stop.
    pub halt: Option<Halt>,
}

impl JobResult {
    /// A result that only stops the run.
    pub fn halted(halt: Halt) -> Self {
        JobResult {
            outcomes: Vec::new(),
            halt: Some(halt),
        }
    }
}

/// Processes one user's rows.
pub async fn process(
    client: &Client,
    writer: &mpsc::UnboundedSender<Msg>,
    settings: &Settings,
    job: UserJob,
) -> JobResult {
    let worker = Worker {
        client,
        writer,
        settings,
    };
    if job.put
        && let Err(error) = worker.put(&job).await
    {
        return worker.put_failed(job, error);
    }
    let mut result = JobResult::default();
    for (row, step) in job.rows {
        match worker.building(&row, step).await {
            Ok(outcome) => result.outcomes.push(outcome_of(&row, outcome)),
            Err(halt) => {
                result.halt = Some(halt);
                break;
            }
        }
    }
    result
}

struct Worker<'a> {
    client: &'a Client,
    writer: &'a mpsc::UnboundedSender<Msg>,
    settings: &'a Settings,
}

impl Worker<'_> {
    async fn put(&self, job: &UserJob) -> Result<(), CallError> {
        let body: serde_json::Value =
            serde_json::from_str(&job.user_payload).expect("staged payloads are JSON");
        self.client.put_user(job.user_id, &body).await?;
        let _ = self.writer.send(Msg::UserApplied {
            user_id: job.user_id,
            payload: job.user_payload.clone(),
        });
        Ok(())
    }

    /// A failed PUT fails the user's rows, except that a row with an unknown POST keeps
    /// that status: it must be verified, never re-posted because of an unrelated error.
    fn put_failed(&self, job: UserJob, error: CallError) -> JobResult {
        if error.failure == Failure::Fatal {
            return JobResult::halted(Halt::Fatal(error));
        }
        let outcomes = job
            .rows
            .iter()
            .map(|(row, step)| {
                let result = if *step == BuildingStep::Resolve {
                    RowResult::Unresolved {
                        message: format!(
                            "the user update failed ({error}); an earlier building POST's outcome \
                             is still unknown and is verified on the next run"
                        ),
                    }
                } else if error.status == Some(404) {
                    RowResult::Failed {
                        status: error.status,
                        message: format!(
                            "user {} does not exist in this organization ({error}): check the \
                             user_id",
                            job.user_id
                        ),
                        permanent: true,
                    }
                } else {
                    failed("updating the user", &error)
                };
                outcome_of(row, result)
            })
            .collect();
        JobResult {
            outcomes,
            halt: None,
        }
    }

    async fn building(&self, row: &PlannedRow, step: BuildingStep) -> Result<RowResult, Halt> {
        match step {
            BuildingStep::Keep => Ok(RowResult::Updated),
            BuildingStep::Create => {
                self.intent(row).await?;
                self.post(row, 1).await
            }
            BuildingStep::Resolve => {
                let cause = "an earlier run stopped while its POST was in flight";
                self.resolve(row, cause, 0).await
            }
        }
    }

    /// Records `posting` and waits for the commit: only then may the POST leave.
    async fn intent(&self, row: &PlannedRow) -> Result<(), Halt> {
        let (ack, committed) = oneshot::channel();
        let msg = Msg::Intent {
            row: Box::new(row.clone()),
            ack,
        };
        let stopped = || Halt::Checkpoint("the checkpoint writer stopped".into());
        self.writer.send(msg).map_err(|_| stopped())?;
        committed
            .await
            .map_err(|_| stopped())?
            .map_err(Halt::Checkpoint)
    }

    /// POSTs (the intent is already durable), resolving an unknown outcome before any re-send.
    /// `posts` counts the POSTs sent for this row in this run.
    async fn post(&self, row: &PlannedRow, posts: u32) -> Result<RowResult, Halt> {
        let body: serde_json::Value =
            serde_json::from_str(&row.building_payload).expect("staged payloads are JSON");
        match self.client.create_building(row.user_id, &body).await {
            PostOutcome::Created(id) => Ok(RowResult::Created(id)),
            PostOutcome::NotCreated(error) if error.failure == Failure::Fatal => {
                Err(Halt::Fatal(error))
            }
            PostOutcome::NotCreated(error) => Ok(failed("creating the building", &error)),
            PostOutcome::Unknown(error) => {
                tracing::info!(line = row.line, %error, "POST outcome unknown; verifying");
                tokio::time::sleep(self.settings.settle).await;
                Box::pin(self.resolve(row, &error.to_string(), posts)).await
            }
        }
    }

    /// Looks for the building before anything is re-sent.
    async fn resolve(&self, row: &PlannedRow, cause: &str, posts: u32) -> Result<RowResult, Halt> {
        let listing = match self.client.list_buildings(row.user_id).await {
            Ok(listing) => listing,
            Err(error) if error.failure == Failure::Fatal => return Err(Halt::Fatal(error)),
            Err(error) => {
                return Ok(RowResult::Unresolved {
                    message: format!(
                        "POST outcome unknown ({cause}) and the check failed ({error}); it is \
                         checked again on the next run"
                    ),
                });
            }
        };
        match listing {
            Listing::Buildings(buildings) => self.by_name(row, &buildings, cause, posts).await,
            Listing::Unavailable(status)
                if self.settings.repost_unknown && posts < self.settings.max_posts =>
            {
                tracing::warn!(
                    line = row.line,
                    status,
                    "re-posting an unverifiable building (--resolve-unknown=repost)"
                );
                self.repost(row, posts).await
            }
            Listing::Unavailable(status) => Ok(RowResult::Unresolved {
                message: format!(
                    "POST outcome unknown ({cause}), and this server cannot list buildings \
                     (HTTP {status}) to check. Look in Podero whether user {} has a building \
                     named {:?}; if not, run again with --resolve-unknown=repost",
                    row.user_id, row.building_name
                ),
            }),
        }
    }

    /// The user's buildings are known: adopt the one with the row's name, POST if there is
    /// none, leave several to a human.
    async fn by_name(
        &self,
        row: &PlannedRow,
        buildings: &[(Uuid, String)],
        cause: &str,
        posts: u32,
    ) -> Result<RowResult, Halt> {
        let matches: Vec<Uuid> = buildings
            .iter()
            .filter(|(_, name)| *name == row.building_name)
            .map(|(id, _)| *id)
            .collect();
        match matches.as_slice() {
            [id] => Ok(RowResult::Adopted(*id)),
            [] if posts >= self.settings.max_posts => Ok(RowResult::Failed {
                status: None,
                message: format!(
                    "{posts} POSTs ended with unknown outcomes ({cause}), and the building \
                     does not exist; it is created on the next run"
                ),
                permanent: false,
            }),
            [] => self.repost(row, posts).await,
            many => Ok(RowResult::Unresolved {
                message: format!(
                    "{} buildings named {:?} exist for this user ({}); keep one and delete \
                     the others in Podero, then run again to adopt the one left",
                    many.len(),
                    row.building_name,
                    many.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// The list proved the building absent (or the operator accepted the risk): POST again.
    async fn repost(&self, row: &PlannedRow, posts: u32) -> Result<RowResult, Halt> {
        self.intent(row).await?;
        Box::pin(self.post(row, posts + 1)).await
    }
}

fn failed(doing: &str, error: &CallError) -> RowResult {
    RowResult::Failed {
        status: error.status,
        message: format!("{doing}: {error}"),
        permanent: !error.failure.is_transient(),
    }
}

fn outcome_of(row: &PlannedRow, result: RowResult) -> RowOutcome {
    RowOutcome {
        user_id: row.user_id,
        building_name: row.building_name.clone(),
        line: row.line,
        external_user_id: row.external_user_id.clone(),
        fingerprint: row.fingerprint,
        result,
    }
}
