//! What every endpoint works with: a request as the endpoints see it ([`Call`]), the
//! [`Answer`] they decide on, what every connection shares ([`Shared`]: the fixed
//! [`Config`], the state and the faults), and the small helpers every endpoint uses.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use super::faults::{AfterCommit, FaultState};
use super::state::State;
use super::validate::{self, Problem};

/// How the undocumented `GET .../users/{user_id}/buildings` behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ListBuildings {
    /// It exists: 200 with a bare JSON array of the user's buildings.
    #[default]
    Enabled,
    /// It does not exist: 404 `{"detail": "Not Found"}`.
    NotFound,
    /// Only POST exists on that path: 405 with `Allow: POST`.
    MethodNotAllowed,
}

/// The fixed configuration of a running simulator.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub org_id: Uuid,
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime: Duration,
    pub create_status: u16,
    pub list_buildings: ListBuildings,
    /// When set, the `/__sandbox/*` endpoints want `Authorization: Bearer <this>`.
    pub admin_token: Option<String>,
}

/// Everything the connection tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub state: Mutex<State>,
    pub faults: Mutex<FaultState>,
    pub started: Instant,
    /// Woken at every request that arrives or ends, for [`super::Sandbox::wait_in_flight`].
    pub changed: Notify,
    /// TCP connections accepted: a proxied run's tunnels must add up to it.
    pub connections: AtomicU64,
}

impl Shared {
    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The state, even if a panicking thread poisoned the lock.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault state, even if poisoned.
    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a client mistake.
    pub fn anomaly(&self, call: &Call, what: &str) {
        let text = format!("{} {}: {what}", call.method, call.path);
        self.state().anomaly(text);
    }
}

/// The parts of a request the endpoints look at.
#[derive(Debug)]
pub(crate) struct Call {
    pub method: Method,
    pub path: String,
    /// The query string, if any (only the admin state endpoint reads it).
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub at_ms: u64,
}

/// A body written while it is sent, chunk by chunk, instead of [`Answer::body`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Streamed {
    /// Every user of the organization, as `GET .../users` answers (see `users::UserList`).
    Users,
}

/// The answer an endpoint decided on, and what to do with it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// When set, the body is produced as it is sent and `body` is unused.
    pub streamed: Option<Streamed>,
    /// The user a POST user created (for the request log).
    pub created_user: Option<Uuid>,
    pub headers: Vec<(header::HeaderName, String)>,
    pub after: AfterCommit,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, value: &Value) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        Answer {
            status,
            content_type: "application/json",
            body,
            streamed: None,
            created_user: None,
            headers: Vec::new(),
            after: AfterCommit::Respond,
        }
    }

    /// A JSON answer whose body is written while it is sent.
    pub fn streamed_json(status: u16, what: Streamed) -> Self {
        Answer {
            streamed: Some(what),
            ..Answer::json(status, &Value::Null)
        }
    }

    /// `{"detail": msg}`, django-ninja's error shape.
    pub fn detail(status: u16, msg: &str) -> Self {
        Answer::json(status, &json!({ "detail": msg }))
    }

    /// An HTML error page, as a reverse proxy sends.
    pub fn html(status: u16) -> Self {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let page = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        Answer {
            status,
            content_type: "text/html",
            body: Bytes::from(page),
            streamed: None,
            created_user: None,
            headers: Vec::new(),
            after: AfterCommit::Respond,
        }
    }

    /// Django's own 500 page (`DEBUG = False`): what an unhandled exception in a view,
    /// such as `MultipleObjectsReturned`, answers. Not JSON.
    pub fn django_500() -> Self {
        Answer {
            body: Bytes::from_static(b"\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"),
            ..Answer::html(500)
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The HTTP response, its body made by `body` of [`Answer::body`].
    pub fn into_response_with<B>(self, body: impl FnOnce(Bytes) -> B) -> Response<B> {
        let mut response = Response::new(body(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// A UUID path parameter, or 422 (and an anomaly: the client built a bad path).
pub(crate) fn parse_uuid(
    shared: &Shared,
    call: &Call,
    raw: &str,
    name: &str,
) -> Result<Uuid, Answer> {
    Uuid::parse_str(raw).map_err(|_| {
        shared.anomaly(
            call,
            &format!("path parameter {name} is not a UUID: {raw:?}"),
        );
        let msg = "Input should be a valid UUID";
        Answer::json(
            422,
            &validate::detail(&[Problem::path("uuid_parsing", name, msg)]),
        )
    })
}

/// A JSON request body, or the 400 for one that is not JSON (both anomalies
/// when the `Content-Type` is not `application/json`).
pub(crate) fn json_body(shared: &Shared, call: &Call) -> Result<Value, Answer> {
    if !media_type_is(
        call.content_type.as_deref().unwrap_or(""),
        "application/json",
    ) {
        shared.anomaly(call, "JSON body without Content-Type: application/json");
    }
    serde_json::from_slice(&call.body).map_err(|e| {
        shared.anomaly(call, &format!("body is not JSON: {e}"));
        Answer::detail(400, "Cannot parse request body")
    })
}

/// Validates a body with `rule`; 422 (an anomaly too when the shape is wrong).
pub(crate) fn validated(
    shared: &Shared,
    call: &Call,
    rule: fn(&Value) -> validate::Validated,
) -> Result<Map<String, Value>, Answer> {
    let body = json_body(shared, call)?;
    rule(&body).map_err(|problems| {
        for p in problems.iter().filter(|p| p.is_client_bug()) {
            shared.anomaly(
                call,
                &format!("{} at {}: {}", p.kind, p.loc.join("."), p.msg),
            );
        }
        Answer::json(422, &validate::detail(&problems))
    })
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The 404 of an unknown path or object.
pub(crate) fn not_found() -> Answer {
    Answer::detail(404, "Not Found")
}

/// Whether a `Content-Type` value names `media_type` (parameters ignored).
pub(crate) fn media_type_is(content_type: &str, media_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("CRM%C3%A9+1"), "CRMé+1");
    }
}
