//! `queue-cancel` through the door, on every driver: a `test-worker` process runs a long job while
//! another process cancels a queued job, a delayed job, an unknown id and then the running job.
//! The running job stops (the worker, run with `--stop-when-empty`, exits once it has), the
//! cancelled ones never run, nothing is retried or failed.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::QueueDriver;
use routemq_tests::process::{Process, json_of, run_command};
use routemq_tests::process_env::Stage;
use routemq_tests::process_jobs::{FileRecord, read_ledger};
use serde_json::json;

fn cli(env: &[(String, String)], args: &[&str]) -> Output {
    run_command(env!("CARGO_BIN_EXE_test-worker"), env, args)
}

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Vec<(String, String)>) {
    let stage = Stage::new(&driver, connection, "cancel-e2e");
    let (manager, queue, ledger, path) = (&stage.manager, &stage.queue, &stage.ledger, &stage.path);
    let job = |n, first_attempt_sleep_ms| FileRecord {
        path: path.clone(),
        n,
        first_attempt_sleep_ms,
    };
    let dispatch = |delay: u64, job: FileRecord| {
        manager
            .later(Duration::from_secs(delay), job)
            .on_connection(connection)
            .on_queue(queue.clone())
    };
    let running = dispatch(0, job(0, 60_000)).await.expect("dispatch");
    let queued = dispatch(0, job(1, 0)).await.expect("dispatch");
    let delayed = dispatch(60, job(2, 0)).await.expect("dispatch");
    let unknown = format!("{queue}:999999999");

    let args: Vec<String> = [
        "queue-work",
        "--queue",
        queue,
        "--concurrency",
        "1",
        "--prefetch",
        "0",
        "--sleep",
        "0.1",
        "--stop-when-empty",
    ]
    .map(str::to_owned)
    .to_vec();
    tokio::task::block_in_place(|| {
        let mut worker = Process::start(env!("CARGO_BIN_EXE_test-worker"), &env, &args);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !read_ledger(ledger).iter().any(|l| l.event == "start") {
            assert!(Instant::now() < deadline, "the long job did not start");
            std::thread::sleep(Duration::from_millis(20));
        }

        let ids = format!("{queued},{delayed},{unknown}");
        let output = cli(&env, &["queue-cancel", &ids]);
        assert_eq!(output.status.code(), Some(3), "an unknown id is exit 3");
        assert_eq!(
            json_of(&output),
            json!([
                {"id": queued, "status": "removed", "queue": queue},
                {"id": delayed, "status": "removed", "queue": queue},
                {"id": unknown, "status": "not_found"},
            ])
        );

        let asked = Instant::now();
        let output = cli(&env, &["queue-cancel", &running]);
        assert!(output.status.success());
        assert_eq!(
            json_of(&output),
            json!([{"id": running, "status": "signalled", "queue": queue}])
        );
        assert!(worker.wait(Duration::from_secs(30)).success());
        eprintln!(
            "{connection}: the worker stopped {:?} after the cancel",
            asked.elapsed()
        );
    });
    let lines = read_ledger(ledger);
    let events: Vec<(&str, u64)> = lines.iter().map(|l| (l.event.as_str(), l.n)).collect();
    assert_eq!(
        events,
        [("start", 0)],
        "only the long job started, and it never finished"
    );
    let stats = driver.stats(queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.delayed, stats.reserved, stats.failed),
        (0, 0, 0, 0),
        "{stats:?}"
    );
}

routemq_tests::on_every_driver!(prove, "cancel");
