//! `queue-cancel ID...`: deletes queued or delayed jobs, stops running ones.

use clap::Args;
use serde::Serialize;

use super::output::{Render, print};
use super::{Common, EXIT_NOT_FOUND, Failure};
use crate::queue::cancel::{Cancellation, cancel};

/// `queue-cancel` arguments.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The jobs' ids (as `dispatch()` returned them; comma-separated or repeated).
    #[arg(required = true, value_delimiter = ',')]
    pub id: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

#[derive(Serialize)]
struct Cancelled {
    id: String,
    #[serde(flatten)]
    outcome: Outcome,
}

/// One id's answer: what the cancellation did, or the error that stopped it.
#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Done(Cancellation),
    Failed { status: &'static str, error: String },
}

#[derive(Serialize)]
#[serde(transparent)]
struct CancelList(Vec<Cancelled>);

impl Render for CancelList {
    fn headers(&self) -> Vec<String> {
        ["id", "status", "queue"].map(str::to_owned).to_vec()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|c| {
                let (status, queue) = match &c.outcome {
                    Outcome::Done(Cancellation::Removed { queue }) => ("removed", queue.as_str()),
                    Outcome::Done(Cancellation::Signalled { queue }) => {
                        ("signalled", queue.as_str())
                    }
                    Outcome::Done(_) => ("not_found", ""),
                    Outcome::Failed { error, .. } => ("error", error.as_str()),
                };
                vec![c.id.clone(), status.to_owned(), queue.to_owned()]
            })
            .collect()
    }
}

/// Cancels each job and prints what happened to every one. Exit code 1 when one of them failed
/// (the store is unreachable), else 3 when one of them was not found; the others are cancelled
/// either way.
pub(super) async fn run(args: CancelArgs) -> Result<(), Failure> {
    let (_, driver) = super::admin::driver(&args.common).await?;
    let mut done = Vec::with_capacity(args.id.len());
    for id in args.id {
        let outcome = match cancel(driver.as_ref(), &id).await {
            Ok(cancellation) => Outcome::Done(cancellation),
            Err(error) => Outcome::Failed {
                status: "error",
                error: error.to_string(),
            },
        };
        done.push(Cancelled { id, outcome });
    }
    let ids = |pick: fn(&Outcome) -> bool| -> Vec<&str> {
        done.iter()
            .filter(|c| pick(&c.outcome))
            .map(|c| c.id.as_str())
            .collect()
    };
    let failed = ids(|o| matches!(o, Outcome::Failed { .. }));
    let missing = ids(|o| matches!(o, Outcome::Done(Cancellation::NotFound)));
    let failure = if !failed.is_empty() {
        Some(Failure {
            message: format!("could not cancel {}", failed.join(", ")),
            code: 1,
        })
    } else if !missing.is_empty() {
        Some(Failure {
            message: format!(
                "no queued or running job with id {} (finished, failed, or never stored)",
                missing.join(", ")
            ),
            code: EXIT_NOT_FOUND,
        })
    } else {
        None
    };
    print(&CancelList(done), args.common.format.format)?;
    failure.map_or(Ok(()), Err)
}
