//! Staging: this run's input, validated, de-duplicated and joined with history.
//!
//! The CSV is read once into a temporary table (on disk, so memory stays flat for any
//! file size). Cross-row checks need the whole file before anything is sent: a user with
//! two different external ids must fail on *both* lines, and `--strict` must send nothing
//! if any row is invalid. The plan is then paged out of SQLite in key order, so all rows
//! of one user arrive together and the user is updated once.
//!
//! Identity: a row is (user_id, row_key) (see `row_key`). `match_key` is the
//! checkpoint row it continues: its own key, except on the first run of a file with
//! `property_id` over rows keyed by name, where it is the `name:` key of the same building
//! name (`match_property_keys`); a real run then attaches the property keys
//! (`Checkpoint::attach_property_keys`), creating nothing.
//!
//! The command says what each row is sent as and which known rows cost nothing, through a
//! [`Planner`]: staging stores bodies and decisions, it builds and decides neither.
//!
//! One pass: a row whose own key is in the checkpoint is decided while it is staged
//! ([`Planner::skip`], the prior looked up on the primary key). A skip is recorded
//! in `input.skip` and counted in [`Staged::skipped`], and the plan pages (`plan_page`,
//! through the partial index `input_work`) contain only the rows left undecided, so a
//! done re-run pages nothing. Rows without a prior under their own key stay undecided:
//! `match_property_keys` may still give them one, and the pager decides them. Those are
//! the only rows it re-keys, so a staged decision never goes stale before the run.

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::customers;
use super::outcome::{Skip, Tally};
use super::row::{EXT_PREFIX, PlannedRow, Prior, Reject, State, fingerprint, prior, row_key};
use super::{Checkpoint, CheckpointError, sqlite};
use crate::input::{Invalid, Record, Row};

/// What the command decides while its input is staged.
pub trait Planner {
    /// The bodies a valid row is sent as: the user PUT and the building POST (empty for a
    /// user-only row).
    fn payloads(&self, row: &Row) -> (String, String);
    /// Whether a row the checkpoint knows (its prior filled in) costs nothing in this run.
    fn skip(&self, row: &PlannedRow) -> Option<Skip>;
    /// `--create-users`: a row without user_id may create its customer, so it needs an e-mail.
    fn create_users(&self) -> bool;
}

/// What staging found.
#[derive(Clone, Debug, Default)]
pub struct Staged {
    /// Data rows read.
    pub rows_read: u64,
    /// Distinct valid rows to plan.
    pub valid: u64,
    /// Rows rejected by validation (per row, or as a conflict).
    pub invalid: u64,
    /// Rows repeating an earlier (user_id, building_name or property_id): processed once.
    pub duplicates: u64,
    /// Valid rows decided while staging to cost nothing (`skipped_*` counts only): they
    /// never appear in the plan pages.
    pub skipped: Tally,
    /// Rows matched to a checkpoint row under the other kind of key (`match_property_keys`);
    /// when 0, `Checkpoint::attach_property_keys` has nothing to do and is not run.
    pub rematched: usize,
    /// Rows of the checkpoint this input no longer has (`Checkpoint::record_vanished`).
    pub vanished: u64,
    /// Rows the checkpoint held before this run (the `--max-vanished` share's base).
    pub known: u64,
}

const CREATE_TEMP: &str = "
    DROP TABLE IF EXISTS temp.input;
    CREATE TEMP TABLE input (
        user_id TEXT NOT NULL,
        row_key TEXT NOT NULL,
        match_key TEXT NOT NULL,
        lookup INTEGER NOT NULL DEFAULT 0,
        resolved_user_id TEXT,
        given INTEGER NOT NULL DEFAULT 0,
        building_name TEXT NOT NULL,
        property_id TEXT,
        line INTEGER NOT NULL,
        external_user_id TEXT NOT NULL,
        user_payload TEXT NOT NULL,
        building_payload TEXT NOT NULL,
        skip TEXT,
        -- Later lines of this row with different fields (rejected with it).
        disagrees TEXT,
        PRIMARY KEY (user_id, row_key)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX temp.input_by_match ON input (user_id, match_key);
    CREATE INDEX temp.input_work ON input (user_id, row_key) WHERE skip IS NULL;
    CREATE INDEX temp.input_by_crm ON input (external_user_id);
    CREATE INDEX temp.input_by_resolved ON input (resolved_user_id, match_key)
        WHERE resolved_user_id IS NOT NULL;
    DROP TABLE IF EXISTS temp.outcomes;
    CREATE TEMP TABLE outcomes (
        user_id TEXT NOT NULL,
        row_key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        PRIMARY KEY (user_id, row_key)
    ) WITHOUT ROWID;";

impl Checkpoint {
    /// Reads every record into the staging table and `rejects`, in one transaction, with
    /// the bodies and skips `planner` decides (see the module header).
    pub fn stage<E>(
        &mut self,
        run: i64,
        records: impl Iterator<Item = Result<Record, E>>,
        planner: impl Planner,
    ) -> Result<Result<Staged, E>, CheckpointError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sqlite(&path, e))?;
        tx.execute_batch(CREATE_TEMP)
            .map_err(|e| sqlite(&path, e))?;
        tx.execute("DELETE FROM rejects", [])
            .map_err(|e| sqlite(&path, e))?;
        let mut staged = Staged::default();
        for record in records {
            let record = match record {
                Ok(record) => record,
                Err(fatal) => return Ok(Err(fatal)),
            };
            staged.rows_read += 1;
            match record {
                Record::Valid(row) => stage_row(&tx, run, &row, &planner, &mut staged),
                Record::Invalid(invalid) => {
                    staged.invalid += 1;
                    insert_reject(&tx, run, &invalid_reject(invalid))
                }
            }
            .map_err(|e| sqlite(&path, e))?;
        }
        staged.invalid += reject_disagreeing(&tx, run).map_err(|e| sqlite(&path, e))?;
        staged.invalid += customers::reject_conflicts(&tx, run).map_err(|e| sqlite(&path, e))?;
        staged.duplicates += customers::merge_owners(&tx, run).map_err(|e| sqlite(&path, e))?;
        staged.invalid += reject_conflicts(&tx, run).map_err(|e| sqlite(&path, e))?;
        staged.rematched = match_property_keys(&tx).map_err(|e| sqlite(&path, e))?;
        staged.valid = tx
            .query_row("SELECT count(*) FROM temp.input", [], |r| r.get(0))
            .map_err(|e| sqlite(&path, e))?;
        staged.skipped = count_skips(&tx).map_err(|e| sqlite(&path, e))?;
        tx.commit().map_err(|e| sqlite(&path, e))?;
        Ok(Ok(staged))
    }

    /// A real run's first step after staging: checkpoint rows matched by building name to a
    /// row of this input under another key take that key (first run with `property_id`: the
    /// property key, so a later rename finds them). Returns how many. Not done by a dry run,
    /// which changes nothing.
    pub(crate) fn attach_property_keys(&self) -> Result<usize, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let attached = self
            .conn
            .execute(
                "UPDATE main.rows SET row_key = i.row_key, property_id = i.property_id
                 FROM temp.input i
                 WHERE i.user_id = rows.user_id AND i.match_key = rows.row_key
                   AND i.match_key != i.row_key",
                [],
            )
            .map_err(wrap)?;
        self.conn
            .execute(
                "UPDATE temp.input SET match_key = row_key WHERE match_key != row_key",
                [],
            )
            .map_err(wrap)?;
        Ok(attached)
    }

    /// Staged rows the checkpoint has no row for yet (new customers' rows included): what
    /// `--only-failed` leaves and says so. One pass over the input: asked for by that run only.
    pub(crate) fn new_rows(&self) -> Result<u64, CheckpointError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM temp.input i
                 WHERE NOT EXISTS (SELECT 1 FROM main.rows r
                                   WHERE r.user_id = i.user_id AND r.row_key = i.match_key)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Up to `limit` planned rows after `after` (user_id, row_key), in key order.
    pub fn plan_page(
        &self,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<PlannedRow>, CheckpointError> {
        let (user, name) = after.map_or(("", ""), |(u, n)| (u.as_str(), n.as_str()));
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT i.user_id, i.building_name, i.line, i.external_user_id, i.user_payload,
                        i.building_payload, r.state, r.building_id, r.permanent, r.fingerprint,
                        u.payload, i.property_id, i.row_key, i.match_key, r.building_payload,
                        i.lookup, i.lookup AND NOT EXISTS
                            (SELECT 1 FROM customers c
                             WHERE c.external_user_id = i.external_user_id)
                 FROM temp.input i
                 LEFT JOIN rows r ON r.user_id = i.user_id AND r.row_key = i.match_key
                 LEFT JOIN users u ON u.user_id = i.user_id
                 WHERE i.skip IS NULL AND (i.user_id, i.row_key) > (?1, ?2)
                 ORDER BY i.user_id, i.row_key
                 LIMIT ?3",
            )
            .map_err(|e| sqlite(&self.path, e))?;
        let rows = statement
            .query_map(params![user, name, limit as i64], planned_row)
            .map_err(|e| sqlite(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sqlite(&self.path, e))
    }
}

fn planned_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PlannedRow> {
    let user_id: String = r.get(0)?;
    let user_payload: String = r.get(4)?;
    let building_payload: String = r.get(5)?;
    let state: Option<String> = r.get(6)?;
    let prior = match state {
        Some(state) => Some(Prior {
            state: State::parse(&state).unwrap_or(State::Pending),
            building_id: r
                .get::<_, Option<String>>(7)?
                .and_then(|id| Uuid::parse_str(&id).ok()),
            permanent: r.get::<_, Option<bool>>(8)?.unwrap_or(false),
            fingerprint: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
            building_payload: r.get(14)?,
        }),
        None => None,
    };
    let lookup: bool = r.get(15)?;
    Ok(PlannedRow {
        line: r.get(2)?,
        // A lookup row's owner is `ext:<CRM id>`: its user is not known yet (nil).
        user_id: Uuid::parse_str(&user_id).unwrap_or_default(),
        lookup,
        new_customer: r.get(16)?,
        building_name: r.get(1)?,
        property_id: r.get(11)?,
        row_key: r.get(12)?,
        match_key: r.get(13)?,
        external_user_id: r.get(3)?,
        fingerprint: fingerprint(&user_payload, &building_payload),
        user_payload,
        building_payload,
        prior,
        user_applied: r.get(10)?,
    })
}

fn stage_row(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    row: &Row,
    planner: &impl Planner,
    staged: &mut Staged,
) -> rusqlite::Result<()> {
    if let Some(reject) = customers::needs_email(row, planner.create_users()) {
        staged.invalid += 1;
        return insert_reject(tx, run, &reject);
    }
    let owner = customers::owner(tx, row)?;
    let lookup = owner.starts_with(EXT_PREFIX);
    let user_id = owner;
    let key = row_key(&row.building_name, row.property_id.as_deref());
    let (user_payload, building_payload) = planner.payloads(row);
    let planned = PlannedRow {
        line: row.line,
        user_id: Uuid::parse_str(&user_id).unwrap_or_default(),
        lookup,
        new_customer: false,
        building_name: row.building_name.clone(),
        property_id: row.property_id.clone(),
        match_key: key.clone(),
        row_key: key,
        external_user_id: row.external_user_id.clone(),
        fingerprint: 0,
        user_payload,
        building_payload,
        prior: None,
        user_applied: None,
    };
    let (planned, skip) = staged_skip(tx, &user_id, planned, planner)?;
    let key = planned.row_key;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO temp.input
             (user_id, row_key, match_key, building_name, property_id, line, external_user_id,
              user_payload, building_payload, skip, lookup, given)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            user_id,
            key,
            row.building_name,
            row.property_id,
            row.line,
            row.external_user_id,
            planned.user_payload,
            planned.building_payload,
            skip,
            lookup,
            row.user_id.is_some(),
        ])?;
    if inserted == 1 {
        return Ok(());
    }
    let staged_as = (user_id.as_str(), key.as_str());
    let payloads = (
        planned.user_payload.as_str(),
        planned.building_payload.as_str(),
    );
    repeated(tx, run, row, staged_as, payloads, staged)
}

/// A line whose row the file already has: a `duplicate` when it says the same (processed
/// once), else a `conflict` with that row, rejected with it (see [`reject_disagreeing`]):
/// which line is right is not known, and the first one used to win by line order alone.
/// Once a row is in conflict, every further line of it is too, even one equal to the first.
fn repeated(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    row: &Row,
    (user_id, key): (&str, &str),
    (user_payload, building_payload): (&str, &str),
    staged: &mut Staged,
) -> rusqlite::Result<()> {
    let (first, same_fields): (u64, bool) = tx
        .prepare_cached(
            "SELECT line, disagrees IS NULL AND user_payload = ?3 AND building_payload = ?4
                          AND building_name = ?5 AND external_user_id = ?6
             FROM temp.input WHERE user_id = ?1 AND row_key = ?2",
        )?
        .query_row(
            params![
                user_id,
                key,
                user_payload,
                building_payload,
                row.building_name,
                row.external_user_id
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    let same = same_row(
        row.user_id.is_some(),
        row.property_id.is_some(),
        &row.building_name,
    );
    let (kind, reason) = if same_fields {
        staged.duplicates += 1;
        let reason =
            format!("repeats line {first} ({same}): processed once; remove one of the lines");
        ("duplicate", reason)
    } else {
        staged.invalid += 1;
        tx.prepare_cached(
            "UPDATE temp.input SET disagrees = coalesce(disagrees || ', ', '') || ?3
             WHERE user_id = ?1 AND row_key = ?2",
        )?
        .execute(params![user_id, key, row.line])?;
        ("conflict", disagreeing(first, &row.line.to_string(), &same))
    };
    let reject = Reject {
        line: row.line,
        kind: kind.into(),
        user_id: row.user_id.map(|id| id.to_string()),
        building_name: Some(row.building_name.clone()),
        external_user_id: Some(row.external_user_id.clone()),
        column: None,
        value: None,
        reason,
    };
    insert_reject(tx, run, &reject)
}

/// What makes two lines one row, for a message.
fn same_row(given: bool, keyed_by_property: bool, building_name: &str) -> String {
    let who = if given { "user_id" } else { "customer" };
    match (keyed_by_property, building_name.is_empty()) {
        (_, true) => format!("same {who}, no building: one user-only line per user"),
        (true, false) => format!("same {who} and property_id"),
        (false, false) => format!("same {who} and building_name"),
    }
}

/// The reason given to every line of a row the file gives twice with different fields.
fn disagreeing(first: u64, others: &str, same: &str) -> String {
    format!(
        "lines {first}, {others} are one row ({same}) with different fields: which is right \
         is not known, so none is sent; make them agree or keep one"
    )
}

/// Rejects (as `conflict`) and unstages the first line of every row that later lines
/// repeat with different fields (they are rejected as they are read). Returns how many.
fn reject_disagreeing(tx: &rusqlite::Transaction<'_>, run: i64) -> rusqlite::Result<u64> {
    let rejects: Vec<Reject> = tx
        .prepare(
            "SELECT line, disagrees, user_id, building_name, property_id IS NOT NULL,
                    external_user_id, given
             FROM temp.input WHERE disagrees IS NOT NULL",
        )?
        .query_map([], |r| {
            let (line, building_name, given) = (r.get(0)?, r.get::<_, String>(3)?, r.get(6)?);
            let same = same_row(given, r.get(4)?, &building_name);
            Ok(Reject {
                line,
                kind: "conflict".into(),
                user_id: if given { Some(r.get(2)?) } else { None },
                building_name: Some(building_name),
                external_user_id: Some(r.get(5)?),
                column: None,
                value: None,
                reason: disagreeing(line, &r.get::<_, String>(1)?, &same),
            })
        })?
        .collect::<Result<_, _>>()?;
    for reject in &rejects {
        insert_reject(tx, run, reject)?;
    }
    tx.execute("DELETE FROM temp.input WHERE disagrees IS NOT NULL", [])?;
    Ok(rejects.len() as u64)
}

fn invalid_reject(invalid: Invalid) -> Reject {
    Reject {
        line: invalid.line,
        kind: "invalid".into(),
        user_id: invalid.raw_user_id,
        building_name: invalid.raw_building_name,
        external_user_id: invalid.raw_external_user_id,
        column: invalid.column,
        value: invalid.value,
        reason: invalid.reason,
    }
}

fn insert_reject(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    reject: &Reject,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO rejects
         (line, run_id, kind, user_id, building_name, external_user_id, column_name, value, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        reject.line,
        run,
        reject.kind,
        reject.user_id,
        reject.building_name,
        reject.external_user_id,
        reject.column,
        reject.value,
        reject.reason
    ])?;
    Ok(())
}

/// A user whose lines disagree on the user fields cannot be updated consistently: every
/// line of that user is rejected, naming the lines that disagree.
fn reject_conflicts(tx: &rusqlite::Transaction<'_>, run: i64) -> rusqlite::Result<u64> {
    let conflicts: Vec<(String, String)> = tx
        .prepare(
            "SELECT user_id, group_concat(line || ': ' || external_user_id, ', ')
             FROM (SELECT user_id, line, external_user_id FROM temp.input
                   WHERE user_id IN (SELECT user_id FROM temp.input GROUP BY user_id
                                     HAVING count(DISTINCT user_payload) > 1)
                   ORDER BY user_id, line)
             GROUP BY user_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut rejected = 0;
    for (user_id, lines) in conflicts {
        let reason = match user_id.strip_prefix(EXT_PREFIX) {
            Some(crm) => format!(
                "the customer with CRM id {crm} has different user fields (e-mail, names, \
                 address) on its lines ({lines}); make them agree"
            ),
            None => format!(
                "user {user_id} has different external_user_id or user fields on its lines \
                 (line: external_user_id = {lines}); make them agree"
            ),
        };
        rejected += tx.execute(
            "INSERT OR REPLACE INTO rejects
             (line, run_id, kind, user_id, building_name, external_user_id, column_name, value,
              reason)
             SELECT line, ?2, 'conflict', CASE WHEN given THEN user_id END, building_name,
                    external_user_id,
                    'external_user_id', external_user_id, ?3
             FROM temp.input WHERE user_id = ?1",
            params![user_id, run, reason],
        )? as u64;
        tx.execute("DELETE FROM temp.input WHERE user_id = ?1", [&user_id])?;
    }
    Ok(rejected)
}

/// A row whose key is not in the checkpoint may continue a row of the same user and
/// building name kept under the other kind of key, so switching a file to (or away from)
/// `property_id` creates nothing:
/// - first run with `property_id` over rows keyed by name: matched when the name is unique
///   among the user's lines (two properties of one name cannot tell which of them the old
///   row was; both are then new rows);
/// - a file without `property_id` over rows keyed by property: matched when exactly one
///   such row of the user has that name.
///
/// Set-based: one pass over the staged rows, no query per row in the plan.
fn match_property_keys(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<usize> {
    let unkeyed = tx.execute(
        "UPDATE temp.input SET match_key = (
             SELECT r.row_key FROM main.rows r
             WHERE r.user_id = input.user_id AND r.building_name = input.building_name
               AND r.row_key LIKE 'property:%')
         WHERE EXISTS (SELECT 1 FROM main.rows WHERE property_id IS NOT NULL)
           AND property_id IS NULL AND building_name != ''
           AND NOT EXISTS (SELECT 1 FROM main.rows r
                           WHERE r.user_id = input.user_id AND r.row_key = input.row_key)
           AND (SELECT count(*) FROM main.rows r
                WHERE r.user_id = input.user_id AND r.building_name = input.building_name
                  AND r.row_key LIKE 'property:%') = 1",
        [],
    )?;
    let keyed = tx.execute(
        "UPDATE temp.input SET match_key = 'name:' || building_name
         WHERE property_id IS NOT NULL AND building_name != ''
           AND NOT EXISTS (SELECT 1 FROM main.rows r
                           WHERE r.user_id = input.user_id AND r.row_key = input.row_key)
           AND EXISTS (SELECT 1 FROM main.rows r
                       WHERE r.user_id = input.user_id
                         AND r.row_key = 'name:' || input.building_name)
           AND (SELECT count(*) FROM temp.input j
                WHERE j.user_id = input.user_id AND j.building_name = input.building_name) = 1",
        [],
    )?;
    Ok(unkeyed + keyed)
}

/// The staged decision of a row the checkpoint knows under its own key: the name of the
/// skip (a [`Tally`] field) when the planner says it costs nothing, else `None` (the
/// pager decides it from the plan page). Returns the row back, its fingerprint set.
fn staged_skip(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    mut row: PlannedRow,
    planner: &impl Planner,
) -> rusqlite::Result<(PlannedRow, Option<&'static str>)> {
    row.fingerprint = fingerprint(&row.user_payload, &row.building_payload);
    row.prior = prior(tx, user_id, &row.row_key)?;
    if row.prior.is_none() {
        return Ok((row, None));
    }
    row.user_applied = tx
        .prepare_cached("SELECT payload FROM main.users WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    let skip = planner.skip(&row).map(Skip::as_str);
    Ok((row, skip))
}

/// The staged skips by reason, after conflicts removed their users' rows.
fn count_skips(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Tally> {
    let mut tally = Tally::default();
    let mut statement =
        tx.prepare("SELECT skip, count(*) FROM temp.input WHERE skip IS NOT NULL GROUP BY skip")?;
    let mut rows = statement.query([])?;
    while let Some(r) = rows.next()? {
        let count: u64 = r.get(1)?;
        match r.get_ref(0)?.as_str()? {
            "skipped_done" => tally.skipped_done = count,
            "skipped_failed" => tally.skipped_failed = count,
            _ => tally.skipped_not_selected = count,
        }
    }
    Ok(tally)
}
