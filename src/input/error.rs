//! The fatal errors of reading a CSV: each names the file (and line) and says what to do.

use std::io;

use super::REQUIRED_COLUMNS;

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
    #[error("{}", missing_message(.source_name, .missing, .found, .hint.as_deref()))]
    MissingColumns {
        source_name: String,
        /// The missing canonical columns (with the header looked for, when renamed).
        missing: Vec<String>,
        /// The headers found, safely displayed.
        found: Vec<String>,
        /// A guess at the cause (e.g. a semicolon-separated file).
        hint: Option<String>,
    },
    /// Two headers feed the same known column.
    #[error(
        "{source_name} line 1: column {column} appears twice (fields {first} and {second}); \
         delete or rename one so each value has one meaning"
    )]
    DuplicateColumn {
        source_name: String,
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
         comma-separated text"
    )]
    RecordTooLong {
        source_name: String,
        line: u64,
        limit: usize,
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
        "{source} line 1: missing required column(s) {}; headers found: {found}. {hint}\
         Rename the header in the file, or map your header with --column, \
         e.g. --column {example}=<your header>",
        missing.join(", ")
    )
}
