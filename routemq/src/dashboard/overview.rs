//! The overview and job-type pages' data: queue counts, the workers of the last hour with
//! their state, jobs per minute summed over every worker, and runs by job type.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;

use crate::driver::{DriverError, QueueDriver, QueueStats, epoch_millis};
use crate::registry::Registry;
use crate::worker::WorkerInfo;
use crate::worker::activity::{MINUTE_MS, MINUTES, first_minute};
use crate::worker::presence::workers;
use crate::worker::{MinuteCount, TypeActivity};

/// A worker as the overview lists it.
#[derive(Debug, Serialize)]
pub(crate) struct WorkerView {
    /// `running`, `stopped`, or `lost` (no beat for three intervals, and no goodbye).
    state: &'static str,
    #[serde(flatten)]
    info: WorkerSummary,
}

/// A worker's record without its per-minute and per-type detail.
#[derive(Debug, Serialize)]
struct WorkerSummary {
    id: String,
    host: String,
    pid: u32,
    connection: String,
    queues: Vec<String>,
    concurrency: usize,
    started_at: i64,
    beat_at: i64,
    stopped_at: Option<i64>,
    running: usize,
    processed: u64,
    succeeded: u64,
    retried: u64,
    failed: u64,
}

/// `GET /api/overview`.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    now: i64,
    queues: Vec<QueueStats>,
    /// Whether the driver records workers (`false`: a custom driver without presence records).
    workers_recorded: bool,
    /// Why the workers' records could not be read (a missing table, say), if they could not.
    workers_error: Option<String>,
    workers: Vec<WorkerView>,
    /// The last hour, one entry per minute, oldest first.
    throughput: Vec<MinuteCount>,
}

/// What the workers' records say: whether the driver keeps them, the workers of the last hour,
/// and why they could not be read. Queue counts are still shown when they cannot.
struct Recorded {
    kept: bool,
    workers: Vec<WorkerInfo>,
    error: Option<String>,
}

async fn recorded(driver: &dyn QueueDriver) -> Recorded {
    match workers(driver).await {
        Ok(Some(workers)) => Recorded {
            kept: true,
            workers,
            error: None,
        },
        Ok(None) => Recorded {
            kept: false,
            workers: Vec::new(),
            error: None,
        },
        Err(error) => {
            tracing::warn!(%error, "the dashboard cannot read the workers' records");
            Recorded {
                kept: true,
                workers: Vec::new(),
                error: Some(error.to_string()),
            }
        }
    }
}

pub(crate) async fn overview(driver: &dyn QueueDriver) -> Result<Overview, DriverError> {
    let now = epoch_millis(SystemTime::now());
    let Recorded {
        kept: workers_recorded,
        workers: infos,
        error: workers_error,
    } = recorded(driver).await;
    let mut names: BTreeSet<String> = driver.queues().await?.into_iter().collect();
    names.extend(infos.iter().flat_map(|w| w.queues.iter().cloned()));
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        queues.push(driver.stats(&name).await?);
    }
    let first = first_minute(now);
    let mut throughput: Vec<MinuteCount> = (0..MINUTES as i64)
        .map(|i| MinuteCount {
            minute: first + i * MINUTE_MS,
            ..MinuteCount::default()
        })
        .collect();
    for minute in infos.iter().flat_map(|w| &w.minutes) {
        if let Some(slot) = usize::try_from((minute.minute - first) / MINUTE_MS)
            .ok()
            .filter(|_| minute.minute >= first)
            .and_then(|i| throughput.get_mut(i))
        {
            slot.succeeded += minute.succeeded;
            slot.failed += minute.failed;
        }
    }
    let mut workers: Vec<WorkerView> = infos
        .into_iter()
        .map(|info| WorkerView {
            state: match (info.is_running(now), info.stopped_at) {
                (true, _) => "running",
                (false, Some(_)) => "stopped",
                (false, None) => "lost",
            },
            info: WorkerSummary {
                id: info.id,
                host: info.host,
                pid: info.pid,
                connection: info.connection,
                queues: info.queues,
                concurrency: info.concurrency,
                started_at: info.started_at,
                beat_at: info.beat_at,
                stopped_at: info.stopped_at,
                running: info.running,
                processed: info.processed,
                succeeded: info.succeeded,
                retried: info.retried,
                failed: info.failed,
            },
        })
        .collect();
    // Running first, then the most recent.
    workers.sort_by_key(|w| (w.state != "running", std::cmp::Reverse(w.info.beat_at)));
    Ok(Overview {
        now,
        queues,
        workers_recorded,
        workers_error,
        workers,
        throughput,
    })
}

/// One job type as the job-types page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct JobTypeView {
    name: String,
    /// Whether this binary links it (else it was only seen in a worker's record).
    linked: bool,
    /// Its declaration, when linked.
    declared: Option<crate::registry::JobTypeInfo>,
    runs: u64,
    failures: u64,
    failure_rate: Option<f64>,
    p50_seconds: Option<f64>,
    p95_seconds: Option<f64>,
}

/// `GET /api/job-types`.
#[derive(Debug, Serialize)]
pub(crate) struct JobTypes {
    items: Vec<JobTypeView>,
    /// Why the workers' records (the runs) could not be read, if they could not.
    workers_error: Option<String>,
}

/// The types linked into this binary and those the workers ran, with the recent runs summed over
/// every worker of the last hour.
pub(crate) async fn job_types(driver: &dyn QueueDriver) -> JobTypes {
    let Recorded {
        workers: infos,
        error: workers_error,
        ..
    } = recorded(driver).await;
    let mut runs: BTreeMap<String, TypeActivity> = BTreeMap::new();
    for (name, activity) in infos.iter().flat_map(|w| &w.job_types) {
        runs.entry(name.clone()).or_default().merge(activity);
    }
    let registry = Registry::global().ok();
    let mut names: BTreeSet<String> = runs.keys().cloned().collect();
    if let Some(registry) = registry {
        names.extend(registry.names().into_iter().map(str::to_owned));
    }
    let mut views: Vec<JobTypeView> = names
        .into_iter()
        .map(|name| {
            let registration = registry.and_then(|r| r.get(&name).ok());
            let activity = runs.remove(&name).unwrap_or_default();
            JobTypeView {
                linked: registration.is_some(),
                declared: registration.map(|r| r.info()),
                runs: activity.runs,
                failures: activity.failures,
                failure_rate: (activity.runs > 0)
                    .then(|| activity.failures as f64 / activity.runs as f64),
                p50_seconds: activity.quantile(0.5),
                p95_seconds: activity.quantile(0.95),
                name,
            }
        })
        .collect();
    // The busiest first, then by name.
    views.sort_by(|a, b| b.runs.cmp(&a.runs).then_with(|| a.name.cmp(&b.name)));
    JobTypes {
        items: views,
        workers_error,
    }
}
