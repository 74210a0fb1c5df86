//! What the first lines say, read ahead before the CSV parser starts: an Excel `sep=`
//! line, the separator that splits the header into the required columns, and bytes
//! that show a Windows-1252 file being read as UTF-8.
//!
//! Design: [`read_ahead`] takes a bounded prefix of the decoded stream (the header and
//! some rows); the parser later re-reads it, chained before the rest, so nothing is
//! read twice from the source and line numbers stay those of the file. Looking at the
//! prefix here, in `open`, makes these problems stop the run in its first second,
//! before any request (the token included).

use std::io::{self, Read};

use super::InputError;
use super::decode;
use super::format::Delimiter;
use super::header::{self, Split};

/// How many decoded bytes are read ahead (more if the header is longer): enough for a
/// few hundred rows, so an umlaut in the first of them is diagnosed before any request.
pub(super) const LOOKAHEAD_BYTES: usize = 64 << 10;

/// Reads the first bytes of `read`: at least [`LOOKAHEAD_BYTES`] and two whole lines
/// (an Excel `sep=` line and the header), unless the stream ends first or no line ends
/// within `max_record_bytes` (the parser then reports the record as too long).
pub(super) fn read_ahead(read: &mut dyn Read, max_record_bytes: usize) -> io::Result<Vec<u8>> {
    let cap = max_record_bytes.max(LOOKAHEAD_BYTES);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8 << 10];
    loop {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        if (bytes.len() >= LOOKAHEAD_BYTES && lines >= 2) || bytes.len() > cap {
            return Ok(bytes);
        }
        match read.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The `n`-th line (0-based) of `bytes`, without its line break.
fn line(bytes: &[u8], n: usize) -> &[u8] {
    let line = bytes.split(|&b| b == b'\n').nth(n).unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An Excel `sep=X` first line: `None` if there is none, `Some(Err(shown X))` if X is
/// not a supported separator.
pub(super) fn sep_line(bytes: &[u8]) -> Option<Result<Delimiter, String>> {
    let first = String::from_utf8_lossy(line(bytes, 0));
    let first = first.trim_matches('"');
    let prefix = first.get(..4)?;
    if !prefix.eq_ignore_ascii_case("sep=") {
        return None;
    }
    let value = &first[4..];
    let mut chars = value.chars();
    let supported = match (chars.next(), chars.next()) {
        (Some(c), None) => Delimiter::from_char(c),
        _ => None,
    };
    Some(supported.ok_or_else(|| super::display::shown(value)))
}

/// The line of the first byte that is not UTF-8, and its field read as Windows-1252,
/// if the prefix looks like a Windows-1252 file. A prefix that already holds valid
/// UTF-8 beyond ASCII is a UTF-8 file with a bad cell: the row checker reports that.
pub(super) fn windows_1252_in(bytes: &[u8]) -> Option<(u64, String)> {
    let error = std::str::from_utf8(bytes).err()?;
    // `None`: the prefix ends mid-character; the parser will see the rest.
    error.error_len()?;
    let at = error.valid_up_to();
    if !bytes[..at].is_ascii() {
        return None;
    }
    let boundary = |b: &u8| matches!(b, b',' | b';' | b'\t' | b'"' | b'\r' | b'\n');
    let start = bytes[..at].iter().rposition(boundary).map_or(0, |i| i + 1);
    let end = bytes[at..]
        .iter()
        .position(boundary)
        .map_or(bytes.len(), |i| at + i);
    let value = decode::as_windows_1252(&bytes[start..end])?;
    let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
    Some((line, value))
}

/// The header line when there is no `sep=` line: the first.
pub(super) fn header_line(bytes: &[u8]) -> &[u8] {
    line(bytes, 0)
}

/// The separator that splits `header` into the required columns (honouring renames).
/// None fits: the one giving the most fields, whose error the caller then reports.
/// More than one: ambiguous, the operator must say which.
pub(super) fn detect(
    header: &[u8],
    renames: &[(String, String)],
    source: &str,
) -> Result<Delimiter, InputError> {
    let split = |delimiter| Split {
        line: 1,
        delimiter,
        explicit: false,
    };
    let fits: Vec<Delimiter> = Delimiter::ALL
        .into_iter()
        .filter(|&d| header::resolve(fields(header, d), renames, source, split(d)).is_ok())
        .collect();
    match fits[..] {
        [one] => Ok(one),
        [] => Ok(Delimiter::ALL
            .into_iter()
            .rev()
            .max_by_key(|&d| fields(header, d).len())
            .unwrap_or(Delimiter::Comma)),
        _ => Err(InputError::AmbiguousDelimiter {
            source_name: source.to_owned(),
            line: 1,
            candidates: fits,
        }),
    }
}

/// `header` split with `delimiter` as the parser would (quotes honoured), trimmed.
fn fields(header: &[u8], delimiter: Delimiter) -> Vec<String> {
    let mut record = csv::ByteRecord::new();
    let read = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter.byte())
        .from_reader(header)
        .read_byte_record(&mut record);
    match read {
        Ok(true) => super::header_fields(&record),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sep_line_is_recognised_in_any_case_and_quoted() {
        assert_eq!(
            sep_line(b"sep=;\r\nuser_id"),
            Some(Ok(Delimiter::Semicolon))
        );
        assert_eq!(sep_line(b"SEP=,\n"), Some(Ok(Delimiter::Comma)));
        assert_eq!(sep_line(b"\"sep=\t\"\n"), Some(Ok(Delimiter::Tab)));
        assert_eq!(sep_line(b"sep=|\n"), Some(Err("|".to_owned())));
        assert_eq!(sep_line(b"user_id;sep=;\n"), None);
        assert_eq!(sep_line(b"s\xFCp=;\n"), None);
    }

    #[test]
    fn max_by_key_prefers_the_earlier_separator_on_a_tie() {
        let header = b"a b c";
        assert_eq!(detect(header, &[], "t.csv").unwrap(), Delimiter::Comma);
    }

    #[test]
    fn windows_1252_prefix_gives_line_and_decoded_field() {
        let bytes = b"user_id;name\r\nx;Anna\r\ny;M\xFCller\r\n";
        assert_eq!(windows_1252_in(bytes), Some((3, "Müller".to_owned())));
        let utf8_first = "user_id;name\nx;Jürgen\ny;M\u{FC}ller\n".as_bytes();
        let mut mixed = utf8_first.to_vec();
        mixed.extend_from_slice(b"z;M\xFCller\n");
        assert_eq!(
            windows_1252_in(&mixed),
            None,
            "a UTF-8 file with one bad cell"
        );
        assert_eq!(windows_1252_in(b"a;b\nc;d\xC3"), None, "cut mid-character");
    }
}
