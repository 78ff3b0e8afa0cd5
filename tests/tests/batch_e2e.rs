//! Batches through the door, on every driver: the test dispatches batches with the public API,
//! three `test-worker` processes run them at once, and the batch CLI reads, cancels and prunes
//! them. Each batch's last jobs end together on different processes, and its callbacks still run
//! exactly once; a failing batch runs `catch` once and stops; a cancelled batch's jobs never run.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq_tests::process::{Process, json_of, run_command};
use routemq_tests::process_env::{Stage, drain_args};
use routemq_tests::process_jobs::{Ledgered, count, read_ledger};

/// Batches that succeed, each of [`JOBS`] jobs.
const BATCHES: u64 = 8;
const JOBS: u64 = 6;
/// Callbacks are numbered from these, plus the batch's number.
const THEN: u64 = 10_000;
const CATCH: u64 = 20_000;
const FINALLY: u64 = 30_000;

fn cli(env: &[(String, String)], args: &[&str]) -> Output {
    run_command(env!("CARGO_BIN_EXE_test-worker"), env, args)
}

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Vec<(String, String)>) {
    let stage = Stage::new(&driver, connection, "batch-e2e");
    let (manager, queue, ledger, path) = (&stage.manager, &stage.queue, &stage.ledger, &stage.path);
    let job = |n, fail| Ledgered {
        path: path.clone(),
        n,
        sleep_ms: 150,
        fail,
        note: String::new(),
    };
    let batch = |b: u64, jobs: Vec<Ledgered>| {
        manager
            .batch(jobs)
            .name(format!("e2e {b}"))
            .on_queue(queue.clone())
            .on_connection(connection)
            .then(job(THEN + b, false))
            .catch(job(CATCH + b, false))
            .finally(job(FINALLY + b, false))
            .dispatch()
    };
    // Cancelled before any worker runs: its jobs are skipped.
    let cancelled = batch(100, (0..3).map(|i| job(100_000 + i, false)).collect())
        .await
        .expect("dispatch");
    let mut batches = Vec::new();
    for b in 0..BATCHES {
        let jobs = (0..JOBS).map(|i| job(b * 100 + i, false)).collect();
        batches.push(batch(b, jobs).await.expect("dispatch"));
    }
    let failing = batch(50, vec![job(5_000, true), job(5_001, false)])
        .await
        .expect("dispatch");

    tokio::task::block_in_place(|| {
        let output = cli(&env, &["queue-batch-cancel", cancelled.id()]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(json_of(&output)["cancelled"], true);
        let output = cli(&env, &["queue-batch-show", "no-such-batch"]);
        assert_eq!(output.status.code(), Some(3), "an unknown batch is exit 3");

        let args: Vec<String> = [
            "queue-work",
            "--queue",
            queue,
            "--concurrency",
            "4",
            "--sleep",
            "0.1",
            "--stop-when-empty",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut workers: Vec<Process> = (0..3)
            .map(|_| Process::start(env!("CARGO_BIN_EXE_test-worker"), &env, &args))
            .collect();
        for worker in &mut workers {
            assert!(worker.wait(Duration::from_secs(120)).success());
        }
    });
    // A worker that stopped when it found the queue empty may leave a callback stored after it
    // looked: one more worker drains what is left.
    tokio::task::block_in_place(|| {
        let args = drain_args(queue);
        assert!(cli(&env, &args).status.success());
    });

    let lines = read_ledger(ledger);
    let done = |n: u64| count(&lines, "done", n);
    let started = |n: u64| count(&lines, "start", n);
    let pids = |b: u64| {
        let mut pids: Vec<u32> = lines
            .iter()
            .filter(|l| l.event == "done" && l.n / 100 == b && l.n < 100 * BATCHES)
            .map(|l| l.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids.len()
    };
    let spread = (0..BATCHES).filter(|b| pids(*b) > 1).count();
    eprintln!("{connection}: {spread} of {BATCHES} batches ended on more than one process");
    assert!(spread > 0, "no batch was shared between processes");
    for b in 0..BATCHES {
        for i in 0..JOBS {
            assert_eq!(done(b * 100 + i), 1, "job {i} of batch {b}");
        }
        assert_eq!(done(THEN + b), 1, "then of batch {b}");
        assert_eq!(done(FINALLY + b), 1, "finally of batch {b}");
        assert_eq!(started(CATCH + b), 0, "catch of batch {b}");
    }
    assert_eq!(
        (0..3).map(|i| started(100_000 + i)).sum::<usize>(),
        0,
        "cancelled batch ran"
    );
    assert_eq!(done(FINALLY + 100), 1, "the cancelled batch's finally");
    assert_eq!(started(5_000), 1, "the failing job ran once");
    assert_eq!(
        (done(CATCH + 50), done(FINALLY + 50), started(THEN + 50)),
        (1, 1, 0)
    );

    tokio::task::block_in_place(|| {
        let output = cli(&env, &["queue-batches", "--limit", "100"]);
        assert!(output.status.success(), "{output:?}");
        let listed = json_of(&output);
        let listed = listed.as_array().expect("a list");
        assert_eq!(listed.len() as u64, BATCHES + 2);
        let first = listed
            .iter()
            .find(|b| b["id"] == batches[0].id())
            .expect("listed");
        assert_eq!(
            (&first["total"], &first["processed"], &first["pending"]),
            (&6.into(), &6.into(), &0.into())
        );

        let output = cli(&env, &["queue-batch-show", failing.id()]);
        let shown = json_of(&output);
        assert_eq!(
            (&shown["failed"], &shown["name"]),
            (&1.into(), &"e2e 50".into())
        );
        assert!(
            shown["cancelled_at"].is_string(),
            "a failure cancels: {shown}"
        );
        let output = cli(
            &env,
            &["queue-batch-show", cancelled.id(), "--format", "table"],
        );
        let table = String::from_utf8_lossy(&output.stdout);
        assert!(
            table.contains("cancelled") && table.contains('3'),
            "{table}"
        );

        let output = cli(&env, &["queue-prune-batches", "--hours", "0"]);
        assert_eq!(json_of(&output)["pruned"], BATCHES + 2);
        let output = cli(&env, &["queue-batches"]);
        assert_eq!(json_of(&output), serde_json::json!([]));
    });
    let stats = driver.stats(queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.delayed, stats.reserved),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.failed, 1, "the failing job");
}

routemq_tests::on_every_driver!(prove, "batch");
