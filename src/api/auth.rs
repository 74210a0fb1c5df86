//! OAuth2 client credentials: one token shared by all workers, refreshed before it
//! expires and after a 401, by exactly one task at a time (no token stampede): a 401 drops
//! the token only if it is still the one that was refused, so the workers that all see the
//! same expired token cause one new token, not one each.
//!
//! A renewal before expiry does not stop the other workers (issue 24, the night's 20-s
//! tokens): while one task fetches the new token, the others keep sending with the old
//! one, which is still valid for the renewal margin. Only when there is no usable token
//! (the first, after a 401, or past expiry) do they wait for the fetch, and then they
//! queue at the gate again, their slots being stale. Measured before: every renewal
//! parked the workers behind the fetch and released them together — a burst of a dozen
//! requests, a dozen 429s, a second's pause, and a limit learned too low (goodput 65 %
//! instead of 78 % of a 30/s limit with 20-s tokens).
//!
//! Token requests pass the same gate as API calls and are counted and reported like them
//! (a 429 on the token endpoint pauses everyone for its `Retry-After`).
//!
//! `expires_in` is whole seconds; a missing or zero value (a lifetime under a second) is
//! not trusted for scheduling, and the token is renewed after its first 401 instead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::Traffic;
use super::error::{
    CallError, Failure, describe_body_redacted, describe_transport, one_line, parse_retry_after,
};
use crate::secret::Secret;

/// How the job authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `PODERO_CLIENT_ID` + `PODERO_CLIENT_SECRET`, exchanged at `{base}/oauth2/token/`.
    Client {
        /// The OAuth2 client id.
        id: String,
        /// The OAuth2 client secret.
        secret: Secret,
    },
    /// `PODERO_TOKEN`: a bearer token used as is (it cannot be refreshed).
    Token(Secret),
}

/// Longest lifetime believed: a server claiming more is renewed after a day anyway.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(36_000);

/// The shared token and the means to renew it.
pub struct Auth {
    credentials: Credentials,
    token_url: String,
    /// The token in use: read without waiting, even while a renewal is under way.
    state: Mutex<TokenState>,
    /// Held by the one task fetching a token.
    renewal: tokio::sync::Mutex<()>,
    /// Every secret this process has held, so messages can be scrubbed of them.
    known: Mutex<Vec<String>>,
}

#[derive(Default)]
struct TokenState {
    token: Option<Secret>,
    /// When to renew (a margin before expiry); `None`: never before a 401.
    refresh_at: Option<Instant>,
    /// When the server stops accepting it; `None`: not known.
    expires_at: Option<Instant>,
    generation: u64,
}

/// A token to send, with the generation that identifies it for [`Auth::reject`].
pub struct Bearer {
    /// The token.
    pub token: Secret,
    /// Increases with every new token.
    pub generation: u64,
    /// Whether this caller waited for another task's token request: its gate slot is
    /// stale, so it queues at the gate again instead of sending with the others at once.
    pub waited: bool,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<f64>,
}

impl Auth {
    /// Prepares authentication against `{base_url}/oauth2/token/`.
    pub fn new(credentials: Credentials, base_url: &str) -> Self {
        let mut known = Vec::new();
        let mut state = TokenState::default();
        match &credentials {
            Credentials::Client { id, secret } => {
                known.push(secret.expose().to_owned());
                // A server echoing the Basic header would otherwise show id:secret in base64.
                known.push(basic_credentials(id, secret));
            }
            Credentials::Token(token) => {
                known.push(token.expose().to_owned());
                state.token = Some(token.clone());
            }
        }
        Auth {
            credentials,
            token_url: format!("{base_url}/oauth2/token/"),
            state: Mutex::new(state),
            renewal: tokio::sync::Mutex::new(()),
            known: Mutex::new(known),
        }
    }

    /// The current token, fetching a new one first if there is none or it is due for
    /// renewal. While another task renews, a token that has not expired is used as is.
    pub async fn bearer(
        &self,
        http: &reqwest::Client,
        traffic: &Traffic,
    ) -> Result<Bearer, CallError> {
        if let Some(bearer) = self.current(Instant::now(), true) {
            return Ok(bearer);
        }
        let (_renewing, waited) = match self.renewal.try_lock() {
            Ok(guard) => (guard, false),
            Err(_) => {
                // Another task is renewing: the old token still works until it expires.
                if let Some(bearer) = self.current(Instant::now(), false) {
                    return Ok(bearer);
                }
                (self.renewal.lock().await, true)
            }
        };
        // Renewed by the task this one waited for?
        if let Some(bearer) = self.current(Instant::now(), true) {
            return Ok(Bearer { waited, ..bearer });
        }
        let token = self.fetch(http, traffic).await?;
        Ok(Bearer { waited, ..token })
    }

    /// The token, unless it is due for renewal (`fresh`) or has expired (not `fresh`).
    fn current(&self, now: Instant, fresh: bool) -> Option<Bearer> {
        let state = self.state.lock().expect("auth lock");
        let deadline = if fresh {
            state.refresh_at
        } else {
            state.expires_at
        };
        if deadline.is_some_and(|at| now >= at) {
            return None;
        }
        Some(Bearer {
            token: state.token.clone()?,
            generation: state.generation,
            waited: false,
        })
    }

    /// Whether a refused token can be replaced (client credentials; not `PODERO_TOKEN`).
    pub fn renewable(&self) -> bool {
        matches!(self.credentials, Credentials::Client { .. })
    }

    /// The server refused token `generation` with a 401: drop it so the next
    /// [`Auth::bearer`] fetches a new one, unless it was already replaced.
    pub async fn reject(&self, generation: u64) {
        let mut state = self.state.lock().expect("auth lock");
        if self.renewable() && state.generation == generation {
            state.token = None;
        }
    }

    /// Replaces every secret this process holds with `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let known = self.known.lock().expect("auth lock");
        known
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |acc, s| {
                acc.replace(s.as_str(), "[redacted]")
            })
    }

    /// One token request through the gate, reported to `traffic` like any request; the
    /// caller holds `renewal`. Returns the new token.
    async fn fetch(&self, http: &reqwest::Client, traffic: &Traffic) -> Result<Bearer, CallError> {
        let Credentials::Client { id, secret } = &self.credentials else {
            return Err(CallError {
                failure: Failure::Fatal,
                status: Some(401),
                message: "the server rejected PODERO_TOKEN; set a valid token, or use \
                          PODERO_CLIENT_ID and PODERO_CLIENT_SECRET so the job can renew it"
                    .into(),
            });
        };
        traffic.gate.acquire().await;
        let result = self.request_token(http, id, secret).await;
        match &result {
            Ok((status, _)) => traffic.observe(Some(*status), None),
            Err(e) => traffic.observe(e.status, Some(e.failure)),
        }
        let (_, parsed) = result?;
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map_or(DEFAULT_LIFETIME, |d| d.min(MAX_LIFETIME));
        self.known
            .lock()
            .expect("auth lock")
            .push(parsed.access_token.clone());
        let now = Instant::now();
        let token = Secret::new(parsed.access_token);
        let mut state = self.state.lock().expect("auth lock");
        state.token = Some(token.clone());
        state.refresh_at = Some(now + lifetime - refresh_margin(lifetime));
        state.expires_at = Some(now + lifetime);
        state.generation += 1;
        tracing::debug!(
            lifetime_secs = lifetime.as_secs_f64(),
            "obtained a new access token"
        );
        Ok(Bearer {
            token,
            generation: state.generation,
            waited: false,
        })
    }

    /// `POST {base}/oauth2/token/` with HTTP Basic client authentication.
    async fn request_token(
        &self,
        http: &reqwest::Client,
        id: &str,
        secret: &Secret,
    ) -> Result<(u16, TokenResponse), CallError> {
        let basic = basic_credentials(id, secret);
        let sent = http
            .post(&self.token_url)
            .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
            .json(&serde_json::json!({"grant_type": "client_credentials"}))
            .send()
            .await;
        let response = sent.map_err(|e| self.transport_error(&e, &self.token_context()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut response = response;
        let body = super::read_bounded(&mut response).await.map_err(|e| {
            let mut error = match e {
                super::BodyError::Transport(e) => self.transport_error(&e, &self.token_context()),
                super::BodyError::TooLarge => CallError {
                    failure: Failure::Fatal,
                    status: None,
                    message: format!(
                        "{} answered with more than {} bytes: is --base-url the Podero API?",
                        self.token_url,
                        super::MAX_BODY_BYTES
                    ),
                },
            };
            error.status = Some(status);
            error
        })?;
        if !(200..300).contains(&status) {
            return Err(self.token_refused(status, retry_after, &body));
        }
        let parsed = serde_json::from_slice(&body).map_err(|_| CallError {
            failure: Failure::Fatal,
            status: Some(status),
            message: format!(
                "{} answered without an access_token: is --base-url the Podero API?",
                self.token_url
            ),
        })?;
        Ok((status, parsed))
    }

    fn token_refused(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> CallError {
        let reason = describe_body_redacted(body, &|text| self.scrub(text));
        let failure = match status {
            400 | 401 | 403 => Failure::Fatal,
            _ => Failure::from_status(status, retry_after),
        };
        let message = if failure == Failure::Fatal {
            format!(
                "the token endpoint {} refused the client credentials ({reason}): check \
                 PODERO_CLIENT_ID and PODERO_CLIENT_SECRET, and that they belong to this \
                 environment (sandbox and production credentials differ)",
                self.token_url
            )
        } else {
            format!("token request failed: {reason}")
        };
        CallError {
            failure,
            status: Some(status),
            message,
        }
    }

    /// A transport error as a scrubbed `CallError`, its message prefixed with `context`
    /// (scrubbed whole, then made one line).
    pub(super) fn transport_error(&self, error: &reqwest::Error, context: &str) -> CallError {
        let (failure, message) = describe_transport(error);
        CallError {
            failure,
            status: None,
            message: one_line(&self.scrub(&format!("{context}{message}"))),
        }
    }

    fn token_context(&self) -> String {
        format!("token request to {} failed: ", self.token_url)
    }
}

/// The value of the HTTP Basic header: base64 of `id:secret`.
fn basic_credentials(id: &str, secret: &Secret) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", secret.expose()))
}

/// Renew ahead of expiry: a tenth of the lifetime, at most a minute.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_known_secret() {
        let auth = Auth::new(
            Credentials::Client {
                id: "id".into(),
                secret: Secret::new("s3cret"),
            },
            "http://127.0.0.1:1",
        );
        auth.known.lock().unwrap().push("tok-123".into());
        assert_eq!(
            auth.scrub("echo s3cret and Bearer tok-123"),
            "echo [redacted] and Bearer [redacted]"
        );
    }

    #[test]
    fn refresh_margin_is_bounded() {
        assert_eq!(
            refresh_margin(Duration::from_secs(36_000)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
    }
}
