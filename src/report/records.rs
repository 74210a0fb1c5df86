//! Records (cells in a header's order) streamed as CSV (formula-safe, see [`super::csv`])
//! or as JSON lines, one object per record: what `export` prints.

use std::io::Write;

use super::csv::CsvWriter;

/// Where records go, in either format.
pub enum Records<W: Write> {
    /// CSV with a header line (boxed: the csv writer holds its buffer inline).
    Csv(Box<CsvWriter<W>>),
    /// One JSON object per line, keyed by the header.
    Json {
        /// The output.
        out: W,
        /// The keys.
        header: Vec<&'static str>,
        /// Empty cells are `null` rather than `""`.
        empty_is_null: bool,
    },
}

impl<W: Write> Records<W> {
    /// CSV, starting with the header.
    pub fn csv(out: W, header: &[&str]) -> std::io::Result<Self> {
        CsvWriter::new(out, header)
            .map(|writer| Records::Csv(Box::new(writer)))
            .map_err(io_error)
    }

    /// JSON lines.
    pub fn json(out: W, header: Vec<&'static str>, empty_is_null: bool) -> Self {
        Records::Json {
            out,
            header,
            empty_is_null,
        }
    }

    /// Writes one record.
    pub fn write(&mut self, cells: Vec<String>) -> std::io::Result<()> {
        match self {
            Records::Csv(writer) => writer.write(&cells).map_err(io_error),
            Records::Json {
                out,
                header,
                empty_is_null,
            } => {
                let object: serde_json::Map<String, serde_json::Value> = header
                    .iter()
                    .zip(cells)
                    .map(|(key, value)| {
                        let value = if *empty_is_null && value.is_empty() {
                            serde_json::Value::Null
                        } else {
                            value.into()
                        };
                        (key.to_string(), value)
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(object))
            }
        }
    }

    /// Flushes the output.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            Records::Csv(writer) => (*writer).finish().map_err(io_error),
            Records::Json { mut out, .. } => out.flush(),
        }
    }
}

/// The I/O error inside a CSV error, its kind kept (csv's `From` makes every kind `Other`),
/// so a closed pipe is still recognised as one.
fn io_error(error: csv::Error) -> std::io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => std::io::Error::other(format!("{other:?}")),
    }
}
