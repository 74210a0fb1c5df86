//! The single writer: one thread owns the connection during a run (of `run` or `links`)
//! and applies everything the workers report, in batched transactions. Workers talk to it
//! through a [`Sender`]; they never touch SQLite.
//!
//! Batching is group commit: the writer takes one message, then everything already
//! queued (up to [`MAX_BATCH`]), applies it in one transaction, commits, and only then
//! answers. So a worker's POST waits for a durable intent, yet a hundred concurrent
//! workers cost one fsync, not a hundred.
//!
//! The first failed write stops the writer: the batch is rolled back, and every request
//! in it or after it is refused with that error ([`WriteError`]); nothing more is written,
//! and [`Writer::finish`] returns the error. A worker whose intent is refused never sends
//! its request, so the checkpoint can never be behind the server.
//!
//! Reads go through the writer too (it owns the connection): plan pages, link targets and
//! claimed buildings are answered after the batch's commit, so a read sees every message
//! sent before it. A failed read refuses that request only; its requester halts the run.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::customers::{self, NotKnown, Resolution};
use super::links::{self, NewLink, NotCreated, Target};
use super::outcome::{RowOutcome, RowResult, Tally};
use super::rate;
use super::row::PlannedRow;
use super::{Checkpoint, CheckpointError, now, sqlite};

/// Most messages applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Why the writer could not do what was asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// The writer is gone: it stopped at an earlier failure, or the run is ending.
    #[error("the checkpoint writer stopped")]
    Stopped,
    /// The checkpoint refused the write (or the read).
    #[error(transparent)]
    Failed(Arc<CheckpointError>),
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// What recording `posting` needs of a row: its identity and input, not its payloads (a
/// copy of both bodies per intent was a tenth of the allocations of a first run).
struct Intent {
    user_id: Uuid,
    lookup: bool,
    external_user_id: String,
    row_key: String,
    match_key: String,
    property_id: Option<String>,
    building_name: String,
    line: u64,
    fingerprint: i64,
}

impl Intent {
    fn of(row: &PlannedRow) -> Intent {
        Intent {
            user_id: row.user_id,
            lookup: row.lookup,
            external_user_id: row.external_user_id.clone(),
            row_key: row.row_key.clone(),
            match_key: row.match_key.clone(),
            property_id: row.property_id.clone(),
            building_name: row.building_name.clone(),
            line: row.line,
            fingerprint: row.fingerprint,
        }
    }
}

/// A message to the writer thread (sent through [`Sender`]'s methods).
enum Msg {
    /// `run`: about to POST this row's building: record `posting`, answer after the commit.
    Intent(Box<Intent>, Reply<()>),
    /// `run`: a user's PUT succeeded with this body.
    UserApplied(Uuid, String),
    /// `run`: a row's final outcome in this run.
    Outcome(Box<RowOutcome>),
    /// `run`: rows the plan skipped, by reason (counted only).
    Skipped(Tally),
    /// `run`: the buildings the checkpoint records for a user.
    Claimed(Uuid, Reply<Vec<Uuid>>),
    /// `run`: about to create the user of CRM id: record `creating`, answer after the commit.
    CustomerIntent(String, Reply<()>),
    /// `run`: the customer (CRM id) is this Podero user.
    CustomerKnown(String, Uuid, Resolution),
    /// `run`: the customer (CRM id) is not known after this attempt: state, status, error.
    CustomerNotKnown(String, NotKnown, Option<u16>, String),
    /// `run`: a resolved customer's rows with their history under its user id.
    Priors(Uuid, Vec<PlannedRow>, Reply<Vec<PlannedRow>>),
    /// `run`: the plan page after (user_id, row_key).
    PlanPage(Option<(String, String)>, usize, Reply<Vec<PlannedRow>>),
    /// `links`: about to create a session: record `creating`, answer its id after the commit.
    LinkIntent(Box<Target>, Reply<i64>),
    /// `links`: the session exists: link row `id` becomes the building's live link.
    LinkCreated(i64, Uuid, NewLink),
    /// `links`: the session POST failed, or its outcome is unknown.
    LinkNotCreated(i64, NotCreated, Option<u16>, String),
    /// `links`: an authenticated heat pump (and whether this run assigned it).
    Connected(Box<Target>, Uuid, bool),
    /// `links`: the staged buildings after (user_id, line).
    TargetPage(Option<(String, u64)>, usize, Reply<Vec<Target>>),
    /// `run`: the adaptive rate learned this limit (requests per second).
    LearnedRate(f64),
    /// Answered once every earlier message is applied.
    Flush(Reply<()>),
}

/// Where workers send: intents and requests wait for the writer's answer, outcomes do not
/// (a refused outcome is the writer's error, reported when the run ends).
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Sender {
    /// Records `posting` for the row and waits for the commit: only then may its POST leave.
    pub async fn intent(&self, row: &PlannedRow) -> Result<(), WriteError> {
        self.ask(|reply| Msg::Intent(Box::new(Intent::of(row)), reply))
            .await
    }

    /// A user's PUT succeeded with `payload`.
    pub fn user_applied(&self, user_id: Uuid, payload: String) {
        self.tell(Msg::UserApplied(user_id, payload));
    }

    /// A row's final outcome in this run.
    pub fn outcome(&self, outcome: RowOutcome) {
        self.tell(Msg::Outcome(Box::new(outcome)));
    }

    /// Rows that cost nothing, counted by reason.
    pub fn skipped(&self, skipped: Tally) {
        self.tell(Msg::Skipped(skipped));
    }

    /// Records `creating` for the CRM id and waits for the commit: only then may the user
    /// POST leave.
    pub async fn customer_intent(&self, crm: &str) -> Result<(), WriteError> {
        self.ask(|reply| Msg::CustomerIntent(crm.to_owned(), reply))
            .await
    }

    /// The customer with CRM id `crm` is Podero user `user`.
    pub fn customer_known(&self, crm: &str, user: Uuid, how: Resolution) {
        self.tell(Msg::CustomerKnown(crm.to_owned(), user, how));
    }

    /// The customer with CRM id `crm` is not known after this attempt.
    pub fn customer_not_known(
        &self,
        crm: &str,
        state: NotKnown,
        status: Option<u16>,
        error: String,
    ) {
        self.tell(Msg::CustomerNotKnown(crm.to_owned(), state, status, error));
    }

    /// A resolved customer's rows, given `user` and their history under it (read after
    /// every earlier message is applied).
    pub async fn priors(
        &self,
        user: Uuid,
        rows: Vec<PlannedRow>,
    ) -> Result<Vec<PlannedRow>, WriteError> {
        self.ask(|reply| Msg::Priors(user, rows, reply)).await
    }

    /// The building ids the checkpoint records for `user_id` (any row, any state).
    pub async fn claimed(&self, user_id: Uuid) -> Result<Vec<Uuid>, WriteError> {
        self.ask(|reply| Msg::Claimed(user_id, reply)).await
    }

    /// Up to `limit` planned rows after `after` (user_id, row_key), in key order.
    pub async fn plan_page(
        &self,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<PlannedRow>, WriteError> {
        self.ask(|reply| Msg::PlanPage(after, limit, reply)).await
    }

    /// Records `creating` for the target's building and waits for the commit; answers the
    /// link row's id.
    pub async fn link_intent(&self, target: &Target) -> Result<i64, WriteError> {
        self.ask(|reply| Msg::LinkIntent(Box::new(target.clone()), reply))
            .await
    }

    /// The session of link row `id` exists: it becomes `building`'s live link.
    pub fn link_created(&self, id: i64, building: Uuid, link: NewLink) {
        self.tell(Msg::LinkCreated(id, building, link));
    }

    /// The session POST of link row `id` failed, or its outcome is unknown.
    pub fn link_not_created(&self, id: i64, how: NotCreated, status: Option<u16>, error: String) {
        self.tell(Msg::LinkNotCreated(id, how, status, error));
    }

    /// The target's building has the authenticated heat pump `heat_pump`.
    pub fn connected(&self, target: &Target, heat_pump: Uuid, assigned: bool) {
        self.tell(Msg::Connected(
            Box::new(target.clone()),
            heat_pump,
            assigned,
        ));
    }

    /// Up to `limit` staged link targets after `after` (user_id, line), in key order.
    pub async fn target_page(
        &self,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<Target>, WriteError> {
        self.ask(|reply| Msg::TargetPage(after, limit, reply)).await
    }

    /// `run`: remember the limit the adaptive rate learned, for the next run to start at.
    pub fn learned_rate(&self, rate: f64) {
        self.tell(Msg::LearnedRate(rate));
    }

    /// Waits until every message sent before is applied.
    pub async fn flush(&self) -> Result<(), WriteError> {
        self.ask(Msg::Flush).await
    }

    async fn ask<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(msg(reply)).map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    fn tell(&self, msg: Msg) {
        // A stopped writer already holds the error that ends the run.
        let _ = self.tx.send(msg);
    }
}

/// The writer thread; [`Writer::finish`] returns the checkpoint.
pub struct Writer {
    sender: Sender,
    tally: Arc<Mutex<Tally>>,
    thread: std::thread::JoinHandle<(Checkpoint, Result<(), WriteError>)>,
}

impl Writer {
    /// Starts the thread, which owns the checkpoint until [`finish`](Self::finish).
    /// `run_id` is the run the links' intents belong to. `report`: this run writes a
    /// `--report`, so what it did to each row is kept for it (`temp.outcomes`); without
    /// one, that statement per row is not run.
    pub fn spawn(checkpoint: Checkpoint, run_id: i64, report: bool) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let thread = {
            let tally = tally.clone();
            std::thread::Builder::new()
                .name("checkpoint-writer".into())
                .spawn(move || {
                    let thread = Thread {
                        checkpoint: &checkpoint,
                        run_id,
                        report,
                        tally: &tally,
                    };
                    let result = thread.run(rx);
                    (checkpoint, result)
                })
                .expect("spawning the writer thread")
        };
        Writer {
            sender: Sender { tx },
            tally,
            thread,
        }
    }

    /// A sender for workers and pagers.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The row counters of `run` (kept by the writer as outcomes commit).
    pub fn tally(&self) -> Arc<Mutex<Tally>> {
        self.tally.clone()
    }

    /// Waits for every queued message to be written and returns the checkpoint, with the
    /// error that stopped the writer, if any. Every other sender must have been dropped.
    pub fn finish(self) -> (Checkpoint, Result<(), WriteError>) {
        drop(self.sender);
        self.thread.join().expect("the writer thread panicked")
    }
}

/// The writer thread's view.
struct Thread<'a> {
    checkpoint: &'a Checkpoint,
    run_id: i64,
    report: bool,
    tally: &'a Mutex<Tally>,
}

impl Thread<'_> {
    fn run(&self, mut rx: mpsc::UnboundedReceiver<Msg>) -> Result<(), WriteError> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.apply(&mut batch) {
                let error = WriteError::Failed(Arc::new(error));
                // Refuse everything that follows: a worker must never POST without an intent.
                rx.close();
                refuse(batch.drain(..), &error);
                while let Some(msg) = rx.blocking_recv() {
                    refuse([msg], &error);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Applies one batch in one transaction, then answers (on failure the batch is left
    /// for the caller to refuse).
    fn apply(&self, batch: &mut Vec<Msg>) -> Result<(), CheckpointError> {
        let conn = self.checkpoint.conn();
        let wrap = |e| sqlite(self.checkpoint.path(), e);
        // Cached like every statement of the batch: a transaction per batch, thousands a run.
        run_cached(conn, "BEGIN IMMEDIATE").map_err(wrap)?;
        let mut ids = Vec::new();
        let written = batch
            .iter()
            .try_for_each(|msg| self.write(conn, msg).map(|id| ids.extend(id)));
        if let Err(e) = written.and_then(|()| run_cached(conn, "COMMIT")) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(wrap(e));
        }
        let mut ids = ids.into_iter();
        for msg in batch.drain(..) {
            self.answer(msg, &mut ids);
        }
        Ok(())
    }

    /// Writes one message; a link intent yields its new row's id.
    fn write(&self, conn: &Connection, msg: &Msg) -> rusqlite::Result<Option<i64>> {
        match msg {
            Msg::Intent(row, _) => write_intent(conn, row).map(|()| None),
            Msg::UserApplied(user_id, payload) => {
                write_user(conn, *user_id, payload).map(|()| None)
            }
            Msg::Outcome(outcome) => write_outcome(conn, outcome, self.report).map(|()| None),
            Msg::CustomerIntent(crm, _) => customers::intent(conn, crm).map(|()| None),
            Msg::CustomerKnown(crm, user, how) => {
                customers::known(conn, crm, *user, *how).map(|()| None)
            }
            Msg::CustomerNotKnown(crm, state, status, error) => {
                customers::not_known(conn, crm, *state, *status, error).map(|()| None)
            }
            Msg::LinkIntent(target, _) => links::intent(conn, self.run_id, target).map(Some),
            Msg::LinkCreated(id, building, link) => {
                links::created(conn, *id, *building, link).map(|()| None)
            }
            Msg::LinkNotCreated(id, how, status, error) => {
                links::not_created(conn, *id, *how, *status, error).map(|()| None)
            }
            Msg::Connected(target, pump, assigned) => {
                links::connected(conn, target, *pump, *assigned).map(|()| None)
            }
            Msg::LearnedRate(rate) => rate::write(conn, *rate).map(|()| None),
            Msg::Skipped(_)
            | Msg::Claimed(..)
            | Msg::Priors(..)
            | Msg::PlanPage(..)
            | Msg::TargetPage(..)
            | Msg::Flush(_) => Ok(None),
        }
    }

    /// After the commit: acknowledges intents, counts, and answers reads.
    fn answer(&self, msg: Msg, ids: &mut impl Iterator<Item = i64>) {
        let read = |e| WriteError::Failed(Arc::new(sqlite(self.checkpoint.path(), e)));
        let conn = self.checkpoint.conn();
        match msg {
            Msg::Intent(_, reply) | Msg::Flush(reply) | Msg::CustomerIntent(_, reply) => {
                let _ = reply.send(Ok(()));
            }
            Msg::LinkIntent(_, reply) => {
                let _ = reply.send(ids.next().ok_or(WriteError::Stopped));
            }
            Msg::CustomerKnown(_, _, how) => self.tally().customer(how),
            Msg::Priors(user, rows, reply) => {
                let _ = reply.send(customers::priors(conn, user, rows).map_err(read));
            }
            Msg::Outcome(outcome) => self.tally().add(&outcome.result),
            Msg::Skipped(skipped) => self.tally().add_skips(&skipped),
            Msg::Claimed(user_id, reply) => {
                let _ = reply.send(claimed(conn, user_id).map_err(read));
            }
            Msg::PlanPage(after, limit, reply) => {
                let page = self.checkpoint.plan_page(after.as_ref(), limit);
                let _ = reply.send(page.map_err(|e| WriteError::Failed(Arc::new(e))));
            }
            Msg::TargetPage(after, limit, reply) => {
                let _ = reply.send(links::target_page(conn, after.as_ref(), limit).map_err(read));
            }
            Msg::UserApplied(..)
            | Msg::CustomerNotKnown(..)
            | Msg::LinkCreated(..)
            | Msg::LinkNotCreated(..)
            | Msg::Connected(..)
            | Msg::LearnedRate(_) => {}
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().expect("tally lock")
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Answers every request among `msgs` with `error`.
fn refuse(msgs: impl IntoIterator<Item = Msg>, error: &WriteError) {
    for msg in msgs {
        match msg {
            Msg::Intent(_, reply) | Msg::Flush(reply) | Msg::CustomerIntent(_, reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Msg::Priors(.., reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Msg::LinkIntent(_, reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Msg::Claimed(_, reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Msg::PlanPage(.., reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Msg::TargetPage(.., reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            _ => {}
        }
    }
}

/// The building ids the checkpoint records for `user` (any row, any state).
fn claimed(conn: &Connection, user: Uuid) -> rusqlite::Result<Vec<Uuid>> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT building_id FROM rows WHERE user_id = ?1 AND building_id IS NOT NULL",
        )?
        .query_map([user.to_string()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect())
}

fn write_user(conn: &Connection, user_id: Uuid, payload: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (user_id, payload, applied_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET payload = excluded.payload,
                                             applied_at = excluded.applied_at",
    )?
    .execute(params![user_id.to_string(), payload, now()])
    .map(drop)
}

fn write_intent(conn: &Connection, row: &Intent) -> rusqlite::Result<()> {
    if row.lookup {
        customers::move_to_user(conn, &row.external_user_id, row.user_id, &row.row_key)?;
    }
    rekey(
        conn,
        row.user_id,
        &row.match_key,
        &row.row_key,
        row.property_id.as_deref(),
    )?;
    conn.prepare_cached(
        "INSERT INTO rows (user_id, row_key, building_name, property_id, line, external_user_id,
                           state, fingerprint, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'posting', ?7, ?8)
         ON CONFLICT (user_id, row_key) DO UPDATE SET
             state = 'posting', line = excluded.line, updated_at = excluded.updated_at",
    )?
    .execute(params![
        row.user_id
            .as_hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()) as &str,
        row.row_key,
        row.building_name,
        row.property_id,
        row.line,
        row.external_user_id,
        row.fingerprint,
        now()
    ])
    .map(drop)
}

/// A row that continues a checkpoint row under another key (first run with `property_id`)
/// takes that row over: same building, new key. Normally done in bulk before the run
/// (`attach_property_keys`); this keeps the writer right on its own.
fn rekey(
    conn: &Connection,
    user: Uuid,
    from: &str,
    to: &str,
    property_id: Option<&str>,
) -> rusqlite::Result<()> {
    if from == to {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE rows SET row_key = ?3, property_id = ?4 WHERE user_id = ?1 AND row_key = ?2",
    )?
    .execute(params![user.to_string(), from, to, property_id])
    .map(drop)
}

fn write_outcome(conn: &Connection, outcome: &RowOutcome, report: bool) -> rusqlite::Result<()> {
    let (state, building, status, error, permanent) = match &outcome.result {
        RowResult::Created(id) | RowResult::Adopted(id) | RowResult::AdoptedExisting(id) => {
            ("done", Some(id.to_string()), None, None, false)
        }
        RowResult::Updated | RowResult::BuildingUpdated | RowResult::UserOnly => {
            ("done", None, None, None, false)
        }
        RowResult::Failed {
            status,
            message,
            permanent,
        } => ("failed", None, *status, Some(message.as_str()), *permanent),
        RowResult::Unresolved { message } => {
            ("unresolved", None, None, Some(message.as_str()), false)
        }
    };
    let o = outcome;
    // A lookup row whose customer was not found stays under its owner key `ext:<CRM id>`.
    let user = if o.user_id.is_nil() {
        o.owner.clone()
    } else {
        o.user_id.to_string()
    };
    if o.lookup && !o.user_id.is_nil() {
        customers::move_to_user(conn, &o.external_user_id, o.user_id, &o.row_key)?;
    }
    rekey(
        conn,
        o.user_id,
        &o.match_key,
        &o.row_key,
        o.property_id.as_deref(),
    )?;
    if report {
        // What this run did to the row, for the `--report` (a temp table: this run only).
        conn.prepare_cached(
            "INSERT OR REPLACE INTO temp.outcomes (user_id, row_key, outcome) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![o.owner, o.row_key, o.result.name()])?;
    }
    let values = params![
        user,
        outcome.building_name,
        outcome.line,
        outcome.external_user_id,
        state,
        building,
        status,
        error,
        permanent,
        outcome.fingerprint,
        now(),
        outcome.row_key,
        outcome.property_id,
        outcome.building_applied,
    ];
    // Nearly every row already exists (its intent, or an earlier run, wrote it): an UPDATE
    // first. An upsert alone first builds and checks the row to insert, meets the key, and
    // only then updates (perf, issue 25: the outcome cost twice the intent).
    // A property-keyed row may have a new building_name (a rename): it is a field here.
    let updated = conn
        .prepare_cached(
            "UPDATE rows SET line = ?3, external_user_id = ?4, building_name = ?2,
                 property_id = coalesce(?13, property_id), state = ?5,
                 building_id = coalesce(?6, building_id), attempts = attempts + 1,
                 http_status = ?7, error = ?8, permanent = ?9, fingerprint = ?10,
                 updated_at = ?11, building_payload = coalesce(?14, building_payload)
             WHERE user_id = ?1 AND row_key = ?12",
        )?
        .execute(values)?;
    if updated > 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO rows (user_id, row_key, building_name, property_id, line, external_user_id,
                           state, building_id, attempts, http_status, error, permanent,
                           fingerprint, updated_at, building_payload)
         VALUES (?1, ?12, ?2, ?13, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?14)",
    )?
    .execute(values)
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Identity;
    use crate::checkpoint::links::LinkHistory;

    fn target(building: u128) -> Target {
        Target {
            line: 2,
            user_id: Uuid::from_u128(1),
            building_id: Uuid::from_u128(building),
            building_name: format!("Home {building}"),
            external_user_id: "CRM-1".into(),
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            language: "de".into(),
            price_zone: "AT".into(),
            history: LinkHistory::Missing,
        }
    }

    fn count(checkpoint: &Checkpoint, table: &str) -> i64 {
        checkpoint
            .conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// The rule that keeps the checkpoint true, for `links` as for `run`: after a failed
    /// write nothing more is written, and every later request is refused.
    #[tokio::test]
    async fn the_writer_stops_at_a_failed_link_intent_and_applies_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity {
            org_id: Uuid::from_u128(7),
            base_url: "http://127.0.0.1:1".into(),
        };
        let checkpoint = Checkpoint::open_for_run(&dir.path().join("c.sqlite"), &identity).unwrap();
        let run_id = checkpoint.begin_run("links", "test.csv").unwrap();
        // The disk refuses the first link intent (as a full disk would).
        checkpoint
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.links
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        let writer = Writer::spawn(checkpoint, run_id, false);
        let sender = writer.sender();
        let refused = sender.link_intent(&target(10)).await;
        assert!(
            matches!(&refused, Err(WriteError::Failed(e)) if e.to_string().contains("refused by the test")),
            "{refused:?}"
        );
        // Messages after the failure: a connection, another intent. Neither may land.
        sender.connected(&target(11), Uuid::from_u128(99), false);
        assert!(sender.link_intent(&target(12)).await.is_err());
        assert!(sender.flush().await.is_err());
        drop(sender);
        let (checkpoint, result) = writer.finish();
        assert!(result.is_err(), "the first error is the writer's result");
        assert_eq!(
            count(&checkpoint, "connections"),
            0,
            "applied after a failure"
        );
        assert_eq!(count(&checkpoint, "links"), 0);
    }
}
