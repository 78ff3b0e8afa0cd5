use routemq::prelude::*;

#[job(timeout = 400000000, retry_after = 18446744073709551615, max_delay = 1e400)]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
