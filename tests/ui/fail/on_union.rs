use routemq::prelude::*;

#[job]
union Thing {
    a: u32,
}

fn main() {}
