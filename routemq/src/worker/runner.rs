//! One job, start to finish: decode, run the attempt under its timeout ([`Attempt::execute`]),
//! decide what happens to the reservation ([`Verdict`]), and settle it with the driver
//! ([`Attempt::settle`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::cancels::Watched;
use super::chain::{run_chain_catch, store_link};
use super::hooks::{JobEvent, Lifecycle};
use super::unique_key::UniqueKey;
use super::writes::StartAnswer;
use super::{CANCEL_GRACE, Outcome, STOP_WAIT, Shared};
use crate::batch::state::Outcome as BatchOutcome;
use crate::driver::{DriverError, Failure, Lease, ReservedJob};
use crate::envelope::{Envelope, short_name};
use crate::job::{JobContext, JobError, UniqueUntil};
use crate::metrics::{JobSeries, metrics};
use crate::observability::{self, TraceContext};
use crate::registry::{DecodeError, ErasedJob, JobRegistration};
use crate::retry::{JobRetry, retry_delay};

/// Keeps a job's lease in the heartbeat set until the job is settled, however its task ends
/// (a panic anywhere in processing included): the lease is then left to expire, never renewed forever.
struct Heartbeating {
    shared: Arc<Shared>,
    key: u64,
}

impl Drop for Heartbeating {
    fn drop(&mut self) {
        self.shared.running().remove(&self.key);
    }
}

/// Runs one reserved job; its lease leaves the heartbeat set when this returns or unwinds.
pub(crate) async fn run(shared: Arc<Shared>, job: ReservedJob, key: u64) -> Outcome {
    let heartbeating = Heartbeating { shared, key };
    let shared = &heartbeating.shared;
    match start(shared, job, key).await {
        Some((job, start)) => process(shared, job, start, key).await,
        None => Outcome::NotStarted,
    }
}

/// Starts a prefetched job (counts its attempt): in the background, so the job runs at once, with
/// the answer to await before any settlement other than an acknowledgement; or, for a job taken
/// back unstarted before (its worker may have died of it), first, waiting until the start is stored.
/// `None`: the job must not run (its lease was taken back, or the broker could not be reached).
async fn start(
    shared: &Shared,
    mut job: ReservedJob,
    key: u64,
) -> Option<(ReservedJob, Option<StartAnswer>)> {
    let Some(prefetched) = job.prefetched.take() else {
        return Some((job, None));
    };
    let answer = shared.writes.start(job.lease.clone(), key);
    if prefetched.stalls == 0 {
        job.lease = prefetched.started;
        return Some((job, Some(answer)));
    }
    let Some(started) = answer.landed().await else {
        tracing::info!(job_id = %job.lease.id, queue = %job.lease.queue, "a prefetched job was not started (its lease was taken back, or the broker is unreachable); it stays queued");
        return None;
    };
    job.lease = started;
    Some((job, None))
}

/// The `queue.job` span of an attempt, continuing the producer's trace.
fn job_span(lease: &Lease, name: &str, trace: &TraceContext, link: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "queue.job",
        otel.kind = "consumer",
        messaging.system = "routemq.queue",
        messaging.destination = %lease.queue,
        routemq.job.name = %name,
        routemq.job.id = %lease.id,
        routemq.job.attempt = lease.attempts,
        routemq.process.role = "queue-worker",
        trace_id = %trace.trace_id,
        span_id = %trace.span_id,
        link.trace_id = link.map(|_| trace.trace_id.as_str()),
        link.span_id = link,
        correlation_id = trace.correlation_id.as_deref(),
    )
}

/// What happens to a reservation once its attempt is over.
enum Verdict {
    /// It succeeded: acknowledge it (in a batch).
    Ack,
    /// A failed attempt with tries left: back to the queue, visible after `delay`.
    Retry { delay: Duration, error: JobError },
    /// Not now (a middleware's or the job's `JobError::postpone`): back to the queue, visible
    /// after `delay`, the attempt refunded.
    Postpone { delay: Duration },
    /// Failed for good: into the failed store, then `failed()` once.
    Fail {
        error: JobError,
        job: Option<Box<dyn ErasedJob>>,
    },
    /// Stopped by a shutdown before it finished: back to the queue now, the attempt refunded.
    Unfinished,
    /// Stopped by a cancellation: acknowledged, neither retried nor failed.
    Cancelled,
}

/// How the handler's task ended.
enum Ended {
    Returned(Box<dyn ErasedJob>, Result<(), JobError>),
    Panicked(String),
    TimedOut,
    Cancelled,
    StoppedNow,
}

/// A decoded job and what the worker needs to run and settle it.
struct Attempt<'a> {
    shared: &'a Shared,
    lease: Lease,
    envelope: Envelope,
    registration: &'static JobRegistration,
    ctx: JobContext,
    trace: TraceContext,
    series: Arc<JobSeries>,
    timeout: Duration,
    /// The start of a prefetched job, while it may still be on its way.
    start: Option<StartAnswer>,
    /// How long the attempt ran, once it has.
    elapsed: Option<Duration>,
    /// A unique job's key, given back when it starts or finishes.
    unique: Option<UniqueKey>,
    /// Fires when the job's cancellation is requested.
    cancel_request: Watched<'a>,
}

/// How long a job whose outcome could not be recorded in its batch waits before it runs again.
const BATCH_RECORD_RETRY: Duration = Duration::from_secs(10);

/// How long a job's exception count is kept (it is cleared when the job finishes).
const EXCEPTIONS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

async fn process(
    shared: &Shared,
    job: ReservedJob,
    start: Option<StartAnswer>,
    key: u64,
) -> Outcome {
    let ReservedJob { lease, payload, .. } = job;
    let (envelope, registration, erased) = match shared.registry.decode(&payload) {
        Ok(decoded) => decoded,
        Err(error) => {
            let Some(lease) = started(lease, start).await else {
                return Outcome::Abandoned;
            };
            return fail_undecodable(shared, &lease, &payload, &error).await;
        }
    };
    let trace = observability::consumer_ids(envelope.observability());
    let span = job_span(
        &lease,
        registration.name(),
        &trace.context,
        trace.link_span_id.as_deref(),
    );
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut context = trace.context;
    #[cfg(feature = "otel")]
    {
        // With an OpenTelemetry layer: the job span is a child of the producer's span.
        if let Some(parent) = trace.link_span_id.as_deref() {
            observability::otel::adopt_parent(&span, &context.trace_id, parent);
        }
        if let Some((trace_id, span_id)) = observability::otel::ids_of(&span) {
            span.record("trace_id", trace_id.as_str());
            span.record("span_id", span_id.as_str());
            context.trace_id = trace_id;
            context.span_id = span_id;
        }
    }
    observability::scope(
        context.clone(),
        decoded(
            shared,
            (key, lease),
            start,
            envelope,
            registration,
            erased,
            context,
        )
        .instrument(span),
    )
    .await
}

/// A job's tries (the worker's `--max-tries` wins) and its attempt timeout (the worker's
/// `--timeout` when the envelope sets none; at most ten years).
fn limits(shared: &Shared, envelope: &Envelope) -> (u32, Duration) {
    let max_tries = shared
        .options
        .max_tries
        .unwrap_or_else(|| envelope.effective_max_tries());
    let timeout = envelope
        .timeout_secs()
        .map_or(shared.options.timeout, crate::limits::clamped_secs);
    (max_tries, timeout)
}

/// `held`: the job's key in the heartbeat set and its lease.
async fn decoded(
    shared: &Shared,
    (key, lease): (u64, Lease),
    start: Option<StartAnswer>,
    envelope: Envelope,
    registration: &'static JobRegistration,
    erased: Box<dyn ErasedJob>,
    trace: TraceContext,
) -> Outcome {
    let (max_tries, timeout) = limits(shared, &envelope);
    let cancel = CancellationToken::new();
    let ctx = JobContext::new(
        lease.id.clone(),
        lease.attempts,
        lease.queue.clone(),
        shared.connection.clone(),
    )
    .with_max_tries(max_tries)
    .with_cancel(cancel.clone())
    .with_name(registration.name())
    .with_data(shared.extensions.data.clone())
    .with_driver(Arc::clone(&shared.driver))
    .with_timeout(timeout)
    .with_batch(envelope.batch().map(|batch| batch.id.clone()));
    let series = metrics().job(&lease.queue, short_name(registration.name()));
    let unique = UniqueKey::of(&envelope, registration);
    let mut attempt = Attempt {
        shared,
        lease,
        envelope,
        registration,
        ctx,
        trace,
        series,
        timeout,
        start,
        elapsed: None,
        unique,
        cancel_request: shared.cancels.watch(key),
    };
    let verdict = if attempt.lease.attempts > max_tries {
        tracing::warn!(job_id = %attempt.lease.id, job = registration.name(), "job exceeded max tries, moving to failed store");
        attempt.series.dead_lettered("max_tries_exceeded");
        Verdict::Fail {
            error: JobError::permanent(format!("max tries exceeded ({max_tries})")),
            job: Some(erased),
        }
    } else if attempt.lease.attempts > 1 && attempt.past_retry_until(Duration::ZERO) {
        tracing::warn!(job_id = %attempt.lease.id, job = registration.name(), "retry_until passed, moving to failed store");
        attempt.series.dead_lettered("retry_until_passed");
        Verdict::Fail {
            error: JobError::permanent("retry_until passed before this try"),
            job: Some(erased),
        }
    } else if attempt.cancelled_before_running().await {
        Verdict::Cancelled
    } else if super::batch::skipped(shared, &attempt.envelope).await {
        tracing::info!(job_id = %attempt.lease.id, job = registration.name(), "the job's batch is cancelled: skipping it");
        Verdict::Cancelled
    } else {
        let verdict = attempt.execute(erased, cancel).await;
        let verdict = attempt.limit_retries(verdict).await;
        attempt.continue_chain(verdict).await
    };
    let elapsed = attempt.elapsed;
    let outcome = attempt.settle(verdict).await;
    shared
        .activity
        .record(registration.name(), elapsed, outcome);
    outcome
}

impl Attempt<'_> {
    /// Whether the job was cancelled before it could run: seen by the poll while it waited in
    /// the prefetch buffer, or (asked once, for a job running again after a retry or a dead
    /// worker) signalled since.
    async fn cancelled_before_running(&self) -> bool {
        self.cancel_request.request().is_cancelled()
            || (self.lease.attempts > 1
                && super::cancels::signalled(self.shared.driver.as_ref(), &self.lease.id).await)
    }

    /// Whether the job's cancellation has been requested (asked once if the poll has not seen it).
    async fn cancellation_signalled(&self) -> bool {
        self.cancel_request.request().is_cancelled()
            || super::cancels::signalled(self.shared.driver.as_ref(), &self.lease.id).await
    }

    /// Runs `handle` under the timeout and the shutdown, and decides what happens to the job.
    async fn execute(&mut self, job: Box<dyn ErasedJob>, cancel: CancellationToken) -> Verdict {
        tracing::info!(
            job_id = %self.lease.id,
            job = self.registration.name(),
            queue = %self.lease.queue,
            attempt = self.lease.attempts,
            "processing job"
        );
        self.fire(Lifecycle::Before, None, None);
        if let Some(unique) = &self.unique {
            unique
                .give_back(self.shared.driver.as_ref(), UniqueUntil::Start)
                .await;
        }
        let started = tokio::time::Instant::now();
        let ctx = self.ctx.clone();
        self.series.started();
        let middleware = self.shared.middleware_for(&self.lease.queue);
        let handle = async move {
            let mut job = job;
            let result = crate::middleware::run_chain(&middleware, job.as_mut(), &ctx).await;
            (job, result)
        };
        let span = tracing::Span::current();
        let task = tokio::spawn(observability::scope(self.trace.clone(), handle).instrument(span));
        let (ended, draining) = self.watch(task, &cancel).await;
        let elapsed = started.elapsed();
        if !matches!(ended, Ended::StoppedNow) {
            self.series.duration(elapsed.as_secs_f64());
            self.elapsed = Some(elapsed);
        }
        match ended {
            Ended::StoppedNow => Verdict::Unfinished,
            Ended::Cancelled => Verdict::Cancelled,
            Ended::TimedOut => {
                tracing::error!(job_id = %self.lease.id, job = self.registration.name(), timeout = ?self.timeout, "job timed out");
                self.series.timed_out();
                self.after_failure(
                    JobError::TimedOut {
                        after: self.timeout,
                    },
                    None,
                )
            }
            Ended::Panicked(message) => {
                tracing::error!(job_id = %self.lease.id, job = self.registration.name(), %message, "job panicked");
                self.after_failure(JobError::Panicked(message), None)
            }
            Ended::Returned(_, Ok(())) => {
                tracing::info!(job_id = %self.lease.id, job = self.registration.name(), ?elapsed, "job completed");
                Verdict::Ack
            }
            Ended::Returned(_, Err(JobError::Postponed { delay })) => Verdict::Postpone {
                delay: crate::limits::clamp(delay),
            },
            // Stopped by the shutdown token: put it back without using up an attempt. A release
            // the job asked for keeps its own delay.
            Ended::Returned(_, Err(error))
                if draining
                    && error.is_retryable()
                    && !matches!(error, JobError::Release { .. }) =>
            {
                Verdict::Unfinished
            }
            Ended::Returned(job, Err(error)) => self.after_failure(error, Some(job)),
        }
    }

    /// Waits for the handler's task under the timeout; a drain fires the job's token. Returns how
    /// it ended and whether a drain had started. After a timeout or a cancellation the token fires
    /// and the handler gets [`CANCEL_GRACE`] to return before it is aborted; the lease stays in the
    /// heartbeat set until the task has really ended, so the job cannot run elsewhere meanwhile.
    async fn watch(
        &self,
        mut task: JoinHandle<(Box<dyn ErasedJob>, Result<(), JobError>)>,
        cancel: &CancellationToken,
    ) -> (Ended, bool) {
        let shutdown = &self.shared.shutdown;
        let mut draining = shutdown.is_draining();
        if draining {
            cancel.cancel();
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let requested = self.cancel_request.request();
        let stopped = loop {
            tokio::select! {
                joined = &mut task => {
                    let ended = match joined {
                        Ok((job, result)) => Ended::Returned(job, result),
                        Err(error) => Ended::Panicked(panic_message(error)),
                    };
                    return (ended, draining);
                }
                () = &mut deadline => break Ended::TimedOut,
                () = requested.cancelled() => break Ended::Cancelled,
                () = shutdown.drained(), if !draining => {
                    draining = true;
                    cancel.cancel();
                }
                () = shutdown.stopped_now() => {
                    end_task(task, STOP_WAIT).await;
                    return (Ended::StoppedNow, draining);
                }
            }
        };
        cancel.cancel();
        let abort = task.abort_handle();
        let ended = tokio::select! {
            _ = async {
                if tokio::time::timeout(CANCEL_GRACE, &mut task).await.is_err() {
                    end_task(task, Duration::MAX).await;
                }
            } => stopped,
            () = shutdown.stopped_now() => {
                abort.abort();
                Ended::StoppedNow
            }
        };
        (ended, draining)
    }

    /// A failed attempt: retry while tries remain, otherwise fail for good.
    fn after_failure(&self, error: JobError, job: Option<Box<dyn ErasedJob>>) -> Verdict {
        let tries_left = self.lease.attempts < self.ctx.max_tries();
        if !(error.is_retryable() && tries_left) {
            return Verdict::Fail { error, job };
        }
        let delay = match &error {
            JobError::Release { delay } => crate::limits::clamp(*delay),
            _ => retry_delay(
                &self.retry_settings(),
                &self.shared.options.retry,
                self.lease.attempts,
            ),
        };
        Verdict::Retry { delay, error }
    }

    /// Whether a try `delay` from now would come after the job's `retry_until` deadline.
    fn past_retry_until(&self, delay: Duration) -> bool {
        self.envelope
            .retry_until()
            .is_some_and(|deadline| std::time::SystemTime::now() + delay > deadline)
    }

    /// Turns a retry into a final failure when the job has no more tries to make: its
    /// `retry_until` deadline would pass first, or this was its `max_exceptions`-th exception.
    async fn limit_retries(&self, verdict: Verdict) -> Verdict {
        if let Verdict::Postpone { delay } = verdict {
            return if self.past_retry_until(delay) {
                Verdict::Fail {
                    error: JobError::permanent("retry_until passed while the job was held back"),
                    job: None,
                }
            } else {
                verdict
            };
        }
        let Verdict::Retry { delay, error } = verdict else {
            return verdict;
        };
        if self.past_retry_until(delay) {
            return Verdict::Fail {
                error: JobError::permanent(format!("retry_until passed, no more tries: {error}")),
                job: None,
            };
        }
        if let Some(max) = self.registration.options().max_exceptions
            && error.is_exception()
            && self.exceptions_reached(max).await
        {
            return Verdict::Fail {
                error: JobError::permanent(format!(
                    "{max} exceptions, the job's max_exceptions: {error}"
                )),
                job: None,
            };
        }
        Verdict::Retry { delay, error }
    }

    /// After a success, stores the next job of the job's chain, before the job is acknowledged:
    /// if that fails, the job is put back to run again (at least once, never a lost chain).
    async fn continue_chain(&self, verdict: Verdict) -> Verdict {
        if !matches!(verdict, Verdict::Ack) {
            return verdict;
        }
        let Some(chain) = self.envelope.chain() else {
            return verdict;
        };
        let Some((next, rest)) = chain.next.split_first() else {
            return verdict;
        };
        let rest = crate::envelope::Chain {
            next: rest.to_vec(),
            catch: chain.catch.clone(),
        };
        match store_link(self.shared, next, Some(rest)).await {
            Ok(()) => verdict,
            // A failed attempt: retried while tries remain, then the chain fails (its catch job
            // runs) rather than retrying for ever.
            Err(error) => {
                tracing::error!(job_id = %self.lease.id, %error, "could not store the next job of the chain");
                let error = JobError::msg(format!(
                    "could not store the next job of its chain: {error}"
                ));
                self.after_failure(error, None)
            }
        }
    }

    /// Records a job's outcome in its batch before the job is settled. A success or a
    /// cancellation that cannot be recorded puts the job back, its attempt refunded (it runs, or
    /// is skipped, again later, and counts once); a failure that cannot be recorded is logged,
    /// and the job goes to the failed store.
    async fn record_in_batch(&self, verdict: Verdict) -> Verdict {
        if self.envelope.batch().is_none() {
            return verdict;
        }
        let outcome = match verdict {
            Verdict::Ack => BatchOutcome::Succeeded,
            Verdict::Fail { .. } => BatchOutcome::Failed,
            Verdict::Cancelled => BatchOutcome::Cancelled,
            _ => return verdict,
        };
        match super::batch::record(self.shared, &self.envelope, outcome).await {
            Ok(()) => verdict,
            Err(error) if outcome != BatchOutcome::Failed => {
                tracing::error!(job_id = %self.lease.id, %error, "could not record the job in its batch; putting it back");
                Verdict::Postpone {
                    delay: BATCH_RECORD_RETRY,
                }
            }
            Err(error) => {
                tracing::error!(job_id = %self.lease.id, %error, "could not record the job's outcome in its batch; the batch will not finish");
                verdict
            }
        }
    }

    /// Counts this attempt's exception in the job's slot; `true` when it is the `max`-th. A
    /// driver that cannot count leaves the job to its tries.
    async fn exceptions_reached(&self, max: u32) -> bool {
        let holder = format!("attempt-{}", self.lease.attempts);
        let counted = self
            .shared
            .driver
            .acquire_slot(&self.exceptions_slot(), &holder, max - 1, EXCEPTIONS_KEPT)
            .await;
        match counted {
            Ok(slot) => !slot.taken,
            Err(error) => {
                tracing::warn!(job_id = %self.lease.id, %error, "could not count the job's exceptions");
                false
            }
        }
    }

    /// Where a job with `max_exceptions` counts them.
    fn exceptions_slot(&self) -> String {
        format!(
            "exceptions:{}:{}:{}",
            self.shared.connection, self.lease.queue, self.lease.id
        )
    }

    /// Carries out a verdict with the driver. An acknowledgement is queued behind the job's start;
    /// anything else waits for the start to land, and uses the lease it gives.
    async fn settle(mut self, verdict: Verdict) -> Outcome {
        // A job cancelled while it ran is not put back: it ends as cancelled.
        let verdict = match verdict {
            Verdict::Retry { .. } | Verdict::Postpone { .. } | Verdict::Unfinished
                if self.cancellation_signalled().await =>
            {
                Verdict::Cancelled
            }
            verdict => verdict,
        };
        if !matches!(verdict, Verdict::Ack)
            && let Some(start) = self.start.take()
        {
            match start.landed().await {
                Some(lease) => self.lease = lease,
                None => {
                    tracing::warn!(job_id = %self.lease.id, "the job's start was not stored (its lease was taken back, or the broker is unreachable); the reaper will return it");
                    return Outcome::Abandoned;
                }
            }
        }
        // After the start landed (a job the reaper takes back is not counted), before the job
        // is settled (a crash in between records it again, once).
        let verdict = self.record_in_batch(verdict).await;
        let driver = &self.shared.driver;
        match verdict {
            Verdict::Ack => {
                self.series.succeeded();
                if !self.shared.writes.ack(self.lease.clone()) {
                    tracing::error!(job_id = %self.lease.id, "acknowledgement channel closed; the job may run again");
                }
                self.fire(Lifecycle::After, None, None);
                self.finished().await;
                Outcome::Succeeded
            }
            Verdict::Cancelled => {
                tracing::info!(job_id = %self.lease.id, job = self.registration.name(), "job cancelled");
                // Acknowledged at once (not batched), so that the signal is taken down only once
                // the job is gone: a job whose acknowledgement fails is still stopped when the
                // reaper hands it out again.
                let acked = with_retries("ack", || async {
                    driver
                        .ack(std::slice::from_ref(&self.lease))
                        .await
                        .map(|()| true)
                })
                .await;
                let outcome = self.settled(acked, "ack", Outcome::Cancelled);
                if outcome == Outcome::Cancelled {
                    self.series.cancelled();
                    crate::queue::cancel::clear(driver.as_ref(), &self.lease.id).await;
                    self.fire(Lifecycle::Cancelled, None, None);
                    self.finished().await;
                }
                outcome
            }
            Verdict::Postpone { delay } => {
                tracing::info!(job_id = %self.lease.id, job = self.registration.name(), ?delay, "job postponed, its attempt refunded");
                let held =
                    with_retries("release", || driver.release(&self.lease, delay, true)).await;
                let outcome = self.settled(held, "release", Outcome::Postponed);
                if outcome == Outcome::Postponed {
                    self.fire(Lifecycle::Release, None, Some(delay));
                }
                outcome
            }
            Verdict::Retry { delay, error } => {
                if error.is_exception() {
                    self.fire(Lifecycle::Failure, Some(&error), None);
                }
                tracing::warn!(
                    job_id = %self.lease.id,
                    job = self.registration.name(),
                    attempt = self.lease.attempts,
                    max_tries = self.ctx.max_tries(),
                    ?delay,
                    %error,
                    "job failed, released back to queue"
                );
                let held =
                    with_retries("release", || driver.release(&self.lease, delay, false)).await;
                let outcome = self.settled(held, "release", Outcome::Retried);
                if outcome == Outcome::Retried {
                    self.series.retried();
                    self.fire(Lifecycle::Release, Some(&error), Some(delay));
                }
                outcome
            }
            Verdict::Fail { error, job } => self.fail(error, job).await,
            Verdict::Unfinished => {
                tracing::warn!(job_id = %self.lease.id, job = self.registration.name(), "releasing unfinished job at shutdown");
                let held = driver.release(&self.lease, Duration::ZERO, true).await;
                let outcome = self.settled(held, "release", Outcome::Released);
                if outcome == Outcome::Released {
                    self.fire(Lifecycle::Release, None, Some(Duration::ZERO));
                }
                outcome
            }
        }
    }

    /// Once the job has finished (succeeded or failed for good): gives back a unique job's key
    /// and forgets its exception count.
    async fn finished(&self) {
        if let Some(unique) = &self.unique {
            unique
                .give_back(self.shared.driver.as_ref(), UniqueUntil::Finish)
                .await;
        }
        if self.registration.options().max_exceptions.is_some()
            && let Err(error) = self
                .shared
                .driver
                .release_slot(&self.exceptions_slot(), None)
                .await
        {
            tracing::debug!(job_id = %self.lease.id, %error, "could not clear the exception count; it expires by itself");
        }
    }

    /// Runs the worker's hooks for `lifecycle`.
    fn fire(&self, lifecycle: Lifecycle, error: Option<&JobError>, delay: Option<Duration>) {
        self.shared.extensions.hooks.fire(&JobEvent {
            lifecycle,
            ctx: &self.ctx,
            error,
            delay,
            elapsed: self.elapsed,
        });
    }

    /// The failed store first, then `failed()` once, only if this worker's lease put it there:
    /// a lease lost to the reaper means the job is settled elsewhere, and `failed()` is not run twice.
    async fn fail(self, error: JobError, job: Option<Box<dyn ErasedJob>>) -> Outcome {
        let kind = error.kind();
        let exception = format!("{kind}: {error}");
        tracing::error!(job_id = %self.lease.id, job = self.registration.name(), %exception, "job failed permanently");
        if self.elapsed.is_some() && error.is_exception() {
            self.fire(Lifecycle::Failure, Some(&error), None);
        }
        let failure = Failure {
            connection: self.shared.connection.clone(),
            exception,
        };
        let held = with_retries("fail", || self.shared.driver.fail(&self.lease, &failure)).await;
        let outcome = self.settled(held, "fail", Outcome::Failed);
        if outcome != Outcome::Failed {
            return outcome;
        }
        self.series.failed(kind);
        self.fire(Lifecycle::FinalFailure, Some(&error), None);
        self.finished().await;
        run_chain_catch(self.shared, &self.envelope).await;
        let job = job.or_else(|| {
            let data = self.envelope.plain_data().ok()?;
            self.registration.decode(&data).ok()
        });
        if let Some(job) = job {
            run_failed_hook(job, self.ctx.clone(), error, self.timeout, &self.lease.id).await;
        }
        outcome
    }

    /// The outcome of a settling driver call: `done` when the lease was still held.
    fn settled(&self, held: Result<bool, DriverError>, operation: &str, done: Outcome) -> Outcome {
        match held {
            Ok(true) => done,
            Ok(false) => {
                tracing::warn!(job_id = %self.lease.id, operation, "lease no longer held (reaped after the visibility timeout)");
                Outcome::Abandoned
            }
            Err(error) => {
                tracing::error!(job_id = %self.lease.id, operation, %error, "settling the job failed; the reaper will return it");
                Outcome::Abandoned
            }
        }
    }

    fn retry_settings(&self) -> JobRetry {
        JobRetry {
            retry_after: self.envelope.retry_after_secs(),
            backoff_enabled: self.envelope.backoff_enabled(),
            max_delay: self.envelope.backoff_max_delay(),
            jitter: self.envelope.backoff_jitter(),
        }
    }
}

/// Runs `failed()` for a job the reaper moved to the failed store (its last attempt died with its
/// worker, or stalled past the visibility timeout). Only the pass that moved the job lists it, so
/// the hook runs once.
pub(crate) async fn failed_after_expiry(shared: &Shared, job: ReservedJob) {
    let ReservedJob { lease, payload, .. } = job;
    // The chain's catch job and the batch need only the envelope: handled even for a job this
    // worker cannot run.
    if let Ok(envelope) = Envelope::decode(&payload) {
        record_failure_in_batch(shared, &envelope).await;
        run_chain_catch(shared, &envelope).await;
    }
    let Ok((envelope, registration, erased)) = shared.registry.decode(&payload) else {
        return; // Not a job this worker knows: no hook to run.
    };
    if let Some(unique) = UniqueKey::of(&envelope, registration) {
        unique
            .give_back(shared.driver.as_ref(), UniqueUntil::Finish)
            .await;
    }
    let (max_tries, timeout) = limits(shared, &envelope);
    let ctx = JobContext::new(
        lease.id.clone(),
        lease.attempts,
        lease.queue.clone(),
        shared.connection.clone(),
    )
    .with_max_tries(max_tries)
    .with_name(registration.name())
    .with_data(shared.extensions.data.clone());
    metrics()
        .job(&lease.queue, short_name(registration.name()))
        .failed("ReservationExpired");
    let error = JobError::ReservationExpired {
        visibility_timeout: shared.options.visibility_timeout,
    };
    shared.extensions.hooks.fire(&JobEvent {
        lifecycle: Lifecycle::FinalFailure,
        ctx: &ctx,
        error: Some(&error),
        delay: None,
        elapsed: None,
    });
    run_failed_hook(erased, ctx, error, timeout, &lease.id).await;
}

/// Records in its batch a job that failed for good outside a run (reaped, or undecodable).
async fn record_failure_in_batch(shared: &Shared, envelope: &Envelope) {
    if let Err(error) = super::batch::record(shared, envelope, BatchOutcome::Failed).await {
        tracing::error!(%error, "could not record a failed job in its batch; the batch will not finish");
    }
}

/// Runs `failed()` under the job's timeout; a panic or an overrun is logged, never fatal.
async fn run_failed_hook(
    mut job: Box<dyn ErasedJob>,
    ctx: JobContext,
    error: JobError,
    timeout: Duration,
    job_id: &str,
) {
    let kind = error.kind();
    let hook = tokio::spawn(async move { job.failed(&ctx, &error).await });
    match tokio::time::timeout(timeout, hook).await {
        Ok(Ok(())) => {}
        Ok(Err(join_error)) => {
            tracing::error!(job_id, %kind, "failed() panicked: {}", panic_message(join_error));
        }
        Err(_) => {
            tracing::error!(job_id, %kind, ?timeout, "failed() ran past the job's timeout and was abandoned")
        }
    }
}

/// Aborts a task and waits up to `limit` for it to end (a task that never yields cannot be
/// stopped from outside; it ends when it returns).
async fn end_task<T>(mut task: JoinHandle<T>, limit: Duration) {
    task.abort();
    let _ = tokio::time::timeout(crate::limits::clamp(limit), &mut task).await;
}

/// The lease to settle a job with once its start (if it had one on its way) has landed.
async fn started(lease: Lease, start: Option<StartAnswer>) -> Option<Lease> {
    match start {
        None => Some(lease),
        Some(start) => start.landed().await,
    }
}

/// A payload that cannot run here (malformed, unknown tag, fields that do not fit) goes straight to
/// the failed store with the reason: it would fail the same way on every try.
async fn fail_undecodable(
    shared: &Shared,
    lease: &Lease,
    payload: &str,
    error: &DecodeError,
) -> Outcome {
    let kind = match error {
        DecodeError::Envelope(_) => "InvalidPayload",
        DecodeError::UnknownJob(_) => "UnknownJob",
        DecodeError::Payload { .. } => "PayloadMismatch",
        DecodeError::Sealed { .. } => "DecryptionFailed",
    };
    tracing::error!(job_id = %lease.id, queue = %lease.queue, %error, "job cannot be decoded; moving it to the failed store");
    let failure = Failure {
        connection: shared.connection.clone(),
        exception: format!("{kind}: {error}"),
    };
    match with_retries("fail", || shared.driver.fail(lease, &failure)).await {
        Ok(true) => {
            let series = metrics().job(&lease.queue, "unknown");
            series.dead_lettered("undecodable");
            series.failed(kind);
            if let Ok(envelope) = Envelope::decode(payload) {
                record_failure_in_batch(shared, &envelope).await;
                run_chain_catch(shared, &envelope).await;
            }
            Outcome::Failed
        }
        Ok(false) => Outcome::Abandoned,
        Err(driver_error) => {
            tracing::error!(job_id = %lease.id, error = %driver_error, "moving the job to the failed store failed");
            Outcome::Abandoned
        }
    }
}

/// Retries a driver call that settles or continues a job (release, fail, push) a few times on driver errors (a dropped connection,
/// a deadlock) before leaving the job to the reaper.
pub(super) async fn with_retries<T, F, Fut>(
    operation: &'static str,
    attempt: F,
) -> Result<T, crate::driver::DriverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::driver::DriverError>>,
{
    super::retrying(operation, 4, attempt).await
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_owned()),
        Err(error) => error.to_string(),
    }
}
