//! What the SQL drivers do alike on RouteMQ's two tables: map their rows, read a queue's size and
//! the queue names, and list, show, forget, flush and trim failed jobs. The three dialects share
//! every step below and differ only in their SQL text (placeholders, id casts, the format of
//! `failed_at`), with their parameters bound in the same order everywhere. Claims, releases,
//! retries of failed jobs and the reaper stay with each driver: their statements differ in
//! shape, not only in text (locking, `RETURNING`, the clock used).

use super::sql::{self, SqlTime};
use super::{DriverError, FailedJob, Lease, ReservedJob};

/// The statements of one SQL dialect.
pub(crate) struct Statements {
    /// Binds the queue twice (`None`: every queue); columns as [`failed_job`] reads them.
    pub(crate) failed_list: &'static str,
    /// Binds the queue twice, then the limit; newest first.
    pub(crate) failed_recent: &'static str,
    /// Binds the id.
    pub(crate) failed_get: &'static str,
    /// Binds the id.
    pub(crate) failed_forget: &'static str,
    /// Binds the queue twice.
    pub(crate) failed_flush: &'static str,
    /// Binds the queue twice, then how many to keep per queue.
    pub(crate) failed_trim: &'static str,
    /// Binds the queue.
    pub(crate) size: &'static str,
    /// Binds nothing.
    pub(crate) queues: &'static str,
}

/// The failed-record columns, `failed_at` as text (`YYYY-MM-DDTHH:MM:SS.ffffff`, UTC).
macro_rules! failed_columns {
    (postgres) => {
        "id::bigint AS id, connection, queue, payload, exception, to_char(failed_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS failed_at"
    };
    (mysql) => {
        "id, connection, queue, payload, exception, DATE_FORMAT(failed_at, '%Y-%m-%dT%H:%i:%s.%f') AS failed_at"
    };
    (sqlite) => {
        "id, connection, queue, payload, exception, failed_at"
    };
}

/// Every row older than the `keep` newest of its queue (a derived table, which MySQL
/// materializes, so that the `DELETE` may read the table it deletes from).
macro_rules! trim {
    ($q1:literal, $q2:literal, $keep:literal) => {
        concat!(
            "DELETE FROM queue_failed_jobs WHERE id IN (
                 SELECT id FROM (
                     SELECT id, ROW_NUMBER() OVER (PARTITION BY queue ORDER BY id DESC) AS r
                     FROM queue_failed_jobs WHERE ",
            $q1,
            " IS NULL OR queue = ",
            $q2,
            ") AS ranked
                 WHERE r > ",
            $keep,
            ")"
        )
    };
}

const QUEUES: &str =
    "SELECT queue FROM queue_jobs UNION SELECT queue FROM queue_failed_jobs ORDER BY queue";

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Statements = Statements {
    failed_list: concat!(
        "SELECT ",
        failed_columns!(postgres),
        " FROM queue_failed_jobs WHERE $1::varchar IS NULL OR queue = $2 ORDER BY id"
    ),
    failed_recent: concat!(
        "SELECT ",
        failed_columns!(postgres),
        " FROM queue_failed_jobs WHERE $1::varchar IS NULL OR queue = $2 ORDER BY id DESC LIMIT $3"
    ),
    failed_get: concat!(
        "SELECT ",
        failed_columns!(postgres),
        " FROM queue_failed_jobs WHERE id = $1"
    ),
    failed_forget: "DELETE FROM queue_failed_jobs WHERE id = $1",
    failed_flush: "DELETE FROM queue_failed_jobs WHERE $1::varchar IS NULL OR queue = $2",
    failed_trim: trim!("$1::varchar", "$2", "$3"),
    size: "SELECT COUNT(*) FROM queue_jobs WHERE queue = $1 AND reserved_at IS NULL",
    queues: QUEUES,
};

#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Statements = Statements {
    failed_list: concat!(
        "SELECT ",
        failed_columns!(mysql),
        " FROM queue_failed_jobs WHERE ? IS NULL OR queue = ? ORDER BY id"
    ),
    failed_recent: concat!(
        "SELECT ",
        failed_columns!(mysql),
        " FROM queue_failed_jobs WHERE ? IS NULL OR queue = ? ORDER BY id DESC LIMIT ?"
    ),
    failed_get: concat!(
        "SELECT ",
        failed_columns!(mysql),
        " FROM queue_failed_jobs WHERE id = ?"
    ),
    failed_forget: "DELETE FROM queue_failed_jobs WHERE id = ?",
    failed_flush: "DELETE FROM queue_failed_jobs WHERE ? IS NULL OR queue = ?",
    failed_trim: trim!("?", "?", "?"),
    size: "SELECT COUNT(*) FROM queue_jobs WHERE queue = ? AND reserved_at IS NULL",
    queues: QUEUES,
};

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Statements = Statements {
    failed_list: concat!(
        "SELECT ",
        failed_columns!(sqlite),
        " FROM queue_failed_jobs WHERE ?1 IS NULL OR queue = ?2 ORDER BY id"
    ),
    failed_recent: concat!(
        "SELECT ",
        failed_columns!(sqlite),
        " FROM queue_failed_jobs WHERE ?1 IS NULL OR queue = ?2 ORDER BY id DESC LIMIT ?3"
    ),
    failed_get: concat!(
        "SELECT ",
        failed_columns!(sqlite),
        " FROM queue_failed_jobs WHERE id = ?1"
    ),
    failed_forget: "DELETE FROM queue_failed_jobs WHERE id = ?1",
    failed_flush: "DELETE FROM queue_failed_jobs WHERE ?1 IS NULL OR queue = ?2",
    failed_trim: trim!("?1", "?2", "?3"),
    size: "SELECT COUNT(*) FROM queue_jobs WHERE queue = ?1 AND reserved_at IS NULL",
    queues: QUEUES,
};

/// The operations, for one dialect's pool type, its statements, the type its `attempts` and
/// `unstarted` columns decode to, and how a statement is run (SQLite retries while the database
/// is busy).
macro_rules! table_ops {
    ($module:ident, $feature:literal, $db:ty, $statements:ident, $count:ty, $run:path) => {
        #[cfg(feature = $feature)]
        pub(crate) mod $module {
            use sqlx::{Pool, Row};

            use super::*;

            type Db = $db;
            type DbRow = <Db as sqlx::Database>::Row;

            /// A failed record read with the dialect's failed columns.
            pub(crate) fn failed_job(row: &DbRow) -> Result<FailedJob, sqlx::Error> {
                let id: i64 = row.try_get("id")?;
                let failed_at: String = row.try_get("failed_at")?;
                Ok(FailedJob {
                    id: id.to_string(),
                    connection: row.try_get("connection")?,
                    queue: row.try_get("queue")?,
                    payload: row.try_get("payload")?,
                    exception: row.try_get("exception")?,
                    failed_at: SqlTime::parse(&failed_at),
                })
            }

            /// A leased row (`id`, `queue`, `payload`, `attempts`, and `unstarted` unless
            /// `counted`): a counted reservation, or a prefetched one.
            pub(crate) fn reserved_job(
                row: &DbRow,
                counted: bool,
            ) -> Result<ReservedJob, sqlx::Error> {
                let id: i64 = row.try_get("id")?;
                let attempts: $count = row.try_get("attempts")?;
                let lease = Lease {
                    id: id.to_string(),
                    queue: row.try_get("queue")?,
                    attempts: sql::counted_attempts(i64::from(attempts)),
                    token: String::new(),
                };
                let unstarted = if counted {
                    None
                } else {
                    Some(i64::from(row.try_get::<$count, _>("unstarted")?))
                };
                Ok(sql::reserved(lease, row.try_get("payload")?, unstarted))
            }

            /// A leased row the reaper read (`id`, `queue`, `payload`, `attempts`), its lease
            /// expired; the reservation time is left for the driver to add where it compares it.
            pub(crate) fn expired(row: &DbRow) -> Result<sql::Expired, DriverError> {
                let read = || -> Result<sql::Expired, sqlx::Error> {
                    Ok(sql::Expired {
                        job: reserved_job(row, true)?,
                        stored: i64::from(row.try_get::<$count, _>("attempts")?),
                        reserved_at: None,
                    })
                };
                read().map_err(|e| DriverError::backend("reap", e))
            }

            pub(crate) async fn size(pool: &Pool<Db>, queue: &str) -> Result<u64, DriverError> {
                let count: i64 = $run("size", || {
                    sqlx::query_scalar($statements.size)
                        .bind(queue)
                        .fetch_one(pool)
                })
                .await?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            pub(crate) async fn queues(pool: &Pool<Db>) -> Result<Vec<String>, DriverError> {
                $run("list queues", || {
                    sqlx::query_scalar($statements.queues).fetch_all(pool)
                })
                .await
            }

            pub(crate) async fn failed_list(
                pool: &Pool<Db>,
                queue: Option<&str>,
            ) -> Result<Vec<FailedJob>, DriverError> {
                let rows = $run("list failed jobs", || {
                    sqlx::query($statements.failed_list)
                        .bind(queue)
                        .bind(queue)
                        .fetch_all(pool)
                })
                .await?;
                failed_jobs(&rows)
            }

            pub(crate) async fn failed_recent(
                pool: &Pool<Db>,
                queue: Option<&str>,
                limit: usize,
            ) -> Result<Vec<FailedJob>, DriverError> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = $run("list failed jobs", || {
                    sqlx::query($statements.failed_recent)
                        .bind(queue)
                        .bind(queue)
                        .bind(limit)
                        .fetch_all(pool)
                })
                .await?;
                failed_jobs(&rows)
            }

            /// Failed records read with the dialect's failed columns.
            fn failed_jobs(rows: &[DbRow]) -> Result<Vec<FailedJob>, DriverError> {
                rows.iter()
                    .map(failed_job)
                    .collect::<Result<_, _>>()
                    .map_err(|e| DriverError::backend("list failed jobs", e))
            }

            pub(crate) async fn failed_get(
                pool: &Pool<Db>,
                id: &str,
            ) -> Result<Option<FailedJob>, DriverError> {
                let id = sql::row_id(id)?;
                let row = $run("show failed job", || {
                    sqlx::query($statements.failed_get)
                        .bind(id)
                        .fetch_optional(pool)
                })
                .await?;
                row.as_ref()
                    .map(failed_job)
                    .transpose()
                    .map_err(|e| DriverError::backend("show failed job", e))
            }

            pub(crate) async fn failed_forget(
                pool: &Pool<Db>,
                id: &str,
            ) -> Result<bool, DriverError> {
                let id = sql::row_id(id)?;
                let result = $run("forget failed job", || {
                    sqlx::query($statements.failed_forget)
                        .bind(id)
                        .execute(pool)
                })
                .await?;
                Ok(result.rows_affected() > 0)
            }

            pub(crate) async fn failed_flush(
                pool: &Pool<Db>,
                queue: Option<&str>,
            ) -> Result<u64, DriverError> {
                let result = $run("flush failed jobs", || {
                    sqlx::query($statements.failed_flush)
                        .bind(queue)
                        .bind(queue)
                        .execute(pool)
                })
                .await?;
                Ok(result.rows_affected())
            }

            pub(crate) async fn failed_trim(
                pool: &Pool<Db>,
                queue: Option<&str>,
                keep: u64,
            ) -> Result<u64, DriverError> {
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                let result = $run("trim failed jobs", || {
                    sqlx::query($statements.failed_trim)
                        .bind(queue)
                        .bind(queue)
                        .bind(keep)
                        .execute(pool)
                })
                .await?;
                Ok(result.rows_affected())
            }
        }
    };
}

table_ops!(
    postgres,
    "postgres",
    sqlx::Postgres,
    POSTGRES,
    i32,
    sql::run_once
);
table_ops!(mysql, "mysql", sqlx::MySql, MYSQL, i32, sql::run_once);
table_ops!(
    sqlite,
    "sqlite",
    sqlx::Sqlite,
    SQLITE,
    i64,
    crate::driver::sqlite::retry_busy
);
