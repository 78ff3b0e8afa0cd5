//! The admin commands: failed jobs, sizes and stats, migrations, the job list.

use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use super::output::{Render, print, short};
use super::{Command, Common, EXIT_NOT_FOUND, Failure, OutputFormat, QueueFilter};
use crate::driver::{FailedJob, QueueDriver, QueueStats};
use crate::queue;
use crate::registry::Registry;

/// `queue-retry` arguments.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// The failed job's id; omit it with --all.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Retry every failed job (of --queue, if given).
    #[arg(long)]
    pub all: bool,
    /// With --all: only this queue. With an id: the failed job must be from this queue.
    #[arg(long)]
    pub queue: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `queue-failed-show` arguments.
#[derive(Debug, Clone, Args)]
pub struct FailedShowArgs {
    /// The failed job's id (as `queue-failed` shows it).
    pub id: String,
    /// Show an encrypted job's data, opened with ROUTEMQ_KEY (or a previous key).
    #[arg(long)]
    pub decrypt: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `queue-prune-failed` arguments.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Delete failed jobs older than this many hours.
    #[arg(long, required_unless_present = "keep")]
    pub hours: Option<f64>,
    /// Keep at most this many failed jobs per queue (the newest); delete the older ones.
    #[arg(long)]
    pub keep: Option<u64>,
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// A `flag` given in hours, as a duration: exit code 2 unless it is a number ≥ 0.
pub(super) fn hours(flag: &str, hours: f64) -> Result<std::time::Duration, Failure> {
    if !(hours.is_finite() && hours >= 0.0) {
        return Err(Failure {
            message: format!("{flag} must be ≥ 0, not {hours}"),
            code: 2,
        });
    }
    Ok(crate::limits::clamped_secs(hours * 3600.0))
}

pub(super) async fn driver(common: &Common) -> Result<(String, Arc<dyn QueueDriver>), Failure> {
    // Invalid settings are reported whichever connection is named.
    queue().settings()?;
    let connection = match &common.connection {
        Some(connection) => connection.clone(),
        None => queue().default_connection()?.to_owned(),
    };
    let driver = queue().connection(&connection).await?;
    Ok((connection, driver))
}

/// A JSON object result (`{"retried": 1}`), shown as one row in a table.
#[derive(Serialize)]
#[serde(transparent)]
pub(super) struct Summary(pub(super) Value);

impl Render for Summary {
    fn headers(&self) -> Vec<String> {
        self.0
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let cells = self
            .0
            .as_object()
            .map(|o| o.values().map(cell).collect())
            .unwrap_or_default();
        vec![cells]
    }
}

fn names(headers: &[&str]) -> Vec<String> {
    headers.iter().map(|h| (*h).to_owned()).collect()
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct FailedList(Vec<FailedJob>);

impl Render for FailedList {
    fn headers(&self) -> Vec<String> {
        names(&["id", "queue", "connection", "failed_at", "job", "exception"])
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0.iter().map(failed_row).collect()
    }
}

fn failed_row(job: &FailedJob) -> Vec<String> {
    let class = crate::envelope::Envelope::decode(&job.payload)
        .map_or_else(|_| "?".to_owned(), |e| e.class().to_owned());
    vec![
        job.id.clone(),
        job.queue.clone(),
        job.connection.clone(),
        crate::time::iso_utc(job.failed_at),
        class,
        short(&job.exception, 60),
    ]
}

/// One failed job; an encrypted job's data is shown opened, when this process has its key.
#[derive(Serialize)]
struct FailedOne {
    #[serde(flatten)]
    job: FailedJob,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

impl FailedOne {
    fn new(job: FailedJob, decrypt: bool) -> Self {
        let data = opened_data(&job.payload, decrypt);
        Self { job, data }
    }
}

/// An encrypted job's data: opened when asked (or why it cannot be), else a note that it is
/// encrypted; `None` for a job that is not encrypted.
fn opened_data(payload: &str, decrypt: bool) -> Option<Value> {
    let envelope = crate::envelope::Envelope::decode(payload).ok()?;
    if !envelope.is_sealed() {
        return None;
    }
    let key_id = crate::crypto::key_id_of(envelope.data().trim_matches('"')).map(str::to_owned);
    if !decrypt {
        let key = key_id.unwrap_or_else(|| "?".to_owned());
        return Some(Value::String(format!(
            "encrypted with key {key}; --decrypt shows it (with ROUTEMQ_KEY set)"
        )));
    }
    Some(match envelope.plain_data() {
        Ok(plain) => serde_json::from_str(&plain).unwrap_or(Value::Null),
        Err(error) => Value::String(format!("encrypted, cannot be shown: {error}")),
    })
}

impl Render for FailedOne {
    fn headers(&self) -> Vec<String> {
        names(&["field", "value"])
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let job = &self.job;
        let mut rows = vec![
            vec!["id".to_owned(), job.id.clone()],
            vec!["queue".to_owned(), job.queue.clone()],
            vec!["connection".to_owned(), job.connection.clone()],
            vec!["failed_at".to_owned(), crate::time::iso_utc(job.failed_at)],
            vec!["payload".to_owned(), job.payload.clone()],
            vec!["exception".to_owned(), job.exception.replace('\n', " | ")],
        ];
        if let Some(data) = &self.data {
            rows.push(vec!["data".to_owned(), cell(data)]);
        }
        rows
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct StatsList(Vec<QueueStats>);

impl Render for StatsList {
    fn headers(&self) -> Vec<String> {
        names(&[
            "queue",
            "ready",
            "reserved",
            "delayed",
            "failed",
            "oldest_ready_age_seconds",
        ])
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|s| {
                vec![
                    s.queue.clone(),
                    s.ready.to_string(),
                    s.reserved.to_string(),
                    s.delayed.to_string(),
                    s.failed.to_string(),
                    format!("{:.1}", s.oldest_ready_age_seconds),
                ]
            })
            .collect()
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct JobList(Vec<crate::registry::JobTypeInfo>);

impl Render for JobList {
    fn headers(&self) -> Vec<String> {
        names(&[
            "name",
            "type",
            "queue",
            "max_tries",
            "timeout",
            "retry_after",
            "backoff",
        ])
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|j| {
                vec![
                    j.name.to_owned(),
                    j.type_name.clone(),
                    j.queue.to_owned(),
                    j.max_tries.to_string(),
                    j.timeout.to_string(),
                    j.retry_after.to_string(),
                    if j.backoff { "exponential" } else { "fixed" }.to_owned(),
                ]
            })
            .collect()
    }
}

fn not_found(id: &str) -> Failure {
    Failure {
        message: format!("no failed job with id `{id}`"),
        code: EXIT_NOT_FOUND,
    }
}

/// A queue name given on the command line, checked like a dispatch's (exit code 2 when invalid).
fn checked_queue(queue: &str) -> Result<&str, Failure> {
    crate::names::validate_queue_name(queue).map_err(|error| Failure {
        message: format!("--queue: {error}"),
        code: 2,
    })?;
    Ok(queue)
}

/// The queues a filter names (checked), or none for "every queue".
fn named_queues(filter: &QueueFilter) -> Result<Vec<&str>, Failure> {
    filter.queue.iter().map(|q| checked_queue(q)).collect()
}

/// The queues a filter names, or every queue the driver knows.
async fn queues_of(filter: &QueueFilter, driver: &dyn QueueDriver) -> Result<Vec<String>, Failure> {
    let named = named_queues(filter)?;
    if named.is_empty() {
        Ok(driver.queues().await?)
    } else {
        Ok(named.into_iter().map(str::to_owned).collect())
    }
}

/// Failed jobs of the named queues (all queues when none is named).
async fn failed_of(
    filter: &QueueFilter,
    driver: &dyn QueueDriver,
) -> Result<Vec<FailedJob>, Failure> {
    let named = named_queues(filter)?;
    if named.is_empty() {
        return Ok(driver.failed_list(None).await?);
    }
    let mut jobs = Vec::new();
    for queue in named {
        jobs.extend(driver.failed_list(Some(queue)).await?);
    }
    jobs.sort_by_key(|job| job.failed_at);
    Ok(jobs)
}

/// `queue-pause` / `queue-resume` arguments.
#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// The queues (comma-separated or repeated).
    #[arg(required = true, value_delimiter = ',')]
    pub queue: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

pub(super) async fn run(command: Command) -> Result<(), Failure> {
    let pausing = matches!(command, Command::QueuePause(_));
    match command {
        Command::QueueWork(_)
        | Command::QueueDashboard(_)
        | Command::QueueSchedule(_)
        | Command::QueueScheduleList(_) => Ok(()),
        Command::QueueKeygen(format) => super::keys::keygen(format.format),
        Command::QueueReencrypt(common) => super::keys::reencrypt(common).await,
        Command::QueueCancel(args) => super::cancel::run(args).await,
        Command::QueueBatches(args) => super::batches::list_batches(args).await,
        Command::QueueBatchShow(args) => super::batches::show(args).await,
        Command::QueueBatchCancel(args) => super::batches::cancel_batch(args).await,
        Command::QueuePruneBatches(args) => super::batches::prune_batches(args).await,
        Command::QueueFailed(filter) => {
            let (_, driver) = driver(&filter.common).await?;
            let jobs = failed_of(&filter, driver.as_ref()).await?;
            print(&FailedList(jobs), filter.common.format.format)
        }
        Command::QueueFailedShow(args) => {
            let (_, driver) = driver(&args.common).await?;
            match driver.failed_get(&args.id).await? {
                Some(job) => print(
                    &FailedOne::new(job, args.decrypt),
                    args.common.format.format,
                ),
                None => {
                    if args.common.format.format == OutputFormat::Json {
                        println!("null");
                    }
                    Err(not_found(&args.id))
                }
            }
        }
        Command::QueueRetry(args) => {
            let queue = args.queue.as_deref().map(checked_queue).transpose()?;
            let (_, driver) = driver(&args.common).await?;
            let format = args.common.format.format;
            if args.all {
                let retried = driver.failed_retry_all(queue).await?;
                return print(&Summary(json!({ "retried": retried })), format);
            }
            let id = args.id.unwrap_or_default();
            if let Some(queue) = queue {
                let on_queue = driver
                    .failed_get(&id)
                    .await?
                    .is_some_and(|job| job.queue == queue);
                if !on_queue {
                    print(&Summary(json!({ "retried": 0 })), format)?;
                    return Err(Failure {
                        message: format!("no failed job with id `{id}` on queue `{queue}`"),
                        code: EXIT_NOT_FOUND,
                    });
                }
            }
            match driver.failed_retry(&id).await? {
                Some(job_id) => print(&Summary(json!({ "retried": 1, "job_id": job_id })), format),
                None => {
                    print(&Summary(json!({ "retried": 0 })), format)?;
                    Err(not_found(&id))
                }
            }
        }
        Command::QueueForget(args) => {
            let (_, driver) = driver(&args.common).await?;
            let forgotten = driver.failed_forget(&args.id).await?;
            print(
                &Summary(json!({ "forgotten": forgotten })),
                args.common.format.format,
            )?;
            if forgotten {
                Ok(())
            } else {
                Err(not_found(&args.id))
            }
        }
        Command::QueueFlush(filter) => {
            let named = named_queues(&filter)?;
            let (_, driver) = driver(&filter.common).await?;
            let mut flushed = 0;
            if named.is_empty() {
                flushed = driver.failed_flush(None).await?;
            }
            for queue in named {
                flushed += driver.failed_flush(Some(queue)).await?;
            }
            print(
                &Summary(json!({ "flushed": flushed })),
                filter.common.format.format,
            )
        }
        Command::QueuePruneFailed(args) => {
            let older_than = args.hours.map(|h| hours("--hours", h)).transpose()?;
            let queue = args.queue.as_deref().map(checked_queue).transpose()?;
            let (_, driver) = driver(&args.common).await?;
            let mut pruned = 0;
            if let Some(older_than) = older_than {
                pruned += driver.failed_prune(queue, older_than).await?;
            }
            if let Some(keep) = args.keep {
                pruned += driver.failed_trim(queue, keep).await?;
            }
            print(
                &Summary(json!({ "pruned": pruned })),
                args.common.format.format,
            )
        }
        Command::QueueSize(filter) => {
            let (_, driver) = driver(&filter.common).await?;
            let mut sizes = serde_json::Map::new();
            for queue in queues_of(&filter, driver.as_ref()).await? {
                let size = driver.size(&queue).await?;
                sizes.insert(queue, json!(size));
            }
            print(&Summary(Value::Object(sizes)), filter.common.format.format)
        }
        Command::QueueStats(filter) => {
            let (_, driver) = driver(&filter.common).await?;
            let mut stats = Vec::new();
            for queue in queues_of(&filter, driver.as_ref()).await? {
                stats.push(driver.stats(&queue).await?);
            }
            print(&StatsList(stats), filter.common.format.format)
        }
        Command::QueuePause(args) | Command::QueueResume(args) => {
            let (connection, driver) = driver(&args.common).await?;
            for queue in &args.queue {
                checked_queue(queue)?;
            }
            for queue in &args.queue {
                if pausing {
                    queue::pause::pause(driver.as_ref(), queue).await?;
                } else {
                    queue::pause::resume(driver.as_ref(), queue).await?;
                }
            }
            print(
                &Summary(json!({
                    "connection": connection,
                    "queues": args.queue,
                    "paused": pausing,
                })),
                args.common.format.format,
            )
        }
        Command::QueueMigrate(common) => {
            let (connection, driver) = driver(&common).await?;
            driver.migrate().await?;
            print(
                &Summary(json!({ "migrated": true, "connection": connection })),
                common.format.format,
            )
        }
        Command::ListJobs(common) => {
            let registry = Registry::global()?;
            let jobs = registry
                .registrations()
                .into_iter()
                .map(|r| r.info())
                .collect();
            print(&JobList(jobs), common.format.format)
        }
    }
}
