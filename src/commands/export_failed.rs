//! `export --state failed`: the failed rows as a file to fix and feed back to `run`. It has
//! the columns the input had (the identity, `property_id` when the rows are keyed by it,
//! and every user and building field the failed rows were sent with, under their CSV
//! names), then `state` and `error`, which `run` ignores. So the rows can be corrected in
//! a spreadsheet and run again (`run to-fix.csv --checkpoint … --only-failed`): a changed
//! row is retried by itself.
//!
//! Two passes over the failed rows (the columns, then the rows), so memory stays flat.

use std::collections::BTreeMap;

use serde_json::Value;

use super::stdout::print;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::failed::FailedRow;
use crate::cli::ExportFormat;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input::column_of_field;

/// The field columns the rows use, in the input's column order: place → CSV name.
type Fields = BTreeMap<usize, &'static str>;

/// Prints the failed rows, see the module header.
pub fn export_failed(checkpoint: &Checkpoint, format: ExportFormat) -> Result<ExitCode, AppError> {
    let mut fields = Fields::new();
    let mut keyed = false;
    checkpoint.for_each_failed_row(|row| {
        keyed |= row.property_id.is_some();
        for (column, _) in field_cells(&row) {
            fields.insert(column.0, column.1);
        }
    })?;
    let mut header = vec!["user_id", "external_user_id", "building_name"];
    if keyed {
        header.push("property_id");
    }
    header.extend(fields.values());
    header.extend(["state", "error"]);
    print(format, header, true, |each| {
        checkpoint.for_each_failed_row(|row| each(cells(&row, &fields, keyed)))
    })
}

/// One row's cells in the header's order.
fn cells(row: &FailedRow, fields: &Fields, keyed: bool) -> Vec<String> {
    let mut cells = vec![
        row.user_id.clone(),
        row.external_user_id.clone(),
        row.building_name.clone(),
    ];
    if keyed {
        cells.push(row.property_id.clone().unwrap_or_default());
    }
    let mut values: BTreeMap<usize, String> = field_cells(row)
        .map(|((place, _), value)| (place, value))
        .collect();
    cells.extend(
        fields
            .keys()
            .map(|place| values.remove(place).unwrap_or_default()),
    );
    cells.extend(["failed".to_owned(), row.error.clone()]);
    cells
}

/// The row's stored fields as ((place, CSV name), text), the way the CSV wrote them.
fn field_cells(row: &FailedRow) -> impl Iterator<Item = ((usize, &'static str), String)> + '_ {
    let bodies = row.input.iter().flat_map(|input| {
        [(false, &input["user"]), (true, &input["building"])]
            .into_iter()
            .filter_map(|(building, body)| Some((building, body.as_object()?)))
    });
    bodies.flat_map(|(building, body)| {
        body.iter()
            .filter_map(move |(api, value)| Some((column_of_field(building, api)?, text(value))))
    })
}

/// A JSON value as a CSV cell the input checks accept again.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
