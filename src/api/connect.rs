//! The Connect calls: create a device onboarding session (a Connect link), list a user's
//! heat pumps, assign a heat pump to a building. They share `Client::call`, so every
//! attempt passes the one gate, retries, token handling and breaker of the run.
//!
//! A session POST is not idempotent, but an extra session is only an extra link that
//! expires by itself (by the end of the next day), never a lasting duplicate. So, unlike a
//! building POST, an ambiguous failure (timeout, dropped connection, 5xx) is retried.
//! Session ids and links are capabilities: nothing here logs a response body on success,
//! and the session path is never requested with an id (the debug log shows URLs).

use reqwest::Method;
use serde::Deserialize;
use uuid::Uuid;

use super::{Body, CallError, Client, Failure, Request};

/// The error text with every URL and session reference cut out. Error texts quote the
/// server's error body, which goes to stderr (the `-vv` request log too), the summary and
/// the checkpoint's `error`; a server that echoed a link there must not leak it (links are
/// capabilities). [`Client`] applies it to every error body it reads, whatever the call;
/// the device-onboarding calls get [`redact_session_text`] on top.
pub fn redact_links(text: &str) -> String {
    map_words(text, |word| {
        let lower = word.to_ascii_lowercase();
        lower.contains("://") || lower.contains("onboarding_session_id")
    })
}

/// The stricter redaction for error bodies of the device-onboarding endpoints, where any
/// id may be the session id and any host or path may be a link without its scheme: on top
/// of [`redact_links`], every word holding a UUID (hyphenated or 32 hex digits), a `/`, a
/// `key=value` or a host name (`connect.podero.com`) is cut out. The rest of the message
/// (what was wrong with the request) stays readable.
pub fn redact_session_text(text: &str) -> String {
    redact_links(&map_words(text, |word| {
        word.contains('/') || word.contains('=') || has_uuid(word) || is_host_like(word)
    }))
}

/// Replaces each whitespace-separated word for which `cut` holds with `[link removed]`,
/// keeping the whitespace as it was (the text is made one line only after redaction).
fn map_words(text: &str, cut: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        if cut(word) {
            out.push_str("[link removed]");
            out.push_str(&piece[word.len()..]);
        } else {
            out.push_str(piece);
        }
    }
    out
}

/// Whether `word` holds a UUID: 8-4-4-4-12 hex digits, or 32 hex digits in a row.
fn has_uuid(word: &str) -> bool {
    let bytes = word.as_bytes();
    let hyphenated = |at: &[u8]| {
        at.len() >= 36
            && at[..36].iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        run = if b.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= 32 || hyphenated(&bytes[i..]) {
            return true;
        }
    }
    false
}

/// `connect.podero.com`, `example.org`: labels joined by dots, the last of two or more
/// letters (so `e.g`, `v2.0` and a sentence's final dot are not hosts).
fn is_host_like(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_alphanumeric());
    let Some((head, tld)) = word.rsplit_once('.') else {
        return false;
    };
    !head.is_empty()
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && head.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// The host Podero documents for Connect links.
pub const CONNECT_HOST: &str = "connect.podero.com";

/// Checks a Connect link before it is stored and mailed to a customer: `https` with a
/// host, and no control, bidi or whitespace characters (a URL parser would silently drop
/// a tab or newline; a mail-merge or spreadsheet would not). Another host than
/// [`CONNECT_HOST`] is allowed (Podero may move it) but warned about once per run. The
/// reason never quotes the link.
fn check_link(link: &str) -> Result<(), &'static str> {
    if link
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || crate::bidi::is_bidi_control(c))
    {
        return Err("holds control, bidi or space characters");
    }
    let url = reqwest::Url::parse(link).map_err(|_| "is not a URL")?;
    if url.scheme() != "https" {
        return Err("does not use https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("carries credentials");
    }
    let host = url.host_str().ok_or("has no host")?;
    if !host.eq_ignore_ascii_case(CONNECT_HOST) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "the server's Connect links point at a host under {}, not {CONNECT_HOST} as \
                 Podero documents; they are written to --out as received: check --base-url, \
                 and that the links work before mailing them",
                domain(host)
            );
        });
    }
    Ok(())
}

/// The last two labels of a host: enough to judge it, and never a per-session subdomain.
fn domain(host: &str) -> &str {
    let mut dots = host.rmatch_indices('.').map(|(i, _)| i);
    match (dots.next(), dots.next()) {
        (Some(_), Some(second)) => &host[second + 1..],
        _ => host,
    }
}

/// A session the server created.
#[derive(Clone, Debug, Deserialize)]
pub struct Session {
    /// The session id.
    pub id: Uuid,
    /// The Connect link to mail to the customer.
    pub authentication_url: String,
    /// Last day the link works (`YYYY-MM-DD`).
    pub expiration_date: String,
}

/// A heat pump of a user, as listed.
#[derive(Clone, Debug, Deserialize)]
pub struct HeatPump {
    /// Its id.
    pub id: Uuid,
    /// The building it is assigned to.
    #[serde(default)]
    pub building: Option<Uuid>,
    /// Whether the customer connected it.
    #[serde(default)]
    pub is_authenticated: bool,
}

impl Client {
    /// `POST /api/partners/v2.0/device-onboarding`: a 2xx without a readable session is an
    /// ambiguous failure (a session may exist; it expires by itself).
    pub async fn create_session(&self, body: &serde_json::Value) -> Result<Session, CallError> {
        let root = self
            .api
            .rsplit_once("/org/")
            .map_or(self.api.as_str(), |(root, _)| root);
        let request = Request {
            method: Method::POST,
            url: format!("{root}/device-onboarding"),
            target: None,
            body: Some(Body::Json(body)),
            // An extra session is harmless (see the module header): retry like a PUT.
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        let (status, bytes) = self.call(&request).await?;
        let session = serde_json::from_slice::<Session>(&bytes).map_err(|_| CallError {
            failure: Failure::Ambiguous,
            status: Some(status),
            // The body may hold a link: never quote it.
            message: format!("the server answered {status} without a session id and link"),
        })?;
        check_link(&session.authentication_url).map_err(|why| CallError {
            failure: Failure::Rejected,
            status: Some(status),
            message: format!(
                "the server answered {status} with a Connect link that {why}; it was not \
                 stored and this building has no link: report it to Podero"
            ),
        })?;
        Ok(session)
    }

    /// `GET .../users/{user_id}/heat-pumps`.
    pub async fn list_heat_pumps(&self, user: Uuid) -> Result<Vec<HeatPump>, CallError> {
        let url = format!("{}/users/{user}/heat-pumps", self.api);
        self.get_json(
            url,
            "the list of heat pumps was not a JSON array of heat pumps",
        )
        .await
    }

    /// `PUT .../users/{user_id}/heat-pumps/{id}` with `{"building_id": ...}` (partial, idempotent).
    pub async fn assign_heat_pump(
        &self,
        user: Uuid,
        heat_pump: Uuid,
        building: Uuid,
    ) -> Result<(), CallError> {
        let body = serde_json::json!({ "building_id": building });
        let request = Request {
            method: Method::PUT,
            url: format!("{}/users/{user}/heat-pumps/{heat_pump}", self.api),
            target: None,
            body: Some(Body::Json(&body)),
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        self.call(&request).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_errors_lose_ids_hosts_and_paths_but_keep_their_words() {
        let id = "8c4b2f0e-6a1d-4e3b-9f7a-2d5c1e0b3a49";
        let text = format!(
            "a session exists: {id} (see connect.podero.com/s/{id}, token={}, ref {})",
            "abc", "8c4b2f0e6a1d4e3b9f7a2d5c1e0b3a49"
        );
        let redacted = redact_session_text(&text);
        assert_eq!(
            redacted,
            "a session exists: [link removed] (see [link removed] [link removed] ref [link removed]"
        );
        let plain = "language: value is not a valid enumeration member, e.g. de; v2.0 said so.";
        assert_eq!(redact_session_text(plain), plain);
        assert_eq!(
            redact_session_text("line one\nsee example.org\tnow"),
            "line one\nsee [link removed]\tnow"
        );
    }

    #[test]
    fn links_are_https_without_hidden_characters() {
        let ok =
            "https://connect.podero.com?onboarding_session_id=8c4b2f0e-6a1d-4e3b-9f7a-2d5c1e0b3a49";
        assert_eq!(check_link(ok), Ok(()));
        for (link, why) in [
            ("http://connect.podero.com?x=1", "does not use https"),
            ("javascript:alert(1)", "does not use https"),
            (
                "https://connect.podero.com/\u{1b}[2J",
                "holds control, bidi or space characters",
            ),
            (
                "https://connect.podero.com/\u{202e}x",
                "holds control, bidi or space characters",
            ),
            (
                "https://connect.podero.com/a\tb",
                "holds control, bidi or space characters",
            ),
            ("https://user:pw@connect.podero.com/", "carries credentials"),
            ("connect.podero.com/s/1", "is not a URL"),
        ] {
            assert_eq!(check_link(link), Err(why), "{link:?}");
        }
    }

    #[test]
    fn another_host_is_named_by_its_domain_only() {
        assert_eq!(domain("s3ss10n.links.example.org"), "example.org");
        assert_eq!(domain("example.org"), "example.org");
        assert_eq!(domain("localhost"), "localhost");
    }
}
