//! Job types used by the conformance suite. Each records what it did in the [`ledger`](crate::ledger).

use std::time::Duration;

use routemq::prelude::*;

use crate::ledger::record;

/// Succeeds at once and records its number.
#[derive(Debug, Clone)]
#[job(name = "conformance.Record")]
pub struct Record {
    /// The ledger key.
    pub key: String,
    /// Its number, to check order.
    pub n: u64,
}

impl Job for Record {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        Ok(())
    }
}

/// Fails its first `fail_times` attempts, then succeeds.
#[derive(Debug)]
#[job(name = "conformance.FailTimes", max_tries = 3)]
pub struct FailTimes {
    /// The ledger key.
    pub key: String,
    /// How many attempts fail.
    pub fail_times: u32,
}

impl Job for FailTimes {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if ctx.attempts() <= self.fail_times {
            return Err(JobError::msg(format!("planned failure {}", ctx.attempts())));
        }
        Ok(())
    }

    async fn failed(&mut self, ctx: &JobContext, _error: &JobError) {
        record(&self.key, "failed", ctx.attempts(), 0, ctx.job_id());
    }
}

/// Always fails; `permanent` makes the failure skip remaining tries.
#[derive(Debug)]
#[job(name = "conformance.AlwaysFail", max_tries = 3)]
pub struct AlwaysFail {
    /// The ledger key.
    pub key: String,
    /// Return a permanent error.
    pub permanent: bool,
}

impl Job for AlwaysFail {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if self.permanent {
            return Err(JobError::permanent("the address does not exist"));
        }
        Err(std::io::Error::other("the mail server refused"))?
    }

    async fn failed(&mut self, ctx: &JobContext, error: &JobError) {
        let what = if error.to_string().contains("refused") || !error.is_retryable() {
            "failed"
        } else {
            "failed-other"
        };
        record(&self.key, what, ctx.attempts(), 0, ctx.job_id());
    }
}

/// Fails its first attempt and waits `retry_after = 1` second before the next.
#[derive(Debug)]
#[job(name = "conformance.RetryAfterOne", max_tries = 2, retry_after = 1)]
pub struct RetryAfterOne {
    /// The ledger key.
    pub key: String,
}

impl Job for RetryAfterOne {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if ctx.attempts() == 1 {
            Err(JobError::msg("first try fails"))
        } else {
            Ok(())
        }
    }
}

/// Sleeps `millis` on its first attempt (past its 1 s timeout when long), then finishes quickly.
#[derive(Debug)]
#[job(name = "conformance.Sleepy", max_tries = 2, timeout = 1)]
pub struct Sleepy {
    /// The ledger key.
    pub key: String,
    /// How long the first attempt sleeps.
    pub millis: u64,
}

impl Job for Sleepy {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if ctx.attempts() == 1 {
            let token = ctx.cancellation().clone();
            let key = self.key.clone();
            let (attempt, id) = (ctx.attempts(), ctx.job_id().to_owned());
            // Observes the token from outside the handler's future, which is dropped on timeout.
            tokio::spawn(async move {
                token.cancelled().await;
                record(&key, "cancelled", attempt, 0, &id);
            });
            tokio::time::sleep(Duration::from_millis(self.millis)).await;
        }
        record(&self.key, "done", ctx.attempts(), 0, ctx.job_id());
        Ok(())
    }
}

/// Runs for a long time unless cancelled (shutdown tests); no timeout to speak of.
#[derive(Debug)]
#[job(name = "conformance.LongRunning", max_tries = 3, timeout = 600)]
pub struct LongRunning {
    /// The ledger key.
    pub key: String,
    /// Stop and return an error when the token fires.
    pub cooperative: bool,
}

impl Job for LongRunning {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if self.cooperative {
            ctx.cancellation().cancelled().await;
            record(&self.key, "stopping", ctx.attempts(), 0, ctx.job_id());
            return Err(JobError::msg("interrupted by shutdown"));
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    }
}

/// Panics on its first attempt.
#[derive(Debug)]
#[job(name = "conformance.Panicky", max_tries = 2)]
pub struct Panicky {
    /// The ledger key.
    pub key: String,
}

impl Job for Panicky {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        assert!(ctx.attempts() > 1, "first attempt panics on purpose");
        Ok(())
    }
}

/// Slow enough that several workers overlap (no-double-delivery test).
#[derive(Debug)]
#[job(name = "conformance.Work")]
pub struct Work {
    /// The ledger key.
    pub key: String,
    /// Its number.
    pub n: u64,
}

impl Job for Work {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

/// Postpones itself (`JobError::postpone`) on its first `times` runs, then succeeds; its tries
/// are `max_tries = 1`, so a postponement that used one up would fail it.
#[derive(Debug)]
#[job(name = "conformance.PostponeTimes", max_tries = 1)]
pub struct PostponeTimes {
    /// The ledger key.
    pub key: String,
    /// How many runs postpone.
    pub times: usize,
}

impl Job for PostponeTimes {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        let runs = crate::ledger::of(&self.key, "run").len();
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if runs < self.times {
            return Err(JobError::postpone(Duration::from_millis(200)));
        }
        Ok(())
    }
}

/// A unique job (until it finishes) keyed by its `key` field; sleeps `millis`.
#[derive(Debug)]
#[job(name = "conformance.UniqueUntilFinish", unique_for = 60)]
pub struct UniqueUntilFinish {
    /// The ledger key, also the uniqueness key.
    pub key: String,
    /// Its number (not part of the uniqueness key).
    pub n: u64,
    /// How long it runs.
    pub millis: u64,
}

impl Job for UniqueUntilFinish {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Ok(())
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

/// A unique job that gives its key back when it starts.
#[derive(Debug)]
#[job(
    name = "conformance.UniqueUntilStart",
    unique_for = 60,
    unique_until = "start"
)]
pub struct UniqueUntilStart {
    /// The ledger key, also the uniqueness key.
    pub key: String,
    /// How long it runs.
    pub millis: u64,
}

impl Job for UniqueUntilStart {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Ok(())
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

/// A unique job whose key is its whole data and lasts one second.
#[derive(Debug)]
#[job(name = "conformance.UniqueBriefly", unique_for = 1)]
pub struct UniqueBriefly {
    /// Part of the uniqueness key (the whole data is).
    pub key: String,
}

impl Job for UniqueBriefly {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Fails (once, for good: `max_tries = 1`) when `fail`, under a [`ThrottlesExceptions`] keyed by
/// its ledger key: two failures within 10 s hold the key's jobs for one second.
///
/// [`ThrottlesExceptions`]: routemq::middleware::ThrottlesExceptions
#[derive(Debug)]
#[job(name = "conformance.Throttled", max_tries = 1)]
pub struct Throttled {
    /// The ledger key and the throttle's key.
    pub key: String,
    /// Its number.
    pub n: u64,
    /// Whether this one fails.
    pub fail: bool,
}

impl Job for Throttled {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        if self.fail {
            return Err(JobError::msg("the partner API is down"));
        }
        Ok(())
    }

    fn middleware(&self) -> Vec<Box<dyn routemq::middleware::Middleware>> {
        use routemq::middleware::ThrottlesExceptions;
        vec![Box::new(
            ThrottlesExceptions::new("partner", 2, Duration::from_secs(10))
                .by(&self.key)
                .cool_down(Duration::from_secs(1)),
        )]
    }
}

/// Releases itself on its first attempt (not an exception), then fails every time; gives up at
/// its second exception (`max_exceptions = 2`) though it has 10 tries.
#[derive(Debug)]
#[job(name = "conformance.MaxExceptions", max_tries = 10, max_exceptions = 2)]
pub struct MaxExceptions {
    /// The ledger key.
    pub key: String,
}

impl Job for MaxExceptions {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        if ctx.attempts() == 1 {
            return Err(JobError::release(Duration::ZERO));
        }
        Err(JobError::msg("still broken"))
    }
}

/// Fails every time, retried 2 s later, with no tries after 3 s from its dispatch.
#[derive(Debug)]
#[job(
    name = "conformance.RetryUntil",
    max_tries = 10,
    retry_after = 2,
    retry_until = 3
)]
pub struct RetryUntil {
    /// The ledger key.
    pub key: String,
}

impl Job for RetryUntil {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        Err(JobError::msg("still broken"))
    }
}

/// One step of a chain: records its number, and fails for good when `fail`.
#[derive(Debug)]
#[job(name = "conformance.ChainStep", max_tries = 1)]
pub struct ChainStep {
    /// The ledger key.
    pub key: String,
    /// Its number.
    pub n: u64,
    /// Whether it fails.
    pub fail: bool,
}

impl Job for ChainStep {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        if self.fail {
            return Err(JobError::permanent("this step fails"));
        }
        Ok(())
    }
}

/// Records its run and fails for good when `fail` is set; priority 7 by its type.
#[derive(Debug, Clone)]
#[job(name = "conformance.Prioritized", max_tries = 1, priority = 7)]
pub struct Prioritized {
    /// The ledger key.
    pub key: String,
    /// Its number.
    pub n: u64,
    /// Fail (for good: one try).
    pub fail: bool,
}

impl Job for Prioritized {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        if self.fail {
            return Err(JobError::msg("planned failure"));
        }
        Ok(())
    }
}

/// A job of a batch: records its run, can sleep, and fails for good when `fail` is set until
/// the ledger holds a `healed` event for its key.
#[derive(Debug, Clone)]
#[job(name = "conformance.BatchStep", max_tries = 1)]
pub struct BatchStep {
    /// The ledger key.
    pub key: String,
    /// Its number.
    pub n: u64,
    /// Whether it fails (until healed).
    pub fail: bool,
    /// How long it sleeps before it ends.
    pub sleep_ms: u64,
}

impl Job for BatchStep {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(
            &self.key,
            "run",
            ctx.attempts(),
            self.n,
            ctx.batch_id().unwrap_or(""),
        );
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        if self.fail && crate::ledger::of(&self.key, "healed").is_empty() {
            return Err(JobError::permanent("this batch step fails"));
        }
        Ok(())
    }
}
