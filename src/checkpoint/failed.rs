//! The input of failed rows, kept so that `export --state failed` is a CSV to fix and feed
//! back: every column the row had, building fields included (`rows.failed_input`, schema
//! step 4). A run stores it at its end for the rows it left `failed`, from its staged
//! input; other rows keep what they had (nothing is read for them).

use rusqlite::params;

use super::{Checkpoint, CheckpointError, sqlite};

/// A failed row as `export --state failed` prints it.
#[derive(Clone, Debug)]
pub struct FailedRow {
    /// The Podero user.
    pub user_id: String,
    /// The CRM id.
    pub external_user_id: String,
    /// The building's name ('' for a user-only row).
    pub building_name: String,
    /// The CRM's property id, when the row is keyed by it.
    pub property_id: Option<String>,
    /// `{"user": body, "building": body}` of the input it failed with; `None` for a row
    /// that failed before schema step 4.
    pub input: Option<serde_json::Value>,
    /// Why it failed.
    pub error: String,
}

impl Checkpoint {
    /// Stores this run's input of every row it left `failed`. Call after the writer
    /// finished, while the run's staged input is still there.
    pub(crate) fn keep_failed_inputs(&self) -> Result<usize, CheckpointError> {
        self.conn
            .execute(
                "UPDATE main.rows SET failed_input = json_object(
                     'user', json(i.user_payload),
                     'building', json(CASE WHEN i.building_payload = '' THEN '{}'
                                           ELSE i.building_payload END))
                 FROM temp.input i
                 WHERE i.user_id = rows.user_id AND i.row_key = rows.row_key
                   AND rows.state = 'failed'",
                [],
            )
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Calls `each` with every failed row, in the order of `export`.
    pub(crate) fn for_each_failed_row(
        &self,
        mut each: impl FnMut(FailedRow),
    ) -> Result<(), CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT user_id, external_user_id, building_name, property_id, failed_input,
                        coalesce(error, '')
                 FROM rows WHERE state = ?1
                 ORDER BY user_id, building_name, row_key",
            )
            .map_err(wrap)?;
        let mut rows = statement.query(params!["failed"]).map_err(wrap)?;
        while let Some(row) = rows.next().map_err(wrap)? {
            let input: Option<String> = row.get(4).map_err(wrap)?;
            each(FailedRow {
                user_id: row.get(0).map_err(wrap)?,
                external_user_id: row.get(1).map_err(wrap)?,
                building_name: row.get(2).map_err(wrap)?,
                property_id: row.get(3).map_err(wrap)?,
                input: input.and_then(|text| serde_json::from_str(&text).ok()),
                error: row.get(5).map_err(wrap)?,
            });
        }
        Ok(())
    }
}
