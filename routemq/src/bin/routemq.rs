//! The `routemq` admin binary: failed jobs, sizes, stats and migrations on any connection.
//!
//! It links no job types, so its `queue-work` explains how to build a worker instead: a binary of
//! your own that links your jobs and calls `routemq::cli::main()`.

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
