//! Batches: counts, callbacks exactly once under racing completions, failures, cancellation,
//! and the driver's compare-and-set underneath.

use std::sync::Arc;

use routemq::batch::{Batch, BatchInfo};
use routemq::driver::{BatchPrune, BatchRow, BatchWrite};
use routemq::queue::cancel::{Cancellation, cancel};

use crate::Harness;
use crate::jobs::BatchStep;
use crate::ledger;

/// Callbacks are numbered from these (plus the batch's number).
const THEN: u64 = 1_000;
const CATCH: u64 = 2_000;
const FINALLY: u64 = 3_000;

fn step(h: &Harness, n: u64, fail: bool, sleep_ms: u64) -> BatchStep {
    BatchStep {
        key: h.key.clone(),
        n,
        fail,
        sleep_ms,
    }
}

/// How many times job `n` ran.
fn runs(h: &Harness, n: u64) -> usize {
    ledger::of(&h.key, "run")
        .iter()
        .filter(|e| e.n == n)
        .count()
}

async fn read_batch(h: &Harness, batch: &Batch) -> BatchInfo {
    routemq::batch::find(h.driver.as_ref(), batch.id())
        .await
        .expect("read the batch")
        .expect("the batch is stored")
}

/// Dispatches batch `b` of `jobs` on this test's queue, with all three callbacks.
async fn dispatch(h: &Harness, b: u64, jobs: Vec<BatchStep>, allow_failures: bool) -> Batch {
    h.manager
        .batch(jobs)
        .name(format!("batch {b}"))
        .on_queue(h.queue.clone())
        .then(step(h, THEN + b, false, 0))
        .catch(step(h, CATCH + b, false, 0))
        .finally(step(h, FINALLY + b, false, 0))
        .allow_failures(allow_failures)
        .dispatch()
        .await
        .expect("dispatch the batch")
}

/// Three batches whose jobs all end at about the same moment on 16 concurrent slots: each
/// batch's `then` and `finally` run exactly once, `catch` never; counts and states add up. An
/// empty batch runs its `then` and `finally` at once.
pub async fn batch_callbacks_run_once_under_racing_completions(h: Harness) {
    let mut batches = Vec::new();
    for b in 0..3 {
        let jobs = (0..8).map(|i| step(&h, b * 100 + i, false, 40)).collect();
        batches.push(dispatch(&h, b, jobs, false).await);
    }
    assert_eq!(batches[0].job_ids().len(), 8);
    let report = h
        .work(routemq::WorkerOptions {
            concurrency: 16,
            ..h.options()
        })
        .await;
    assert_eq!(report.succeeded, 3 * 8 + 3 * 2, "{report:?}");
    for (b, batch) in (0..).zip(&batches) {
        assert_eq!(runs(&h, THEN + b), 1, "then of batch {b}");
        assert_eq!(runs(&h, FINALLY + b), 1, "finally of batch {b}");
        assert_eq!(runs(&h, CATCH + b), 0, "catch of batch {b}");
        for i in 0..8 {
            assert_eq!(runs(&h, b * 100 + i), 1);
        }
        let info = read_batch(&h, batch).await;
        assert_eq!(
            (
                info.total,
                info.pending,
                info.processed,
                info.failed,
                info.cancelled
            ),
            (8, 0, 8, 0, 0),
            "{info:?}"
        );
        assert!(info.is_finished() && !info.is_cancelled());
        assert_eq!(info.progress(), 100);
        assert_eq!(info.name.as_deref(), Some(format!("batch {b}").as_str()));
        let states: Vec<&str> = info.callbacks.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            ["waiting", "stored", "stored"],
            "catch, then, finally"
        );
    }
    let batch_runs = ledger::of(&h.key, "run");
    assert!(
        batch_runs
            .iter()
            .filter(|e| e.n < 100 * 3)
            .all(|e| e.job_id == batches[(e.n / 100) as usize].id()),
        "each job sees its batch id"
    );
    let listed = routemq::batch::list(h.driver.as_ref(), 1_000)
        .await
        .expect("list");
    for batch in &batches {
        assert!(listed.iter().any(|b| b.id == batch.id()));
    }

    let empty = dispatch(&h, 9, Vec::new(), false).await;
    h.work(h.options()).await;
    assert_eq!((runs(&h, THEN + 9), runs(&h, FINALLY + 9)), (1, 1));
    let info = read_batch(&h, &empty).await;
    assert_eq!((info.total, info.progress()), (0, 100));
    assert!(info.is_finished());
}

/// The first failure runs `catch` and cancels the batch: its other jobs are skipped, `finally`
/// runs, `then` does not. With failures allowed the others run; once the failed job is fixed and
/// retried from the failed store, the batch has succeeded and `then` runs. A failed job of the
/// cancelled batch, retried, runs too (and counts as processed).
pub async fn a_failure_runs_catch_and_cancels_unless_allowed(h: Harness) {
    let jobs = vec![
        step(&h, 0, true, 0),
        step(&h, 1, false, 0),
        step(&h, 2, false, 0),
        step(&h, 3, false, 0),
    ];
    let strict = dispatch(&h, 0, jobs, false).await;
    let one_at_a_time = routemq::WorkerOptions {
        concurrency: 1,
        prefetch: Some(0),
        ..h.options()
    };
    h.work(one_at_a_time.clone()).await;
    assert_eq!(
        (runs(&h, 0), runs(&h, 1), runs(&h, 2), runs(&h, 3)),
        (1, 0, 0, 0)
    );
    assert_eq!(
        (runs(&h, CATCH), runs(&h, FINALLY), runs(&h, THEN)),
        (1, 1, 0)
    );
    let info = read_batch(&h, &strict).await;
    assert_eq!(
        (info.processed, info.failed, info.cancelled, info.pending),
        (0, 1, 3, 0),
        "{info:?}"
    );
    assert!(info.is_cancelled() && info.is_finished());

    let jobs = vec![
        step(&h, 10, true, 0),
        step(&h, 11, false, 0),
        step(&h, 12, false, 0),
    ];
    let lenient = dispatch(&h, 1, jobs, true).await;
    h.work(one_at_a_time.clone()).await;
    assert_eq!((runs(&h, 11), runs(&h, 12)), (1, 1));
    assert_eq!(
        (
            runs(&h, CATCH + 1),
            runs(&h, FINALLY + 1),
            runs(&h, THEN + 1)
        ),
        (1, 1, 0)
    );
    let before = read_batch(&h, &lenient).await;
    assert_eq!((before.processed, before.failed), (2, 1), "{before:?}");
    assert!(!before.is_cancelled());

    ledger::record(&h.key, "healed", 0, 0, "");
    // Both failed jobs are retried; the strict batch's runs although its batch is cancelled.
    for failed in h.driver.failed_list(Some(&h.queue)).await.expect("failed") {
        h.driver
            .failed_retry(&failed.id)
            .await
            .expect("retry")
            .expect("retried");
    }
    h.work(one_at_a_time).await;
    assert_eq!((runs(&h, 0), runs(&h, 10)), (2, 2));
    let healed = read_batch(&h, &strict).await;
    assert_eq!(
        (healed.processed, healed.failed, healed.cancelled),
        (1, 0, 3),
        "{healed:?}"
    );
    assert_eq!(runs(&h, THEN), 0, "three of its jobs were skipped");
    assert_eq!(runs(&h, THEN + 1), 1, "the batch has succeeded now");
    assert_eq!(
        runs(&h, FINALLY + 1),
        1,
        "finally ran once, when it first finished"
    );
    let after = read_batch(&h, &lenient).await;
    assert_eq!(
        (after.processed, after.failed, after.pending),
        (3, 0, 0),
        "{after:?}"
    );
}

/// A cancelled batch's jobs are skipped (counted as cancelled) and its `finally` runs; a job of a
/// batch cancelled by id counts as cancelled too.
pub async fn cancelled_batches_skip_their_jobs(h: Harness) {
    let jobs = (0..4).map(|n| step(&h, n, false, 0)).collect();
    let batch = dispatch(&h, 0, jobs, false).await;
    let driver = h.driver.as_ref();
    assert_eq!(
        routemq::batch::cancel(driver, batch.id())
            .await
            .expect("cancel"),
        Some(true)
    );
    assert!(
        !batch.cancel_on(&h.manager).await.expect("cancel"),
        "cancelled already"
    );
    assert_eq!(
        routemq::batch::cancel(driver, "no-such-batch")
            .await
            .expect("cancel"),
        None
    );
    let cancelled = batch
        .info_on(&h.manager)
        .await
        .expect("read")
        .expect("stored");
    assert!(cancelled.is_cancelled() && !cancelled.is_finished());
    let report = h.work(h.options()).await;
    assert_eq!(report.cancelled, 4, "{report:?}");
    assert_eq!((0..4).map(|n| runs(&h, n)).sum::<usize>(), 0, "no job ran");
    assert_eq!(
        (runs(&h, FINALLY), runs(&h, THEN), runs(&h, CATCH)),
        (1, 0, 0)
    );
    let info = read_batch(&h, &batch).await;
    assert_eq!((info.cancelled, info.pending), (4, 0), "{info:?}");
    assert!(info.is_cancelled() && info.is_finished());

    // Two jobs of different types.
    let batch = h
        .manager
        .batch(vec![step(&h, 10, false, 0)])
        .add_job(crate::jobs::Record {
            key: h.key.clone(),
            n: 11,
        })
        .on_queue(h.queue.clone())
        .then(step(&h, THEN + 1, false, 0))
        .finally(step(&h, FINALLY + 1, false, 0))
        .dispatch()
        .await
        .expect("dispatch");
    let removed = cancel(driver, &batch.job_ids()[0]).await.expect("cancel");
    assert!(
        matches!(removed, Cancellation::Removed { .. }),
        "{removed:?}"
    );
    h.work(h.options()).await;
    assert_eq!((runs(&h, 10), runs(&h, 11)), (0, 1));
    assert_eq!((runs(&h, FINALLY + 1), runs(&h, THEN + 1)), (1, 0));
    let info = read_batch(&h, &batch).await;
    assert_eq!(
        (info.processed, info.cancelled, info.pending),
        (1, 1, 0),
        "{info:?}"
    );
}

/// The driver's batch operations: a write applies only at the version read, with the job's
/// outcome in the same step; one of many racing writers wins; prunes select by finish and by age.
pub async fn batch_records_are_compare_and_set(h: Harness) {
    let driver = Arc::clone(&h.driver);
    let id = ledger::unique_key("cas");
    let row = BatchRow {
        id: id.clone(),
        version: 0,
        created_at: 1_000,
        finished_at: None,
        doc: "{\"n\": 0}".to_owned(),
    };
    driver.batch_create(&row).await.expect("create");
    let (read, outcome) = driver
        .batch_read(&id, Some("7"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!((read, outcome), (row.clone(), None));
    let write = |version, finished_at, mark| BatchWrite {
        id: &id,
        version,
        doc: "{\"n\": 1}",
        finished_at,
        mark,
    };
    assert!(
        !driver
            .batch_write(&write(1, None, None))
            .await
            .expect("write"),
        "wrong version"
    );
    assert!(
        driver
            .batch_write(&write(0, Some(2_000), Some(("7", "succeeded"))))
            .await
            .expect("write")
    );
    let (read, outcome) = driver
        .batch_read(&id, Some("7"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (read.version, read.finished_at, read.doc.as_str()),
        (1, Some(2_000), "{\"n\": 1}")
    );
    assert_eq!(outcome.as_deref(), Some("succeeded"));
    let (_, other) = driver
        .batch_read(&id, Some("8"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(other, None);
    assert!(
        driver
            .batch_write(&write(1, None, None))
            .await
            .expect("write")
    );
    let (read, _) = driver
        .batch_read(&id, None)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (read.version, read.finished_at),
        (2, None),
        "unfinished again"
    );

    // Eight writers read version 2 and race: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let (driver, id) = (Arc::clone(&driver), id.clone());
            tokio::spawn(async move {
                let job = n.to_string();
                let write = BatchWrite {
                    id: &id,
                    version: 2,
                    doc: "{}",
                    finished_at: None,
                    mark: Some((&job, "failed")),
                };
                driver.batch_write(&write).await.expect("write")
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        won += usize::from(racer.await.expect("racer"));
    }
    assert_eq!(won, 1);
    assert!(
        driver
            .batch_list(10_000)
            .await
            .expect("list")
            .iter()
            .any(|b| b.id == id)
    );

    // Finished before 1970-01-01T00:00:03 selects nothing real; this unfinished batch, created
    // at 00:00:01, goes only when unfinished batches that old are asked for.
    let old_finished = BatchPrune {
        finished_before: 3_000,
        unfinished_before: None,
    };
    driver.batch_prune(old_finished).await.expect("prune");
    assert!(driver.batch_read(&id, None).await.expect("read").is_some());
    let old_unfinished = BatchPrune {
        finished_before: 3_000,
        unfinished_before: Some(1_001),
    };
    assert_eq!(driver.batch_prune(old_unfinished).await.expect("prune"), 1);
    assert!(driver.batch_read(&id, None).await.expect("read").is_none());
    assert!(
        driver
            .batch_read(&id, Some("7"))
            .await
            .expect("read")
            .is_none()
    );
}
