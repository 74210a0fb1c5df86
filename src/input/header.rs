//! Header resolution: which file column feeds which known column, honouring
//! `--column canonical=header` renames; and `parse_rename` for the command line.
//!
//! Real CRM exports do not fit one header per field, so a mapping may also:
//! * give one header to several columns (`PLZ` is the user's and the building's
//!   `zip_code`): the first column in [`COLUMNS`] order takes the header's slot, the
//!   others are fed from it as [`Feed`]s;
//! * join headers (`street_and_number=Straße+Hausnummer`): the trimmed, non-empty cells
//!   joined by a space, checked like a cell of the column (a [`Feed`] too).
//!
//! A header that exists under the whole text (`A+B`) is taken as one header.

use super::InputError;
use super::columns::{COLUMNS, Column, find};
use super::format::Delimiter;
use super::{REQUIRED_COLUMNS, display};

/// The resolved header: the names as found and, per position, the known column fed.
#[derive(Debug)]
pub(super) struct Layout {
    pub headers: Vec<String>,
    pub slots: Vec<Option<&'static Column>>,
    /// Columns fed from a header that already has a slot, or from a join of headers.
    pub feeds: Vec<Feed>,
    /// The file's field separator (a decimal comma is read only when it is not `,`).
    pub delimiter: Delimiter,
    /// `--building-name`: the name of a row that has none (checked already).
    pub default_building_name: Option<String>,
}

/// A known column read from one or more positions other than its own slot.
#[derive(Debug)]
pub(super) struct Feed {
    pub column: &'static Column,
    /// The positions whose cells are joined (by a space) into the value.
    pub positions: Vec<usize>,
}

/// Where the header is and how it was split, for messages.
#[derive(Clone, Copy, Debug)]
pub(super) struct Split {
    /// The header's line in the file (2 after an Excel `sep=` line).
    pub line: u64,
    /// The separator the header was split with.
    pub delimiter: Delimiter,
    /// True when `--delimiter` chose it, false when detected.
    pub explicit: bool,
}

impl Layout {
    /// Headers that feed no known column, escaped for a terminal or log (a header is the
    /// file's text: it may hold escape sequences or bidi controls).
    pub(super) fn ignored(&self) -> Vec<String> {
        (0..self.headers.len())
            .filter(|&i| self.is_unused(i))
            .map(|i| display::shown(&self.headers[i]))
            .collect()
    }

    /// Whether the header at `position` feeds no known column.
    pub(super) fn is_unused(&self, position: usize) -> bool {
        self.slots[position].is_none()
            && !self.feeds.iter().any(|f| f.positions.contains(&position))
    }

    /// Every known column the file feeds (a slot or a feed).
    pub(super) fn columns(&self) -> impl Iterator<Item = &'static Column> + '_ {
        let slots = self.slots.iter().flatten().copied();
        slots.chain(self.feeds.iter().map(|f| f.column))
    }
}

/// Header matching ignores case and surrounding whitespace.
pub(super) fn normalise(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Parses `canonical=header` (a `--column` value). The canonical name must be known.
pub fn parse_rename(s: &str) -> Result<(String, String), String> {
    let Some((canonical, header)) = s.split_once('=') else {
        return Err(format!(
            "expected CANONICAL=HEADER, e.g. building_name=property; got \"{}\"",
            display::shown(s)
        ));
    };
    let canonical = normalise(canonical);
    if find(&canonical).is_none() {
        return Err(format!(
            "unknown column \"{}\"; known columns: {}",
            display::shown(&canonical),
            known_columns()
        ));
    }
    if header.trim().is_empty() {
        return Err(format!(
            "no header name after \"{canonical}=\": write {canonical}=<header in your file>"
        ));
    }
    if header.split('+').any(|part| part.trim().is_empty()) {
        return Err(format!(
            "an empty header in \"{}\": join headers as {canonical}=FIRST+SECOND",
            display::shown(header)
        ));
    }
    Ok((canonical, header.trim().to_owned()))
}

fn known_columns() -> String {
    COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Maps each header to a known column; fails on missing required or duplicated columns.
pub(super) fn resolve(
    headers: Vec<String>,
    renames: &[(String, String)],
    source: &str,
    split: Split,
) -> Result<Layout, InputError> {
    let names = expected_names(renames, source)?;
    let normalised: Vec<String> = headers.iter().map(|h| normalise(h)).collect();
    let mut layout = Layout {
        slots: vec![None; headers.len()],
        headers,
        feeds: Vec::new(),
        delimiter: split.delimiter,
        default_building_name: None,
    };
    for (column, expected) in &names {
        let Some(expected) = expected else { continue };
        let Some(positions) = positions(&normalised, expected, column, source, split)? else {
            continue;
        };
        match positions.as_slice() {
            [one] if layout.slots[*one].is_none() => layout.slots[*one] = Some(*column),
            _ => layout.feeds.push(Feed { column, positions }),
        }
    }
    require_columns(&layout, &names, source, split)?;
    Ok(layout)
}

/// Where the header `expected` (normalised) is: one position, the positions of a join
/// (`A+B`), or `None` when the file does not have it. A header found twice is an error,
/// as is a join naming a header the file lacks.
fn positions(
    headers: &[String],
    expected: &str,
    column: &Column,
    source: &str,
    split: Split,
) -> Result<Option<Vec<usize>>, InputError> {
    let found: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i] == expected)
        .collect();
    match found.as_slice() {
        [] => {}
        [one] => return Ok(Some(vec![*one])),
        [first, second, ..] => {
            return Err(InputError::DuplicateColumn {
                source_name: source.to_owned(),
                line: split.line,
                column: column.name.to_owned(),
                first: first + 1,
                second: second + 1,
            });
        }
    }
    if !expected.contains('+') {
        return Ok(None);
    }
    let mut joined = Vec::new();
    for part in expected.split('+').map(str::trim) {
        match headers.iter().position(|h| h == part) {
            Some(at) => joined.push(at),
            None => {
                return Err(InputError::Rename {
                    source_name: source.to_owned(),
                    detail: format!(
                        "{}={expected} joins the header \"{}\", which the file does not have \
                         (its headers: {})",
                        column.name,
                        display::shown(part),
                        headers
                            .iter()
                            .map(|h| display::shown(h))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    Ok(Some(joined))
}

/// The (normalised) header each known column is read from; `None` when a rename gave
/// its default header to another column (an explicit `--column` wins).
type Expected = Vec<(&'static Column, Option<String>)>;

fn expected_names(renames: &[(String, String)], source: &str) -> Result<Expected, InputError> {
    let conflict = |detail: String| InputError::Rename {
        source_name: source.to_owned(),
        detail,
    };
    let mut names: Expected = COLUMNS
        .iter()
        .map(|c| (c, Some(c.name.to_owned())))
        .collect();
    let mut renamed: Vec<(&str, String)> = Vec::new();
    for (canonical, header) in renames {
        let (canonical, header) = (normalise(canonical), normalise(header));
        let Some(column) = find(&canonical) else {
            return Err(conflict(format!(
                "unknown column \"{canonical}\"; known columns: {}",
                known_columns()
            )));
        };
        // One header may feed several columns; a column is read from one place.
        if let Some((_, other)) = renamed.iter().find(|(c, _)| *c == column.name) {
            return Err(conflict(format!(
                "--column {canonical}={header} conflicts with --column {canonical}={other}: \
                 map each column once (join headers with +)"
            )));
        }
        renamed.push((column.name, header.clone()));
    }
    for (name, header) in &renamed {
        for (column, expected) in names.iter_mut() {
            if column.name == *name {
                *expected = Some(header.clone());
            } else if expected.as_deref() == Some(header.as_str())
                && !renamed.iter().any(|(c, _)| *c == column.name)
            {
                *expected = None;
            }
        }
    }
    Ok(names)
}

fn require_columns(
    layout: &Layout,
    names: &Expected,
    source: &str,
    split: Split,
) -> Result<(), InputError> {
    let present = |name: &str| layout.columns().any(|c| c.name == name);
    // building_name is optional (absent: user-only rows), but not when `--column` asked
    // for it, or when CR-only line endings glued the rows onto the header.
    let renamed = names
        .iter()
        .any(|(c, h)| c.name == "building_name" && h.as_deref() != Some("building_name"));
    let cr_only = layout.headers.iter().any(|h| h.contains('\r'));
    let building = (renamed || cr_only).then_some("building_name");
    let missing: Vec<String> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .chain(building)
        .filter(|name| !present(name))
        .map(|name| describe_expected(name, names))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(InputError::MissingColumns {
        source_name: source.to_owned(),
        line: split.line,
        missing,
        found: layout.headers.iter().map(|h| display::shown(h)).collect(),
        hint: format_hint(&layout.headers, split),
    })
}

/// `building_name` or, when renamed, `building_name (header "property")`.
fn describe_expected(name: &str, names: &Expected) -> String {
    match names.iter().find(|(c, _)| c.name == name) {
        Some((_, Some(header))) if header != name => {
            format!("{name} (looked for header \"{}\")", display::shown(header))
        }
        _ => name.to_owned(),
    }
}

/// A guess at why the columns were not found: a wrong separator or line ending.
fn format_hint(headers: &[String], split: Split) -> Option<String> {
    if headers.iter().any(|h| h.contains('\r')) {
        return Some("the file seems to use old Mac line endings (CR only): save it with normal line endings".into());
    }
    let [only] = headers else { return None };
    if only.contains('|') {
        return Some(
            "the header seems to be separated by pipes (|): save the file with , ; or tab as \
             separator"
                .into(),
        );
    }
    // Detection picks the separator that splits the header best, so a single field
    // containing another supported separator means `--delimiter` or a `sep=` line chose.
    let other = Delimiter::ALL
        .into_iter()
        .find(|d| *d != split.delimiter && only.contains(char::from(d.byte())))?;
    let cause = if split.explicit {
        format!("but --delimiter says {}", split.delimiter.flag())
    } else {
        format!(
            "but the file's first line says sep={}",
            char::from(split.delimiter.byte()).escape_default()
        )
    };
    Some(format!(
        "the header seems to be separated by {} {cause}: run with --delimiter {}, or leave \
         --delimiter out to detect the separator",
        other.plural(),
        other.flag()
    ))
}
