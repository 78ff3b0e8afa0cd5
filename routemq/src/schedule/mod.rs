//! Periodic jobs: declare them in code, run them from any number of schedulers.
//!
//! ```no_run
//! use routemq::prelude::*;
//! use routemq::schedule::Missed;
//!
//! #[job(queue = "reports")]
//! #[derive(Clone)]
//! struct DailyReport { team: String }
//!
//! impl Job for DailyReport {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//! }
//!
//! #[job]
//! #[derive(Clone)]
//! struct PruneSessions;
//!
//! impl Job for PruneSessions {
//!     async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let schedule = routemq::schedule()
//!         .job(DailyReport { team: "ops".into() })
//!         .cron("0 7 * * MON-FRI")
//!         .timezone("Europe/Paris")
//!         .missed(Missed::RunOnce)
//!         .job(PruneSessions)
//!         .cron("*/30 * * * * *"); // seconds first: every 30 seconds
//!     routemq::cli::App::new().schedule(schedule).main()
//! }
//! ```
//!
//! `queue-schedule` runs the schedules (`queue-work --schedule` runs them beside a worker), and
//! `queue-schedule-list` shows each one's next and last run. Run as many schedulers as you like:
//! each tick is claimed in the store of the job's connection (a [slot](crate::driver::slots)
//! named `schedule:{name}:{tick}`), so exactly one of them dispatches it. No leader, no lock held.
//!
//! A tick whose scheduler was down follows the schedule's [`Missed`] policy. Ticks are computed
//! from each host's clock, in the schedule's time zone (UTC by default): keep the hosts' clocks in
//! sync (NTP), as for any cron.

mod cron;
mod scheduler;
mod store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

pub use scheduler::{ScheduleStatus, Scheduler, SchedulerReport};

use crate::job::Job;
use crate::queue::{QueueError, QueueManager};

/// What a scheduler does about ticks that passed while no scheduler ran (a deploy, an outage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Missed {
    /// Skip them: the next run is the next tick (cron's and Laravel's behaviour).
    #[default]
    Skip,
    /// Run the job once for them, as soon as a scheduler starts, however many were missed (only
    /// if the schedule has run before: a new schedule starts at its next tick).
    RunOnce,
}

type DispatchFuture<'m> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'm>>;
type DispatchFn = Arc<dyn for<'m> Fn(&'m QueueManager, &Entry) -> DispatchFuture<'m> + Send + Sync>;

/// One periodic job.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) name: Option<String>,
    pub(crate) job: &'static str,
    pub(crate) cron: Option<String>,
    pub(crate) timezone: String,
    pub(crate) missed: Missed,
    pub(crate) queue: Option<String>,
    pub(crate) connection: Option<String>,
    pub(crate) job_connection: Option<&'static str>,
    pub(crate) dispatch: DispatchFn,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("job", &self.job)
            .field("cron", &self.cron)
            .field("timezone", &self.timezone)
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

/// Periodic jobs, declared in code: each [`job`](Schedule::job) is followed by the settings that
/// apply to it ([`cron`](Schedule::cron) is required). Mistakes (a bad expression, an unknown time
/// zone, a setting before any job, two schedules with one name) are reported together when a
/// [`Scheduler`] is made from it.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    entries: Vec<Entry>,
    errors: Vec<String>,
}

/// A schedule that cannot run, with every mistake found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The schedule's declarations are wrong.
    #[error("invalid schedule: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A new, empty [`Schedule`].
pub fn schedule() -> Schedule {
    Schedule::default()
}

impl Schedule {
    /// Adds `job`: a copy of it is dispatched at every tick of the [`cron`](Self::cron)
    /// expression that follows, to its type's queue and connection.
    #[must_use]
    pub fn job<T: Job + Clone>(mut self, job: T) -> Self {
        // A job type need not be `Sync`: the copy dispatched at each tick is cloned under a lock.
        let job = std::sync::Mutex::new(job);
        let dispatch: DispatchFn = Arc::new(move |manager: &QueueManager, entry: &Entry| {
            let job = job
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let mut pending = manager.push(job);
            if let Some(queue) = &entry.queue {
                pending = pending.on_queue(queue.clone());
            }
            if let Some(connection) = &entry.connection {
                pending = pending.on_connection(connection.clone());
            }
            Box::pin(async move { pending.await.map(|_| ()) }) as DispatchFuture<'_>
        });
        self.entries.push(Entry {
            name: None,
            job: T::NAME,
            cron: None,
            timezone: "UTC".to_owned(),
            missed: Missed::default(),
            queue: None,
            connection: None,
            job_connection: T::OPTIONS.connection,
            dispatch,
        });
        self
    }

    fn last(&mut self, setting: &str) -> Option<&mut Entry> {
        if self.entries.is_empty() {
            self.errors
                .push(format!("`{setting}` comes before any `job`"));
        }
        self.entries.last_mut()
    }

    /// When the last added job runs: a cron expression of five fields (minute hour day-of-month
    /// month day-of-week), or six with seconds first, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`. Ranges, steps, names (`MON-FRI`, `JAN`), `L`, `W` and `#` work
    /// as in [croner](https://docs.rs/croner).
    #[must_use]
    pub fn cron(mut self, expression: &str) -> Self {
        if let Some(entry) = self.last("cron") {
            entry.cron = Some(expression.to_owned());
        }
        self
    }

    /// The IANA time zone the last added job's cron expression is read in (default `UTC`), such
    /// as `Europe/Paris`: `0 7 * * *` then means 07:00 in Paris, summer and winter. Names come
    /// from the system's time zone database (`/usr/share/zoneinfo`; bundled on Windows).
    #[must_use]
    pub fn timezone(mut self, name: &str) -> Self {
        if let Some(entry) = self.last("timezone") {
            name.clone_into(&mut entry.timezone);
        }
        self
    }

    /// What happens to the last added job's ticks missed while no scheduler ran (default
    /// [`Missed::Skip`]).
    #[must_use]
    pub fn missed(mut self, policy: Missed) -> Self {
        if let Some(entry) = self.last("missed") {
            entry.missed = policy;
        }
        self
    }

    /// Names the last added job's schedule (default: `{job name} {cron expression}`). The name
    /// identifies its ticks in the store, so every scheduler must give it the same one; name it
    /// when the same job runs on two schedules with one expression.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        if let Some(entry) = self.last("name") {
            entry.name = Some(name.to_owned());
        }
        self
    }

    /// Sends the last added job to `queue` instead of its type's.
    #[must_use]
    pub fn on_queue(mut self, queue: &str) -> Self {
        if let Some(entry) = self.last("on_queue") {
            entry.queue = Some(queue.to_owned());
        }
        self
    }

    /// Sends the last added job to `connection` instead of its type's (its ticks are claimed
    /// there too).
    #[must_use]
    pub fn on_connection(mut self, connection: &str) -> Self {
        if let Some(entry) = self.last("on_connection") {
            entry.connection = Some(connection.to_owned());
        }
        self
    }

    /// Adds every job of `other`.
    #[must_use]
    pub fn merge(mut self, other: Schedule) -> Self {
        self.entries.extend(other.entries);
        self.errors.extend(other.errors);
        self
    }

    /// Whether no job is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn into_parts(self) -> (Vec<Entry>, Vec<String>) {
        (self.entries, self.errors)
    }
}

/// A dispatch of `entry`'s job on `manager`, to its queue and connection overrides.
pub(crate) fn dispatch<'m>(entry: &Entry, manager: &'m QueueManager) -> DispatchFuture<'m> {
    (entry.dispatch)(manager, entry)
}
