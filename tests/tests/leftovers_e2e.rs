//! Everything routemq writes has an owner that removes it, on every driver, through the door:
//! jobs dispatched with the public API (plain, failing, unique and encrypted, rate- and
//! concurrency-limited, a batch with callbacks, a chain, a delayed job cancelled, a queue paused
//! and resumed) run by `test-worker` processes, the failed job retried and failed again, then one
//! worker pass with the retention settings. Afterwards the store holds nothing that does not
//! expire by itself within eight days: no job, failed job, batch or slot row on SQL; on Redis only
//! queue counters, each with its expiry, and the workers' presence records, which expire an hour
//! after the last worker's beat (on SQL, a running worker deletes those older than an hour).

use std::sync::{Arc, Once};
use std::time::Duration;

use routemq::crypto::Keyring;
use routemq::driver::QueueDriver;
use routemq::worker::presence::KEPT_FOR;
use routemq_tests::limit_jobs::{Control, Limited};
use routemq_tests::process::run_command;
use routemq_tests::process_env::{Stage, drain_args, key_base64, with_vars};
use routemq_tests::process_jobs::{Ledgered, SealedOnce, read_ledger};
use routemq_tests::raw_store::leftovers;

const KEY: [u8; 32] = [0x64; 32];
const EIGHT_DAYS: Duration = Duration::from_secs(8 * 24 * 3600);

async fn prove(driver: Arc<dyn QueueDriver>, connection: &str, env: Vec<(String, String)>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        routemq::crypto::install(Keyring::new(KEY, &[]));
    });
    let stage = Stage::new(&driver, connection, "owners");
    let (manager, queue, ledger, path) = (&stage.manager, &stage.queue, &stage.ledger, &stage.path);
    let env = with_vars(&env, &[("ROUTEMQ_KEY", key_base64(KEY))]);
    let cli = |env: &[(String, String)], args: &[&str]| {
        let out = tokio::task::block_in_place(|| {
            run_command(env!("CARGO_BIN_EXE_test-worker"), env, args)
        });
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    let job = |n: u64, fail: bool| Ledgered {
        path: path.clone(),
        n,
        sleep_ms: 0,
        fail,
        note: String::new(),
    };
    let limited = |n: u64, control: Control| Limited {
        path: path.clone(),
        n,
        sleep_ms: 0,
        control,
    };

    for n in 1..=3 {
        manager
            .push(job(n, false))
            .on_queue(queue.clone())
            .await
            .expect("dispatch");
    }
    manager
        .push(job(5, true))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    let once = SealedOnce {
        path: path.clone(),
        n: 7,
        secret: "a secret".to_owned(),
    };
    let stored = manager
        .push(once)
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    assert!(stored.id().is_some(), "the unique job is queued");
    let rate = Control::Rate(format!("{queue}-rate"), 5, 1);
    let concurrency = Control::Concurrency(format!("{queue}-conc"), 1);
    manager
        .push(limited(20, rate))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    manager
        .push(limited(21, concurrency))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    manager
        .batch(vec![job(10, false), job(11, false)])
        .on_queue(queue.clone())
        .then(job(12, false))
        .finally(job(13, false))
        .dispatch()
        .await
        .expect("dispatch");
    manager
        .chain()
        .then(job(14, false))
        .on_queue(queue.clone())
        .then(job(15, false))
        .on_queue(queue.clone())
        .dispatch()
        .await
        .expect("dispatch");
    let delayed = manager
        .later(Duration::from_secs(3_600), job(16, false))
        .on_queue(queue.clone())
        .await
        .expect("dispatch");
    cli(&env, &["queue-cancel", &delayed]);
    cli(&env, &["queue-pause", queue]);
    cli(&env, &["queue-resume", queue]);

    let work = drain_args(queue);
    cli(&env, &work);
    cli(&env, &["queue-retry", "--all"]);
    cli(&env, &work);
    let ran = read_ledger(ledger);
    for n in [1, 2, 3, 7, 10, 11, 12, 13, 14, 15, 20, 21] {
        assert!(
            ran.iter().any(|line| line.event == "done" && line.n == n),
            "job {n} ran"
        );
    }
    assert_eq!(
        ran.iter()
            .filter(|line| line.event == "start" && line.n == 5)
            .count(),
        2,
        "the failing job ran, was retried and ran again"
    );

    // Past the rate window, one worker pass with the retention settings (0.36 s).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut retention = env.clone();
    for variable in [
        "QUEUE_FAILED_RETENTION_HOURS",
        "QUEUE_BATCH_RETENTION_HOURS",
    ] {
        retention.push((variable.to_owned(), "0.0001".to_owned()));
    }
    cli(
        &retention,
        &[
            "queue-work",
            "--queue",
            queue,
            "--max-time",
            "1",
            "--sleep",
            "0.1",
        ],
    );

    let left = leftovers(connection, &env).await;
    let forever: Vec<_> = left
        .iter()
        .filter(|l| l.expires_in.is_none_or(|ttl| ttl > EIGHT_DAYS))
        .collect();
    assert!(forever.is_empty(), "kept with no owner: {forever:#?}");
    // Redis: queue counters, and the workers' presence records (kept for an hour).
    let expiring: Vec<_> = left
        .iter()
        .filter(|l| {
            !connection.starts_with("redis")
                || !(l.what.ends_with(":seq")
                    || (l.what.contains(":workers::")
                        && l.expires_in.is_some_and(|ttl| ttl <= KEPT_FOR)))
        })
        .collect();
    assert!(
        expiring.is_empty(),
        "more than queue counters: {expiring:#?}"
    );
    if connection.starts_with("redis") {
        assert!(!left.is_empty(), "the queue's counter, expiring");
    }
}

routemq_tests::on_every_driver!(prove, "leftovers_e2e");
