//! The proof that limits hold across processes: three `test-worker` processes per driver serve
//! five queues at once (a lock per key, a concurrency limit, a rate limit, and a queue-level
//! `--limit` and `--rate`), and every job writes its start and end with a timestamp to a ledger.
//! The most jobs running at once never exceeds a limit, the starts within any window of a rate's
//! period never exceed the rate plus one, and every job runs exactly once. Then a worker is killed
//! while holding a lock, and the lock expires. The memory driver runs the same check with workers
//! in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::worker::Rate;
use routemq::{QueueManager, Settings, Worker, WorkerOptions};
use routemq_tests::databases::{Server, database_env, with_fresh_database};
use routemq_tests::ledger::unique_key;
use routemq_tests::limit_jobs::{
    Control, Limited, Stamp, max_concurrency, max_starts_per_window, read_stamps,
};
use routemq_tests::process::Process;

/// The five queues of the proof and what each is limited to.
struct Plan {
    key: String,
    dir: PathBuf,
}

const RATE: u32 = 4;
const PERIOD: Duration = Duration::from_secs(1);

impl Plan {
    fn new(name: &str) -> Self {
        let key = unique_key(name);
        let dir = std::env::temp_dir().join(&key);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { key, dir }
    }

    fn queue(&self, which: &str) -> String {
        format!("{}-{which}", self.key)
    }

    fn ledger(&self, which: &str) -> PathBuf {
        self.dir.join(format!("{which}.ledger"))
    }

    fn queues(&self) -> String {
        ["lock", "conc", "rate", "qlimit", "qrate"]
            .map(|q| self.queue(q))
            .join(",")
    }

    /// `--limit` and `--rate` for the queue-level queues.
    fn worker_flags(&self) -> Vec<String> {
        vec![
            "--limit".to_owned(),
            format!("{}=2", self.queue("qlimit")),
            "--rate".to_owned(),
            format!("{}={RATE}/1s", self.queue("qrate")),
        ]
    }

    fn jobs(&self, which: &str, count: u64, sleep_ms: u64, control: &Control) -> Vec<Limited> {
        let path = self.ledger(which).to_str().expect("utf-8").to_owned();
        (0..count)
            .map(|n| Limited {
                path: path.clone(),
                n,
                sleep_ms,
                control: control.clone(),
            })
            .collect()
    }

    async fn dispatch(&self, manager: &QueueManager, connection: &str) {
        let k = &self.key;
        let batches = [
            ("lock", 8, 40, Control::Overlap(format!("lock-{k}"))),
            ("conc", 12, 80, Control::Concurrency(format!("conc-{k}"), 2)),
            (
                "rate",
                10,
                0,
                Control::Rate(format!("rate-{k}"), RATE, 1000),
            ),
            ("qlimit", 12, 80, Control::Free),
            ("qrate", 10, 0, Control::Free),
        ];
        for (which, count, sleep_ms, control) in batches {
            let ids = manager
                .bulk(self.jobs(which, count, sleep_ms, &control))
                .on_connection(connection)
                .on_queue(self.queue(which))
                .await
                .expect("dispatch");
            assert_eq!(ids.len() as u64, count);
        }
    }

    /// Every job ran to the end exactly once, and no limit was exceeded.
    fn check(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for (which, count, concurrency, rate) in [
            ("lock", 8, Some(1), None),
            ("conc", 12, Some(2), None),
            ("rate", 10, None, Some(RATE)),
            ("qlimit", 12, Some(2), None),
            ("qrate", 10, None, Some(RATE)),
        ] {
            let stamps = read_stamps(&self.ledger(which));
            let mut done: Vec<u64> = stamps.iter().filter(|s| !s.start).map(|s| s.n).collect();
            done.sort_unstable();
            assert_eq!(
                done,
                (0..count).collect::<Vec<_>>(),
                "{which}: each job once"
            );
            assert!(
                stamps.iter().all(|s| s.attempt == 1),
                "{which}: held-back jobs keep their attempt: {stamps:?}"
            );
            if let Some(limit) = concurrency {
                let seen = max_concurrency(&stamps);
                assert!(seen <= limit, "{which}: {seen} at once, limit {limit}");
            }
            if let Some(limit) = rate {
                let seen = max_starts_per_window(&stamps, PERIOD);
                assert!(
                    seen <= limit as usize + 1,
                    "{which}: {seen} starts within {PERIOD:?}, limit {limit}"
                );
                let span = span_of(&stamps);
                let least = PERIOD.mul_f64(f64::from((count as u32 - 1) / limit) - 0.2);
                assert!(span >= least, "{which}: {count} starts within {span:?}");
            }
            pids.extend(stamps.iter().map(|s| s.pid));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

fn span_of(stamps: &[Stamp]) -> Duration {
    let starts = stamps.iter().filter(|s| s.start).map(|s| s.at);
    let (first, last) = (starts.clone().min().unwrap_or(0), starts.max().unwrap_or(0));
    Duration::from_micros(last - first)
}

/// A `test-worker` process.
fn start(env: &[(String, String)], args: &[String]) -> Process {
    Process::start(env!("CARGO_BIN_EXE_test-worker"), env, args)
}

fn work_args(queues: &str, concurrency: &str, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "queue-work",
        "--queue",
        queues,
        "--concurrency",
        concurrency,
        "--sleep",
        "0.1",
        "--stop-when-empty",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend_from_slice(extra);
    args
}

/// The proof on a server or file shared by three worker processes, then the killed lock holder.
async fn prove(
    driver: Arc<dyn QueueDriver>,
    connection: &str,
    env: Vec<(String, String)>,
    name: &str,
) {
    let manager = QueueManager::new(Settings::default());
    manager.register(connection, Arc::clone(&driver));
    let plan = Plan::new(name);
    plan.dispatch(&manager, connection).await;
    let args = work_args(&plan.queues(), "4", &plan.worker_flags());
    let pids = tokio::task::block_in_place(|| {
        let mut workers: Vec<Process> = (0..3).map(|_| start(&env, &args)).collect();
        for worker in &mut workers {
            assert!(worker.wait(Duration::from_secs(90)).success());
        }
        plan.check()
    });
    assert!(
        pids.len() >= 2,
        "the jobs ran in {} process(es)",
        pids.len()
    );
    for which in ["lock", "conc", "rate", "qlimit", "qrate"] {
        let queue = plan.queue(which);
        assert!(
            driver
                .failed_list(Some(&queue))
                .await
                .expect("failed")
                .is_empty(),
            "{which}"
        );
    }
    killed_lock_holder_expires(&manager, connection, &driver, env).await;
}

/// A worker dies holding a lock (its job aborts the process): the lock expires after its 2 s,
/// and the jobs that waited for it, and the dead job's own retry, all run.
async fn killed_lock_holder_expires(
    manager: &QueueManager,
    connection: &str,
    driver: &Arc<dyn QueueDriver>,
    mut env: Vec<(String, String)>,
) {
    let plan = Plan::new("lock-holder");
    let lock = format!("dead-{}", plan.key);
    let queue = plan.queue("dies");
    let mut jobs = plan.jobs("dies", 1, 0, &Control::LockThenDie(lock.clone()));
    jobs.extend(
        plan.jobs("dies", 3, 0, &Control::Overlap(lock))
            .into_iter()
            .map(|mut j| {
                j.n += 1;
                j
            }),
    );
    for job in jobs {
        let _ = manager
            .push(job)
            .on_connection(connection)
            .on_queue(queue.clone())
            .await
            .expect("dispatch");
    }
    env.extend(
        [
            ("QUEUE_VISIBILITY_TIMEOUT", "2"),
            ("QUEUE_REAPER_INTERVAL", "0.5"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let ledger = plan.ledger("dies");
    tokio::task::block_in_place(|| {
        let first_only = ["--prefetch", "0"].map(str::to_owned);
        let mut dying = start(&env, &work_args(&queue, "1", &first_only));
        let status = dying.wait(Duration::from_secs(30));
        assert_eq!(
            status.code(),
            None,
            "the first worker dies of its job (a signal)"
        );
        let mut next = start(&env, &work_args(&queue, "4", &[]));
        assert!(next.wait(Duration::from_secs(60)).success());
    });
    let stamps = read_stamps(&ledger);
    let pill = stamps
        .iter()
        .find(|s| s.start && s.n == 0 && s.attempt == 1)
        .expect("the job that died started");
    let mut done: Vec<u64> = stamps.iter().filter(|s| !s.start).map(|s| s.n).collect();
    done.sort_unstable();
    assert_eq!(
        done,
        [0, 1, 2, 3],
        "every job ran once the lock expired: {stamps:?}"
    );
    let after_pill = stamps
        .iter()
        .filter(|s| s.start && s.at > pill.at)
        .map(|s| s.at)
        .min()
        .expect("later starts");
    assert!(
        Duration::from_micros(after_pill - pill.at) >= Duration::from_millis(1900),
        "the dead holder's lock held until it expired: {stamps:?}"
    );
    assert!(
        driver
            .failed_list(Some(&queue))
            .await
            .expect("failed")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes_on_sqlite() {
    let (driver, env) = routemq_tests::process_env::sqlite("limits-e2e").await;
    prove(driver, "sqlite", env, "limits-sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes_on_postgres() {
    with_fresh_database(Server::Postgres, "limits_pg", |driver, url| async move {
        prove(
            driver,
            "postgres",
            database_env("postgres", url),
            "limits-pg",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes_on_mysql() {
    with_fresh_database(Server::Mysql, "limits_my", |driver, url| async move {
        prove(driver, "mysql", database_env("mysql", url), "limits-my").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes_on_redis() {
    routemq_tests::process_env::with_redis("routemq-limits", |driver, env| {
        prove(driver, "redis", env, "limits-redis")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes_on_a_redis_cluster() {
    routemq_tests::process_env::with_redis_cluster("routemq-limits", |driver, env| {
        prove(driver, "redis-cluster", env, "limits-cluster")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_workers_sharing_a_memory_driver() {
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let manager = QueueManager::new(Settings::default());
    manager.register("memory", Arc::clone(&driver));
    let plan = Plan::new("limits-memory");
    plan.dispatch(&manager, "memory").await;
    let options = WorkerOptions {
        queues: plan.queues().split(',').map(str::to_owned).collect(),
        concurrency: 4,
        sleep: Duration::from_millis(100),
        stop_when_empty: true,
        queue_limits: [(plan.queue("qlimit"), 2)].into(),
        queue_rates: [(
            plan.queue("qrate"),
            Rate {
                limit: RATE,
                period: PERIOD,
            },
        )]
        .into(),
        ..WorkerOptions::default()
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let worker = Worker::new(Arc::clone(&driver), "memory", options.clone());
        workers.spawn(tokio::time::timeout(Duration::from_secs(90), worker.run()));
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("joined").expect("in time").expect("ran");
    }
    plan.check();
}
