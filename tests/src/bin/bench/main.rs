//! The benchmark binary, with the interface of the shared harness:
//!
//! ```text
//! bench <memory|sqlite|postgres|mysql|redis|redis-cluster> <drain|enqueue|latency|backlog> [--n N] [--concurrency C]
//!       [--prefetch P] [--job-ms MS] [--backlog B] [--delayed D] [--processes P]
//! bench <raw-redis|raw-postgres|raw-mysql|raw-sqlite> <drain|enqueue> [--n N] [--concurrency C] [--k K]
//!       [--pad BYTES]
//! ```
//!
//! `--prefetch` sets the worker's prefetch (default: four times the concurrency). `--job-ms` makes
//! every job wait that long (a stand-in for real work such as a network call), to see what the queue
//! costs next to jobs that do something; the default 0 measures the queue alone. `raw-*` are the
//! harness's raw broker loops (see `raw.rs`; `--k` jobs per SQL claim, default 100; `--pad` pads
//! each raw payload to that many bytes, to compare with routemq's records at equal size). `backlog`
//! measures dispatch and drain on top of `--backlog` ready and `--delayed` delayed jobs (see
//! `backlog.rs`). `--processes P` drains with P worker processes instead of one worker in this
//! process (see `processes.rs`).
//!
//! prints ONE JSON line (`system`, `workload`, `n`, `concurrency`, `seconds`, and `jobs_per_s` for
//! drain, `single_jobs_per_s`/`bulk_jobs_per_s` for enqueue, `p50_ms`/`p99_ms` for latency). Drain
//! and enqueue also report the CPU time spent per job by the broker (`broker_cpu_us_per_job`, with
//! `single_`/`bulk_` prefixes for enqueue) and by this process (`client_cpu_us_per_job`), and the
//! broker's memory (`broker_memory_mb`; see `broker.rs`). routemq goes through the public API a
//! user would use: a `#[job]` type, `push`/`bulk`, and the `Worker`.
//!
//! Servers: `REDIS_URL` (default `redis://127.0.0.1:6379/7`), `REDIS_CLUSTER_NODES` (a cluster's
//! node URLs, comma-separated; no default), `DATABASE_URL` for PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`), `MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`),
//! `SQLITE_PATH` (default a file in the temporary folder). Every run uses a queue (raw: a key or
//! table) of its own.

mod backlog;
mod broker;
mod processes;
mod raw;
mod sql_pool;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::{Broker, measure};
use routemq::driver::QueueDriver;
use routemq::prelude::*;
use routemq::{Settings, WorkerReport};
use serde_json::json;

/// The harness's payload: a string, an int and a list, plus the dispatch time for latency.
#[job(name = "bench.Noop", max_tries = 3, timeout = 60)]
struct Noop {
    name: String,
    n: i64,
    tags: Vec<String>,
    ts: u64,
}

pub(crate) static DONE: AtomicU64 = AtomicU64::new(0);
static LATENCIES: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static MEASURE_LATENCY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static JOB_MS: AtomicU64 = AtomicU64::new(0);
static PREFETCH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The error every step of a run may end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Job for Noop {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        if MEASURE_LATENCY.load(Ordering::Relaxed) {
            let ms = now_us().saturating_sub(self.ts) as f64 / 1000.0;
            LATENCIES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ms);
        }
        let work = JOB_MS.load(Ordering::Relaxed);
        if work > 0 {
            tokio::time::sleep(Duration::from_millis(work)).await;
        }
        std::hint::black_box(&self.name);
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) fn job(i: usize) -> Noop {
    Noop {
        name: format!("job-{i}"),
        n: i64::try_from(i).unwrap_or(0),
        tags: vec!["a".into(), "b".into(), "c".into()],
        ts: now_us(),
    }
}

/// The command line.
pub(crate) struct Args {
    pub(crate) connection: String,
    pub(crate) workload: String,
    pub(crate) n: usize,
    pub(crate) concurrency: usize,
    /// Jobs per claim of a raw SQL loop.
    pub(crate) k: i64,
    /// Ready jobs already queued before a `backlog` run.
    pub(crate) backlog: usize,
    /// Delayed jobs already queued before a `backlog` run.
    pub(crate) delayed: usize,
    /// Worker processes that drain (0: one worker in this process).
    pub(crate) processes: usize,
}

fn parse_args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench <memory|sqlite|postgres|mysql|redis|redis-cluster|raw-redis|raw-postgres|raw-mysql|raw-sqlite> <drain|enqueue|latency|backlog> [--n N] [--concurrency C] [--prefetch P] [--job-ms MS] [--k K] [--pad BYTES] [--backlog B] [--delayed D] [--processes P]";
    let (Some(connection), Some(workload)) = (raw.first(), raw.get(1)) else {
        return Err(usage.to_owned());
    };
    let mut args = Args {
        connection: connection.clone(),
        workload: workload.clone(),
        n: 20_000,
        concurrency: 1,
        k: 100,
        backlog: 0,
        delayed: 0,
        processes: 0,
    };
    let mut rest = raw[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag} takes a whole number, not {value}"))?;
        match flag.as_str() {
            "--n" => args.n = number,
            "--concurrency" => args.concurrency = number.max(1),
            "--k" => args.k = i64::try_from(number.max(1)).unwrap_or(i64::MAX),
            "--backlog" => args.backlog = number,
            "--delayed" => args.delayed = number,
            "--processes" => args.processes = number,
            "--pad" => raw::PAD.store(number, Ordering::Relaxed),
            "--prefetch" => {
                let _ = PREFETCH.set(number);
            }
            "--job-ms" => {
                JOB_MS.store(u64::try_from(number).unwrap_or(u64::MAX), Ordering::Relaxed)
            }
            other => return Err(format!("unknown flag {other}\n{usage}")),
        }
    }
    Ok(args)
}

/// The server URL of a connection kind, from the environment.
pub(crate) fn url(connection: &str) -> String {
    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    match connection {
        "postgres" => env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        "mysql" => env("MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        "redis" => env("REDIS_URL", "redis://127.0.0.1:6379/7"),
        "redis-cluster" => env("REDIS_CLUSTER_NODES", ""),
        _ => {
            let default =
                std::env::temp_dir().join(format!("routemq-bench-{}.sqlite", std::process::id()));
            env("SQLITE_PATH", &default.to_string_lossy())
        }
    }
}

async fn driver(connection: &str) -> Result<Arc<dyn QueueDriver>, BoxError> {
    Ok(match connection {
        "memory" => Arc::new(routemq::driver::memory::MemoryDriver::new()),
        "sqlite" => Arc::new(routemq::driver::sqlite::SqliteDriver::open(&url("sqlite")).await?),
        "postgres" => {
            let driver =
                routemq::driver::postgres::PostgresDriver::connect(&url("postgres")).await?;
            driver.migrate().await?;
            Arc::new(driver)
        }
        "mysql" => {
            let driver = routemq::driver::mysql::MySqlDriver::connect(&url("mysql")).await?;
            driver.migrate().await?;
            Arc::new(driver)
        }
        "redis" => {
            let layout = routemq::driver::redis::KeyLayout::new("bench:routemq:", false);
            Arc::new(routemq::driver::redis::RedisDriver::connect(&url("redis"), layout).await?)
        }
        "redis-cluster" => {
            let nodes = url("redis-cluster");
            if nodes.is_empty() {
                return Err("set REDIS_CLUSTER_NODES to the cluster's node URLs".into());
            }
            let nodes: Vec<&str> = nodes.split(',').collect();
            let layout = routemq::driver::redis::KeyLayout::new("bench:routemq:", true);
            Arc::new(routemq::driver::redis::RedisDriver::connect_cluster(&nodes, layout).await?)
        }
        other => return Err(format!("unknown connection {other}").into()),
    })
}

pub(crate) fn worker(
    driver: &Arc<dyn QueueDriver>,
    queue: &str,
    concurrency: usize,
    stop_when_empty: bool,
    max_jobs: Option<u64>,
) -> Worker {
    let options = WorkerOptions {
        queues: vec![queue.to_owned()],
        concurrency,
        stop_when_empty,
        max_jobs,
        sleep: Duration::from_millis(100),
        prefetch: PREFETCH.get().copied(),
        ..WorkerOptions::default()
    };
    Worker::new(Arc::clone(driver), "bench", options)
}

pub(crate) async fn bulk(
    manager: &QueueManager,
    queue: &str,
    n: usize,
) -> Result<(), routemq::QueueError> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        manager
            .bulk(chunk.iter().map(|i| job(*i)))
            .on_connection("bench")
            .on_queue(queue)
            .await?;
    }
    Ok(())
}

/// Dispatches `n` jobs one at a time to `single_to`, then `n` in one bulk call to `bulk_to`,
/// measuring each (`single_` and `bulk_` figures in `out`); returns the seconds both took.
pub(crate) async fn dispatch_rates(
    manager: &QueueManager,
    broker: &Broker,
    single_to: &str,
    bulk_to: &str,
    n: usize,
    out: &mut serde_json::Value,
) -> Result<f64, BoxError> {
    let single = async {
        for i in 0..n {
            manager.push(job(i)).on_queue(single_to).await?;
        }
        Ok(())
    };
    let ((), single) = measure(broker, n, "single_", out, single).await?;
    let bulk = async { Ok(manager.bulk((0..n).map(job)).on_queue(bulk_to).await?) };
    let (_, bulk) = measure(broker, n, "bulk_", out, bulk).await?;
    Ok(single + bulk)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn check(report: &WorkerReport, n: usize) -> Result<(), String> {
    let done = DONE.load(Ordering::Relaxed);
    if report.succeeded != n as u64 || done != n as u64 {
        return Err(format!(
            "expected {n} jobs acknowledged, the worker reported {report:?} and {done} ran"
        ));
    }
    Ok(())
}

async fn run(args: &Args) -> Result<serde_json::Value, BoxError> {
    if let Some(kind) = args.connection.strip_prefix("raw-") {
        let mut out = raw::run(kind, args).await?;
        out["system"] = json!(args.connection);
        out["workload"] = json!(args.workload);
        out["n"] = json!(args.n);
        out["concurrency"] = json!(args.concurrency);
        if kind != "redis" {
            out["k"] = json!(args.k);
        }
        return Ok(out);
    }
    let driver = driver(&args.connection).await?;
    let broker = Broker::find(&args.connection).await?;
    let manager = QueueManager::new(Settings {
        default_connection: "bench".into(),
        ..Settings::default()
    });
    manager.register("bench", Arc::clone(&driver));
    let queue = format!("bench-{}-{}", std::process::id(), now_us());
    let (n, c) = (args.n, args.concurrency);
    let mut out = json!({
        "system": format!("routemq-rs-{}", args.connection),
        "workload": args.workload,
        "n": n,
        "concurrency": c,
        "job_ms": JOB_MS.load(Ordering::Relaxed),
    });
    match args.workload.as_str() {
        "drain" if args.processes > 0 => {
            if args.connection == "memory" {
                return Err("the memory driver lives in one process: no --processes".into());
            }
            bulk(&manager, &queue, n).await?;
            let drain = processes::drain(args, &queue);
            let (ran, seconds) = measure(&broker, n, "", &mut out, drain).await?;
            if ran != n as u64 || driver.size(&queue).await? != 0 {
                return Err(format!("{ran} of {n} jobs ran, or some are left").into());
            }
            // This process only waited: the workers' CPU time is theirs.
            if let Some(fields) = out.as_object_mut() {
                fields.remove("client_cpu_us_per_job");
            }
            out["processes"] = json!(args.processes);
            out["seconds"] = json!(seconds);
        }
        "drain-part" => {
            let queue = std::env::var("BENCH_QUEUE").map_err(|_| "drain-part needs BENCH_QUEUE")?;
            let report = worker(&driver, &queue, c, true, None).run().await?;
            return Ok(json!({ "ran": report.succeeded }));
        }
        "drain" => {
            bulk(&manager, &queue, n).await?;
            let drain = async { Ok(worker(&driver, &queue, c, true, None).run().await?) };
            let (report, seconds) = measure(&broker, n, "", &mut out, drain).await?;
            check(&report, n)?;
            if driver.size(&queue).await? != 0 {
                return Err("the queue is not empty after the drain".into());
            }
            out["seconds"] = json!(seconds);
        }
        "enqueue" => {
            let bulk_queue = format!("{queue}-bulk");
            let seconds =
                dispatch_rates(&manager, &broker, &queue, &bulk_queue, n, &mut out).await?;
            let stored = (driver.size(&queue).await?, driver.size(&bulk_queue).await?);
            // Leave nothing behind, before judging.
            for q in [&queue, &bulk_queue] {
                let report = worker(&driver, q, 16, true, None).run().await?;
                DONE.fetch_sub(report.succeeded, Ordering::Relaxed);
            }
            if stored != (n as u64, n as u64) {
                return Err(format!("{stored:?} jobs stored of {n} and {n} dispatched").into());
            }
            out["seconds"] = json!(seconds);
        }
        "latency" => {
            MEASURE_LATENCY.store(true, Ordering::Relaxed);
            let running = tokio::spawn(worker(&driver, &queue, c, false, Some(n as u64)).run());
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = tokio::time::Instant::now();
            for i in 0..n {
                tokio::time::sleep_until(started + Duration::from_micros(2000 * i as u64)).await;
                manager.push(job(i)).on_queue(queue.clone()).await?;
            }
            let report = tokio::time::timeout(Duration::from_secs(120), running).await???;
            check(&report, n)?;
            let mut latencies = LATENCIES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            latencies.sort_by(f64::total_cmp);
            out["seconds"] = json!(started.elapsed().as_secs_f64());
            out["p50_ms"] = json!(percentile(&latencies, 0.5));
            out["p99_ms"] = json!(percentile(&latencies, 0.99));
            out["count"] = json!(latencies.len());
        }
        "backlog" => backlog::run(args, &driver, &manager, &broker, &queue, &mut out).await?,
        other => return Err(format!("unknown workload {other}").into()),
    }
    Ok(out)
}

/// Removes the run's SQLite database when it is the default temporary file.
fn remove_temporary_sqlite() {
    if std::env::var("SQLITE_PATH").is_err() {
        let path = url("sqlite");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&args));
    remove_temporary_sqlite();
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
