//! `queue-work`: run a worker from the command line.

use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::registry::Registry;
use crate::schedule::Schedule;
use crate::worker::{Extensions, Shutdown, Worker, WorkerOptions};
use crate::{Settings, queue};

/// `queue-work` flags (RouteMQ's, plus `--concurrency` and `--stop-when-empty`).
#[derive(Debug, Clone, Args)]
pub struct WorkArgs {
    /// Queues to serve, comma-separated, highest priority first; or weighted, served in
    /// proportion: high:5,default:2,low:1.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub queue: Vec<String>,
    /// The connection to work (default: QUEUE_CONNECTION, else sqlite).
    #[arg(long)]
    pub connection: Option<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Jobs reserved ahead of free slots (default: 4 × concurrency, grown for short jobs to about
    /// 50 ms of work, at most 256); 0 for very slow jobs.
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Seconds an idle worker waits between polls when the driver cannot wake it.
    #[arg(long, default_value_t = 3.0)]
    pub sleep: f64,
    /// Stop after handling this many jobs.
    #[arg(long)]
    pub max_jobs: Option<u64>,
    /// Stop reserving jobs after this many seconds.
    #[arg(long)]
    pub max_time: Option<f64>,
    /// Override every job's max_tries.
    #[arg(long)]
    pub max_tries: Option<u32>,
    /// Timeout in seconds for jobs whose envelope's timeout is 0 or negative (an envelope without a
    /// timeout has RouteMQ's 60 s; `#[job(timeout = ..)]` sets it per job type).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Stop once no job is ready, delayed or reserved (by any worker) on the served queues.
    #[arg(long)]
    pub stop_when_empty: bool,
    /// At most N jobs of a queue running at once across every worker of the connection:
    /// QUEUE=N (comma-separated or repeated).
    #[arg(long, value_name = "QUEUE=N", value_delimiter = ',')]
    pub limit: Vec<String>,
    /// At most N jobs of a queue starting per period across every worker of the connection:
    /// QUEUE=N/PERIOD, such as emails=100/60s, sms=10/s, reports=5/1h.
    #[arg(long, value_name = "QUEUE=N/PERIOD", value_delimiter = ',')]
    pub rate: Vec<String>,
    /// Also run this binary's schedules (see `queue-schedule`) while the worker runs.
    #[arg(long)]
    pub schedule: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /health
    /// (e.g. 127.0.0.1:9090 or localhost:9090).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Also serve the web dashboard at http://ADDR/ (see `queue-dashboard`; loopback unless
    /// ROUTEMQ_DASHBOARD_TOKEN or ROUTEMQ_DASHBOARD_USER/PASSWORD is set).
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// With --dashboard: hide retry, forget and flush, and refuse every POST.
    #[arg(long, requires = "dashboard")]
    pub dashboard_read_only: bool,
}

fn usage(message: String) -> Failure {
    Failure { message, code: 2 }
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Failure> {
    crate::limits::checked_secs(value).ok_or_else(|| {
        usage(format!(
            "--{flag} must be a number of seconds from 0 to ten years, not {value}"
        ))
    })
}

pub(super) async fn run(
    args: WorkArgs,
    extensions: Extensions,
    schedule: Schedule,
) -> Result<(), Failure> {
    let registry = Registry::global()?;
    if registry.is_empty() {
        return Err(Failure {
            message: "no job types are linked into this binary, so there is nothing to run.\n\
                      Build a worker from your own crate instead: add a binary that links your jobs and calls \
                      routemq::cli::main():\n\n    use my_jobs as _;\n    fn main() -> std::process::ExitCode { routemq::cli::main() }\n\n\
                      then run it with `queue-work`. The admin commands (queue-failed, queue-retry, ...) work in \
                      this binary as they are."
                .to_owned(),
            code: 1,
        });
    }
    if args.max_tries == Some(0) {
        return Err(Failure {
            message: "--max-tries must be at least 1".to_owned(),
            code: 2,
        });
    }
    let settings: &Settings = queue().settings()?;
    let connection = args
        .connection
        .clone()
        .unwrap_or_else(|| settings.default_connection.clone());
    let (queues, weights) = crate::worker::parse_weighted(&args.queue)
        .map_err(|error| usage(format!("--queue {error}")))?;
    let queues_served = queues.clone();
    let options = WorkerOptions {
        queues,
        weights,
        concurrency: args.concurrency,
        prefetch: args.prefetch,
        sleep: seconds("sleep", args.sleep)?,
        max_jobs: args.max_jobs,
        max_time: args.max_time.map(|t| seconds("max-time", t)).transpose()?,
        stop_when_empty: args.stop_when_empty,
        max_tries: args.max_tries,
        timeout: seconds("timeout", args.timeout)?,
        queue_limits: assignments("limit", &args.limit, &queues_served)?,
        queue_rates: assignments("rate", &args.rate, &queues_served)?,
        ..WorkerOptions::from_settings(settings)
    };
    options
        .validate()
        .map_err(|error| usage(error.to_string()))?;
    let metrics_addr = match &args.metrics_addr {
        Some(addr) => Some(super::dashboard::resolve("--metrics-addr", addr).await?),
        None => None,
    };
    let dashboard_addr = match &args.dashboard {
        Some(addr) => Some(super::dashboard::resolve("--dashboard", addr).await?),
        None => None,
    };
    let dashboard_schedule = if args.schedule {
        schedule.clone()
    } else {
        Schedule::default()
    };
    let scheduler = if args.schedule {
        let scheduler = super::schedule::scheduler(schedule, queue())?;
        scheduler.connect().await?;
        Some(scheduler)
    } else {
        None
    };
    let driver = queue().connection(&connection).await?;
    let _metrics = match metrics_addr {
        Some(addr) => Some(
            crate::metrics::server::MetricsServer::start(
                addr,
                std::sync::Arc::clone(&driver),
                options.queues.clone(),
            )
            .await
            .map_err(|error| Failure {
                message: format!("cannot serve metrics on {addr}: {error}"),
                code: 1,
            })?,
        ),
        None => None,
    };
    let _dashboard = match dashboard_addr {
        Some(addr) => Some(
            super::dashboard::serve(
                addr,
                std::sync::Arc::clone(&driver),
                connection.clone(),
                args.dashboard_read_only,
                dashboard_schedule,
            )
            .await?,
        ),
        None => None,
    };
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(shutdown.clone().on_signals());
    // The schedules run until the worker stops (a signal, or one of its limits).
    let stopped = tokio_util::sync::CancellationToken::new();
    let schedules = scheduler.map(|scheduler| {
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let result = scheduler.run(stopped.cancelled_owned()).await;
            if let Err(error) = &result {
                tracing::error!(%error, "the schedules cannot run");
            }
            result
        })
    });
    let report = Worker::new(driver, connection, options)
        .with_shutdown(shutdown)
        .with_extensions(extensions)
        .run()
        .await;
    signals.abort();
    stopped.cancel();
    if let Some(schedules) = schedules {
        match schedules.await {
            Ok(result) => {
                result?;
            }
            Err(error) => tracing::error!(%error, "the scheduler task failed"),
        }
    }
    let report = report?;
    tracing::info!("processed {} jobs", report.processed);
    Ok(())
}

/// `--limit` / `--rate` values by queue; each must name a queue this worker serves.
fn assignments<T: std::str::FromStr>(
    flag: &str,
    values: &[String],
    served: &[String],
) -> Result<std::collections::BTreeMap<String, T>, Failure>
where
    T::Err: std::fmt::Display,
{
    let mut out = std::collections::BTreeMap::new();
    for value in values {
        let (queue, parsed) = crate::worker::parse_assignment::<T>(value)
            .map_err(|error| usage(format!("--{flag} {error}")))?;
        if !served.iter().any(|q| q.trim() == queue) {
            return Err(usage(format!(
                "--{flag} {value}: this worker does not serve queue `{queue}` (--queue {})",
                served.join(",")
            )));
        }
        out.insert(queue, parsed);
    }
    Ok(out)
}
