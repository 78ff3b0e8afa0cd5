use routemq as rmq;

#[rmq::job(crate = "rmq", queue = "renamed")]
struct Thing {
    n: u32,
}

impl rmq::Job for Thing {
    async fn handle(&mut self, _ctx: &rmq::JobContext) -> Result<(), rmq::JobError> {
        assert!(self.n > 0);
        Ok(())
    }
}

fn main() {
    use rmq::JobMeta;
    assert_eq!(Thing::OPTIONS.queue, "renamed");
    let registry = rmq::Registry::global().expect("registry");
    assert!(registry.get(Thing::NAME).is_ok());
}
