//! Injected faults: what a real, busy, proxied API does to a client.
//!
//! Per request the order is: latency → rate limit → storm → random 429 → random 5xx →
//! the endpoint. A storm answers every API request 429 for a while, then ends by itself
//! (a gateway during a deploy, another client spending the shared quota). Latency and the rate limit apply to the token endpoint too
//! (a real gateway limits every path); the random 429/5xx apply to API paths
//! only, so a client can always obtain a token. The three `commit_then_*` /
//! `fail_5xx_after_commit` faults apply only to a *successful* POST building or
//! POST user: the building or user exists, but the client cannot know it.
//!
//! [`Faults::email_taken_status`] is no fault but lives here because it is an
//! unknown of the real API a test varies at runtime, through the same admin call.
//!
//! All random draws come from one `StdRng` seeded by [`crate::sandbox::Builder::seed`],
//! so a single-connection run is reproducible.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A token bucket limit over all API and token requests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained requests per second (the refill rate).
    pub per_second: f64,
    /// Bucket size: requests allowed back to back after a quiet period (0 acts as 1).
    pub burst: u32,
}

/// The faults to inject. `Faults::default()` injects none.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Token bucket over all requests except admin ones; an excess request gets
    /// 429, `Retry-After: <whole seconds until a token is free, at least 1>` and
    /// `{"detail": "..."}`.
    pub rate_limit: Option<RateLimit>,
    /// Probability that an API request gets 429 with `Retry-After: 1`.
    pub random_429: f64,
    /// For this long after the faults are set, every API request gets 429 with
    /// `Retry-After: 1`, whatever its rate (zero: no storm).
    pub storm: Duration,
    /// Probability that an API request gets 500, 502 or 503 (about half with an
    /// HTML body, as a proxy sends) before any state change.
    pub random_5xx: f64,
    /// Delay added before answering any request.
    pub latency: Duration,
    /// Up to this much more delay, uniformly random.
    pub jitter: Duration,
    /// POST building and POST user: the building (user) is created, then the
    /// connection is closed without a response.
    pub commit_then_drop: f64,
    /// POST building and POST user: created, then the response waits `stall`.
    pub commit_then_stall: f64,
    /// How long a stalled response waits (default 120 s).
    pub stall: Duration,
    /// POST building and POST user: created, then the answer is a 500 with an HTML body.
    pub fail_5xx_after_commit: f64,
    /// The status of a POST user whose e-mail another user holds (undocumented:
    /// 400, 409 and 422 are all plausible), with `{"detail": "..."}`. Default 400.
    pub email_taken_status: u16,
    /// `GET .../users` answers this status every time (`{"detail": ...}`), as a gateway
    /// does for a list too large for its timeout; `None`: the list is served.
    pub list_users_status: Option<u16>,
}

/// The default of [`Faults::email_taken_status`].
pub const DEFAULT_EMAIL_TAKEN_STATUS: u16 = 400;

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_limit: None,
            random_429: 0.0,
            storm: Duration::ZERO,
            random_5xx: 0.0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            commit_then_drop: 0.0,
            commit_then_stall: 0.0,
            stall: Duration::from_secs(120),
            fail_5xx_after_commit: 0.0,
            email_taken_status: DEFAULT_EMAIL_TAKEN_STATUS,
            list_users_status: None,
        }
    }
}

/// The same knobs as [`Faults`] in JSON-friendly units, for `PUT /__sandbox/faults`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FaultsJson {
    rate_limit: Option<RateLimit>,
    random_429: f64,
    storm_ms: u64,
    random_5xx: f64,
    latency_ms: u64,
    jitter_ms: u64,
    commit_then_drop: f64,
    commit_then_stall: f64,
    stall_ms: Option<u64>,
    fail_5xx_after_commit: f64,
    email_taken_status: Option<u16>,
    list_users_status: Option<u16>,
}

impl FaultsJson {
    /// Why these settings cannot be used, if they cannot.
    pub fn problem(&self) -> Option<String> {
        self.email_taken_status
            .filter(|s| !(400..500).contains(s))
            .map(|s| format!("email_taken_status must be a 4xx status, not {s}"))
    }
}

impl From<FaultsJson> for Faults {
    fn from(j: FaultsJson) -> Self {
        Faults {
            rate_limit: j.rate_limit,
            random_429: j.random_429,
            storm: Duration::from_millis(j.storm_ms),
            random_5xx: j.random_5xx,
            latency: Duration::from_millis(j.latency_ms),
            jitter: Duration::from_millis(j.jitter_ms),
            commit_then_drop: j.commit_then_drop,
            commit_then_stall: j.commit_then_stall,
            stall: j
                .stall_ms
                .map_or(Faults::default().stall, Duration::from_millis),
            fail_5xx_after_commit: j.fail_5xx_after_commit,
            email_taken_status: j.email_taken_status.unwrap_or(DEFAULT_EMAIL_TAKEN_STATUS),
            list_users_status: j.list_users_status,
        }
    }
}

/// What the fault gate decided for one request, before the endpoint runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Gate {
    /// Go on to the endpoint.
    Pass,
    /// Rate limited: 429 with this `Retry-After`.
    Limited { retry_after_secs: u64 },
    /// Random 429, or one in a storm (`Retry-After: 1`).
    Random429,
    /// Random server error.
    Random5xx { status: u16, html: bool },
}

/// What happens after a POST building or POST user committed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum AfterCommit {
    /// Answer normally.
    Respond,
    /// Close the connection with no response.
    Drop,
    /// Answer after this delay.
    Stall(Duration),
    /// Answer 500 with an HTML body.
    Fail500,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Bucket {
            limit,
            tokens: capacity(limit),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds until one is free.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + elapsed * rate).min(capacity(self.limit));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - self.tokens) / rate).ceil();
        Err(if wait.is_finite() {
            (wait as u64).max(1)
        } else {
            3600
        })
    }
}

fn capacity(limit: RateLimit) -> f64 {
    f64::from(limit.burst.max(1))
}

/// The live fault configuration with its bucket and random generator.
#[derive(Debug)]
pub(crate) struct FaultState {
    faults: Faults,
    bucket: Option<Bucket>,
    /// When the storm of the current faults ends.
    storm_until: Instant,
    rng: StdRng,
}

impl FaultState {
    pub fn new(faults: Faults, seed: u64) -> Self {
        let bucket = faults.rate_limit.map(Bucket::new);
        FaultState {
            storm_until: Instant::now() + faults.storm,
            faults,
            bucket,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Replaces the faults; a changed rate limit starts with a full bucket.
    pub fn set(&mut self, faults: Faults) {
        if faults.rate_limit != self.faults.rate_limit {
            self.bucket = faults.rate_limit.map(Bucket::new);
        }
        self.storm_until = Instant::now() + faults.storm;
        self.faults = faults;
    }

    /// The delay to add before answering (latency plus random jitter).
    pub fn delay(&mut self) -> Duration {
        let jitter = self.faults.jitter.as_secs_f64();
        let extra = if jitter > 0.0 {
            self.rng.random_range(0.0..jitter)
        } else {
            0.0
        };
        self.faults.latency + Duration::from_secs_f64(extra)
    }

    /// Decides rate limit / random 429 / random 5xx. `api` is false for the
    /// token endpoint, which only the rate limit applies to.
    pub fn gate(&mut self, api: bool) -> Gate {
        if let Some(bucket) = &mut self.bucket
            && let Err(secs) = bucket.take(Instant::now())
        {
            return Gate::Limited {
                retry_after_secs: secs,
            };
        }
        if !api {
            return Gate::Pass;
        }
        if Instant::now() < self.storm_until || self.roll(self.faults.random_429) {
            return Gate::Random429;
        }
        if self.roll(self.faults.random_5xx) {
            let status = [500, 502, 503][self.rng.random_range(0..3usize)];
            return Gate::Random5xx {
                status,
                html: self.rng.random_bool(0.5),
            };
        }
        Gate::Pass
    }

    /// The status of a POST user with a taken e-mail.
    pub fn email_taken_status(&self) -> u16 {
        self.faults.email_taken_status
    }

    /// The status the user list answers with instead of the list, if any.
    pub fn list_users_status(&self) -> Option<u16> {
        self.faults.list_users_status
    }

    /// Decides the fate of a POST building or POST user that has just committed.
    pub fn after_commit(&mut self) -> AfterCommit {
        if self.roll(self.faults.commit_then_drop) {
            AfterCommit::Drop
        } else if self.roll(self.faults.commit_then_stall) {
            AfterCommit::Stall(self.faults.stall)
        } else if self.roll(self.faults.fail_5xx_after_commit) {
            AfterCommit::Fail500
        } else {
            AfterCommit::Respond
        }
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_asks_to_wait() {
        let mut bucket = Bucket::new(RateLimit {
            per_second: 0.5,
            burst: 2,
        });
        let now = bucket.last;
        assert_eq!(bucket.take(now), Ok(()));
        assert_eq!(bucket.take(now), Ok(()));
        assert_eq!(bucket.take(now), Err(2));
        assert_eq!(bucket.take(now + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_storm_refuses_every_api_request_then_ends() {
        let storm = Faults {
            storm: Duration::from_millis(200),
            ..Faults::default()
        };
        let mut state = FaultState::new(storm, 7);
        assert!((0..100).all(|_| state.gate(true) == Gate::Random429));
        assert_eq!(state.gate(false), Gate::Pass, "tokens are still issued");
        std::thread::sleep(Duration::from_millis(250));
        assert!((0..100).all(|_| state.gate(true) == Gate::Pass));
    }

    #[test]
    fn no_faults_always_pass() {
        let mut state = FaultState::new(Faults::default(), 7);
        assert!((0..1000).all(|_| state.gate(true) == Gate::Pass));
        assert_eq!(state.after_commit(), AfterCommit::Respond);
    }
}
