//! One request from start to end: read it, route it, pass it through the fault
//! gate, run the endpoint, record the outcome, then answer, stall or drop.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::call::{Answer, Call, Config, Shared, Streamed};
use super::endpoints;
use super::faults::{AfterCommit, FaultsJson, Gate};
use super::route::{ADMIN_USERS_PATH, Endpoint, Route, route};
use super::state::LogEntry;
use super::users::{self, UserList};

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 1 << 20;
/// The limit for `POST /__sandbox/users`, which seeds users in bulk (100k is ~10 MB).
const MAX_SEED_BODY: usize = 256 << 20;

/// The service error that makes hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (commit_then_drop fault)")]
pub(crate) struct Dropped;

/// Serves one request.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Dropped> {
    let call = read_call(&shared, req).await;
    let _in_flight = InFlight::enter(&shared, endpoint_of(&call.call));
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
            Ok(respond(&shared, answer))
        }
        AfterCommit::Respond | AfterCommit::Fail500 => Ok(respond(&shared, answer)),
    }
}

/// A response body: all at once, or the users list written as it is sent.
pub(crate) type ResponseBody = Either<Full<Bytes>, UserList>;

fn respond(shared: &Arc<Shared>, answer: Answer) -> Response<ResponseBody> {
    let streamed = answer.streamed;
    answer.into_response_with(|bytes| match streamed {
        Some(Streamed::Users) => Either::Right(UserList::new(Arc::clone(shared))),
        None => Either::Left(Full::new(bytes)),
    })
}

/// A request that has arrived and is not yet answered, counted in
/// `State::in_flight` while this guard lives (the answer is sent as `serve` returns).
struct InFlight<'a> {
    shared: &'a Shared,
    name: &'static str,
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, endpoint: Endpoint) -> Self {
        let name = endpoint.name();
        *shared.state().in_flight.entry(name).or_default() += 1;
        shared.changed.notify_waiters();
        InFlight { shared, name }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.shared.state().in_flight.get_mut(self.name) {
            *n = n.saturating_sub(1);
        }
        self.shared.changed.notify_waiters();
    }
}

/// The endpoint a call is for, before it runs (routing is cheap: a second pass is fine).
fn endpoint_of(call: &Call) -> Endpoint {
    match route(&call.method, &call.path) {
        Route::Token => Endpoint::Token,
        Route::Api { endpoint, .. } => endpoint,
        Route::MethodNotAllowed { .. } | Route::NotFound { .. } => Endpoint::Unknown,
        _ => Endpoint::Admin,
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
    let limit = if parts.uri.path() == ADMIN_USERS_PATH {
        MAX_SEED_BODY
    } else {
        MAX_BODY
    };
    let (body, body_error) = match Limited::new(body, limit).collect().await {
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
        Route::AdminUsers => (Endpoint::Admin, None, users::admin_users(shared, call)),
        Route::Api { endpoint, params } => {
            let answer = gated(shared, true, || {
                endpoints::api(shared, call, endpoint, &params)
            })
            .await;
            let in_path = params.user.and_then(|u| Uuid::parse_str(u).ok());
            (endpoint, in_path.or(answer.created_user), answer)
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
        Route::AdminState
            | Route::AdminFaults
            | Route::AdminClock
            | Route::AdminConnect
            | Route::AdminUsers
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
        Ok(faults) if faults.problem().is_some() => {
            Answer::detail(400, &faults.problem().unwrap_or_default())
        }
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
