//! [Rewriting payloads](super::rewrite) on the SQL drivers: each table walked once by id, each
//! change an `UPDATE` that matches only a row still unleased and still holding the payload that
//! was read. The three dialects differ in their placeholders, casts and comparison.

use super::rewrite::Place;
use super::{DriverError, Edit, Editor, Rewritten};

/// Rows read per page (payloads can be large).
const PAGE: i64 = 100;

/// The statements of one dialect. Pages bind the last id seen and the page size; updates bind
/// the new payload, the id and the payload read.
pub(crate) struct Statements {
    /// Jobs after an id: `id`, `payload`, and `free` (1 when not leased, else 0).
    pub(crate) jobs: &'static str,
    /// Failed records after an id.
    pub(crate) failed: &'static str,
    /// A queued or delayed job's new payload.
    pub(crate) update_job: &'static str,
    /// A failed record's new payload.
    pub(crate) update_failed: &'static str,
}

/// PostgreSQL's statements. Tables RouteMQ created have 32-bit ids: they are read as `bigint`.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Statements = Statements {
    jobs: "SELECT id::bigint AS id, payload, (CASE WHEN reserved_at IS NULL THEN 1 ELSE 0 END)::bigint AS free
        FROM queue_jobs WHERE id > $1 ORDER BY id LIMIT $2",
    failed: "SELECT id::bigint AS id, payload FROM queue_failed_jobs WHERE id > $1 ORDER BY id LIMIT $2",
    update_job: "UPDATE queue_jobs SET payload = $1 WHERE id = $2 AND reserved_at IS NULL AND payload = $3",
    update_failed: "UPDATE queue_failed_jobs SET payload = $1 WHERE id = $2 AND payload = $3",
};

/// SQLite's statements.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Statements = Statements {
    jobs: "SELECT id, payload, CASE WHEN reserved_at IS NULL THEN 1 ELSE 0 END AS free
        FROM queue_jobs WHERE id > ? ORDER BY id LIMIT ?",
    failed: "SELECT id, payload FROM queue_failed_jobs WHERE id > ? ORDER BY id LIMIT ?",
    update_job: "UPDATE queue_jobs SET payload = ? WHERE id = ? AND reserved_at IS NULL AND payload = ?",
    update_failed: "UPDATE queue_failed_jobs SET payload = ? WHERE id = ? AND payload = ?",
};

/// MySQL's statements: payloads compared byte for byte, whatever the column's collation.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL: Statements = Statements {
    jobs:
        "SELECT id, payload, CAST(CASE WHEN reserved_at IS NULL THEN 1 ELSE 0 END AS SIGNED) AS free
        FROM queue_jobs WHERE id > ? ORDER BY id LIMIT ?",
    failed: "SELECT id, payload FROM queue_failed_jobs WHERE id > ? ORDER BY id LIMIT ?",
    update_job: "UPDATE queue_jobs SET payload = ? WHERE id = ? AND reserved_at IS NULL
        AND CAST(payload AS BINARY) = CAST(? AS BINARY)",
    update_failed: "UPDATE queue_failed_jobs SET payload = ? WHERE id = ?
        AND CAST(payload AS BINARY) = CAST(? AS BINARY)",
};

/// The rewrite, for one dialect's pool type.
macro_rules! rewrite_ops {
    ($module:ident, $feature:literal, $db:ty, $statements:path) => {
        #[cfg(feature = $feature)]
        pub(crate) mod $module {
            use sqlx::{Pool, Row};

            use super::*;

            type Db = $db;

            fn backend(error: sqlx::Error) -> DriverError {
                DriverError::backend("rewriting payloads", error)
            }

            /// One page of rows after `after`: `(id, payload, leased)`.
            async fn page(
                pool: &Pool<Db>,
                place: Place,
                after: i64,
            ) -> Result<Vec<(i64, String, bool)>, DriverError> {
                let statement = match place {
                    Place::Failed => $statements.failed,
                    _ => $statements.jobs,
                };
                let rows = sqlx::query(statement)
                    .bind(after)
                    .bind(PAGE)
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?;
                rows.iter()
                    .map(|row| {
                        let leased = match place {
                            Place::Failed => false,
                            _ => row.try_get::<i64, _>("free")? == 0,
                        };
                        Ok((row.try_get("id")?, row.try_get("payload")?, leased))
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(backend)
            }

            /// Stores `payload` in place of `read` for row `id`; whether the row still held it
            /// (and, for a job, was still not leased).
            async fn update(
                pool: &Pool<Db>,
                place: Place,
                id: i64,
                read: &str,
                payload: &str,
            ) -> Result<bool, DriverError> {
                let statement = match place {
                    Place::Failed => $statements.update_failed,
                    _ => $statements.update_job,
                };
                let done = sqlx::query(statement)
                    .bind(payload)
                    .bind(id)
                    .bind(read)
                    .execute(pool)
                    .await
                    .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            /// Walks one table by id (a job keeps its id whether it is leased or not, so each
            /// is seen once), rewriting or counting each row.
            async fn walk(
                pool: &Pool<Db>,
                table: Place,
                edit: Editor<'_>,
                rewritten: &mut Rewritten,
            ) -> Result<(), DriverError> {
                let mut after = 0;
                loop {
                    let rows = page(pool, table, after).await?;
                    let Some(&(last, ..)) = rows.last() else {
                        return Ok(());
                    };
                    after = last;
                    for (id, read, leased) in rows {
                        let place = if leased { Place::Leased } else { table };
                        let change = edit(&read);
                        let written = match (&change, place) {
                            (Edit::Replace(new), Place::Queued | Place::Failed) => {
                                update(pool, place, id, &read, new).await?
                            }
                            _ => false,
                        };
                        rewritten.count(&change, place, written);
                    }
                }
            }

            /// Rewrites queued and delayed jobs and counts leased ones, then failed records.
            pub(crate) async fn rewrite(
                pool: &Pool<Db>,
                edit: Editor<'_>,
            ) -> Result<Rewritten, DriverError> {
                let mut rewritten = Rewritten::default();
                walk(pool, Place::Queued, edit, &mut rewritten).await?;
                walk(pool, Place::Failed, edit, &mut rewritten).await?;
                Ok(rewritten)
            }
        }
    };
}

rewrite_ops!(postgres, "postgres", sqlx::Postgres, POSTGRES);
rewrite_ops!(mysql, "mysql", sqlx::MySql, MYSQL);
rewrite_ops!(sqlite, "sqlite", sqlx::Sqlite, SQLITE);
