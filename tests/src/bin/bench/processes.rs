//! `drain --processes P`: the backlog is drained by P worker processes at once (each at the run's
//! concurrency), as several worker hosts would, instead of one worker in this process. Each
//! process is this binary again (`bench <connection> drain-part`, the queue in `BENCH_QUEUE`,
//! SQLite's file in `SQLITE_PATH`); the time runs from starting the first to the exit of the
//! last, so it includes each process's start and connection (a few milliseconds).

use std::process::{Command, Stdio};

use super::{Args, BoxError, url};

/// Drains `queue` with `args.processes` worker processes; returns how many jobs they ran.
pub(crate) async fn drain(args: &Args, queue: &str) -> Result<u64, BoxError> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..args.processes {
        let child = Command::new(&exe)
            .args([&args.connection, "drain-part"])
            .args(["--concurrency", &args.concurrency.to_string()])
            .env("BENCH_QUEUE", queue)
            .env("SQLITE_PATH", url("sqlite"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        children.push(child);
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(std::process::Child::wait_with_output)
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let mut ran = 0;
    for output in outputs {
        if !output.status.success() {
            return Err(format!("a worker process failed: {}", output.status).into());
        }
        let line: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        ran += line["ran"]
            .as_u64()
            .ok_or("a worker process printed no count")?;
    }
    Ok(ran)
}
