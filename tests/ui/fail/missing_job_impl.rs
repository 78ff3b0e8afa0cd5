use routemq::prelude::*;

#[job(queue = "emails")]
struct Thing {
    to: String,
}

fn main() {}
