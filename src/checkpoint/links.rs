//! The links' side of the checkpoint: the join of the input with `rows`, the buildings
//! staged for a links run, each building's link history (`links`, `connections`, see
//! `migrations/003_links.sql`), and the queries behind `status` and `export --links`.
//!
//! Staging streams: the joined rows go into a temporary table (on disk:
//! `PRAGMA temp_store=FILE`), keyed by (user_id, line) with the building unique (a later row
//! naming the same building is a duplicate), so memory stays flat whatever the file size.
//! [`target_page`] reads them back in key order, one user's buildings together, each with
//! its [`LinkHistory`] read as its page is read.
//!
//! Intent before effect: [`intent`] records a `creating` row, committed by the writer
//! before the worker may POST. A run killed before the outcome is recorded leaves
//! `creating`; the next intent for the building marks it `unknown` and a new session is
//! created (an extra session expires by itself). Recording a new live link retires the
//! building's previous one in the same transaction, and a unique partial index keeps one
//! live link per building.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

use super::customers;
use super::row::row_key;
use super::{Checkpoint, CheckpointError, now, sqlite};
use crate::input::Row;

const CREATE_TEMP: &str = "
    DROP TABLE IF EXISTS temp.link_targets;
    CREATE TEMP TABLE link_targets (
        user_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        building_id TEXT NOT NULL UNIQUE,
        building_name TEXT NOT NULL,
        external_user_id TEXT NOT NULL,
        email TEXT NOT NULL,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        language TEXT NOT NULL,
        price_zone TEXT NOT NULL,
        PRIMARY KEY (user_id, line)
    ) WITHOUT ROWID;";

/// One building that may get a link.
#[derive(Clone, Debug)]
pub struct Target {
    /// Line in the CSV.
    pub line: u64,
    /// The Podero user.
    pub user_id: Uuid,
    /// The building (from the checkpoint).
    pub building_id: Uuid,
    /// Its name.
    pub building_name: String,
    /// The CRM id.
    pub external_user_id: String,
    /// For the mail merge (empty when the CSV has none).
    pub email: String,
    /// For the mail merge.
    pub first_name: String,
    /// For the mail merge.
    pub last_name: String,
    /// The session language (the row's, else `--language`).
    pub language: String,
    /// The session price zone (the row's, else `--price-zone`).
    pub price_zone: String,
    /// What the checkpoint knew before this run.
    pub history: LinkHistory,
}

/// What the checkpoint knows about a building's link before this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkHistory {
    /// An authenticated heat pump was seen for it: never a link again.
    Connected,
    /// A live link, expiring on this date (it may have expired since).
    Live(String),
    /// A POST was in flight when an earlier run stopped: its outcome is unknown.
    Unknown,
    /// Never had a link (or only failed attempts).
    Missing,
}

/// What became of one input row offered to [`TargetStaging::add`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Staged: its building gets a decision.
    Staged,
    /// A user-only row: a link needs a building.
    NoBuilding,
    /// Its building is not done in the checkpoint.
    NotOnboarded,
    /// An earlier row named the same building.
    Duplicate,
}

/// The buildings of a links run being staged, in one transaction on the temporary table
/// (the checkpoint itself is only read).
pub struct TargetStaging<'a> {
    tx: rusqlite::Transaction<'a>,
    checkpoint: &'a Checkpoint,
}

/// Who a links run may have to ask about heat pumps, counted after staging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeatPumpChecks {
    /// Users with a staged building not yet connected: each costs a heat-pump list when
    /// asked one by one.
    pub users: u64,
    /// Users the checkpoint knows: a lower bound of the organization's user list.
    pub known_users: u64,
}

impl Checkpoint {
    /// Counts the staged users whose heat pumps may need listing (see [`HeatPumpChecks`]).
    pub(crate) fn heat_pump_checks(&self) -> Result<HeatPumpChecks, CheckpointError> {
        let (users, known_users) = self.count_and_known_users(
            "SELECT count(DISTINCT user_id) FROM temp.link_targets t
             WHERE NOT EXISTS (SELECT 1 FROM connections c WHERE c.building_id = t.building_id)",
        )?;
        Ok(HeatPumpChecks { users, known_users })
    }

    /// Starts staging a links run's buildings (replacing an earlier staging).
    pub(crate) fn stage_targets(&self) -> Result<TargetStaging<'_>, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let tx = self.conn.unchecked_transaction().map_err(wrap)?;
        tx.execute_batch(CREATE_TEMP).map_err(wrap)?;
        Ok(TargetStaging {
            tx,
            checkpoint: self,
        })
    }
}

impl TargetStaging<'_> {
    /// Joins one valid row with the checkpoint and stages its building, with the session's
    /// language and price zone.
    pub(crate) fn add(
        &mut self,
        row: &Row,
        language: &str,
        price_zone: &str,
    ) -> Result<Added, CheckpointError> {
        self.insert(row, language, price_zone)
            .map_err(|e| sqlite(&self.checkpoint.path, e))
    }

    /// Commits the staged buildings.
    pub(crate) fn commit(self) -> Result<(), CheckpointError> {
        self.tx
            .commit()
            .map_err(|e| sqlite(&self.checkpoint.path, e))
    }

    fn insert(&self, row: &Row, language: &str, price_zone: &str) -> rusqlite::Result<Added> {
        if row.building_name.is_empty() {
            return Ok(Added::NoBuilding);
        }
        // A row without user_id is its customer's: the user `run` found or created for it.
        let user = match row.user_id {
            Some(id) => Some(id),
            None => customers::known_user(&self.tx, &row.external_user_id)?,
        };
        let property = row.property_id.as_deref();
        let building = match user {
            Some(user) => done_building(&self.tx, user, &row.building_name, property)?,
            None => None,
        };
        let (Some(user), Some(building_id)) = (user, building) else {
            return Ok(Added::NotOnboarded);
        };
        let field = |name: &str| match row.user_fields.get(name) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        // The building is UNIQUE: the first row naming it wins, a later one is a duplicate.
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO temp.link_targets (user_id, line, building_id,
                     building_name, external_user_id, email, first_name, last_name, language,
                     price_zone)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                user.to_string(),
                row.line,
                building_id.to_string(),
                row.building_name,
                row.external_user_id,
                field("email"),
                field("first_name"),
                field("last_name"),
                language,
                price_zone,
            ])?;
        Ok(if inserted == 0 {
            Added::Duplicate
        } else {
            Added::Staged
        })
    }
}

/// The building of a row that `run` finished, found by the row's identity in the
/// checkpoint (see [`row_key`]). A file without `property_id` also finds a building
/// whose row was keyed by `property_id` in an earlier file, when exactly one row of the
/// user has that name (as `run` does when a file drops the column).
fn done_building(
    conn: &Connection,
    user: Uuid,
    building_name: &str,
    property_id: Option<&str>,
) -> rusqlite::Result<Option<Uuid>> {
    let user = user.to_string();
    let key = row_key(building_name, property_id);
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

/// Up to `limit` staged buildings after `after` (user_id, line), in key order, each with
/// what the checkpoint knows about it now.
pub(super) fn target_page(
    conn: &Connection,
    after: Option<&(String, u64)>,
    limit: usize,
) -> rusqlite::Result<Vec<Target>> {
    let (user, line) = after.map_or(("", 0), |(u, l)| (u.as_str(), *l));
    let mut statement = conn.prepare_cached(
        "SELECT user_id, line, building_id, building_name, external_user_id, email,
                first_name, last_name, language, price_zone
         FROM temp.link_targets
         WHERE (user_id, line) > (?1, ?2)
         ORDER BY user_id, line
         LIMIT ?3",
    )?;
    let mut targets: Vec<Target> = statement
        .query_map(params![user, line, limit as i64], staged_target)?
        .collect::<Result<_, _>>()?;
    for target in &mut targets {
        target.history = history(conn, target.building_id)?;
    }
    Ok(targets)
}

fn staged_target(r: &rusqlite::Row<'_>) -> rusqlite::Result<Target> {
    let uuid = |i: usize| -> rusqlite::Result<Uuid> {
        let text: String = r.get(i)?;
        Uuid::parse_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(Target {
        user_id: uuid(0)?,
        line: r.get(1)?,
        building_id: uuid(2)?,
        building_name: r.get(3)?,
        external_user_id: r.get(4)?,
        email: r.get(5)?,
        first_name: r.get(6)?,
        last_name: r.get(7)?,
        language: r.get(8)?,
        price_zone: r.get(9)?,
        history: LinkHistory::Missing,
    })
}

/// The building's link history, summed up.
fn history(conn: &Connection, building: Uuid) -> rusqlite::Result<LinkHistory> {
    let key = building.to_string();
    let connected: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM connections WHERE building_id = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()?;
    if connected.is_some() {
        return Ok(LinkHistory::Connected);
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
        Some((state, expiration)) if state == "live" => {
            LinkHistory::Live(expiration.unwrap_or_default())
        }
        Some(_) => LinkHistory::Unknown,
        None => LinkHistory::Missing,
    })
}

/// A session the server created, as the checkpoint keeps it.
#[derive(Clone, Debug)]
pub struct NewLink {
    /// The session id.
    pub session_id: Uuid,
    /// The Connect link (a capability: only here, `--out` and `export --links`).
    pub link: String,
    /// Last day the link works (`YYYY-MM-DD`).
    pub expiration_date: String,
}

/// How a session POST failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCreated {
    /// Refused: no session exists.
    Failed,
    /// The outcome is unknown (a session may exist; it expires by itself).
    Unknown,
}

/// Marks a leftover `creating` row of the building `unknown` and inserts a new `creating`
/// row; returns its id. Runs inside the writer's transaction.
pub(super) fn intent(conn: &Connection, run_id: i64, target: &Target) -> rusqlite::Result<i64> {
    let (user, building) = (target.user_id.to_string(), target.building_id.to_string());
    let at = now();
    conn.prepare_cached(
        "UPDATE links SET state = 'unknown', updated_at = ?2,
         error = 'a run stopped while the session POST was in flight; a new link was created'
         WHERE building_id = ?1 AND state = 'creating'",
    )?
    .execute(params![building, at])?;
    conn.prepare_cached(
        "INSERT INTO links (user_id, building_id, building_name, state, run_id, created_at,
                            updated_at)
         VALUES (?1, ?2, ?3, 'creating', ?4, ?5, ?5)",
    )?
    .execute(params![user, building, target.building_name, run_id, at])?;
    Ok(conn.last_insert_rowid())
}

/// Retires the building's live link and makes row `id` the live one (in the writer's
/// transaction, so both or neither).
pub(super) fn created(
    conn: &Connection,
    id: i64,
    building: Uuid,
    link: &NewLink,
) -> rusqlite::Result<()> {
    let at = now();
    conn.prepare_cached(
        "UPDATE links SET state = 'replaced', updated_at = ?2
         WHERE building_id = ?1 AND state = 'live'",
    )?
    .execute(params![building.to_string(), at])?;
    conn.prepare_cached(
        "UPDATE links SET state = 'live', session_id = ?2, link = ?3, expiration_date = ?4,
         updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![
        id,
        link.session_id.to_string(),
        link.link,
        link.expiration_date,
        at
    ])
    .map(drop)
}

/// Records a session POST that failed (`failed`) or whose outcome is unknown (`unknown`).
pub(super) fn not_created(
    conn: &Connection,
    id: i64,
    how: NotCreated,
    status: Option<u16>,
    error: &str,
) -> rusqlite::Result<()> {
    let state = match how {
        NotCreated::Failed => "failed",
        NotCreated::Unknown => "unknown",
    };
    conn.prepare_cached(
        "UPDATE links SET state = ?2, http_status = ?3, error = ?4, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![id, state, status, error, now()])
    .map(drop)
}

/// Records that an authenticated heat pump belongs to the target's building.
pub(super) fn connected(
    conn: &Connection,
    target: &Target,
    heat_pump: Uuid,
    assigned: bool,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO connections
         (building_id, user_id, heat_pump_id, assigned, connected_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        target.building_id.to_string(),
        target.user_id.to_string(),
        heat_pump.to_string(),
        assigned,
        now()
    ])
    .map(drop)
}

/// Columns of `export --links`. The mail-merge columns come last, so scripts that read the
/// earlier columns by position keep working; they are the user's fields last applied by
/// `run` (`users.payload`), empty when its input had none.
pub const LIVE_LINK_HEADER: [&str; 11] = [
    "user_id",
    "external_user_id",
    "building_name",
    "building_id",
    "session_id",
    "link",
    "expires_on",
    "created_at",
    "email",
    "first_name",
    "last_name",
];

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

impl Checkpoint {
    /// Calls `each` with every live link that has not expired on `today` (oldest first), as
    /// cells in [`LIVE_LINK_HEADER`] order. Buildings that connected since are left out:
    /// their link has done its job.
    pub(crate) fn for_each_live_link(
        &self,
        today: &str,
        mut each: impl FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        self.live_links(today, &mut each)
            .map_err(|e| sqlite(&self.path, e))
    }

    fn live_links(&self, today: &str, each: &mut dyn FnMut(Vec<String>)) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare(
            // The row is found by its building, not its name: two properties of one user
            // may share a name (a join on the name printed each of their links twice).
            "SELECT l.user_id,
                    coalesce((SELECT r.external_user_id FROM rows r
                              WHERE r.user_id = l.user_id AND r.building_id = l.building_id
                              LIMIT 1), ''),
                    l.building_name, l.building_id,
                    l.session_id, l.link, l.expiration_date, l.created_at,
                    u.payload ->> '$.email', u.payload ->> '$.first_name',
                    u.payload ->> '$.last_name'
             FROM links l LEFT JOIN users u ON u.user_id = l.user_id
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
            for i in 8..11 {
                cells.push(row.get::<_, Option<String>>(i)?.unwrap_or_default());
            }
            each(cells);
        }
        Ok(())
    }

    /// Counts the funnel; `None` for a checkpoint `links` never worked on.
    pub(crate) fn funnel(&self, today: &str) -> Result<Option<Funnel>, CheckpointError> {
        funnel(&self.conn, today).map_err(|e| sqlite(&self.path, e))
    }
}

fn funnel(conn: &Connection, today: &str) -> rusqlite::Result<Option<Funnel>> {
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
