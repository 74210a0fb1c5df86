//! Request counters, by HTTP status (or `network` for transport errors).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts of requests by outcome label.
#[derive(Default)]
pub struct Stats {
    by_status: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Counts one request.
    pub fn count(&self, label: &str) {
        let mut map = self.by_status.lock().expect("stats lock");
        *map.entry(label.to_owned()).or_default() += 1;
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_status.lock().expect("stats lock").clone()
    }

    /// All requests sent so far.
    pub fn total(&self) -> u64 {
        self.by_status.lock().expect("stats lock").values().sum()
    }
}
