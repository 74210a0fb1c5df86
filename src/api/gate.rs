//! The one gate every request passes: a `governor` limiter at the effective rate, a shared
//! pause for `Retry-After`, and an adaptive rate that backs off on 429s.
//!
//! Why one gate: PUTs, POSTs, list calls, retries and token requests all count against
//! the same server limit, so they must all wait in the same queue. A 429 seen by one
//! worker pauses every worker, and lowers the rate for all of them.
//!
//! Adaptation is AIMD: each 429 (at most one per [`DECREASE_COOLDOWN`]) multiplies the
//! rate by [`DECREASE_FACTOR`]; every [`INCREASE_INTERVAL`] without a 429 adds
//! [`INCREASE_STEP`] of the ceiling back, never above `--rate`. Against a server limited
//! below `--rate`, the rate saw-tooths between about 0.7× and just over the server's limit,
//! with one 429 (and its `Retry-After` pause) per tooth. Measured in
//! `tests/politeness.rs`: a server allowing 60/s (burst 5) and `--rate 120` give 0.8% 429s
//! and ~38 requests/s achieved; the pauses, which the server imposes, cost most of the gap.
//!
//! A rate change installs a new limiter (governor's rate is fixed). A permit obtained from
//! a replaced limiter is not used: the waiter queues again at the new rate, so the old and
//! the new limiter never admit side by side.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Multiplier applied to the rate on a 429.
pub const DECREASE_FACTOR: f64 = 0.7;
/// At most one decrease per this interval: a burst of 429s from concurrent workers is one signal.
pub const DECREASE_COOLDOWN: Duration = Duration::from_secs(1);
/// Quiet time (no 429) before the rate is raised a step.
pub const INCREASE_INTERVAL: Duration = Duration::from_secs(2);
/// One raise, as a fraction of the ceiling.
pub const INCREASE_STEP: f64 = 0.05;
/// The rate never drops below this (requests per second).
pub const MIN_RATE: f64 = 0.2;
/// Longest pause a `Retry-After` may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Pause after a 429 without `Retry-After`.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Shared request gate. Cheap to share behind an `Arc`.
pub struct Gate {
    ceiling: f64,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
    state: Mutex<AdaptState>,
}

struct AdaptState {
    rate: f64,
    paused_until: Option<Instant>,
    last_decrease: Option<Instant>,
    last_change: Instant,
}

impl Gate {
    /// A gate allowing `rate` requests per second at most.
    pub fn new(rate: f64) -> Self {
        Gate {
            ceiling: rate,
            limiter: RwLock::new(Arc::new(limiter_for(rate))),
            state: Mutex::new(AdaptState {
                rate,
                paused_until: None,
                last_decrease: None,
                last_change: Instant::now(),
            }),
        }
    }

    /// Waits until a request may be sent: past any shared pause, then through the limiter.
    pub async fn acquire(&self) {
        loop {
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until.into()).await;
            }
            let limiter = self.limiter();
            limiter.until_ready().await;
            // While we waited, a 429 may have paused everyone, or the rate may have changed.
            // A permit from a replaced limiter does not count: if it did, the old and the
            // new limiter would each admit their rate during the change (measured: twice
            // the rate for a second after every raise, and the 429s that follow).
            if self.paused_until().is_none() && Arc::ptr_eq(&limiter, &self.limiter()) {
                return;
            }
        }
    }

    /// The effective rate now, requests per second.
    pub fn rate(&self) -> f64 {
        self.state.lock().expect("gate lock").rate
    }

    /// The configured ceiling (`--rate`).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// A 429: pause everyone for `Retry-After` (capped), and lower the rate.
    pub fn on_throttled(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let pause = retry_after
            .unwrap_or(DEFAULT_THROTTLE_PAUSE)
            .min(MAX_RETRY_AFTER);
        let mut state = self.state.lock().expect("gate lock");
        let until = now + pause;
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        let cooled = state
            .last_decrease
            .is_none_or(|at| now.duration_since(at) >= DECREASE_COOLDOWN);
        if cooled {
            state.rate = (state.rate * DECREASE_FACTOR).max(MIN_RATE);
            state.last_decrease = Some(now);
            state.last_change = now;
            self.install(state.rate);
        }
    }

    /// A request that was not throttled: after enough quiet time, raise the rate a step.
    pub fn on_not_throttled(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("gate lock");
        if state.rate >= self.ceiling || now.duration_since(state.last_change) < INCREASE_INTERVAL {
            return;
        }
        state.rate = (state.rate + self.ceiling * INCREASE_STEP).min(self.ceiling);
        state.last_change = now;
        self.install(state.rate);
    }

    fn paused_until(&self) -> Option<Instant> {
        let mut state = self.state.lock().expect("gate lock");
        match state.paused_until {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                state.paused_until = None;
                None
            }
        }
    }

    fn limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        self.limiter.read().expect("gate lock").clone()
    }

    fn install(&self, rate: f64) {
        *self.limiter.write().expect("gate lock") = Arc::new(limiter_for(rate));
    }
}

/// Burst = 5% of a second's worth of requests (at least 1): small enough that no
/// one-second window exceeds the rate by much, large enough that high rates are not
/// throttled by timer granularity.
pub fn burst_for(rate: f64) -> u32 {
    ((rate * 0.05).ceil() as u32).clamp(1, 1000)
}

fn limiter_for(rate: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate.max(MIN_RATE));
    let burst = NonZeroU32::new(burst_for(rate)).expect("burst is at least 1");
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("period is positive")
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_lowers_the_rate_once_per_cooldown() {
        let gate = Gate::new(100.0);
        gate.on_throttled(None);
        gate.on_throttled(None);
        assert!((gate.rate() - 70.0).abs() < 1e-9, "rate {}", gate.rate());
    }

    #[test]
    fn quiet_time_raises_the_rate_but_never_above_the_ceiling() {
        let gate = Gate::new(100.0);
        gate.on_throttled(None);
        gate.state.lock().unwrap().last_change -= INCREASE_INTERVAL;
        gate.on_not_throttled();
        assert!((gate.rate() - 75.0).abs() < 1e-9, "rate {}", gate.rate());
        for _ in 0..20 {
            gate.state.lock().unwrap().last_change -= INCREASE_INTERVAL;
            gate.on_not_throttled();
        }
        assert_eq!(gate.rate(), 100.0);
    }

    #[tokio::test]
    async fn retry_after_pauses_acquire() {
        let gate = Gate::new(1000.0);
        gate.on_throttled(Some(Duration::from_millis(300)));
        let start = Instant::now();
        gate.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(290));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_change_does_not_let_old_and_new_limiters_admit_together() {
        const RATE: f64 = 20.0;
        let gate = Arc::new(Gate::new(RATE));
        let admitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let window = Duration::from_secs(1);
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (gate, admitted) = (gate.clone(), admitted.clone());
                tokio::spawn(async move {
                    loop {
                        gate.acquire().await;
                        if start.elapsed() >= window {
                            return;
                        }
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let swaps = 5;
        for _ in 0..swaps {
            tokio::time::sleep(window / (swaps + 1)).await;
            gate.install(RATE);
        }
        for worker in workers {
            worker.await.unwrap();
        }
        // One second at RATE, plus one burst per limiter (the first and each swap).
        let most = RATE as usize + (swaps as usize + 1) * burst_for(RATE) as usize;
        let admitted = admitted.load(std::sync::atomic::Ordering::Relaxed);
        assert!(admitted <= most, "{admitted} admitted in 1 s at {RATE}/s");
    }

    #[test]
    fn burst_is_small_and_positive() {
        assert_eq!(burst_for(10.0), 1);
        assert_eq!(burst_for(100.0), 5);
        assert_eq!(burst_for(1e6), 1000);
    }
}
