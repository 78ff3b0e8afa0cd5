//! A cron expression in a named time zone, asked for its ticks as `SystemTime`s.

use std::str::FromStr;
use std::time::SystemTime;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed cron expression (five fields, or six with seconds first; `@daily` and the like) and
/// the time zone its wall-clock times are in.
#[derive(Debug, Clone)]
pub(crate) struct CronSpec {
    cron: croner::Cron,
    tz: TimeZone,
}

impl CronSpec {
    /// Parses `expression` for the time zone named `tz` (an IANA name such as `Europe/Paris`,
    /// or `UTC`).
    pub(crate) fn parse(expression: &str, tz: &str) -> Result<Self, String> {
        let cron = croner::Cron::from_str(expression)
            .map_err(|error| format!("cron expression `{expression}`: {error}"))?;
        let tz = TimeZone::get(tz).map_err(|error| format!("time zone `{tz}`: {error}"))?;
        Ok(Self { cron, tz })
    }

    /// The first tick strictly after `at`.
    pub(crate) fn next_after(&self, at: SystemTime) -> Option<SystemTime> {
        let zoned = Timestamp::try_from(at).ok()?.to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(SystemTime::from(next.timestamp()))
    }

    /// The last tick at or before `at`.
    pub(crate) fn last_at_or_before(&self, at: SystemTime) -> Option<SystemTime> {
        let zoned = Timestamp::try_from(at).ok()?.to_zoned(self.tz.clone());
        let last = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        Some(SystemTime::from(last.timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(text: &str) -> SystemTime {
        SystemTime::from(text.parse::<Timestamp>().expect("timestamp"))
    }

    #[test]
    fn five_fields_six_fields_and_aliases() {
        let daily = CronSpec::parse("0 7 * * *", "UTC").expect("parse");
        assert_eq!(
            daily.next_after(at("2026-11-30T06:59:59Z")),
            Some(at("2026-11-30T07:00:00Z"))
        );
        assert_eq!(
            daily.next_after(at("2026-11-30T07:00:00Z")),
            Some(at("2026-12-01T07:00:00Z")),
            "strictly after"
        );
        assert_eq!(
            daily.last_at_or_before(at("2026-11-30T07:00:00Z")),
            Some(at("2026-11-30T07:00:00Z")),
            "inclusive"
        );
        let every_second = CronSpec::parse("* * * * * *", "UTC").expect("parse");
        let t = at("2026-11-30T07:00:00.250Z");
        assert_eq!(every_second.next_after(t), Some(at("2026-11-30T07:00:01Z")));
        let every_ten = CronSpec::parse("*/10 * * * * *", "UTC").expect("parse");
        assert_eq!(
            every_ten.last_at_or_before(t + Duration::from_secs(15)),
            Some(at("2026-11-30T07:00:10Z"))
        );
        let hourly = CronSpec::parse("@hourly", "UTC").expect("parse");
        assert_eq!(hourly.next_after(t), Some(at("2026-11-30T08:00:00Z")));
    }

    #[test]
    fn wall_clock_times_follow_the_time_zone() {
        // 07:00 in Paris is 06:00 UTC in winter and 05:00 UTC in summer.
        let paris = CronSpec::parse("0 7 * * *", "Europe/Paris").expect("parse");
        assert_eq!(
            paris.next_after(at("2026-11-30T00:00:00Z")),
            Some(at("2026-11-30T06:00:00Z"))
        );
        assert_eq!(
            paris.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T05:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_changes_run_a_daily_job_once() {
        let paris = CronSpec::parse("30 2 * * *", "Europe/Paris").expect("parse");
        // 29 March 2026: 02:00 jumps to 03:00, so 02:30 never happens; the job still runs that day.
        let spring = paris
            .next_after(at("2026-03-28T12:00:00Z"))
            .expect("a tick");
        assert!(
            spring > at("2026-03-29T00:00:00Z") && spring < at("2026-03-29T02:00:00Z"),
            "{:?}",
            Timestamp::try_from(spring)
        );
        // 25 October 2026: 02:30 happens twice (CEST, then CET); the job runs once.
        let autumn = paris
            .next_after(at("2026-10-24T12:00:00Z"))
            .expect("a tick");
        assert_eq!(autumn, at("2026-10-25T00:30:00Z"), "the first 02:30");
        assert_eq!(
            paris.next_after(autumn),
            Some(at("2026-10-26T01:30:00Z")),
            "not again an hour later"
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let error = CronSpec::parse("61 * * * *", "UTC").expect_err("minute 61");
        assert!(error.starts_with("cron expression `61 * * * *`"), "{error}");
        let error = CronSpec::parse("* * *", "UTC").expect_err("three fields");
        assert!(error.contains("* * *"), "{error}");
        let error = CronSpec::parse("0 7 * * *", "Mars/Olympus").expect_err("zone");
        assert!(error.starts_with("time zone `Mars/Olympus`"), "{error}");
    }
}
