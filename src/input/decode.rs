//! Decoding: the file's bytes → UTF-8, streamed, before the CSV parser sees them.
//!
//! Design:
//! - **Streamed.** `encoding_rs_io::DecodeReaderBytes` transcodes chunk by chunk (a few
//!   KiB of buffer), so a 1M-row Windows-1252 file costs no more memory than a UTF-8 one.
//! - **UTF-8 passes through untouched.** For the default encoding nothing is transcoded:
//!   invalid bytes reach the row checker, which reports the cell, instead of being turned
//!   into U+FFFD and sent. A byte-order mark still rules: a UTF-8 BOM is dropped, a
//!   UTF-16 BOM switches to UTF-16 (and wins over `--encoding` too, since it cannot lie).
//! - **A wrong guess is diagnosed, not suffered.** Bytes that are not UTF-8 but read as
//!   Windows-1252 give plausible text (letters, no control codes) are what Excel's plain
//!   "CSV" saves on Windows; [`as_windows_1252`] recognises them so the run stops once,
//!   naming `--encoding`, instead of rejecting every row with an umlaut.

use std::io::Read;

use encoding_rs_io::DecodeReaderBytesBuilder;

use super::format::Encoding;

/// Wraps `read` so it yields UTF-8 (or, for [`Encoding::Utf8`], the bytes as they are).
pub(super) fn decoder(read: Box<dyn Read + Send>, encoding: Encoding) -> Box<dyn Read + Send> {
    let mut builder = DecodeReaderBytesBuilder::new();
    builder.strip_bom(true).bom_override(true);
    match encoding {
        Encoding::Utf8 => builder.utf8_passthru(true),
        other => builder.encoding(Some(other.decoder())),
    };
    Box::new(builder.build(read))
}

/// `Some(text)` when `bytes` are not UTF-8 but look like Windows-1252: read that way
/// they contain a letter beyond ASCII and no control characters (other than tab and
/// line breaks). Binary junk or the five bytes Windows-1252 leaves undefined do not.
pub(super) fn as_windows_1252(bytes: &[u8]) -> Option<String> {
    if std::str::from_utf8(bytes).is_ok() {
        return None;
    }
    let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
    let control = |c: char| c.is_control() && !matches!(c, '\t' | '\r' | '\n');
    let plausible =
        !text.chars().any(control) && text.chars().any(|c| !c.is_ascii() && c.is_alphabetic());
    plausible.then(|| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8], encoding: Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(Box::new(std::io::Cursor::new(bytes.to_vec())), encoding)
            .read_to_end(&mut out)
            .expect("in-memory read");
        out
    }

    #[test]
    fn utf8_passes_invalid_bytes_through_and_drops_the_bom() {
        assert_eq!(
            decoded(b"\xEF\xBB\xBFM\xFCller", Encoding::Utf8),
            b"M\xFCller"
        );
    }

    #[test]
    fn utf16_bom_switches_encoding_even_by_default() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("Straße".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decoded(&utf16, Encoding::Utf8), "Straße".as_bytes());
        assert_eq!(decoded(&utf16, Encoding::Windows1252), "Straße".as_bytes());
    }

    #[test]
    fn windows_1252_and_latin1_decode_umlauts_and_euro() {
        let bytes = b"M\xFCller, Stra\xDFe \x80";
        assert_eq!(
            decoded(bytes, Encoding::Windows1252),
            "Müller, Straße €".as_bytes()
        );
        assert_eq!(
            decoded(bytes, Encoding::Latin1),
            "Müller, Straße €".as_bytes()
        );
    }

    #[test]
    fn windows_1252_is_recognised_but_junk_and_utf8_are_not() {
        assert_eq!(as_windows_1252(b"M\xFCller").as_deref(), Some("Müller"));
        assert_eq!(
            as_windows_1252(b"Graz-Stra\xDFgang").as_deref(),
            Some("Graz-Straßgang")
        );
        assert_eq!(as_windows_1252("Müller".as_bytes()), None, "valid UTF-8");
        assert_eq!(as_windows_1252(b"\x00\xFF\xFE"), None, "control bytes");
        assert_eq!(as_windows_1252(b"Caf\x81"), None, "undefined in 1252");
        assert_eq!(
            as_windows_1252(b"\x80\x93"),
            None,
            "no letter: € and a quote"
        );
    }
}
