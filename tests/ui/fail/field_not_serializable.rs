use routemq::prelude::*;

#[job]
struct Thing {
    log: std::fs::File,
}

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
