//! One job, start to finish: decode, run under the timeout, settle (ack, release or fail).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Outcome, Shared};
use crate::driver::{Failure, Lease, ReservedJob};
use crate::envelope::{Envelope, short_name};
use crate::job::{JobContext, JobError};
use crate::metrics::{JobSeries, metrics};
use crate::observability::{self, TraceContext};
use crate::registry::{DecodeError, ErasedJob, JobRegistration};
use crate::retry::{JobRetry, retry_delay};

/// Runs one reserved job and removes it from the heartbeat set when done.
pub(crate) async fn run(shared: Arc<Shared>, job: ReservedJob, key: u64) -> Outcome {
    let outcome = process(&shared, job).await;
    shared.running().remove(&key);
    outcome
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

/// A decoded job and what the worker needs to settle it.
struct Attempt<'a> {
    shared: &'a Shared,
    lease: Lease,
    envelope: Envelope,
    registration: &'static JobRegistration,
    ctx: JobContext,
    trace: TraceContext,
    series: Arc<JobSeries>,
}

async fn process(shared: &Shared, job: ReservedJob) -> Outcome {
    let ReservedJob { lease, payload } = job;
    let (envelope, registration, erased) = match shared.registry.decode(&payload) {
        Ok(decoded) => decoded,
        Err(error) => return fail_undecodable(shared, &lease, &error).await,
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
        decoded(shared, lease, envelope, registration, erased, context).instrument(span),
    )
    .await
}

async fn decoded(
    shared: &Shared,
    lease: Lease,
    envelope: Envelope,
    registration: &'static JobRegistration,
    erased: Box<dyn ErasedJob>,
    trace: TraceContext,
) -> Outcome {
    let max_tries = shared
        .options
        .max_tries
        .unwrap_or_else(|| envelope.effective_max_tries());
    let cancel = CancellationToken::new();
    let ctx = JobContext::new(
        lease.id.clone(),
        lease.attempts,
        lease.queue.clone(),
        shared.connection.clone(),
    )
    .with_max_tries(max_tries)
    .with_cancel(cancel.clone());
    let series = metrics().job(&lease.queue, short_name(registration.name()));
    let attempt = Attempt {
        shared,
        lease,
        envelope,
        registration,
        ctx,
        trace,
        series,
    };
    if attempt.lease.attempts > max_tries {
        let error = JobError::permanent(format!("max tries exceeded ({max_tries})"));
        tracing::warn!(job_id = %attempt.lease.id, job = registration.name(), "job exceeded max tries, moving to failed store");
        attempt.series.dead_lettered("max_tries_exceeded");
        return attempt.fail(error, Some(erased)).await;
    }
    attempt.run(erased, cancel).await
}

impl Attempt<'_> {
    async fn run(self, job: Box<dyn ErasedJob>, cancel: CancellationToken) -> Outcome {
        let shutdown = &self.shared.shutdown;
        let timeout = self
            .envelope
            .timeout_secs()
            .map_or(self.shared.options.timeout, Duration::from_secs_f64);
        tracing::info!(
            job_id = %self.lease.id,
            job = self.registration.name(),
            queue = %self.lease.queue,
            attempt = self.lease.attempts,
            "processing job"
        );
        let started = tokio::time::Instant::now();
        let ctx = self.ctx.clone();
        self.series.started();
        let handle = async move {
            let mut job = job;
            let result = job.handle(&ctx).await;
            (job, result)
        };
        let span = tracing::Span::current();
        let mut task =
            tokio::spawn(observability::scope(self.trace.clone(), handle).instrument(span));
        let timed = tokio::time::timeout(timeout, &mut task);
        tokio::pin!(timed);
        let mut draining = shutdown.is_draining();
        if draining {
            cancel.cancel();
        }
        let finished = loop {
            tokio::select! {
                result = &mut timed => break Some(result),
                () = shutdown.drained(), if !draining => {
                    draining = true;
                    cancel.cancel();
                }
                () = shutdown.stopped_now() => break None,
            }
        };
        let elapsed = started.elapsed();
        if finished.is_some() {
            self.series.duration(elapsed.as_secs_f64());
        }
        match finished {
            None => {
                task.abort();
                let _ = task.await;
                self.release_unfinished().await
            }
            Some(Err(_elapsed)) => {
                cancel.cancel();
                task.abort();
                tracing::error!(job_id = %self.lease.id, job = self.registration.name(), ?timeout, "job timed out");
                self.series.timed_out();
                self.failed_attempt(JobError::TimedOut { after: timeout }, None)
                    .await
            }
            Some(Ok(Ok((_, Ok(()))))) => {
                tracing::info!(job_id = %self.lease.id, job = self.registration.name(), ?elapsed, "job completed");
                self.series.succeeded();
                if !self.shared.acks.send(self.lease.clone()) {
                    tracing::error!(job_id = %self.lease.id, "acknowledgement channel closed; the job may run again");
                }
                Outcome::Succeeded
            }
            Some(Ok(Ok((job, Err(error))))) => {
                if draining && error.is_retryable() {
                    // Stopped by the shutdown token: put it back without using up an attempt.
                    return self.release_unfinished().await;
                }
                self.failed_attempt(error, Some(job)).await
            }
            Some(Ok(Err(join_error))) => {
                let message = panic_message(join_error);
                tracing::error!(job_id = %self.lease.id, job = self.registration.name(), %message, "job panicked");
                self.failed_attempt(JobError::Panicked(message), None).await
            }
        }
    }

    /// A failed attempt: retry while tries remain, otherwise fail for good.
    async fn failed_attempt(self, error: JobError, job: Option<Box<dyn ErasedJob>>) -> Outcome {
        let tries_left = self.lease.attempts < self.ctx.max_tries();
        if !(error.is_retryable() && tries_left) {
            return self.fail(error, job).await;
        }
        let delay = match &error {
            JobError::Release { delay } => *delay,
            _ => retry_delay(
                &self.retry_settings(),
                &self.shared.options.retry,
                self.lease.attempts,
            ),
        };
        tracing::warn!(
            job_id = %self.lease.id,
            job = self.registration.name(),
            attempt = self.lease.attempts,
            max_tries = self.ctx.max_tries(),
            ?delay,
            %error,
            "job failed, released back to queue"
        );
        match settle("release", || {
            self.shared.driver.release(&self.lease, delay, false)
        })
        .await
        {
            Ok(true) => {
                self.series.retried();
                Outcome::Retried
            }
            Ok(false) => self.lost_lease("release"),
            Err(driver_error) => {
                tracing::error!(job_id = %self.lease.id, error = %driver_error, "release failed; the reaper will return the job");
                Outcome::Abandoned
            }
        }
    }

    /// The last failure: `failed()` once, then the failed store.
    async fn fail(self, error: JobError, job: Option<Box<dyn ErasedJob>>) -> Outcome {
        let job = job.or_else(|| self.registration.decode(self.envelope.data()).ok());
        if let Some(mut job) = job {
            let ctx = self.ctx.clone();
            let message = error.to_string();
            let kind = error.kind();
            let hook = tokio::spawn(async move {
                job.failed(&ctx, &error).await;
            });
            if let Err(join_error) = hook.await {
                tracing::error!(job_id = %self.lease.id, %kind, %message, "failed() panicked: {}", panic_message(join_error));
            }
            return self.store_failure(kind, format!("{kind}: {message}")).await;
        }
        let kind = error.kind();
        self.store_failure(kind, format!("{kind}: {error}")).await
    }

    async fn store_failure(self, kind: &'static str, exception: String) -> Outcome {
        tracing::error!(job_id = %self.lease.id, job = self.registration.name(), %exception, "job failed permanently");
        let failure = Failure {
            connection: self.shared.connection.clone(),
            exception,
        };
        match settle("fail", || self.shared.driver.fail(&self.lease, &failure)).await {
            Ok(true) => {
                self.series.failed(kind);
                Outcome::Failed
            }
            Ok(false) => self.lost_lease("fail"),
            Err(error) => {
                tracing::error!(job_id = %self.lease.id, %error, "moving the job to the failed store failed; the reaper will return it");
                Outcome::Abandoned
            }
        }
    }

    async fn release_unfinished(self) -> Outcome {
        tracing::warn!(job_id = %self.lease.id, job = self.registration.name(), "releasing unfinished job at shutdown");
        match self
            .shared
            .driver
            .release(&self.lease, Duration::ZERO, true)
            .await
        {
            Ok(true) => Outcome::Released,
            Ok(false) => self.lost_lease("release"),
            Err(error) => {
                tracing::error!(job_id = %self.lease.id, %error, "release at shutdown failed; the reaper will return the job");
                Outcome::Abandoned
            }
        }
    }

    fn lost_lease(&self, operation: &str) -> Outcome {
        tracing::warn!(job_id = %self.lease.id, operation, "lease no longer held (reaped after the visibility timeout)");
        Outcome::Abandoned
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

/// A payload that cannot run here (malformed, unknown tag, fields that do not fit) goes straight to
/// the failed store with the reason: it would fail the same way on every try.
async fn fail_undecodable(shared: &Shared, lease: &Lease, error: &DecodeError) -> Outcome {
    let kind = match error {
        DecodeError::Envelope(_) => "InvalidPayload",
        DecodeError::UnknownJob(_) => "UnknownJob",
        DecodeError::Payload { .. } => "PayloadMismatch",
    };
    tracing::error!(job_id = %lease.id, queue = %lease.queue, %error, "job cannot be decoded; moving it to the failed store");
    let failure = Failure {
        connection: shared.connection.clone(),
        exception: format!("{kind}: {error}"),
    };
    match settle("fail", || shared.driver.fail(lease, &failure)).await {
        Ok(true) => {
            let series = metrics().job(&lease.queue, "unknown");
            series.dead_lettered("undecodable");
            series.failed(kind);
            Outcome::Failed
        }
        Ok(false) => Outcome::Abandoned,
        Err(driver_error) => {
            tracing::error!(job_id = %lease.id, error = %driver_error, "moving the job to the failed store failed");
            Outcome::Abandoned
        }
    }
}

/// Retries a settle operation (release, fail) a few times on driver errors (a dropped connection,
/// a deadlock) before leaving the job to the reaper.
async fn settle<F, Fut>(
    operation: &'static str,
    mut attempt: F,
) -> Result<bool, crate::driver::DriverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, crate::driver::DriverError>>,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Ok(held) => return Ok(held),
            Err(error) if failures < 4 => {
                failures += 1;
                let pause = super::background::backoff(failures);
                tracing::warn!(operation, %error, retry_in = ?pause, "driver call failed, retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error),
        }
    }
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
