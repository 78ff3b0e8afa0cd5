//! Schedules through the door, on every driver: three `test-worker queue-schedule` processes run
//! an every-second schedule at once, then a `queue-work --schedule` process runs the jobs and
//! fires ticks of its own. Every tick while they ran was claimed by exactly one scheduler, and
//! every job dispatched was run or is still queued: none twice, none lost. `queue-schedule-list`
//! shows the last run.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use routemq::driver::QueueDriver;
use routemq_tests::databases::{Server, database_env, with_fresh_database};
use routemq_tests::ledger::unique_key;
use routemq_tests::process::{Process, run_bounded};
use routemq_tests::process_jobs::read_ledger;
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

fn secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

async fn prove(driver: Arc<dyn QueueDriver>, mut env: Vec<(String, String)>) {
    let queue = unique_key("schedule-e2e");
    let dir = std::env::temp_dir().join(&queue);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ledger = dir.join("jobs.ledger");
    env.extend([
        (
            "TEST_WORKER_SCHEDULE_CRON".to_owned(),
            "* * * * * *".to_owned(),
        ),
        (
            "TEST_WORKER_SCHEDULE_LEDGER".to_owned(),
            ledger.to_str().expect("utf-8").to_owned(),
        ),
        ("TEST_WORKER_SCHEDULE_QUEUE".to_owned(), queue.clone()),
    ]);
    let started = SystemTime::now();
    let (between, resumed) = tokio::task::block_in_place(|| {
        let schedulers: Vec<Process> = (0..3)
            .map(|_| Process::start(WORKER, &env, &strings(&["queue-schedule"])))
            .collect();
        std::thread::sleep(Duration::from_millis(5_500));
        let between = SystemTime::now();
        for mut scheduler in schedulers {
            scheduler.signal("TERM");
            assert!(scheduler.wait(Duration::from_secs(20)).success());
        }
        let work = strings(&[
            "queue-work",
            "--schedule",
            "--queue",
            &queue,
            "--max-time",
            "3",
            "--sleep",
            "0.1",
        ]);
        let mut worker = Process::start(WORKER, &env, &work);
        let resumed = SystemTime::now();
        assert!(worker.wait(Duration::from_secs(30)).success());
        (between, resumed)
    });
    let stopped = SystemTime::now();

    let name = format!("test-{queue}");
    let mut fired = 0u64;
    for tick in secs(started)..=secs(stopped) {
        let holders = driver
            .slot_holders(&format!("schedule:{name}:{tick}"))
            .await
            .expect("holders");
        if holders.is_empty() {
            // Only at the edges, and while the second phase's process started.
            let edge = tick <= secs(started) + 2 || tick + 1 >= secs(stopped);
            let gap = tick >= secs(between) && tick <= secs(resumed) + 3;
            assert!(edge || gap, "tick {tick} was not fired");
        }
        fired += holders.len() as u64;
    }
    assert!(fired >= 5, "{fired} ticks fired in about 9 s");
    let done = read_ledger(&ledger)
        .iter()
        .filter(|l| l.event == "done")
        .count() as u64;
    let queued = driver.size(&queue).await.expect("size");
    assert_eq!(
        done + queued,
        fired,
        "each tick's job ran once or is still queued ({done} ran, {queued} queued)"
    );
    assert!(done >= 5, "the worker ran the backlog: {done}");

    let mut list = Command::new(WORKER);
    list.arg("queue-schedule-list")
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = run_bounded(list, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(listed[0]["cron"], "* * * * * *");
    assert!(listed[0]["last_run"].is_string(), "{listed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_across_processes_on_sqlite() {
    let (driver, env) = routemq_tests::process_env::sqlite("schedule-e2e").await;
    prove(driver, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_across_processes_on_postgres() {
    with_fresh_database(Server::Postgres, "schedule_pg", |driver, url| async move {
        prove(driver, database_env("postgres", url)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_across_processes_on_mysql() {
    with_fresh_database(Server::Mysql, "schedule_my", |driver, url| async move {
        prove(driver, database_env("mysql", url)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_across_processes_on_redis() {
    routemq_tests::process_env::with_redis("routemq-schedule", prove).await;
}

#[test]
fn a_binary_without_schedules_or_with_a_bad_one_says_so() {
    let db = routemq_tests::sqlite_files::fresh_path("schedule-bad");
    let run = |extra: &[(&str, &str)]| {
        let mut command = Command::new(WORKER);
        command
            .arg("queue-schedule")
            .env("RUST_LOG", "warn")
            .env("QUEUE_CONNECTION", "sqlite")
            .env("QUEUE_SQLITE_PATH", &db)
            .env_remove("DATABASE_URL")
            .envs(extra.iter().copied());
        run_bounded(command, Duration::from_secs(30))
    };
    let none = run(&[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("has no schedules"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let bad = run(&[
        ("TEST_WORKER_SCHEDULE_CRON", "61 * * * *"),
        ("TEST_WORKER_SCHEDULE_LEDGER", "/dev/null"),
        ("TEST_WORKER_SCHEDULE_QUEUE", "bad-schedule"),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid schedule") && stderr.contains("cron expression `61 * * * *`"),
        "{stderr}"
    );
}
