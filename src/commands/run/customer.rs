//! A customer known only by its CRM id: find its Podero user, or create it, exactly once.
//!
//! The rule that keeps one user per CRM id, whatever crashes: **nothing is created
//! without an answer "nobody has this CRM id" just before, in the same run**. So:
//! 1. `GET .../users/by-ext-id/{crm}`: every time the checkpoint has a record of the
//!    customer (`creating`, `unknown`, `failed`...: an unknown create is verified by CRM id
//!    before any re-send). For a customer it has no record of, the user list read at run
//!    start (`listed`, when it is the cheaper way) may answer instead: if the list does
//!    not show the CRM id, step 3 follows without the lookup; if it shows it (once,
//!    several times, or a hash collision), the lookup is made.
//! 2. Found → that is the customer: PUT only the fields that differ, record it.
//! 3. Not found → without `--create-users` the rows fail. With it: the intent (`creating`)
//!    is committed through the writer and waited for, then `POST .../users` with role
//!    `user` (always: `admin`/`staff` get invitations and admin rights) and the row's
//!    fields. An unknown outcome (timeout, dropped connection, 5xx) is recorded `unknown`
//!    and resolved by the lookup again (after `settle`) before any re-send; a `kill -9`
//!    leaves `creating`, which the next run's step 1 resolves the same way.
//! 4. A taken e-mail: the row fails, naming the address and `--adopt-existing`. With it,
//!    the organization's users are listed (once per run, shared by every job) and the user
//!    with that e-mail is adopted if it has no CRM id: the CRM id and the row's fields are
//!    PUT. One with another CRM id is never overwritten.
//!
//! A job holds all rows of one CRM id (the pager groups them), so two creates for one CRM
//! id are never in flight. Once known, the rows are read again under the user's id (a file
//! that named the user_id may have done them already) and decided like any row.

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::{Settings, SharedDirectory};
use super::plan::{self, Action, UserJob};
use crate::api::{CallError, Client, Directory, Failure, Keep, Lookup, PostOutcome};
use crate::checkpoint::customers::{NotKnown, Resolution};
use crate::checkpoint::outcome::{RowResult, Tally};
use crate::checkpoint::row::PlannedRow;
use crate::checkpoint::writer::Sender;
use crate::engine::Halt;

/// What became of the customer.
pub enum Customer {
    /// Known: the job, its rows re-read and re-decided under the user (rows that now cost
    /// nothing are counted and dropped).
    Known(UserJob, Resolution),
    /// Not known: every row of the job ends with this result.
    NotKnown(RowResult),
}

/// Resolves a lookup job's customer (see the module header).
pub struct Resolver<'a> {
    /// The client.
    pub client: &'a Client,
    /// The one writer.
    pub writer: &'a Sender,
    /// How the job behaves.
    pub settings: &'a Settings,
    /// The user list, shared.
    pub directory: &'a SharedDirectory,
}

impl Resolver<'_> {
    /// Finds or creates the customer of `job` (whose rows share the CRM id `crm`).
    pub async fn resolve(&self, job: UserJob, crm: &str) -> Result<Customer, Halt> {
        if self.settings.plan.create_users && job.new_customer && self.not_listed(crm) {
            return self.create(job, crm, 1).await;
        }
        match self.client.find_user(crm).await {
            Ok(Lookup::Found(user)) => self.found(job, crm, &user).await,
            Ok(Lookup::NotFound) if self.settings.plan.create_users => {
                self.create(job, crm, 1).await
            }
            Ok(Lookup::NotFound) => Ok(self.not_known(
                crm,
                NotKnown::Failed,
                RowResult::Failed {
                    status: Some(404),
                    message: format!(
                        "no Podero user has CRM id {crm}; pass --create-users to create it"
                    ),
                    permanent: true,
                },
            )),
            Err(error) => self.lookup_failed(crm, &error, "looking up the CRM id"),
        }
    }

    /// Whether the user list read at run start (`listed`) shows no user with CRM id `crm`.
    /// `false` when no list was read, or its reading kept no CRM ids.
    fn not_listed(&self, crm: &str) -> bool {
        match self.directory.get() {
            Some(Ok(list)) => list.may_show_crm_id(crm) == Some(false),
            _ => false,
        }
    }

    /// The lookup found the user: PUT what differs, then the rows under its id.
    async fn found(
        &self,
        job: UserJob,
        crm: &str,
        user: &Map<String, Value>,
    ) -> Result<Customer, Halt> {
        let Some(id) = user_id(user) else {
            return Ok(self.not_known(
                crm,
                NotKnown::Failed,
                RowResult::Failed {
                    status: None,
                    message: format!(
                        "the lookup of CRM id {crm} answered a user without a valid id"
                    ),
                    permanent: false,
                },
            ));
        };
        self.writer.customer_known(crm, id, Resolution::Found);
        let changes = differing(&job.user_payload, user);
        if !changes.is_empty()
            && let Err(error) = self.client.put_user(id, &Value::Object(changes)).await
        {
            return user_update_failed(error);
        }
        self.writer.user_applied(id, job.user_payload.clone());
        self.rows_of(job, id, Resolution::Found).await
    }

    /// Not found, `--create-users`: intent, POST, and an unknown outcome looked up again.
    /// `posts` counts the POSTs of this run (this one included).
    async fn create(&self, job: UserJob, crm: &str, posts: u32) -> Result<Customer, Halt> {
        self.writer.customer_intent(crm).await?;
        match self
            .client
            .create_user(&create_body(&job.user_payload))
            .await
        {
            PostOutcome::Created(id) => self.created(job, crm, id).await,
            PostOutcome::NotCreated(error) if error.failure == Failure::Fatal => {
                Err(Halt::Fatal(error))
            }
            PostOutcome::NotCreated(error) if email_taken(&error) => {
                self.email_taken(job, crm, &error).await
            }
            PostOutcome::NotCreated(error) => Ok(self.not_known(
                crm,
                NotKnown::Failed,
                failed("creating the Podero user", &error),
            )),
            PostOutcome::Unknown(error) => self.unknown(job, crm, &error, posts).await,
        }
    }

    async fn created(&self, job: UserJob, crm: &str, id: Uuid) -> Result<Customer, Halt> {
        self.writer.customer_known(crm, id, Resolution::Created);
        // The create body carried the row's user fields.
        self.writer.user_applied(id, job.user_payload.clone());
        self.rows_of(job, id, Resolution::Created).await
    }

    /// The create's outcome is unknown: record it, wait, look the CRM id up again.
    async fn unknown(
        &self,
        job: UserJob,
        crm: &str,
        error: &CallError,
        posts: u32,
    ) -> Result<Customer, Halt> {
        // The line, not the CRM id: a CRM id may be personal data (see `api::path`).
        let line = job.rows.first().map_or(0, |(row, _)| row.line);
        tracing::info!(line, %error, "user POST outcome unknown; looking the CRM id up");
        self.writer
            .customer_not_known(crm, NotKnown::Unknown, error.status, error.to_string());
        tokio::time::sleep(self.settings.settle).await;
        match self.client.find_user(crm).await {
            Ok(Lookup::Found(user)) => match user_id(&user) {
                Some(id) => self.created(job, crm, id).await,
                None => Ok(self.still_unknown(error, "the lookup answered a user without an id")),
            },
            Ok(Lookup::NotFound) if posts >= self.settings.max_posts => {
                Ok(Customer::NotKnown(RowResult::Failed {
                    status: None,
                    message: format!(
                        "{posts} user POSTs ended with unknown outcomes ({error}), and no user \
                         has CRM id {crm}; it is looked up and created on the next run"
                    ),
                    permanent: false,
                }))
            }
            Ok(Lookup::NotFound) => Box::pin(self.create(job, crm, posts + 1)).await,
            Err(lookup) if lookup.failure == Failure::Fatal => Err(Halt::Fatal(lookup)),
            Err(lookup) => Ok(self.still_unknown(error, &lookup.to_string())),
        }
    }

    /// The create may have happened and the lookup could not tell: nothing is re-sent.
    fn still_unknown(&self, error: &CallError, check: &str) -> Customer {
        Customer::NotKnown(RowResult::Unresolved {
            message: format!(
                "creating the Podero user: outcome unknown ({error}) and the lookup by CRM id \
                 failed ({check}); it is looked up again before anything is re-sent on the next run"
            ),
        })
    }

    /// The e-mail is taken: fail, or with `--adopt-existing` adopt its user.
    async fn email_taken(
        &self,
        job: UserJob,
        crm: &str,
        error: &CallError,
    ) -> Result<Customer, Halt> {
        let email = email_of(&job.user_payload);
        if !self.settings.adopt_existing {
            let message = format!(
                "e-mail {email} is already used by a Podero user without CRM id {crm} ({error}); \
                 if that user is this customer (signed up in the app, say), run again with \
                 --adopt-existing to give it the CRM id, else correct the e-mail"
            );
            return Ok(self.not_known(crm, NotKnown::Failed, permanent(error.status, message)));
        }
        let directory = match self.directory().await {
            Ok(directory) => directory,
            Err(list) if list.failure == Failure::Fatal => return Err(Halt::Fatal(list)),
            Err(list) => {
                let result = failed(
                    "listing the organization's users for --adopt-existing",
                    &list,
                );
                return Ok(self.not_known(crm, NotKnown::Failed, result));
            }
        };
        match directory.with_email(&email) {
            [one] if one.external_user_id.is_none() => self.adopt(job, crm, one.id).await,
            [one] => {
                let other = one.external_user_id.as_deref().unwrap_or_default();
                let message = format!(
                    "e-mail {email} belongs to Podero user {} whose CRM id is {other}, not {crm}: \
                     another customer's CRM id is never overwritten; correct the e-mail or the \
                     CRM id",
                    one.id
                );
                Ok(self.not_known(crm, NotKnown::Failed, permanent(error.status, message)))
            }
            [] => {
                let message = format!(
                    "e-mail {email} is taken ({error}), but no user in the organization's list \
                     has it; it is tried again on the next run"
                );
                let result = RowResult::Failed {
                    status: error.status,
                    message,
                    permanent: false,
                };
                Ok(self.not_known(crm, NotKnown::Failed, result))
            }
            many => {
                let ids: Vec<String> = many.iter().map(|u| u.id.to_string()).collect();
                let message = format!(
                    "e-mail {email} belongs to {} Podero users ({}); a human must decide which \
                     is the customer with CRM id {crm}",
                    many.len(),
                    ids.join(", ")
                );
                Ok(self.not_known(crm, NotKnown::Unresolved, RowResult::Unresolved { message }))
            }
        }
    }

    /// The list, read once per run whoever asks first.
    async fn directory(&self) -> Result<Arc<Directory>, CallError> {
        self.directory
            .get_or_init(|| async {
                tracing::info!("listing the organization's users once for --adopt-existing");
                self.client.list_users(Keep::Emails).await.map(Arc::new)
            })
            .await
            .clone()
    }

    /// `--adopt-existing`: the CRM id and the row's fields go to the user with the e-mail.
    async fn adopt(&self, job: UserJob, crm: &str, id: Uuid) -> Result<Customer, Halt> {
        let body: Value =
            serde_json::from_str(&job.user_payload).expect("staged payloads are JSON");
        if let Err(error) = self.client.put_user(id, &body).await {
            return user_update_failed(error);
        }
        self.writer.customer_known(crm, id, Resolution::Adopted);
        self.writer.user_applied(id, job.user_payload.clone());
        self.rows_of(job, id, Resolution::Adopted).await
    }

    /// The lookup failed. A 5xx every time is what Podero answers when several users have
    /// the CRM id: unresolved, nothing created.
    fn lookup_failed(&self, crm: &str, error: &CallError, doing: &str) -> Result<Customer, Halt> {
        if error.failure == Failure::Fatal {
            return Err(Halt::Fatal(error.clone()));
        }
        if error.status.is_some_and(|s| s >= 500 && s != 503) {
            let message = format!(
                "{doing} {crm} failed every time ({error}): Podero answers so when several users \
                 have this CRM id. Nothing was created; check in Podero which users have \
                 external_user_id {crm}, keep one, then run again"
            );
            return Ok(self.not_known(
                crm,
                NotKnown::Unresolved,
                RowResult::Unresolved { message },
            ));
        }
        Ok(self.not_known(crm, NotKnown::Failed, failed(doing, error)))
    }

    /// Records why the customer is not known; every row ends with `result`.
    fn not_known(&self, crm: &str, state: NotKnown, result: RowResult) -> Customer {
        let (status, message) = match &result {
            RowResult::Failed {
                status, message, ..
            } => (*status, message.clone()),
            RowResult::Unresolved { message } => (None, message.clone()),
            other => (None, other.name().to_owned()),
        };
        self.writer.customer_not_known(crm, state, status, message);
        Customer::NotKnown(result)
    }

    /// The rows under the user's id, each decided again; those that now cost nothing
    /// (done by an earlier run that named the user_id) are counted, not worked on.
    async fn rows_of(&self, job: UserJob, id: Uuid, how: Resolution) -> Result<Customer, Halt> {
        let rows = job.rows.into_iter().map(|(row, _)| row).collect();
        let rows = self.writer.priors(id, rows).await?;
        let mut skipped = Tally::default();
        let mut work = Vec::with_capacity(rows.len());
        let mut put = false;
        for row in rows {
            // Decided as the user's row now (a lookup row is always worked on); the row keeps
            // `lookup` so its outcome moves any row kept under the CRM id to the user.
            let as_user = PlannedRow {
                lookup: false,
                ..row.clone()
            };
            match plan::decide(&as_user, self.settings.plan) {
                Action::Skip(skip) => skipped.skip(skip),
                Action::Work { put: p, building } => {
                    put |= p;
                    work.push((row, building));
                }
            }
        }
        if skipped != Tally::default() {
            self.writer.skipped(skipped);
        }
        let job = UserJob {
            user_id: id,
            lookup: None,
            put,
            rows: work,
            ..job
        };
        Ok(Customer::Known(job, how))
    }
}

/// The create body: the row's user fields (with the CRM id) and role `user`, always.
fn create_body(payload: &str) -> Value {
    let mut body: Map<String, Value> =
        serde_json::from_str(payload).expect("staged payloads are JSON");
    body.insert("role".into(), Value::String("user".into()));
    Value::Object(body)
}

fn user_id(user: &Map<String, Value>) -> Option<Uuid> {
    user.get("id")?
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
}

fn email_of(payload: &str) -> String {
    let body: Map<String, Value> = serde_json::from_str(payload).unwrap_or_default();
    body.get("email")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A refused create that names the e-mail: Podero's answer for a taken address is not
/// documented (a 4xx with `detail`: 400, 409 or 422), and the address's format was checked
/// before the run, so a 4xx about the e-mail means it is taken.
fn email_taken(error: &CallError) -> bool {
    let message = error.message.to_lowercase();
    matches!(error.status, Some(400 | 409 | 422))
        && (message.contains("email") || message.contains("e-mail"))
}

/// The row's user fields whose values differ from the user as Podero has it: what the
/// PUT of a found user sends. Reads name the country `country`, writes `country_iso2`;
/// e-mails compare case-insensitively, numbers and postcodes by value.
pub fn differing(payload: &str, user: &Map<String, Value>) -> Map<String, Value> {
    let fields: Map<String, Value> =
        serde_json::from_str(payload).expect("staged payloads are JSON");
    fields
        .into_iter()
        .filter(|(name, value)| {
            let current = user.get(name.as_str()).or_else(|| match name.as_str() {
                "country_iso2" => user.get("country"),
                _ => None,
            });
            !same(name, value, current)
        })
        .collect()
}

fn same(name: &str, wanted: &Value, current: Option<&Value>) -> bool {
    let Some(current) = current else { return false };
    match (wanted, current) {
        (Value::String(a), Value::String(b)) if name == "email" => a.eq_ignore_ascii_case(b),
        (Value::String(a), Value::Number(b)) | (Value::Number(b), Value::String(a)) => {
            *a == b.to_string()
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn user_update_failed(error: CallError) -> Result<Customer, Halt> {
    if error.failure == Failure::Fatal {
        return Err(Halt::Fatal(error));
    }
    Ok(Customer::NotKnown(failed("updating the user", &error)))
}

fn failed(doing: &str, error: &CallError) -> RowResult {
    RowResult::Failed {
        status: error.status,
        message: format!("{doing}: {error}"),
        permanent: !error.failure.is_transient(),
    }
}

fn permanent(status: Option<u16>, message: String) -> RowResult {
    RowResult::Failed {
        status,
        message,
        permanent: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_found_user_gets_only_the_fields_that_differ() {
        let payload = json!({"external_user_id": "C1", "email": "Ann@Example.com",
            "zip_code": "01067", "country_iso2": "DE", "town": "Dresden", "latitude": 51.05})
        .to_string();
        let user = object(
            json!({"id": "x", "external_user_id": "C1", "email": "ann@example.com",
            "zip_code": "1067", "country": "DE", "town": "Leipzig", "latitude": 51.05}),
        );
        let changes = differing(&payload, &user);
        assert_eq!(
            Value::Object(changes),
            json!({"zip_code": "01067", "town": "Dresden"}),
            "the leading zero is a difference; e-mail case and country spelling are not"
        );
    }

    #[test]
    fn the_create_body_always_says_role_user() {
        let body = create_body(&json!({"external_user_id": "C1", "role": "admin"}).to_string());
        assert_eq!(body["role"], json!("user"));
    }

    #[test]
    fn a_4xx_naming_the_email_means_it_is_taken() {
        let error = |status, message: &str| CallError {
            failure: Failure::Rejected,
            status: Some(status),
            message: message.into(),
        };
        assert!(email_taken(&error(
            409,
            "A user with this email already exists"
        )));
        assert!(email_taken(&error(422, "email: already taken")));
        assert!(!email_taken(&error(422, "country_iso2: invalid")));
        assert!(!email_taken(&error(404, "email")));
    }
}
