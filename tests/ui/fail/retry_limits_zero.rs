use routemq::prelude::*;

#[job(max_exceptions = 0, retry_until = 0)]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
