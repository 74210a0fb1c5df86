//! Safe display of untrusted cell values in messages: control and bidi-override
//! characters, quotes and backslashes are escaped, and long values are truncated.

/// How many characters of a value a message shows before "…".
pub const MAX_SHOWN_CHARS: usize = 40;

/// `value` made safe to print inside double quotes on a terminal or in a log.
pub fn shown(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes that are not UTF-8, shown with replacement characters.
pub fn shown_bytes(value: &[u8]) -> String {
    shown(&String::from_utf8_lossy(value))
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || crate::bidi::is_bidi_control(c)
        || matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}
