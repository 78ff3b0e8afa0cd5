use routemq::prelude::*;

#[job(
    max_tries = 5,
    timeout = 120,
    retry_after = 10,
    queue = "emails.high-priority",
    name = "my_app.jobs.SendEmailJob",
    connection = "redis",
    backoff = "exponential",
    max_delay = 300,
    jitter = 0.25,
    unique_for = 3600,
    unique_until = "start",
    max_exceptions = 3,
    retry_until = 3600,
    priority = 200,
    encrypted,
    crate = "routemq"
)]
pub struct Thing {
    pub to: String,
}

impl Job for Thing {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {
    let o = Thing::OPTIONS;
    assert_eq!((o.max_tries, o.timeout, o.retry_after), (5, 120, 10));
    assert_eq!((o.queue, o.connection), ("emails.high-priority", Some("redis")));
    assert_eq!((o.backoff, o.max_delay, o.jitter), (true, Some(300.0), Some(0.25)));
    assert_eq!(Thing::NAME, "my_app.jobs.SendEmailJob");
    assert_eq!((o.unique_for, o.unique_until), (Some(3600), routemq::UniqueUntil::Start));
    assert_eq!((o.max_exceptions, o.retry_until), (Some(3), Some(3600)));
    assert_eq!(o.priority, 200);
    assert!(o.encrypted);
    // A unique job's dispatch says whether it was queued or a duplicate.
    fn _dispatch_output(job: Thing) -> routemq::queue::PendingDispatch<'static, Thing> {
        job.dispatch()
    }
    let _: fn(routemq::Dispatched) -> Option<String> = |d| d.id().map(str::to_owned);
}
