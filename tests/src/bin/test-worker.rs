//! A worker binary with the test jobs linked in, built exactly as a user's would be: the
//! end-to-end tests run it as a process.

use routemq_tests as _;

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
