//! CSV input: a partner's CSV of customers (Podero users, or CRM customers not in Podero
//! yet) → validated [`Row`]s.
//!
//! Design:
//! - **Streaming, bounded memory.** [`open`] reads and checks the header eagerly; the
//!   [`Reader`] then yields one [`Record`] per CSV record. The byte source sits under a
//!   counting wrapper (`limit.rs`) that refuses to deliver more than
//!   [`InputOptions::max_record_bytes`] between two records, so one endless field (a
//!   stray quote, a binary file) ends the run with [`InputError::RecordTooLong`]
//!   instead of filling memory.
//! - **Rows are data.** A bad cell makes the row [`Record::Invalid`] (line, column,
//!   safely displayed value, what to do); the reader carries on. Only problems with
//!   the file as a whole ([`InputError`]) stop it. Checks are per row and per header;
//!   cross-row checks (duplicate keys, conflicting external ids) belong to the caller.
//! - **Bytes first.** Records are read as `csv::ByteRecord`s, so invalid UTF-8 is an
//!   invalid cell, not a fatal error; `flexible` parsing turns ragged rows into
//!   invalid rows. Line numbers are where a record starts (quoted fields may span lines).
//! - **The files partners have.** Under the parser, `decode.rs` streams the file's
//!   encoding (`--encoding`, or a BOM) to UTF-8; `sniff.rs` reads a bounded prefix to
//!   pick the separator (`--delimiter`, an Excel `sep=` line, or the one that splits the
//!   header into the required columns) and to stop a Windows-1252 file read as UTF-8
//!   before any request. The prefix is re-read by the parser, which sees the file's
//!   every line (a `sep=` line is parsed and dropped), so line numbers stay the file's.
//!   Values are compared decoded, so a row's identity does not depend on the format.
//! - **One table.** `columns::COLUMNS` lists every known column with its API name and
//!   check; the header matcher and the row checker both read it.
//!
//! Values are trimmed; empty optional cells are not sent. Only the first problem of a
//! row is reported. Rows whose cells are all blank (spreadsheet leftovers such as
//! `,,,`) are skipped silently, like empty lines. The user's `role` is deliberately
//! not a column: changing roles from a bulk job is too dangerous.

mod columns;
mod decode;
mod display;
mod error;
mod format;
#[cfg(test)]
mod format_tests;
mod header;
mod limit;
mod mapping;
mod record;
mod sniff;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use header::{Layout, Split};
use record::check_record;

pub(crate) use columns::column_of_field;
pub use columns::{MAX_BUILDING_NAME_CHARS, MAX_EXTERNAL_USER_ID_CHARS, MAX_PROPERTY_ID_CHARS};
pub use display::MAX_SHOWN_CHARS;
pub use error::InputError;
pub use format::{Delimiter, Encoding, Format, parse_delimiter, parse_encoding};
pub use header::parse_rename;
pub use mapping::{Mapping, read_mapping};
pub use record::{Invalid, Record, Row};

/// Default bound on one record's size (1 MiB): far above any real row.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// The Podero user id column: optional. A row with it names its user; a row without it
/// (no column, or an empty cell) is keyed by its CRM id, and its user is found by that id
/// (or created, with `run --create-users`).
pub const USER_ID_COLUMN: &str = "user_id";

/// Columns every file must have (or map with `--column`). `building_name` is optional: a
/// file without it (or a row with it empty) updates users only.
pub const REQUIRED_COLUMNS: [&str; 1] = ["external_user_id"];

/// Optional columns that say which building a row is about: `building_name` (empty or
/// absent: a user-only row) and `property_id` (present: the CRM's property id is the row's
/// identity, so a renamed building is updated, not created again).
pub const BUILDING_KEY_COLUMNS: &[&str] = &["building_name", "property_id"];

/// Optional columns sent in the user update, under the same names. `role` is left
/// out on purpose: changing roles from a bulk job is too dangerous.
pub const USER_COLUMNS: &[&str] = &[
    "first_name",
    "last_name",
    "street_and_number",
    "street_add_info",
    "zip_code",
    "town",
    "country",
    "latitude",
    "longitude",
    "email",
];

/// Optional columns sent in the building creation. The `building_` address columns
/// are sent without the prefix (`building_town` → `town`).
pub const BUILDING_COLUMNS: &[&str] = &[
    "property_type",
    "occupant_type",
    "space_heating",
    "water_heating",
    "property_size_m2",
    "property_age",
    "num_occupants",
    "photovoltaic",
    "building_street_and_number",
    "building_street_add_info",
    "building_town",
    "building_zip_code",
    "building_country",
];

/// Where the CSV comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    Path(PathBuf),
    /// Standard input (`-` on the command line).
    Stdin,
}

impl Source {
    /// `-` means standard input; anything else is a path.
    pub fn parse(s: &str) -> Source {
        if s == "-" {
            Source::Stdin
        } else {
            Source::Path(PathBuf::from(s))
        }
    }

    /// The path as given, or `<stdin>`: used in every message.
    pub fn display_name(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Stdin => "<stdin>".to_owned(),
        }
    }
}

/// What to read and how.
#[derive(Clone, Debug)]
pub struct InputOptions {
    /// The file or stdin.
    pub source: Source,
    /// `(canonical column, header name in the file)` pairs from `--column canonical=header`.
    pub renames: Vec<(String, String)>,
    /// Bound on one record's size in bytes (approximate, see [`DEFAULT_MAX_RECORD_BYTES`]).
    pub max_record_bytes: usize,
    /// Encoding and separator (`--encoding`, `--delimiter`).
    pub format: Format,
    /// `--building-name`: the building name of rows that have none (checked with
    /// [`check_building_name`]).
    pub default_building_name: Option<String>,
}

impl InputOptions {
    /// Options for `source` with no renames and the default record bound.
    pub fn new(source: Source) -> Self {
        InputOptions {
            source,
            renames: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            format: Format::default(),
            default_building_name: None,
        }
    }
}

/// Checks a default building name (`--building-name`) as a `building_name` cell is checked;
/// returns it trimmed, or why it cannot be used.
pub fn check_building_name(value: &str) -> Result<String, String> {
    let column = columns::find("building_name").expect("a known column");
    match columns::check(column, value.trim()) {
        Ok(columns::Cell::Json(serde_json::Value::String(name))) => Ok(name),
        Ok(_) => Err("is empty: give the name of the customers' building, e.g. Zuhause".into()),
        Err(problem) => Err(problem.reason),
    }
}

/// Opens the source and reads and checks its header.
pub fn open(opts: &InputOptions) -> Result<Reader, InputError> {
    let name = opts.source.display_name();
    let read: Box<dyn Read + Send> = match &opts.source {
        Source::Stdin => Box::new(io::stdin()),
        Source::Path(path) => Box::new(open_file(path, &name)?),
    };
    let mut reader = Reader::from_read_with(
        read,
        name,
        &opts.renames,
        opts.max_record_bytes,
        opts.format,
    )?;
    reader.layout.default_building_name = opts.default_building_name.clone();
    Ok(reader)
}

fn open_file(path: &Path, name: &str) -> Result<File, InputError> {
    let fail = |error| InputError::Open {
        source_name: name.to_owned(),
        error,
    };
    let file = File::open(path).map_err(fail)?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(fail(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory",
        )));
    }
    Ok(file)
}

type Bytes = limit::Limited<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>>;

/// Streams checked records; an `Err` item is fatal and ends the iteration.
pub struct Reader {
    csv: csv::Reader<Bytes>,
    layout: Layout,
    source_name: String,
    max_record_bytes: usize,
    record: ByteRecord,
    done: bool,
    /// Still looking for a Windows-1252 file read as UTF-8: only for UTF-8, and only
    /// until real UTF-8 beyond ASCII shows the file is UTF-8 after all.
    diagnose_1252: bool,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("source_name", &self.source_name)
            .field("headers", &self.layout.headers)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Reads UTF-8 CSV (separator detected) from any byte source (`source_name` is used
    /// in messages) and checks its header. Tests and other front-ends use this.
    pub fn from_read(
        read: impl Read + Send + 'static,
        source_name: impl Into<String>,
        renames: &[(String, String)],
        max_record_bytes: usize,
    ) -> Result<Reader, InputError> {
        let format = Format::default();
        Reader::from_read_with(read, source_name, renames, max_record_bytes, format)
    }

    /// Like [`Reader::from_read`], in the given encoding and separator. [`open`] uses it.
    pub fn from_read_with(
        read: impl Read + Send + 'static,
        source_name: impl Into<String>,
        renames: &[(String, String)],
        max_record_bytes: usize,
        format: Format,
    ) -> Result<Reader, InputError> {
        let source_name = source_name.into();
        let mut decoded = decode::decoder(Box::new(read), format.encoding);
        let ahead = sniff::read_ahead(&mut decoded, max_record_bytes).map_err(|error| {
            InputError::Read {
                source_name: source_name.clone(),
                line: 1,
                error,
            }
        })?;
        let diagnose_1252 = format.encoding == Encoding::Utf8;
        if let Some((line, value)) = sniff::windows_1252_in(&ahead).filter(|_| diagnose_1252) {
            return Err(looks_like_1252(&source_name, line, &value));
        }
        let split = choose_split(&ahead, renames, &source_name, format.delimiter)?;
        let has_sep_line = sniff::sep_line(&ahead).is_some();
        let bytes = io::Cursor::new(ahead).chain(decoded);
        let mut reader = Reader {
            csv: parser(bytes, split.delimiter, max_record_bytes),
            layout: Layout {
                headers: Vec::new(),
                slots: Vec::new(),
                feeds: Vec::new(),
                delimiter: split.delimiter,
                default_building_name: None,
            },
            source_name,
            max_record_bytes,
            record: ByteRecord::new(),
            done: false,
            diagnose_1252,
        };
        if has_sep_line {
            reader.read_header()?;
        }
        let headers = reader.read_header()?;
        let split = Split {
            line: reader.start_line(),
            ..split
        };
        reader.layout = header::resolve(headers, renames, &reader.source_name, split)?;
        Ok(reader)
    }

    /// The header fields as found in the file.
    pub fn headers(&self) -> &[String] {
        &self.layout.headers
    }

    /// Whether rows can name a building: the file has a `building_name` column or
    /// `--building-name` gives a default (without either, every row is user-only).
    pub fn has_building_names(&self) -> bool {
        self.has_column("building_name") || self.layout.default_building_name.is_some()
    }

    /// Whether the file has a column feeding the known column `name` (under its own
    /// header or mapped with `--column`).
    pub fn has_column(&self, name: &str) -> bool {
        self.layout.columns().any(|c| c.name == name)
    }

    /// Headers that feed no known column (ignored; worth one warning).
    pub fn ignored_columns(&self) -> Vec<String> {
        self.layout.ignored()
    }

    /// The trimmed text of the last record's cell under `header` (matched like known
    /// columns: case-insensitive, trimmed), if that header feeds no known column. Lets a
    /// command read optional columns of its own (`links`: `language`, `price_zone`)
    /// without changing what `run` accepts. Call it right after [`Iterator::next`].
    pub fn unknown_cell(&self, header: &str) -> Option<String> {
        let wanted = header::normalise(header);
        let index = (0..self.layout.headers.len()).position(|i| {
            self.layout.is_unused(i) && header::normalise(&self.layout.headers[i]) == wanted
        })?;
        let bytes = self.record.get(index)?;
        Some(String::from_utf8_lossy(bytes).trim().to_owned())
    }

    /// The path or `<stdin>`.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    fn read_header(&mut self) -> Result<Vec<String>, InputError> {
        match self.csv.read_byte_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                return Err(InputError::Empty {
                    source_name: self.source_name.clone(),
                });
            }
            Err(error) => return Err(self.fatal(error)),
        }
        self.csv.get_mut().reset();
        Ok(header_fields(&self.record))
    }

    /// A record that is not UTF-8 but looks like Windows-1252 stops the run, naming
    /// `--encoding`, unless the file already showed real UTF-8 beyond ASCII (then it
    /// is one bad cell, which the row checker reports).
    fn windows_1252(&mut self) -> Option<InputError> {
        if !self.diagnose_1252 || self.record.as_slice().is_ascii() {
            return None;
        }
        let fields = || self.record.iter().filter(|f| !f.is_ascii());
        if fields().any(|f| std::str::from_utf8(f).is_ok()) {
            self.diagnose_1252 = false;
            return None;
        }
        let value = fields().find_map(decode::as_windows_1252)?;
        Some(looks_like_1252(
            &self.source_name,
            self.start_line(),
            &value,
        ))
    }

    /// The line where the record just read starts. csv's own record position is taken
    /// before skipped blank lines, so count back from the end instead: the lines it
    /// spans are its embedded newlines plus the `\n` that ended it (absent at EOF).
    fn start_line(&self) -> u64 {
        let end = self.csv.position().line();
        let embedded: usize = self
            .record
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count())
            .sum();
        let terminator = u64::from(!self.csv.get_ref().eof_seen());
        end.saturating_sub(embedded as u64 + terminator).max(1)
    }

    /// Maps a csv error to the fatal error, at the line of the record being read.
    fn fatal(&self, error: csv::Error) -> InputError {
        let line = record_line(&self.record);
        let source_name = self.source_name.clone();
        let error = match error.into_kind() {
            csv::ErrorKind::Io(error) if limit::is_budget_spent(&error) => {
                return InputError::RecordTooLong {
                    source_name,
                    line,
                    limit: self.max_record_bytes,
                };
            }
            csv::ErrorKind::Io(error) => error,
            other => io::Error::other(format!("{other:?}")),
        };
        InputError::Read {
            source_name,
            line,
            error,
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.csv.read_byte_record(&mut self.record) {
                Ok(true) if is_blank(&self.record) => self.csv.get_mut().reset(),
                Ok(true) => {
                    self.csv.get_mut().reset();
                    if let Some(error) = self.windows_1252() {
                        self.done = true;
                        return Some(Err(error));
                    }
                    return Some(Ok(check_record(
                        &self.layout,
                        &self.record,
                        self.start_line(),
                    )));
                }
                Ok(false) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(self.fatal(error)));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for Reader {}

/// The CSV parser over the decoded bytes, bounded per record. Only `\n` ends a record
/// (a `\r` before it is trimmed away with the value): that makes the start line
/// computable, see `Reader::start_line`.
fn parser(
    bytes: io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>,
    delimiter: Delimiter,
    max_record_bytes: usize,
) -> csv::Reader<Bytes> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter.byte())
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(limit::Limited::new(bytes, max_record_bytes))
}

/// The separator: `--delimiter` if given, else an Excel `sep=` line, else detected
/// from the header line.
fn choose_split(
    ahead: &[u8],
    renames: &[(String, String)],
    source: &str,
    flag: Option<Delimiter>,
) -> Result<Split, InputError> {
    let sep_line =
        sniff::sep_line(ahead)
            .transpose()
            .map_err(|value| InputError::UnsupportedSeparator {
                source_name: source.to_owned(),
                value,
            })?;
    let delimiter = match (flag, sep_line) {
        (Some(flag), _) => flag,
        (None, Some(sep)) => sep,
        (None, None) => sniff::detect(sniff::header_line(ahead), renames, source)?,
    };
    Ok(Split {
        line: 1,
        delimiter,
        explicit: flag.is_some(),
    })
}

fn looks_like_1252(source: &str, line: u64, value: &str) -> InputError {
    InputError::LooksLikeWindows1252 {
        source_name: source.to_owned(),
        line,
        value: display::shown(value.trim()),
    }
}

/// Header fields as text, trimmed (bytes that are not UTF-8 shown as U+FFFD).
fn header_fields(record: &ByteRecord) -> Vec<String> {
    record
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_owned())
        .collect()
}

/// Where csv believes the record being read starts (before any blank lines): close
/// enough for fatal errors, which stop the run anyway.
fn record_line(record: &ByteRecord) -> u64 {
    record.position().map_or(0, csv::Position::line)
}

fn is_blank(record: &ByteRecord) -> bool {
    record.iter().all(|field| field.trim_ascii().is_empty())
}
