//! The fatal errors of reading a CSV: each names the file (and line) and says what to do.

use std::io;

use super::REQUIRED_COLUMNS;
use super::format::Delimiter;

/// Problems that stop reading the file. Messages name the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be opened.
    #[error("cannot open {source_name}: {error}; check the path and that you may read the file")]
    Open {
        source_name: String,
        #[source]
        error: io::Error,
    },
    /// No header line at all.
    #[error(
        "{source_name} is empty: the first line must be a header naming the columns {}",
        REQUIRED_COLUMNS.join(", ")
    )]
    Empty { source_name: String },
    /// Required columns are not in the header.
    #[error("{}", missing_message(.source_name, *.line, .missing, .found, .hint.as_deref()))]
    MissingColumns {
        source_name: String,
        /// The header's line (2 after an Excel `sep=` line).
        line: u64,
        /// The missing canonical columns (with the header looked for, when renamed).
        missing: Vec<String>,
        /// The headers found, safely displayed.
        found: Vec<String>,
        /// A guess at the cause (e.g. a semicolon-separated file).
        hint: Option<String>,
    },
    /// Two headers feed the same known column.
    #[error(
        "{source_name} line {line}: column {column} appears twice (fields {first} and {second}); \
         delete or rename one so each value has one meaning"
    )]
    DuplicateColumn {
        source_name: String,
        /// The header's line.
        line: u64,
        column: String,
        first: usize,
        second: usize,
    },
    /// The `--column` options contradict each other or name an unknown column.
    #[error("{source_name}: bad --column option: {detail}")]
    Rename { source_name: String, detail: String },
    /// A record grew past the size bound.
    #[error(
        "{source_name} line {line}: a record is longer than {limit} bytes. Is this really a CSV? \
         Check for an unclosed quote (it swallows the rest of the file) and that the file is \
         text separated by , ; or tabs"
    )]
    RecordTooLong {
        source_name: String,
        line: u64,
        limit: usize,
    },
    /// The header splits into the required columns with more than one separator.
    #[error(
        "{source_name} line {line}: the header splits into the required columns both with {}: \
         say which one separates the fields, e.g. --delimiter {}",
        candidates.iter().map(|d| d.flag()).collect::<Vec<_>>().join(" and with "),
        candidates.first().map_or("';'", |d| d.flag())
    )]
    AmbiguousDelimiter {
        source_name: String,
        line: u64,
        /// The separators that fit, in detection order.
        candidates: Vec<Delimiter>,
    },
    /// An Excel `sep=` first line names a separator that is not supported.
    #[error(
        "{source_name} line 1: the first line \"sep={value}\" asks for a separator this tool does \
         not read: save the file with , ; or tab as separator (in Excel: \"CSV\" or \"CSV UTF-8\")"
    )]
    UnsupportedSeparator {
        source_name: String,
        /// What follows `sep=`, safely displayed.
        value: String,
    },
    /// The file is read as UTF-8 but its bytes look like Windows-1252.
    #[error(
        "{source_name} line {line}: the file is not UTF-8 but looks like Windows-1252 (read that \
         way the value is \"{value}\"), as Excel's plain \"CSV\" is saved on Windows: run again \
         with --encoding windows-1252, or save the file as \"CSV UTF-8\""
    )]
    LooksLikeWindows1252 {
        source_name: String,
        line: u64,
        /// The offending value decoded as Windows-1252, safely displayed.
        value: String,
    },
    /// Reading failed part-way.
    #[error("{source_name} line {line}: read error: {error}; check the file and run again")]
    Read {
        source_name: String,
        line: u64,
        #[source]
        error: io::Error,
    },
}

fn missing_message(
    source: &str,
    line: u64,
    missing: &[String],
    found: &[String],
    hint: Option<&str>,
) -> String {
    let found = found
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let example = missing
        .first()
        .and_then(|m| m.split(' ').next())
        .unwrap_or("building_name");
    let hint = hint.map(|h| format!("Hint: {h}. ")).unwrap_or_default();
    format!(
        "{source} line {line}: missing required column(s) {}; headers found: {found}. {hint}\
         Rename the header in the file, or map your header with --column, \
         e.g. --column {example}=<your header>",
        missing.join(", ")
    )
}
