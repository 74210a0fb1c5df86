//! Ids in URL paths, and URLs in the request log.
//!
//! Today every id the client puts in a path is a UUID it parsed itself (`user_id`,
//! `building_id`), so paths cannot be bent. A CRM id is different: `GET
//! .../users/by-ext-id/{external_id}` carries free text from the customer file, which could
//! be `..` (a server or proxy resolves it to the parent path), contain `/`, `?`, `#` or `%`,
//! or be personal data (a customer number, an e-mail address). [`external_id_segment`] is
//! the one way such an id enters a path; [`logged_url`] is how request URLs enter the log.
//!
//! Why not `Url::path_segments_mut().push`: it drops `.` and `..` segments silently (so
//! `..` would address the parent path) and a value already encoded would be encoded twice.
//! And why reject rather than encode `.` and `..`: the URL standard treats `%2e%2e` as
//! `..` too, so no encoding of them is safe.

use std::borrow::Cow;
use std::fmt;

/// The path step that precedes a CRM id in a by-ext-id lookup.
const BY_EXT_ID: &str = "/by-ext-id/";

/// What [`logged_url`] shows instead of a CRM id below `-vvv`.
pub const ELIDED_ID: &str = "[external id]";

/// An external id that cannot be looked up by URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathIdError {
    /// Nothing to look up.
    #[error("the external id is empty: fill in the CRM id")]
    Empty,
    /// `.` or `..`: a path step, not a name.
    #[error(
        "the external id \"{0}\" is a path step (\".\" or \"..\"), which the server would read \
         as \"this folder\" or \"the parent folder\": it cannot be looked up; give the customer \
         a real CRM id"
    )]
    DotSegment(&'static str),
}

/// A CRM id made safe as one URL path segment: every byte outside RFC 3986's unreserved
/// set (`A-Z a-z 0-9 - . _ ~`) is percent-encoded (UTF-8), so `/`, `?`, `#`, `%`, spaces
/// and non-ASCII letters cannot change the path. Append it to a URL *string*
/// (`format!("{api}/users/by-ext-id/{segment}")`), never through `path_segments_mut`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSegment(String);

impl PathSegment {
    /// The encoded segment.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns an external (CRM) id into a path segment, or says why it cannot be one. Call it
/// before any request: an empty id, `.` and `..` are refused here, never sent.
pub fn external_id_segment(id: &str) -> Result<PathSegment, PathIdError> {
    match id {
        "" => return Err(PathIdError::Empty),
        "." => return Err(PathIdError::DotSegment(".")),
        ".." => return Err(PathIdError::DotSegment("..")),
        _ => {}
    }
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(PathSegment(encoded))
}

/// A request URL as the request log shows it: the id of a by-ext-id path is elided
/// unless the log is at trace level (`-vvv`), since a CRM id may be personal data and
/// `-vv` logs get pasted into tickets. UUID paths (users, buildings) are shown as they are.
pub fn logged_url(url: &str) -> Cow<'_, str> {
    elide_external_id(url, tracing::enabled!(tracing::Level::TRACE))
}

fn elide_external_id(url: &str, show: bool) -> Cow<'_, str> {
    let Some(at) = url.find(BY_EXT_ID).map(|i| i + BY_EXT_ID.len()) else {
        return Cow::Borrowed(url);
    };
    if show {
        return Cow::Borrowed(url);
    }
    let end = url[at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| at + i);
    Cow::Owned(format!("{}{ELIDED_ID}{}", &url[..at], &url[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str =
        "https://app.podero.com/api/partners/v2.0/org/6f726700-0000-4000-8000-000000000001";

    /// The URL a by-ext-id lookup for `id` requests, as reqwest will parse it.
    fn lookup(id: &str) -> reqwest::Url {
        let segment = external_id_segment(id).expect("a valid id");
        reqwest::Url::parse(&format!("{API}/users/by-ext-id/{segment}")).expect("parses")
    }

    #[test]
    fn empty_dot_and_dot_dot_are_refused_before_any_call() {
        assert_eq!(external_id_segment(""), Err(PathIdError::Empty));
        assert_eq!(external_id_segment("."), Err(PathIdError::DotSegment(".")));
        assert_eq!(
            external_id_segment(".."),
            Err(PathIdError::DotSegment(".."))
        );
        let message = external_id_segment("..").unwrap_err().to_string();
        assert!(message.contains("\"..\""), "{message}");
    }

    #[test]
    fn reserved_characters_are_percent_encoded() {
        let cases = [
            ("CRM-12345_a.b~c", "CRM-12345_a.b~c"),
            ("a/b", "a%2Fb"),
            ("../admin", "..%2Fadmin"),
            ("x?y=1#z", "x%3Fy%3D1%23z"),
            ("100%", "100%25"),
            ("%2e%2e", "%252e%252e"),
            ("jo doe+1@example.com", "jo%20doe%2B1%40example.com"),
            ("Müller", "M%C3%BCller"),
            ("a\\b", "a%5Cb"),
            ("...", "..."),
        ];
        for (id, expected) in cases {
            assert_eq!(external_id_segment(id).unwrap().as_str(), expected, "{id}");
        }
    }

    /// Whatever the id, the parsed URL's path is the lookup path plus exactly one segment:
    /// nothing climbs, nothing spills into the query or fragment.
    #[test]
    fn no_id_leaves_its_segment_once_parsed() {
        let prefix = reqwest::Url::parse(&format!("{API}/users/by-ext-id/x"))
            .unwrap()
            .path()
            .trim_end_matches('x')
            .to_owned();
        for id in [
            "...",
            "../..",
            "./x",
            "%2e%2E",
            ".%2e",
            "a/../../b",
            "?q",
            "#f",
            "\\..\\",
            "..;",
            "\u{0}",
            "\n",
            " ",
        ] {
            let url = lookup(id);
            let rest = url.path().strip_prefix(&prefix);
            assert!(
                rest.is_some_and(|r| !r.is_empty() && !r.contains('/')),
                "{id:?} -> {url}"
            );
            assert_eq!((url.query(), url.fragment()), (None, None), "{id:?}");
        }
    }

    #[test]
    fn the_request_log_elides_external_ids_below_trace() {
        let url = format!("{API}/users/by-ext-id/jo%40example.com");
        assert_eq!(
            elide_external_id(&url, false),
            format!("{API}/users/by-ext-id/{ELIDED_ID}")
        );
        assert_eq!(elide_external_id(&url, true), url);
        let query = format!("{API}/users/by-ext-id/CRM-1?include_deleted=true");
        assert_eq!(
            elide_external_id(&query, false),
            format!("{API}/users/by-ext-id/{ELIDED_ID}?include_deleted=true")
        );
        let user = format!("{API}/users/5eed0000-0000-4000-8000-000000000000/buildings");
        assert_eq!(elide_external_id(&user, false), user);
    }
}
