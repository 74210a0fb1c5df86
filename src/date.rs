//! Today's date in UTC as `YYYY-MM-DD`: links are valid while their `expiration_date`
//! (a plain date) is today or later. ISO dates compare correctly as strings.

/// Today (UTC).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    from_days(secs.div_euclid(86_400))
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (Howard Hinnant's `civil_from_days`).
pub fn from_days(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Whether a link expiring on `expiration` (the server's text) still works on `today`.
/// A value that is not a date counts as expired: renewing costs one extra link, trusting
/// it could leave a customer with a dead one.
pub fn still_valid(expiration: &str, today: &str) -> bool {
    let day = expiration.get(..10).unwrap_or_default();
    crate::commands::links::config::parse_date(day).is_some_and(|day| day.as_str() >= today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_validity() {
        assert_eq!(from_days(0), "1970-01-01");
        assert_eq!(from_days(11_016), "2000-02-29");
        assert!(still_valid("2026-11-29", "2026-11-28"));
        assert!(still_valid("2026-11-28", "2026-11-28"));
        assert!(!still_valid("2026-11-27", "2026-11-28"));
        assert!(!still_valid("tomorrow", "2026-11-28"));
    }
}
