use routemq::prelude::*;

#[job(tries = 3, timeout = 0, timeout = 5, queue)]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
