//! Workers record themselves in the store: the dashboard's list of workers, its per-minute
//! throughput and its job-type runtimes come from these records.

use std::time::{Duration, SystemTime};

use routemq::driver::{WorkerRow, epoch_millis};
use routemq::worker::presence::{KEPT_FOR, workers};

use crate::Harness;
use crate::jobs::{AlwaysFail, Record};

/// A worker's records while it runs and after it stops: who it is, what it serves, what it did;
/// reads only read, and a prune deletes the records that stopped beating before its bound.
pub async fn workers_record_their_presence(h: Harness) {
    for n in 0..5 {
        h.push(Record {
            key: h.key.clone(),
            n,
        })
        .await;
    }
    h.push(AlwaysFail {
        key: h.key.clone(),
        permanent: true,
    })
    .await;
    let options = routemq::WorkerOptions {
        presence_interval: Duration::from_millis(100),
        ..h.options()
    };
    let report = h.work(options).await;
    assert_eq!((report.succeeded, report.failed), (5, 1));

    let all = workers(h.driver.as_ref())
        .await
        .expect("list workers")
        .expect("the driver records workers");
    let mine: Vec<_> = all
        .iter()
        .filter(|w| w.queues == [h.queue.clone()])
        .collect();
    assert_eq!(mine.len(), 1, "one record per worker: {mine:?}");
    let worker = mine[0];
    assert_eq!(worker.pid, std::process::id());
    assert!(
        worker.id.contains(&format!(":{}:", std::process::id())),
        "{}",
        worker.id
    );
    assert_eq!(worker.connection, h.connection);
    assert_eq!(worker.concurrency, 4);
    assert!(
        worker.stopped_at.is_some(),
        "its last record says it stopped"
    );
    assert!(!worker.is_running(epoch_millis(SystemTime::now())));
    assert_eq!(
        (worker.processed, worker.succeeded, worker.failed),
        (6, 5, 1)
    );
    let per_minute: (u64, u64) = worker
        .minutes
        .iter()
        .fold((0, 0), |(s, f), m| (s + m.succeeded, f + m.failed));
    assert_eq!(per_minute, (5, 1));
    let records = &worker.job_types["conformance.Record"];
    assert_eq!((records.runs, records.failures), (5, 0));
    assert!(records.quantile(0.95).is_some());
    assert_eq!(worker.job_types["conformance.AlwaysFail"].failures, 1);

    // Half an hour old: other tests' workers (which prune what is older than an hour) leave it.
    let half_hour = Duration::from_secs(1800);
    assert!(half_hour < KEPT_FOR);
    let old = WorkerRow {
        id: format!("gone-{}", h.queue),
        beat_at: epoch_millis(SystemTime::now() - half_hour),
        doc: "{}".to_owned(),
    };
    assert!(h.driver.worker_beat(&old).await.expect("beat"));
    let ids = |rows: Option<Vec<WorkerRow>>| -> Vec<String> {
        rows.expect("recorded")
            .into_iter()
            .map(|row| row.id)
            .collect()
    };
    let since = epoch_millis(SystemTime::now() - half_hour / 2);
    let fresh = ids(h.driver.worker_rows(since).await.expect("rows"));
    assert!(!fresh.contains(&old.id), "too old to be read");
    assert!(fresh.contains(&worker.id));
    assert!(
        ids(h.driver.worker_rows(0).await.expect("rows")).contains(&old.id),
        "not deleted by a read"
    );
    let pruned = h.driver.worker_prune(since).await.expect("prune");
    assert!(pruned >= 1, "pruned {pruned}");
    let all = ids(h.driver.worker_rows(0).await.expect("rows"));
    assert!(!all.contains(&old.id), "deleted by the prune");
    assert!(all.contains(&worker.id), "the fresh record stays");
}
