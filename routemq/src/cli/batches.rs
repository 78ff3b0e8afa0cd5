//! `queue-batches`, `queue-batch-show ID`, `queue-batch-cancel ID` and `queue-prune-batches`.

use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::admin::{Summary, driver};
use super::output::{Render, print};
use super::{Common, EXIT_NOT_FOUND, Failure, OutputFormat};
use crate::batch::{BatchInfo, cancel, find, list, prune};
use crate::driver::{BatchPrune, millis_ago};

/// `queue-batches` arguments.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// How many batches to show, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `queue-batch-show` / `queue-batch-cancel` arguments.
#[derive(Debug, Clone, Args)]
pub struct BatchIdArgs {
    /// The batch id (as `dispatch()` returned it, or `queue-batches` shows it).
    pub id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `queue-prune-batches` arguments.
#[derive(Debug, Clone, Args)]
pub struct PruneBatchesArgs {
    /// Delete batches that finished more than this many hours ago.
    #[arg(long)]
    pub hours: f64,
    /// Also delete unfinished batches created more than this many hours ago.
    #[arg(long)]
    pub unfinished_hours: Option<f64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

#[derive(Serialize)]
#[serde(transparent)]
struct BatchList(Vec<BatchInfo>);

fn time(at: Option<std::time::SystemTime>) -> String {
    at.map(crate::time::iso_utc).unwrap_or_default()
}

impl Render for BatchList {
    fn headers(&self) -> Vec<String> {
        [
            "id",
            "name",
            "total",
            "pending",
            "processed",
            "failed",
            "cancelled",
            "progress",
            "created_at",
            "finished_at",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    b.name.clone().unwrap_or_default(),
                    b.total.to_string(),
                    b.pending.to_string(),
                    b.processed.to_string(),
                    b.failed.to_string(),
                    b.cancelled.to_string(),
                    format!("{}%", b.progress()),
                    time(Some(b.created_at)),
                    time(b.finished_at),
                ]
            })
            .collect()
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct BatchOne(BatchInfo);

impl Render for BatchOne {
    fn headers(&self) -> Vec<String> {
        ["field", "value"].map(str::to_owned).to_vec()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let b = &self.0;
        let mut rows = vec![
            ("id", b.id.clone()),
            ("name", b.name.clone().unwrap_or_default()),
            ("connection", b.connection.clone()),
            ("total", b.total.to_string()),
            ("pending", b.pending.to_string()),
            ("processed", b.processed.to_string()),
            ("failed", b.failed.to_string()),
            ("cancelled", b.cancelled.to_string()),
            ("progress", format!("{}%", b.progress())),
            ("allow_failures", b.allow_failures.to_string()),
            ("created_at", time(Some(b.created_at))),
            ("finished_at", time(b.finished_at)),
            ("cancelled_at", time(b.cancelled_at)),
        ];
        for callback in &b.callbacks {
            let kind = match callback.kind {
                crate::batch::CallbackKind::Then => "then",
                crate::batch::CallbackKind::Catch => "catch",
                crate::batch::CallbackKind::Finally => "finally",
            };
            rows.push((
                kind,
                format!(
                    "{} on {} ({})",
                    callback.job, callback.queue, callback.state
                ),
            ));
        }
        rows.into_iter()
            .map(|(field, value)| vec![field.to_owned(), value])
            .collect()
    }
}

fn no_batch(id: &str) -> Failure {
    Failure {
        message: format!("no batch with id `{id}` (never stored, or pruned)"),
        code: EXIT_NOT_FOUND,
    }
}

/// A number of hours as a point in time that far back.
fn hours_ago(flag: &str, hours: f64) -> Result<i64, Failure> {
    Ok(millis_ago(super::admin::hours(flag, hours)?))
}

pub(super) async fn list_batches(args: ListArgs) -> Result<(), Failure> {
    let (_, driver) = driver(&args.common).await?;
    let batches = list(driver.as_ref(), args.limit).await?;
    print(&BatchList(batches), args.common.format.format)
}

pub(super) async fn show(args: BatchIdArgs) -> Result<(), Failure> {
    let (_, driver) = driver(&args.common).await?;
    match find(driver.as_ref(), &args.id).await? {
        Some(batch) => print(&BatchOne(batch), args.common.format.format),
        None => {
            if args.common.format.format == OutputFormat::Json {
                println!("null");
            }
            Err(no_batch(&args.id))
        }
    }
}

pub(super) async fn cancel_batch(args: BatchIdArgs) -> Result<(), Failure> {
    let (_, driver) = driver(&args.common).await?;
    let format = args.common.format.format;
    match cancel(driver.as_ref(), &args.id).await? {
        Some(cancelled) => print(
            &Summary(json!({ "id": args.id, "cancelled": cancelled })),
            format,
        ),
        None => {
            print(
                &Summary(json!({ "id": args.id, "cancelled": false })),
                format,
            )?;
            Err(no_batch(&args.id))
        }
    }
}

pub(super) async fn prune_batches(args: PruneBatchesArgs) -> Result<(), Failure> {
    let selection = BatchPrune {
        finished_before: hours_ago("--hours", args.hours)?,
        unfinished_before: args
            .unfinished_hours
            .map(|hours| hours_ago("--unfinished-hours", hours))
            .transpose()?,
    };
    let (_, driver) = driver(&args.common).await?;
    let pruned = prune(driver.as_ref(), selection).await?;
    print(
        &Summary(json!({ "pruned": pruned })),
        args.common.format.format,
    )
}
