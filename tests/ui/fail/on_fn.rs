use routemq::prelude::*;

#[job]
fn thing() {}

fn main() {}
