//! Pieces shared by the SQL drivers: RouteMQ's naive-UTC timestamps, lease matching, ids.

use std::time::SystemTime;

#[cfg(any(feature = "sqlite", feature = "mysql"))]
use sqlx::QueryBuilder;

use super::{DriverError, Lease};
use crate::time;

/// RouteMQ's SQL timestamps: naive UTC (`2026-11-28 21:35:11.397883`).
pub(crate) struct SqlTime;

impl SqlTime {
    /// `at` as naive UTC text with microseconds; sorts correctly as text.
    #[cfg(feature = "sqlite")]
    pub(crate) fn text(at: SystemTime) -> String {
        time::naive_utc(at, ' ')
    }

    /// Parses a stored timestamp (either separator, optional fraction); unreadable text is the epoch.
    pub(crate) fn parse(text: &str) -> SystemTime {
        time::parse_utc(text).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Seconds since `oldest` (0 when there is none).
#[cfg(feature = "sqlite")]
pub(crate) fn age_secs(oldest: Option<&str>, now: SystemTime) -> f64 {
    oldest.map_or(0.0, |text| {
        now.duration_since(SqlTime::parse(text))
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// `(id = ? AND attempts = ?) OR ...` for each lease: a lease is one exact reservation.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn push_lease_matches<'a, DB>(query: &mut QueryBuilder<'a, DB>, leases: &[Lease])
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut first = true;
    for lease in leases {
        let Ok(id) = lease.id.parse::<i64>() else {
            continue;
        };
        if !first {
            query.push(" OR ");
        }
        first = false;
        query
            .push("(id = ")
            .push_bind(id)
            .push(" AND attempts = ")
            .push_bind(i64::from(lease.attempts))
            .push(")");
    }
    if first {
        query.push("1 = 0");
    }
}

/// A failed-job id: a row id.
pub(crate) fn failed_id(id: &str) -> Result<i64, DriverError> {
    id.trim()
        .parse()
        .map_err(|_| DriverError::InvalidId(id.to_owned()))
}

/// Lease ids and attempts as two arrays (Postgres `UNNEST`).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn lease_arrays(leases: &[Lease]) -> (Vec<i32>, Vec<i32>) {
    leases
        .iter()
        .filter_map(|lease| {
            Some((
                lease.id.parse::<i32>().ok()?,
                i32::try_from(lease.attempts).ok()?,
            ))
        })
        .unzip()
}

/// `DB_AUTO_CREATE_TABLES=true` (RouteMQ's variable): workers create tables on a server database.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn auto_create_tables() -> bool {
    crate::config::env_var("DB_AUTO_CREATE_TABLES")
        .and_then(|v| crate::config::parse_bool(&v))
        .unwrap_or(false)
}

/// The URL for a `postgres` or `mysql` connection: `DATABASE_URL` when it is of that kind, else
/// RouteMQ's `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD` (or `DB_PASS`), with its
/// defaults (`localhost`, 5432 or 3306, `mqtt_framework`, `root`, no password).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn database_url_from_env(kind: &str) -> Result<String, DriverError> {
    use crate::config::{env_var, percent_encode};
    let schemes: &[&str] = if kind == "postgres" {
        &["postgres://", "postgresql://"]
    } else {
        &["mysql://", "mariadb://"]
    };
    if let Some(url) = env_var("DATABASE_URL")
        && schemes.iter().any(|s| url.starts_with(s))
    {
        return Ok(url.replacen("mariadb://", "mysql://", 1));
    }
    let host = env_var("DB_HOST").unwrap_or_else(|| "localhost".to_owned());
    let port = env_var("DB_PORT")
        .unwrap_or_else(|| if kind == "postgres" { "5432" } else { "3306" }.to_owned());
    let name = env_var("DB_NAME").unwrap_or_else(|| "mqtt_framework".to_owned());
    let user = env_var("DB_USER").unwrap_or_else(|| "root".to_owned());
    let password = env_var("DB_PASSWORD").or_else(|| env_var("DB_PASS"));
    let auth = match password {
        Some(password) => format!("{}:{}", percent_encode(&user), percent_encode(&password)),
        None => percent_encode(&user),
    };
    let scheme = if kind == "postgres" {
        "postgres"
    } else {
        "mysql"
    };
    Ok(format!(
        "{scheme}://{auth}@{host}:{port}/{}",
        percent_encode(&name)
    ))
}
