//! `queue-schedule` (run the app's schedules until a signal) and `queue-schedule-list`.

use clap::Args;
use serde::Serialize;

use super::output::{Render, print};
use super::{Common, Failure};
use crate::schedule::{Schedule, ScheduleStatus, Scheduler};
use crate::worker::Shutdown;
use crate::{QueueManager, queue};

/// `queue-schedule` arguments.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {}

/// The app's schedules checked, for `manager`; exit code 2 when they are invalid or there are none.
pub(super) fn scheduler(
    schedule: Schedule,
    manager: &QueueManager,
) -> Result<Scheduler<'_>, Failure> {
    if schedule.is_empty() {
        return Err(Failure {
            message: "this binary has no schedules: declare them with routemq::schedule() and \
                      register them with routemq::cli::App::new().schedule(..)"
                .to_owned(),
            code: 2,
        });
    }
    Scheduler::new(schedule, manager).map_err(|error| Failure {
        message: error.to_string(),
        code: 2,
    })
}

/// Runs the schedules until SIGTERM or SIGINT.
pub(super) async fn run(schedule: Schedule) -> Result<(), Failure> {
    queue().settings()?;
    let scheduler = scheduler(schedule, queue())?;
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(shutdown.clone().on_signals());
    let report = scheduler.run(shutdown.drained()).await;
    signals.abort();
    report?;
    Ok(())
}

#[derive(Serialize)]
#[serde(transparent)]
struct StatusList(Vec<ScheduleStatus>);

impl Render for StatusList {
    fn headers(&self) -> Vec<String> {
        [
            "name",
            "job",
            "cron",
            "timezone",
            "missed",
            "connection",
            "next_run",
            "last_run",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|s| {
                let missed = serde_json::to_value(s.missed)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    s.name.clone(),
                    s.job.clone(),
                    s.cron.clone(),
                    s.timezone.clone(),
                    missed,
                    s.connection.clone(),
                    s.next_run.clone().unwrap_or_default(),
                    s.last_run.clone().unwrap_or_default(),
                ]
            })
            .collect()
    }
}

/// Prints each schedule with its next and last run.
pub(super) async fn list(schedule: Schedule, common: Common) -> Result<(), Failure> {
    queue().settings()?;
    let scheduler = scheduler(schedule, queue())?;
    let statuses = scheduler.list().await?;
    print(&StatusList(statuses), common.format.format)
}
