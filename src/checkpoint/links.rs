//! The links' side of the checkpoint: the join with `rows`, each building's link history
//! (`links`, `connections`, see `migrations/003_links.sql`), and the single writer thread
//! (which also serves the pages of staged buildings: it owns the connection).
//!
//! Intent before effect: [`Msg::Intent`] commits a `creating` row and only then answers
//! the worker, which only then POSTs. A run killed before the outcome is recorded leaves
//! `creating`; the next run marks it `unknown` and creates a new session (an extra session
//! expires by itself). Recording a new live link retires the building's previous one in the
//! same transaction, and a unique partial index keeps one live link per building.

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::api::connect::Session;
use crate::checkpoint::{Checkpoint, now};

/// What the checkpoint knows about a building's link before this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prior {
    /// An authenticated heat pump was seen for it: never a link again.
    Connected,
    /// A live link, expiring on this date (it may have expired since).
    Live(String),
    /// A POST was in flight when an earlier run stopped: its outcome is unknown.
    Unknown,
    /// Never had a link (or only failed attempts).
    Missing,
}

/// The building of a row that `run` finished, found by the row's identity in the
/// checkpoint (see `plan::row_key`). A file without `property_id` also finds a building
/// whose row was keyed by `property_id` in an earlier file, when exactly one row of the
/// user has that name (as `run` does when a file drops the column).
pub fn done_building(
    conn: &Connection,
    user: Uuid,
    building_name: &str,
    property_id: Option<&str>,
) -> rusqlite::Result<Option<Uuid>> {
    let user = user.to_string();
    let key = crate::commands::run::plan::row_key(building_name, property_id);
    let mut ids: Vec<String> = conn
        .prepare_cached(
            "SELECT building_id FROM rows WHERE user_id = ?1 AND row_key = ?2
             AND state = 'done' AND building_id IS NOT NULL",
        )?
        .query_map(params![user, key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() && property_id.is_none() {
        ids = conn
            .prepare_cached(
                "SELECT building_id FROM rows WHERE user_id = ?1 AND building_name = ?2
                 AND row_key LIKE 'property:%' AND state = 'done' AND building_id IS NOT NULL
                 LIMIT 2",
            )?
            .query_map(params![user, building_name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(match ids.as_slice() {
        [id] => Uuid::parse_str(id).ok(),
        _ => None,
    })
}

/// The building's link history, summed up.
pub fn prior(conn: &Connection, building: Uuid) -> rusqlite::Result<Prior> {
    let key = building.to_string();
    let connected: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM connections WHERE building_id = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()?;
    if connected.is_some() {
        return Ok(Prior::Connected);
    }
    let latest: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT state, expiration_date FROM links
             WHERE building_id = ?1 AND state IN ('live', 'creating')
             ORDER BY state = 'live' DESC, id DESC LIMIT 1",
            [&key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match latest {
        Some((state, expiration)) if state == "live" => Prior::Live(expiration.unwrap_or_default()),
        Some(_) => Prior::Unknown,
        None => Prior::Missing,
    })
}

/// A message to the writer thread.
#[derive(Debug)]
pub enum Msg {
    /// Record the intent to create a session; answers the new link row's id once committed.
    Intent {
        /// The user.
        user: Uuid,
        /// The building.
        building: Uuid,
        /// The building's name (for `export --links`).
        building_name: String,
        /// Answered after the commit.
        reply: oneshot::Sender<Result<i64, String>>,
    },
    /// The session exists: the link row becomes the building's live link.
    Created {
        /// The link row.
        id: i64,
        /// The building (its previous live link is retired).
        building: Uuid,
        /// What the server answered.
        session: Session,
    },
    /// The session was refused (`failed`) or its outcome is unknown (`unknown`).
    NotCreated {
        /// The link row.
        id: i64,
        /// `failed` or `unknown`.
        state: &'static str,
        /// The HTTP status, if any.
        status: Option<u16>,
        /// Why.
        error: String,
    },
    /// Read the next page of staged buildings (the writer owns the connection, so the
    /// pager reads through it).
    Page {
        /// The last (user_id, line) of the previous page.
        after: Option<(String, u64)>,
        /// Most buildings.
        limit: usize,
        /// Answered with the page.
        reply: oneshot::Sender<Result<Vec<crate::commands::links::targets::Target>, String>>,
    },
    /// An authenticated heat pump belongs to the building.
    Connected {
        /// The user.
        user: Uuid,
        /// The building.
        building: Uuid,
        /// The heat pump.
        heat_pump: Uuid,
        /// Whether this job assigned it to the building.
        assigned: bool,
    },
}

/// The writer thread: the only code that writes the checkpoint during a links run.
pub struct Writer {
    /// Where workers send their messages.
    pub tx: mpsc::UnboundedSender<Msg>,
    thread: std::thread::JoinHandle<(Checkpoint, Result<(), String>)>,
}

impl Writer {
    /// Starts the thread; it owns the checkpoint until [`Writer::finish`].
    pub fn spawn(checkpoint: Checkpoint, run_id: i64) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            let mut result = Ok(());
            while let Some(msg) = rx.blocking_recv() {
                if let Err(e) = apply(checkpoint.conn(), run_id, msg)
                    && result.is_ok()
                {
                    result = Err(format!("checkpoint {}: {e}", checkpoint.path().display()));
                }
            }
            (checkpoint, result)
        });
        Writer { tx, thread }
    }

    /// Waits until every message is written; returns the checkpoint and the first error.
    pub fn finish(self) -> (Checkpoint, Result<(), String>) {
        drop(self.tx);
        self.thread.join().expect("links writer panicked")
    }
}

fn apply(conn: &Connection, run_id: i64, msg: Msg) -> rusqlite::Result<()> {
    match msg {
        Msg::Intent {
            user,
            building,
            building_name,
            reply,
        } => match intent(conn, run_id, user, building, &building_name) {
            Ok(id) => {
                let _ = reply.send(Ok(id));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Err(e)
            }
        },
        Msg::Created {
            id,
            building,
            session,
        } => created(conn, id, building, &session),
        Msg::Page {
            after,
            limit,
            reply,
        } => match crate::commands::links::targets::page(conn, after.as_ref(), limit) {
            Ok(page) => {
                let _ = reply.send(Ok(page));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(format!("checkpoint: {e}")));
                Err(e)
            }
        },
        Msg::NotCreated {
            id,
            state,
            status,
            error,
        } => conn
            .execute(
                "UPDATE links SET state = ?2, http_status = ?3, error = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, state, status, error, now()],
            )
            .map(drop),
        Msg::Connected {
            user,
            building,
            heat_pump,
            assigned,
        } => conn
            .execute(
                "INSERT OR IGNORE INTO connections
                 (building_id, user_id, heat_pump_id, assigned, connected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    building.to_string(),
                    user.to_string(),
                    heat_pump.to_string(),
                    assigned,
                    now()
                ],
            )
            .map(drop),
    }
}

/// Marks a leftover `creating` row `unknown` and commits a new `creating` row.
fn intent(
    conn: &Connection,
    run_id: i64,
    user: Uuid,
    building: Uuid,
    building_name: &str,
) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    let at = now();
    tx.execute(
        "UPDATE links SET state = 'unknown', updated_at = ?2,
         error = 'a run stopped while the session POST was in flight; a new link was created'
         WHERE building_id = ?1 AND state = 'creating'",
        params![building.to_string(), at],
    )?;
    tx.execute(
        "INSERT INTO links (user_id, building_id, building_name, state, run_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'creating', ?4, ?5, ?5)",
        params![user.to_string(), building.to_string(), building_name, run_id, at],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Retires the building's live link and makes row `id` the live one, in one transaction.
fn created(conn: &Connection, id: i64, building: Uuid, session: &Session) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let at = now();
    tx.execute(
        "UPDATE links SET state = 'replaced', updated_at = ?2 WHERE building_id = ?1 AND state = 'live'",
        params![building.to_string(), at],
    )?;
    tx.execute(
        "UPDATE links SET state = 'live', session_id = ?2, link = ?3, expiration_date = ?4,
         updated_at = ?5 WHERE id = ?1",
        params![
            id,
            session.id.to_string(),
            session.authentication_url,
            session.expiration_date,
            at
        ],
    )?;
    tx.commit()
}

/// One live link, for `export --links`.
#[derive(Clone, Debug)]
pub struct LiveLink {
    /// The cells, in [`LIVE_LINK_HEADER`] order.
    pub cells: Vec<String>,
}

/// Columns of `export --links`.
pub const LIVE_LINK_HEADER: [&str; 8] = [
    "user_id",
    "external_user_id",
    "building_name",
    "building_id",
    "session_id",
    "link",
    "expires_on",
    "created_at",
];

/// Calls `f` with every live link that has not expired on `today` (oldest first). Buildings
/// that connected since are left out: their link has done its job.
pub fn for_each_live_link(
    conn: &Connection,
    today: &str,
    mut f: impl FnMut(LiveLink),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        // The row is found by its building, not its name: two properties of one user may
        // share a name (a join on the name printed each of their links twice).
        "SELECT l.user_id,
                coalesce((SELECT r.external_user_id FROM rows r
                          WHERE r.user_id = l.user_id AND r.building_id = l.building_id
                          LIMIT 1), ''),
                l.building_name, l.building_id,
                l.session_id, l.link, l.expiration_date, l.created_at
         FROM links l
         WHERE l.state = 'live' AND substr(l.expiration_date, 1, 10) >= ?1
           AND l.building_id NOT IN (SELECT building_id FROM connections)
         ORDER BY l.id",
    )?;
    let mut rows = stmt.query([today])?;
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(LIVE_LINK_HEADER.len());
        for i in 0..7 {
            cells.push(row.get::<_, Option<String>>(i)?.unwrap_or_default());
        }
        let created: i64 = row.get(7)?;
        cells.push(crate::date::from_days(created.div_euclid(86_400)));
        f(LiveLink { cells });
    }
    Ok(())
}

/// The onboarding funnel of a checkpoint.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Funnel {
    /// Rows whose building exists.
    pub rows_done: u64,
    /// Buildings that were ever sent a link.
    pub links_sent: u64,
    /// Buildings with a link valid today (not connected).
    pub links_live: u64,
    /// Buildings with an authenticated heat pump.
    pub connected: u64,
}

/// Counts the funnel; `None` for a checkpoint `links` never worked on.
pub fn funnel(conn: &Connection, today: &str) -> rusqlite::Result<Option<Funnel>> {
    let has_links: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'links'",
        [],
        |r| r.get(0),
    )?;
    if has_links == 0 {
        return Ok(None);
    }
    // A checkpoint `links` never touched shows no funnel (status stays as it was).
    let used: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM links) + (SELECT count(*) FROM connections)",
        [],
        |r| r.get(0),
    )?;
    if used == 0 {
        return Ok(None);
    }
    let count = |sql: &str| conn.query_row(sql, [today], |r| r.get::<_, i64>(0));
    Ok(Some(Funnel {
        // User-only rows are done too, but have no building: they never enter the funnel.
        rows_done: count(
            "SELECT count(*) FROM rows WHERE state = 'done' AND building_id IS NOT NULL
             AND ?1 IS NOT NULL",
        )? as u64,
        links_sent: count(
            "SELECT count(DISTINCT building_id) FROM links
             WHERE state IN ('live', 'replaced') AND ?1 IS NOT NULL",
        )? as u64,
        links_live: count(
            "SELECT count(*) FROM links WHERE state = 'live'
             AND substr(expiration_date, 1, 10) >= ?1
             AND building_id NOT IN (SELECT building_id FROM connections)",
        )? as u64,
        connected: count("SELECT count(*) FROM connections WHERE ?1 IS NOT NULL")? as u64,
    }))
}
