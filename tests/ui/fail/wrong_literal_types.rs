use routemq::prelude::*;

#[job(max_tries = "3", queue = 5, timeout = 1.5, retry_after = -1, backoff = true)]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
