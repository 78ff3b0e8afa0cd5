//! What the `test-worker` binary registers through `routemq::cli::App`, as an application would:
//! shared data, an async setup that builds pools from the environment and puts connections on
//! them, and lifecycle hooks that write to a file.

use std::io::Write;
use std::sync::Arc;

use routemq::prelude::*;
use routemq::worker::{JobEvent, Lifecycle};
use routemq::{AppData, BoxError};

/// A value registered with `App::data`.
#[derive(Debug, Clone)]
pub struct Label(pub String);

/// The label the binary registers.
pub const LABEL: &str = "from-app-data";

/// The application's PostgreSQL pool, when `TEST_WORKER_APP_POSTGRES` names a database.
#[derive(Debug, Clone)]
pub struct AppPostgres(pub routemq::sqlx::PgPool);

/// The application's MySQL pool, when `TEST_WORKER_APP_MYSQL` names a database.
#[derive(Debug, Clone)]
pub struct AppMysql(pub routemq::sqlx::MySqlPool);

/// The application's Redis connection, when `TEST_WORKER_APP_REDIS` names a server.
#[derive(Clone)]
pub struct AppRedis(pub routemq::redis::aio::ConnectionManager);

impl std::fmt::Debug for AppRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppRedis")
    }
}

/// The connection names the setup registers on the application's own pools.
pub const APP_POSTGRES: &str = "app-postgres";
/// See [`APP_POSTGRES`].
pub const APP_MYSQL: &str = "app-mysql";
/// See [`APP_POSTGRES`].
pub const APP_REDIS: &str = "app-redis";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The binary's async setup: fails on `TEST_WORKER_SETUP_FAILS`; builds the pools named by
/// `TEST_WORKER_APP_*`, shares them with handlers and puts a routemq connection on each.
pub async fn setup() -> Result<AppData, BoxError> {
    if let Some(reason) = var("TEST_WORKER_SETUP_FAILS") {
        return Err(reason.into());
    }
    let mut data = AppData::new();
    if let Some(url) = var("TEST_WORKER_APP_POSTGRES") {
        use routemq::driver::postgres::PostgresDriver;
        let pool = routemq::sqlx::PgPool::connect(&url).await?;
        let driver = PostgresDriver::from_pool(pool.clone());
        routemq::queue().register(APP_POSTGRES, Arc::new(driver));
        data.insert(AppPostgres(pool));
    }
    if let Some(url) = var("TEST_WORKER_APP_MYSQL") {
        use routemq::driver::mysql::MySqlDriver;
        let pool = routemq::sqlx::MySqlPool::connect(&url).await?;
        let driver = MySqlDriver::from_pool(pool.clone()).await?;
        routemq::queue().register(APP_MYSQL, Arc::new(driver));
        data.insert(AppMysql(pool));
    }
    if let Some(url) = var("TEST_WORKER_APP_REDIS") {
        use routemq::driver::redis::{KeyLayout, RedisDriver};
        let client = routemq::redis::Client::open(url)?;
        let manager = routemq::redis::aio::ConnectionManager::new(client.clone()).await?;
        let prefix = var("TEST_WORKER_APP_REDIS_PREFIX").unwrap_or_else(|| "app:".to_owned());
        let driver = RedisDriver::from_connection_manager(
            client,
            manager.clone(),
            KeyLayout::new(prefix, false),
        );
        routemq::queue().register(APP_REDIS, Arc::new(driver));
        data.insert(AppRedis(manager));
    }
    Ok(data)
}

/// A hook that appends `"{lifecycle} {job name} {job id} {attempt}"` to `TEST_WORKER_HOOK_FILE`.
pub fn hook_to_file(event: &JobEvent<'_>) {
    let Some(path) = var("TEST_WORKER_HOOK_FILE") else {
        return;
    };
    let line = format!(
        "{:?} {} {} {}\n",
        event.lifecycle,
        event.ctx.job_name(),
        event.ctx.job_id(),
        event.ctx.attempts()
    );
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// Every lifecycle the binary hooks.
pub const HOOKED: [Lifecycle; 5] = [
    Lifecycle::Before,
    Lifecycle::After,
    Lifecycle::Failure,
    Lifecycle::FinalFailure,
    Lifecycle::Release,
];

/// Writes `"{label} {which pool answered}"` to `path`, using the shared data: the label, and a
/// query on the application's pool when one is registered.
#[derive(Debug, Clone)]
#[job(name = "e2e.UsesAppData", max_tries = 1)]
pub struct UsesAppData {
    /// Where to write.
    pub path: String,
}

impl Job for UsesAppData {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        let label = ctx.data::<Label>()?;
        let data = ctx.app_data();
        let mut answered = Vec::new();
        if let Some(AppPostgres(pool)) = data.get::<AppPostgres>() {
            let one: i32 = routemq::sqlx::query_scalar("SELECT 1")
                .fetch_one(pool)
                .await?;
            answered.push(format!("postgres={one}"));
        }
        if let Some(AppMysql(pool)) = data.get::<AppMysql>() {
            let one: i32 = routemq::sqlx::query_scalar("SELECT 1")
                .fetch_one(pool)
                .await?;
            answered.push(format!("mysql={one}"));
        }
        if let Some(AppRedis(manager)) = data.get::<AppRedis>() {
            let pong: String = routemq::redis::cmd("PING")
                .query_async(&mut manager.clone())
                .await?;
            answered.push(format!("redis={pong}"));
        }
        let line = format!("{} {}\n", label.0, answered.join(","));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Needs shared data nobody registers: ends in the failed store with a message naming it.
#[derive(Debug, Clone)]
#[job(name = "e2e.NeedsUnregisteredData", max_tries = 3)]
pub struct NeedsUnregisteredData;

/// Never registered anywhere.
#[derive(Debug)]
pub struct NeverRegistered;

impl Job for NeedsUnregisteredData {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        ctx.data::<NeverRegistered>()?;
        Ok(())
    }
}

/// The binary's schedule: with `TEST_WORKER_SCHEDULE_CRON`, a [`FileRecord`] writing to
/// `TEST_WORKER_SCHEDULE_LEDGER` on queue `TEST_WORKER_SCHEDULE_QUEUE` at each tick; else none.
///
/// [`FileRecord`]: crate::process_jobs::FileRecord
pub fn schedule_from_env() -> routemq::schedule::Schedule {
    let (Some(cron), Some(ledger), Some(queue)) = (
        var("TEST_WORKER_SCHEDULE_CRON"),
        var("TEST_WORKER_SCHEDULE_LEDGER"),
        var("TEST_WORKER_SCHEDULE_QUEUE"),
    ) else {
        return routemq::schedule();
    };
    routemq::schedule()
        .job(crate::process_jobs::FileRecord {
            path: ledger,
            n: 0,
            first_attempt_sleep_ms: 0,
        })
        .cron(&cron)
        .on_queue(&queue)
        .name(&format!("test-{queue}"))
}
