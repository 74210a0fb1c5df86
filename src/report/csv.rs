//! CSV output: the per-row `--report` of a run and `export` of a checkpoint.
//!
//! Cells are escaped against spreadsheet formula injection: a cell starting with `=`,
//! `+`, `-`, `@`, tab or carriage return gets a leading `'`, so a hostile value in the
//! input cannot run as a formula when the operator opens the report in Excel. Bidi
//! controls (which input validation refuses, but an older checkpoint may hold) are
//! written escaped (`\u{202e}`), so no cell displays in another order than it reads.

use std::io::Write;

/// Header of the `--report` file. `outcome` is what this run did to the row: created,
/// verified_existing, user_updated, building_updated, adopted_existing, user_only, failed,
/// unresolved; `no_call` (unchanged, or not reached) or `not_sent` (rejected).
pub const REPORT_HEADER: [&str; 10] = [
    "line",
    "user_id",
    "external_user_id",
    "building_name",
    "building_id",
    "state",
    "attempts",
    "http_status",
    "error",
    "outcome",
];

/// Header of `export --format csv`. `property_id` is last, so scripts that read the
/// earlier columns by position keep working.
pub const EXPORT_HEADER: [&str; 7] = [
    "user_id",
    "external_user_id",
    "building_name",
    "building_id",
    "state",
    "error",
    "property_id",
];

/// Makes a cell safe to open in a spreadsheet.
pub fn escape_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Writes every bidi control of `cell` as its escape (`\u{202e}`).
pub fn escape_bidi(cell: &str) -> std::borrow::Cow<'_, str> {
    if !cell.chars().any(crate::bidi::is_bidi_control) {
        return cell.into();
    }
    cell.chars()
        .map(|c| {
            if crate::bidi::is_bidi_control(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Streams records (in header order) as CSV with escaped cells.
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    /// Starts the output with its header.
    pub fn new(out: W, header: &[&str]) -> csv::Result<Self> {
        let mut inner = csv::Writer::from_writer(out);
        inner.write_record(header)?;
        Ok(CsvWriter { inner })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &[String]) -> csv::Result<()> {
        self.inner.write_record(
            record
                .iter()
                .map(|cell| escape_formula(&escape_bidi(cell)).into_owned()),
        )
    }

    /// Flushes the output.
    pub fn finish(mut self) -> csv::Result<()> {
        self.inner.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_prefixes_are_neutralised() {
        assert_eq!(escape_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(escape_formula("+1"), "'+1");
        assert_eq!(escape_formula("-1"), "'-1");
        assert_eq!(escape_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(escape_formula("Main House"), "Main House");
        assert_eq!(escape_formula(""), "");
    }

    #[test]
    fn bidi_controls_are_written_escaped() {
        assert_eq!(escape_bidi("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_bidi("Main House"), "Main House");
    }

    #[test]
    fn records_are_quoted_and_escaped() {
        let mut out = Vec::new();
        let mut writer = CsvWriter::new(&mut out, &["x", "y"]).unwrap();
        writer
            .write(&["=1+1".to_string(), "a,b".to_string()])
            .unwrap();
        writer.finish().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "x,y\n'=1+1,\"a,b\"\n");
    }
}
