//! Read-only queries behind the run's report and summary, `status` and `export`. Rows are
//! streamed to a callback, never collected, so a million-row report needs no memory.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::{Checkpoint, CheckpointError, sqlite};

/// A reject's message, worded like `input::Invalid`'s `Display` (without the line).
const REJECT_MESSAGE: &str = "CASE
        WHEN j.kind != 'invalid' OR j.column_name IS NULL THEN j.reason
        WHEN j.value IS NULL THEN 'column ' || j.column_name || ' ' || j.reason
        ELSE 'column ' || j.column_name || ': value \"' || j.value || '\" ' || j.reason
    END";

/// A staged row's user as the report shows it: the resolved user, or empty while the
/// customer is known only by its CRM id (its owner key `ext:<CRM id>` is no user id).
const USER_SHOWN: &str = "CASE WHEN coalesce(i.resolved_user_id, i.user_id) LIKE 'ext:%' THEN ''
        ELSE coalesce(i.resolved_user_id, i.user_id) END";

/// Lines kept per failure group.
const EXAMPLE_LINES: usize = 5;

/// Rows that are not done, by reason.
#[derive(Clone, Debug, Serialize)]
pub struct FailureGroup {
    /// failed | unresolved | invalid | conflict | duplicate.
    pub state: String,
    /// The HTTP status, or the column for invalid rows.
    pub cause: String,
    /// Rows in the group.
    pub count: u64,
    /// The first few lines.
    pub lines: Vec<u64>,
    /// The first row's message.
    pub example: String,
}

/// One past run, for `status`.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Its id.
    pub id: i64,
    /// run | dry-run.
    pub command: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds; None if it never finished (killed).
    pub ended_at: Option<i64>,
    /// The input it read.
    pub input: String,
    /// Rows in that input.
    pub input_rows: Option<i64>,
    /// How it ended.
    pub exit_code: Option<i64>,
}

impl Checkpoint {
    /// This run's rows (valid and rejected) in line order, as report records
    /// ([`crate::report::csv::REPORT_HEADER`]).
    pub(crate) fn for_each_report_row(
        &self,
        mut each: impl FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        let sql = "
            SELECT i.line, {USER_SHOWN}, i.external_user_id, i.building_name, r.building_id,
                   coalesce(r.state, 'pending'), coalesce(r.attempts, 0), r.http_status, r.error,
                   coalesce(o.outcome, 'no_call')
            FROM temp.input i LEFT JOIN rows r
                 ON r.user_id = coalesce(i.resolved_user_id, i.user_id)
                    AND r.row_key = i.match_key
            LEFT JOIN temp.outcomes o ON o.user_id = i.user_id AND o.row_key = i.row_key
            UNION ALL
            SELECT j.line, j.user_id, j.external_user_id, j.building_name, NULL, j.kind, 0, NULL,
                   {REJECT_MESSAGE}, 'not_sent'
            FROM rejects j
            ORDER BY 1";
        let sql = sql
            .replace("{REJECT_MESSAGE}", REJECT_MESSAGE)
            .replace("{USER_SHOWN}", USER_SHOWN);
        self.stream(&sql, [], 10, &mut each)
    }

    /// Rows of the checkpoint for `export` ([`crate::report::csv::EXPORT_HEADER`]),
    /// optionally only those in `state`.
    pub(crate) fn for_each_export_row(
        &self,
        state: Option<&str>,
        mut each: impl FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        let sql = "
            SELECT CASE WHEN user_id LIKE 'ext:%' THEN '' ELSE user_id END, external_user_id,
                   building_name, building_id, state, error, property_id
            FROM rows WHERE ?1 IS NULL OR state = ?1
            ORDER BY user_id, building_name, row_key";
        self.stream(sql, params![state], 7, &mut each)
    }

    fn stream(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        columns: usize,
        each: &mut dyn FnMut(Vec<String>),
    ) -> Result<(), CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let mut statement = self.conn.prepare(sql).map_err(wrap)?;
        let mut rows = statement.query(params).map_err(wrap)?;
        while let Some(row) = rows.next().map_err(wrap)? {
            let record = (0..columns)
                .map(|i| text(row.get_ref(i)))
                .collect::<Vec<_>>();
            each(record);
        }
        Ok(())
    }

    /// This run's rows that are not done, grouped by state and cause, largest first.
    pub(crate) fn failure_groups(&self) -> Result<Vec<FailureGroup>, CheckpointError> {
        let mut groups: BTreeMap<(String, String), FailureGroup> = BTreeMap::new();
        let failed = "
            SELECT r.state, coalesce('HTTP ' || r.http_status, 'no HTTP status'), i.line, r.error
            FROM rows r CROSS JOIN temp.input i
                 ON i.user_id = r.user_id AND i.match_key = r.row_key
            WHERE r.state IN ('failed', 'unresolved') AND i.resolved_user_id IS NULL
            UNION ALL
            SELECT r.state, coalesce('HTTP ' || r.http_status, 'no HTTP status'), i.line, r.error
            FROM rows r CROSS JOIN temp.input i
                 ON i.resolved_user_id = r.user_id AND i.match_key = r.row_key
            WHERE r.state IN ('failed', 'unresolved')
            UNION ALL
            SELECT kind, coalesce('column ' || column_name, 'row'), line, {REJECT_MESSAGE}
            FROM rejects j WHERE kind != 'duplicate'
            ORDER BY 1, 2, 3";
        let failed = failed.replace("{REJECT_MESSAGE}", REJECT_MESSAGE);
        self.stream(&failed, [], 4, &mut |record| {
            let [state, cause, line, message] = <[String; 4]>::try_from(record).expect("4 columns");
            let group = groups
                .entry((state.clone(), cause.clone()))
                .or_insert_with(|| FailureGroup {
                    state,
                    cause,
                    count: 0,
                    lines: Vec::new(),
                    example: message,
                });
            group.count += 1;
            if group.lines.len() < EXAMPLE_LINES {
                group.lines.push(line.parse().unwrap_or_default());
            }
        })?;
        let mut groups: Vec<FailureGroup> = groups.into_values().collect();
        groups.sort_by_key(|group| std::cmp::Reverse(group.count));
        Ok(groups)
    }

    /// Rows per state in the whole checkpoint.
    pub(crate) fn state_counts(&self) -> Result<BTreeMap<String, u64>, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare("SELECT state, count(*) FROM rows GROUP BY state")
            .map_err(wrap)?;
        let counts = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(wrap)?
            .collect::<Result<_, _>>()
            .map_err(wrap)?;
        Ok(counts)
    }

    /// Customers keyed by CRM id by state (`known` split by how: `known (created)`, ...).
    pub(crate) fn customer_counts(&self) -> Result<BTreeMap<String, u64>, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT CASE WHEN how IS NULL THEN state ELSE state || ' (' || how || ')' END,
                        count(*)
                 FROM customers GROUP BY 1",
            )
            .map_err(wrap)?;
        let counts = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(wrap)?
            .collect::<Result<_, _>>()
            .map_err(wrap)?;
        Ok(counts)
    }

    /// When the last `run` (not a dry run) that exited 0 ended, in unix seconds.
    pub(crate) fn last_success(&self) -> Result<Option<i64>, CheckpointError> {
        self.conn
            .query_row(
                "SELECT max(ended_at) FROM runs WHERE command = 'run' AND exit_code = 0",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(&self.path, e))
    }

    /// The most recent runs, newest first.
    pub(crate) fn recent_runs(&self, limit: usize) -> Result<Vec<RunInfo>, CheckpointError> {
        let wrap = |e| sqlite(&self.path, e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, command, started_at, ended_at, input, input_rows, exit_code
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(wrap)?;
        let runs = statement
            .query_map([limit as i64], |r| {
                Ok(RunInfo {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    input: r.get(4)?,
                    input_rows: r.get(5)?,
                    exit_code: r.get(6)?,
                })
            })
            .map_err(wrap)?
            .collect::<Result<_, _>>()
            .map_err(wrap)?;
        Ok(runs)
    }

    /// Rows rejected by the last run.
    pub(crate) fn reject_count(&self) -> Result<u64, CheckpointError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM rejects WHERE kind != 'duplicate'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(&self.path, e))
    }
}

fn text(value: rusqlite::Result<rusqlite::types::ValueRef<'_>>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(i)) => i.to_string(),
        Ok(ValueRef::Real(f)) => f.to_string(),
        _ => String::new(),
    }
}
