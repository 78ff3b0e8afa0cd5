//! Pieces shared by the SQL drivers: RouteMQ's naive-UTC timestamps, lease matching, ids.

use std::time::SystemTime;

#[cfg(any(feature = "sqlite", feature = "mysql"))]
use sqlx::QueryBuilder;

use super::{DriverError, Lease, NewJob, ReservedJob};
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

/// Each lease's row id and stored attempts ([`stored_attempts`]): what identifies one exact
/// reservation. A lease whose id does not parse is an error: skipping it silently would leave its
/// job to run again.
pub(crate) fn lease_keys(leases: &[Lease]) -> Result<Vec<(i64, i32)>, DriverError> {
    leases.iter().map(lease_key).collect()
}

/// One lease's [`lease_keys`] entry.
fn lease_key(lease: &Lease) -> Result<(i64, i32), DriverError> {
    Ok((row_id(&lease.id)?, stored_attempts(lease)))
}

/// The `attempts` value a leased row holds: the count for a started (or counted) reservation; for
/// a prefetched one, `-(count + 1)`. Negative, so that the lease of a worker whose reservation
/// expired can never match the prefetched reservation of the same job by another worker (a
/// prefetch does not add to the count), and the reaper can tell a reservation that never started.
pub(crate) fn stored_attempts(lease: &Lease) -> i32 {
    let count = i32::try_from(lease.attempts).unwrap_or(i32::MAX);
    if super::is_prefetched(lease) {
        -count - 1
    } else {
        count
    }
}

/// The attempt count a stored `attempts` value stands for (see [`stored_attempts`]).
pub(crate) fn counted_attempts(stored: i64) -> u32 {
    let count = if stored < 0 { -stored - 1 } else { stored };
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// `(id = ? AND attempts = ?) OR ...` for each lease key (from [`lease_keys`]).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn push_lease_matches<'a, DB>(query: &mut QueryBuilder<'a, DB>, keys: &[(i64, i32)])
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut first = true;
    for &(id, attempts) in keys {
        if !first {
            query.push(" OR ");
        }
        first = false;
        query
            .push("(id = ")
            .push_bind(id)
            .push(" AND attempts = ")
            .push_bind(i64::from(attempts))
            .push(")");
    }
    if first {
        query.push("1 = 0");
    }
}

/// A lease's row id; an id this driver cannot have written is an error, never a silent skip.
pub(crate) fn lease_id(lease: &Lease) -> Result<i64, DriverError> {
    row_id(&lease.id)
}

/// A row id (64 bits: a job or a failed job); anything else is [`DriverError::InvalidId`].
pub(crate) fn row_id(id: &str) -> Result<i64, DriverError> {
    id.trim()
        .parse()
        .map_err(|_| DriverError::InvalidId(id.to_owned()))
}

/// The column, added to RouteMQ's `queue_jobs` by `queue-migrate`, that counts a job's prefetches
/// not followed by a start.
pub(crate) const UNSTARTED: &str = "unstarted";

/// A leased row: a counted reservation, or (with `unstarted`, the row's count after this prefetch)
/// a prefetched one.
pub(crate) fn reserved(lease: Lease, payload: String, unstarted: Option<i64>) -> ReservedJob {
    match unstarted {
        None => ReservedJob::counted(lease, payload),
        Some(unstarted) => {
            let stalls = u32::try_from(unstarted.saturating_sub(1)).unwrap_or(0);
            ReservedJob::prefetched(lease.marked(), payload, stalls)
        }
    }
}

/// Whether `error` says the jobs table has no `column`: `queue-migrate` has not run since
/// routemq started using it. An unknown column is SQLSTATE 42703 on PostgreSQL and 42S22 on
/// MySQL/MariaDB; the message names it. (The code matters: a syntax error quotes the statement,
/// which names every column.)
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn lacks(error: &sqlx::Error, column: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("42703" | "42S22"))
            && db.message().contains(column))
}

/// A column of routemq's own that a `queue_jobs` table `queue-migrate` has not upgraded lacks:
/// assumed present until a statement fails for want of it, then off for good, with one warning.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
#[derive(Debug)]
struct OptionalColumn {
    name: &'static str,
    present: std::sync::atomic::AtomicBool,
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl OptionalColumn {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            present: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn present(&self) -> bool {
        self.present.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets what is known, without a warning.
    #[cfg(feature = "mysql")]
    fn set(&self, present: bool) {
        self.present
            .store(present, std::sync::atomic::Ordering::Relaxed);
    }

    /// Turns the column off for good, saying `why` the first time.
    fn off(&self, why: &str) {
        if self
            .present
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("{why}");
        }
    }

    /// Turns the column off (saying `why`) if `error` says it is missing; `false` otherwise.
    fn off_if_missing(&self, error: &sqlx::Error, why: impl FnOnce() -> String) -> bool {
        if !lacks(error, self.name) {
            return false;
        }
        if self.present() {
            self.off(&why());
        }
        true
    }
}

/// Whether this driver may prefetch: until the jobs table turns out to lack the [`UNSTARTED`]
/// column, after which its prefetches reserve (the attempt counting at once), with one warning.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct PrefetchSupport(OptionalColumn);

impl Default for PrefetchSupport {
    fn default() -> Self {
        Self(OptionalColumn::new(UNSTARTED))
    }
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl PrefetchSupport {
    fn enabled(&self) -> bool {
        self.0.present()
    }

    /// Prefetches with `lease_ready(false)`; reserves with `lease_ready(true)` once the table turns
    /// out to lack the column (`lease_ready` then returns nothing, after [`Self::off_if_unmigrated`]).
    pub(crate) async fn prefetch<F, Fut>(
        &self,
        lease_ready: F,
    ) -> Result<Vec<ReservedJob>, DriverError>
    where
        F: Fn(bool) -> Fut,
        Fut: Future<Output = Result<Vec<ReservedJob>, DriverError>>,
    {
        if self.enabled() {
            let jobs = lease_ready(false).await?;
            if !jobs.is_empty() || self.enabled() {
                return Ok(jobs);
            }
        }
        lease_ready(true).await
    }

    /// Turns prefetching off after `error`, if it says the column is missing; `false` otherwise.
    pub(crate) fn off_if_unmigrated(&self, error: &sqlx::Error) -> bool {
        self.0.off_if_missing(error, || {
            format!(
                "the queue_jobs table has no `{UNSTARTED}` column: prefetched jobs use up an attempt \
                 when reserved until `queue-migrate` adds it and the worker restarts"
            )
        })
    }
}

/// The keys ([`lease_keys`]) of the prefetched leases among `leases`: the ones `start` may start.
pub(crate) fn prefetched_keys(leases: &[Lease]) -> Result<Vec<(i64, i32)>, DriverError> {
    leases
        .iter()
        .filter(|lease| super::is_prefetched(lease))
        .map(lease_key)
        .collect()
}

/// The answer to [`QueueDriver::start`](super::QueueDriver::start): each prefetched lease whose row
/// id is in `started` (the rows whose attempt was just counted) as the started run's lease, the
/// rest `None`.
pub(crate) fn started_leases(
    leases: &[Lease],
    started: &std::collections::HashSet<i64>,
) -> Vec<Option<Lease>> {
    leases
        .iter()
        .map(|lease| {
            let id = row_id(&lease.id).ok()?;
            (super::is_prefetched(lease) && started.contains(&id))
                .then(|| lease.started(lease.attempts.saturating_add(1)))
        })
        .collect()
}

/// Lease ids and attempts as two arrays (Postgres `UNNEST`).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn lease_arrays(leases: &[Lease]) -> Result<(Vec<i64>, Vec<i32>), DriverError> {
    Ok(lease_keys(leases)?.into_iter().unzip())
}

/// `DB_AUTO_CREATE_TABLES=true` (RouteMQ's variable): workers create tables on a server database.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn auto_create_tables() -> Result<bool, DriverError> {
    Ok(crate::config::bool_var(
        crate::config::env_var,
        "DB_AUTO_CREATE_TABLES",
        false,
    )?)
}

/// The server URL of a `postgres` or `mysql` connection, from the environment.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn server_url_from_env(kind: crate::config::SqlKind) -> Result<String, DriverError> {
    Ok(crate::config::server_url(kind, crate::config::env_var)?)
}

/// The column, added to RouteMQ's `queue_jobs` by `queue-migrate`, that holds a job's priority
/// (0 to 255, higher first; RouteMQ's rows keep the default 0).
pub(crate) const PRIORITY: &str = "priority";

/// Whether the jobs table has the [`PRIORITY`] column: assumed until a claim says otherwise,
/// after which claims go by id alone (FIFO), with one warning. A dispatch with a priority then
/// fails with an error that says to run `queue-migrate`.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct PrioritySupport(OptionalColumn);

impl Default for PrioritySupport {
    fn default() -> Self {
        Self(OptionalColumn::new(PRIORITY))
    }
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl PrioritySupport {
    /// Whether the table has the column, as far as this driver knows.
    pub(crate) fn present(&self) -> bool {
        self.0.present()
    }

    /// Turns priorities off for good, saying why once.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn off(&self, reason: &str) {
        self.0.off(reason);
    }

    /// Turns priorities off after `error`, if it says the column is missing; `false` otherwise.
    pub(crate) fn off_if_unmigrated(&self, error: &sqlx::Error) -> bool {
        self.0.off_if_missing(error, || {
            format!(
                "the queue_jobs table has no `{PRIORITY}` column: jobs are served in FIFO order, \
                 whatever their priority, until `queue-migrate` adds it and the worker restarts"
            )
        })
    }
}

/// Whether the jobs table has MySQL's generated column of scheduled rows' due times
/// (`bands_sql::DUE`): assumed until a claim says otherwise, after which claims read the ready
/// and scheduled bands as one, with one warning.
#[cfg(feature = "mysql")]
#[derive(Debug)]
pub(crate) struct DueSupport(OptionalColumn);

#[cfg(feature = "mysql")]
impl Default for DueSupport {
    fn default() -> Self {
        Self(OptionalColumn::new(super::bands_sql::DUE))
    }
}

#[cfg(feature = "mysql")]
impl DueSupport {
    /// Whether the table has the column, as far as this driver knows.
    pub(crate) fn present(&self) -> bool {
        self.0.present()
    }

    /// Sets what this driver knows, without a warning: whether the column was found at connect,
    /// or `migrate` added it.
    pub(crate) fn set(&self, present: bool) {
        self.0.set(present);
    }

    /// Turns the column off after `error`, if it says the column is missing; `false` otherwise.
    pub(crate) fn off_if_unmigrated(&self, error: &sqlx::Error) -> bool {
        self.0.off_if_missing(error, || {
            format!(
                "the queue_jobs table has no `{}` column: delayed jobs are kept among ready ones, \
                 and claims read past them, until `queue-migrate` adds it and the worker restarts",
                super::bands_sql::DUE
            )
        })
    }
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
/// Whether any of `jobs` has a priority (only then does an insert name the column, so that tables
/// RouteMQ created keep taking jobs of the default priority).
pub(crate) fn any_priority(jobs: &[NewJob]) -> bool {
    jobs.iter().any(|job| job.priority > 0)
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
/// The error of a push with a priority into a table without the column.
pub(crate) fn push_error(error: sqlx::Error) -> DriverError {
    if lacks(&error, PRIORITY) {
        DriverError::backend(
            "push",
            format!(
                "the queue_jobs table has no `{PRIORITY}` column, so jobs with a priority cannot be \
                 stored: run `queue-migrate` ({error})"
            ),
        )
    } else {
        DriverError::backend("push", error)
    }
}

/// Runs `op` once, its error reported as `operation`'s (the servers' counterpart of SQLite's
/// `retry_busy`).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) async fn run_once<T, F, Fut>(operation: &'static str, op: F) -> Result<T, DriverError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    op().await
        .map_err(|error| DriverError::backend(operation, error))
}

/// A job whose lease expired, as a reaper read it: the job as a counted reservation, the
/// attempts column as stored (negative for a prefetch that never started), and, where the
/// driver compares it, the reservation time read.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) struct Expired {
    pub(crate) job: ReservedJob,
    pub(crate) stored: i64,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) reserved_at: Option<String>,
}

/// The two moves of a reaper, each only if the lease is still held with the attempts read
/// (PostgreSQL and MySQL also check that it is still that old; SQLite that its reservation time
/// is the one read, for a requeue).
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[async_trait::async_trait]
pub(crate) trait Reaping: Sync {
    /// Moves an expired job to the failed store; whether it did.
    async fn fail_expired(
        &self,
        lease: &Lease,
        failure: &super::Failure,
        visibility_timeout: std::time::Duration,
    ) -> Result<bool, DriverError>;

    /// Puts an expired job back to ready, its attempts as in `row.job`; how many rows it moved.
    async fn requeue_expired(
        &self,
        row: &Expired,
        visibility_timeout: std::time::Duration,
    ) -> Result<u64, DriverError>;
}

/// The reaper's pass over expired leases, alike on every SQL driver: a started job with no
/// tries left moves to the failed store, any other goes back to ready. A prefetch that never
/// started goes back with its count restored, whatever its tries.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) async fn reap_expired(
    driver: &impl Reaping,
    expired: Vec<Expired>,
    visibility_timeout: std::time::Duration,
    max_tries_override: Option<u32>,
    connection: &str,
) -> Result<super::Reaped, DriverError> {
    let mut reaped = super::Reaped::default();
    for row in expired {
        let job = &row.job;
        if row.stored >= 0
            && super::out_of_tries(&job.payload, job.lease.attempts, max_tries_override)
        {
            let failure = super::Failure {
                connection: connection.to_owned(),
                exception: super::reservation_expired_message(visibility_timeout),
            };
            if driver
                .fail_expired(&job.lease, &failure, visibility_timeout)
                .await?
            {
                reaped.failed += 1;
                reaped.expired.push(row.job);
            }
            continue;
        }
        reaped.requeued += driver.requeue_expired(&row, visibility_timeout).await?;
    }
    Ok(reaped)
}
