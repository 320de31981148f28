//! Rendering of header fields for people: timestamps (UUIDs are rendered
//! by `HeaderInfo::uuid_string`).

/// Nanoseconds since the Unix epoch as RFC 3339 UTC, whole seconds
/// (`2025-11-25T21:04:05Z`).
pub fn rfc3339_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, unsigned form).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (leap day) 12:34:56 UTC = 951827696
        assert_eq!(rfc3339_utc(951_827_696_123_456_789), "2000-02-29T12:34:56Z");
        // 2024-12-31 23:59:59 UTC = 1735689599
        assert_eq!(
            rfc3339_utc(1_735_689_599_000_000_000),
            "2024-12-31T23:59:59Z"
        );
        assert_eq!(
            rfc3339_utc(1_735_689_600_000_000_000),
            "2025-01-01T00:00:00Z"
        );
        // 2100-03-01 00:00:00 UTC = 4107542400 (2100 is not a leap year)
        assert_eq!(
            rfc3339_utc(4_107_542_400_000_000_000),
            "2100-03-01T00:00:00Z"
        );
    }
}
