//! Jobs that misbehave on purpose, for the worker-core tests: they block their thread, ignore
//! their cancellation token, never return from `failed()`, release themselves for years, or panic
//! while being decoded (outside `handle`). Each records what it did in the [`ledger`](crate::ledger).

use std::time::Duration;

use routemq::prelude::*;

use crate::ledger::record;

/// Blocks its thread for `block_ms` (a blocking call that never yields), recording start and end.
#[derive(Debug)]
#[job(name = "hostile.Blocking", timeout = 1, max_tries = 3)]
pub struct Blocking {
    /// The ledger key.
    pub key: String,
    /// How long the thread is blocked.
    pub block_ms: u64,
}

impl Job for Blocking {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "start", ctx.attempts(), 0, ctx.job_id());
        std::thread::sleep(Duration::from_millis(self.block_ms));
        record(&self.key, "end", ctx.attempts(), 0, ctx.job_id());
        Ok(())
    }
}

/// On its first attempt waits for its token (timeout or shutdown) and then asks to be released
/// for `release_secs`; later attempts succeed.
#[derive(Debug)]
#[job(name = "hostile.ReleaseWhenStopped", max_tries = 3)]
pub struct ReleaseWhenStopped {
    /// The ledger key.
    pub key: String,
    /// The delay it asks for.
    pub release_secs: u64,
}

impl Job for ReleaseWhenStopped {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "start", ctx.attempts(), 0, ctx.job_id());
        ctx.cancellation().cancelled().await;
        Err(JobError::release(Duration::from_secs(self.release_secs)))
    }
}

/// Asks to be released for `Duration::MAX`.
#[derive(Debug)]
#[job(name = "hostile.ReleaseForever", max_tries = 3)]
pub struct ReleaseForever {
    /// The ledger key.
    pub key: String,
}

impl Job for ReleaseForever {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        Err(JobError::release(Duration::MAX))
    }
}

/// Fails permanently; its `failed()` never returns.
#[derive(Debug)]
#[job(name = "hostile.StuckFailedHook", timeout = 1, max_tries = 1)]
pub struct StuckFailedHook {
    /// The ledger key.
    pub key: String,
}

impl Job for StuckFailedHook {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Err(JobError::permanent("no"))
    }

    async fn failed(&mut self, ctx: &JobContext, _error: &JobError) {
        record(&self.key, "failed", ctx.attempts(), 0, ctx.job_id());
        std::future::pending::<()>().await;
    }
}

/// A field whose deserialization panics: the job panics in the worker before `handle` runs.
#[derive(Debug)]
#[job(name = "hostile.PanicOnDecode")]
pub struct PanicOnDecode {
    /// Panics when read back.
    #[serde(deserialize_with = "panic_on_decode")]
    pub trap: u32,
}

fn panic_on_decode<'de, D: serde::Deserializer<'de>>(_: D) -> Result<u32, D::Error> {
    panic!("a field that panics while decoding")
}

impl Job for PanicOnDecode {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// One try only; records its runs and its `failed()` calls with the error's kind.
#[derive(Debug)]
#[job(name = "hostile.OneTry", max_tries = 1)]
pub struct OneTry {
    /// The ledger key.
    pub key: String,
}

impl Job for OneTry {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), 0, ctx.job_id());
        Ok(())
    }

    async fn failed(&mut self, ctx: &JobContext, error: &JobError) {
        let what = if error.kind() == "ReservationExpired" {
            "failed-expired"
        } else {
            "failed-other"
        };
        record(&self.key, what, ctx.attempts(), 0, ctx.job_id());
    }
}

/// What a [`Chaos`] job does on every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Behaviour {
    /// Returns `Ok(())`.
    Succeed,
    /// Returns a retryable error.
    Fail,
    /// Returns a permanent error.
    FailPermanently,
    /// Panics in `handle`.
    Panic,
    /// Sleeps far past its timeout without looking at its token (yields, so it can be aborted).
    Hang,
    /// Blocks its thread past its timeout (cannot be aborted).
    Block,
    /// Asks to be released for `release_secs`.
    Release,
}

/// A job whose behaviour is chosen by the test (`timeout = 1`, `max_tries = 2`).
#[derive(Debug)]
#[job(name = "hostile.Chaos", timeout = 1, max_tries = 2)]
pub struct Chaos {
    /// The ledger key.
    pub key: String,
    /// The job's number.
    pub n: u64,
    /// What it does.
    pub behaviour: Behaviour,
    /// With [`Behaviour::Release`]: the delay it asks for (`u64::MAX`: `Duration::MAX`).
    pub release_secs: u64,
}

impl Job for Chaos {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        record(&self.key, "run", ctx.attempts(), self.n, ctx.job_id());
        match self.behaviour {
            Behaviour::Succeed => Ok(()),
            Behaviour::Fail => Err(JobError::msg("planned failure")),
            Behaviour::FailPermanently => Err(JobError::permanent("planned permanent failure")),
            Behaviour::Panic => panic!("planned panic"),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            Behaviour::Block => {
                std::thread::sleep(Duration::from_millis(1_300));
                Ok(())
            }
            Behaviour::Release => Err(JobError::release(if self.release_secs == u64::MAX {
                Duration::MAX
            } else {
                Duration::from_secs(self.release_secs)
            })),
        }
    }

    async fn failed(&mut self, ctx: &JobContext, _error: &JobError) {
        record(&self.key, "failed", ctx.attempts(), self.n, ctx.job_id());
    }
}
