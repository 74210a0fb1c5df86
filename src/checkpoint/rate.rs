//! The request rate the server's limit allowed, as the last run learned it: two `meta`
//! keys, `learned_rate` (requests per second) and `learned_rate_at` (unix seconds), so a
//! run killed mid-way — or tomorrow's — starts at the limit instead of at `--rate` (four
//! times over it, a second's pause per 429) or at the bottom (relearning it).
//!
//! Only the writer thread writes them during a run, like everything else; no migration is
//! needed (`meta` is a key-value table since schema 1).

use rusqlite::{Connection, params};

use super::{Checkpoint, CheckpointError};

/// The `meta` key of the learned rate.
const RATE_KEY: &str = "learned_rate";
/// The `meta` key of when it was learned.
const AT_KEY: &str = "learned_rate_at";

/// A learned rate and when it was recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedRate {
    /// Requests per second.
    pub rate: f64,
    /// Unix seconds.
    pub at: i64,
}

impl Checkpoint {
    /// The rate an earlier run learned, if one did (a value that does not parse as a
    /// positive number is ignored: the run starts at `--rate` as before).
    pub(crate) fn learned_rate(&self) -> Result<Option<LearnedRate>, CheckpointError> {
        let Some(rate) = self.meta(RATE_KEY)? else {
            return Ok(None);
        };
        let at = self
            .meta(AT_KEY)?
            .and_then(|at| at.parse().ok())
            .unwrap_or(0);
        Ok(rate
            .parse::<f64>()
            .ok()
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map(|rate| LearnedRate { rate, at }))
    }
}

/// Records `rate` as learned now (the writer thread's connection).
pub(crate) fn write(conn: &Connection, rate: f64) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    upsert.execute(params![RATE_KEY, format!("{rate:.3}")])?;
    upsert.execute(params![AT_KEY, super::now().to_string()])?;
    Ok(())
}
