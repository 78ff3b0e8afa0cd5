//! A randomized property test of the worker core: jobs with random behaviours (succeed, fail,
//! fail permanently, panic, hang past the timeout, block the thread, release with random delays
//! including `Duration::MAX`) on the memory and SQLite drivers. At the end no lease is held, every
//! job is settled exactly as its behaviour says (runs, `failed()` calls, failed-store kind, or
//! still delayed), and the worker never crashed. The seed is printed; `ROUTEMQ_CHAOS_SEED` replays one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq::{Envelope, WorkerOptions};
use routemq_tests::Harness;
use routemq_tests::harness::eventually;
use routemq_tests::hostile::{Behaviour, Chaos};
use routemq_tests::ledger::of;
use routemq_tests::sqlite_files::fresh_path;

const JOBS: u64 = 40;
const MAX_TRIES: usize = 2;

/// How a job must end: how often it ran, whether `failed()` ran, and its failed-store kind (or
/// `None`: acknowledged, or still delayed when `delayed`).
struct Expected {
    runs: usize,
    failed_kind: Option<&'static str>,
    delayed: bool,
}

fn expected(behaviour: Behaviour, release_secs: u64) -> Expected {
    let final_failure = |kind| Expected {
        runs: MAX_TRIES,
        failed_kind: Some(kind),
        delayed: false,
    };
    match behaviour {
        Behaviour::Succeed => Expected {
            runs: 1,
            failed_kind: None,
            delayed: false,
        },
        Behaviour::FailPermanently => Expected {
            runs: 1,
            failed_kind: Some("Permanent"),
            delayed: false,
        },
        Behaviour::Fail => final_failure("Failed"),
        Behaviour::Panic => final_failure("Panicked"),
        Behaviour::Hang | Behaviour::Block => final_failure("TimedOut"),
        Behaviour::Release if release_secs == 0 => final_failure("Release"),
        Behaviour::Release => Expected {
            runs: 1,
            failed_kind: None,
            delayed: true,
        },
    }
}

fn random_job(rng: &mut fastrand::Rng, key: &str, n: u64, blocking_left: &mut u32) -> Chaos {
    let mut behaviour = match rng.u8(0..7) {
        0 => Behaviour::Succeed,
        1 => Behaviour::Fail,
        2 => Behaviour::FailPermanently,
        3 => Behaviour::Panic,
        4 => Behaviour::Hang,
        5 => Behaviour::Block,
        _ => Behaviour::Release,
    };
    // A few blocked threads at a time are enough (each holds a runtime thread for 1.3 s).
    if behaviour == Behaviour::Block {
        if *blocking_left == 0 {
            behaviour = Behaviour::Succeed;
        } else {
            *blocking_left -= 1;
        }
    }
    let release_secs = match rng.u8(0..4) {
        0 => 0,
        1 => 3_600,
        2 => 400_000_000, // past the ten-year limit: clamped
        _ => u64::MAX,
    };
    Chaos {
        key: key.to_owned(),
        n,
        behaviour,
        release_secs,
    }
}

async fn chaos(h: Harness) {
    let seed = std::env::var("ROUTEMQ_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos seed {seed} (replay with ROUTEMQ_CHAOS_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut blocking_left = 3;
    let mut plan = HashMap::new();
    for n in 0..JOBS {
        let job = random_job(&mut rng, &h.key, n, &mut blocking_left);
        plan.insert(n, expected(job.behaviour, job.release_secs));
        h.push(job).await;
    }
    let failing = plan.values().filter(|e| e.failed_kind.is_some()).count();
    let runs: usize = plan.values().map(|e| e.runs).sum();
    let worker = h.worker(WorkerOptions {
        concurrency: 8,
        stop_when_empty: false,
        ..h.options()
    });
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    let settled = eventually(Duration::from_secs(60), || {
        of(&h.key, "run").len() >= runs && of(&h.key, "failed").len() >= failing
    })
    .await;
    // Let the last settlements land, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.drain();
    let report = running
        .await
        .expect("the worker task did not panic")
        .expect("the worker ran");
    assert!(
        settled,
        "seed {seed}: not every job settled in time: {report:?}"
    );
    assert_eq!(report.panicked, 0, "seed {seed}");

    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    let mut failed_kinds = HashMap::new();
    for job in &failed {
        let envelope = Envelope::decode(&job.payload).expect("stored payload decodes");
        let data: serde_json::Value = serde_json::from_str(envelope.data()).expect("data");
        let n = data["n"].as_u64().expect("n");
        let kind = job
            .exception
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            failed_kinds.insert(n, kind).is_none(),
            "seed {seed}: job {n} failed twice"
        );
    }
    let runs_of = |n: u64| of(&h.key, "run").iter().filter(|e| e.n == n).count();
    let hooks_of = |n: u64| of(&h.key, "failed").iter().filter(|e| e.n == n).count();
    for (n, expect) in &plan {
        assert_eq!(runs_of(*n), expect.runs, "seed {seed}: runs of job {n}");
        assert_eq!(
            failed_kinds.get(n).map(String::as_str),
            expect.failed_kind,
            "seed {seed}: failed-store kind of job {n}"
        );
        let hooks = usize::from(expect.failed_kind.is_some());
        assert_eq!(
            hooks_of(*n),
            hooks,
            "seed {seed}: failed() calls of job {n}"
        );
    }
    let delayed = plan.values().filter(|e| e.delayed).count() as u64;
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.reserved, stats.delayed),
        (0, 0, delayed),
        "seed {seed}: no lease held, only the long releases wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_behaviours_on_memory() {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let harness = Harness::new(|| async { Some(Arc::clone(&driver)) }, "chaos-memory")
        .await
        .expect("memory");
    chaos(harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_behaviours_on_sqlite() {
    let path = fresh_path("chaos");
    let driver: Arc<dyn QueueDriver> = Arc::new(
        SqliteDriver::open(path.to_str().expect("utf-8"))
            .await
            .expect("open"),
    );
    let harness = Harness::new(|| async { Some(Arc::clone(&driver)) }, "chaos-sqlite")
        .await
        .expect("sqlite");
    chaos(harness).await;
}
