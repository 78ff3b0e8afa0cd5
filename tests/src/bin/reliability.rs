//! The reliability suite: `reliability --driver all|sqlite|postgres|mysql|redis [--long]`.
//!
//! Crash (`kill -9` of worker processes), broker faults (dropped connections), load (several
//! producer and worker processes), shutdown (SIGTERM drains; a job past the grace period runs
//! again elsewhere) and bad input, on every driver; restarts of private Redis, PostgreSQL and
//! MariaDB servers (`kill -9` mid-enqueue and mid-drain), network faults (latency, loss and a
//! partition between a worker and its broker) and a full disk under SQLite. `--soak 30m` runs a
//! steady load with periodic kills for that long instead, and reports the worker's memory. Prints a table per driver and exits non-zero
//! if a job was lost or a check failed. Servers come from `ROUTEMQ_TEST_REDIS_URL`,
//! `ROUTEMQ_TEST_POSTGRES_URL` and `ROUTEMQ_TEST_MYSQL_URL`.

use std::process::ExitCode;

use routemq_tests::reliability::soak::parse_duration;
use routemq_tests::reliability::{Size, Target, print_table, producer_main, run_all, worker_main};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match args.first().map(String::as_str) {
        Some("__worker") => {
            return match runtime.block_on(worker_main(&args[1..])) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("worker: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("__producer") => {
            return match runtime.block_on(producer_main(&args[1..])) {
                Ok(count) => {
                    println!("{count}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("producer: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let mut driver = "all".to_owned();
    let mut size = Size::DEFAULT;
    let mut soak = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--driver" => driver = rest.next().cloned().unwrap_or_default(),
            "--long" => size = Size::LONG,
            "--soak" => match rest.next().and_then(|d| parse_duration(d)) {
                Some(duration) => soak = Some(duration),
                None => {
                    eprintln!("--soak takes a duration: 30m, 90s, 2h");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "unknown argument {other}\nusage: reliability --driver all|sqlite|postgres|mysql|redis [--long | --soak 30m]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let targets = match Target::select(&driver) {
        Ok(targets) => targets,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let rows = match soak {
        Some(duration) => runtime.block_on(async {
            let mut rows = Vec::new();
            for target in &targets {
                let (row, memory) = routemq_tests::reliability::soak::soak(target, duration).await;
                println!(
                    "{}: {:.0} jobs/s dispatched; worker resident memory after warm-up {} KiB, peak {} KiB, end {} KiB",
                    target.driver, memory.rate, memory.start, memory.peak, memory.end
                );
                rows.push(row);
            }
            rows
        }),
        None => runtime.block_on(run_all(&targets, size)),
    };
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.passed()).count();
    let lost: u64 = rows.iter().map(|r| r.lost).sum();
    println!("{} passed, {failed} failed", rows.len() - failed);
    if failed > 0 || lost > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
