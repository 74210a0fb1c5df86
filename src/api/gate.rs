//! The one gate every request passes: a pacer at the adaptive rate, and a shared pause
//! for `Retry-After`.
//!
//! Why one gate: PUTs, POSTs, list calls, retries and token requests all count against
//! the same server limit, so they must all wait in the same queue. A 429 seen by one
//! worker pauses every worker, and lowers the rate for all of them.
//!
//! The rate comes from [`Controller`] (`src/api/adapt.rs`: it learns the server's limit
//! from the achieved rate at each 429, recovers along a cubic, holds, probes; its module
//! header justifies the design). The gate feeds it the real clock as seconds since the
//! gate was made.
//!
//! The pacer is GCRA (a virtual-scheduling token bucket): each admission reserves the
//! next slot `1 / rate` after the previous one, up to `burst_for(rate)` slots early. It
//! holds one number, so the rate can change on every request without the burst a freshly
//! installed limiter would hand out (the previous design swapped `governor` limiters and
//! had to make waiters re-queue to avoid that). A slot reserved before a pause is not
//! used: every 429 starts a new generation, and a waiter whose slot is from an older
//! one queues again (measured before this rule: the slots reserved at the old rate were
//! honoured after the pause, 18 requests/s against a limit of 10, and a second 429).
//!
//! A waiter reserves a slot at most one period ahead; one whose slot would be further
//! asks again later, at the rate of then. Measured before this rule at `--concurrency 32`:
//! 32 slots reserved at the old rate (3 s of them at 10/s), so the rate sent trailed the
//! controller's by seconds: a probe's 429 came at a controller rate of 25 while 10.5/s was
//! being sent (the evidence was tallied at the wrong rate), and a raised limit was found
//! 35 s after it rose; with it, 12.6 s. Each admission is reported to the controller
//! ([`Controller::on_sent`]).
//!
//! Below the pacer, `governor` holds the hard ceiling: a fixed quota of `--rate` with the
//! same burst, which no controller decision can exceed. Its quota never changes, so it
//! never needs swapping; the adaptive rate only ever asks for less than it allows.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub use super::adapt::MIN_RATE;
use super::adapt::{Controller, Verdict};

/// Longest pause a `Retry-After` may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Pause after a 429 without `Retry-After`.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Shared request gate. Cheap to share behind an `Arc`.
pub struct Gate {
    ceiling: f64,
    /// `--rate` as a fixed `governor` quota: the last check before a request leaves.
    hard_limit: DefaultDirectRateLimiter,
    origin: Instant,
    state: Mutex<State>,
}

struct State {
    controller: Controller,
    /// GCRA's theoretical arrival time of the next request, seconds since `origin`.
    next: f64,
    /// Bumped by every decrease: slots reserved under an older generation are void.
    generation: u64,
}

/// What `acquire` must wait for.
enum Wait {
    /// A `Retry-After` pause, until this time.
    Pause(f64),
    /// The reserved slot at this time, reserved under this generation.
    Slot(f64, u64),
    /// No slot reserved: the next free one is more than a period away; ask again at this
    /// time, at the rate of then.
    Later(f64),
}

impl Gate {
    /// A gate allowing `rate` requests per second at most.
    pub fn new(rate: f64) -> Self {
        Gate {
            ceiling: rate,
            hard_limit: hard_limit(rate),
            origin: Instant::now(),
            state: Mutex::new(State {
                controller: Controller::new(rate),
                next: 0.0,
                generation: 0,
            }),
        }
    }

    /// Starts the adaptive rate at a limit an earlier run learned (see
    /// [`Controller::seeded`]) instead of at `--rate`. Meant for before the first request
    /// that matters: what the controller saw so far is forgotten.
    pub fn seed(&self, learned: f64) {
        // The curve starts at the gate's time 0, a moment ago (the token request): its
        // short hold at the learned limit is shortened by as much.
        self.lock().controller = Controller::seeded(self.ceiling, learned);
    }

    /// The limit the adaptive rate believes in, once a 429 (or a seed) taught one.
    pub fn learned(&self) -> Option<f64> {
        self.lock().controller.learned()
    }

    /// Waits until a request may be sent: past any shared pause, its pacer slot, and the
    /// hard ceiling.
    pub async fn acquire(&self) {
        self.paced().await;
        self.hard_limit.until_ready().await;
    }

    async fn paced(&self) {
        loop {
            let (wait, now) = self.reserve();
            match wait {
                Wait::Pause(until) | Wait::Later(until) => {
                    tokio::time::sleep_until(self.instant(until).into()).await;
                }
                Wait::Slot(at, generation) => {
                    if at > now {
                        tokio::time::sleep_until(self.instant(at).into()).await;
                    }
                    // A 429 while we slept voids the slot: it was paced at the old rate
                    // (honoured after the pause, such slots doubled the rate there).
                    let mut state = self.lock();
                    if at <= now || state.generation == generation {
                        let now = self.now();
                        state.controller.on_sent(now);
                        return;
                    }
                }
            }
        }
    }

    /// The effective rate now, requests per second.
    pub fn rate(&self) -> f64 {
        let now = self.now();
        self.lock().controller.rate(now)
    }

    /// The configured ceiling (`--rate`).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// A 429: pause everyone for `Retry-After` (capped), and lower the rate.
    pub fn on_throttled(&self, retry_after: Option<Duration>) {
        let now = self.now();
        let pause = retry_after
            .unwrap_or(DEFAULT_THROTTLE_PAUSE)
            .min(MAX_RETRY_AFTER);
        let mut state = self.lock();
        let throttled = state.controller.on_throttled(now, pause);
        if throttled.decreased {
            let learned = state.controller.learned().unwrap_or(self.ceiling);
            // On a copy: asking the real controller about the future would end the pause.
            let rate = state.controller.clone().rate(throttled.pause_until);
            tracing::debug!(
                verdict = ?throttled.verdict,
                at = format_args!("{now:.3}"),
                learned = format_args!("{learned:.2}"),
                rate = format_args!("{rate:.2}"),
                pause_ms = pause.as_millis() as u64,
                "429: limit learned, rate lowered"
            );
        } else if throttled.verdict != Verdict::SameSignal {
            // Refused, spurious or the background: paused, but the rate is kept.
            tracing::debug!(
                verdict = ?throttled.verdict,
                at = format_args!("{now:.3}"),
                pause_ms = pause.as_millis() as u64,
                "429: not about our rate, rate kept"
            );
        }
        // Slots handed out before the pause are void; pacing restarts when it ends.
        state.next = throttled.pause_until;
        state.generation += 1;
    }

    /// A request that was not throttled: it counts towards the achieved rate.
    pub fn on_not_throttled(&self) {
        let now = self.now();
        self.lock().controller.on_accepted(now);
    }

    fn reserve(&self) -> (Wait, f64) {
        let now = self.now();
        let mut state = self.lock();
        if let Some(until) = state.controller.paused_until(now) {
            return (Wait::Pause(until), now);
        }
        let rate = state.controller.rate(now);
        let period = 1.0 / rate;
        let tolerance = f64::from(burst_for(rate) - 1) * period;
        let tat = state.next.max(now);
        let at = (tat - tolerance).max(now);
        if at > now + period {
            return (Wait::Later(at - period), now);
        }
        state.next = tat + period;
        (Wait::Slot(at, state.generation), now)
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn instant(&self, secs: f64) -> Instant {
        self.origin + Duration::from_secs_f64(secs.max(0.0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("gate lock")
    }
}

/// `--rate` as a `governor` quota, with the pacer's burst at that rate.
fn hard_limit(rate: f64) -> DefaultDirectRateLimiter {
    // At most one request a day below: `--rate` is checked positive, this keeps it finite.
    let period = Duration::from_secs_f64((1.0 / rate).min(86_400.0));
    let burst = NonZeroU32::new(burst_for(rate)).expect("burst_for is at least 1");
    let quota = Quota::with_period(period)
        .expect("a positive rate has a non-zero period")
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

/// Burst = 5% of a second's worth of requests (at least 1): small enough that no
/// one-second window exceeds the rate by much, large enough that high rates are not
/// throttled by timer granularity.
pub fn burst_for(rate: f64) -> u32 {
    ((rate * 0.05).ceil() as u32).clamp(1, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn throttling_lowers_the_rate_and_a_second_429_in_the_pause_does_not() {
        let gate = Gate::new(100.0);
        gate.on_not_throttled();
        gate.on_throttled(Some(Duration::from_secs(1)));
        let lowered = gate.rate();
        assert!(lowered < 100.0, "rate {lowered}");
        gate.on_throttled(Some(Duration::from_secs(1)));
        assert!((gate.rate() - lowered).abs() < 1e-9, "rate {}", gate.rate());
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
    async fn concurrent_waiters_are_paced_at_the_rate_plus_one_burst() {
        const RATE: f64 = 20.0;
        let gate = Arc::new(Gate::new(RATE));
        let admitted = Arc::new(AtomicUsize::new(0));
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
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let most = RATE as usize + burst_for(RATE) as usize;
        let admitted = admitted.load(Ordering::Relaxed);
        assert!(admitted <= most, "{admitted} admitted in 1 s at {RATE}/s");
        assert!(
            admitted >= most - 3,
            "only {admitted} admitted in 1 s at {RATE}/s"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_reserve_no_slot_beyond_the_next_period() {
        // 16 waiters at 5/s: reserving a slot each would pace the last one 3 s ahead at
        // today's rate, whatever the rate does meanwhile.
        const RATE: f64 = 5.0;
        let gate = Arc::new(Gate::new(RATE));
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.acquire().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ahead = gate.lock().next - gate.now();
        assert!(ahead <= 2.0 / RATE, "slots reserved {ahead:.2} s ahead");
        for waiter in waiters {
            waiter.abort();
        }
    }

    #[test]
    fn burst_is_small_and_positive() {
        assert_eq!(burst_for(10.0), 1);
        assert_eq!(burst_for(100.0), 5);
        assert_eq!(burst_for(1e6), 1000);
    }
}
