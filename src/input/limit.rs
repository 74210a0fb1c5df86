//! Bounded reading: the byte source is wrapped in [`Limited`], which refuses to
//! deliver more than a budget of bytes between two records. The CSV parser then stops
//! with a recognisable I/O error instead of buffering an endless field.

use std::io::{self, Read};

/// The marker carried inside the `io::Error` returned when the budget is spent.
#[derive(Debug)]
pub(super) struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record size limit reached")
    }
}

impl std::error::Error for BudgetSpent {}

/// True if `err` was produced by [`Limited`] because the budget was spent.
pub(super) fn is_budget_spent(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<BudgetSpent>())
}

/// A reader that fails once more than `limit` bytes were delivered since the last
/// [`Limited::reset`]. The parser's read-ahead buffer (~8 KiB) makes the bound
/// approximate, which is fine: it exists to keep memory flat, not to be exact.
pub(super) struct Limited<R> {
    inner: R,
    delivered: usize,
    limit: usize,
    eof_seen: bool,
}

impl<R> Limited<R> {
    pub(super) fn new(inner: R, limit: usize) -> Self {
        Limited {
            inner,
            delivered: 0,
            limit,
            eof_seen: false,
        }
    }

    /// True once the source reported its end: the record being read then ended
    /// without a line terminator.
    pub(super) fn eof_seen(&self) -> bool {
        self.eof_seen
    }

    /// Starts a new budget; called after each record is returned.
    pub(super) fn reset(&mut self) {
        self.delivered = 0;
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.delivered > self.limit {
            return Err(io::Error::other(BudgetSpent));
        }
        let n = self.inner.read(buf)?;
        self.eof_seen |= n == 0 && !buf.is_empty();
        self.delivered = self.delivered.saturating_add(n);
        Ok(n)
    }
}
