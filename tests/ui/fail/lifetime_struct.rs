use routemq::prelude::*;

#[job]
struct Thing<'a> {
    name: &'a str,
}

fn main() {}
