//! The MySQL / MariaDB driver: RouteMQ's tables, `FOR UPDATE SKIP LOCKED` claims, batched acks,
//! multi-row inserts, and dispatch inside the caller's own transaction.
//!
//! Needs MySQL 8.0+ or MariaDB 10.6+ (`SKIP LOCKED`; priorities need descending indexes: MariaDB
//! 10.8+). Tables `queue_jobs` and `queue_failed_jobs`
//! with RouteMQ's columns; routemq creates the timestamps as `DATETIME(6)` (microseconds; RouteMQ's
//! `DATETIME` rounds to whole seconds, which tables it created keep) and payloads as `MEDIUMTEXT`
//! (RouteMQ's `TEXT` holds 64 KiB). Timestamps come from the database clock (`UTC_TIMESTAMP(6)`).
//! `queue-migrate` creates the tables; workers do so on their own only with
//! `DB_AUTO_CREATE_TABLES=true`. MySQL has no LISTEN/NOTIFY: workers in the dispatching process
//! wake at once, others poll every `--sleep`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, MySql, MySqlConnection, QueryBuilder, Row};
use tokio::sync::watch;

use super::bands_sql as bands;
use super::batches_sql;
use super::mysql_claims::{self, Order};
use super::rewrite_sql;
use super::slots::Slot;
use super::slots_sql;
use super::sql;
use super::tables_sql::mysql as tables;
use super::wake::WakeSignal;
use super::workers_sql;
use super::{
    BatchPrune, BatchRow, BatchWrite, DriverError, Editor, FailedJob, Failure, Lease, NewJob,
    QueueDriver, QueueStats, Reaped, Removal, ReservedJob, Rewritten, WorkerRow,
};

pub(super) const NOW: &str = "UTC_TIMESTAMP(6)";

/// How a transaction that locks jobs by id begins (a claim, a start, a move to the failed store):
/// at READ COMMITTED, under which InnoDB lets go of a row it locked but that does not match (a
/// job another worker took meanwhile) as soon as it has looked at it. At the default REPEATABLE
/// READ the lock lasts until the transaction ends, and a worker cut off from the server in the
/// middle of one (its connection still open on the server's side) kept it, blocking the
/// heartbeats and the acknowledgement of the job's holder until its lease ran out and the job
/// ran twice.
const BEGIN: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";

/// RouteMQ's tables and columns, without RouteMQ's index on `queue_jobs (queue)`: its
/// `(queue, reserved_at)` index starts with the same column and serves the same lookups (the
/// reaper's, by lease age; RouteMQ's own pop, by id), and every index costs each insert, claim
/// and delete. Tables RouteMQ created keep theirs.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_jobs (
        id BIGINT NOT NULL AUTO_INCREMENT,
        queue VARCHAR(255) NOT NULL,
        payload MEDIUMTEXT NOT NULL,
        attempts INTEGER NOT NULL,
        reserved_at DATETIME(6),
        available_at DATETIME(6) NOT NULL,
        created_at DATETIME(6) NOT NULL,
        unstarted INTEGER NOT NULL DEFAULT 0,
        priority SMALLINT NOT NULL DEFAULT 0,
        PRIMARY KEY (id),
        INDEX queue_jobs_queue_reserved_at_index (queue, reserved_at)
    )",
    "CREATE TABLE IF NOT EXISTS queue_failed_jobs (
        id BIGINT NOT NULL AUTO_INCREMENT,
        connection VARCHAR(255) NOT NULL,
        queue VARCHAR(255) NOT NULL,
        payload MEDIUMTEXT NOT NULL,
        exception MEDIUMTEXT NOT NULL,
        failed_at DATETIME(6) NOT NULL,
        PRIMARY KEY (id),
        INDEX ix_queue_failed_jobs_queue (queue)
    )",
    "CREATE TABLE IF NOT EXISTS queue_slots (
        name VARBINARY(191) NOT NULL,
        holder VARBINARY(191) NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (name, holder),
        INDEX queue_slots_expires_at (expires_at)
    )",
];

/// Most rows in one multi-row `INSERT` (3 bound values a row, 65,535 at most).
const INSERT_CHUNK: usize = 10_000;

/// Jobs in MySQL or MariaDB.
#[derive(Debug)]
pub struct MySqlDriver {
    pool: MySqlPool,
    target: String,
    returning: bool,
    wake: WakeSignal,
    prefetching: sql::PrefetchSupport,
    priorities: sql::PrioritySupport,
    due: sql::DueSupport,
}

fn backend(operation: &'static str) -> impl Fn(sqlx::Error) -> DriverError {
    move |error| DriverError::backend(operation, error)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(crate::limits::clamp(duration).as_micros()).unwrap_or(i64::MAX)
}

/// Widens 32-bit ids (`INTEGER AUTO_INCREMENT`, as RouteMQ's own tables have them) to 64 bits,
/// so that ids never run out; a no-op once they are `BIGINT`. Rebuilds the table: it runs only in a
/// migration, once.
async fn widen_ids(conn: &mut sqlx::MySqlConnection) -> Result<(), DriverError> {
    for table in ["queue_jobs", "queue_failed_jobs"] {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'id'",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend("widen ids"))?;
        if kind.is_some_and(|kind| kind.eq_ignore_ascii_case("int")) {
            tracing::warn!(
                table,
                "widening the id column to BIGINT (rebuilds the table)"
            );
            sqlx::query(&format!(
                "ALTER TABLE {table} MODIFY id BIGINT NOT NULL AUTO_INCREMENT"
            ))
            .execute(&mut *conn)
            .await
            .map_err(backend("widen ids"))?;
        }
    }
    Ok(())
}

/// Adds the `unstarted` and `priority` columns to a table created by RouteMQ or an earlier
/// routemq, and the claim's indexes (ready jobs of a queue by priority, then id; scheduled jobs
/// by due time).
async fn add_columns(conn: &mut sqlx::MySqlConnection) -> Result<(), DriverError> {
    for (column, kind) in [(sql::UNSTARTED, "INTEGER"), (sql::PRIORITY, "SMALLINT")] {
        let present: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'queue_jobs' AND COLUMN_NAME = ?",
        )
        .bind(column)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend("create tables"))?;
        if present.is_none() {
            let added = sqlx::query(&format!(
                "ALTER TABLE queue_jobs ADD COLUMN {column} {kind} NOT NULL DEFAULT 0"
            ))
            .execute(&mut *conn)
            .await;
            done_unless_other(added)?;
        }
    }
    let indexed: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()
         AND TABLE_NAME = 'queue_jobs' AND INDEX_NAME = 'routemq_queue_jobs_priority' LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend("create tables"))?;
    if indexed.is_none() {
        // The due time in the index lets a claim skip jobs not due yet without reading their rows.
        let added = sqlx::query(
            "ALTER TABLE queue_jobs ADD INDEX routemq_queue_jobs_priority
             (queue, reserved_at, priority DESC, id, available_at)",
        )
        .execute(&mut *conn)
        .await;
        done_unless_other(added)?;
    }
    scheduled_index(conn).await
}

/// Whether `queue_jobs` has the due time of scheduled rows (see `bands_sql`); `None` when there
/// is no such table yet.
async fn due_column(conn: &mut MySqlConnection) -> Result<Option<bool>, sqlx::Error> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'queue_jobs' AND COLUMN_NAME IN ('id', ?)",
    )
    .bind(bands::DUE)
    .fetch_all(conn)
    .await?;
    Ok((!columns.is_empty()).then(|| columns.iter().any(|c| c == bands::DUE)))
}

/// [`due_column`] at connect: a table that lacks it (`queue-migrate` has not run since this
/// version) gets a warning.
async fn has_due_column(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    let found = due_column(conn).await?;
    if found == Some(false) {
        tracing::warn!(
            "the queue_jobs table has no `{}` column: delayed jobs are kept among ready ones, and \
             claims read past them, until `queue-migrate` adds it and the worker restarts",
            bands::DUE
        );
    }
    Ok(found == Some(true))
}

/// The due time of scheduled rows and its index (see `bands_sql`).
async fn scheduled_index(conn: &mut sqlx::MySqlConnection) -> Result<(), DriverError> {
    let present = due_column(&mut *conn)
        .await
        .map_err(backend("create tables"))?
        == Some(true);
    let statement = if present {
        format!(
            "ALTER TABLE queue_jobs ADD INDEX {} (queue, {})",
            bands::INDEX,
            bands::DUE
        )
    } else {
        format!(
            "ALTER TABLE queue_jobs
             ADD COLUMN {due} DATETIME(6) AS (IF({scheduled}, available_at, NULL)) VIRTUAL,
             ADD INDEX {index} (queue, {due})",
            due = bands::DUE,
            scheduled = bands::SCHEDULED,
            index = bands::INDEX,
        )
    };
    let indexed: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()
         AND TABLE_NAME = 'queue_jobs' AND INDEX_NAME = ? LIMIT 1",
    )
    .bind(bands::INDEX)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend("create tables"))?;
    if !present || indexed.is_none() {
        done_unless_other(sqlx::query(&statement).execute(&mut *conn).await)?;
    }
    Ok(())
}

/// A schema change's result: done, or done already by a migration that ran meanwhile (a
/// duplicate column, 1060, or index, 1061, when the other held the lock past its 30 s).
fn done_unless_other(
    result: Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>,
) -> Result<(), DriverError> {
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42S21" | "42000"))
                && (db.message().contains("Duplicate column")
                    || db.message().contains("Duplicate key name")) =>
        {
            Ok(())
        }
        Err(error) => Err(DriverError::backend("create tables", error)),
    }
}

/// Whether the server is MariaDB (which has `INSERT … RETURNING`).
async fn is_mariadb(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    Ok(server_version(conn).await?.contains("MariaDB"))
}

async fn server_version(conn: &mut MySqlConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT VERSION()").fetch_one(conn).await
}

/// Whether a server of `version` keeps descending indexes, which a claim by priority needs:
/// MySQL 8 does, MariaDB from 10.8 (before, `DESC` in an index is ignored).
fn descending_indexes(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return true;
    }
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (10, 8)
}

/// Inserts jobs on `conn` (a pooled connection or the caller's transaction); returns their ids.
///
/// On MariaDB each chunk of up to 10,000 jobs is one `INSERT … RETURNING id`; on MySQL, whose
/// auto-increment ids in a multi-row insert are not guaranteed consecutive, each job is its own
/// `INSERT` inside the caller's transaction (or one of ours).
pub async fn push_on(
    conn: &mut MySqlConnection,
    jobs: &[NewJob],
) -> Result<Vec<String>, DriverError> {
    let returning = is_mariadb(&mut *conn).await.map_err(backend("push"))?;
    // The priority column is named only when a job has one: RouteMQ's tables take the rest.
    // Delayed jobs stay in the ready band: whether the table keeps the bands apart is unknown here.
    push_with(conn, jobs, returning, sql::any_priority(jobs), false)
        .await
        .map_err(sql::push_error)
}

/// Inserts `jobs`; with `named`, names the priority column, and with `split` as well stores
/// delayed jobs in the scheduled band (see `bands_sql`).
async fn push_with(
    conn: &mut MySqlConnection,
    jobs: &[NewJob],
    returning: bool,
    named: bool,
    split: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let mut ids = Vec::with_capacity(jobs.len());
    let column = if named { ", priority" } else { "" };
    if returning {
        for chunk in jobs.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<MySql>::new(format!(
                "INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at{column}) "
            ));
            insert.push_values(chunk, |mut row, job| {
                row.push_bind(&job.queue)
                    .push_bind(&job.payload)
                    .push("0, NULL")
                    .push_unseparated(format!(", DATE_ADD({NOW}, INTERVAL "))
                    .push_bind_unseparated(micros(job.delay))
                    .push_unseparated(" MICROSECOND)")
                    .push(NOW);
                if named {
                    row.push_bind(bands::stored(job, split));
                }
            });
            insert.push(" RETURNING id");
            let rows = insert.build().fetch_all(&mut *conn).await?;
            let mut chunk_ids = rows
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<Vec<_>, _>>()?;
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids.into_iter().map(|id| id.to_string()));
        }
        return Ok(ids);
    }
    let value = if named { ", ?" } else { "" };
    for job in jobs {
        let statement = format!(
            "INSERT INTO queue_jobs (queue, payload, attempts, reserved_at, available_at, created_at{column})
             VALUES (?, ?, 0, NULL, DATE_ADD({NOW}, INTERVAL ? MICROSECOND), {NOW}{value})"
        );
        let mut insert = sqlx::query(&statement)
            .bind(&job.queue)
            .bind(&job.payload)
            .bind(micros(job.delay));
        if named {
            insert = insert.bind(bands::stored(job, split));
        }
        let result = insert.execute(&mut *conn).await?;
        ids.push(result.last_insert_id().to_string());
    }
    Ok(ids)
}

impl MySqlDriver {
    /// Connects to `url` (`mysql://user:password@host:3306/db`). Does not create tables.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        let target = crate::config::redact_url(url);
        let connect = |source: sqlx::Error| DriverError::Connect {
            target: target.clone(),
            source: source.into(),
        };
        let options: MySqlConnectOptions = url.parse().map_err(connect)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect)?;
        Self::with_target(pool, target).await
    }

    /// A driver on your application's own pool (use `routemq::sqlx`, the sqlx routemq is built
    /// with), so jobs and the app share connections. Asks the server once whether it is MariaDB.
    /// Does not create tables (see `migrate`).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn example(pool: routemq::sqlx::MySqlPool) -> Result<(), routemq::DriverError> {
    /// use routemq::driver::mysql::MySqlDriver;
    /// routemq::queue().register("mysql", Arc::new(MySqlDriver::from_pool(pool).await?));
    /// # Ok(()) }
    /// ```
    pub async fn from_pool(pool: MySqlPool) -> Result<Self, DriverError> {
        let options = pool.connect_options();
        let target = format!(
            "mysql://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        Self::with_target(pool, target).await
    }

    async fn with_target(pool: MySqlPool, target: String) -> Result<Self, DriverError> {
        let connect = |source: sqlx::Error| DriverError::Connect {
            target: target.clone(),
            source: source.into(),
        };
        let mut conn = pool.acquire().await.map_err(connect)?;
        let version = server_version(&mut conn).await.map_err(connect)?;
        let due = sql::DueSupport::default();
        due.set(has_due_column(&mut conn).await.map_err(connect)?);
        drop(conn);
        let priorities = sql::PrioritySupport::default();
        if !descending_indexes(&version) {
            priorities.off(&format!(
                "{version} keeps no descending indexes (MariaDB 10.8+ does): jobs are served in \
                 FIFO order, whatever their priority"
            ));
        }
        Ok(Self {
            pool,
            target,
            returning: version.contains("MariaDB"),
            wake: WakeSignal::new(),
            prefetching: sql::PrefetchSupport::default(),
            priorities,
            due,
        })
    }

    /// Connects with the environment's settings (`DATABASE_URL` or RouteMQ's `DB_*` variables),
    /// creating the tables if `DB_AUTO_CREATE_TABLES=true`.
    pub async fn from_env() -> Result<Self, DriverError> {
        let driver =
            Self::connect(&sql::server_url_from_env(crate::config::SqlKind::Mysql)?).await?;
        if sql::auto_create_tables()? {
            driver.migrate().await?;
        }
        Ok(driver)
    }

    /// The server, password hidden.
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
            let mut conn = self.pool.acquire().await.map_err(backend("reserve"))?;
            // A reservation counts the attempt; a prefetch counts itself as not started yet.
            let (unstarted, counting) = if count {
                ("0", "attempts = attempts + 1")
            } else {
                (
                    "CAST(unstarted AS SIGNED)",
                    "unstarted = unstarted + 1, attempts = -attempts - 1",
                )
            };
            let limit = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
            // Not migrated yet: the bands read as one, or by id alone; each missing column is
            // found once.
            let mut retries = 2;
            let ids = loop {
                match mysql_claims::candidate_ids(&mut conn, queue, limit, self.order()).await {
                    Err(error)
                        if retries > 0
                            && (self.due.off_if_unmigrated(&error)
                                || self.priorities.off_if_unmigrated(&error)) =>
                    {
                        retries -= 1;
                    }
                    ids => break ids,
                }
            };
            let ids = ids.map_err(backend("reserve"))?;
            if ids.is_empty() {
                continue;
            }
            let mut tx = Connection::begin_with(&mut *conn, BEGIN)
                .await
                .map_err(backend("reserve"))?;
            let rows =
                mysql_claims::lock(&mut tx, queue, limit, unstarted, self.order(), &ids).await;
            let rows = match rows {
                // Not migrated yet: `prefetch` reserves instead (the transaction rolls back).
                Err(error) if !count && self.prefetching.off_if_unmigrated(&error) => {
                    return Ok(out);
                }
                rows => rows.map_err(backend("reserve"))?,
            };
            if rows.is_empty() {
                tx.rollback().await.map_err(backend("reserve"))?;
                continue;
            }
            // A scheduled row gets its ready form back, whichever read found it.
            let claimed = if self.priorities.present() {
                format!(", {}", bands::CLAIMED)
            } else {
                String::new()
            };
            let mut update = QueryBuilder::<MySql>::new(format!(
                "UPDATE queue_jobs SET reserved_at = {NOW}{claimed}, {counting} WHERE id IN ("
            ));
            let mut ids = update.separated(", ");
            for (id, ..) in &rows {
                ids.push_bind(*id);
            }
            update.push(")");
            update
                .build()
                .execute(&mut *tx)
                .await
                .map_err(backend("reserve"))?;
            tx.commit().await.map_err(backend("reserve"))?;
            out.extend(rows.into_iter().map(|(id, payload, attempts, unstarted)| {
                let lease = Lease {
                    id: id.to_string(),
                    queue: queue.clone(),
                    attempts: u32::try_from(attempts + i32::from(count)).unwrap_or(1),
                    token: String::new(),
                };
                sql::reserved(lease, payload, (!count).then_some(unstarted + 1))
            }));
        }
        Ok(out)
    }

    /// Whether claims read the ready and scheduled bands apart (see `bands_sql`).
    fn banded(&self) -> bool {
        self.priorities.present() && self.due.present()
    }

    /// The claim's order, as far as the table has its columns (see `mysql_claims`): with both,
    /// the ready band by priority, then id, and the scheduled band's due rows by due time,
    /// merged by priority, then id (see `bands_sql`); else one read of both by priority, then
    /// id, or by id alone where the table has no priority column.
    fn order(&self) -> Order {
        if self.banded() {
            Order::Banded
        } else if self.priorities.present() {
            Order::Priority
        } else {
            Order::Id
        }
    }

    /// The connection pool, for your own queries and transactions.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Moves a leased job to the failed store; with `expired_before`, only if its lease is that old.
    async fn fail_with(
        &self,
        lease: &Lease,
        failure: &Failure,
        expired_before: Option<Duration>,
    ) -> Result<bool, DriverError> {
        let id = sql::lease_id(lease)?;
        let mut tx = self.pool.begin_with(BEGIN).await.map_err(backend("fail"))?;
        // Read as a range, so that a job another worker holds now is not kept locked (see
        // `mysql_claims::push_id_range`).
        let mut select = QueryBuilder::<MySql>::new(
            "SELECT queue, payload FROM queue_jobs FORCE INDEX (PRIMARY) WHERE ",
        );
        mysql_claims::push_id_range(&mut select, &[id]);
        select
            .push(" AND attempts = ")
            .push_bind(sql::stored_attempts(lease))
            .push(" AND reserved_at IS NOT NULL AND (")
            .push_bind(expired_before.map(micros))
            .push(format!(
                " IS NULL OR reserved_at < DATE_SUB({NOW}, INTERVAL "
            ))
            .push_bind(expired_before.map(micros))
            .push(" MICROSECOND)) FOR UPDATE");
        let row: Option<(String, String)> = select
            .build_query_as()
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend("fail"))?;
        let Some((queue, payload)) = row else {
            return Ok(false);
        };
        sqlx::query(&format!(
            "INSERT INTO queue_failed_jobs (connection, queue, payload, exception, failed_at) VALUES (?, ?, ?, ?, {NOW})"
        ))
        .bind(&failure.connection)
        .bind(&queue)
        .bind(&payload)
        .bind(&failure.exception)
        .execute(&mut *tx)
        .await
        .map_err(backend("fail"))?;
        sqlx::query("DELETE FROM queue_jobs WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend("fail"))?;
        tx.commit().await.map_err(backend("fail"))?;
        Ok(true)
    }
}

/// Deletes the rows of finished jobs whose lease (from [`sql::lease_keys`]) is still held.
async fn delete_leases(
    conn: &mut sqlx::MySqlConnection,
    keys: &[(i64, i32)],
) -> Result<(), DriverError> {
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut delete = QueryBuilder::<MySql>::new(
            "DELETE FROM queue_jobs WHERE reserved_at IS NOT NULL AND (",
        );
        sql::push_lease_matches(&mut delete, chunk);
        delete.push(")");
        delete
            .build()
            .execute(&mut *conn)
            .await
            .map_err(backend("ack"))?;
    }
    Ok(())
}

#[async_trait]
impl sql::Reaping for MySqlDriver {
    async fn fail_expired(
        &self,
        lease: &Lease,
        failure: &Failure,
        visibility_timeout: Duration,
    ) -> Result<bool, DriverError> {
        self.fail_with(lease, failure, Some(visibility_timeout))
            .await
    }

    async fn requeue_expired(
        &self,
        row: &sql::Expired,
        visibility_timeout: Duration,
    ) -> Result<u64, DriverError> {
        let result = sqlx::query(&format!(
            "UPDATE queue_jobs SET reserved_at = NULL, available_at = {NOW}, attempts = ?
             WHERE id = ? AND attempts = ? AND reserved_at < DATE_SUB({NOW}, INTERVAL ? MICROSECOND)"
        ))
        .bind(i32::try_from(row.job.lease.attempts).unwrap_or(i32::MAX))
        .bind(sql::lease_id(&row.job.lease)?)
        .bind(i32::try_from(row.stored).unwrap_or(i32::MAX))
        .bind(micros(visibility_timeout))
        .execute(&self.pool)
        .await
        .map_err(backend("reap"))?;
        Ok(result.rows_affected())
    }
}

#[async_trait]
impl QueueDriver for MySqlDriver {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn acquire_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Slot, DriverError> {
        slots_sql::mysql::acquire(&self.pool, name, holder, limit, ttl).await
    }

    async fn release_slot(&self, name: &str, holder: Option<&str>) -> Result<(), DriverError> {
        slots_sql::mysql::release(&self.pool, name, holder).await
    }

    async fn renew_slot(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DriverError> {
        slots_sql::mysql::renew(&self.pool, name, holder, ttl).await
    }

    async fn slot_holders(&self, name: &str) -> Result<Vec<(String, Duration)>, DriverError> {
        slots_sql::mysql::holders(&self.pool, name).await
    }

    async fn held_slots(&self, names: &[String]) -> Result<Vec<bool>, DriverError> {
        slots_sql::mysql::held(&self.pool, names).await
    }

    async fn remove(&self, id: &str) -> Result<Removal, DriverError> {
        let Ok(id) = sql::row_id(id) else {
            return Ok(Removal::NotFound);
        };
        // MySQL has no DELETE ... RETURNING: read the row, then delete it while still unleased.
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT queue, payload FROM queue_jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend("remove job"))?;
        let Some((queue, payload)) = row else {
            return Ok(Removal::NotFound);
        };
        let deleted = sqlx::query("DELETE FROM queue_jobs WHERE id = ? AND reserved_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend("remove job"))?;
        if deleted.rows_affected() > 0 {
            return Ok(Removal::Removed { queue, payload });
        }
        // Leased meanwhile, or finished and gone.
        let still: Option<String> = sqlx::query_scalar("SELECT queue FROM queue_jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend("remove job"))?;
        Ok(still.map_or(Removal::NotFound, |queue| Removal::Leased { queue }))
    }

    async fn sweep_slots(&self) -> Result<u64, DriverError> {
        slots_sql::mysql::sweep(&self.pool).await
    }

    async fn rewrite_payloads(&self, edit: Editor<'_>) -> Result<Rewritten, DriverError> {
        rewrite_sql::mysql::rewrite(&self.pool, edit).await
    }

    async fn batch_create(&self, batch: &BatchRow) -> Result<(), DriverError> {
        batches_sql::mysql::create(&self.pool, batch).await
    }

    async fn batch_read(
        &self,
        id: &str,
        job: Option<&str>,
    ) -> Result<Option<(BatchRow, Option<String>)>, DriverError> {
        batches_sql::mysql::read(&self.pool, id, job).await
    }

    async fn batch_write(&self, write: &BatchWrite<'_>) -> Result<bool, DriverError> {
        batches_sql::mysql::write(&self.pool, write).await
    }

    async fn batch_list(&self, limit: usize) -> Result<Vec<BatchRow>, DriverError> {
        batches_sql::mysql::list(&self.pool, limit).await
    }

    async fn batch_prune(&self, prune: BatchPrune) -> Result<u64, DriverError> {
        batches_sql::mysql::prune(&self.pool, prune).await
    }

    async fn worker_beat(&self, row: &WorkerRow) -> Result<bool, DriverError> {
        workers_sql::mysql::beat(&self.pool, row).await
    }

    async fn worker_rows(&self, since: i64) -> Result<Option<Vec<WorkerRow>>, DriverError> {
        workers_sql::mysql::rows(&self.pool, since).await
    }

    async fn worker_prune(&self, before: i64) -> Result<u64, DriverError> {
        workers_sql::mysql::prune(&self.pool, before).await
    }

    async fn failed_recent(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, DriverError> {
        tables::failed_recent(&self.pool, queue, limit).await
    }

    async fn migrate(&self) -> Result<(), DriverError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(backend("create tables"))?;
        // Serialise concurrent migrations from several workers.
        sqlx::query("SELECT GET_LOCK('routemq_migrate', 30)")
            .execute(&mut *conn)
            .await
            .map_err(backend("create tables"))?;
        let mut result = Ok(());
        for statement in SCHEMA
            .iter()
            .chain(batches_sql::MYSQL_SCHEMA)
            .chain(workers_sql::MYSQL_SCHEMA)
        {
            if let Err(error) = sqlx::query(statement).execute(&mut *conn).await {
                result = Err(DriverError::backend("create tables", error));
                break;
            }
        }
        if result.is_ok() {
            result = widen_ids(&mut conn).await;
        }
        if result.is_ok() {
            result = add_columns(&mut conn).await;
        }
        sqlx::query("SELECT RELEASE_LOCK('routemq_migrate')")
            .execute(&mut *conn)
            .await
            .map_err(backend("create tables"))?;
        if result.is_ok() {
            // The table keeps the bands apart from now on (the priority column as well, unless
            // the server keeps no descending indexes).
            self.due.set(true);
        }
        result
    }

    async fn push(&self, jobs: &[NewJob]) -> Result<Vec<String>, DriverError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Delayed jobs go to the scheduled band while the table keeps the bands apart.
        let prioritized = sql::any_priority(jobs);
        let split = self.banded();
        let named = prioritized || (bands::any_delayed(jobs) && split);
        let mut tx = self.pool.begin().await.map_err(backend("push"))?;
        let mut ids = push_with(&mut tx, jobs, self.returning, named, split).await;
        if let Err(error) = &ids
            && named
            && !prioritized
            && self.priorities.off_if_unmigrated(error)
        {
            ids = push_with(&mut tx, jobs, self.returning, false, false).await;
        }
        let ids = ids.map_err(sql::push_error)?;
        tx.commit().await.map_err(backend("push"))?;
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

    async fn ack(&self, leases: &[Lease]) -> Result<(), DriverError> {
        let mut conn = self.pool.acquire().await.map_err(backend("ack"))?;
        delete_leases(&mut conn, &sql::lease_keys(leases)?).await
    }

    async fn ack_and_start(
        &self,
        finished: &[Lease],
        starting: &[Lease],
    ) -> Result<Vec<Option<Lease>>, DriverError> {
        let finished = sql::lease_keys(finished)?;
        let starting_keys = sql::prefetched_keys(starting)?;
        let mut tx = self.pool.begin_with(BEGIN).await.map_err(backend("ack"))?;
        delete_leases(&mut tx, &finished).await?;
        let mut started = std::collections::HashSet::new();
        for chunk in starting_keys.chunks(INSERT_CHUNK) {
            // MySQL's UPDATE cannot say which rows it changed: lock the held ones, then count them
            // (read as ranges, the attempts matched apart, so that a job another worker holds now
            // is not kept locked: see `mysql_claims::push_id_range`).
            let mut select = QueryBuilder::<MySql>::new(
                "SELECT id FROM queue_jobs FORCE INDEX (PRIMARY) WHERE reserved_at IS NOT NULL AND ",
            );
            let ids: Vec<i64> = chunk
                .iter()
                .map(|(id, _)| *id)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            mysql_claims::push_id_range(&mut select, &ids);
            select.push(" AND attempts = CASE id");
            for (id, attempts) in chunk {
                select
                    .push(" WHEN ")
                    .push_bind(*id)
                    .push(" THEN ")
                    .push_bind(*attempts);
            }
            select.push(" END FOR UPDATE");
            let held: Vec<i64> = select
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(backend("start"))?;
            if !held.is_empty() {
                let mut update = QueryBuilder::<MySql>::new(format!(
                    "UPDATE queue_jobs SET attempts = -attempts, unstarted = 0, reserved_at = {NOW}
                     WHERE id IN ("
                ));
                let mut ids = update.separated(", ");
                for id in &held {
                    ids.push_bind(*id);
                }
                update.push(")");
                update
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("start"))?;
            }
            started.extend(held);
        }
        tx.commit().await.map_err(backend("ack"))?;
        Ok(sql::started_leases(starting, &started))
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
            "attempts = -attempts - 1 - ?, unstarted = GREATEST(unstarted - 1, 0)"
        } else {
            "attempts = GREATEST(attempts - ?, 0)"
        };
        // A job released for later goes to the scheduled band (see `bands_sql`).
        let band = if delay.is_zero() || !self.banded() {
            String::new()
        } else {
            format!(", {}", bands::POSTPONED)
        };
        let result = sqlx::query(&format!(
            "UPDATE queue_jobs SET reserved_at = NULL, available_at = DATE_ADD({NOW}, INTERVAL ? MICROSECOND),
                {counting}{band}
             WHERE id = ? AND attempts = ? AND reserved_at IS NOT NULL"
        ))
        .bind(micros(delay))
        .bind(i32::from(refund_attempt && !prefetched))
        .bind(id)
        .bind(sql::stored_attempts(lease))
        .execute(&self.pool)
        .await
        .map_err(backend("release"))?;
        if delay.is_zero() {
            self.wake.notify();
        }
        Ok(result.rows_affected() > 0)
    }

    async fn fail(&self, lease: &Lease, failure: &Failure) -> Result<bool, DriverError> {
        self.fail_with(lease, failure, None).await
    }

    async fn extend(&self, leases: &[Lease]) -> Result<usize, DriverError> {
        let mut held = 0;
        let keys = sql::lease_keys(leases)?;
        for chunk in keys.chunks(INSERT_CHUNK) {
            let mut update = QueryBuilder::<MySql>::new(format!(
                "UPDATE queue_jobs SET reserved_at = {NOW} WHERE reserved_at IS NOT NULL AND ("
            ));
            sql::push_lease_matches(&mut update, chunk);
            update.push(")");
            let result = update
                .build()
                .execute(&self.pool)
                .await
                .map_err(backend("extend"))?;
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
        let mut reaped = Reaped::default();
        for queue in queues {
            let rows = sqlx::query(&format!(
                "SELECT id, queue, payload, attempts FROM queue_jobs
                 WHERE queue = ? AND reserved_at IS NOT NULL AND reserved_at < DATE_SUB({NOW}, INTERVAL ? MICROSECOND)
                 ORDER BY id LIMIT 500"
            ))
            .bind(queue)
            .bind(micros(visibility_timeout))
            .fetch_all(&self.pool)
            .await
            .map_err(backend("reap"))?;
            let expired = rows
                .iter()
                .map(tables::expired)
                .collect::<Result<Vec<_>, _>>()?;
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
        let row = sqlx::query(&format!(
            "SELECT
                CAST(COALESCE(SUM(reserved_at IS NULL AND available_at <= {NOW}), 0) AS SIGNED) AS n_ready,
                CAST(COALESCE(SUM(reserved_at IS NOT NULL), 0) AS SIGNED) AS n_reserved,
                CAST(COALESCE(SUM(reserved_at IS NULL AND available_at > {NOW}), 0) AS SIGNED) AS n_delayed,
                TIMESTAMPDIFF(MICROSECOND,
                    MIN(CASE WHEN reserved_at IS NULL AND available_at <= {NOW} THEN created_at END), {NOW}) AS oldest,
                (SELECT COUNT(*) FROM queue_failed_jobs WHERE queue = ?) AS n_failed
             FROM queue_jobs WHERE queue = ?"
        ))
        .bind(queue)
        .bind(queue)
        .fetch_one(&self.pool)
        .await
        .map_err(backend("stats"))?;
        let count = |column: &str| -> Result<u64, DriverError> {
            let value: i64 = row.try_get(column).map_err(backend("stats"))?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest").map_err(backend("stats"))?;
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: count("n_ready")?,
            reserved: count("n_reserved")?,
            delayed: count("n_delayed")?,
            failed: count("n_failed")?,
            oldest_ready_age_seconds: oldest.map_or(0.0, |us| (us as f64 / 1e6).max(0.0)),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        tables::queues(&self.pool).await
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, DriverError> {
        if queues.is_empty() {
            return Ok(None);
        }
        let banded = self.banded();
        let mut query = QueryBuilder::<MySql>::new(format!(
            "SELECT TIMESTAMPDIFF(MICROSECOND, {NOW}, MIN(due)) FROM ("
        ));
        // On a migrated table, the scheduled band's first row not due yet of each queue (one
        // index entry), else every unreserved row; rows not due in the ready band are few (see
        // `bands_sql`). Due rows are left out: the claims take them, unless their queue is
        // paused or at its limit, and then they must not make an idle worker spin.
        if banded {
            for queue in queues {
                query
                    .push(format_args!(
                        "(SELECT {due} AS due FROM queue_jobs WHERE queue = ",
                        due = bands::DUE
                    ))
                    .push_bind(queue)
                    .push(format_args!(
                        " AND {due} > {NOW} AND reserved_at IS NULL ORDER BY {due} LIMIT 1) UNION ALL ",
                        due = bands::DUE
                    ));
            }
        }
        query.push(format_args!(
            "(SELECT MIN(available_at) AS due FROM queue_jobs
              WHERE reserved_at IS NULL AND available_at > {NOW}{ready} AND queue IN (",
            ready = if banded {
                format!(" AND {}", bands::READY)
            } else {
                String::new()
            },
        ));
        let mut names = query.separated(", ");
        for queue in queues {
            names.push_bind(queue);
        }
        query.push("))) d");
        let micros: Option<i64> = query
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(backend("next due"))?;
        Ok(micros.map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0))))
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(backend("retry failed job"))?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT queue, payload FROM queue_failed_jobs WHERE id = ? FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("retry failed job"))?;
        let Some((queue, payload)) = row else {
            return Ok(None);
        };
        let job = NewJob::new(queue, payload, Duration::ZERO);
        let jobs = std::slice::from_ref(&job);
        let new_id = push_with(
            &mut tx,
            jobs,
            self.returning,
            sql::any_priority(jobs),
            false,
        )
        .await
        .map_err(sql::push_error)?;
        sqlx::query("DELETE FROM queue_failed_jobs WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend("retry failed job"))?;
        tx.commit().await.map_err(backend("retry failed job"))?;
        self.wake.notify();
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
             WHERE failed_at < DATE_SUB({NOW}, INTERVAL ? MICROSECOND) AND (? IS NULL OR queue = ?)"
        ))
        .bind(micros(older_than))
        .bind(queue)
        .bind(queue)
        .execute(&self.pool)
        .await
        .map_err(backend("prune failed jobs"))?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::descending_indexes;

    #[test]
    fn mariadb_keeps_descending_indexes_from_10_8() {
        assert!(descending_indexes("8.0.36"));
        assert!(descending_indexes("10.11.19-MariaDB-0+deb12u1"));
        assert!(descending_indexes("11.4.2-MariaDB"));
        assert!(!descending_indexes("10.6.18-MariaDB"));
        assert!(!descending_indexes("10.7.1-MariaDB-log"));
    }
}
