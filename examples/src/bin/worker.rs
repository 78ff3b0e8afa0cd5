//! A worker with the example jobs linked in: `cargo run -p routemq-examples --bin worker -- queue-work`.
//!
//! Every `routemq::cli` command works here (`queue-failed`, `queue-retry`, `list-jobs`, ...).

use routemq_examples as _; // links the example jobs, which registers them

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
