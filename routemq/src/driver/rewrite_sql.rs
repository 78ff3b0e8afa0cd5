//! [Rewriting payloads](super::rewrite) on the SQL drivers: pages of rows by id, each change an
//! `UPDATE` that matches only a row still unleased and still holding the payload that was read.
//! The three dialects differ only in their placeholders.

use super::rewrite::Place;
use super::{DriverError, Edit, Editor, Rewritten};

/// Rows read per page (payloads can be large).
const PAGE: i64 = 100;

/// The statements of one dialect. Pages bind the last id seen and the page size; updates bind
/// the new payload, the id and the payload read.
pub(crate) struct Statements {
    /// Queued and delayed jobs after an id.
    pub(crate) unleased: &'static str,
    /// Leased jobs after an id.
    pub(crate) leased: &'static str,
    /// Failed records after an id.
    pub(crate) failed: &'static str,
    /// A queued or delayed job's new payload.
    pub(crate) update_job: &'static str,
    /// A failed record's new payload.
    pub(crate) update_failed: &'static str,
}

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Statements = Statements {
    unleased: "SELECT id, payload FROM queue_jobs WHERE id > $1 AND reserved_at IS NULL ORDER BY id LIMIT $2",
    leased: "SELECT id, payload FROM queue_jobs WHERE id > $1 AND reserved_at IS NOT NULL ORDER BY id LIMIT $2",
    failed: "SELECT id, payload FROM queue_failed_jobs WHERE id > $1 ORDER BY id LIMIT $2",
    update_job: "UPDATE queue_jobs SET payload = $1 WHERE id = $2 AND reserved_at IS NULL AND payload = $3",
    update_failed: "UPDATE queue_failed_jobs SET payload = $1 WHERE id = $2 AND payload = $3",
};

/// MySQL's and SQLite's statements (`?` placeholders).
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) const QUESTION_MARKS: Statements = Statements {
    unleased: "SELECT id, payload FROM queue_jobs WHERE id > ? AND reserved_at IS NULL ORDER BY id LIMIT ?",
    leased: "SELECT id, payload FROM queue_jobs WHERE id > ? AND reserved_at IS NOT NULL ORDER BY id LIMIT ?",
    failed: "SELECT id, payload FROM queue_failed_jobs WHERE id > ? ORDER BY id LIMIT ?",
    update_job: "UPDATE queue_jobs SET payload = ? WHERE id = ? AND reserved_at IS NULL AND payload = ?",
    update_failed: "UPDATE queue_failed_jobs SET payload = ? WHERE id = ? AND payload = ?",
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

            /// One page of `(id, payload)` after `after`.
            async fn page(
                pool: &Pool<Db>,
                statement: &'static str,
                after: i64,
            ) -> Result<Vec<(i64, String)>, DriverError> {
                let rows = sqlx::query(statement)
                    .bind(after)
                    .bind(PAGE)
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?;
                rows.iter()
                    .map(|row| Ok((row.try_get("id")?, row.try_get("payload")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(backend)
            }

            /// Stores `payload` in place of `read` for row `id`; whether the row still held it.
            async fn update(
                pool: &Pool<Db>,
                statement: &'static str,
                id: i64,
                read: &str,
                payload: &str,
            ) -> Result<bool, DriverError> {
                let done = sqlx::query(statement)
                    .bind(payload)
                    .bind(id)
                    .bind(read)
                    .execute(pool)
                    .await
                    .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn pass(
                pool: &Pool<Db>,
                place: Place,
                edit: Editor<'_>,
                rewritten: &mut Rewritten,
            ) -> Result<(), DriverError> {
                let statements = &$statements;
                let statement = match place {
                    Place::Queued => statements.unleased,
                    Place::Leased => statements.leased,
                    Place::Failed => statements.failed,
                };
                let mut after = 0;
                loop {
                    let rows = page(pool, statement, after).await?;
                    let Some(&(last, _)) = rows.last() else {
                        return Ok(());
                    };
                    after = last;
                    for (id, read) in rows {
                        let change = edit(&read);
                        let written = match (&change, place) {
                            (Edit::Replace(new), Place::Queued) => {
                                update(pool, statements.update_job, id, &read, new).await?
                            }
                            (Edit::Replace(new), Place::Failed) => {
                                update(pool, statements.update_failed, id, &read, new).await?
                            }
                            _ => false,
                        };
                        rewritten.count(&change, place, written);
                    }
                }
            }

            /// Rewrites queued and delayed jobs, counts leased ones, then rewrites failed records.
            pub(crate) async fn rewrite(
                pool: &Pool<Db>,
                edit: Editor<'_>,
            ) -> Result<Rewritten, DriverError> {
                let mut rewritten = Rewritten::default();
                for step in [Place::Queued, Place::Leased, Place::Failed] {
                    pass(pool, step, edit, &mut rewritten).await?;
                }
                Ok(rewritten)
            }
        }
    };
}

rewrite_ops!(postgres, "postgres", sqlx::Postgres, POSTGRES);
rewrite_ops!(mysql, "mysql", sqlx::MySql, QUESTION_MARKS);
rewrite_ops!(sqlite, "sqlite", sqlx::Sqlite, QUESTION_MARKS);
