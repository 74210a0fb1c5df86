//! One request from start to end: read it, route it, pass it through the fault
//! gate, run the endpoint, record the outcome, then answer, stall or drop.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::builder::ListBuildings;
use super::endpoints;
use super::faults::{AfterCommit, FaultState, FaultsJson, Gate};
use super::route::{Endpoint, Route, route};
use super::state::{LogEntry, State};

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 1 << 20;

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

/// The answer an endpoint decided on, and what to do with it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
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
            headers: Vec::new(),
            after: AfterCommit::Respond,
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
            headers: Vec::new(),
            after: AfterCommit::Respond,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
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

/// The service error that makes hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (commit_then_drop fault)")]
pub(crate) struct Dropped;

/// Serves one request.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let call = read_call(&shared, req).await;
    let (endpoint, user_id, answer) = match call.body_error {
        Some(answer) => (Endpoint::Unknown, None, answer),
        None => dispatch(&shared, &call.call).await,
    };
    let dropped = answer.after == AfterCommit::Drop;
    record(
        &shared,
        &call.call,
        endpoint,
        user_id,
        if dropped { 0 } else { answer.status },
    );
    match answer.after {
        AfterCommit::Drop => Err(Dropped),
        AfterCommit::Stall(delay) => {
            tokio::time::sleep(delay).await;
            Ok(answer.into_response())
        }
        AfterCommit::Respond | AfterCommit::Fail500 => Ok(answer.into_response()),
    }
}

/// A read request, or the answer for a body that could not be read.
struct ReadCall {
    call: Call,
    body_error: Option<Answer>,
}

async fn read_call(shared: &Shared, req: Request<Incoming>) -> ReadCall {
    let at_ms = shared.now_ms();
    let (parts, body) = req.into_parts();
    let text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(String::from)
    };
    let (body, body_error) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), None),
        Err(_) => (
            Bytes::new(),
            Some(Answer::detail(413, "Request body too large or unreadable")),
        ),
    };
    let call = Call {
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body,
        at_ms,
    };
    ReadCall { call, body_error }
}

/// Routes a call and runs it: `(endpoint, user id in the path, answer)`.
async fn dispatch(shared: &Shared, call: &Call) -> (Endpoint, Option<Uuid>, Answer) {
    let route = route(&call.method, &call.path);
    if is_admin(&route) && !admin_allowed(&shared.config, call) {
        let answer = Answer::detail(401, "the /__sandbox endpoints need the admin token")
            .with_header(header::WWW_AUTHENTICATE, "Bearer");
        return (Endpoint::Admin, None, answer);
    }
    match route {
        Route::Token => (
            Endpoint::Token,
            None,
            gated(shared, false, || endpoints::token(shared, call)).await,
        ),
        Route::AdminState if wants_counts(call) => (Endpoint::Admin, None, admin_counts(shared)),
        Route::AdminState => (Endpoint::Admin, None, admin_state(shared)),
        Route::AdminFaults => (Endpoint::Admin, None, admin_faults(shared, call)),
        Route::AdminClock => (
            Endpoint::Admin,
            None,
            super::connect::admin_clock(shared, call),
        ),
        Route::AdminConnect => (
            Endpoint::Admin,
            None,
            super::connect::admin_connect(shared, call),
        ),
        Route::Api { endpoint, params } => {
            let user_id = params.user.and_then(|u| Uuid::parse_str(u).ok());
            let answer = gated(shared, true, || {
                endpoints::api(shared, call, endpoint, &params)
            })
            .await;
            (endpoint, user_id, answer)
        }
        Route::MethodNotAllowed { allow } => {
            shared.anomaly(call, "method not allowed");
            let answer =
                Answer::detail(405, "Method Not Allowed").with_header(header::ALLOW, allow);
            (Endpoint::Unknown, None, answer)
        }
        Route::NotFound { trailing_slash } => {
            shared.anomaly(
                call,
                if trailing_slash {
                    "trailing slash on an API path"
                } else {
                    "unknown path"
                },
            );
            (Endpoint::Unknown, None, Answer::detail(404, "Not Found"))
        }
    }
}

fn is_admin(route: &Route<'_>) -> bool {
    matches!(
        route,
        Route::AdminState | Route::AdminFaults | Route::AdminClock | Route::AdminConnect
    )
}

/// No admin token configured: open (a loopback test server); otherwise the bearer must
/// match. The admin endpoints show session ids, enough to rebuild Connect links.
fn admin_allowed(config: &Config, call: &Call) -> bool {
    let Some(expected) = &config.admin_token else {
        return true;
    };
    call.authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given, expected))
}

/// Compares without stopping at the first difference (no timing hint of how much matched).
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Applies latency and the fault gate, then runs `handle` if the gate passes.
async fn gated(shared: &Shared, api: bool, handle: impl FnOnce() -> Answer) -> Answer {
    let delay = shared.faults().delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let gate = shared.faults().gate(api);
    match gate {
        Gate::Pass => handle(),
        Gate::Limited { retry_after_secs } => {
            Answer::detail(429, "Too many requests: rate limit exceeded")
                .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
        }
        Gate::Random429 => {
            Answer::detail(429, "Too many requests").with_header(header::RETRY_AFTER, "1")
        }
        Gate::Random5xx { status, html: true } => Answer::html(status),
        Gate::Random5xx {
            status,
            html: false,
        } => Answer::detail(status, "Service temporarily unavailable"),
    }
}

fn admin_state(shared: &Shared) -> Answer {
    let snapshot = shared.state().snapshot();
    Answer::json(200, &serde_json::to_value(&snapshot).unwrap_or(Value::Null))
}

/// `?counts=1`: the counters only, so a benchmark over a million users does not make the
/// simulator serialize (and the client parse) every user and building.
fn wants_counts(call: &Call) -> bool {
    call.query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|pair| pair == "counts=1"))
}

fn admin_counts(shared: &Shared) -> Answer {
    let counts = shared.state().counts();
    Answer::json(200, &serde_json::to_value(&counts).unwrap_or(Value::Null))
}

fn admin_faults(shared: &Shared, call: &Call) -> Answer {
    match serde_json::from_slice::<FaultsJson>(&call.body) {
        Ok(faults) => {
            shared.faults().set(faults.into());
            Answer::json(200, &json!({ "ok": true }))
        }
        Err(e) => Answer::detail(400, &format!("invalid faults JSON: {e}")),
    }
}

fn record(shared: &Shared, call: &Call, endpoint: Endpoint, user_id: Option<Uuid>, status: u16) {
    let entry = LogEntry {
        at_ms: call.at_ms,
        method: call.method.to_string(),
        endpoint: endpoint.name().to_owned(),
        path: call.path.clone(),
        status,
        user_id,
    };
    shared.state().record(entry);
}
