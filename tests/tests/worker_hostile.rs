//! The worker core under hostile jobs, on the memory and SQLite drivers: handlers that block their
//! thread, ignore their token, never finish `failed()`, release themselves for `Duration::MAX`, or
//! panic outside `handle`; envelopes and options with absurd durations. Nothing panics, nothing is
//! lost, no job runs twice at once, and shutdown always ends.

use std::sync::Arc;
use std::time::Duration;

use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::driver::sqlite::SqliteDriver;
use routemq::worker::STOP_WAIT;
use routemq::{QueueError, WorkerError};
use routemq_tests::Harness;
use routemq_tests::harness::eventually;
use routemq_tests::hostile::{Blocking, PanicOnDecode, ReleaseWhenStopped, StuckFailedHook};
use routemq_tests::jobs::Record;
use routemq_tests::ledger::{events, of};
use routemq_tests::sqlite_files::fresh_path;

macro_rules! on_memory_and_sqlite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
                    let harness = Harness::new(|| async { Some(Arc::clone(&driver)) }, stringify!($case))
                        .await
                        .expect("memory");
                    super::$case(harness).await;
                }
            )*
        }
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let path = fresh_path(stringify!($case));
                    let driver: Arc<dyn QueueDriver> = Arc::new(
                        SqliteDriver::open(path.to_str().expect("utf-8")).await.expect("open"),
                    );
                    let harness = Harness::new(|| async { Some(Arc::clone(&driver)) }, stringify!($case))
                        .await
                        .expect("sqlite");
                    super::$case(harness).await;
                }
            )*
        }
    };
}

on_memory_and_sqlite!(
    delays_beyond_ten_years_are_refused_at_dispatch,
    absurd_envelope_timeout_does_not_panic_the_runner,
    zero_heartbeat_interval_is_an_error_not_a_panic,
    blocking_handler_keeps_its_lease_until_it_returns,
    drain_keeps_a_release_the_job_asked_for,
    shutdown_ends_although_a_handler_never_yields,
    failed_hook_that_never_returns_does_not_hold_the_worker,
    panic_outside_handle_drops_the_lease_and_is_reported,
);

async fn delays_beyond_ten_years_are_refused_at_dispatch(h: Harness) {
    let job = Record {
        key: h.key.clone(),
        n: 0,
    };
    let error = h
        .manager
        .later(Duration::MAX, job)
        .on_queue(h.queue.clone())
        .await
        .expect_err("refused");
    assert!(matches!(error, QueueError::DelayTooLong { .. }), "{error}");
    let longest = h
        .manager
        .later(
            routemq::limits::MAX_DURATION,
            Record {
                key: h.key.clone(),
                n: 1,
            },
        )
        .on_queue(h.queue.clone())
        .await;
    assert!(longest.is_ok(), "ten years is allowed: {longest:?}");
    assert_eq!(h.size().await, 1, "only the allowed dispatch was stored");
}

async fn absurd_envelope_timeout_does_not_panic_the_runner(h: Harness) {
    let payload = format!(
        r#"{{"class": "conformance.Record", "data": {{"key": "{}", "n": 7}}, "max_tries": 3, "timeout": 1e20, "retry_after": 1e300, "queue": "{}"}}"#,
        h.key, h.queue
    );
    h.push_raw(&payload).await;
    let report = h.work(h.options()).await;
    assert_eq!(report.succeeded, 1, "{report:?}");
    assert_eq!(report.panicked, 0);
    assert_eq!(of(&h.key, "run").len(), 1);
}

async fn zero_heartbeat_interval_is_an_error_not_a_panic(h: Harness) {
    let error = h
        .worker(routemq::WorkerOptions {
            heartbeat_interval: Duration::ZERO,
            ..h.options()
        })
        .run()
        .await
        .expect_err("invalid");
    assert!(
        matches!(
            error,
            WorkerError::InvalidOption {
                option: "heartbeat_interval",
                ..
            }
        ),
        "{error}"
    );
    let error = h
        .worker(routemq::WorkerOptions {
            sleep: Duration::MAX,
            ..h.options()
        })
        .run()
        .await
        .expect_err("invalid");
    assert!(matches!(
        error,
        WorkerError::InvalidOption {
            option: "sleep",
            ..
        }
    ));
}

/// A handler that blocks its thread past its 1 s timeout: its token fires, it cannot be aborted,
/// and its lease stays renewed until it returns, so a second worker never runs it at the same time.
async fn blocking_handler_keeps_its_lease_until_it_returns(h: Harness) {
    h.push(Blocking {
        key: h.key.clone(),
        block_ms: 2_500,
    })
    .await;
    let options = routemq::WorkerOptions {
        visibility_timeout: Duration::from_millis(800),
        heartbeat_interval: Duration::from_millis(100),
        reaper_interval: Duration::from_millis(100),
        max_time: Some(Duration::from_secs(8)),
        concurrency: 1,
        prefetch: Some(0),
        ..h.options()
    };
    let first = tokio::spawn(h.worker(options.clone()).run());
    let second = tokio::spawn(h.worker(options).run());
    let (first, second) = (
        first.await.expect("first").expect("runs"),
        second.await.expect("second").expect("runs"),
    );
    let log = events(&h.key);
    let mut running = 0;
    for event in &log {
        match event.what {
            "start" => running += 1,
            "end" => running -= 1,
            _ => {}
        }
        assert!(running <= 1, "two copies ran at once: {log:?}");
    }
    let starts = of(&h.key, "start").len();
    assert!(starts >= 2, "it timed out and ran again: {log:?}");
    assert_eq!(first.panicked + second.panicked, 0);
}

/// A job that answers the shutdown token with `release(1 h)` keeps its hour and its attempt count.
async fn drain_keeps_a_release_the_job_asked_for(h: Harness) {
    h.push(ReleaseWhenStopped {
        key: h.key.clone(),
        release_secs: 3_600,
    })
    .await;
    let worker = h.worker(routemq::WorkerOptions {
        stop_when_empty: false,
        ..h.options()
    });
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    assert!(eventually(Duration::from_secs(10), || !of(&h.key, "start").is_empty()).await);
    shutdown.drain();
    let report = running.await.expect("joined").expect("ran");
    assert_eq!((report.retried, report.released), (1, 0), "{report:?}");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.delayed), (0, 1), "{stats:?}");
}

/// A handler that never yields: after the grace and an immediate stop, the worker releases the
/// job (attempt refunded) and returns within STOP_WAIT, leaving the blocked task behind.
async fn shutdown_ends_although_a_handler_never_yields(h: Harness) {
    let block = STOP_WAIT + Duration::from_secs(4);
    h.push(Blocking {
        key: h.key.clone(),
        block_ms: u64::try_from(block.as_millis()).expect("small"),
    })
    .await;
    let worker = h.worker(routemq::WorkerOptions {
        stop_when_empty: false,
        shutdown_grace: Duration::from_millis(300),
        timeout: Duration::from_secs(60),
        ..h.options()
    });
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    assert!(eventually(Duration::from_secs(10), || !of(&h.key, "start").is_empty()).await);
    let asked = tokio::time::Instant::now();
    shutdown.drain();
    let report = tokio::time::timeout(STOP_WAIT + Duration::from_secs(5), running)
        .await
        .expect("the worker stopped although the handler never yielded")
        .expect("joined")
        .expect("ran");
    assert!(asked.elapsed() < block, "it did not wait for the handler");
    assert_eq!(report.released, 1, "{report:?}");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved), (1, 0), "{stats:?}");
}

async fn failed_hook_that_never_returns_does_not_hold_the_worker(h: Harness) {
    h.push(StuckFailedHook { key: h.key.clone() }).await;
    let report = tokio::time::timeout(Duration::from_secs(20), h.worker(h.options()).run())
        .await
        .expect("the worker was not held by failed()")
        .expect("ran");
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(of(&h.key, "failed").len(), 1, "failed() ran once");
    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(failed.len(), 1, "stored before failed() ran");
}

/// A job whose decoding panics (outside `handle`): the worker survives, reports it, and the lease
/// is no longer renewed, so the reaper can take the job back.
async fn panic_outside_handle_drops_the_lease_and_is_reported(h: Harness) {
    h.push(PanicOnDecode { trap: 1 }).await;
    let options = routemq::WorkerOptions {
        stop_when_empty: false,
        max_time: Some(Duration::from_secs(3)),
        heartbeat_interval: Duration::from_millis(100),
        reaper_interval: Duration::ZERO,
        ..h.options()
    };
    let running = tokio::spawn(h.worker(options).run());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // The worker still runs its heartbeat; a lease it still renewed would be younger than 500 ms.
    let reaped = h
        .driver
        .reap(
            std::slice::from_ref(&h.queue),
            Duration::from_millis(500),
            None,
            &h.connection,
        )
        .await
        .expect("reap");
    assert_eq!(
        reaped.requeued, 1,
        "the panicked job's lease was not renewed"
    );
    let report = running.await.expect("joined").expect("ran");
    assert!(report.panicked >= 1, "{report:?}");
}
