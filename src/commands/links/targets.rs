//! The CSV joined with the checkpoint: which buildings get a link.
//!
//! The input is read with `run`'s reader and checks (same columns, same messages); the
//! optional `language` and `price_zone` columns are checked here against the documented
//! enums. Each valid row is staged in the checkpoint (on disk, so memory
//! stays flat): a row whose building is not `done` is counted as "not onboarded yet" and
//! gets nothing. The engine then pages the staged buildings one user at a time, so the
//! heat pumps are listed once per user, and an unassigned connected heat pump is assigned
//! only when the user has exactly one building in the file.

use super::config::{self, SessionDefaults};
use crate::checkpoint::Checkpoint;
use crate::checkpoint::links::Added;
use crate::error::AppError;
use crate::input::{self, Record, Row};

/// What staging found (the buildings themselves are in the checkpoint's temporary table).
#[derive(Clone, Debug, Default)]
pub struct TargetCounts {
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

impl TargetCounts {
    fn count(&mut self, added: Added) {
        match added {
            Added::Staged => self.targets += 1,
            Added::NoBuilding => self.no_building += 1,
            Added::NotOnboarded => self.not_onboarded += 1,
            Added::Duplicate => self.duplicates += 1,
        }
    }
}

/// Reads every record, checks it and stages its building, in one transaction.
pub fn stage(
    mut reader: input::Reader,
    checkpoint: &Checkpoint,
    defaults: &SessionDefaults,
) -> Result<TargetCounts, AppError> {
    let source = reader.source_name().to_owned();
    let mut staging = checkpoint.stage_targets()?;
    let mut counts = TargetCounts::default();
    while let Some(record) = reader.next() {
        let record = record.map_err(AppError::from)?;
        counts.rows_read += 1;
        let row = match record {
            Record::Valid(row) => row,
            Record::Invalid(invalid) => {
                counts.invalid += 1;
                tracing::warn!("{source}: {invalid}; the row gets no link");
                continue;
            }
        };
        match overrides(&reader, &row, defaults, &source) {
            Some((language, price_zone)) => {
                counts.count(staging.add(&row, &language, &price_zone)?);
            }
            None => counts.invalid += 1,
        }
    }
    staging.commit()?;
    Ok(counts)
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
