//! Where the PostgreSQL driver runs its claims: on a few connections of its own, opened with
//! sorting and JIT off, so that a claim is one statement, one round trip to wait for.
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
//! A server or proxy that refuses startup options (PgBouncer does, or drops them when told to
//! ignore them), and a shared pool whose `after_connect` hook changes what its connections see
//! (the `search_path`, the role), are noticed at the first claim: claims then scope the settings
//! to a transaction of their own on the shared pool, as earlier versions did. A claim that cannot
//! get a claim connection in a second (the server at its connection limit, or all four busy) runs
//! that way too, and claims stay on the shared pool for the next 30 seconds.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, PgConnection, Postgres};
use tokio::time::Instant;

/// The settings a claim runs with.
const SETTINGS: [(&str, &str); 2] = [("enable_sort", "off"), ("jit", "off")];

/// The same settings, scoped to a transaction.
const BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off; SET LOCAL jit = off";

/// Connections one driver opens for claims, at most (a worker has one claim in flight at a
/// time; several workers on one driver share them).
const CONNECTIONS: u32 = 4;

/// How long a claim waits for a claim connection before it runs on the shared pool instead.
const ACQUIRE: Duration = Duration::from_secs(1);

/// How long claims stay on the shared pool after a claim connection could not be had (the
/// server at its connection limit, say).
const PAUSE: Duration = Duration::from_secs(30);

/// SQLSTATEs of a server refusing the startup options themselves: a protocol violation
/// (PgBouncer's "unsupported startup parameter"), an unknown or an invalid setting.
const REFUSALS: [&str; 3] = ["08P01", "42704", "22023"];

/// Not known yet whether the claim connections have the settings.
const UNKNOWN: u8 = 0;
/// A claim connection had the settings.
const APPLIED: u8 = 1;
/// Claims use transactions on the shared pool for good: the server refused or dropped the
/// settings as startup options, or claim connections do not see what the shared pool's see.
const REFUSED: u8 = 2;

/// The claim connections of one driver.
pub(super) struct ClaimPool {
    /// The pool, made at the first claim, and the shared pool's connect options it was made
    /// from (a pool whose options change, such as a rotated password, is followed).
    pool: Mutex<Option<(Arc<PgConnectOptions>, PgPool)>>,
    /// Whether the settings reach the server as startup options ([`UNKNOWN`], [`APPLIED`] or
    /// [`REFUSED`]).
    settings: AtomicU8,
    /// After a claim connection could not be had: claims use the shared pool until then.
    paused_until: Mutex<Option<Instant>>,
}

impl ClaimPool {
    /// Claim connections for a driver on `shared`; none is opened before the first claim.
    pub(super) fn new() -> Self {
        Self {
            pool: Mutex::new(None),
            settings: AtomicU8::new(UNKNOWN),
            paused_until: Mutex::new(None),
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
        if self.settings.load(Ordering::Relaxed) == REFUSED || self.paused() {
            return in_transaction(shared, statement, queue, limit).await;
        }
        match self.pool(shared).acquire().await {
            Ok(mut conn) => {
                if self.settings.load(Ordering::Relaxed) == APPLIED {
                    return run(&mut *conn, statement, queue, limit).await;
                }
                // The check borrows a shared connection; if it cannot, this claim runs there.
                match differs(&mut conn, shared).await {
                    Err(_) => {}
                    Ok(None) => {
                        let _ = self.settings.compare_exchange(
                            UNKNOWN,
                            APPLIED,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        return run(&mut *conn, statement, queue, limit).await;
                    }
                    Ok(Some(why)) => self.refuse(&why),
                }
            }
            Err(sqlx::Error::Database(error))
                if error
                    .code()
                    .is_some_and(|code| REFUSALS.contains(&code.as_ref())) =>
            {
                self.refuse(&format!(
                    "the server refused a connection with startup options ({error})"
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "no claim connection: claims run on the shared pool for a while");
                *self
                    .paused_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + PAUSE);
            }
        }
        in_transaction(shared, statement, queue, limit).await
    }

    /// The claim pool, made (or its connect options brought up to date) from `shared`'s.
    fn pool(&self, shared: &PgPool) -> PgPool {
        let source = shared.connect_options();
        let mut slot = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some((made_from, pool)) if Arc::ptr_eq(made_from, &source) => pool.clone(),
            Some((made_from, pool)) => {
                pool.set_connect_options(with_settings(&source));
                *made_from = source;
                pool.clone()
            }
            None => {
                let pool = PgPoolOptions::new()
                    .max_connections(CONNECTIONS)
                    .min_connections(0)
                    .acquire_timeout(ACQUIRE)
                    .idle_timeout(Some(Duration::from_secs(60)))
                    // A claim waits on one round trip: no ping first (a dead connection fails
                    // the claim, and the worker's next one gets a new connection). sqlx still
                    // pings a connection on its way back to the pool, after the claim returned.
                    .test_before_acquire(false)
                    .connect_lazy_with(with_settings(&source));
                *slot = Some((source, pool.clone()));
                pool
            }
        }
    }

    /// Whether claims are paused off the claim connections for now.
    fn paused(&self) -> bool {
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Claims use transactions from now on; says why, once.
    fn refuse(&self, why: &str) {
        if self.settings.swap(REFUSED, Ordering::Relaxed) != REFUSED {
            tracing::warn!(
                "{why}: claims set their planner settings per transaction on the shared pool \
                 instead (two more round trips each)"
            );
        }
    }
}

/// The shared pool's connect options with the claim's settings and name.
fn with_settings(source: &PgConnectOptions) -> PgConnectOptions {
    source
        .clone()
        .options(SETTINGS)
        .application_name("routemq claims")
}

/// Why a claim connection cannot stand in for the shared pool's, if it cannot: the settings did
/// not arrive (a proxy may drop startup options silently), or it sees other tables (the shared
/// pool's `after_connect` hook may set the `search_path` or the role, which claim connections
/// do not run).
async fn differs(conn: &mut PgConnection, shared: &PgPool) -> Result<Option<String>, sqlx::Error> {
    /// What a connection sees: its schema search path and its role.
    const SEEN: &str = "current_setting('search_path'), current_user::text";
    let (sort, path, user): (String, String, String) =
        sqlx::query_as(&format!("SELECT current_setting('enable_sort'), {SEEN}"))
            .fetch_one(&mut *conn)
            .await?;
    if sort != "off" {
        return Ok(Some(
            "the server ignored the startup options of a claim connection".to_owned(),
        ));
    }
    let (shared_path, shared_user): (String, String) = sqlx::query_as(&format!("SELECT {SEEN}"))
        .fetch_one(shared)
        .await?;
    if (&path, &user) != (&shared_path, &shared_user) {
        return Ok(Some(format!(
            "a claim connection sees search_path {path:?} as {user:?}, the shared pool's \
             {shared_path:?} as {shared_user:?} (set by an after_connect hook?)"
        )));
    }
    Ok(None)
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
