//! What one HTTP exchange with Podero can go wrong with, and what it means for the job.
//!
//! The classification is the heart of "nothing doubled": a building POST may only be
//! re-sent when the failure proves the server did not act on it ([`Failure::NotProcessed`],
//! [`Failure::Throttled`]). Anything that may have reached the server is
//! [`Failure::Ambiguous`], and the pipeline resolves it instead of retrying.

use std::time::Duration;

use super::gate::MAX_RETRY_AFTER;
use crate::bidi::is_bidi_control;

/// How a request failed, from the job's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429: the server refused the request for now; it was not processed.
    Throttled {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The server certainly did not act on the request (connect error, 503): safe to re-send.
    NotProcessed,
    /// The request may or may not have been processed (timeout, dropped connection,
    /// 500/502/504, a 2xx we cannot read). Safe to retry only for idempotent calls.
    Ambiguous,
    /// The server rejected this row's request (400, 404, 409, 422, other 4xx): retrying
    /// the same data cannot help.
    Rejected,
    /// 401: the token was not accepted.
    Unauthorized,
    /// The run cannot go on (403, redirects, rejected credentials).
    Fatal,
}

impl Failure {
    /// Classifies an HTTP status that is not a success.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            429 => Failure::Throttled { retry_after },
            503 => Failure::NotProcessed,
            401 => Failure::Unauthorized,
            403 => Failure::Fatal,
            300..=399 => Failure::Fatal,
            400..=499 => Failure::Rejected,
            _ => Failure::Ambiguous,
        }
    }

    /// Whether a later attempt with the same data might succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Failure::Throttled { .. } | Failure::NotProcessed | Failure::Ambiguous
        )
    }
}

/// A failed call: the class, the HTTP status when there was one, and a readable message
/// (already scrubbed of secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// What the failure means for the job.
    pub failure: Failure,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The server's message or the transport error, one line, bounded length.
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CallError {}

/// Longest message kept from a server body or transport error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Turns an error body into one readable line, whatever the server sent: django-ninja's
/// `{"detail": "..."}` or `{"detail": [{"loc", "msg"}]}`, OAuth's `{"error", "error_description"}`,
/// an HTML page from a proxy (its `<title>`), or any text (truncated).
pub fn describe_body(body: &[u8]) -> String {
    describe_body_redacted(body, &|text| text.to_owned())
}

/// [`describe_body`] with `redact` applied to the whole text before it is made one line
/// and shortened: cut first, a secret straddling the cut (or one whose spaces were
/// collapsed) would no longer match and half of it would be printed. `redact` sees the
/// raw body and then the description (a JSON string's escapes are undone by then).
pub fn describe_body_redacted(body: &[u8], redact: &dyn Fn(&str) -> String) -> String {
    let text = redact(&String::from_utf8_lossy(body));
    let described = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| describe_json(&json))
        .or_else(|| html_title(&text))
        .unwrap_or(text);
    one_line(&redact(&described))
}

fn describe_json(json: &serde_json::Value) -> Option<String> {
    if let Some(detail) = json.get("detail") {
        return Some(match detail {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => describe_validation(items),
            other => other.to_string(),
        });
    }
    let error = json.get("error")?.as_str()?;
    Some(
        match json.get("error_description").and_then(|d| d.as_str()) {
            Some(description) => format!("{error}: {description}"),
            None => error.to_owned(),
        },
    )
}

/// `[{"loc": ["body", "payload", "name"], "msg": "too long"}]` → `name: too long`.
fn describe_validation(items: &[serde_json::Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| {
            let field = item
                .get("loc")
                .and_then(|loc| loc.as_array())
                .and_then(|loc| loc.last())
                .map(|last| {
                    last.as_str()
                        .map_or_else(|| last.to_string(), str::to_owned)
                });
            let msg = item
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or("invalid");
            match field {
                Some(field) => format!("{field}: {msg}"),
                None => msg.to_owned(),
            }
        })
        .collect();
    parts.join("; ")
}

fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(text.get(start..end)?.trim().to_owned())
}

/// Collapses whitespace, control characters and bidi controls and bounds the length, so
/// a message is safe to print on one line, in a CSV cell or in a log (a server's text
/// can neither move the cursor nor make itself read backwards).
pub fn one_line(text: &str) -> String {
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control() || is_bidi_control(c)) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_MESSAGE_CHARS {
            let cut: String = out.chars().take(MAX_MESSAGE_CHARS).collect();
            return format!("{cut}…");
        }
    }
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        out
    }
}

/// A transport error: what happened and its innermost cause (e.g. "could not connect:
/// Connection refused (os error 111)"), never reqwest's generic "error sending request".
/// Also says whether the request may have reached the server. The text is whole: redact
/// it, then make it [`one_line`].
pub fn describe_transport(error: &reqwest::Error) -> (Failure, String) {
    let failure = if error.is_connect() {
        Failure::NotProcessed
    } else {
        Failure::Ambiguous
    };
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(next) = cause.and_then(std::error::Error::source) {
        cause = Some(next);
    }
    let message = match cause {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    };
    (failure, message)
}

/// Parses `Retry-After` as delta-seconds or an HTTP date, at most [`MAX_RETRY_AFTER`]
/// (a server asking for years, or for 1e300 seconds, gets the cap, not a panic).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_nan() || secs < 0.0 {
            return None;
        }
        let pause = Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER);
        return Some(pause.min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let pause = when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(pause.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_for_the_post_rules() {
        assert_eq!(Failure::from_status(503, None), Failure::NotProcessed);
        assert_eq!(Failure::from_status(500, None), Failure::Ambiguous);
        assert_eq!(Failure::from_status(502, None), Failure::Ambiguous);
        assert_eq!(Failure::from_status(504, None), Failure::Ambiguous);
        assert_eq!(Failure::from_status(404, None), Failure::Rejected);
        assert_eq!(Failure::from_status(422, None), Failure::Rejected);
        assert_eq!(Failure::from_status(401, None), Failure::Unauthorized);
        assert_eq!(Failure::from_status(403, None), Failure::Fatal);
        assert_eq!(Failure::from_status(302, None), Failure::Fatal);
    }

    #[test]
    fn error_bodies_are_described_leniently() {
        assert_eq!(describe_body(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            describe_body(
                br#"{"detail":[{"type":"x","loc":["body","payload","name"],"msg":"too long"}]}"#
            ),
            "name: too long"
        );
        assert_eq!(
            describe_body(br#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        assert_eq!(
            describe_body(b"<html><head><title>502 Bad Gateway</title></head><body>\n<h1>x</h1></body></html>"),
            "502 Bad Gateway"
        );
        assert_eq!(describe_body(b""), "(empty body)");
        assert_eq!(describe_body(b"line one\r\nline\ttwo"), "line one line two");
        let long = "x".repeat(5000);
        assert!(describe_body(long.as_bytes()).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn retry_after_is_capped_and_never_panics() {
        assert_eq!(parse_retry_after("1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("inf"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
    }

    /// A secret is matched in the whole text: 280 characters before it, it still goes
    /// whole, not its first characters up to the 300-character cut.
    #[test]
    fn redaction_sees_the_whole_text_before_the_cut() {
        let token = "0123456789abcdefghijklmnopqrstu";
        let body = format!(
            "{{\"detail\": \"{} you sent Bearer {token}\"}}",
            "x".repeat(280)
        );
        let redact = |text: &str| text.replace(token, "[redacted]");
        let described = describe_body_redacted(body.as_bytes(), &redact);
        assert!(!described.contains("0123456789"), "{described}");
        assert!(described.ends_with('…'), "{described}");
    }

    #[test]
    fn a_secret_with_runs_of_spaces_is_redacted_before_they_collapse() {
        let secret = "correct horse  battery\tstaple";
        let body = serde_json::json!({ "detail": format!("you sent {secret}") }).to_string();
        let redact = |text: &str| text.replace(secret, "[redacted]");
        assert_eq!(
            describe_body_redacted(body.as_bytes(), &redact),
            "you sent [redacted]"
        );
    }

    #[test]
    fn bidi_controls_do_not_survive() {
        assert_eq!(
            describe_body("{\"detail\":\"abc\u{202e}def\u{2066}\"}".as_bytes()),
            "abc def"
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("soon"), None);
        let past = httpdate::fmt_http_date(std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
    }
}
