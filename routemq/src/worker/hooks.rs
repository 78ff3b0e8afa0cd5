//! Lifecycle hooks: callbacks the worker runs at each step of a job (Laravel's `Queue::before`,
//! `Queue::after`, `Queue::failing`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::job::{JobContext, JobError};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lifecycle {
    /// Before the attempt runs (before any middleware).
    Before,
    /// After the attempt succeeded (the job is acknowledged), or a middleware skipped it.
    After,
    /// After an attempt failed (an error, a timeout or a panic), whether or not it will be retried.
    Failure,
    /// After the job failed for good and was moved to the failed store (before `failed()` runs).
    FinalFailure,
    /// After the job was put back to run again: a retry, a release or postponement, or a shutdown.
    Release,
    /// After a running job was stopped by a cancellation (`queue-cancel`) and acknowledged.
    Cancelled,
}

/// What a hook is told about the job.
#[derive(Debug, Clone, Copy)]
pub struct JobEvent<'a> {
    /// Which step this is.
    pub lifecycle: Lifecycle,
    /// The job's context: `job_name()`, `job_id()`, `queue()`, `attempts()`, `max_tries()`.
    pub ctx: &'a JobContext,
    /// The attempt's error, for `Failure`, `FinalFailure` and a `Release` that followed one.
    pub error: Option<&'a JobError>,
    /// How long the job waits before it runs again, for `Release`.
    pub delay: Option<Duration>,
    /// How long the attempt ran (`After`, `Failure`, `Release`, `FinalFailure`), if it ran.
    pub elapsed: Option<Duration>,
}

/// A hook: a quick, synchronous callback (spawn a task for slow work). A panic in a hook is
/// caught and logged; it never changes the job's outcome.
pub type Hook = Arc<dyn Fn(&JobEvent<'_>) + Send + Sync>;

/// The hooks registered on a worker.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    hooks: Vec<(Lifecycle, Hook)>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.hooks.iter().map(|(when, _)| when))
            .finish()
    }
}

impl Hooks {
    pub(crate) fn add(&mut self, when: Lifecycle, hook: Hook) {
        self.hooks.push((when, hook));
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn extend(&mut self, other: Hooks) {
        self.hooks.extend(other.hooks);
    }

    /// Runs the hooks for `event.lifecycle`, in the order they were added.
    pub(crate) fn fire(&self, event: &JobEvent<'_>) {
        for (when, hook) in &self.hooks {
            if *when != event.lifecycle {
                continue;
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(event)));
            if ran.is_err() {
                tracing::error!(
                    job_id = event.ctx.job_id(),
                    lifecycle = ?event.lifecycle,
                    "a lifecycle hook panicked; the job's outcome is unchanged"
                );
            }
        }
    }
}
