use routemq::prelude::*;

#[job(queue = "emails; DROP TABLE queue_jobs", name = "has space", backoff = "linear", jitter = 1.5, crate = "not a path")]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
