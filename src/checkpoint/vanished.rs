//! Vanished rows: the checkpoint's rows that this run's input no longer has. A CRM export
//! cut short looks like many customers leaving, so they are not only counted: each run
//! records them in `vanished` (schema step 4, replaced at every run, a dry run's too), the
//! run's `--report` lists them (state `vanished`), `export --state vanished` prints them
//! later, and `run --max-vanished` stops before any call when there are too many. Nothing
//! is ever deleted on the server.
//!
//! A row is vanished when no input row continues it (`temp.input.match_key`, under the
//! row's user id or, for a row of a file without user_id, under the user its CRM id
//! resolved to, or as a row whose customer is still to be looked up by the same CRM id)
//! and no rejected input line names it (an invalid row is still in the file: it is reported as
//! invalid, not as vanished).

use rusqlite::params;

use super::{Checkpoint, CheckpointError, sqlite};

/// Why a vanished row is listed (the `error` cell of the report and of `export`).
const WHY: &str = "in the checkpoint but not in this input: left untouched on the server";

/// What [`Checkpoint::record_vanished`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VanishedCount {
    /// Rows of the checkpoint the input no longer has.
    pub vanished: u64,
    /// Rows the checkpoint holds (before this run adds any).
    pub known: u64,
}

impl Checkpoint {
    /// Records the rows this run's staged input no longer has, replacing the last run's
    /// record. Call after staging (and after `attach_property_keys`), before the writer.
    pub(crate) fn record_vanished(&self, run_id: i64) -> Result<VanishedCount, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let tx = self.conn.unchecked_transaction().map_err(wrap)?;
        tx.execute("DELETE FROM vanished", []).map_err(wrap)?;
        let vanished = tx
            .execute(
                "INSERT INTO vanished (user_id, row_key, run_id)
                 SELECT r.user_id, r.row_key, ?1 FROM rows r
                 WHERE NOT EXISTS (
                     SELECT 1 FROM temp.input i
                     WHERE i.user_id = r.user_id AND i.match_key = r.row_key)
                 AND NOT EXISTS (
                     SELECT 1 FROM temp.input i
                     WHERE i.resolved_user_id = r.user_id AND i.match_key = r.row_key)
                 AND NOT EXISTS (
                     SELECT 1 FROM temp.input i
                     WHERE i.lookup = 1 AND i.external_user_id = r.external_user_id
                       AND i.match_key = r.row_key)
                 AND NOT EXISTS (
                     SELECT 1 FROM rejects j
                     WHERE j.user_id = r.user_id AND j.building_name = r.building_name)",
                [run_id],
            )
            .map_err(wrap)?;
        let known: i64 = tx
            .query_row("SELECT count(*) FROM rows", [], |r| r.get(0))
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(VanishedCount {
            vanished: vanished as u64,
            known: known as u64,
        })
    }

    /// The last run's vanished rows as `--report` records
    /// ([`crate::report::csv::REPORT_HEADER`]: no line, state `vanished`).
    pub(crate) fn for_each_vanished_report_row(
        &self,
        mut each: impl FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        self.vanished_rows(
            "SELECT '', r.user_id, r.external_user_id, r.building_name,
                    coalesce(r.building_id, ''), 'vanished', '0', '', ?1, 'not_in_input'",
            &mut each,
        )
    }

    /// The last run's vanished rows as `export` records
    /// ([`crate::report::csv::EXPORT_HEADER`], state `vanished`).
    pub(crate) fn for_each_vanished_export_row(
        &self,
        mut each: impl FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        self.vanished_rows(
            "SELECT r.user_id, r.external_user_id, r.building_name, coalesce(r.building_id, ''),
                    'vanished', ?1, coalesce(r.property_id, '')",
            &mut each,
        )
    }

    /// Streams `select` (its cells all text) over the vanished rows, in key order.
    fn vanished_rows(
        &self,
        select: &str,
        each: &mut dyn FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let sql = format!(
            "{select} FROM vanished v JOIN rows r ON r.user_id = v.user_id AND r.row_key = v.row_key
             ORDER BY r.user_id, r.building_name, r.row_key"
        );
        let mut statement = self.conn.prepare(&sql).map_err(wrap)?;
        let columns = statement.column_count();
        let mut rows = statement.query(params![WHY]).map_err(wrap)?;
        while let Some(row) = rows.next().map_err(wrap)? {
            let cells = (0..columns)
                .map(|i| row.get::<_, String>(i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(wrap)?;
            each(cells);
        }
        Ok(())
    }
}
