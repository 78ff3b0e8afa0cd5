//! Settings from the environment (and a `.env` file, which routemq reads but never writes).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `QUEUE_CONNECTION` | `sqlite` | the default connection |
//! | `QUEUE_VISIBILITY_TIMEOUT` | `300` | seconds a lease lives without a heartbeat |
//! | `QUEUE_HEARTBEAT_INTERVAL` | `10` | seconds between lease renewals |
//! | `QUEUE_REAPER_INTERVAL` | `30` | seconds between reaper passes (`0`: off) |
//! | `QUEUE_SHUTDOWN_GRACE` | `300` | seconds running jobs get after SIGTERM/SIGINT |
//! | `QUEUE_RETRY_BACKOFF_ENABLED` | `false` | exponential backoff for every job (`1/true/yes/on`) |
//! | `QUEUE_RETRY_MAX_DELAY` | `60` | backoff cap in seconds |
//! | `QUEUE_RETRY_JITTER` | `0` | backoff jitter fraction |
//! | `QUEUE_FAILED_RETENTION_HOURS` | none | workers delete failed jobs older than this (hours, > 0) |
//! | `QUEUE_FAILED_MAX` | none | workers keep at most this many failed jobs per queue, the newest |
//! | `QUEUE_BATCH_RETENTION_HOURS` | none | workers delete batches finished longer ago than this (hours, > 0) |
//!
//! Driver variables (`DATABASE_URL`, `REDIS_URL`, ...) are read by the drivers. An invalid value is
//! an error that names the variable and the value; unlike RouteMQ, routemq does not quietly fall
//! back to a default.

mod database;

use std::time::Duration;

pub use database::{SqlKind, database_kind, server_url, sqlite_path};

use crate::retry::RetryDefaults;

/// A variable with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for {variable}: {expected}")]
pub struct ConfigError {
    /// The variable.
    pub variable: String,
    /// Its value (never a password: secrets are not parsed here).
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// Queue and worker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `QUEUE_CONNECTION`.
    pub default_connection: String,
    /// `QUEUE_VISIBILITY_TIMEOUT`.
    pub visibility_timeout: Duration,
    /// `QUEUE_HEARTBEAT_INTERVAL`.
    pub heartbeat_interval: Duration,
    /// `QUEUE_REAPER_INTERVAL` (zero: the reaper is off).
    pub reaper_interval: Duration,
    /// `QUEUE_SHUTDOWN_GRACE`.
    pub shutdown_grace: Duration,
    /// `QUEUE_RETRY_*`.
    pub retry: RetryDefaults,
    /// `QUEUE_FAILED_RETENTION_HOURS`: failed jobs older than this are deleted by workers.
    pub failed_retention: Option<Duration>,
    /// `QUEUE_FAILED_MAX`: workers keep at most this many failed jobs per queue (the newest).
    pub failed_max: Option<u64>,
    /// `QUEUE_BATCH_RETENTION_HOURS`: batches finished longer ago than this are deleted by
    /// workers.
    pub batch_retention: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_connection: "sqlite".to_owned(),
            visibility_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(10),
            reaper_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(300),
            retry: RetryDefaults::default(),
            failed_retention: None,
            failed_max: None,
            batch_retention: None,
        }
    }
}

/// Loads `./.env` into the environment once (existing variables win). Missing file: nothing happens.
pub fn load_dotenv() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = dotenvy::dotenv();
    });
}

/// Reads a variable from the process environment, after `.env` has been loaded.
pub fn env_var(name: &str) -> Option<String> {
    load_dotenv();
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Reads the settings from the environment and `.env`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_var)
    }

    /// Reads the settings through `lookup` (for tests, or another configuration source).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let secs =
            |name: &str, default: Duration, allow_zero: bool| -> Result<Duration, ConfigError> {
                match lookup(name) {
                    None => Ok(default),
                    Some(raw) => parse_secs(&raw, allow_zero).ok_or_else(|| ConfigError {
                        variable: name.to_owned(),
                        value: raw,
                        expected: if allow_zero {
                            "a number of seconds ≥ 0"
                        } else {
                            "a number of seconds > 0"
                        },
                    }),
                }
            };
        let number = |name: &str, default: f64, range: std::ops::RangeInclusive<f64>, expected| {
            match lookup(name) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| range.contains(v))
                    .ok_or(ConfigError {
                        variable: name.to_owned(),
                        value: raw,
                        expected,
                    }),
            }
        };
        let backoff = bool_var(&lookup, "QUEUE_RETRY_BACKOFF_ENABLED", false)?;
        let hours = |name: &str| -> Result<Option<Duration>, ConfigError> {
            let Some(raw) = lookup(name) else {
                return Ok(None);
            };
            parse_secs(&raw, false)
                .and_then(|hours| crate::limits::checked_secs(hours.as_secs_f64() * 3600.0))
                .map(Some)
                .ok_or_else(|| ConfigError {
                    variable: name.to_owned(),
                    value: raw,
                    expected: "a number of hours > 0",
                })
        };
        let failed_retention = hours("QUEUE_FAILED_RETENTION_HOURS")?;
        let batch_retention = hours("QUEUE_BATCH_RETENTION_HOURS")?;
        let failed_max = match lookup("QUEUE_FAILED_MAX") {
            None => None,
            Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| ConfigError {
                variable: "QUEUE_FAILED_MAX".to_owned(),
                value: raw,
                expected: "a whole number of failed jobs ≥ 0",
            })?),
        };
        let default_connection =
            lookup("QUEUE_CONNECTION").map_or(defaults.default_connection, |c| c.trim().to_owned());
        Ok(Self {
            default_connection,
            visibility_timeout: secs(
                "QUEUE_VISIBILITY_TIMEOUT",
                defaults.visibility_timeout,
                false,
            )?,
            heartbeat_interval: secs(
                "QUEUE_HEARTBEAT_INTERVAL",
                defaults.heartbeat_interval,
                false,
            )?,
            reaper_interval: secs("QUEUE_REAPER_INTERVAL", defaults.reaper_interval, true)?,
            shutdown_grace: secs("QUEUE_SHUTDOWN_GRACE", defaults.shutdown_grace, true)?,
            retry: RetryDefaults {
                backoff_enabled: backoff,
                max_delay: number(
                    "QUEUE_RETRY_MAX_DELAY",
                    60.0,
                    0.0..=f64::MAX,
                    "a number of seconds ≥ 0",
                )?,
                jitter: number(
                    "QUEUE_RETRY_JITTER",
                    0.0,
                    0.0..=1.0,
                    "a fraction from 0 to 1",
                )?,
            },
            failed_retention,
            failed_max,
            batch_retention,
        })
    }
}

/// Percent-encodes everything but unreserved characters (user names and passwords in URLs).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A connection URL with any password replaced by `***`, safe to log. A URL that does not parse
/// (a password with an unencoded `/` or `@`, say) keeps only its scheme: nothing of it can be
/// trusted to be free of secrets.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail: a URL with a password has a host.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => {
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            let scheme = if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                scheme
            } else {
                ""
            };
            format!("{scheme}://<unparsable URL, hidden>")
        }
    }
}

/// A whole-number variable within `range` (a port, a database number), `None` when unset.
pub(crate) fn number_var(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    expected: &'static str,
) -> Result<Option<u32>, ConfigError> {
    match lookup(name) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError {
                variable: name.to_owned(),
                value: raw,
                expected,
            }),
        },
    }
}

/// A `true`/`false` variable (RouteMQ's `1/true/yes/on` and their opposites), `default` when unset.
pub fn bool_var(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(raw) => parse_bool(&raw).ok_or(ConfigError {
            variable: name.to_owned(),
            value: raw,
            expected: "true or false (1/0, yes/no, on/off)",
        }),
    }
}

/// A lookup over fixed pairs, in place of the environment (tests).
#[cfg(test)]
pub(crate) fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Seconds as an integer or decimal (`"2.5"`), at most ten years (a larger value is invalid, not a
/// panic).
pub(crate) fn parse_secs(raw: &str, allow_zero: bool) -> Option<Duration> {
    let secs: f64 = raw.trim().parse().ok()?;
    crate::limits::checked_secs(secs).filter(|d| allow_zero || !d.is_zero())
}

/// RouteMQ's truthy words, plus their opposites.
pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(vars(pairs))
    }

    #[test]
    fn defaults_are_routemqs() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s, Settings::default());
        assert_eq!(s.visibility_timeout, Duration::from_secs(300));
        assert_eq!(s.default_connection, "sqlite");
    }

    #[test]
    fn reads_every_variable() {
        let s = settings(&[
            ("QUEUE_CONNECTION", "memory"),
            ("QUEUE_VISIBILITY_TIMEOUT", "2.5"),
            ("QUEUE_HEARTBEAT_INTERVAL", "1"),
            ("QUEUE_REAPER_INTERVAL", "0"),
            ("QUEUE_SHUTDOWN_GRACE", "5"),
            ("QUEUE_RETRY_BACKOFF_ENABLED", "yes"),
            ("QUEUE_RETRY_MAX_DELAY", "30"),
            ("QUEUE_RETRY_JITTER", "0.5"),
        ])
        .expect("valid");
        assert_eq!(s.default_connection, "memory");
        assert_eq!(s.visibility_timeout, Duration::from_millis(2500));
        assert_eq!(s.reaper_interval, Duration::ZERO);
        assert_eq!(
            s.retry,
            RetryDefaults {
                backoff_enabled: true,
                max_delay: 30.0,
                jitter: 0.5
            }
        );
    }

    #[test]
    fn urls_hide_passwords_and_encode_credentials() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/jobs"),
            "postgres://app:***@db:5432/jobs"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("postgres://app:pa/ss@db:5432/jobs"),
            "postgres://<unparsable URL, hidden>"
        );
        assert_eq!(
            redact_url("redis://:pa%2Fss@cache:6379/2"),
            "redis://:***@cache:6379/2"
        );
        assert_eq!(percent_encode("p@ss word"), "p%40ss%20word");
    }

    #[test]
    fn failed_store_retention_comes_from_the_environment() {
        let s = settings(&[
            ("QUEUE_FAILED_RETENTION_HOURS", "1.5"),
            ("QUEUE_BATCH_RETENTION_HOURS", "2"),
            ("QUEUE_FAILED_MAX", "1000"),
        ])
        .expect("valid");
        assert_eq!(s.failed_retention, Some(Duration::from_secs(5400)));
        assert_eq!(s.batch_retention, Some(Duration::from_secs(7200)));
        assert_eq!(s.failed_max, Some(1000));
        let options = crate::WorkerOptions::from_settings(&s);
        assert_eq!(
            (options.failed_retention, options.failed_max),
            (Some(Duration::from_secs(5400)), Some(1000))
        );
        let none = settings(&[]).expect("valid");
        assert_eq!((none.failed_retention, none.failed_max), (None, None));
        for (name, value) in [
            ("QUEUE_FAILED_RETENTION_HOURS", "0"),
            ("QUEUE_FAILED_RETENTION_HOURS", "a week"),
            ("QUEUE_FAILED_MAX", "-1"),
        ] {
            let error = settings(&[(name, value)]).expect_err("invalid");
            assert_eq!(error.variable, name);
        }
    }

    #[test]
    fn invalid_values_name_the_variable_and_value() {
        let error = settings(&[("QUEUE_VISIBILITY_TIMEOUT", "soon")]).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid value \"soon\" for QUEUE_VISIBILITY_TIMEOUT: a number of seconds > 0"
        );
        assert!(settings(&[("QUEUE_RETRY_JITTER", "2")]).is_err());
        assert!(settings(&[("QUEUE_RETRY_BACKOFF_ENABLED", "maybe")]).is_err());
        assert!(settings(&[("QUEUE_HEARTBEAT_INTERVAL", "0")]).is_err());
        assert!(settings(&[("QUEUE_VISIBILITY_TIMEOUT", "1e20")]).is_err());
    }
}
