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
    outcome: Cancellation,
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
                    Cancellation::Removed { queue } => ("removed", queue.as_str()),
                    Cancellation::Signalled { queue } => ("signalled", queue.as_str()),
                    _ => ("not_found", ""),
                };
                vec![c.id.clone(), status.to_owned(), queue.to_owned()]
            })
            .collect()
    }
}

/// Cancels each job; exit code 3 when one of them was not found (the others are still cancelled).
pub(super) async fn run(args: CancelArgs) -> Result<(), Failure> {
    let (_, driver) = super::admin::driver(&args.common).await?;
    let mut done = Vec::with_capacity(args.id.len());
    for id in args.id {
        let outcome = cancel(driver.as_ref(), &id).await?;
        done.push(Cancelled { id, outcome });
    }
    let missing: Vec<&str> = done
        .iter()
        .filter(|c| c.outcome == Cancellation::NotFound)
        .map(|c| c.id.as_str())
        .collect();
    let missing = (!missing.is_empty()).then(|| Failure {
        message: format!(
            "no queued or running job with id {} (finished, failed, or never stored)",
            missing.join(", ")
        ),
        code: EXIT_NOT_FOUND,
    });
    print(&CancelList(done), args.common.format.format)?;
    missing.map_or(Ok(()), Err)
}
