//! The Podero Partner API client: every call the commands make (the token; the user PUT;
//! the building POST, GET, PUT and list; in [`connect`] the session POST and the heat
//! pumps), each passing the shared [`gate::Gate`], retried by class, and counted.
//!
//! Retries live here, one loop for all calls (`Client::call`): transient failures of
//! idempotent calls (PUT, GET) are retried with full-jitter exponential backoff; a building
//! POST is re-sent only after a failure that proves it was not processed. Everything else
//! is returned to the command's worker, which owns the unknown-outcome rules.
//!
//! Every request, token requests included, is admitted and reported through one
//! [`Traffic`]: it waits in the gate, then takes the current token (taken after the wait,
//! so a token is never held while it expires in the queue), and its outcome feeds the
//! counters, the adaptive rate and the breaker.
//!
//! A 401 drops the shared token (once per token, however many workers saw it refused) and
//! the request is retried with a new one. A call refused [`MAX_CONSECUTIVE_401`] times in a
//! row, each time with a newer token, means the credentials are refused and ends the run;
//! a static `PODERO_TOKEN` cannot be renewed, so its first 401 ends the run.

pub mod adapt;
pub mod auth;
pub mod breaker;
pub mod connect;
pub mod error;
pub mod gate;
pub mod path;
pub mod stats;
pub mod tls;
pub mod users;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use reqwest::Method;
use serde::Deserialize;
use uuid::Uuid;

use auth::Auth;
pub use auth::Credentials;
use breaker::Breaker;
pub use error::{CallError, Failure};
use error::{describe_body_redacted, parse_retry_after};
use gate::Gate;
use stats::Stats;
use users::DirectoryReader;
pub use users::{Directory, Keep, Listed, Lookup, Way};

/// Largest response body read; a larger one is an error, not a memory spike.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// 401s in a row (a new token fetched after each) before a call gives up: one 401 is an
/// expired token, the same answer for fresh tokens means the credentials are refused.
pub const MAX_CONSECUTIVE_401: u32 = 3;

/// The gate every request passes and what every response is reported to. Shared by all
/// clones of a [`Client`] and by its token requests.
pub struct Traffic {
    /// The rate limiter, `Retry-After` pause and adaptive rate.
    pub gate: Gate,
    /// Requests by status.
    pub stats: Stats,
    /// The outage detector.
    pub breaker: Breaker,
}

impl Traffic {
    /// Traffic admitted at `rate` requests per second at most.
    pub fn new(rate: f64) -> Self {
        Traffic {
            gate: Gate::new(rate),
            stats: Stats::default(),
            breaker: Breaker::default(),
        }
    }

    /// Reports one request's outcome: `status` (`None`: no response) and, for a failure,
    /// its class.
    pub fn observe(&self, status: Option<u16>, failure: Option<Failure>) {
        match status {
            // Up to three digits, formatted on the stack: no allocation per request.
            Some(status) => self.stats.count(status_label(status, &mut [0; 5])),
            None => self.stats.count("network"),
        }
        match failure {
            Some(Failure::Throttled { retry_after }) => self.gate.on_throttled(retry_after),
            _ => self.gate.on_not_throttled(),
        }
        self.breaker.record(matches!(
            failure,
            Some(Failure::NotProcessed | Failure::Ambiguous)
        ));
    }
}

/// `status` as decimal text in `buffer` (a `u16` has at most five digits).
fn status_label(status: u16, buffer: &mut [u8; 5]) -> &str {
    let mut start = buffer.len();
    let mut rest = status;
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[start..]).expect("ASCII digits")
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads a response body, refusing more than [`MAX_BODY_BYTES`] (a hostile or broken
/// server cannot make the job buffer an unbounded body).
pub(crate) async fn read_bounded(
    response: &mut reqwest::Response,
) -> Result<bytes::Bytes, BodyError> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How often and how patiently calls are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff base for server and network errors.
    pub transient_base: Duration,
    /// Backoff base after a 429 without `Retry-After`.
    pub throttle_base: Duration,
    /// Longest single backoff.
    pub cap: Duration,
    /// How long one call may keep being answered 429 before the run stops (`--max-wait`):
    /// a 429 asks for time, it spends no attempt.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            transient_base: Duration::from_millis(100),
            throttle_base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            max_wait: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base · 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32, throttled: bool) -> Duration {
        let base = if throttled {
            self.throttle_base
        } else {
            self.transient_base
        };
        let ceiling = base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Everything needed to talk to one Podero environment.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Scheme and host, no trailing slash, e.g. `https://app.podero.com`.
    pub base_url: String,
    /// The partner organization.
    pub org_id: Uuid,
    /// How the job authenticates.
    pub credentials: Credentials,
    /// Requests per second across the run (the ceiling of the adaptive rate).
    pub rate: f64,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// Idle connections kept per host (the row concurrency is a good value).
    pub pool_size: usize,
    /// CA certificates trusted on top of the system store (`--ca-cert`).
    pub ca_certs: Vec<reqwest::Certificate>,
}

/// What a building POST led to.
#[derive(Debug)]
pub enum PostOutcome {
    /// The server answered with the new building's id.
    Created(Uuid),
    /// The server certainly did not create it.
    NotCreated(CallError),
    /// It may exist: resolve before re-sending.
    Unknown(CallError),
}

/// The answer of the (undocumented) list-buildings endpoint.
#[derive(Debug)]
pub enum Listing {
    /// The user's buildings: (id, name).
    Buildings(Vec<(Uuid, String)>),
    /// The endpoint does not exist here (404/405): existence cannot be checked.
    Unavailable(u16),
}

/// The API client. Clone it freely; clones share the token, gate, counters and breaker.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api: String,
    /// `api`, parsed once: request URLs are built from it by appending path segments, so
    /// no request re-parses the scheme, host and IDNA rules (about 3 % of a first run's
    /// CPU when every request parsed its URL string). `None` only if `api` does not parse,
    /// which the config's own check rules out; the string is used then.
    api_url: Option<reqwest::Url>,
    retry: RetryPolicy,
    auth: Arc<Auth>,
    traffic: Arc<Traffic>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Uuid,
}

#[derive(Deserialize)]
struct BuildingEntry {
    id: Uuid,
    #[serde(default)]
    name: String,
}

/// A request body: a JSON value, or JSON text sent as it is (the staged payloads are
/// canonical JSON already: parsing them into a value only to serialize it again cost two
/// allocations per field on every request).
#[derive(Clone, Copy)]
pub enum Body<'a> {
    /// Serialized when sent.
    Json(&'a serde_json::Value),
    /// JSON text, sent verbatim.
    Text(&'a str),
}

impl<'a> From<&'a serde_json::Value> for Body<'a> {
    fn from(value: &'a serde_json::Value) -> Self {
        Body::Json(value)
    }
}

/// What one attempt's request is.
struct Request<'a> {
    method: Method,
    /// The URL as text; empty when `target` holds it (see [`Request::url`]).
    url: String,
    /// The URL, built from the parsed base (see [`Client::api_url`]).
    target: Option<reqwest::Url>,
    body: Option<Body<'a>>,
    /// Whether an ambiguous failure may be retried (true for PUT and GET).
    idempotent: bool,
    /// A 404 is an answer for the caller, not an error (the by-ext-id lookup's miss).
    accept_404: bool,
    /// A 2xx body is streamed into this reader instead of being read whole (the user list).
    sink: Option<&'a Mutex<DirectoryReader>>,
}

impl Request<'_> {
    /// The URL, for the request and the log.
    fn url(&self) -> &str {
        self.target
            .as_ref()
            .map_or(self.url.as_str(), reqwest::Url::as_str)
    }
}

impl Client {
    /// Builds the client; sends nothing.
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        tls::install_crypto_provider();
        let builder = reqwest::Client::builder()
            // The system store plus `--ca-cert`, never without verification (see `tls`).
            .tls_certs_merge(config.ca_certs)
            .user_agent(concat!("podero-onboard/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // Never follow a redirect: it could carry the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.pool_size);
        // Plain http is only allowed to loopback (see `config`): through a proxy, the Basic
        // credentials and tokens would cross a network in clear text, for a server on this
        // very machine. HTTPS keeps honouring HTTPS_PROXY (its tunnel is encrypted).
        let http = if config.base_url.starts_with("http://") {
            builder.no_proxy()
        } else {
            builder
        }
        .build()?;
        let api = format!(
            "{}/api/partners/v2.0/org/{}",
            config.base_url, config.org_id
        );
        Ok(Client {
            http,
            api_url: reqwest::Url::parse(&api).ok(),
            api,
            retry: config.retry,
            auth: Arc::new(Auth::new(config.credentials, &config.base_url)),
            traffic: Arc::new(Traffic::new(config.rate)),
        })
    }

    /// Obtains the first token: bad credentials fail here, before any API call.
    pub async fn authenticate(&self) -> Result<(), CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.auth.bearer(&self.http, &self.traffic).await {
                Ok(_) => return Ok(()),
                Err(e) if e.failure.is_transient() && attempt < self.retry.max_attempts => {
                    tokio::time::sleep(self.retry.backoff(attempt, false)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `PUT .../users/{user_id}` with a partial body. Idempotent, so retried freely.
    pub async fn put_user<'b>(
        &self,
        user: Uuid,
        body: impl Into<Body<'b>>,
    ) -> Result<(), CallError> {
        let (url, target) = self.user_address(user, false);
        let request = Request {
            method: Method::PUT,
            url,
            target,
            body: Some(body.into()),
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        self.call(&request).await.map(|_| ())
    }

    /// `POST .../users/{user_id}/buildings`. Re-sent only after failures that prove it
    /// was not processed; a 2xx without a readable id is [`PostOutcome::Unknown`].
    pub async fn create_building<'b>(&self, user: Uuid, body: impl Into<Body<'b>>) -> PostOutcome {
        let (url, target) = self.user_address(user, true);
        let request = Request {
            method: Method::POST,
            url,
            target,
            body: Some(body.into()),
            idempotent: false,
            accept_404: false,
            sink: None,
        };
        self.post_for_id(&request, "building").await
    }

    /// Sends a create (a POST that is not idempotent) and reads the new `id`: a 2xx
    /// without a readable id, like any ambiguous failure, is [`PostOutcome::Unknown`] (the
    /// `what` may exist); a failure that proves nothing was processed is `NotCreated`.
    async fn post_for_id(&self, request: &Request<'_>, what: &str) -> PostOutcome {
        match self.call(request).await {
            Ok((status, bytes)) => match serde_json::from_slice::<IdOnly>(&bytes) {
                Ok(created) => PostOutcome::Created(created.id),
                Err(_) => PostOutcome::Unknown(CallError {
                    failure: Failure::Ambiguous,
                    status: Some(status),
                    message: format!(
                        "the server answered {status} without a {what} id ({}); the {what} may exist",
                        self.describe(&bytes, "")
                    ),
                }),
            },
            Err(e) if e.failure == Failure::Ambiguous => PostOutcome::Unknown(e),
            Err(e) => PostOutcome::NotCreated(e),
        }
    }

    /// `GET .../users/{user_id}/buildings` (undocumented; may not exist).
    pub async fn list_buildings(&self, user: Uuid) -> Result<Listing, CallError> {
        let request = Request {
            method: Method::GET,
            url: format!("{}/users/{user}/buildings", self.api),
            target: self.target(user, true),
            body: None,
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        match self.call(&request).await {
            Ok((status, bytes)) => serde_json::from_slice::<Vec<BuildingEntry>>(&bytes)
                .map(|list| Listing::Buildings(list.into_iter().map(|b| (b.id, b.name)).collect()))
                .map_err(|_| CallError {
                    failure: Failure::Ambiguous,
                    status: Some(status),
                    message: "the list of buildings was not a JSON array of buildings".into(),
                }),
            Err(e) if matches!(e.status, Some(404 | 405)) => {
                Ok(Listing::Unavailable(e.status.unwrap_or(404)))
            }
            Err(e) => Err(e),
        }
    }

    /// `GET .../users/{user_id}/buildings/{building_id}`: the building as stored, a JSON
    /// object (a 404 means it was deleted in Podero).
    pub async fn get_building(
        &self,
        user: Uuid,
        building: Uuid,
    ) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
        let url = format!("{}/users/{user}/buildings/{building}", self.api);
        self.get_json(url, "the building was not a JSON object")
            .await
    }

    /// `GET url` (idempotent, retried), its body parsed as `T`; `unexpected` is the error
    /// message when it does not parse.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        unexpected: &str,
    ) -> Result<T, CallError> {
        let request = Request {
            method: Method::GET,
            url,
            target: None,
            body: None,
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        let (status, bytes) = self.call(&request).await?;
        serde_json::from_slice(&bytes).map_err(|_| CallError {
            failure: Failure::Ambiguous,
            status: Some(status),
            message: unexpected.into(),
        })
    }

    /// `PUT .../users/{user_id}/buildings/{building_id}`: a **full** update (fields left
    /// out may be reset), so callers send a read-modify-write body. Idempotent: retried
    /// like a user PUT.
    pub async fn put_building(
        &self,
        user: Uuid,
        building: Uuid,
        body: &serde_json::Value,
    ) -> Result<(), CallError> {
        let request = Request {
            method: Method::PUT,
            url: format!("{}/users/{user}/buildings/{building}", self.api),
            target: None,
            body: Some(Body::Json(body)),
            idempotent: true,
            accept_404: false,
            sink: None,
        };
        self.call(&request).await.map(|_| ())
    }

    /// `GET .../users/by-ext-id/{external_id}` (the id percent-encoded as one path segment):
    /// the user with that CRM id, or [`Lookup::NotFound`] on a 404 with a JSON body. A 404
    /// that is not JSON is no answer about the user (a proxy, a wrong base URL): fatal, since
    /// creating users on a guess could double them. Several users with one CRM id: Podero
    /// answers a 500 (retried like any GET; the caller decides).
    pub async fn find_user(&self, external_id: &str) -> Result<Lookup, CallError> {
        let segment = path::external_id_segment(external_id).map_err(|e| CallError {
            failure: Failure::Rejected,
            status: None,
            message: e.to_string(),
        })?;
        let request = Request {
            method: Method::GET,
            url: format!("{}/users/by-ext-id/{segment}", self.api),
            target: None,
            body: None,
            idempotent: true,
            accept_404: true,
            sink: None,
        };
        let (status, bytes) = self.call(&request).await?;
        let json = serde_json::from_slice::<serde_json::Value>(&bytes);
        match (status, json) {
            (404, Ok(_)) => Ok(Lookup::NotFound),
            (404, Err(_)) => Err(CallError {
                failure: Failure::Fatal,
                status: Some(404),
                message: format!(
                    "the CRM id lookup (GET .../users/by-ext-id/...) answered 404 without a JSON \
                     body ({}): that is not Podero saying \"no such user\"; check --base-url \
                     (and any proxy). Nothing was created",
                    self.describe(&bytes, "")
                ),
            }),
            (_, Ok(serde_json::Value::Object(user))) if user.get("id").is_some() => {
                Ok(Lookup::Found(user))
            }
            _ => Err(CallError {
                failure: Failure::Ambiguous,
                status: Some(status),
                message: "the CRM id lookup answered without a user object".into(),
            }),
        }
    }

    /// `POST .../users`: creates a user. Not idempotent, like the building POST: re-sent
    /// only after failures that prove it was not processed; a 2xx without a readable id is
    /// [`PostOutcome::Unknown`].
    pub async fn create_user(&self, body: &serde_json::Value) -> PostOutcome {
        let request = Request {
            method: Method::POST,
            url: format!("{}/users", self.api),
            target: None,
            body: Some(Body::Json(body)),
            idempotent: false,
            accept_404: false,
            sink: None,
        };
        self.post_for_id(&request, "user").await
    }

    /// `GET .../users`: every user of the organization (one bare array, possibly huge),
    /// parsed as it streams in; of each user only what `keep` says is kept.
    pub async fn list_users(&self, keep: Keep) -> Result<Directory, CallError> {
        let sink = Mutex::new(DirectoryReader::keeping(keep));
        let request = Request {
            method: Method::GET,
            url: format!("{}/users", self.api),
            target: None,
            body: None,
            idempotent: true,
            accept_404: false,
            sink: Some(&sink),
        };
        let (status, _) = self.call(&request).await?;
        let directory = sink.lock().expect("directory reader lock").finish();
        directory.map_err(|message| CallError {
            failure: Failure::Ambiguous,
            status: Some(status),
            message,
        })
    }

    /// `.../users/{user}` or `.../users/{user}/buildings`: parsed (the text left empty,
    /// see [`Request::url`]), or as text if the base did not parse.
    fn user_address(&self, user: Uuid, buildings: bool) -> (String, Option<reqwest::Url>) {
        match self.target(user, buildings) {
            Some(url) => (String::new(), Some(url)),
            None if buildings => (format!("{}/users/{user}/buildings", self.api), None),
            None => (format!("{}/users/{user}", self.api), None),
        }
    }

    /// `.../users/{user}` or `.../users/{user}/buildings`, from the parsed base.
    fn target(&self, user: Uuid, buildings: bool) -> Option<reqwest::Url> {
        let mut url = self.api_url.clone()?;
        {
            let mut segments = url.path_segments_mut().ok()?;
            segments.push("users");
            segments.push(
                user.as_hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer()),
            );
            if buildings {
                segments.push("buildings");
            }
        }
        Some(url)
    }

    /// Starts the adaptive rate at a limit an earlier run learned instead of at `--rate`
    /// (see [`gate::Gate::seed`]).
    pub fn seed_rate(&self, learned: f64) {
        self.traffic.gate.seed(learned);
    }

    /// The limit the adaptive rate has learned (or was seeded with), if any.
    pub fn learned_rate(&self) -> Option<f64> {
        self.traffic.gate.learned()
    }

    /// The effective request rate now (requests per second).
    pub fn effective_rate(&self) -> f64 {
        self.traffic.gate.rate()
    }

    /// Request counters so far (token requests included).
    pub fn stats(&self) -> &Stats {
        &self.traffic.stats
    }

    /// The outage detector shared by all workers.
    pub fn breaker(&self) -> &Breaker {
        &self.traffic.breaker
    }

    /// One call with the retry loop: every attempt passes the gate. A 429 is the server
    /// asking for time, not a verdict on the request: it spends no attempt; the call waits
    /// (the gate pauses everyone) until it is answered, for [`RetryPolicy::max_wait`] at
    /// most since its first 429 in a row, and then the run stops, saying why.
    async fn call(&self, request: &Request<'_>) -> Result<(u16, bytes::Bytes), CallError> {
        let mut attempt = 0;
        let mut refused = 0;
        let mut throttled: Option<(std::time::Instant, u32)> = None;
        loop {
            let (result, generation) = self.attempt(request).await;
            let error = match result {
                Ok(ok) => return Ok(ok),
                Err(error) => error,
            };
            if let Failure::Throttled { retry_after } = error.failure {
                let (since, times) = throttled.get_or_insert((std::time::Instant::now(), 0));
                *times += 1;
                if since.elapsed() >= self.retry.max_wait {
                    return Err(throttled_too_long(error, self.retry.max_wait, *times));
                }
                if retry_after.is_none() {
                    tokio::time::sleep(self.retry.backoff(*times, true)).await;
                }
                continue;
            }
            throttled = None;
            attempt += 1;
            let retry_allowed = attempt < self.retry.max_attempts;
            refused = if error.failure == Failure::Unauthorized {
                refused + 1
            } else {
                0
            };
            match error.failure {
                Failure::Unauthorized if !self.auth.renewable() => {
                    return Err(static_token_refused(error));
                }
                Failure::Unauthorized if refused >= MAX_CONSECUTIVE_401 => {
                    return Err(fresh_token_refused(error));
                }
                Failure::Unauthorized => self.auth.reject(generation).await,
                Failure::NotProcessed if retry_allowed => {
                    tokio::time::sleep(self.retry.backoff(attempt, false)).await;
                }
                Failure::Ambiguous if retry_allowed && request.idempotent => {
                    tokio::time::sleep(self.retry.backoff(attempt, false)).await;
                }
                _ => return Err(error),
            }
            let url = path::logged_url(request.url());
            tracing::debug!(attempt, %url, error = %error, "retrying");
        }
    }

    /// One attempt: gate, token, send, bounded read, classify, count.
    async fn attempt(
        &self,
        request: &Request<'_>,
    ) -> (Result<(u16, bytes::Bytes), CallError>, u64) {
        let bearer = loop {
            self.traffic.gate.acquire().await;
            match self.auth.bearer(&self.http, &self.traffic).await {
                // Waited behind a token renewal: the slot is stale (all the waiters would
                // leave at once when the token comes), so queue at the gate again.
                Ok(bearer) if bearer.waited => continue,
                Ok(bearer) => break bearer,
                // The API request itself was never sent: whatever happened to the token
                // request, this one was certainly not processed (a POST may be re-sent).
                Err(mut e) => {
                    if e.failure == Failure::Ambiguous {
                        e.failure = Failure::NotProcessed;
                    }
                    return (Err(e), 0);
                }
            }
        };
        let builder = match &request.target {
            Some(url) => self.http.request(request.method.clone(), url.clone()),
            None => self.http.request(request.method.clone(), &request.url),
        };
        let mut builder = builder.bearer_auth(bearer.token.expose());
        match request.body {
            Some(Body::Json(body)) => builder = builder.json(body),
            Some(Body::Text(text)) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(text.to_owned());
            }
            None => {}
        }
        let result = match builder.send().await {
            Ok(response) => self.read(response, request).await,
            Err(error) => Err(self.transport_error(&error)),
        };
        self.observe(&result);
        log_attempt(request, &result);
        (result, bearer.generation)
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
        request: &Request<'_>,
    ) -> Result<(u16, bytes::Bytes), CallError> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if let (Some(sink), true) = (request.sink, (200..300).contains(&status)) {
            return self
                .stream_into(response, sink)
                .await
                .map(|()| (status, bytes::Bytes::new()));
        }
        let body = read_bounded(&mut response).await.map_err(|error| {
            let mut e = match error {
                BodyError::TooLarge => CallError {
                    failure: Failure::Ambiguous,
                    status: None,
                    message: format!("response body larger than {MAX_BODY_BYTES} bytes"),
                },
                BodyError::Transport(error) => self.transport_error(&error),
            };
            e.status = Some(status);
            e.failure = Failure::Ambiguous;
            e
        })?;
        if (200..300).contains(&status) || (status == 404 && request.accept_404) {
            return Ok((status, body));
        }
        let mut message = self.describe(&body, response.url().path());
        if (300..400).contains(&status) {
            message = format!(
                "the server redirected ({message}); redirects are not followed so the token \
                 cannot leak: check --base-url"
            );
        }
        Err(CallError {
            failure: Failure::from_status(status, retry_after),
            status: Some(status),
            message,
        })
    }

    /// An error body as one line, redacted whole before it is shortened: the secrets this
    /// process holds, and Connect links and session ids (capabilities) — for the
    /// device-onboarding endpoints also every id, host and path, since any may be one.
    fn describe(&self, body: &[u8], path: &str) -> String {
        let sessions = path.contains("/device-onboarding");
        describe_body_redacted(body, &|text| {
            let text = self.auth.scrub(text);
            if sessions {
                connect::redact_session_text(&text)
            } else {
                connect::redact_links(&text)
            }
        })
    }

    /// Streams a 2xx body into `sink` (started afresh: an attempt may be a retry).
    async fn stream_into(
        &self,
        mut response: reqwest::Response,
        sink: &Mutex<DirectoryReader>,
    ) -> Result<(), CallError> {
        let status = response.status().as_u16();
        let unreadable = |message: String| CallError {
            failure: Failure::Ambiguous,
            status: Some(status),
            message,
        };
        let lock = || sink.lock().expect("directory reader lock");
        lock().reset();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => lock().feed(&chunk).map_err(unreadable)?,
                Ok(None) => return Ok(()),
                Err(error) => {
                    let mut e = self.transport_error(&error);
                    e.status = Some(status);
                    e.failure = Failure::Ambiguous;
                    return Err(e);
                }
            }
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> CallError {
        self.auth.transport_error(error, "")
    }

    fn observe(&self, result: &Result<(u16, bytes::Bytes), CallError>) {
        match result {
            Ok((status, _)) => self.traffic.observe(Some(*status), None),
            Err(e) => self.traffic.observe(e.status, Some(e.failure)),
        }
    }
}

/// A call answered 429 for longer than `--max-wait`: the run stops (nothing was processed,
/// so no row is failed for it; the next run goes on where this one stopped).
/// A debug line per attempt (the URL's CRM id elided, see [`path::logged_url`]); nothing
/// is built when debug lines are off.
fn log_attempt(request: &Request<'_>, result: &Result<(u16, bytes::Bytes), CallError>) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let url = path::logged_url(request.url());
    match result {
        Ok((status, _)) => {
            tracing::debug!(method = %request.method, %url, status, "request")
        }
        Err(error) => {
            tracing::debug!(method = %request.method, %url, %error, "request failed")
        }
    }
}

fn throttled_too_long(mut error: CallError, max_wait: Duration, times: u32) -> CallError {
    error.failure = Failure::Fatal;
    error.message = format!(
        "the API answered 429 (Too Many Requests) {times} times in a row over {} s          (--max-wait), honouring every Retry-After ({}); stopped. Rows not done are kept in          the checkpoint: run the same command again later to resume",
        max_wait.as_secs(),
        error.message
    );
    error
}

fn static_token_refused(mut error: CallError) -> CallError {
    error.failure = Failure::Fatal;
    error.message = format!(
        "the API rejected PODERO_TOKEN ({}): set a valid token, or set PODERO_CLIENT_ID and \
         PODERO_CLIENT_SECRET instead so the job can renew its token",
        error.message
    );
    error
}

fn fresh_token_refused(mut error: CallError) -> CallError {
    error.failure = Failure::Fatal;
    error.message = format!(
        "the API rejected {MAX_CONSECUTIVE_401} freshly issued tokens in a row ({}): check that \
         PODERO_CLIENT_ID and PODERO_CLIENT_SECRET have access to this organization",
        error.message
    );
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_decimal_status() {
        for status in [0, 7, 42, 200, 404, 503, 9999, u16::MAX] {
            assert_eq!(status_label(status, &mut [0; 5]), status.to_string());
        }
    }

    #[test]
    fn backoff_is_bounded_by_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(policy.backoff(attempt, true) <= policy.cap);
        }
        assert!(policy.backoff(1, false) <= Duration::from_millis(100));
    }
}
