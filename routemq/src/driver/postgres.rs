//! The PostgreSQL driver: RouteMQ's tables, `FOR UPDATE SKIP LOCKED` claims, LISTEN/NOTIFY wake-ups,
//! and dispatch inside the caller's own transaction.
//!
//! Tables `queue_jobs` and `queue_failed_jobs` with RouteMQ's columns (64-bit ids, `TIMESTAMP
//! WITHOUT TIME ZONE` holding UTC). Timestamps come from the database clock, so workers on several
//! hosts agree. `queue-migrate` creates the tables; workers create them on their own only with
//! `DB_AUTO_CREATE_TABLES=true` (RouteMQ's variable).
//!
//! A claim is one `UPDATE … WHERE id IN (SELECT … ORDER BY priority DESC, id LIMIT n FOR UPDATE
//! SKIP LOCKED) RETURNING …`: up to n jobs per round trip, by priority then FIFO by id, never the
//! same row to two workers, on a few connections of the driver's own (see `postgres_claims`). A
//! bulk dispatch is one `INSERT … SELECT FROM UNNEST(…)`. Every dispatch sends `NOTIFY
//! routemq_jobs` (delivered at commit), which wakes idle workers at once; polling is the fallback.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::watch;

use super::bands_sql as bands;
use super::batches_sql;
use super::postgres_claims::{self, ClaimPool};
use super::rewrite_sql;
use super::slots::Slot;
use super::slots_sql;
use super::sql;
use super::tables_sql::postgres as tables;
use super::wake::{WakeFeed, WakeSignal, reconnect_pause};
use super::workers_sql;
use super::{
    BatchPrune, BatchRow, BatchWrite, DriverError, Editor, FailedJob, Failure, Lease, NewJob,
    QueueDriver, QueueStats, Reaped, Removal, ReservedJob, Rewritten, WorkerRow,
};

/// The NOTIFY channel that announces new jobs.
pub const CHANNEL: &str = "routemq_jobs";

/// The database clock in naive UTC, as RouteMQ stores it (fixed for the statement, so it can be
/// compared against an index).
const NOW: &str = "timezone('utc', now())";

/// RouteMQ's tables and columns, without RouteMQ's index on `queue_jobs (queue)`: its
/// `(queue, reserved_at)` index starts with the same column and serves the same lookups (the
/// reaper's, by lease age; RouteMQ's own pop, by id), and every index costs each insert, claim
/// and delete. Tables RouteMQ created keep theirs.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_jobs (
        id BIGSERIAL NOT NULL,
        queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        reserved_at TIMESTAMP WITHOUT TIME ZONE,
        available_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        unstarted INTEGER NOT NULL DEFAULT 0,
        priority SMALLINT NOT NULL DEFAULT 0,
        PRIMARY KEY (id)
    )",
    "CREATE INDEX IF NOT EXISTS queue_jobs_queue_reserved_at_index ON queue_jobs (queue, reserved_at)",
    "CREATE TABLE IF NOT EXISTS queue_failed_jobs (
        id BIGSERIAL NOT NULL,
        connection VARCHAR(255) NOT NULL,
        queue VARCHAR(255) NOT NULL,
        payload TEXT NOT NULL,
        exception TEXT NOT NULL,
        failed_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        PRIMARY KEY (id)
    )",
    "CREATE INDEX IF NOT EXISTS ix_queue_failed_jobs_queue ON queue_failed_jobs (queue)",
    "CREATE TABLE IF NOT EXISTS queue_slots (
        name VARCHAR(191) NOT NULL,
        holder VARCHAR(191) NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (name, holder)
    )",
    "CREATE INDEX IF NOT EXISTS queue_slots_expires_at ON queue_slots (expires_at)",
];

/// Jobs in PostgreSQL.
pub struct PostgresDriver {
    pool: PgPool,
    claims: ClaimPool,
    target: String,
    wake: WakeSignal,
    listener: WakeFeed,
    prefetching: sql::PrefetchSupport,
    priorities: sql::PrioritySupport,
}

impl std::fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDriver")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn backend(operation: &'static str) -> impl Fn(sqlx::Error) -> DriverError {
    move |error| DriverError::backend(operation, error)
}

/// Inserts jobs on `conn` (a pooled connection or the caller's transaction) and notifies workers.
/// One statement for any number of jobs.
pub async fn push_on(conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
    // The priority column is named only when a job has one: RouteMQ's tables take the rest.
    insert(conn, jobs, sql::any_priority(jobs))
        .await
        .map_err(sql::push_error)
}

/// Inserts jobs on `conn` and notifies workers; with `banded`, names the priority column and
/// stores delayed jobs in the scheduled band (see `bands_sql`).
async fn insert(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    banded: bool,
) -> Result<Vec<String>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let payloads: Vec<&str> = jobs.iter().map(|j| j.payload.as_str()).collect();
    let delays: Vec<f64> = jobs
        .iter()
        .map(|j| crate::limits::clamp(j.delay).as_secs_f64())
        .collect();
    let priorities: Vec<i16> = jobs.iter().map(|job| bands::stored(job, true)).collect();
    let (column, value) = if banded {
        (", priority", ", r")
    } else {
        ("", "")
    };
    // One round trip: the insert, and a NOTIFY per row (PostgreSQL folds identical notifications
    // of one transaction into one, delivered at commit).
    let mut ids: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH ins AS (
            INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at{column})
            SELECT q, p, 0, NULL, {NOW} + make_interval(secs => d), {NOW}{value}
            FROM UNNEST($1::varchar[], $2::text[], $3::float8[], $5::int2[])
                 WITH ORDINALITY AS t(q, p, d, r, n)
            ORDER BY n
            RETURNING id, queue)
         SELECT ins.id::bigint FROM ins, pg_notify($4, ins.queue)"
    ))
    .bind(&queues)
    .bind(&payloads)
    .bind(&delays)
    .bind(CHANNEL)
    .bind(&priorities)
    .fetch_all(&mut *conn)
    .await?;
    // Ids are taken in insertion order, which is the ORDER BY above.
    ids.sort_unstable();
    Ok(ids.into_iter().map(|id| id.to_string()).collect())
}

/// Adds the `unstarted` and `priority` columns to a table created by RouteMQ or an earlier
/// routemq (a catalog change only: the defaults are constants).
async fn add_columns(conn: &mut PgConnection) -> Result<(), DriverError> {
    for (column, kind) in [(sql::UNSTARTED, "INTEGER"), (sql::PRIORITY, "SMALLINT")] {
        sqlx::query(&format!(
            "ALTER TABLE queue_jobs ADD COLUMN IF NOT EXISTS {column} {kind} NOT NULL DEFAULT 0"
        ))
        .execute(&mut *conn)
        .await
        .map_err(backend("create tables"))?;
    }
    Ok(())
}

/// A claim's candidates (`$1` the queue, `$2` the claim's size). On a migrated table (`banded`),
/// the ready band by priority, then id, and the scheduled band's due rows by due time, each read
/// through its own index and bounded by the claim's size, merged by priority, then id (see
/// `bands_sql`); rows a branch locked but the merge left out are free again at commit.
fn candidates(banded: bool) -> String {
    if !banded {
        // A table without the priority column: by id.
        return format!(
            "SELECT id FROM queue_jobs WHERE queue = $1 AND reserved_at IS NULL AND available_at <= {NOW}
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
    }
    format!(
        "SELECT id FROM (
            SELECT id, p FROM (SELECT id, priority AS p FROM queue_jobs
                WHERE queue = $1 AND {ready} AND reserved_at IS NULL AND available_at <= {NOW}
                ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED) r
            UNION ALL
            SELECT id, p FROM (SELECT id, -1 - priority AS p FROM queue_jobs
                WHERE queue = $1 AND {scheduled} AND available_at <= {NOW} AND reserved_at IS NULL
                ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED) s
            ORDER BY p DESC, id LIMIT $2) c",
        ready = bands::READY,
        scheduled = bands::SCHEDULED,
    )
}

/// The claim's indexes: a queue's ready jobs by priority, then id, with their due time, so that a
/// claim skips jobs not due yet without reading their rows (it replaces an earlier one by id
/// alone); and its scheduled jobs by due time (see `bands_sql`).
async fn claim_index(conn: &mut PgConnection) -> Result<(), DriverError> {
    for statement in [
        "CREATE INDEX IF NOT EXISTS routemq_queue_jobs_priority
         ON queue_jobs (queue, priority DESC, id) INCLUDE (available_at) WHERE reserved_at IS NULL"
            .to_owned(),
        bands::partial_index(),
        "DROP INDEX IF EXISTS routemq_queue_jobs_claim".to_owned(),
    ] {
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .map_err(backend("create tables"))?;
    }
    Ok(())
}

impl PostgresDriver {
    /// Connects to `url` (`postgres://user:password@host:5432/db`). Does not create tables.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        let target = crate::config::redact_url(url);
        let connect = |source: sqlx::Error| DriverError::Connect {
            target: target.clone(),
            source: source.into(),
        };
        let options: PgConnectOptions = url.parse().map_err(connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect)?;
        Ok(Self::with_target(pool, target))
    }

    /// A driver on your application's own pool (use `routemq::sqlx`, the sqlx routemq is built
    /// with), so jobs and the app share connections. Does not create tables (see `migrate`).
    /// The driver holds one more connection of the pool while a worker listens for new jobs, and
    /// opens up to four of its own for claims, with the pool's connect options (not its
    /// `after_connect` hook: if that changes the `search_path` or the role, claims notice and
    /// run on the pool itself, in a transaction each).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn example(pool: routemq::sqlx::PgPool) {
    /// use routemq::driver::postgres::PostgresDriver;
    /// routemq::queue().register("postgres", Arc::new(PostgresDriver::from_pool(pool)));
    /// # }
    /// ```
    pub fn from_pool(pool: PgPool) -> Self {
        let options = pool.connect_options();
        let target = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        Self::with_target(pool, target)
    }

    fn with_target(pool: PgPool, target: String) -> Self {
        Self {
            pool,
            claims: ClaimPool::new(),
            target,
            wake: WakeSignal::new(),
            listener: WakeFeed::default(),
            prefetching: sql::PrefetchSupport::default(),
            priorities: sql::PrioritySupport::default(),
        }
    }

    /// Connects with the environment's settings (`DATABASE_URL` or RouteMQ's `DB_*` variables),
    /// creating the tables if `DB_AUTO_CREATE_TABLES=true`.
    pub async fn from_env() -> Result<Self, DriverError> {
        let driver =
            Self::connect(&sql::server_url_from_env(crate::config::SqlKind::Postgres)?).await?;
        if sql::auto_create_tables()? {
            driver.migrate().await?;
        }
        Ok(driver)
    }

    /// Widens 32-bit ids (`SERIAL`, as RouteMQ's own tables have them) to 64 bits, so that ids
    /// never run out; a no-op once they are `BIGINT`. Rewrites the table under a lock: it runs only
    /// in a migration, once.
    async fn widen_ids(&self) -> Result<(), DriverError> {
        for table in ["queue_jobs", "queue_failed_jobs"] {
            let narrow: bool = sqlx::query_scalar(
                "SELECT data_type = 'integer' FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id'",
            )
            .bind(table)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend("widen ids"))?
            .unwrap_or(false);
            if !narrow {
                continue;
            }
            tracing::warn!(
                table,
                "widening the id column to BIGINT (rewrites the table)"
            );
            let mut tx = self.pool.begin().await.map_err(backend("widen ids"))?;
            sqlx::query(&format!("ALTER TABLE {table} ALTER COLUMN id TYPE BIGINT"))
                .execute(&mut *tx)
                .await
                .map_err(backend("widen ids"))?;
            let sequence: Option<String> =
                sqlx::query_scalar("SELECT pg_get_serial_sequence($1, 'id')")
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend("widen ids"))?;
            if let Some(sequence) = sequence {
                sqlx::query(&format!("ALTER SEQUENCE {sequence} AS BIGINT"))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("widen ids"))?;
            }
            tx.commit().await.map_err(backend("widen ids"))?;
        }
        Ok(())
    }

    /// The server, password hidden.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs a claim statement: with sorting and JIT ruled out on a migrated table, with the claim
    /// index in place (see `postgres_claims`). Without the index (not migrated) the order is by
    /// id, which the primary key gives too, through other queues' rows: PostgreSQL decides then.
    /// Either way one statement, so its rows are locked and updated at once.
    async fn claim(
        &self,
        statement: &str,
        queue: &str,
        limit: i64,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        if self.priorities.present() {
            self.claims.claim(&self.pool, statement, queue, limit).await
        } else {
            postgres_claims::run(&self.pool, statement, queue, limit).await
        }
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
            // A reservation counts the attempt; a prefetch counts itself as not started yet.
            let (counting, unstarted) = if count {
                ("attempts = attempts + 1", "")
            } else {
                (
                    "unstarted = unstarted + 1, attempts = -attempts - 1",
                    ", unstarted",
                )
            };
            let claim = |banded: bool| {
                let claimed = if banded {
                    format!(", {}", bands::CLAIMED)
                } else {
                    String::new()
                };
                format!(
                    "UPDATE queue_jobs SET reserved_at = {NOW}{claimed}, {counting}
                     WHERE id IN ({})
                     RETURNING id::bigint AS id, queue, payload, attempts{unstarted}",
                    candidates(banded)
                )
            };
            let limit = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
            let mut rows = self
                .claim(&claim(self.priorities.present()), queue, limit)
                .await;
            // Not migrated yet: claim by id alone.
            if let Err(error) = &rows
                && self.priorities.off_if_unmigrated(error)
            {
                rows = self.claim(&claim(false), queue, limit).await;
            }
            let rows = match rows {
                // Not migrated yet: `prefetch` reserves instead.
                Err(error) if !count && self.prefetching.off_if_unmigrated(&error) => {
                    return Ok(out);
                }
                rows => rows.map_err(backend("reserve"))?,
            };
            let mut jobs = rows
                .iter()
                .map(|row| tables::reserved_job(row, count))
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend("reserve"))?;
            jobs.sort_by_key(|job| sql::lease_id(&job.lease).unwrap_or(i64::MAX));
            out.extend(jobs);
        }
        Ok(out)
    }

    /// The connection pool, for your own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn start_listener(&self) {
        let pool = self.pool.clone();
        let wake = self.wake.clone();
        self.listener.start_once(|| async move {
            let mut failures = 0u32;
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener.listen(CHANNEL).await.is_ok() {
                            failures = 0;
                            wake.notify();
                            // `recv` reconnects by itself; an error means it could not.
                            while listener.recv().await.is_ok() {
                                wake.notify();
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "postgres LISTEN connection failed"),
                }
                failures += 1;
                tokio::time::sleep(reconnect_pause(failures)).await;
            }
        });
    }

    /// Moves a leased job to the failed store; with `expired_before`, only if its lease is that old.
    async fn fail_with(
        &self,
        lease: &Lease,
        failure: &Failure,
        expired_before: Option<f64>,
    ) -> Result<bool, DriverError> {
        let id = sql::lease_id(lease)?;
        let moved: Option<i64> = sqlx::query_scalar(&format!(
            "WITH gone AS (
                DELETE FROM queue_jobs
                WHERE id = $1 AND attempts = $2 AND reserved_at IS NOT NULL
                  AND ($5::float8 IS NULL OR reserved_at < {NOW} - make_interval(secs => $5))
                RETURNING queue, payload)
             INSERT INTO queue_failed_jobs (connection, queue, payload, exception, failed_at)
             SELECT $3, queue, payload, $4, {NOW} FROM gone
             RETURNING id::bigint"
        ))
        .bind(id)
        .bind(sql::stored_attempts(lease))
        .bind(&failure.connection)
        .bind(&failure.exception)
        .bind(expired_before)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend("fail"))?;
        Ok(moved.is_some())
    }
}

#[async_trait]
impl sql::Reaping for PostgresDriver {
    async fn fail_expired(
        &self,
        lease: &Lease,
        failure: &Failure,
        visibility_timeout: Duration,
    ) -> Result<bool, DriverError> {
        self.fail_with(lease, failure, Some(visibility_timeout.as_secs_f64()))
            .await
    }

    async fn requeue_expired(
        &self,
        row: &sql::Expired,
        visibility_timeout: Duration,
    ) -> Result<u64, DriverError> {
        let result = sqlx::query(&format!(
            "UPDATE queue_jobs SET reserved_at = NULL, available_at = {NOW}, attempts = $4
             WHERE id = $1 AND attempts = $2 AND reserved_at < {NOW} - make_interval(secs => $3)"
        ))
        .bind(sql::lease_id(&row.job.lease)?)
        .bind(i32::try_from(row.stored).unwrap_or(i32::MAX))
        .bind(visibility_timeout.as_secs_f64())
        .bind(i32::try_from(row.job.lease.attempts).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await
        .map_err(backend("reap"))?;
        Ok(result.rows_affected())
    }
}

#[async_trait]
impl QueueDriver for PostgresDriver {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn acquire_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        slots_sql::postgres::acquire(&self.pool, name, holder, limit, ttl).await
    }

    async fn release_slot(&self, name: &str, holder: Option<&str>) -> Result<(), DriverError> {
        slots_sql::postgres::release(&self.pool, name, holder).await
    }

    async fn renew_slot(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        slots_sql::postgres::renew(&self.pool, name, holder, ttl).await
    }

    async fn slot_holders(&self, name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        slots_sql::postgres::holders(&self.pool, name).await
    }

    async fn held_slots(&self, names: &[String]) -> Result<Vec<bool>, DriverError> {
        slots_sql::postgres::held(&self.pool, names).await
    }

    async fn remove(&self, id: &str) -> Result<Removal, DriverError> {
        let Ok(id) = sql::row_id(id) else {
            return Ok(Removal::NotFound);
        };
        let deleted: Option<(String, String)> = sqlx::query_as(
            "DELETE FROM queue_jobs WHERE id = $1 AND reserved_at IS NULL RETURNING queue, payload",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend("remove job"))?;
        if let Some((queue, payload)) = deleted {
            return Ok(Removal::Removed { queue, payload });
        }
        let leased: Option<String> =
            sqlx::query_scalar("SELECT queue FROM queue_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend("remove job"))?;
        Ok(leased.map_or(Removal::NotFound, |queue| Removal::Leased { queue }))
    }

    async fn sweep_slots(&self) -> Result<u64, DriverError> {
        slots_sql::postgres::sweep(&self.pool).await
    }

    async fn rewrite_payloads(&self, edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        rewrite_sql::postgres::rewrite(&self.pool, edit).await
    }

    async fn batch_create(&self, batch: &BatchRow) -> Result<(), DriverError> {
        batches_sql::postgres::create(&self.pool, batch).await
    }

    async fn batch_read(
        &self,
        id: &str,
        job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        batches_sql::postgres::read(&self.pool, id, job).await
    }

    async fn batch_write(&self, write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        batches_sql::postgres::write(&self.pool, write).await
    }

    async fn batch_list(&self, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        batches_sql::postgres::list(&self.pool, limit).await
    }

    async fn batch_prune(&self, prune: BatchPrune) -> Result<u64, DriverError> {
        batches_sql::postgres::prune(&self.pool, prune).await
    }

    async fn worker_beat(&self, row: &WorkerRow) -> Result<bool, DriverError> {
        workers_sql::postgres::beat(&self.pool, row).await
    }

    async fn worker_rows(&self, since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        workers_sql::postgres::rows(&self.pool, since).await
    }

    async fn worker_prune(&self, before: i64) -> Result<u64, DriverError> {
        workers_sql::postgres::prune(&self.pool, before).await
    }

    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        tables::failed_recent(&self.pool, queue, limit).await
    }

    async fn migrate(&self) -> Result<(), DriverError> {
        // Already there: take no lock (CREATE INDEX IF NOT EXISTS would lock the tables anyway).
        let present: bool = sqlx::query_scalar(
            "SELECT to_regclass('queue_jobs') IS NOT NULL AND to_regclass('queue_failed_jobs') IS NOT NULL
                AND to_regclass('routemq_queue_jobs_priority') IS NOT NULL
                AND to_regclass('routemq_queue_jobs_scheduled') IS NOT NULL
                AND to_regclass('routemq_queue_jobs_claim') IS NULL
                AND to_regclass('queue_slots_expires_at') IS NOT NULL
                AND to_regclass('queue_batch_jobs') IS NOT NULL
                AND to_regclass('queue_batches_finished_at') IS NOT NULL
                AND to_regclass('queue_workers') IS NOT NULL
                AND (SELECT count(*) FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = 'queue_jobs'
                       AND column_name IN ('unstarted', 'priority')) = 2",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend("create tables"))?;
        if !present {
            let mut tx = self.pool.begin().await.map_err(backend("create tables"))?;
            // Serialise concurrent migrations (CREATE … IF NOT EXISTS races on the catalog).
            sqlx::query("SELECT pg_advisory_xact_lock(7466135209418432401)")
                .execute(&mut *tx)
                .await
                .map_err(backend("create tables"))?;
            for statement in SCHEMA
                .iter()
                .chain(batches_sql::SCHEMA)
                .chain(workers_sql::SCHEMA)
            {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("create tables"))?;
            }
            // Tables RouteMQ or an older routemq created get routemq's columns and claim index.
            add_columns(&mut tx).await?;
            claim_index(&mut tx).await?;
            tx.commit().await.map_err(backend("create tables"))?;
        }
        self.widen_ids().await
    }

    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        let mut conn = self.pool.acquire().await.map_err(backend("push"))?;
        // Delayed jobs go to the scheduled band while the table has the priority column.
        let prioritized = sql::any_priority(jobs);
        let banded = prioritized || (bands::any_delayed(jobs) && self.priorities.present());
        let mut ids = insert(&mut conn, jobs, banded).await;
        if let Err(error) = &ids
            && banded
            && !prioritized
            && self.priorities.off_if_unmigrated(error)
        {
            ids = insert(&mut conn, jobs, false).await;
        }
        let ids = ids.map_err(sql::push_error)?;
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
        self.prefetching
            .prefetch(|count| self.lease_ready(queues, max, count))
            .await
    }

    async fn start(&self, leases: &[Lease]) -> Result<Vec<Option<Lease>>, DriverError> {
        self.ack_and_start(&[], leases).await
    }

    async fn ack_and_start(
        &self,
        finished: &[Lease],
        starting: &[Lease],
    ) -> Result<Vec<Option<Lease>>, DriverError> {
        let (ack_ids, ack_attempts) = sql::lease_arrays(finished)?;
        let (ids, attempts): (Vec<i64>, Vec<i32>) =
            sql::prefetched_keys(starting)?.into_iter().unzip();
        // One statement: the acknowledgements run as a data-modifying CTE.
        let started: Vec<i64> = sqlx::query_scalar(&format!(
            "WITH acked AS (
                 DELETE FROM queue_jobs q USING UNNEST($1::bigint[], $2::int[]) AS l(id, attempts)
                 WHERE q.id = l.id AND q.attempts = l.attempts AND q.reserved_at IS NOT NULL)
             UPDATE queue_jobs q SET attempts = -q.attempts, unstarted = 0, reserved_at = {NOW}
             FROM UNNEST($3::bigint[], $4::int[]) AS l(id, attempts)
             WHERE q.id = l.id AND q.attempts = l.attempts AND q.reserved_at IS NOT NULL
             RETURNING q.id::bigint"
        ))
        .bind(&ack_ids)
        .bind(&ack_attempts)
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(&self.pool)
        .await
        .map_err(backend("ack"))?;
        Ok(sql::started_leases(
            starting,
            &started.into_iter().collect(),
        ))
    }

    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError> {
        let (ids, attempts) = sql::lease_arrays(leases)?;
        sqlx::query(
            "DELETE FROM queue_jobs q USING UNNEST($1::bigint[], $2::int[]) AS l(id, attempts)
             WHERE q.id = l.id AND q.attempts = l.attempts AND q.reserved_at IS NOT NULL",
        )
        .bind(&ids)
        .bind(&attempts)
        .execute(&self.pool)
        .await
        .map_err(backend("ack"))?;
        Ok(())
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
            "attempts = -attempts - 1 - $2, unstarted = GREATEST(unstarted - 1, 0)"
        } else {
            "attempts = GREATEST(attempts - $2, 0)"
        };
        // A job released for later goes to the scheduled band (see `bands_sql`).
        let band = if delay.is_zero() || !self.priorities.present() {
            String::new()
        } else {
            format!(", {}", bands::POSTPONED)
        };
        let result = sqlx::query(&format!(
            "UPDATE queue_jobs SET reserved_at = NULL, available_at = {NOW} + make_interval(secs => $1),
                {counting}{band}
             WHERE id = $3 AND attempts = $4 AND reserved_at IS NOT NULL"
        ))
        .bind(crate::limits::clamp(delay).as_secs_f64())
        .bind(i32::from(refund_attempt && !prefetched))
        .bind(id)
        .bind(sql::stored_attempts(lease))
        .execute(&self.pool)
        .await
        .map_err(backend("release"))?;
        if delay.is_zero() && result.rows_affected() > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&lease.queue)
                .execute(&self.pool)
                .await
                .map_err(backend("notify"))?;
        }
        Ok(result.rows_affected() > 0)
    }

    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError> {
        self.fail_with(lease, failure, None).await
    }

    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError> {
        let (ids, attempts) = sql::lease_arrays(leases)?;
        let result = sqlx::query(&format!(
            "UPDATE queue_jobs q SET reserved_at = {NOW} FROM UNNEST($1::bigint[], $2::int[]) AS l(id, attempts)
             WHERE q.id = l.id AND q.attempts = l.attempts AND q.reserved_at IS NOT NULL"
        ))
        .bind(&ids)
        .bind(&attempts)
        .execute(&self.pool)
        .await
        .map_err(backend("extend"))?;
        Ok(usize::try_from(result.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn reap(
        &self,
        queues: &[String],
        visibility_timeout: Duration,
        max_tries_override: Option<u32>,
        connection: &str,
    ) -> Result<Reaped, DriverError> {
        let rows = sqlx::query(&format!(
            "SELECT id::bigint AS id, queue, payload, attempts FROM queue_jobs
             WHERE queue = ANY($1) AND reserved_at IS NOT NULL AND reserved_at < {NOW} - make_interval(secs => $2)
             ORDER BY id LIMIT 500"
        ))
        .bind(queues)
        .bind(visibility_timeout.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(backend("reap"))?;
        let expired = rows
            .iter()
            .map(tables::expired)
            .collect::<Result<Vec<_>, _>>()?;
        let reaped = sql::reap_expired(
            self,
            expired,
            visibility_timeout,
            max_tries_override,
            connection,
        )
        .await?;
        if reaped.requeued > 0 {
            self.wake.notify();
        }
        Ok(reaped)
    }

    async fn size(&self, queue: &str) -> Result<u64, DriverError> {
        tables::size(&self.pool, queue).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let row = sqlx::query(&format!(
            "SELECT
                COUNT(*) FILTER (WHERE reserved_at IS NULL AND available_at <= {NOW}) AS ready,
                COUNT(*) FILTER (WHERE reserved_at IS NOT NULL) AS reserved,
                COUNT(*) FILTER (WHERE reserved_at IS NULL AND available_at > {NOW}) AS delayed,
                COALESCE(EXTRACT(EPOCH FROM {NOW} - MIN(created_at) FILTER
                    (WHERE reserved_at IS NULL AND available_at <= {NOW})), 0)::float8 AS oldest,
                (SELECT COUNT(*) FROM queue_failed_jobs WHERE queue = $1) AS failed
             FROM queue_jobs WHERE queue = $1"
        ))
        .bind(queue)
        .fetch_one(&self.pool)
        .await
        .map_err(backend("stats"))?;
        let count = |column: &str| -> Result<u64, DriverError> {
            let value: i64 = row.try_get(column).map_err(backend("stats"))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: count("ready")?,
            reserved: count("reserved")?,
            delayed: count("delayed")?,
            failed: count("failed")?,
            oldest_ready_age_seconds: row
                .try_get::<f64, _>("oldest")
                .map_err(backend("stats"))?
                .max(0.0),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        tables::queues(&self.pool).await
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, DriverError> {
        // On a migrated table, the scheduled band's first row not due yet of each queue (one
        // index entry), else every unreserved row; rows not due in the ready band are few (see
        // `bands_sql`). Due rows are left out: the claims take them, unless their queue is
        // paused or at its limit, and then they must not make an idle worker spin.
        let statement = if self.priorities.present() {
            format!(
                "SELECT EXTRACT(EPOCH FROM LEAST(
                    (SELECT MIN(s.due) FROM UNNEST($1::varchar[]) AS q(name), LATERAL
                        (SELECT available_at AS due FROM queue_jobs
                         WHERE queue = q.name AND {scheduled} AND reserved_at IS NULL
                           AND available_at > {NOW}
                         ORDER BY available_at LIMIT 1) s),
                    (SELECT MIN(available_at) FROM queue_jobs
                     WHERE queue = ANY($1) AND {ready} AND reserved_at IS NULL AND available_at > {NOW})
                 ) - {NOW})::float8",
                scheduled = bands::SCHEDULED,
                ready = bands::READY,
            )
        } else {
            format!(
                "SELECT EXTRACT(EPOCH FROM MIN(available_at) - {NOW})::float8 FROM queue_jobs
                 WHERE queue = ANY($1) AND reserved_at IS NULL AND available_at > {NOW}"
            )
        };
        let secs: Option<f64> = sqlx::query_scalar(&statement)
            .bind(queues)
            .fetch_one(&self.pool)
            .await
            .map_err(backend("next due"))?;
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    fn wake_signal(&self) -> Option<watch::Receiver<u64>> {
        self.start_listener();
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(backend("retry failed job"))?;
        let gone: Option<(String, String)> =
            sqlx::query_as("DELETE FROM queue_failed_jobs WHERE id = $1 RETURNING queue, payload")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("retry failed job"))?;
        let Some((queue, payload)) = gone else {
            return Ok(None);
        };
        // A new job at the priority its envelope carries; workers are notified at commit.
        let job = NewJob::new(queue, payload, Duration::ZERO);
        let new_id = push_on(&mut tx, std::slice::from_ref(&job)).await?;
        tx.commit().await.map_err(backend("retry failed job"))?;
        Ok(new_id.into_iter().next())
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
        let result = sqlx::query(&format!(
            "DELETE FROM queue_failed_jobs
             WHERE failed_at < {NOW} - make_interval(secs => $1) AND ($2::varchar IS NULL OR queue = $2)"
        ))
        .bind(older_than.as_secs_f64())
        .bind(queue)
        .execute(&self.pool)
        .await
        .map_err(backend("prune failed jobs"))?;
        Ok(result.rows_affected())
    }
}
