//! A worker's presence in the store: every [`WorkerOptions::presence_interval`] it writes a
//! [`WorkerInfo`] (who it is, what it serves, what it did lately) through
//! [`QueueDriver::worker_beat`], and a last one, with `stopped_at`, when it stops. The dashboard
//! reads them back with [`workers`]. Records are kept for an hour after their last beat, so
//! that the throughput of the last hour includes workers that stopped; each running worker
//! deletes older ones every few minutes (the dashboard only reads).
//!
//! [`WorkerOptions::presence_interval`]: super::WorkerOptions::presence_interval

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::activity::{MinuteCount, TypeActivity};
use crate::driver::{DriverError, QueueDriver, WorkerRow, epoch_millis, millis_ago};

/// How long a record is kept after its last beat.
pub const KEPT_FOR: Duration = Duration::from_secs(3600);

/// A worker that missed this many beats in a row is shown as lost.
const MISSED_BEATS: u32 = 3;

/// Every this many beats (and at the first), a worker deletes the records of workers that
/// stopped beating more than [`KEPT_FOR`] ago.
const PRUNE_EVERY: u32 = 60;

/// What a worker says about itself in each beat. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// `host:pid:random`, unique per run.
    pub id: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The connection it works.
    pub connection: String,
    /// The queues it serves, in its order.
    pub queues: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: usize,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it wrote this record.
    pub beat_at: i64,
    /// How often it writes one, in milliseconds.
    pub beat_interval_ms: u64,
    /// When it stopped (its last record), if it did.
    pub stopped_at: Option<i64>,
    /// Jobs running or reserved ahead when it wrote this.
    pub running: usize,
    /// Jobs it handled (any outcome), as its report counts them.
    pub processed: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Attempts released to run again after a failure.
    pub retried: u64,
    /// Jobs moved to the failed store.
    pub failed: u64,
    /// Jobs finished per minute, oldest first: the minutes of the last hour in which any ended.
    pub minutes: Vec<MinuteCount>,
    /// Recent runs by job type (the last 10 to 20 minutes).
    pub job_types: BTreeMap<String, TypeActivity>,
}

impl WorkerInfo {
    /// Whether the worker is running: it has not stopped and beat within three intervals.
    pub fn is_running(&self, now_millis: i64) -> bool {
        let interval = i64::try_from(self.beat_interval_ms).unwrap_or(i64::MAX);
        self.stopped_at.is_none()
            && now_millis.saturating_sub(self.beat_at)
                <= interval.saturating_mul(i64::from(MISSED_BEATS))
    }
}

/// The workers that beat within [`KEPT_FOR`], running or not, ordered by id; `None` when the
/// driver keeps no presence records. A read only; a record that does not decode is skipped.
pub async fn workers(driver: &dyn QueueDriver) -> Result<Option<Vec<WorkerInfo>>, DriverError> {
    let Some(rows) = driver.worker_rows(millis_ago(KEPT_FOR)).await? else {
        return Ok(None);
    };
    Ok(Some(
        rows.iter()
            .filter_map(|row| match serde_json::from_str(&row.doc) {
                Ok(info) => Some(info),
                Err(error) => {
                    tracing::debug!(worker = %row.id, %error, "a worker record does not decode");
                    None
                }
            })
            .collect(),
    ))
}

/// Longest host name kept in a record (the id must fit a 191-character key).
const MAX_HOST: usize = 160;

/// How long the last beat (and a prune) may take: a store that is down does not hold up shutdown.
const LAST_BEAT_WAIT: Duration = Duration::from_secs(2);

/// This machine's name (at most [`MAX_HOST`] characters): `HOSTNAME`, else the kernel's, else
/// `unknown`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().chars().take(MAX_HOST).collect::<String>())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes the worker's record every interval until `stop`, then a last one with `stopped_at`.
/// Beats are best effort: a failed one is logged (once until one succeeds) and tried again.
pub(crate) async fn beat(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = shared.options.presence_interval;
    let host = host_name();
    let pid = std::process::id();
    let identity = Identity {
        id: format!("{host}:{pid}:{:06x}", fastrand::u32(..0x100_0000)),
        host,
        pid,
        started_at: epoch_millis(SystemTime::now()),
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    let mut beats: u32 = 0;
    loop {
        let stopping = tokio::select! {
            biased;
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let row = identity.row(&shared, stopping);
        let written = if stopping {
            bounded(LAST_BEAT_WAIT, shared.driver.worker_beat(&row)).await
        } else {
            // A beat still waiting on the store when the worker stops gives way to the last one.
            tokio::select! {
                biased;
                () = stop.cancelled() => continue,
                written = bounded(interval.max(LAST_BEAT_WAIT), shared.driver.worker_beat(&row)) => written,
            }
        };
        match written {
            Ok(true) => {
                warned = false;
                if !stopping && beats.is_multiple_of(PRUNE_EVERY) {
                    let before = millis_ago(KEPT_FOR);
                    let pruned = tokio::select! {
                        biased;
                        () = stop.cancelled() => continue,
                        pruned = bounded(LAST_BEAT_WAIT, shared.driver.worker_prune(before)) => pruned,
                    };
                    if let Err(error) = pruned {
                        tracing::debug!(%error, "could not delete old worker records");
                    }
                }
                beats = beats.wrapping_add(1);
            }
            // The driver keeps no records: nothing more to write.
            Ok(false) => return,
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(%error, "could not record this worker for the dashboard; trying again");
            }
            Err(error) => tracing::debug!(%error, "could not record this worker"),
        }
        if stopping {
            return;
        }
    }
}

/// `call`, or a timeout error after `limit`.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(DriverError::backend("record a worker", "timed out")))
}

/// What stays the same across a worker's beats.
struct Identity {
    id: String,
    host: String,
    pid: u32,
    started_at: i64,
}

impl Identity {
    fn row(&self, shared: &Shared, stopping: bool) -> WorkerRow {
        let now = epoch_millis(SystemTime::now());
        let report = shared.report();
        let (minutes, job_types) = shared.activity.snapshot();
        let info = WorkerInfo {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            connection: shared.connection.clone(),
            queues: shared.options.queues.clone(),
            concurrency: shared.options.concurrency,
            started_at: self.started_at,
            beat_at: now,
            beat_interval_ms: u64::try_from(shared.options.presence_interval.as_millis())
                .unwrap_or(u64::MAX),
            stopped_at: stopping.then_some(now),
            running: shared.running().len(),
            processed: report.processed,
            succeeded: report.succeeded,
            retried: report.retried,
            failed: report.failed,
            minutes,
            job_types,
        };
        WorkerRow {
            id: self.id.clone(),
            beat_at: now,
            // A struct of strings, numbers and maps with string keys always serializes.
            doc: serde_json::to_string(&info).unwrap_or_default(),
        }
    }
}
