//! The single writer: one thread owns the connection and applies everything the workers
//! report, in batched transactions.
//!
//! Batching is group commit: the writer takes one message, then everything already
//! queued (up to [`MAX_BATCH`]), applies it in one transaction, commits, and only then
//! acknowledges intents. So a worker's POST waits for a durable intent, yet a hundred
//! concurrent workers cost one fsync, not a hundred.

use std::sync::{Arc, Mutex};

use rusqlite::params;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::outcome::{RowOutcome, RowResult, Tally};
use super::{Checkpoint, CheckpointError, now, sqlite};
use crate::commands::run::plan::PlannedRow;

/// Most messages applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// A message to the writer.
pub enum Msg {
    /// About to POST this row's building: record `posting` durably, then acknowledge.
    Intent {
        /// The row.
        row: Box<PlannedRow>,
        /// Answered after the commit.
        ack: oneshot::Sender<Result<(), String>>,
    },
    /// A user's PUT succeeded with this body.
    UserApplied {
        /// The user.
        user_id: Uuid,
        /// The body that was applied.
        payload: String,
    },
    /// A row's final outcome in this run.
    Outcome(RowOutcome),
    /// Rows the plan skipped, by reason (counted only).
    Skipped(Tally),
    /// Answered once every earlier message is applied.
    Flush(oneshot::Sender<()>),
    /// The buildings the checkpoint records for a user (`--adopt-existing` must not adopt
    /// a building another row already owns).
    Claimed {
        /// The user.
        user_id: Uuid,
        /// Their building ids.
        reply: oneshot::Sender<Result<Vec<Uuid>, String>>,
    },
    /// The next page of the plan.
    Page {
        /// Resume after this (user_id, row_key).
        after: Option<(String, String)>,
        /// Page size.
        limit: usize,
        /// The rows.
        reply: oneshot::Sender<Result<Vec<PlannedRow>, String>>,
    },
}

/// The writer's handle: send messages, then [`WriterHandle::finish`] to get the
/// checkpoint back.
pub struct WriterHandle {
    /// Where workers send.
    pub tx: mpsc::UnboundedSender<Msg>,
    /// The counters (written only by the writer).
    pub tally: Arc<Mutex<Tally>>,
    thread: std::thread::JoinHandle<(Checkpoint, Result<(), CheckpointError>)>,
}

impl WriterHandle {
    /// Starts the writer thread, which owns the checkpoint until [`finish`](Self::finish).
    pub fn spawn(checkpoint: Checkpoint) -> WriterHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let counters = tally.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                let result = run(&checkpoint, rx, &counters);
                (checkpoint, result)
            })
            .expect("spawning the writer thread");
        WriterHandle { tx, tally, thread }
    }

    /// Waits for every queued message to be written and returns the checkpoint.
    /// All other senders must have been dropped.
    pub fn finish(self) -> (Checkpoint, Result<(), CheckpointError>) {
        drop(self.tx);
        self.thread.join().expect("the writer thread panicked")
    }
}

fn run(
    checkpoint: &Checkpoint,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    tally: &Mutex<Tally>,
) -> Result<(), CheckpointError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        if let Err(error) = apply(checkpoint, &mut batch, tally) {
            fail_all(&mut batch, &error.to_string());
            // Refuse everything that follows: a worker must never POST without an intent.
            rx.close();
            while let Some(msg) = rx.blocking_recv() {
                fail_all(&mut vec![msg], &error.to_string());
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Applies one batch in one transaction, then answers intents and pages.
fn apply(
    checkpoint: &Checkpoint,
    batch: &mut Vec<Msg>,
    tally: &Mutex<Tally>,
) -> Result<(), CheckpointError> {
    let conn = checkpoint.conn();
    let wrap = |e| sqlite(checkpoint.path(), e);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(wrap)?;
    let written = batch.iter().try_for_each(|msg| write(conn, msg));
    let committed = written.and_then(|()| conn.execute_batch("COMMIT"));
    if let Err(e) = committed {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(wrap(e));
    }
    let mut counts = tally.lock().expect("tally lock");
    for msg in batch.drain(..) {
        match msg {
            Msg::Intent { ack, .. } => {
                let _ = ack.send(Ok(()));
            }
            Msg::Outcome(outcome) => counts.add(&outcome.result),
            Msg::Skipped(skipped) => add_skipped(&mut counts, &skipped),
            Msg::Page {
                after,
                limit,
                reply,
            } => {
                let page = checkpoint.plan_page(after.as_ref(), limit);
                let _ = reply.send(page.map_err(|e| e.to_string()));
            }
            Msg::Flush(reply) => {
                let _ = reply.send(());
            }
            Msg::Claimed { user_id, reply } => {
                let ids = checkpoint.claimed_buildings(user_id);
                let _ = reply.send(ids.map_err(|e| e.to_string()));
            }
            Msg::UserApplied { .. } => {}
        }
    }
    Ok(())
}

fn write(conn: &rusqlite::Connection, msg: &Msg) -> rusqlite::Result<()> {
    match msg {
        Msg::Intent { row, .. } => write_intent(conn, row),
        Msg::UserApplied { user_id, payload } => conn
            .prepare_cached(
                "INSERT INTO users (user_id, payload, applied_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET payload = excluded.payload,
                                                     applied_at = excluded.applied_at",
            )?
            .execute(params![user_id.to_string(), payload, now()])
            .map(|_| ()),
        Msg::Outcome(outcome) => write_outcome(conn, outcome),
        Msg::Skipped(_) | Msg::Page { .. } | Msg::Flush(_) | Msg::Claimed { .. } => Ok(()),
    }
}

fn write_intent(conn: &rusqlite::Connection, row: &PlannedRow) -> rusqlite::Result<()> {
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
        row.user_id.to_string(),
        row.row_key,
        row.building_name,
        row.property_id,
        row.line,
        row.external_user_id,
        row.fingerprint,
        now()
    ])
    .map(|_| ())
}

/// A row that continues a checkpoint row under another key (first run with `property_id`)
/// takes that row over: same building, new key. Normally done in bulk before the run
/// (`attach_property_keys`); this keeps the writer right on its own.
fn rekey(
    conn: &rusqlite::Connection,
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
    .map(|_| ())
}

fn write_outcome(conn: &rusqlite::Connection, outcome: &RowOutcome) -> rusqlite::Result<()> {
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
    rekey(
        conn,
        o.user_id,
        &o.match_key,
        &o.row_key,
        o.property_id.as_deref(),
    )?;
    // What this run did to the row, for the `--report` (a temp table: this run only).
    conn.prepare_cached(
        "INSERT OR REPLACE INTO temp.outcomes (user_id, row_key, outcome) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![o.user_id.to_string(), o.row_key, o.result.name()])?;
    // A property-keyed row may have a new building_name (a rename): it is a field here.
    conn.prepare_cached(
        "INSERT INTO rows (user_id, row_key, building_name, property_id, line, external_user_id,
                           state, building_id, attempts, http_status, error, permanent,
                           fingerprint, updated_at, building_payload)
         VALUES (?1, ?12, ?2, ?13, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?14)
         ON CONFLICT (user_id, row_key) DO UPDATE SET
             line = excluded.line, external_user_id = excluded.external_user_id,
             building_name = excluded.building_name,
             property_id = coalesce(excluded.property_id, rows.property_id),
             state = excluded.state,
             building_id = coalesce(excluded.building_id, rows.building_id),
             attempts = rows.attempts + 1, http_status = excluded.http_status,
             error = excluded.error, permanent = excluded.permanent,
             fingerprint = excluded.fingerprint, updated_at = excluded.updated_at,
             building_payload = coalesce(excluded.building_payload, rows.building_payload)",
    )?
    .execute(params![
        outcome.user_id.to_string(),
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
    ])
    .map(|_| ())
}

fn add_skipped(counts: &mut Tally, skipped: &Tally) {
    counts.skipped_done += skipped.skipped_done;
    counts.skipped_failed += skipped.skipped_failed;
    counts.skipped_not_selected += skipped.skipped_not_selected;
}

fn fail_all(batch: &mut Vec<Msg>, error: &str) {
    for msg in batch.drain(..) {
        match msg {
            Msg::Intent { ack, .. } => {
                let _ = ack.send(Err(error.to_owned()));
            }
            Msg::Page { reply, .. } => {
                let _ = reply.send(Err(error.to_owned()));
            }
            Msg::Claimed { reply, .. } => {
                let _ = reply.send(Err(error.to_owned()));
            }
            _ => {}
        }
    }
}
