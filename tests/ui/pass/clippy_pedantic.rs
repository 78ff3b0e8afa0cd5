#![deny(warnings, clippy::all, clippy::pedantic)]

use routemq::prelude::*;

/// A job with every kind of argument.
#[job(max_tries = 1_000, timeout = 86_400, retry_after = 3600, queue = "q", backoff = "exponential", max_delay = 1.5, jitter = 1)]
pub struct Everything(pub u64, pub String);

impl Job for Everything {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(Everything::OPTIONS.max_tries, 1_000);
}
