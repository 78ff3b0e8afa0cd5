//! Unique jobs: one queued job per key, atomically, until it starts or finishes, and never
//! longer than `unique_for`.

use std::sync::Arc;
use std::time::Duration;

use routemq::Dispatched;

use crate::Harness;
use crate::harness::eventually;
use crate::jobs::{UniqueBriefly, UniqueUntilFinish, UniqueUntilStart};
use crate::ledger;

async fn dispatch<T: routemq::Job<Dispatched = Dispatched>>(h: &Harness, job: T) -> Dispatched {
    h.manager
        .push(job)
        .on_queue(h.queue.clone())
        .await
        .expect("dispatch")
}

/// A second dispatch while the first is queued is a duplicate (not an error, nothing stored);
/// once the first has finished, the key is free again.
pub async fn unique_jobs_are_queued_once_until_they_finish(h: Harness) {
    let job = |n| UniqueUntilFinish {
        key: h.key.clone(),
        n,
        millis: 0,
    };
    let first = dispatch(&h, job(1)).await;
    assert!(matches!(first, Dispatched::Queued(_)), "{first:?}");
    assert_eq!(
        dispatch(&h, job(2)).await,
        Dispatched::Duplicate { existing: None }
    );
    assert_eq!(h.size().await, 1);
    // A bulk dispatch with the key twice, while it is held: both duplicates.
    let bulk = h
        .manager
        .bulk([job(3), job(4)])
        .on_queue(h.queue.clone())
        .await
        .expect("bulk");
    assert!(bulk.iter().all(Dispatched::is_duplicate), "{bulk:?}");
    let report = h.work(h.options()).await;
    assert_eq!(report.succeeded, 1);
    let runs: Vec<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    assert_eq!(runs, [1]);
    assert!(matches!(dispatch(&h, job(5)).await, Dispatched::Queued(_)));
    assert_eq!(h.size().await, 1);
}

/// Producers racing on one key: exactly one job is queued.
pub async fn racing_producers_queue_one_unique_job(h: Harness) {
    let h = Arc::new(h);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let h = Arc::clone(&h);
        tasks.spawn(async move {
            let job = UniqueUntilFinish {
                key: h.key.clone(),
                n,
                millis: 0,
            };
            dispatch(&h, job).await
        });
    }
    let mut queued = 0;
    while let Some(joined) = tasks.join_next().await {
        queued += usize::from(!joined.expect("task").is_duplicate());
    }
    assert_eq!(queued, 1);
    assert_eq!(h.size().await, 1);
}

/// `unique_until = "start"`: the key is free once the job runs; "finish" holds it while it runs.
pub async fn unique_until_start_frees_the_key_when_the_job_starts(h: Harness) {
    let start_key = format!("{}-start", h.key);
    let finish_key = format!("{}-finish", h.key);
    let _ = dispatch(
        &h,
        UniqueUntilStart {
            key: start_key.clone(),
            millis: 1500,
        },
    )
    .await;
    let _ = dispatch(
        &h,
        UniqueUntilFinish {
            key: finish_key.clone(),
            n: 0,
            millis: 1500,
        },
    )
    .await;
    let worker = h.worker(h.options());
    let running = tokio::spawn(worker.run());
    let both_running = eventually(Duration::from_secs(10), || {
        !ledger::of(&start_key, "run").is_empty() && !ledger::of(&finish_key, "run").is_empty()
    })
    .await;
    assert!(both_running);
    let again_start = dispatch(
        &h,
        UniqueUntilStart {
            key: start_key.clone(),
            millis: 0,
        },
    )
    .await;
    let again_finish = dispatch(
        &h,
        UniqueUntilFinish {
            key: finish_key.clone(),
            n: 1,
            millis: 0,
        },
    )
    .await;
    assert!(
        !again_start.is_duplicate(),
        "the key was given back at the start"
    );
    assert!(
        again_finish.is_duplicate(),
        "the key is held until the job finishes"
    );
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("worker finished")
        .expect("joined")
        .expect("ran");
    assert_eq!(report.succeeded, 3);
}

/// A key is held at most `unique_for`: a crashed producer or worker cannot block it forever.
pub async fn unique_keys_expire_after_unique_for(h: Harness) {
    let job = || UniqueBriefly { key: h.key.clone() };
    assert!(!dispatch(&h, job()).await.is_duplicate());
    assert!(dispatch(&h, job()).await.is_duplicate());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(!dispatch(&h, job()).await.is_duplicate());
    assert_eq!(h.size().await, 2);
}
