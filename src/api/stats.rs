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
        // A label is new a few times per run: only then is it copied.
        match map.get_mut(label) {
            Some(count) => *count += 1,
            None => {
                map.insert(label.to_owned(), 1);
            }
        }
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
