//! The CSV joined with the checkpoint: which buildings get a link, staged on disk and
//! paged out one user at a time.
//!
//! The input is read with `run`'s reader and checks (same columns, same messages); the
//! optional `language` and `price_zone` columns are checked here against the documented
//! enums. Each valid row is looked up in the checkpoint: a row not `done` is counted as
//! "not onboarded yet" and gets nothing.
//!
//! Stream, don't slurp: the joined rows go into a temporary table (on disk:
//! `PRAGMA temp_store=FILE`), keyed by (user_id, line) with the building unique (a later row
//! naming the same building is a duplicate), so memory stays flat whatever the file size.
//! [`page`] reads them back in key order: one user's buildings arrive together, so the
//! heat pumps are listed once per user, and an unassigned connected heat pump is assigned
//! only when the user has exactly one building in the file. What the checkpoint knew about
//! each building ([`Prior`]) is read as its page is read.

use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

use super::config::{self, SessionDefaults};
use crate::checkpoint::links::{self as store, Prior};
use crate::input::{self, Record, Row};

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
    pub prior: Prior,
}

/// All of one user's buildings in the file.
#[derive(Debug)]
pub struct UserJob {
    /// The user.
    pub user_id: Uuid,
    /// The buildings.
    pub targets: Vec<Target>,
}

/// What staging found (the targets themselves are in the temporary table).
#[derive(Clone, Debug, Default)]
pub struct Staged {
    /// Buildings staged: each gets a decision (link, still valid, connected, failed).
    pub targets: u64,
    /// Data rows read.
    pub rows_read: u64,
    /// Rows not sent because a cell is invalid (reported on stderr with line and column).
    pub invalid: u64,
    /// Rows naming a building an earlier row already named.
    pub duplicates: u64,
    /// Valid rows whose building is not done in the checkpoint.
    pub not_onboarded: u64,
    /// User-only rows (no building): a link needs a building.
    pub no_building: u64,
}

/// A checkpoint error, as `prepare` reports it.
fn lookup(e: rusqlite::Error) -> String {
    format!("checkpoint: {e}")
}

/// Reads every record, checks it, joins it with the checkpoint and stages it, in one
/// transaction on the temporary table (the checkpoint itself is only read).
pub fn prepare(
    mut reader: input::Reader,
    conn: &Connection,
    defaults: &SessionDefaults,
) -> Result<Staged, String> {
    let source = reader.source_name().to_owned();
    let tx = conn.unchecked_transaction().map_err(lookup)?;
    tx.execute_batch(CREATE_TEMP).map_err(lookup)?;
    let mut staged = Staged::default();
    while let Some(record) = reader.next() {
        let record = record.map_err(|e| e.to_string())?;
        staged.rows_read += 1;
        let row = match record {
            Record::Valid(row) => row,
            Record::Invalid(invalid) => {
                staged.invalid += 1;
                tracing::warn!("{source}: {invalid}; the row gets no link");
                continue;
            }
        };
        let Some((language, price_zone)) = overrides(&reader, &row, defaults, &source) else {
            staged.invalid += 1;
            continue;
        };
        stage_row(&tx, row, [language, price_zone], &mut staged).map_err(lookup)?;
    }
    tx.commit().map_err(lookup)?;
    Ok(staged)
}

/// Joins one valid row with the checkpoint and stages it (or counts why not).
fn stage_row(
    conn: &Connection,
    row: Row,
    [language, price_zone]: [String; 2],
    staged: &mut Staged,
) -> rusqlite::Result<()> {
    if row.building_name.is_empty() {
        staged.no_building += 1;
        return Ok(());
    }
    let property = row.property_id.as_deref();
    let Some(building_id) = store::done_building(conn, row.user_id, &row.building_name, property)?
    else {
        staged.not_onboarded += 1;
        return Ok(());
    };
    let field = |name: &str| match row.user_fields.get(name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    // The building is UNIQUE: the first row naming it wins, a later one is a duplicate.
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO temp.link_targets (user_id, line, building_id, building_name,
                 external_user_id, email, first_name, last_name, language, price_zone)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            row.user_id.to_string(),
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
    if inserted == 0 {
        staged.duplicates += 1;
    } else {
        staged.targets += 1;
    }
    Ok(())
}

/// Up to `limit` staged buildings after `after` (user_id, line), in key order, each with
/// what the checkpoint knows about it now.
pub fn page(
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
        target.prior = store::prior(conn, target.building_id)?;
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
        prior: Prior::Missing,
    })
}

/// The row's language and price zone (its own cells, else the flags); `None` (reported)
/// when a cell is not an allowed value.
fn overrides(
    reader: &input::Reader,
    row: &Row,
    defaults: &SessionDefaults,
    source: &str,
) -> Option<(String, String)> {
    let cell = |column: &str, default: &str, check: fn(&str) -> Result<String, String>| match reader
        .unknown_cell(column)
        .filter(|v| !v.is_empty())
    {
        None => Some(default.to_owned()),
        Some(value) => match check(&value) {
            Ok(value) => Some(value),
            Err(why) => {
                tracing::warn!(
                    "{source}: line {}, column {column}: value {why} (or leave the cell \
                         empty to use the flag); the row gets no link",
                    row.line
                );
                None
            }
        },
    };
    let language = cell("language", &defaults.language, config::language)?;
    let price_zone = cell("price_zone", &defaults.price_zone, config::price_zone)?;
    Some((language, price_zone))
}
