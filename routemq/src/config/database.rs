//! Where the SQL database is: `DATABASE_URL`, or RouteMQ's `DB_CONNECTION` and `DB_*` variables.
//!
//! RouteMQ writes its URLs with SQLAlchemy driver suffixes (`postgresql+asyncpg://`,
//! `mysql+aiomysql://`); those forms are accepted and normalised, so one `.env` serves a mixed
//! Python/Rust fleet. A URL of a kind the connection cannot use is an error naming `DATABASE_URL`,
//! never silently replaced by the `DB_*` defaults.

use super::{ConfigError, number_var, percent_encode, redact_url};

/// The SQL databases routemq has drivers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// PostgreSQL (`postgres://`, `postgresql://`, `postgresql+asyncpg://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`, `mysql+aiomysql://`).
    Mysql,
    /// SQLite (`sqlite://path`, `sqlite+aiosqlite://path`).
    Sqlite,
}

impl SqlKind {
    /// The connection name of this kind (`postgres`, `mysql`, `sqlite`).
    pub fn connection_name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }

    fn default_port(self) -> u32 {
        match self {
            Self::Postgres => 5432,
            Self::Mysql | Self::Sqlite => 3306,
        }
    }

    fn expected_url(self) -> &'static str {
        match self {
            Self::Postgres => {
                "a PostgreSQL URL (postgres://, postgresql:// or postgresql+asyncpg://) for a postgres connection"
            }
            Self::Mysql => {
                "a MySQL URL (mysql://, mariadb:// or mysql+aiomysql://) for a mysql connection"
            }
            Self::Sqlite => "a sqlite:// URL for a sqlite connection",
        }
    }
}

const ANY_URL: &str = "a postgres://, postgresql://, mysql://, mariadb:// or sqlite:// URL \
                       (RouteMQ's postgresql+asyncpg:// and mysql+aiomysql:// forms too)";

/// The kind and the rest (after `://`, or after `:` for `sqlite:path`) of a database URL.
fn split_url(url: &str) -> Option<(SqlKind, &str)> {
    let (scheme, rest) = url
        .split_once("://")
        .or_else(|| url.split_once(':').filter(|(s, _)| s.starts_with("sqlite")))?;
    let base = scheme
        .split_once('+')
        .map_or(scheme, |(base, _driver)| base);
    let kind = match base.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => SqlKind::Postgres,
        "mysql" | "mariadb" => SqlKind::Mysql,
        "sqlite" => SqlKind::Sqlite,
        _ => return None,
    };
    Some((kind, rest))
}

/// `DATABASE_URL` cannot be used; the error shows it with any password hidden.
fn invalid_url(url: &str, expected: &'static str) -> ConfigError {
    ConfigError {
        variable: "DATABASE_URL".to_owned(),
        value: redact_url(url),
        expected,
    }
}

/// The kind of database `DATABASE_URL` names, if it is set.
pub(crate) fn url_kind(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SqlKind>, ConfigError> {
    match lookup("DATABASE_URL") {
        None => Ok(None),
        Some(url) => split_url(url.trim())
            .map(|(kind, _)| Some(kind))
            .ok_or_else(|| invalid_url(&url, ANY_URL)),
    }
}

/// The database behind RouteMQ's `database` connection: the kind of `DATABASE_URL` when it is set,
/// else `DB_CONNECTION` (`mysql`, RouteMQ's default, `postgres`/`postgresql`, or `sqlite`).
pub fn database_kind(lookup: impl Fn(&str) -> Option<String>) -> Result<SqlKind, ConfigError> {
    if let Some(kind) = url_kind(&lookup)? {
        return Ok(kind);
    }
    match lookup("DB_CONNECTION") {
        None => Ok(SqlKind::Mysql),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "mysql" | "mariadb" => Ok(SqlKind::Mysql),
            "postgres" | "postgresql" | "pgsql" => Ok(SqlKind::Postgres),
            "sqlite" => Ok(SqlKind::Sqlite),
            _ => Err(ConfigError {
                variable: "DB_CONNECTION".to_owned(),
                value: raw,
                expected: "mysql, postgres or sqlite",
            }),
        },
    }
}

/// The URL of a `postgres` or `mysql` connection: `DATABASE_URL` (normalised to `postgres://` or
/// `mysql://`) when it is set, which must then be of that kind; else RouteMQ's `DB_HOST`,
/// `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD` (or `DB_PASS`) with its defaults (`localhost`,
/// 5432 or 3306, `mqtt_framework`, `root`, no password).
pub fn server_url(
    kind: SqlKind,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    if let Some(url) = lookup("DATABASE_URL") {
        let url = url.trim();
        let Some((found, rest)) = split_url(url) else {
            return Err(invalid_url(url, ANY_URL));
        };
        if found != kind || kind == SqlKind::Sqlite {
            return Err(invalid_url(url, kind.expected_url()));
        }
        return Ok(format!("{}://{rest}", kind.connection_name()));
    }
    let host = lookup("DB_HOST").unwrap_or_else(|| "localhost".to_owned());
    let port = number_var(
        &lookup,
        "DB_PORT",
        1..=65_535,
        "a port number from 1 to 65535",
    )?
    .unwrap_or(kind.default_port());
    let name = lookup("DB_NAME").unwrap_or_else(|| "mqtt_framework".to_owned());
    let user = lookup("DB_USER").unwrap_or_else(|| "root".to_owned());
    let password = lookup("DB_PASSWORD").or_else(|| lookup("DB_PASS"));
    let auth = match password {
        Some(password) => format!("{}:{}", percent_encode(&user), percent_encode(&password)),
        None => percent_encode(&user),
    };
    Ok(format!(
        "{}://{auth}@{}:{port}/{}",
        kind.connection_name(),
        host.trim(),
        percent_encode(&name)
    ))
}

/// The SQLite file from `DATABASE_URL=sqlite://path` (or `sqlite:path`), read as sqlx reads it
/// (`sqlite:///var/lib/jobs.db` is absolute), if `DATABASE_URL` is a SQLite URL. Other kinds of
/// URL are left to the server connections.
pub fn sqlite_path(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let url = lookup("DATABASE_URL")?;
    match split_url(url.trim()) {
        Some((SqlKind::Sqlite, path)) => Some(path.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars;

    #[test]
    fn routemq_url_forms_are_normalised() {
        let pg = [("DATABASE_URL", "postgresql+asyncpg://app:pw@db:5432/jobs")];
        assert_eq!(
            server_url(SqlKind::Postgres, vars(&pg)).expect("postgres"),
            "postgres://app:pw@db:5432/jobs"
        );
        let my = [("DATABASE_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")];
        assert_eq!(
            server_url(SqlKind::Mysql, vars(&my)).expect("mysql"),
            "mysql://root@127.0.0.1:3306/test"
        );
        let maria = [("DATABASE_URL", "mariadb://root@h/test")];
        assert_eq!(
            server_url(SqlKind::Mysql, vars(&maria)).expect("mariadb"),
            "mysql://root@h/test"
        );
        assert_eq!(database_kind(vars(&pg)).expect("kind"), SqlKind::Postgres);
        assert_eq!(database_kind(vars(&my)).expect("kind"), SqlKind::Mysql);
    }

    #[test]
    fn a_url_of_another_kind_is_an_error_not_the_defaults() {
        let my = [("DATABASE_URL", "mysql://root:secret@db/test")];
        let error = server_url(SqlKind::Postgres, vars(&my)).expect_err("wrong kind");
        assert_eq!(error.variable, "DATABASE_URL");
        assert_eq!(error.value, "mysql://root:***@db/test");
        assert!(error.expected.contains("PostgreSQL"), "{error}");
        let odd = [("DATABASE_URL", "oracle://scott:tiger@db/x")];
        let error = server_url(SqlKind::Mysql, vars(&odd)).expect_err("unknown scheme");
        assert!(!error.to_string().contains("tiger"), "{error}");
        assert!(database_kind(vars(&odd)).is_err());
        assert!(database_kind(vars(&[("DATABASE_URL", "not a url")])).is_err());
    }

    #[test]
    fn db_variables_build_the_url_with_routemqs_defaults() {
        assert_eq!(
            server_url(SqlKind::Mysql, vars(&[])).expect("defaults"),
            "mysql://root@localhost:3306/mqtt_framework"
        );
        let custom = [
            ("DB_HOST", "db.internal"),
            ("DB_PORT", "6543"),
            ("DB_NAME", "jobs"),
            ("DB_USER", "app"),
            ("DB_PASS", "p@ss/word"),
        ];
        assert_eq!(
            server_url(SqlKind::Postgres, vars(&custom)).expect("custom"),
            "postgres://app:p%40ss%2Fword@db.internal:6543/jobs"
        );
        let error = server_url(SqlKind::Postgres, vars(&[("DB_PORT", "five")])).expect_err("port");
        assert_eq!(error.variable, "DB_PORT");
    }

    #[test]
    fn db_connection_picks_the_database_connection() {
        assert_eq!(database_kind(vars(&[])).expect("default"), SqlKind::Mysql);
        for (value, kind) in [
            ("postgres", SqlKind::Postgres),
            ("postgresql", SqlKind::Postgres),
            ("MySQL", SqlKind::Mysql),
            ("sqlite", SqlKind::Sqlite),
        ] {
            let set = [("DB_CONNECTION", value)];
            assert_eq!(database_kind(vars(&set)).expect(value), kind);
        }
        let bad = [("DB_CONNECTION", "oracle")];
        let error = database_kind(vars(&bad)).expect_err("bad");
        assert_eq!(
            (error.variable.as_str(), error.value.as_str()),
            ("DB_CONNECTION", "oracle")
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        for (url, path) in [
            ("sqlite://jobs.db", "jobs.db"),
            ("sqlite:jobs.db", "jobs.db"),
            ("sqlite:///var/lib/jobs.db", "/var/lib/jobs.db"),
        ] {
            let set = [("DATABASE_URL", url)];
            assert_eq!(sqlite_path(vars(&set)).as_deref(), Some(path), "{url}");
        }
        let pg = [("DATABASE_URL", "postgres://db/x")];
        assert_eq!(sqlite_path(vars(&pg)), None);
    }
}
