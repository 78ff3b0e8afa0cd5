use routemq::prelude::*;

#[job]
struct Thing<T> {
    value: T,
}

fn main() {}
