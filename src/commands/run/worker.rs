//! One user's work: PUT the user (idempotent, retried by the client), then each building:
//! record the intent durably, POST, and resolve any unknown outcome before re-sending.
//!
//! The invariant: a row whose POST may have reached the server never ends in a state
//! that leads to a blind re-POST. It ends `done` (id known), `unresolved` (verify first),
//! or stays `posting` (the next run verifies it). Only a *proven* non-creation (a 4xx, a
//! 429/503, a connect error, or a list that shows no such building) may end `failed`.
//!
//! Sync: a building whose fields changed is updated by read-modify-write, because the
//! building PUT is a full replace: GET it, overlay the row's fields ([`overlay`]), PUT the
//! result, so fields the customer set in the app and the CSV lacks survive. A 404 (deleted
//! in Podero) fails the row; it is never silently re-created. With `--adopt-existing` the
//! user's buildings are listed before anything is written for the user, and a building of
//! the row's name is adopted instead of POSTing a second one.

use uuid::Uuid;

use super::config::Settings;
use super::customer::{Customer, Resolver};
pub(crate) use super::plan::UserJob;
use super::plan::{self, BuildingStep};
use crate::api::{Body, CallError, Client, Failure, Listing, PostOutcome};
use crate::checkpoint::customers::Resolution;
use crate::checkpoint::outcome::{RowOutcome, RowResult};
use crate::checkpoint::row::PlannedRow;
use crate::checkpoint::writer::Sender;
use crate::engine::{Halt, JobResult};

/// The fields of a building PUT (Podero's `BuildingIn`): what a read-modify-write keeps of
/// the building it read (`id` and any read-only field are left out).
pub const WRITABLE_BUILDING_FIELDS: &[&str] = &[
    "name",
    "property_type",
    "occupant_type",
    "space_heating",
    "water_heating",
    "property_size_m2",
    "property_age",
    "num_occupants",
    "photovoltaic",
    "street_and_number",
    "street_add_info",
    "zip_code",
    "town",
    "country",
];

/// The full-update body: the building as read (writable fields only), with the row's
/// fields (`payload`, the staged building body) laid over it.
pub fn overlay(
    current: serde_json::Map<String, serde_json::Value>,
    payload: &str,
) -> serde_json::Value {
    let mut body: serde_json::Map<String, serde_json::Value> = current
        .into_iter()
        .filter(|(name, _)| WRITABLE_BUILDING_FIELDS.contains(&name.as_str()))
        .collect();
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(payload).expect("staged payloads are JSON objects");
    body.extend(fields);
    serde_json::Value::Object(body)
}

/// What `--adopt-existing` learned about a user's buildings before its first POST.
enum Adoption {
    /// Not asked for, or nothing to create.
    Off,
    /// The user's buildings (id, name); adopted ones are removed.
    Listed(Vec<(Uuid, String)>),
    /// The list failed (transiently): nothing may be created for this user now.
    Failed(CallError),
}

/// Processes one user's rows, phase by phase: with `--adopt-existing`, list the user's
/// buildings (before anything is written for the user: a server without the list stops
/// the run first); PUT the user if its fields changed; then each row's building. A failed
/// phase ends the job with its rows' outcomes; a [`Halt`] ends the run.
pub async fn process(
    client: &Client,
    writer: &Sender,
    settings: &Settings,
    job: UserJob,
) -> JobResult<RowOutcome> {
    let worker = Worker {
        client,
        writer,
        settings,
    };
    let mut created = false;
    let job = match job.lookup.clone() {
        None => job,
        Some(crm) => {
            let resolver = Resolver {
                client,
                writer,
                settings,
                directory: &settings.directory,
            };
            match resolver.resolve(job.clone(), &crm).await {
                Ok(Customer::Known(job, how)) => {
                    created = how == Resolution::Created;
                    job
                }
                Ok(Customer::NotKnown(result)) => return every_row(job, &result),
                Err(halt) => return JobResult::halted(halt),
            }
        }
    };
    // A user created a moment ago has no buildings to adopt.
    let mut adoption = match worker.adoption(&job, created).await {
        Ok(adoption) => adoption,
        Err(halt) => return JobResult::halted(halt),
    };
    if job.put
        && let Err(error) = worker.put(&job).await
    {
        return worker.put_failed(job, error);
    }
    worker.buildings(job.rows, &mut adoption).await
}

struct Worker<'a> {
    client: &'a Client,
    writer: &'a Sender,
    settings: &'a Settings,
}

impl Worker<'_> {
    async fn put(&self, job: &UserJob) -> Result<(), CallError> {
        let body = Body::Text(&job.user_payload);
        self.client.put_user(job.user_id, body).await?;
        self.writer
            .user_applied(job.user_id, job.user_payload.clone());
        Ok(())
    }

    /// Each row's building, in order, until one halts the run.
    async fn buildings(
        &self,
        rows: Vec<(PlannedRow, BuildingStep)>,
        adoption: &mut Adoption,
    ) -> JobResult<RowOutcome> {
        let mut result = JobResult::default();
        for (row, step) in rows {
            match self.building(&row, step, adoption).await {
                Ok(outcome) => result.outcomes.push(outcome_of(row, outcome)),
                Err(halt) => {
                    result.halt = Some(halt);
                    break;
                }
            }
        }
        result
    }

    /// A failed PUT fails the user's rows, except that a row with an unknown POST keeps
    /// that status: it must be verified, never re-posted because of an unrelated error.
    fn put_failed(&self, job: UserJob, error: CallError) -> JobResult<RowOutcome> {
        if error.failure == Failure::Fatal {
            return JobResult::halted(Halt::Fatal(error));
        }
        let user_id = job.user_id;
        let outcomes = job
            .rows
            .into_iter()
            .map(|(row, step)| {
                let result = if step == BuildingStep::Resolve {
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
                            user_id
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

    /// `--adopt-existing`: the user's buildings, listed once per job that creates one.
    async fn adoption(&self, job: &UserJob, new_user: bool) -> Result<Adoption, Halt> {
        let creates = job.rows.iter().any(|(_, s)| *s == BuildingStep::Create);
        if !self.settings.adopt_existing || !creates || new_user {
            return Ok(Adoption::Off);
        }
        match self.client.list_buildings(job.user_id).await {
            Ok(Listing::Buildings(buildings)) => self.unclaimed(job.user_id, buildings).await,
            Ok(Listing::Unavailable(status)) => Err(Halt::Fatal(CallError {
                failure: Failure::Fatal,
                status: Some(status),
                message: format!(
                    "--adopt-existing cannot be honoured by this server: it has no endpoint to \
                     list a user's buildings (HTTP {status} on GET .../users/{{user_id}}/buildings), \
                     so existing buildings cannot be found. Nothing was created; run without \
                     --adopt-existing to create the buildings"
                ),
            })),
            Err(error) if error.failure == Failure::Fatal => Err(Halt::Fatal(error)),
            Err(error) => Ok(Adoption::Failed(error)),
        }
    }

    /// Drops the buildings that rows of the checkpoint already own: adopting one of them
    /// would give two rows one building.
    async fn unclaimed(
        &self,
        user_id: Uuid,
        buildings: Vec<(Uuid, String)>,
    ) -> Result<Adoption, Halt> {
        Ok(Adoption::Listed(
            self.without_claimed(user_id, buildings).await?,
        ))
    }

    /// The listed buildings no checkpoint row owns (asked of the writer).
    async fn without_claimed(
        &self,
        user_id: Uuid,
        mut buildings: Vec<(Uuid, String)>,
    ) -> Result<Vec<(Uuid, String)>, Halt> {
        let claimed = self.writer.claimed(user_id).await?;
        buildings.retain(|(id, _)| !claimed.contains(id));
        Ok(buildings)
    }

    async fn building(
        &self,
        row: &PlannedRow,
        step: BuildingStep,
        adoption: &mut Adoption,
    ) -> Result<RowResult, Halt> {
        match step {
            BuildingStep::Keep => Ok(RowResult::Updated),
            BuildingStep::NoBuilding => Ok(RowResult::UserOnly),
            BuildingStep::Update => {
                let id = row
                    .prior
                    .as_ref()
                    .and_then(|p| p.building_id)
                    .expect("the plan updates only rows with a building id");
                self.update(row, id).await
            }
            BuildingStep::Create => self.create(row, adoption).await,
            BuildingStep::Resolve => {
                let cause = "an earlier run stopped while its POST was in flight";
                self.resolve(row, cause, 0).await
            }
        }
    }

    /// POSTs a new building, unless `--adopt-existing` found one of the row's name.
    async fn create(&self, row: &PlannedRow, adoption: &mut Adoption) -> Result<RowResult, Halt> {
        let buildings = match adoption {
            Adoption::Off => return self.first_post(row).await,
            Adoption::Failed(error) => {
                return Ok(failed(
                    "listing the user's buildings for --adopt-existing (nothing created)",
                    error,
                ));
            }
            Adoption::Listed(buildings) => buildings,
        };
        let same: Vec<Uuid> = buildings
            .iter()
            .filter(|(_, name)| *name == row.building_name)
            .map(|(id, _)| *id)
            .collect();
        match same.as_slice() {
            [] => self.first_post(row).await,
            [id] => {
                let id = *id;
                // Taken: another row of this user with the same name must not adopt it too.
                buildings.retain(|(other, _)| *other != id);
                Ok(match self.update(row, id).await? {
                    RowResult::BuildingUpdated => RowResult::AdoptedExisting(id),
                    other => other,
                })
            }
            many => Ok(RowResult::Unresolved {
                message: format!(
                    "--adopt-existing: user {} already has {} buildings named {:?} ({}); keep \
                     one and delete the others in Podero, then run again to adopt the one left",
                    row.user_id,
                    many.len(),
                    row.building_name,
                    join_ids(many)
                ),
            }),
        }
    }

    async fn first_post(&self, row: &PlannedRow) -> Result<RowResult, Halt> {
        self.intent(row).await?;
        self.post(row, 1).await
    }

    /// Read-modify-write of building `id`: GET, overlay the row's fields, PUT.
    async fn update(&self, row: &PlannedRow, id: Uuid) -> Result<RowResult, Halt> {
        let current = match self.client.get_building(row.user_id, id).await {
            Ok(current) => current,
            Err(error) => return self.update_failed(row, id, "reading the building", &error),
        };
        let body = overlay(current, &row.building_payload);
        match self.client.put_building(row.user_id, id, &body).await {
            Ok(()) => Ok(RowResult::BuildingUpdated),
            Err(error) => self.update_failed(row, id, "updating the building", &error),
        }
    }

    fn update_failed(
        &self,
        row: &PlannedRow,
        id: Uuid,
        doing: &str,
        error: &CallError,
    ) -> Result<RowResult, Halt> {
        match error.status {
            _ if error.failure == Failure::Fatal => Err(Halt::Fatal(error.clone())),
            Some(404) => Ok(RowResult::Failed {
                status: Some(404),
                message: format!(
                    "building {id} of user {} no longer exists in Podero (deleted there?); it is \
                     not re-created automatically: remove the row, or re-create the building in \
                     Podero and ask support, then run again with --retry-failed",
                    row.user_id
                ),
                permanent: true,
            }),
            _ => Ok(failed(doing, error)),
        }
    }

    /// Records `posting` and waits for the commit: only then may the POST leave.
    async fn intent(&self, row: &PlannedRow) -> Result<(), Halt> {
        Ok(self.writer.intent(row).await?)
    }

    /// POSTs (the intent is already durable), resolving an unknown outcome before any re-send.
    /// `posts` counts the POSTs sent for this row in this run.
    async fn post(&self, row: &PlannedRow, posts: u32) -> Result<RowResult, Halt> {
        let body = Body::Text(&row.building_payload);
        match self.client.create_building(row.user_id, body).await {
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
            Listing::Buildings(buildings) => {
                // Two rows of a user may share a name (property_id): a building another
                // row owns is not this row's, whatever its name.
                let buildings = self.without_claimed(row.user_id, buildings).await?;
                self.by_name(row, &buildings, cause, posts).await
            }
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
                    join_ids(many)
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

/// Every row of a job whose customer is not known ends with `result`.
fn every_row(job: UserJob, result: &RowResult) -> JobResult<RowOutcome> {
    JobResult {
        outcomes: job
            .rows
            .into_iter()
            .map(|(row, _)| outcome_of(row, result.clone()))
            .collect(),
        halt: None,
    }
}

fn failed(doing: &str, error: &CallError) -> RowResult {
    RowResult::Failed {
        status: error.status,
        message: format!("{doing}: {error}"),
        permanent: !error.failure.is_transient(),
    }
}

fn join_ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row's outcome, taking its fields (the row is done with: nothing is copied).
fn outcome_of(row: PlannedRow, result: RowResult) -> RowOutcome {
    let owner = row.owner();
    let building_applied = match &result {
        RowResult::Created(_)
        | RowResult::Adopted(_)
        | RowResult::AdoptedExisting(_)
        | RowResult::BuildingUpdated => Some(row.building_payload),
        RowResult::Updated => plan::applied_building(&row),
        RowResult::UserOnly | RowResult::Failed { .. } | RowResult::Unresolved { .. } => None,
    };
    RowOutcome {
        user_id: row.user_id,
        owner,
        lookup: row.lookup,
        building_name: row.building_name,
        property_id: row.property_id,
        row_key: row.row_key,
        match_key: row.match_key,
        building_applied,
        line: row.line,
        external_user_id: row.external_user_id,
        fingerprint: row.fingerprint,
        result,
    }
}
