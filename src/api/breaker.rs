//! The circuit breaker: when nearly every recent request fails with a server or network
//! error, the API is down, and marking the rest of the file failed would only bury the
//! cause. The pipeline stops starting rows once it trips.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Requests remembered.
pub const WINDOW: usize = 50;
/// Fewest requests seen before the breaker may trip.
pub const MIN_SAMPLES: usize = 30;
/// Share of failures in the window that trips it.
pub const TRIP_RATIO: f64 = 0.9;

/// Tracks recent request health across all workers.
#[derive(Default)]
pub struct Breaker {
    recent: Mutex<VecDeque<bool>>,
    tripped: AtomicBool,
}

impl Breaker {
    /// Records one request: `failed` means a 5xx or a network error (429s and 4xx are not
    /// outages and are not recorded as failures).
    pub fn record(&self, failed: bool) {
        let mut recent = self.recent.lock().expect("breaker lock");
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(failed);
        let failures = recent.iter().filter(|f| **f).count();
        if recent.len() >= MIN_SAMPLES && failures as f64 >= TRIP_RATIO * recent.len() as f64 {
            self.tripped.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the API looks down.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed)
    }

    /// `(failures, requests)` in the window, for the message.
    pub fn window(&self) -> (usize, usize) {
        let recent = self.recent.lock().expect("breaker lock");
        (recent.iter().filter(|f| **f).count(), recent.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_only_when_nearly_everything_fails() {
        let breaker = Breaker::default();
        for i in 0..100 {
            breaker.record(i % 5 == 0);
        }
        assert!(!breaker.tripped());
        for _ in 0..MIN_SAMPLES {
            breaker.record(true);
        }
        assert!(!breaker.tripped(), "30 of 50 is not nearly all");
        for _ in 0..WINDOW {
            breaker.record(true);
        }
        assert!(breaker.tripped());
    }
}
