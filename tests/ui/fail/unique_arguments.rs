use routemq::prelude::*;

#[job(unique_for = 0)]
struct Zero;

#[job(unique_for = 60, unique_until = "later")]
struct Later;

#[job(unique_until = "start")]
struct NoDuration;

macro_rules! noop {
    ($($t:ty),*) => {$(
        impl Job for $t {
            async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
                Ok(())
            }
        }
    )*};
}
noop!(Zero, Later, NoDuration);

fn main() {}
