//! [Batch records](super::batch_rows) in SQL: tables `queue_batches` and `queue_batch_jobs`
//! (made by `migrate` with the other tables). A write is one transaction: an `UPDATE` that
//! matches only the version the writer read, then the job's outcome, upserted. The three
//! dialects share every step below and differ only in their SQL text.

use super::slots_sql::column_key;
use super::{BatchPrune, BatchRow, BatchWrite, DriverError};

/// The statements of one SQL dialect, their parameters bound in the same order everywhere.
pub(crate) struct Statements {
    /// `id, version, created_at, finished_at, doc`.
    pub(crate) insert: &'static str,
    /// Binds the job id (`''` for none), then the batch id.
    pub(crate) read: &'static str,
    /// Binds `doc, finished_at, id, version`.
    pub(crate) update: &'static str,
    /// Binds `batch_id, job_id, outcome`.
    pub(crate) mark: &'static str,
    /// Binds the limit.
    pub(crate) list: &'static str,
    /// Binds `finished_before`; at most [`PRUNE_CHUNK`] ids.
    pub(crate) prunable: &'static str,
    /// Binds `finished_before, unfinished_before`; at most [`PRUNE_CHUNK`] ids.
    pub(crate) prunable_or_old: &'static str,
    /// Binds the batch id.
    pub(crate) delete_jobs: &'static str,
    /// Binds the batch id.
    pub(crate) delete_batch: &'static str,
}

/// Most batches one prune step deletes.
pub(crate) const PRUNE_CHUNK: usize = 500;

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Statements = Statements {
    insert: "INSERT INTO queue_batches (id, version, created_at, finished_at, doc) VALUES ($1, $2, $3, $4, $5)",
    read:
        "SELECT b.id, b.version, b.created_at, b.finished_at, b.doc, j.outcome FROM queue_batches b
        LEFT JOIN queue_batch_jobs j ON j.batch_id = b.id AND j.job_id = $1 WHERE b.id = $2",
    update: "UPDATE queue_batches SET version = version + 1, doc = $1, finished_at = $2 WHERE id = $3 AND version = $4",
    mark: "INSERT INTO queue_batch_jobs (batch_id, job_id, outcome) VALUES ($1, $2, $3)
        ON CONFLICT (batch_id, job_id) DO UPDATE SET outcome = EXCLUDED.outcome",
    list: "SELECT b.id, b.version, b.created_at, b.finished_at, b.doc FROM queue_batches b ORDER BY b.created_at DESC, b.id DESC LIMIT $1",
    prunable: "SELECT id FROM queue_batches WHERE finished_at < $1 LIMIT 500",
    prunable_or_old: "SELECT id FROM queue_batches WHERE finished_at < $1 OR (finished_at IS NULL AND created_at < $2) LIMIT 500",
    delete_jobs: "DELETE FROM queue_batch_jobs WHERE batch_id = $1",
    delete_batch: "DELETE FROM queue_batches WHERE id = $1",
};

/// MySQL's and SQLite's statements (`?` placeholders), but the upsert of an outcome.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
const QUESTION_MARKS: Statements = Statements {
    insert: "INSERT INTO queue_batches (id, version, created_at, finished_at, doc) VALUES (?, ?, ?, ?, ?)",
    read:
        "SELECT b.id, b.version, b.created_at, b.finished_at, b.doc, j.outcome FROM queue_batches b
        LEFT JOIN queue_batch_jobs j ON j.batch_id = b.id AND j.job_id = ? WHERE b.id = ?",
    update: "UPDATE queue_batches SET version = version + 1, doc = ?, finished_at = ? WHERE id = ? AND version = ?",
    mark: "",
    list: "SELECT b.id, b.version, b.created_at, b.finished_at, b.doc FROM queue_batches b ORDER BY b.created_at DESC, b.id DESC LIMIT ?",
    prunable: "SELECT id FROM queue_batches WHERE finished_at < ? LIMIT 500",
    prunable_or_old: "SELECT id FROM queue_batches WHERE finished_at < ? OR (finished_at IS NULL AND created_at < ?) LIMIT 500",
    delete_jobs: "DELETE FROM queue_batch_jobs WHERE batch_id = ?",
    delete_batch: "DELETE FROM queue_batches WHERE id = ?",
};

#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Statements = Statements {
    mark: "INSERT INTO queue_batch_jobs (batch_id, job_id, outcome) VALUES (?, ?, ?)
        ON DUPLICATE KEY UPDATE outcome = VALUES(outcome)",
    ..QUESTION_MARKS
};

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Statements = Statements {
    mark: "INSERT INTO queue_batch_jobs (batch_id, job_id, outcome) VALUES (?, ?, ?)
        ON CONFLICT (batch_id, job_id) DO UPDATE SET outcome = excluded.outcome",
    ..QUESTION_MARKS
};

/// The batch tables of PostgreSQL and SQLite (`BIGINT` is SQLite's `INTEGER`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_batches (
        id VARCHAR(64) NOT NULL,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        doc TEXT NOT NULL,
        PRIMARY KEY (id)
    )",
    "CREATE INDEX IF NOT EXISTS queue_batches_created_at ON queue_batches (created_at)",
    "CREATE INDEX IF NOT EXISTS queue_batches_finished_at ON queue_batches (finished_at)",
    "CREATE TABLE IF NOT EXISTS queue_batch_jobs (
        batch_id VARCHAR(64) NOT NULL,
        job_id VARCHAR(191) NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        PRIMARY KEY (batch_id, job_id)
    )",
];

/// The batch tables of MySQL.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_batches (
        id VARCHAR(64) NOT NULL,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        doc MEDIUMTEXT NOT NULL,
        PRIMARY KEY (id),
        INDEX queue_batches_created_at (created_at),
        INDEX queue_batches_finished_at (finished_at)
    )",
    "CREATE TABLE IF NOT EXISTS queue_batch_jobs (
        batch_id VARCHAR(64) NOT NULL,
        job_id VARBINARY(191) NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        PRIMARY KEY (batch_id, job_id)
    )",
];

/// The operations, for one dialect's pool type, row type and conflict test (an error after
/// which the write is simply tried again: it reports "not written" and the caller reads anew).
macro_rules! batch_ops {
    ($module:ident, $feature:literal, $db:ty, $statements:ident, $conflict:path) => {
        #[cfg(feature = $feature)]
        pub(crate) mod $module {
            use sqlx::{Pool, Row};

            use super::*;

            type Db = $db;

            fn backend(operation: &'static str) -> impl Fn(sqlx::Error) -> DriverError {
                move |error| {
                    if missing_table(&error) {
                        DriverError::backend(
                            operation,
                            format!("{error} (the batch tables are missing: run `queue-migrate`)"),
                        )
                    } else {
                        DriverError::backend(operation, error)
                    }
                }
            }

            fn row(row: &<Db as sqlx::Database>::Row) -> Result<BatchRow, sqlx::Error> {
                Ok(BatchRow {
                    id: row.try_get("id")?,
                    version: row.try_get("version")?,
                    created_at: row.try_get("created_at")?,
                    finished_at: row.try_get("finished_at")?,
                    doc: row.try_get("doc")?,
                })
            }

            pub(crate) async fn create(
                pool: &Pool<Db>,
                batch: &BatchRow,
            ) -> Result<(), DriverError> {
                sqlx::query($statements.insert)
                    .bind(&batch.id)
                    .bind(batch.version)
                    .bind(batch.created_at)
                    .bind(batch.finished_at)
                    .bind(&batch.doc)
                    .execute(pool)
                    .await
                    .map_err(backend("create batch"))?;
                Ok(())
            }

            pub(crate) async fn read(
                pool: &Pool<Db>,
                id: &str,
                job: Option<&str>,
            ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
                let job = column_key(job.unwrap_or(""));
                let found = sqlx::query($statements.read)
                    .bind(job.as_ref())
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(backend("read batch"))?;
                found
                    .map(|found| Ok((row(&found)?, found.try_get("outcome")?)))
                    .transpose()
                    .map_err(backend("read batch"))
            }

            pub(crate) async fn write(
                pool: &Pool<Db>,
                write: &BatchWrite<'_>,
            ) -> Result<bool, DriverError> {
                match write_once(pool, write).await {
                    Err(error) if $conflict(&error) => Ok(false),
                    written => written.map_err(backend("write batch")),
                }
            }

            async fn write_once(
                pool: &Pool<Db>,
                write: &BatchWrite<'_>,
            ) -> Result<bool, sqlx::Error> {
                let mut tx = pool.begin().await?;
                let updated = sqlx::query($statements.update)
                    .bind(write.doc)
                    .bind(write.finished_at)
                    .bind(write.id)
                    .bind(write.version)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() != 1 {
                    return Ok(false); // Rolled back when `tx` drops.
                }
                if let Some((job, outcome)) = write.mark {
                    sqlx::query($statements.mark)
                        .bind(write.id)
                        .bind(column_key(job).as_ref())
                        .bind(outcome)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            pub(crate) async fn list(
                pool: &Pool<Db>,
                limit: usize,
            ) -> Result<Vec<BatchRow>, DriverError> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = sqlx::query($statements.list)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
                    .map_err(backend("list batches"))?;
                rows.iter()
                    .map(row)
                    .collect::<Result<_, _>>()
                    .map_err(backend("list batches"))
            }

            /// Deletes chunk after chunk; each batch with its outcomes in one transaction, the
            /// batch's row first (the order writers lock them in).
            pub(crate) async fn prune(
                pool: &Pool<Db>,
                prune: BatchPrune,
            ) -> Result<u64, DriverError> {
                let mut pruned = 0;
                loop {
                    let ids: Vec<String> = match prune.unfinished_before {
                        None => {
                            sqlx::query_scalar($statements.prunable)
                                .bind(prune.finished_before)
                                .fetch_all(pool)
                                .await
                        }
                        Some(before) => {
                            sqlx::query_scalar($statements.prunable_or_old)
                                .bind(prune.finished_before)
                                .bind(before)
                                .fetch_all(pool)
                                .await
                        }
                    }
                    .map_err(backend("prune batches"))?;
                    for id in &ids {
                        let mut tx = pool.begin().await.map_err(backend("prune batches"))?;
                        for statement in [$statements.delete_batch, $statements.delete_jobs] {
                            sqlx::query(statement)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(backend("prune batches"))?;
                        }
                        tx.commit().await.map_err(backend("prune batches"))?;
                        pruned += 1;
                    }
                    if ids.len() < PRUNE_CHUNK {
                        return Ok(pruned);
                    }
                }
            }
        }
    };
}

batch_ops!(
    postgres,
    "postgres",
    sqlx::Postgres,
    POSTGRES,
    super::postgres_conflict
);
batch_ops!(
    mysql,
    "mysql",
    sqlx::MySql,
    MYSQL,
    super::super::slots_sql::mysql::is_deadlock
);
batch_ops!(
    sqlite,
    "sqlite",
    sqlx::Sqlite,
    SQLITE,
    super::sqlite_conflict
);

/// A table does not exist (PostgreSQL's and MySQL's SQLSTATE, SQLite's message).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
pub(crate) fn missing_table(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("42P01" | "42S02"))
            || db.message().contains("no such table"))
}

/// PostgreSQL gave up on a transaction that may be tried again (a serialisation failure, a
/// deadlock).
#[cfg(feature = "postgres")]
fn postgres_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// SQLite's database was locked past the busy timeout.
#[cfg(feature = "sqlite")]
fn sqlite_conflict(error: &sqlx::Error) -> bool {
    super::sqlite::is_busy(error)
}
