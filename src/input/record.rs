//! The outcome of one record: a [`Row`] to send or an [`Invalid`] to report; and the
//! per-record check that produces it.

use std::fmt;

use csv::ByteRecord;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::columns::{self, Cell, Column, Target};
use super::display;
use super::format::Delimiter;
use super::header::Layout;
#[cfg(doc)]
use super::{
    MAX_BUILDING_NAME_CHARS, MAX_EXTERNAL_USER_ID_CHARS, MAX_PROPERTY_ID_CHARS, MAX_SHOWN_CHARS,
};

/// A valid row: what to send for one (user, building).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// 1-based line where the record starts (the header is line 1).
    pub line: u64,
    /// The Podero user id (goes into the URL path); `None` when the file has no such
    /// column or the cell is empty: the row is then keyed by its CRM id.
    pub user_id: Option<Uuid>,
    /// The partner's CRM id, 1 to [`MAX_EXTERNAL_USER_ID_CHARS`] chars.
    pub external_user_id: String,
    /// The building's name, 1 to [`MAX_BUILDING_NAME_CHARS`] chars; empty for a user-only
    /// row (update the user, no building).
    pub building_name: String,
    /// The CRM's property id (1 to [`MAX_PROPERTY_ID_CHARS`] chars) when the file has the
    /// column and the row has a building: then (user_id, property_id) is the row's identity
    /// and the name is an ordinary field.
    pub property_id: Option<String>,
    /// Non-empty optional user fields, typed, keyed by API name.
    pub user_fields: Map<String, Value>,
    /// Non-empty optional building fields, typed, keyed by API name.
    pub building_fields: Map<String, Value>,
}

/// A row that must not be sent, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// 1-based line where the record starts.
    pub line: u64,
    /// Canonical column name; `None` for row-level problems (a ragged row).
    pub column: Option<String>,
    /// The offending value, escaped and truncated (see [`MAX_SHOWN_CHARS`]).
    pub value: Option<String>,
    /// What is wrong and what to do.
    pub reason: String,
    /// The row's `user_id` cell as found (escaped, truncated), so the report can show
    /// which row it is; `None` if the row has no such cell.
    pub raw_user_id: Option<String>,
    /// The row's `building_name` cell as found (escaped, truncated).
    pub raw_building_name: Option<String>,
    /// The row's `external_user_id` cell as found (escaped, truncated).
    pub raw_external_user_id: Option<String>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        match (&self.column, &self.value) {
            (Some(column), Some(value)) => {
                write!(f, ", column {column}: value \"{value}\" {}", self.reason)
            }
            (Some(column), None) => write!(f, ", column {column} {}", self.reason),
            (None, _) => write!(f, ": {}", self.reason),
        }
    }
}

/// One CSV record, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Ready to send.
    Valid(Row),
    /// Never sent; report it.
    Invalid(Invalid),
}

/// Checks one record against the header layout: the first problem wins.
pub(super) fn check_record(layout: &Layout, record: &ByteRecord, line: u64) -> Record {
    let identified = |invalid: Invalid| {
        Record::Invalid(Invalid {
            line,
            raw_user_id: raw_cell(layout, record, Target::UserId),
            raw_building_name: raw_cell(layout, record, Target::BuildingName),
            raw_external_user_id: raw_cell(layout, record, Target::ExternalUserId),
            ..invalid
        })
    };
    if record.len() != layout.headers.len() {
        let invalid = ragged(line, record.len(), layout.headers.len());
        return identified(with_separator(invalid, layout.delimiter));
    }
    let decimal_comma = layout.delimiter != Delimiter::Comma;
    let mut draft = Draft::default();
    for (bytes, slot) in record.iter().zip(&layout.slots) {
        let Some(column) = slot else { continue };
        match check_cell(column, bytes, decimal_comma) {
            Ok(cell) => draft.put(column, cell),
            Err(invalid) => return identified(*invalid),
        }
    }
    for feed in &layout.feeds {
        match check_cell(feed.column, &joined(record, &feed.positions), decimal_comma) {
            Ok(cell) => draft.put(feed.column, cell),
            Err(invalid) => return identified(*invalid),
        }
    }
    if draft.building_name.is_none() {
        draft.building_name = layout.default_building_name.clone();
    }
    let keyed = layout.columns().any(|c| c.target == Target::PropertyId);
    match check_building(&draft, keyed) {
        Some(invalid) => identified(invalid),
        None => Record::Valid(draft.finish(line)),
    }
}

/// The row-level building rules: a row with building data needs a name, and in a file
/// with a `property_id` column, a row with a building needs its property id (a user-only
/// row leaves both empty).
fn check_building(draft: &Draft, keyed: bool) -> Option<Invalid> {
    let problem = |column: &str, reason: &str| Invalid {
        line: 0,
        column: Some(column.to_owned()),
        value: None,
        reason: reason.to_owned(),
        raw_user_id: None,
        raw_building_name: None,
        raw_external_user_id: None,
    };
    let has_data = draft.property_id.is_some() || !draft.building_fields.is_empty();
    match &draft.building_name {
        None if has_data => Some(problem(
            "building_name",
            "is empty, but the row has building data (property_id or building columns): fill \
             in the building name, or clear the building cells for a user-only row",
        )),
        Some(_) if keyed && draft.property_id.is_none() => Some(problem(
            "property_id",
            "is empty: this file has a property_id column, so every row with a building needs \
             the CRM's id of its property; fill it in, or clear building_name for a user-only row",
        )),
        _ => None,
    }
}

/// The cells at `positions`, trimmed, the empty ones left out, joined by a space (a
/// street and a house number): the value of a joined column.
fn joined(record: &ByteRecord, positions: &[usize]) -> Vec<u8> {
    let parts = positions
        .iter()
        .filter_map(|&i| record.get(i))
        .map(<[u8]>::trim_ascii)
        .filter(|part| !part.is_empty());
    let mut value = Vec::new();
    for part in parts {
        if !value.is_empty() {
            value.push(b' ');
        }
        value.extend_from_slice(part);
    }
    value
}

/// A cell of an invalid row, made safe to display (only computed for invalid rows).
fn raw_cell(layout: &Layout, record: &ByteRecord, target: Target) -> Option<String> {
    let index = layout
        .slots
        .iter()
        .position(|slot| slot.is_some_and(|column| column.target == target))?;
    let bytes = record.get(index)?.trim_ascii();
    Some(display::shown_bytes(bytes)).filter(|shown| !shown.is_empty())
}

pub(super) fn ragged(line: u64, fields: usize, headers: usize) -> Invalid {
    Invalid {
        line,
        column: None,
        value: None,
        raw_user_id: None,
        raw_building_name: None,
        raw_external_user_id: None,
        reason: format!(
            "row has {fields} fields, the header has {headers}: quote values that contain commas \
             (\"Smith, John\") and check for missing or extra separators"
        ),
    }
}

/// The ragged-row advice for a file not separated by commas.
fn with_separator(invalid: Invalid, delimiter: Delimiter) -> Invalid {
    let reason = match delimiter {
        Delimiter::Comma => invalid.reason,
        other => invalid.reason.replace("commas", other.plural()).replace(
            "Smith, John",
            &format!("Smith{}John", char::from(other.byte())),
        ),
    };
    Invalid { reason, ..invalid }
}

/// Decodes, trims and checks one cell; the returned `Invalid` has line 0. With
/// `decimal_comma`, a coordinate may be written `48,2082`; the value shown stays as written.
fn check_cell(column: &Column, bytes: &[u8], decimal_comma: bool) -> Result<Cell, Box<Invalid>> {
    let invalid = |value: Option<String>, reason: String| {
        Box::new(Invalid {
            line: 0,
            column: Some(column.name.to_owned()),
            value,
            reason,
            raw_user_id: None,
            raw_building_name: None,
            raw_external_user_id: None,
        })
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        let reason = "is not valid UTF-8 text: save the file as UTF-8 (in Excel: \"CSV UTF-8\") and run again, \
                      or name the file's encoding with --encoding";
        return Err(invalid(
            Some(display::shown_bytes(bytes.trim_ascii())),
            reason.to_owned(),
        ));
    };
    let text = text.trim();
    let point = decimal_comma
        .then(|| columns::decimal_point(column, text))
        .flatten();
    columns::check(column, point.as_deref().unwrap_or(text))
        .map_err(|p| invalid(p.show_value.then(|| display::shown(text)), p.reason))
}

/// The fields of a row as its cells are checked.
#[derive(Default)]
struct Draft {
    user_id: Option<Uuid>,
    external_user_id: Option<String>,
    building_name: Option<String>,
    property_id: Option<String>,
    user_fields: Map<String, Value>,
    building_fields: Map<String, Value>,
}

impl Draft {
    fn put(&mut self, column: &Column, cell: Cell) {
        match (column.target, cell) {
            (_, Cell::Empty) => {}
            (Target::UserId, Cell::Id(id)) => self.user_id = Some(id),
            (Target::ExternalUserId, Cell::Json(Value::String(s))) => {
                self.external_user_id = Some(s)
            }
            (Target::BuildingName, Cell::Json(Value::String(s))) => self.building_name = Some(s),
            (Target::PropertyId, Cell::Json(Value::String(s))) => self.property_id = Some(s),
            (Target::User, Cell::Json(v)) => {
                drop(self.user_fields.insert(column.api.to_owned(), v))
            }
            (Target::Building, Cell::Json(v)) => {
                drop(self.building_fields.insert(column.api.to_owned(), v))
            }
            (target, cell) => unreachable!("column table gives {target:?} a {cell:?}"),
        }
    }

    fn finish(self, line: u64) -> Row {
        let Some(external_user_id) = self.external_user_id else {
            unreachable!("required columns are checked at the header and never empty");
        };
        Row {
            line,
            user_id: self.user_id,
            external_user_id,
            building_name: self.building_name.unwrap_or_default(),
            property_id: self.property_id,
            user_fields: self.user_fields,
            building_fields: self.building_fields,
        }
    }
}
