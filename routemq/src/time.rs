//! UTC timestamps in RouteMQ's text forms, without a calendar dependency.
//!
//! RouteMQ writes `2026-11-28T21:26:46.740464+00:00` in Redis records and naive UTC
//! (`2026-11-28 21:26:46.740464`) in SQL columns.

#[cfg(any(feature = "redis", feature = "_sql", test))]
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01. Howard Hinnant's `days_from_civil`.
#[cfg(any(feature = "redis", feature = "_sql", test))]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-28T21:26:46.740464` (naive UTC, microseconds), with `T` or a space between the parts.
pub(crate) fn naive_utc(at: SystemTime, separator: char) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}{separator}{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// `2026-11-28T21:26:46.740464+00:00`, Python's `datetime.now(UTC).isoformat()`.
pub(crate) fn iso_utc(at: SystemTime) -> String {
    format!("{}+00:00", naive_utc(at, 'T'))
}

/// Parses the forms above (and `Z`, no fraction, or a space separator). Offsets other than UTC
/// are applied.
#[cfg(any(feature = "redis", feature = "_sql", test))]
pub(crate) fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, rest) = text.split_at_checked(10)?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
    let (clock, offset_secs) = split_offset(rest)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':');
    let hour: i64 = hms
        .next()
        .filter(|s| !s.is_empty())
        .map_or(Some(0), |s| s.parse().ok())?;
    let minute: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
    let second: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
    let micros: u32 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(6).collect();
        format!("{digits:0<6}").parse().ok()?
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

#[cfg(any(feature = "redis", feature = "_sql", test))]
fn split_offset(clock: &str) -> Option<(&str, i64)> {
    if let Some(clock) = clock.strip_suffix('Z') {
        return Some((clock, 0));
    }
    match clock.rfind(['+', '-']) {
        Some(at) if at >= 5 => {
            let (clock, offset) = clock.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = offset[1..].split_once(':').unwrap_or((&offset[1..], "0"));
            let offset = hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60;
            Some((clock, sign * offset))
        }
        _ => Some((clock, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_routemq_timestamps() {
        let at = parse_utc("2026-11-28T21:26:46.740464+00:00").expect("parses");
        assert_eq!(iso_utc(at), "2026-11-28T21:26:46.740464+00:00");
        assert_eq!(naive_utc(at, ' '), "2026-11-28 21:26:46.740464");
        assert_eq!(parse_utc("2026-11-28 21:26:46.740464"), Some(at));
        assert_eq!(parse_utc("2026-11-28T22:26:46.740464+01:00"), Some(at));
        assert_eq!(iso_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            naive_utc(parse_utc("2000-02-29T00:00:00Z").expect("leap day"), 'T'),
            "2000-02-29T00:00:00.000000"
        );
        assert_eq!(parse_utc("not a date"), None);
    }
}
