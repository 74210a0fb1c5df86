//! Calendar dates in UTC, as `YYYY-MM-DD` (ISO dates compare correctly as strings): today,
//! from days or seconds since the epoch, and the check of a typed date.

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

/// Unix seconds as `2026-11-26 22:27:10 UTC`.
pub fn timestamp(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        from_days(days),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `YYYY-MM-DD` with a plausible month and day, returned as given.
pub fn parse_date(value: &str) -> Option<String> {
    let value = value.trim();
    let bytes = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_digit);
    let shaped = bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-';
    if !(shaped && digits(0..4) && digits(5..7) && digits(8..10)) {
        return None;
    }
    let month: u32 = value[5..7].parse().ok()?;
    let day: u32 = value[8..10].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_timestamps_are_utc_and_sortable() {
        assert_eq!(from_days(0), "1970-01-01");
        assert_eq!(from_days(11_016), "2000-02-29");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(1_795_732_030), "2026-11-26 22:27:10 UTC");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!(parse_date("2026-11-28").as_deref(), Some("2026-11-28"));
        assert!(parse_date("2026-13-01").is_none());
        assert!(parse_date("28.11.2026").is_none());
    }
}
