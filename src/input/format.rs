//! The file's format as the operator names it: text encoding (`--encoding`) and field
//! separator (`--delimiter`). [`Format::default`] means "UTF-8, unless a byte-order mark
//! says UTF-16; separator detected from the header line" — what a new user expects.
//!
//! Only the encodings Podero's partners' spreadsheets actually produce are offered
//! (Excel saves "CSV UTF-8", "CSV" in the Windows code page, or "Unicode text" as
//! UTF-16), so a typo is a clear error rather than a silently exotic decoder.

use std::fmt;

/// A text encoding the reader decodes to UTF-8 as it streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, the default. A UTF-16 byte-order mark switches to UTF-16 by itself; bytes
    /// that are not UTF-8 make an invalid cell, or stop the run with a hint when they
    /// look like Windows-1252.
    #[default]
    Utf8,
    /// Windows-1252: what Excel's plain "CSV" saves on Western European Windows.
    Windows1252,
    /// ISO-8859-1 (Latin-1). Read as Windows-1252, its superset for every printable
    /// character (browsers do the same); the C1 control codes it differs on are never
    /// valid cell content anyway.
    Latin1,
    /// UTF-16 little-endian (Excel's "Unicode text"); a big-endian BOM wins.
    Utf16Le,
    /// UTF-16 big-endian; a little-endian BOM wins.
    Utf16Be,
}

impl Encoding {
    /// The `encoding_rs` decoder for this encoding.
    pub(super) fn decoder(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Windows1252 | Encoding::Latin1 => encoding_rs::WINDOWS_1252,
            Encoding::Utf16Le => encoding_rs::UTF_16LE,
            Encoding::Utf16Be => encoding_rs::UTF_16BE,
        }
    }

    /// The name `--encoding` accepts for it.
    pub fn flag(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Latin1 => "iso-8859-1",
            Encoding::Utf16Le => "utf-16",
            Encoding::Utf16Be => "utf-16be",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// Parses an `--encoding` value (case-insensitive; common aliases accepted).
pub fn parse_encoding(s: &str) -> Result<Encoding, String> {
    let encoding = match s.trim().to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Encoding::Utf8,
        "windows-1252" | "cp1252" | "win-1252" => Encoding::Windows1252,
        "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" => Encoding::Latin1,
        "utf-16" | "utf16" | "utf-16le" => Encoding::Utf16Le,
        "utf-16be" => Encoding::Utf16Be,
        _ => {
            return Err(format!(
                "unknown encoding \"{}\": use utf-8, windows-1252, iso-8859-1 or utf-16 \
                 (a CSV saved by Excel as plain \"CSV\" on Windows is windows-1252)",
                super::display::shown(s)
            ));
        }
    };
    Ok(encoding)
}

/// A field separator the reader supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    /// `,` (the CSV default).
    Comma,
    /// `;` (Excel in German, Austrian, Italian, Swedish... locales).
    Semicolon,
    /// A tab (Excel's "Text (tab-delimited)").
    Tab,
}

impl Delimiter {
    /// Every supported separator, in the order detection prefers on a tie.
    pub const ALL: [Delimiter; 3] = [Delimiter::Comma, Delimiter::Semicolon, Delimiter::Tab];

    /// The separator byte.
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
        }
    }

    /// The separator a byte stands for, if supported.
    pub(super) fn from_char(c: char) -> Option<Delimiter> {
        Delimiter::ALL
            .into_iter()
            .find(|d| char::from(d.byte()) == c)
    }

    /// How `--delimiter` spells it, quoted for a shell: `','`, `';'`, `tab`.
    pub fn flag(self) -> &'static str {
        match self {
            Delimiter::Comma => "','",
            Delimiter::Semicolon => "';'",
            Delimiter::Tab => "tab",
        }
    }

    /// The plural noun used in messages ("separated by semicolons").
    pub(super) fn plural(self) -> &'static str {
        match self {
            Delimiter::Comma => "commas",
            Delimiter::Semicolon => "semicolons",
            Delimiter::Tab => "tabs",
        }
    }
}

impl fmt::Display for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// Parses a `--delimiter` value: `,` `;` `tab` (or `comma`, `semicolon`, a real tab).
pub fn parse_delimiter(s: &str) -> Result<Delimiter, String> {
    match s.to_ascii_lowercase().as_str() {
        "," | "comma" => Ok(Delimiter::Comma),
        ";" | "semicolon" => Ok(Delimiter::Semicolon),
        "\t" | "tab" | "\\t" => Ok(Delimiter::Tab),
        _ => Err(format!(
            "unsupported delimiter \"{}\": use ',' ';' or tab (quote ';' for the shell), \
             or leave --delimiter out to detect it from the header",
            super::display::shown(s)
        )),
    }
}

/// How to decode and split the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// `--encoding`.
    pub encoding: Encoding,
    /// `--delimiter`; `None` detects it (an Excel `sep=` first line, else the header).
    pub delimiter: Option<Delimiter>,
}
