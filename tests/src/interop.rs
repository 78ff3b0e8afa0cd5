//! Rust twins of the Python RouteMQ jobs that wrote the fixtures in `fixtures/routemq-samples/`.

use routemq::prelude::*;
use serde_json::Value;

/// `interop_jobs.EchoJob`: echoes mixed JSON values.
#[derive(Debug, Clone, PartialEq)]
#[job(
    name = "interop_jobs.EchoJob",
    max_tries = 3,
    timeout = 30,
    queue = "interop"
)]
pub struct EchoJob {
    /// A string with non-ASCII characters and quotes.
    pub text: String,
    /// An integer.
    pub number: i64,
    /// A list of mixed values.
    pub items: Vec<Value>,
    /// A nested object.
    pub meta: Value,
}

impl Job for EchoJob {
    async fn handle(&mut self, ctx: &JobContext) -> Result<(), JobError> {
        crate::ledger::record(
            &format!("interop-{}", ctx.queue()),
            "echo",
            ctx.attempts(),
            0,
            ctx.job_id(),
        );
        Ok(())
    }
}

/// `interop_jobs.FailJob`: always fails.
#[derive(Debug, Clone, PartialEq)]
#[job(name = "interop_jobs.FailJob", max_tries = 2, queue = "interop-fail")]
pub struct FailJob {
    /// Why it fails.
    pub reason: String,
}

impl Job for FailJob {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Err(JobError::msg(format!("FailJob: {}", self.reason)))
    }
}

/// The fixtures folder.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/routemq-samples")
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}
