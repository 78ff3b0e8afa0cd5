//! Where the PostgreSQL driver runs its claims: on a few connections of its own, opened with
//! sorting and JIT off, so that a claim is one statement in one round trip.
//!
//! Why the settings: the claim index gives the order, and a sort of a queue's ready rows never
//! pays off, yet the planner picks one whenever its statistics say the queue is (nearly) empty:
//! after a burst into an empty table, or for a queue that is new since the last `ANALYZE`. Each
//! claim then reads and sorts the whole backlog (measured: 200 µs of server CPU per job instead
//! of 35 on a 20,000-job drain). The merge of the two bands still sorts (at most twice the
//! claim's size), and that sort's penalty cost would trip PostgreSQL's JIT threshold
//! (`jit_above_cost`): 100-170 ms of compiling per claim, so JIT is off for the claim too.
//!
//! Why connections of their own: the settings are startup options of these connections, so a
//! claim needs no transaction of its own to scope them (`BEGIN; SET LOCAL …`, the claim,
//! `COMMIT`: three round trips), and the pool the application shares with the driver keeps
//! PostgreSQL's settings. They are opened with the shared pool's connect options (not its
//! `after_connect` hook) and show as `routemq claims` in `pg_stat_activity`.
//!
//! A server or proxy that refuses startup options (PgBouncer does, unless told to ignore them),
//! or drops them, is noticed at the first claim: claims then scope the settings to a transaction
//! of their own on the shared pool, as earlier versions did.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, PgConnection, Postgres};

/// The settings a claim runs with.
const SETTINGS: [(&str, &str); 2] = [("enable_sort", "off"), ("jit", "off")];

/// The same settings, scoped to a transaction.
const BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off; SET LOCAL jit = off";

/// Connections one driver opens for claims, at most (a worker has one claim in flight at a
/// time; several workers on one driver share them).
const CONNECTIONS: u32 = 4;

/// Not known yet whether the claim connections have the settings.
const UNKNOWN: u8 = 0;
/// A claim connection had the settings.
const APPLIED: u8 = 1;
/// The server refused or dropped the settings as startup options: claims use transactions.
const REFUSED: u8 = 2;

/// The claim connections of one driver.
pub(super) struct ClaimPool {
    pool: PgPool,
    /// Whether the settings reach the server as startup options ([`UNKNOWN`], [`APPLIED`] or
    /// [`REFUSED`]).
    settings: AtomicU8,
}

impl ClaimPool {
    /// Claim connections like the ones `options` opens, with the settings; none is opened yet.
    pub(super) fn new(options: &PgConnectOptions, acquire_timeout: Duration) -> Self {
        let options = options
            .clone()
            .options(SETTINGS)
            .application_name("routemq claims");
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_lazy_with(options);
        Self {
            pool,
            settings: AtomicU8::new(UNKNOWN),
        }
    }

    /// Runs a claim `statement` (`$1` the queue, `$2` the claim's size) with the settings: on a
    /// claim connection, else in a transaction of its own on `shared`.
    pub(super) async fn claim(
        &self,
        shared: &PgPool,
        statement: &str,
        queue: &str,
        limit: i64,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        if self.settings.load(Ordering::Relaxed) != REFUSED {
            match self.pool.acquire().await {
                Ok(mut conn) => {
                    if self.settings.load(Ordering::Relaxed) == APPLIED
                        || applied(&mut conn).await?
                    {
                        self.settings.store(APPLIED, Ordering::Relaxed);
                        return run(&mut *conn, statement, queue, limit).await;
                    }
                    self.refuse("the server ignored the startup options of a claim connection");
                }
                // The server answered the connection with an error. If the shared pool's
                // connections (opened without the settings) can claim, it was the settings.
                Err(sqlx::Error::Database(error)) => {
                    let rows = in_transaction(shared, statement, queue, limit).await?;
                    // Once the settings have worked, a refusal is about something else.
                    if self.settings.load(Ordering::Relaxed) == UNKNOWN {
                        self.refuse(&format!(
                            "the server refused a connection with startup options: {error}"
                        ));
                    }
                    return Ok(rows);
                }
                Err(other) => return Err(other),
            }
        }
        in_transaction(shared, statement, queue, limit).await
    }

    /// Claims use transactions from now on; says why, once.
    fn refuse(&self, why: &str) {
        if self.settings.swap(REFUSED, Ordering::Relaxed) != REFUSED {
            tracing::warn!(
                "{why} (a proxy such as PgBouncer?): claims set their planner settings per \
                 transaction instead (two more round trips each)"
            );
        }
    }
}

/// Whether `conn` runs with the claim's settings (a proxy may drop startup options silently).
async fn applied(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let sort: String = sqlx::query_scalar("SELECT current_setting('enable_sort')")
        .fetch_one(conn)
        .await?;
    Ok(sort == "off")
}

/// Runs a claim in a transaction of its own on `shared`, with the settings scoped to it. (As
/// with any sqlx transaction, a claim whose future is dropped between `BEGIN` and its answer
/// returns the connection to the pool inside the transaction; routemq's worker always awaits
/// its claims.)
async fn in_transaction(
    shared: &PgPool,
    statement: &str,
    queue: &str,
    limit: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut tx = shared.begin_with(BEGIN).await?;
    let rows = run(&mut *tx, statement, queue, limit).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Runs a claim statement on `conn` (one round trip).
pub(super) async fn run<'c, E>(
    conn: E,
    statement: &str,
    queue: &str,
    limit: i64,
) -> Result<Vec<PgRow>, sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
{
    sqlx::query(statement)
        .bind(queue)
        .bind(limit)
        .fetch_all(conn)
        .await
}
