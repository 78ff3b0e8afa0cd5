use routemq::prelude::*;
use routemq::JobOptions;

#[job]
struct Thing;

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(Thing::OPTIONS, JobOptions::DEFAULT);
    assert_eq!((Thing::OPTIONS.max_tries, Thing::OPTIONS.timeout, Thing::OPTIONS.retry_after), (3, 60, 0));
    assert_eq!(Thing::OPTIONS.queue, "default");
    assert!(!Thing::OPTIONS.backoff);
    assert!(Thing::NAME.ends_with(".Thing"), "{}", Thing::NAME);
}
