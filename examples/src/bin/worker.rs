//! A worker with the example jobs linked in: `cargo run -p routemq-examples --bin worker -- queue-work`.
//!
//! Every `routemq::cli` command works here (`queue-failed`, `queue-retry`, `list-jobs`, ...).

use routemq_examples::jobs::Mailer; // links the example jobs, which registers them

fn main() -> std::process::ExitCode {
    // The CLI with the application's shared state: email jobs find it with `ctx.data::<Mailer>()`.
    routemq::cli::App::new().data(Mailer::from_env()).main()
}
