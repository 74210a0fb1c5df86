//! The CSV joined with the checkpoint: which buildings get a link, grouped by user.
//!
//! The input is read with `run`'s reader and checks (same columns, same messages); the
//! optional `language` and `price_zone` columns are checked here against the documented
//! enums. Each valid row is looked up in the checkpoint: a row not `done` is counted as
//! "not onboarded yet" and gets nothing. Rows are grouped by user (heat pumps are listed
//! once per user, and a connected but unassigned heat pump is assigned only when the user
//! has exactly one building in the file), so the targets are held in memory: a few hundred
//! bytes per done row.

use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;
use serde_json::Value;
use uuid::Uuid;

use super::config::{self, SessionDefaults};
use super::store::{self, Prior};
use crate::input::{self, Record, Row};

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

/// The input, read and joined.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The work, one job per user.
    pub jobs: Vec<UserJob>,
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

/// Reads every record, checks it and joins it with the checkpoint.
pub fn prepare(
    mut reader: input::Reader,
    conn: &Connection,
    defaults: &SessionDefaults,
) -> Result<Prepared, String> {
    let source = reader.source_name().to_owned();
    let mut prepared = Prepared::default();
    let mut users: BTreeMap<Uuid, Vec<Target>> = BTreeMap::new();
    let mut seen = HashSet::new();
    while let Some(record) = reader.next() {
        let record = record.map_err(|e| e.to_string())?;
        prepared.rows_read += 1;
        let row = match record {
            Record::Valid(row) => row,
            Record::Invalid(invalid) => {
                prepared.invalid += 1;
                tracing::warn!("{source}: {invalid}; the row gets no link");
                continue;
            }
        };
        let Some((language, price_zone)) = overrides(&reader, &row, defaults, &source) else {
            prepared.invalid += 1;
            continue;
        };
        if row.building_name.is_empty() {
            prepared.no_building += 1;
            continue;
        }
        let lookup = |e: rusqlite::Error| format!("checkpoint: {e}");
        let property = row.property_id.as_deref();
        let Some(building_id) =
            store::done_building(conn, row.user_id, &row.building_name, property)
                .map_err(lookup)?
        else {
            prepared.not_onboarded += 1;
            continue;
        };
        if !seen.insert(building_id) {
            prepared.duplicates += 1;
            continue;
        }
        let prior = store::prior(conn, building_id).map_err(lookup)?;
        let target = target(row, building_id, language, price_zone, prior);
        users.entry(target.user_id).or_default().push(target);
    }
    prepared.jobs = users
        .into_iter()
        .map(|(user_id, targets)| UserJob { user_id, targets })
        .collect();
    Ok(prepared)
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

fn target(
    row: Row,
    building_id: Uuid,
    language: String,
    price_zone: String,
    prior: Prior,
) -> Target {
    let field = |name: &str| match row.user_fields.get(name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Target {
        line: row.line,
        user_id: row.user_id,
        building_id,
        email: field("email"),
        first_name: field("first_name"),
        last_name: field("last_name"),
        building_name: row.building_name,
        external_user_id: row.external_user_id,
        language,
        price_zone,
        prior,
    }
}
