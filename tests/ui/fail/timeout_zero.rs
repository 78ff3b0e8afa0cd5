use routemq::prelude::*;

#[job(timeout = 0)]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
