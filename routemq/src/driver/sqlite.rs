//! The SQLite driver: the embedded default. Durable, no server, several worker processes per file.
//!
//! Uses RouteMQ's tables (`queue_jobs`, `queue_failed_jobs`), created on first use, in WAL mode.
//! Timestamps are naive UTC text (`2026-11-28 21:35:11.397883`), as SQLAlchemy writes them, so that
//! they compare correctly as text. Every claim is one `UPDATE … RETURNING` statement under SQLite's
//! single-writer lock, so two workers never reserve the same job; `SQLITE_BUSY` is retried inside
//! the driver. Ids are `AUTOINCREMENT`, never reused, so a lease (id, attempts) is never confused
//! with a later job's.
//!
//! Configuration: `QUEUE_SQLITE_PATH`, else `DATABASE_URL=sqlite://path`, else `./routemq.sqlite`.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::watch;

use super::bands_sql as bands;
use super::batches_sql;
use super::rewrite_sql;
use super::slots::{Slot, ttl_micros};
use super::slots_sql::{self, column_key};
use super::sql::{self, SqlTime};
use super::tables_sql::sqlite as tables;
use super::wake::WakeSignal;
use super::workers_sql;
use super::{
    BatchPrune, BatchRow, BatchWrite, DriverError, Editor, FailedJob, Failure, Lease, NewJob,
    QueueDriver, QueueStats, Reaped, Removal, ReservedJob, Rewritten, WorkerRow,
};

/// The default database file.
pub const DEFAULT_PATH: &str = "./routemq.sqlite";

/// RouteMQ's tables and columns, without RouteMQ's indexes on `queue_jobs`: every index costs
/// each insert, claim and delete, and routemq's claim index (`migrate` creates it, with the
/// column it needs) starts with `(queue, reserved_at)`, so it serves the lookups RouteMQ's
/// `(queue)` and `(queue, reserved_at)` indexes serve (the reaper's, by lease age; RouteMQ's own
/// pop). Files RouteMQ created keep theirs.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        reserved_at DATETIME,
        available_at DATETIME NOT NULL,
        created_at DATETIME NOT NULL,
        unstarted INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS queue_failed_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connection VARCHAR(255) NOT NULL,
        queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL,
        exception TEXT NOT NULL,
        failed_at DATETIME NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS ix_queue_failed_jobs_queue ON queue_failed_jobs (queue)",
    "CREATE TABLE IF NOT EXISTS queue_slots (
        name VARCHAR(191) NOT NULL,
        holder VARCHAR(191) NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (name, holder)
    )",
    "CREATE INDEX IF NOT EXISTS queue_slots_expires_at ON queue_slots (expires_at)",
];

/// Most rows in one bulk `INSERT` (one bound value per row).
const INSERT_CHUNK: usize = 500;

/// `jobs` cut into runs of consecutive jobs with the same queue, delay and priority, at most
/// [`INSERT_CHUNK`] long (the columns one bulk `INSERT` binds once).
fn runs_alike(jobs: &[NewJob]) -> impl Iterator<Item = &[NewJob]> {
    jobs.chunk_by(|a, b| a.queue == b.queue && a.delay == b.delay && a.priority == b.priority)
        .flat_map(|run| run.chunks(INSERT_CHUNK))
}

/// Jobs in an SQLite database file.
#[derive(Debug)]
pub struct SqliteDriver {
    pool: SqlitePool,
    target: String,
    wake: WakeSignal,
}

/// Where the `sqlite` connection's file is, from the environment.
pub fn path_from_env() -> String {
    crate::config::env_var("QUEUE_SQLITE_PATH")
        .or_else(|| crate::config::sqlite_path(crate::config::env_var))
        .unwrap_or_else(|| DEFAULT_PATH.to_owned())
}

impl SqliteDriver {
    /// Opens (creating if needed) the database at `path` and its tables.
    pub async fn open(path: &str) -> Result<Self, DriverError> {
        let connect = |source: sqlx::Error| DriverError::Connect {
            target: format!("sqlite:{path}"),
            source: source.into(),
        };
        let options = if path == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(connect)?
        } else {
            SqliteConnectOptions::new().filename(path)
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
        // One connection for an in-memory database (each connection would see its own).
        let max = if path == ":memory:" { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(options)
            .await
            .map_err(connect)?;
        let driver = Self {
            pool,
            target: format!("sqlite:{path}"),
            wake: WakeSignal::new(),
        };
        driver.migrate().await?;
        Ok(driver)
    }

    /// Opens the file configured in the environment (see the module docs).
    pub async fn from_env() -> Result<Self, DriverError> {
        Self::open(&path_from_env()).await
    }

    /// The database this driver uses, as `sqlite:{path}`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Leases up to `max` ready jobs; `count` adds the attempt now (else a prefetched lease).
    async fn lease_ready(
        &self,
        queues: &[String],
        max: usize,
        count: bool,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        let mut out = Vec::new();
        for queue in queues {
            if out.len() >= max {
                break;
            }
            let now = SqlTime::text(SystemTime::now());
            let limit = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
            // A reservation counts the attempt; a prefetch counts itself as not started yet.
            let counting = if count {
                "attempts = attempts + 1 WHERE"
            } else {
                "unstarted = unstarted + 1, attempts = -attempts - 1 WHERE"
            };
            // Two bounded reads, merged (see `bands_sql`): the ready band by priority, then id;
            // the scheduled band's due rows by due time. Each names its index: left to itself,
            // SQLite reads the scheduled band through the index by due time, which holds every
            // ready row too (opening a file creates both indexes).
            let statement = format!(
                "UPDATE queue_jobs SET reserved_at = ?1, {claimed}, {counting} id IN (
                     SELECT id FROM (
                         SELECT id, p FROM (SELECT id, priority AS p
                             FROM queue_jobs INDEXED BY routemq_queue_jobs_priority
                             WHERE queue = ?2 AND {ready} AND reserved_at IS NULL AND available_at <= ?1
                             ORDER BY priority DESC, id LIMIT ?3)
                         UNION ALL
                         SELECT id, p FROM (SELECT id, -1 - priority AS p
                             FROM queue_jobs INDEXED BY {index}
                             WHERE queue = ?2 AND {scheduled} AND available_at <= ?1 AND reserved_at IS NULL
                             ORDER BY available_at LIMIT ?3)
                         ORDER BY p DESC, id LIMIT ?3))
                 RETURNING id, queue, payload, attempts, unstarted",
                claimed = bands::CLAIMED,
                index = bands::INDEX,
                ready = bands::READY,
                scheduled = bands::SCHEDULED,
            );
            let rows = retry_busy("reserve", || {
                sqlx::query(&statement)
                    .bind(&now)
                    .bind(queue)
                    .bind(limit)
                    .fetch_all(&self.pool)
            })
            .await?;
            let mut jobs = rows
                .iter()
                .map(|row| tables::reserved_job(row, count))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DriverError::backend("reserve", e))?;
            jobs.sort_by_key(|job| sql::lease_id(&job.lease).unwrap_or(i64::MAX));
            out.extend(jobs);
        }
        Ok(out)
    }
}

pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some("5" | "6" | "261" | "262" | "517")
            ) || db.message().contains("database is locked")
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// Runs `op`, retrying while SQLite reports the database busy or locked (beyond `busy_timeout`).
pub(crate) async fn retry_busy<T, F, Fut>(
    operation: &'static str,
    mut op: F,
) -> Result<T, DriverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0u32;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if is_busy(&error) && tries < 20 => {
                tries += 1;
                let pause =
                    Duration::from_millis(5 * u64::from(tries.min(20)) + fastrand::u64(0..10));
                tracing::debug!(operation, tries, "sqlite busy, retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(DriverError::backend(operation, error)),
        }
    }
}

#[async_trait]
impl sql::Reaping for SqliteDriver {
    async fn fail_expired(
        &self,
        lease: &Lease,
        failure: &Failure,
        _visibility_timeout: Duration,
    ) -> Result<bool, DriverError> {
        self.fail(lease, failure).await
    }

    /// Only if the row still holds the reservation time read (a lease renewed meanwhile stays).
    async fn requeue_expired(
        &self,
        row: &sql::Expired,
        _visibility_timeout: Duration,
    ) -> Result<u64, DriverError> {
        let now = SqlTime::text(SystemTime::now());
        let id = sql::lease_id(&row.job.lease)?;
        let requeued = retry_busy("reap", || {
            sqlx::query(
                "UPDATE queue_jobs SET reserved_at = NULL, available_at = ?1, attempts = ?5
                 WHERE id = ?2 AND attempts = ?3 AND reserved_at = ?4",
            )
            .bind(&now)
            .bind(id)
            .bind(row.stored)
            .bind(&row.reserved_at)
            .bind(i64::from(row.job.lease.attempts))
            .execute(&self.pool)
        })
        .await?;
        Ok(requeued.rows_affected())
    }
}

#[async_trait]
impl QueueDriver for SqliteDriver {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn acquire_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        let (name, holder) = (column_key(name), column_key(holder));
        retry_busy("acquire slot", || {
            slots_sql::sqlite::acquire_once(&self.pool, &name, &holder, limit, ttl)
        })
        .await
    }

    async fn release_slot(&self, name: &str, holder: Option<&str>) -> Result<(), DriverError> {
        let (name, holder) = (column_key(name), holder.map(column_key));
        retry_busy("release slot", || {
            sqlx::query(slots_sql::sqlite::RELEASE)
                .bind(&*name)
                .bind(holder.as_deref())
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn renew_slot(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        let (name, holder) = (column_key(name), column_key(holder));
        let renewed = retry_busy("renew slot", || {
            sqlx::query(slots_sql::sqlite::RENEW)
                .bind(&*name)
                .bind(&*holder)
                .bind(slots_sql::sqlite::now())
                .bind(ttl_micros(ttl))
                .execute(&self.pool)
        })
        .await?;
        Ok(renewed.rows_affected() > 0)
    }

    async fn slot_holders(&self, name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        slots_sql::sqlite::holders(&self.pool, name).await
    }

    async fn held_slots(&self, names: &[String]) -> Result<Vec<bool>, DriverError> {
        slots_sql::sqlite::held(&self.pool, names).await
    }

    async fn remove(&self, id: &str) -> Result<Removal, DriverError> {
        let Ok(id) = sql::row_id(id) else {
            return Ok(Removal::NotFound);
        };
        let deleted: Option<(String, String)> = retry_busy("remove job", || {
            sqlx::query_as(
                "DELETE FROM queue_jobs WHERE id = ?1 AND reserved_at IS NULL
                 RETURNING queue, payload",
            )
            .bind(id)
            .fetch_optional(&self.pool)
        })
        .await?;
        if let Some((queue, payload)) = deleted {
            return Ok(Removal::Removed { queue, payload });
        }
        let leased: Option<String> = retry_busy("remove job", || {
            sqlx::query_scalar("SELECT queue FROM queue_jobs WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(leased.map_or(Removal::NotFound, |queue| Removal::Leased { queue }))
    }

    async fn sweep_slots(&self) -> Result<u64, DriverError> {
        let swept = retry_busy("sweep slots", || {
            sqlx::query(slots_sql::sqlite::SWEEP)
                .bind(slots_sql::sqlite::now())
                .execute(&self.pool)
        })
        .await?;
        Ok(swept.rows_affected())
    }

    async fn rewrite_payloads(&self, edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        rewrite_sql::sqlite::rewrite(&self.pool, edit).await
    }

    async fn batch_create(&self, batch: &BatchRow) -> Result<(), DriverError> {
        batches_sql::sqlite::create(&self.pool, batch).await
    }

    async fn batch_read(
        &self,
        id: &str,
        job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        batches_sql::sqlite::read(&self.pool, id, job).await
    }

    async fn batch_write(&self, write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        batches_sql::sqlite::write(&self.pool, write).await
    }

    async fn batch_list(&self, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        batches_sql::sqlite::list(&self.pool, limit).await
    }

    async fn batch_prune(&self, prune: BatchPrune) -> Result<u64, DriverError> {
        batches_sql::sqlite::prune(&self.pool, prune).await
    }

    async fn worker_beat(&self, row: &WorkerRow) -> Result<bool, DriverError> {
        workers_sql::sqlite::beat(&self.pool, row).await
    }

    async fn worker_rows(&self, since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        workers_sql::sqlite::rows(&self.pool, since).await
    }

    async fn worker_prune(&self, before: i64) -> Result<u64, DriverError> {
        workers_sql::sqlite::prune(&self.pool, before).await
    }

    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        tables::failed_recent(&self.pool, queue, limit).await
    }

    async fn migrate(&self) -> Result<(), DriverError> {
        for statement in SCHEMA
            .iter()
            .chain(batches_sql::SCHEMA)
            .chain(workers_sql::SCHEMA)
        {
            retry_busy("create tables", || {
                sqlx::query(statement).execute(&self.pool)
            })
            .await?;
        }
        // A table created by RouteMQ, or by routemq before it counted prefetches or had priorities.
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('queue_jobs')")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| DriverError::backend("create tables", e))?;
        for column in [sql::UNSTARTED, sql::PRIORITY] {
            if columns.iter().any(|c| c == column) {
                continue;
            }
            let statement =
                format!("ALTER TABLE queue_jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0");
            let added = retry_busy("create tables", || {
                sqlx::query(&statement).execute(&self.pool)
            })
            .await;
            // Another process may have added it meanwhile.
            if let Err(error) = added
                && !error.to_string().contains("duplicate column")
            {
                return Err(error);
            }
        }
        // The claim's indexes: ready jobs of a queue by priority, then id, with their due time;
        // scheduled jobs by due time (see `bands_sql`). They replace an earlier routemq's index by
        // due time.
        let indexes = [
            "CREATE INDEX IF NOT EXISTS routemq_queue_jobs_priority
             ON queue_jobs (queue, reserved_at, priority DESC, id, available_at)"
                .to_owned(),
            bands::partial_index(),
            "DROP INDEX IF EXISTS routemq_queue_jobs_claim".to_owned(),
        ];
        for index in &indexes {
            retry_busy("create tables", || sqlx::query(index).execute(&self.pool)).await?;
        }
        Ok(())
    }

    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        let now = SystemTime::now();
        let created = SqlTime::text(now);
        let ids = match jobs {
            [] => Vec::new(),
            // One job: one statement, no explicit transaction (a statement is atomic).
            [job] => {
                // `fetch_all`, not `fetch_one`: the statement must run to completion, or SQLite
                // keeps its write transaction open until the cached statement is next reset.
                let ids: Vec<i64> = retry_busy("push", || {
                    sqlx::query_scalar(
                        "INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at, priority)
                         VALUES (?1, ?2, 0, NULL, ?3, ?4, ?5) RETURNING id",
                    )
                    .bind(&job.queue)
                    .bind(&job.payload)
                    .bind(SqlTime::text(now + crate::limits::clamp(job.delay)))
                    .bind(&created)
                    .bind(i64::from(bands::stored(job, true)))
                    .fetch_all(&self.pool)
                })
                .await?;
                ids.into_iter().map(|id| id.to_string()).collect()
            }
            // Many: one INSERT per run of jobs alike (queue, due time, priority), all in one
            // transaction; one bound value per row (the payload), the rest bound once per run.
            many => {
                retry_busy("push", || async {
                    let mut tx = self.pool.begin().await?;
                    let mut ids = Vec::with_capacity(many.len());
                    for run in runs_alike(many) {
                        let job = &run[0];
                        let mut insert = QueryBuilder::<Sqlite>::new(
                            "INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at, priority) SELECT ",
                        );
                        insert
                            .push_bind(&job.queue)
                            .push(", column1, 0, NULL, ")
                            .push_bind(SqlTime::text(now + crate::limits::clamp(job.delay)))
                            .push(", ")
                            .push_bind(&created)
                            .push(", ")
                            .push_bind(i64::from(bands::stored(job, true)))
                            .push(" FROM (VALUES ");
                        for (i, job) in run.iter().enumerate() {
                            insert.push(if i == 0 { "(" } else { ", (" }).push_bind(&job.payload).push(")");
                        }
                        insert.push(")");
                        let inserted = insert.build().execute(&mut *tx).await?;
                        // One statement in a write transaction: the rows got consecutive ids
                        // (AUTOINCREMENT), in the array's order, ending at the last one.
                        let (last, count) = (inserted.last_insert_rowid(), inserted.rows_affected());
                        if count != run.len() as u64 {
                            return Err(sqlx::Error::Protocol(format!(
                                "inserted {count} rows for {} jobs",
                                run.len()
                            )));
                        }
                        let first = last - i64::try_from(count).unwrap_or(i64::MAX) + 1;
                        ids.extend((first..=last).map(|id| id.to_string()));
                    }
                    tx.commit().await?;
                    Ok(ids)
                })
                .await?
            }
        };
        self.wake.notify();
        Ok(ids)
    }

    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        self.lease_ready(queues, max, true).await
    }

    async fn prefetch(
        &self,
        queues: &[String],
        max: usize,
    ) -> Result<Vec<ReservedJob>, DriverError> {
        self.lease_ready(queues, max, false).await
    }

    async fn start(&self, leases: &[Lease]) -> Result<Vec<Option<Lease>>, DriverError> {
        self.ack_and_start(&[], leases).await
    }

    async fn ack_and_start(
        &self,
        finished: &[Lease],
        starting: &[Lease],
    ) -> Result<Vec<Option<Lease>>, DriverError> {
        let finished = sql::lease_keys(finished)?;
        let starting_keys = sql::prefetched_keys(starting)?;
        let now = SqlTime::text(SystemTime::now());
        let started = retry_busy("ack", || async {
            let mut tx = self.pool.begin().await?;
            for chunk in finished.chunks(INSERT_CHUNK) {
                let mut delete = QueryBuilder::<Sqlite>::new(
                    "DELETE FROM queue_jobs WHERE reserved_at IS NOT NULL AND (",
                );
                sql::push_lease_matches(&mut delete, chunk);
                delete.push(")");
                delete.build().execute(&mut *tx).await?;
            }
            let mut started = std::collections::HashSet::new();
            for chunk in starting_keys.chunks(INSERT_CHUNK) {
                let mut update = QueryBuilder::<Sqlite>::new(
                    "UPDATE queue_jobs SET attempts = -attempts, unstarted = 0, reserved_at = ",
                );
                update
                    .push_bind(&now)
                    .push(" WHERE reserved_at IS NOT NULL AND (");
                sql::push_lease_matches(&mut update, chunk);
                update.push(") RETURNING id");
                let ids: Vec<i64> = update.build_query_scalar().fetch_all(&mut *tx).await?;
                started.extend(ids);
            }
            tx.commit().await?;
            Ok(started)
        })
        .await?;
        Ok(sql::started_leases(starting, &started))
    }

    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError> {
        self.ack_and_start(leases, &[]).await.map(drop)
    }

    async fn release(
        &self,
        lease: &Lease,
        delay: Duration,
        refund_attempt: bool,
    ) -> Result<bool, DriverError> {
        let id = sql::lease_id(lease)?;
        // A prefetched job given back unstarted (a worker stopping) counted no attempt and is no stall.
        let prefetched = super::is_prefetched(lease);
        let counting = if prefetched {
            "attempts = -attempts - 1 - ?2, unstarted = MAX(unstarted - 1, 0)"
        } else {
            "attempts = MAX(attempts - ?2, 0)"
        };
        let available = SqlTime::text(SystemTime::now() + crate::limits::clamp(delay));
        let refund = i64::from(refund_attempt && !prefetched);
        // A job released for later goes to the scheduled band (see `bands_sql`).
        let band = if delay.is_zero() {
            String::new()
        } else {
            format!(", {}", bands::POSTPONED)
        };
        let statement = format!(
            "UPDATE queue_jobs SET reserved_at = NULL, available_at = ?1, {counting}{band}
             WHERE id = ?3 AND attempts = ?4 AND reserved_at IS NOT NULL"
        );
        let result = retry_busy("release", || {
            sqlx::query(&statement)
                .bind(&available)
                .bind(refund)
                .bind(id)
                .bind(sql::stored_attempts(lease))
                .execute(&self.pool)
        })
        .await?;
        if delay.is_zero() {
            self.wake.notify();
        }
        Ok(result.rows_affected() > 0)
    }

    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError> {
        let id = sql::lease_id(lease)?;
        let failed_at = SqlTime::text(SystemTime::now());
        retry_busy("fail", || async {
            let mut tx = self.pool.begin().await?;
            let moved = sqlx::query(
                "INSERT INTO queue_failed_jobs (connection, queue, payload, exception, failed_at)
                 SELECT ?1, queue, payload, ?2, ?3 FROM queue_jobs
                 WHERE id = ?4 AND attempts = ?5 AND reserved_at IS NOT NULL",
            )
            .bind(&failure.connection)
            .bind(&failure.exception)
            .bind(&failed_at)
            .bind(id)
            .bind(sql::stored_attempts(lease))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved > 0 {
                sqlx::query("DELETE FROM queue_jobs WHERE id = ?1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(moved > 0)
        })
        .await
    }

    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError> {
        let now = SqlTime::text(SystemTime::now());
        let mut held = 0;
        let keys = sql::lease_keys(leases)?;
        for chunk in keys.chunks(INSERT_CHUNK) {
            let result = retry_busy("extend", || {
                let mut update =
                    QueryBuilder::<Sqlite>::new("UPDATE queue_jobs SET reserved_at = ");
                update
                    .push_bind(&now)
                    .push(" WHERE reserved_at IS NOT NULL AND (");
                sql::push_lease_matches(&mut update, chunk);
                update.push(")");
                async move { update.build().execute(&self.pool).await }
            })
            .await?;
            held += usize::try_from(result.rows_affected()).unwrap_or(usize::MAX);
        }
        Ok(held)
    }

    async fn reap(
        &self,
        queues: &[String],
        visibility_timeout: Duration,
        max_tries_override: Option<u32>,
        connection: &str,
    ) -> Result<Reaped, DriverError> {
        let cutoff = SqlTime::text(
            SystemTime::now()
                .checked_sub(visibility_timeout)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let mut reaped = Reaped::default();
        for queue in queues {
            let rows = retry_busy("reap", || {
                sqlx::query(
                    "SELECT id, queue, payload, attempts, reserved_at FROM queue_jobs
                     WHERE queue = ?1 AND reserved_at IS NOT NULL AND reserved_at < ?2 ORDER BY id",
                )
                .bind(queue)
                .bind(&cutoff)
                .fetch_all(&self.pool)
            })
            .await?;
            let mut expired = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut job = tables::expired(row)?;
                job.reserved_at = Some(
                    row.try_get("reserved_at")
                        .map_err(|e| DriverError::backend("reap", e))?,
                );
                expired.push(job);
            }
            reaped.add(
                sql::reap_expired(
                    self,
                    expired,
                    visibility_timeout,
                    max_tries_override,
                    connection,
                )
                .await?,
            );
        }
        if reaped.requeued > 0 {
            self.wake.notify();
        }
        Ok(reaped)
    }

    async fn size(&self, queue: &str) -> Result<u64, DriverError> {
        tables::size(&self.pool, queue).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let now = SystemTime::now();
        let now_text = SqlTime::text(now);
        let row = retry_busy("stats", || {
            sqlx::query(
                "SELECT
                    COALESCE(SUM(reserved_at IS NULL AND available_at <= ?2), 0) AS ready,
                    COALESCE(SUM(reserved_at IS NOT NULL), 0) AS reserved,
                    COALESCE(SUM(reserved_at IS NULL AND available_at > ?2), 0) AS delayed,
                    MIN(CASE WHEN reserved_at IS NULL AND available_at <= ?2 THEN created_at END) AS oldest,
                    (SELECT COUNT(*) FROM queue_failed_jobs WHERE queue = ?1) AS failed
                 FROM queue_jobs WHERE queue = ?1",
            )
            .bind(queue)
            .bind(&now_text)
            .fetch_one(&self.pool)
        })
        .await?;
        let get = |column: &str| -> Result<u64, DriverError> {
            let value: i64 = row
                .try_get(column)
                .map_err(|e| DriverError::backend("stats", e))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        let oldest: Option<String> = row
            .try_get("oldest")
            .map_err(|e| DriverError::backend("stats", e))?;
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: get("ready")?,
            reserved: get("reserved")?,
            delayed: get("delayed")?,
            failed: get("failed")?,
            oldest_ready_age_seconds: sql::age_secs(oldest.as_deref(), now),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        tables::queues(&self.pool).await
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, DriverError> {
        let now = SystemTime::now();
        let now_text = SqlTime::text(now);
        let mut next: Option<String> = None;
        // The scheduled band's first row not due yet (one index entry), and the rows not due in
        // the ready band, which are few (see `bands_sql`). Due rows are left out: the claims take
        // them, unless their queue is paused or at its limit, and then they must not make an idle
        // worker spin.
        let statement = format!(
            "SELECT MIN(due) FROM (
                 SELECT * FROM (SELECT available_at AS due FROM queue_jobs INDEXED BY {index}
                     WHERE queue = ?1 AND {scheduled} AND reserved_at IS NULL AND available_at > ?2
                     ORDER BY available_at LIMIT 1)
                 UNION ALL
                 SELECT MIN(available_at) FROM queue_jobs INDEXED BY routemq_queue_jobs_priority
                     WHERE queue = ?1 AND reserved_at IS NULL AND {ready} AND available_at > ?2)",
            index = bands::INDEX,
            scheduled = bands::SCHEDULED,
            ready = bands::READY,
        );
        for queue in queues {
            let due: Option<String> = retry_busy("next_due", || {
                sqlx::query_scalar(&statement)
                    .bind(queue)
                    .bind(&now_text)
                    .fetch_one(&self.pool)
            })
            .await?;
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(next.map(|due| SqlTime::parse(&due).duration_since(now).unwrap_or_default()))
    }

    fn wake_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(self.wake.subscribe())
    }

    async fn failed_list(&self, queue: Option<&str>) -> Result<Vec<FailedJob>, DriverError> {
        tables::failed_list(&self.pool, queue).await
    }

    async fn failed_get(&self, id: &str) -> Result<Option<FailedJob>, DriverError> {
        tables::failed_get(&self.pool, id).await
    }

    async fn failed_retry(&self, id: &str) -> Result<Option<String>, DriverError> {
        let id = sql::row_id(id)?;
        let now = SqlTime::text(SystemTime::now());
        let new_id = retry_busy("retry failed job", || async {
            // The write lock first, so that no other process retries the same job meanwhile.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let failed: Option<String> =
                sqlx::query_scalar("SELECT payload FROM queue_failed_jobs WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(payload) = failed else {
                return Ok(None);
            };
            // The job's priority comes back with it, from its envelope.
            let priority = crate::envelope::priority_of(&payload);
            // Run to completion (`fetch_all`), as every statement with RETURNING here.
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at, priority)
                 SELECT queue, payload, 0, NULL, ?1, ?1, ?3 FROM queue_failed_jobs WHERE id = ?2
                 RETURNING id",
            )
            .bind(&now)
            .bind(id)
            .bind(i64::from(priority))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .next();
            if inserted.is_some() {
                sqlx::query("DELETE FROM queue_failed_jobs WHERE id = ?1").bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
        .await?;
        if new_id.is_some() {
            self.wake.notify();
        }
        Ok(new_id.map(|id| id.to_string()))
    }

    async fn failed_forget(&self, id: &str) -> Result<bool, DriverError> {
        tables::failed_forget(&self.pool, id).await
    }

    async fn failed_flush(&self, queue: Option<&str>) -> Result<u64, DriverError> {
        tables::failed_flush(&self.pool, queue).await
    }

    async fn failed_trim(&self, queue: Option<&str>, keep: u64) -> Result<u64, DriverError> {
        tables::failed_trim(&self.pool, queue, keep).await
    }

    async fn failed_prune(
        &self,
        queue: Option<&str>,
        older_than: Duration,
    ) -> Result<u64, DriverError> {
        let cutoff = SqlTime::text(
            SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let result = retry_busy("prune failed jobs", || {
            sqlx::query(
                "DELETE FROM queue_failed_jobs WHERE failed_at < ?1 AND (?2 IS NULL OR queue = ?2)",
            )
            .bind(&cutoff)
            .bind(queue)
            .execute(&self.pool)
        })
        .await?;
        Ok(result.rows_affected())
    }
}
