use routemq::prelude::*;

#[job(priority = 256)]
struct TooHigh;

#[job(priority = -1)]
struct Negative;

#[job(priority = "high")]
struct Named;

macro_rules! runs {
    ($($t:ty),*) => {$(
        impl Job for $t {
            async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
                Ok(())
            }
        }
    )*};
}

runs!(TooHigh, Negative, Named);

fn main() {}
