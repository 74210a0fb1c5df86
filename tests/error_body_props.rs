//! Property tests for what the client makes of a server's words (issue 8): an error body
//! of any bytes becomes one short, printable line; any `Retry-After` value is parsed
//! without a panic into a bounded pause or nothing.

use std::time::Duration;

use podero_onboard::api::error::{describe_body, one_line, parse_retry_after};
use proptest::prelude::*;

/// The longest line `describe_body` returns, in chars (300 and an ellipsis).
const MAX_CHARS: usize = 301;

/// Characters that must never reach a terminal, a log line or a CSV cell from a server:
/// controls (ESC, CR, LF, NUL, C1...) and the bidi overrides that make text lie.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{2028}' | '\u{2029}'
        )
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn assert_one_safe_line(line: &str) -> Result<(), TestCaseError> {
    prop_assert!(!line.is_empty());
    prop_assert!(
        line.chars().count() <= MAX_CHARS,
        "{} chars",
        line.chars().count()
    );
    prop_assert!(
        !line.chars().any(is_unprintable),
        "unprintable char in {line:?}"
    );
    prop_assert_eq!(line.trim(), line);
    Ok(())
}

/// Bodies a server might send: JSON in the shapes the client knows, HTML, text, with
/// hostile characters mixed in.
fn body_like() -> impl Strategy<Value = String> {
    let text = proptest::collection::vec(
        prop_oneof![
            Just("\u{1b}[31m".to_owned()),
            Just("\r\n".to_owned()),
            Just("\u{202e}".to_owned()),
            Just("\u{0}".to_owned()),
            Just("<title>".to_owned()),
            Just("</title>".to_owned()),
            Just("\"".to_owned()),
            "[a-zA-Z ]{0,20}",
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat());
    prop_oneof![
        text.clone()
            .prop_map(|t| serde_json::json!({ "detail": t }).to_string()),
        text.clone().prop_map(|t| {
            serde_json::json!({"detail": [{"loc": ["body", t.clone()], "msg": t}]}).to_string()
        }),
        (text.clone(), text.clone()).prop_map(|(e, d)| {
            serde_json::json!({"error": e, "error_description": d}).to_string()
        }),
        text.clone()
            .prop_map(|t| format!("<html><head><title>{t}</title></head><body>{t}</body></html>")),
        text,
    ]
}

proptest! {
    #[test]
    fn describe_body_of_arbitrary_bytes_is_one_safe_line(
        body in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        assert_one_safe_line(&describe_body(&body))?;
    }

    #[test]
    fn describe_body_of_server_like_bodies_is_one_safe_line(body in body_like()) {
        assert_one_safe_line(&describe_body(body.as_bytes()))?;
    }

    #[test]
    fn one_line_of_any_text_is_one_safe_line(text in any::<String>()) {
        assert_one_safe_line(&one_line(&text))?;
    }

    #[test]
    fn retry_after_of_any_text_never_panics(value in any::<String>()) {
        let _ = parse_retry_after(&value);
    }

    #[test]
    fn retry_after_of_any_number_never_panics(value in any::<f64>()) {
        for text in [value.to_string(), format!("{value:e}")] {
            if let Some(pause) = parse_retry_after(&text) {
                prop_assert!(pause <= MAX_RETRY_AFTER, "{text}: {pause:?}");
            }
        }
    }

    #[test]
    fn retry_after_seconds_are_taken_as_given(secs in 0u64..=3600) {
        prop_assert_eq!(
            parse_retry_after(&secs.to_string()),
            Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn retry_after_of_any_date_is_bounded(secs in 0u64..=253_402_300_799) {
        let when = std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let text = httpdate::fmt_http_date(when);
        let pause = parse_retry_after(&text);
        prop_assert!(pause.is_some(), "{text}");
        prop_assert!(pause.unwrap_or_default() <= MAX_RETRY_AFTER, "{text}: {pause:?}");
    }
}

/// The longest pause a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = podero_onboard::api::gate::MAX_RETRY_AFTER;

#[test]
fn retry_after_edge_values_never_panic() {
    for value in [
        "1e30",
        "1e300",
        "inf",
        "-inf",
        "NaN",
        "-0",
        "-1",
        "18446744073709551616",
        "0.0000001",
        "",
        " ",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 32 Foo 2020 99:99:99 GMT",
    ] {
        if let Some(pause) = parse_retry_after(value) {
            assert!(pause <= MAX_RETRY_AFTER, "{value}: {pause:?}");
        }
    }
    assert_eq!(parse_retry_after("-1"), None);
    assert_eq!(parse_retry_after("NaN"), None);
}
