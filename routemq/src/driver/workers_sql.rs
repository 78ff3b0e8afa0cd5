//! [Worker presence records](super::WorkerRow) in SQL: table `queue_workers` (made by `migrate`
//! with the other tables), one row per worker, replaced at each beat. The three dialects differ
//! only in their upsert and placeholders.

use super::{DriverError, WorkerRow};

/// The statements of one SQL dialect.
pub(crate) struct Statements {
    /// Binds `id, beat_at, doc`.
    pub(crate) upsert: &'static str,
    /// Binds the oldest `beat_at` kept.
    pub(crate) prune: &'static str,
    /// Binds the oldest `beat_at` read.
    pub(crate) list: &'static str,
}

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Statements = Statements {
    upsert: "INSERT INTO queue_workers (id, beat_at, doc) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at, doc = excluded.doc",
    prune: "DELETE FROM queue_workers WHERE beat_at < $1",
    list: "SELECT id, beat_at, doc FROM queue_workers WHERE beat_at >= $1 ORDER BY id",
};

#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Statements = Statements {
    upsert: "INSERT INTO queue_workers (id, beat_at, doc) VALUES (?, ?, ?)
        ON DUPLICATE KEY UPDATE beat_at = VALUES(beat_at), doc = VALUES(doc)",
    prune: "DELETE FROM queue_workers WHERE beat_at < ?",
    list: "SELECT id, beat_at, doc FROM queue_workers WHERE beat_at >= ? ORDER BY id",
};

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Statements = Statements {
    upsert: "INSERT INTO queue_workers (id, beat_at, doc) VALUES (?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at, doc = excluded.doc",
    prune: "DELETE FROM queue_workers WHERE beat_at < ?",
    list: "SELECT id, beat_at, doc FROM queue_workers WHERE beat_at >= ? ORDER BY id",
};

/// The table of PostgreSQL and SQLite.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS queue_workers (
        id VARCHAR(191) NOT NULL,
        beat_at BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (id)
    )"];

/// The table of MySQL.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL_SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS queue_workers (
        id VARCHAR(191) NOT NULL,
        beat_at BIGINT NOT NULL,
        doc MEDIUMTEXT NOT NULL,
        PRIMARY KEY (id)
    )"];

/// The operations, for one dialect's pool type.
macro_rules! worker_ops {
    ($module:ident, $feature:literal, $db:ty, $statements:ident) => {
        #[cfg(feature = $feature)]
        pub(crate) mod $module {
            use sqlx::{Pool, Row};

            use super::*;

            fn backend(operation: &'static str) -> impl Fn(sqlx::Error) -> DriverError {
                move |error| {
                    if super::super::batches_sql::missing_table(&error) {
                        DriverError::backend(
                            operation,
                            format!(
                                "{error} (table queue_workers is missing: run `queue-migrate`)"
                            ),
                        )
                    } else {
                        DriverError::backend(operation, error)
                    }
                }
            }

            pub(crate) async fn beat(
                pool: &Pool<$db>,
                row: &WorkerRow,
            ) -> Result<bool, DriverError> {
                sqlx::query($statements.upsert)
                    .bind(&row.id)
                    .bind(row.beat_at)
                    .bind(&row.doc)
                    .execute(pool)
                    .await
                    .map_err(backend("record a worker"))?;
                Ok(true)
            }

            pub(crate) async fn prune(pool: &Pool<$db>, before: i64) -> Result<u64, DriverError> {
                let done = sqlx::query($statements.prune)
                    .bind(before)
                    .execute(pool)
                    .await
                    .map_err(backend("delete old worker records"))?;
                Ok(done.rows_affected())
            }

            pub(crate) async fn rows(
                pool: &Pool<$db>,
                since: i64,
            ) -> Result<Option<Vec<WorkerRow>>, DriverError> {
                let rows = sqlx::query($statements.list)
                    .bind(since)
                    .fetch_all(pool)
                    .await
                    .map_err(backend("list workers"))?;
                let rows = rows
                    .iter()
                    .map(|row| {
                        Ok(WorkerRow {
                            id: row.try_get("id")?,
                            beat_at: row.try_get("beat_at")?,
                            doc: row.try_get("doc")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(backend("list workers"))?;
                Ok(Some(rows))
            }
        }
    };
}

worker_ops!(postgres, "postgres", sqlx::Postgres, POSTGRES);
worker_ops!(mysql, "mysql", sqlx::MySql, MYSQL);
worker_ops!(sqlite, "sqlite", sqlx::Sqlite, SQLITE);
