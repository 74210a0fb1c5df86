//! `--max-vanished`: a nightly export that lost rows must not pass as a good night. After
//! staging, before the first request, a run whose input no longer has more of the
//! checkpoint's rows than allowed stops with exit 2, naming the numbers and how to list
//! the rows (`export --state vanished`).
//!
//! The default, 10 % of the checkpoint's rows: a CRM loses a small share of its customers
//! in a night (contracts ending), while an export job that died half-way, a wrong filter
//! or yesterday's half-written file loses a large one. 10 % lets a batch of cancellations
//! through and stops a cut export. A count (`--max-vanished 50`) suits a small pilot,
//! where one customer is already many percent; `100%` turns the guard off. `--only-failed`
//! skips the guard: it is often fed only the rows to fix.

use crate::checkpoint::vanished::VanishedCount;
pub use crate::cli::{DEFAULT_MAX_VANISHED, MaxVanished, parse_max_vanished};
use crate::error::AppError;

impl MaxVanished {
    /// Whether `count.vanished` rows is more than allowed.
    pub fn exceeded_by(&self, count: VanishedCount) -> bool {
        match *self {
            MaxVanished::Rows(n) => count.vanished > n,
            MaxVanished::Percent(p) => count.vanished as f64 * 100.0 > p * count.known as f64,
        }
    }
}

/// The run's stop, when the input lacks too many rows: exit 2, nothing sent.
pub fn guard(
    max: MaxVanished,
    count: VanishedCount,
    read: u64,
    checkpoint: &std::path::Path,
) -> Result<(), AppError> {
    if !max.exceeded_by(count) {
        return Ok(());
    }
    let share = count.vanished as f64 * 100.0 / count.known.max(1) as f64;
    Err(AppError::Usage(format!(
        "{} of the checkpoint's {} rows ({share:.0}%) are not in this input ({read} rows \
         read), more than --max-vanished {max} allows: was the CRM export cut short? Nothing \
         was sent. List them with `podero-onboard export --checkpoint {} --state vanished`; \
         if these customers really left, run again with --max-vanished {}; to feed back only \
         some rows (a fixed `export --state failed`), add --only-failed",
        count.vanished,
        count.known,
        checkpoint.display(),
        count.vanished,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(vanished: u64, known: u64) -> VanishedCount {
        VanishedCount { vanished, known }
    }

    #[test]
    fn counts_and_shares_parse_and_bound() {
        assert_eq!(parse_max_vanished("50"), Ok(MaxVanished::Rows(50)));
        assert_eq!(parse_max_vanished("10%"), Ok(MaxVanished::Percent(10.0)));
        assert_eq!(parse_max_vanished(" 2.5 %"), Ok(MaxVanished::Percent(2.5)));
        for bad in ["", "-1", "101%", "ten", "5%%", "NaN%"] {
            assert!(parse_max_vanished(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_guard_stops_only_above_the_limit() {
        let ten = MaxVanished::Percent(10.0);
        assert!(!ten.exceeded_by(count(4, 40)));
        assert!(ten.exceeded_by(count(5, 40)));
        assert!(ten.exceeded_by(count(38, 40)));
        assert!(!ten.exceeded_by(count(0, 0)));
        assert!(!MaxVanished::Percent(100.0).exceeded_by(count(40, 40)));
        assert!(!MaxVanished::Rows(3).exceeded_by(count(3, 4)));
        assert!(MaxVanished::Rows(3).exceeded_by(count(4, 400)));
        let stop = guard(ten, count(38, 40), 2, "x.sqlite".as_ref()).unwrap_err();
        let text = stop.to_string();
        assert!(
            text.contains("38 of the checkpoint's 40 rows (95%)"),
            "{text}"
        );
        assert_eq!(stop.exit_code() as i32, 2);
    }
}
