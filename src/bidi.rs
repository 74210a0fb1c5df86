//! Unicode bidirectional controls: invisible marks that reorder how text is displayed, so
//! a value can read differently from what it is ("Trojan Source"). Cells holding them are
//! rejected ([`crate::input`]); server text and header names have them escaped or removed
//! before they reach a terminal, a log or a report.

/// LRM/RLM (U+200E/U+200F), the Arabic letter mark (U+061C), the embeddings and overrides
/// (U+202A–U+202E) and the isolates (U+2066–U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bidi_control_and_nothing_else() {
        let controls = "\u{200E}\u{200F}\u{061C}\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\
                        \u{2066}\u{2067}\u{2068}\u{2069}";
        assert!(controls.chars().all(is_bidi_control));
        assert!(
            !"aé\u{0627}\u{05D0} \u{200D}\u{2028}"
                .chars()
                .any(is_bidi_control)
        );
    }
}
