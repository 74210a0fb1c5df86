//! Customers keyed by their CRM id (`customers`, schema 5): which Podero user each CRM id
//! is, and the intent before a user is created.
//!
//! Staging: a row without user_id is staged under its customer's Podero user when the
//! checkpoint knows it (state `known`), else under the owner key `ext:<CRM id>` (a *lookup*
//! row: the run finds the user by CRM id, or creates it, before anything else). The
//! cross-row checks of customers run before any call: one CRM id with two Podero users,
//! two CRM ids with one e-mail; rows of one CRM id that leave user_id empty join the rows
//! that name it ([`merge_owners`]).
//!
//! The run: [`intent`] commits `creating` before the user POST (the worker waits for it);
//! [`known`] records the user once found, created or adopted; [`not_known`] records why
//! not (`unknown` after an unknown outcome, `unresolved`, `failed`). Every state but
//! `known` is looked up by CRM id before anything is sent again, so none can lead to a
//! second user. [`priors`] re-reads a resolved customer's rows under its real user id.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

pub use super::outcome::Resolution;
use super::row::{EXT_PREFIX, PlannedRow, Reject, owner_key, prior};
use super::{Checkpoint, CheckpointError, now, sqlite};
use crate::input::Row;

/// Why a customer is not known after this run's attempt (`customers.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotKnown {
    /// The create's outcome was never learnt.
    Unknown,
    /// Not found and not created (no `--create-users`, e-mail taken...).
    Failed,
    /// The lookup kept failing (several users with the CRM id?): a human must look.
    Unresolved,
}

impl NotKnown {
    fn as_str(self) -> &'static str {
        match self {
            NotKnown::Unknown => "unknown",
            NotKnown::Failed => "failed",
            NotKnown::Unresolved => "unresolved",
        }
    }
}

/// The customers of a staged run the checkpoint has no record of, counted before any call:
/// what decides whether one user list replaces their lookups (`run::listed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewCustomers {
    /// CRM ids of lookup rows with work and no `customers` record: each costs a lookup
    /// when asked one by one.
    pub customers: u64,
    /// Users the checkpoint knows: a lower bound of the organization's user list.
    pub known_users: u64,
}

impl Checkpoint {
    /// Counts the staged run's new customers (see [`NewCustomers`]).
    pub(crate) fn new_customers(&self) -> Result<NewCustomers, CheckpointError> {
        let (customers, known_users) = self.count_and_known_users(
            "SELECT count(DISTINCT i.external_user_id) FROM temp.input i
             WHERE i.lookup AND i.skip IS NULL AND NOT EXISTS
                 (SELECT 1 FROM customers c WHERE c.external_user_id = i.external_user_id)",
        )?;
        Ok(NewCustomers {
            customers,
            known_users,
        })
    }

    /// The count `sql` answers, and the users the checkpoint knows (a lower bound of the
    /// organization's user list): what a choice between one list and a request per
    /// customer is made from (`api::Way::choose`).
    pub(super) fn count_and_known_users(&self, sql: &str) -> Result<(u64, u64), CheckpointError> {
        let count = |sql: &str| self.conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        let counted = count(sql).and_then(|n| Ok((n, count("SELECT count(*) FROM users")?)));
        let (n, known) = counted.map_err(|e| sqlite(&self.path, e))?;
        Ok((n as u64, known as u64))
    }
}

/// The owner key a row is staged under: its user_id; else the Podero user the checkpoint
/// knows for its CRM id; else `ext:<CRM id>`.
pub(crate) fn owner(tx: &Transaction<'_>, row: &Row) -> rusqlite::Result<String> {
    if let Some(id) = row.user_id {
        return Ok(id.to_string());
    }
    let known = known_user(tx, &row.external_user_id)?;
    Ok(owner_key(known, &row.external_user_id))
}

/// The Podero user the checkpoint knows for CRM id `crm`, if any.
pub(crate) fn known_user(conn: &Connection, crm: &str) -> rusqlite::Result<Option<Uuid>> {
    let known: Option<String> = conn
        .prepare_cached(
            "SELECT user_id FROM main.customers
             WHERE external_user_id = ?1 AND state = 'known' AND user_id IS NOT NULL",
        )?
        .query_row([crm], |r| r.get(0))
        .optional()?;
    Ok(known.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// With `--create-users`, a row without user_id may create its customer: Podero needs an
/// e-mail address for a new user (its format is checked with the cell).
pub(crate) fn needs_email(row: &Row, create_users: bool) -> Option<Reject> {
    if !create_users || row.user_id.is_some() || row.user_fields.contains_key("email") {
        return None;
    }
    Some(Reject {
        line: row.line,
        kind: "invalid".into(),
        user_id: None,
        building_name: Some(row.building_name.clone()),
        external_user_id: Some(row.external_user_id.clone()),
        column: Some("email".into()),
        value: None,
        reason: "is empty: with --create-users a row without user_id may create its customer \
                 in Podero, which needs an e-mail address; fill it in (or fill in user_id if \
                 the customer is a Podero user already)"
            .into(),
    })
}

/// The customer conflicts, before any call; every line involved is rejected:
/// - one CRM id with two Podero users (two user_ids in the file, or a user_id other than
///   the one the checkpoint knows for the CRM id);
/// - two CRM ids with one e-mail address (compared case-insensitively: e-mail is unique
///   in a Podero organization, so one of them could never be created or updated).
pub(crate) fn reject_conflicts(tx: &Transaction<'_>, run: i64) -> rusqlite::Result<u64> {
    let two_users: Vec<(String, String)> = tx
        .prepare(
            "SELECT external_user_id, group_concat(line || ': ' || user_id, ', ')
             FROM (SELECT external_user_id, line, user_id FROM temp.input
                   WHERE NOT lookup AND external_user_id IN (
                       SELECT external_user_id FROM temp.input WHERE NOT lookup
                       GROUP BY external_user_id HAVING count(DISTINCT user_id) > 1)
                   ORDER BY line)
             GROUP BY external_user_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut rejected = 0;
    for (crm, lines) in two_users {
        let reason = format!(
            "CRM id {crm} belongs to different Podero users on its lines (line: user_id = \
             {lines}); one CRM id is one customer: correct the user_id or the CRM id"
        );
        rejected += reject_where(tx, run, "external_user_id = ?1", &crm, "user_id", &reason)?;
    }
    let shared: Vec<(String, String)> = tx
        .prepare(
            "SELECT lower(json_extract(user_payload, '$.email')) AS email,
                    group_concat(DISTINCT external_user_id)
             FROM temp.input WHERE email IS NOT NULL
             GROUP BY email HAVING count(DISTINCT external_user_id) > 1",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (email, crms) in shared {
        let reason = format!(
            "e-mail {email} is given to several CRM ids ({crms}); an e-mail address belongs to \
             one Podero user: correct the e-mail or merge the customers"
        );
        let filter = "lower(json_extract(user_payload, '$.email')) = ?1";
        rejected += reject_where(tx, run, filter, &email, "email", &reason)?;
    }
    Ok(rejected)
}

/// Rejects (as `conflict`) and unstages every staged row matching `filter` (`?1` = `value`).
fn reject_where(
    tx: &Transaction<'_>,
    run: i64,
    filter: &str,
    value: &str,
    column: &str,
    reason: &str,
) -> rusqlite::Result<u64> {
    let rejected = tx.execute(
        &format!(
            "INSERT OR REPLACE INTO rejects
             (line, run_id, kind, user_id, building_name, external_user_id, column_name, value,
              reason)
             SELECT line, ?2, 'conflict', CASE WHEN given THEN user_id END, building_name,
                    external_user_id, ?3, NULL, ?4
             FROM temp.input WHERE {filter}"
        ),
        params![value, run, column, reason],
    )?;
    tx.execute(&format!("DELETE FROM temp.input WHERE {filter}"), [value])?;
    Ok(rejected as u64)
}

/// Lookup rows whose CRM id other rows of the file give a user_id (exactly one, after
/// [`reject_conflicts`]) are that user's rows: a mixed file needs no lookup for them. A row
/// that then repeats one of that user's rows is a duplicate. Returns the duplicates.
pub(crate) fn merge_owners(tx: &Transaction<'_>, run: i64) -> rusqlite::Result<u64> {
    let named = "(SELECT j.user_id FROM temp.input j
                  WHERE j.external_user_id = input.external_user_id AND NOT j.lookup LIMIT 1)";
    tx.execute(
        &format!(
            "UPDATE OR IGNORE temp.input SET user_id = {named}, match_key = row_key, lookup = 0
             WHERE lookup AND {named} IS NOT NULL"
        ),
        [],
    )?;
    let duplicates = tx.execute(
        &format!(
            "INSERT OR REPLACE INTO rejects
             (line, run_id, kind, user_id, building_name, external_user_id, column_name, value,
              reason)
             SELECT line, ?1, 'duplicate', NULL, building_name, external_user_id, NULL, NULL,
                    'repeats a line of the same customer (CRM id) and building that names its \
                     user_id: processed once; remove one of the lines'
             FROM temp.input WHERE lookup AND {named} IS NOT NULL"
        ),
        [run],
    )?;
    tx.execute(
        &format!("DELETE FROM temp.input WHERE lookup AND {named} IS NOT NULL"),
        [],
    )?;
    Ok(duplicates as u64)
}

/// `creating`: committed before the user POST for `crm`.
pub(crate) fn intent(conn: &Connection, crm: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO customers (external_user_id, state, updated_at) VALUES (?1, 'creating', ?2)
         ON CONFLICT (external_user_id) DO UPDATE SET
             state = 'creating', user_id = NULL, how = NULL, http_status = NULL, error = NULL,
             updated_at = excluded.updated_at",
    )?
    .execute(params![crm, now()])
    .map(drop)
}

/// The customer `crm` is Podero user `user` (found, created or adopted). This run's
/// staged rows of the customer learn the id too (`--report`, failure groups).
pub(crate) fn known(
    conn: &Connection,
    crm: &str,
    user: Uuid,
    how: Resolution,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO customers (external_user_id, user_id, state, how, updated_at)
         VALUES (?1, ?2, 'known', ?3, ?4)
         ON CONFLICT (external_user_id) DO UPDATE SET
             user_id = excluded.user_id, state = 'known', how = excluded.how,
             http_status = NULL, error = NULL, updated_at = excluded.updated_at",
    )?
    .execute(params![crm, user.to_string(), how.as_str(), now()])?;
    conn.prepare_cached("UPDATE temp.input SET resolved_user_id = ?2 WHERE user_id = ?1")?
        .execute(params![owner_key(None, crm), user.to_string()])
        .map(drop)
}

/// The customer `crm` is not known after this attempt, and why.
pub(crate) fn not_known(
    conn: &Connection,
    crm: &str,
    state: NotKnown,
    status: Option<u16>,
    error: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO customers (external_user_id, state, http_status, error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (external_user_id) DO UPDATE SET
             state = excluded.state, http_status = excluded.http_status,
             error = excluded.error, updated_at = excluded.updated_at",
    )?
    .execute(params![crm, state.as_str(), status, error, now()])
    .map(drop)
}

/// A resolved customer's rows, their history read under the real user id: a row the
/// checkpoint knows under `user` (from a file that named the user_id, say) continues it,
/// so nothing is created twice. A property-keyed row without such a row may continue one
/// of the same building name (as staging does for any user).
pub(crate) fn priors(
    conn: &Connection,
    user: Uuid,
    rows: Vec<PlannedRow>,
) -> rusqlite::Result<Vec<PlannedRow>> {
    let id = user.to_string();
    let applied: Option<String> = conn
        .prepare_cached("SELECT payload FROM users WHERE user_id = ?1")?
        .query_row([&id], |r| r.get(0))
        .optional()?;
    let mut resolved = Vec::with_capacity(rows.len());
    for mut row in rows {
        row.user_id = user;
        row.user_applied = applied.clone();
        row.match_key = row.row_key.clone();
        row.prior = prior(conn, &id, &row.row_key)?;
        if row.prior.is_none() && row.property_id.is_some() {
            let by_name = format!("name:{}", row.building_name);
            if let Some(prior) = prior(conn, &id, &by_name)? {
                row.match_key = by_name;
                row.prior = Some(prior);
            }
        }
        resolved.push(row);
    }
    Ok(resolved)
}

/// Before a resolved customer's row is written under its user: its row kept under the
/// owner key (a failure of an earlier run) moves to the user, or goes if the user has the
/// row already.
pub(crate) fn move_to_user(
    conn: &Connection,
    crm: &str,
    user: Uuid,
    row_key: &str,
) -> rusqlite::Result<()> {
    let owner = format!("{EXT_PREFIX}{crm}");
    conn.prepare_cached(
        "UPDATE OR IGNORE rows SET user_id = ?2 WHERE user_id = ?1 AND row_key = ?3",
    )?
    .execute(params![owner, user.to_string(), row_key])?;
    conn.prepare_cached("DELETE FROM rows WHERE user_id = ?1 AND row_key = ?2")?
        .execute(params![owner, row_key])
        .map(drop)
}
