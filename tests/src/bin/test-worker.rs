//! A worker binary with the test jobs linked in, built exactly as a user's would be: the
//! end-to-end tests run it as a process. It uses `routemq::cli::App` like an application with
//! shared state: data, an async setup (pools from the environment), lifecycle hooks, and a
//! schedule read from the environment.

use routemq::cli::App;
use routemq_tests::app::{HOOKED, LABEL, Label, hook_to_file, schedule_from_env, setup};

fn main() -> std::process::ExitCode {
    HOOKED
        .into_iter()
        .fold(App::new(), |app, when| app.on(when, hook_to_file))
        .data(Label(LABEL.to_owned()))
        .setup(setup)
        .schedule(schedule_from_env())
        .main()
}
