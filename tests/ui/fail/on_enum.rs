use routemq::prelude::*;

#[job]
enum Thing {
    A,
}

fn main() {}
