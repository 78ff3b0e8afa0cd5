//! Rewriting stored payloads in place (what `queue-reencrypt` runs on): queued, delayed,
//! prioritized and failed jobs change where they are; leased jobs are counted, not touched.

use std::time::Duration;

use routemq::driver::{Edit, Failure, NewJob, Removal, Rewritten};

use crate::Harness;

fn envelope(queue: &str, tag: &str, priority: u8) -> String {
    format!(
        r#"{{"class": "rewrite", "data": {{"tag": "{tag}"}}, "max_tries": 3, "queue": "{queue}", "priority": {priority}}}"#
    )
}

fn tag_of(payload: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(payload).expect("an envelope");
    value["data"]["tag"].as_str().expect("a tag").to_owned()
}

/// Every kind of stored payload is rewritten where it is, in its place in the queue, once.
pub async fn rewriting_payloads_spares_leased_jobs(h: Harness) {
    let q = h.queue.clone();
    let tag = |name: &str| format!("{}-{name}", h.key);
    let push = |name: &str, delay: u64, priority: u8| {
        NewJob::new(
            q.clone(),
            envelope(&q, &tag(name), priority),
            Duration::from_secs(delay),
        )
    };
    // A job failed into the failed store, and one left leased by a worker.
    let mut held = Vec::new();
    for name in ["old-failed", "old-leased"] {
        h.driver.push(&[push(name, 0, 0)]).await.expect("push");
        let mut leased = h
            .driver
            .reserve(std::slice::from_ref(&q), 1)
            .await
            .expect("reserve");
        assert_eq!(leased.len(), 1);
        if name == "old-failed" {
            let failure = Failure {
                connection: h.connection.clone(),
                exception: "Exception: boom".into(),
            };
            assert!(
                h.driver
                    .fail(&leased[0].lease, &failure)
                    .await
                    .expect("fail")
            );
        } else {
            held.append(&mut leased);
        }
    }
    let ids = h
        .driver
        .push(&[
            push("old-1", 0, 0),
            push("keep-2", 0, 0),
            push("old-3", 0, 0),
            push("old-delayed", 3_600, 0),
            push("old-urgent", 0, 9),
            push("bad-4", 0, 0),
        ])
        .await
        .expect("push");

    let old = tag("old-");
    let bad = tag("bad-");
    let edit = |payload: &str| {
        if payload.contains(&old) {
            Edit::Replace(payload.replace(&old, &tag("new-")))
        } else if payload.contains(&bad) {
            Edit::Unreadable
        } else {
            Edit::Keep
        }
    };
    let first = h.driver.rewrite_payloads(&edit).await.expect("rewrite");
    assert_eq!(
        first,
        Rewritten {
            jobs: 4,
            failed: 1,
            leased: 1,
            unreadable: 1
        }
    );
    let again = h
        .driver
        .rewrite_payloads(&edit)
        .await
        .expect("rewrite again");
    assert_eq!(
        again,
        Rewritten {
            jobs: 0,
            failed: 0,
            leased: 1,
            unreadable: 1
        },
        "a second run finds only what it could not change"
    );

    let mut order = Vec::new();
    while let Some(job) = h
        .driver
        .reserve(std::slice::from_ref(&q), 1)
        .await
        .expect("reserve")
        .pop()
    {
        order.push(tag_of(&job.payload));
    }
    let expected: Vec<String> = ["new-urgent", "new-1", "keep-2", "new-3", "bad-4"]
        .iter()
        .map(|name| tag(name))
        .collect();
    assert_eq!(order, expected, "rewritten in place: priority, then FIFO");
    // The leased job was not touched: put back, it still holds what it held.
    assert!(
        h.driver
            .release(&held[0].lease, Duration::ZERO, true)
            .await
            .expect("release")
    );
    let again = h
        .driver
        .reserve(std::slice::from_ref(&q), 1)
        .await
        .expect("reserve");
    assert_eq!(tag_of(&again[0].payload), tag("old-leased"));

    match h.driver.remove(&ids[3]).await.expect("remove delayed") {
        Removal::Removed { payload, .. } => assert_eq!(tag_of(&payload), tag("new-delayed")),
        other => panic!("the delayed job is still delayed: {other:?}"),
    }
    let failed = h.driver.failed_list(Some(&q)).await.expect("failed list");
    assert_eq!(failed.len(), 1);
    assert_eq!(tag_of(&failed[0].payload), tag("new-failed"));
    let shown = h.driver.failed_get(&failed[0].id).await.expect("get");
    assert_eq!(
        shown.map(|job| tag_of(&job.payload)),
        Some(tag("new-failed"))
    );
    let retried = h.driver.failed_retry(&failed[0].id).await.expect("retry");
    assert!(retried.is_some(), "a rewritten failed record still retries");
}

/// Jobs enough to span several of the drivers' read chunks.
const MANY: u64 = 1_200;

/// A rewrite beside a worker that keeps taking jobs and putting them back: no job is lost or
/// doubled, the ones that moved are counted, and runs repeated once it stops leave every job
/// rewritten.
pub async fn rewriting_beside_a_busy_worker_loses_nothing(h: Harness) {
    let q = h.queue.clone();
    let tag = |state: &str, n: u64| format!("{}-{state}-{n}", h.key);
    let jobs: Vec<NewJob> = (0..MANY)
        .map(|n| NewJob::new(q.clone(), envelope(&q, &tag("old", n), 0), Duration::ZERO))
        .collect();
    h.driver.push(&jobs).await.expect("push");
    let old = format!("{}-old-", h.key);
    let new = format!("{}-new-", h.key);
    let edit = |payload: &str| {
        if payload.contains(&old) {
            Edit::Replace(payload.replace(&old, &new))
        } else {
            Edit::Keep
        }
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (driver, queue, stop) = (h.driver.clone(), q.clone(), stop.clone());
        tokio::spawn(async move {
            let mut moved = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let taken = driver
                    .reserve(std::slice::from_ref(&queue), 20)
                    .await
                    .expect("reserve");
                for job in &taken {
                    driver
                        .release(&job.lease, Duration::ZERO, true)
                        .await
                        .expect("release");
                }
                moved += taken.len();
            }
            moved
        })
    };
    let busy = h.driver.rewrite_payloads(&edit).await.expect("rewrite");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moved = churn.await.expect("churn");
    assert!(moved > 0, "the worker moved jobs during the rewrite");
    assert!(busy.jobs > 0, "{busy:?}");
    assert!(
        busy.jobs + busy.leased >= MANY / 2,
        "most jobs were rewritten or counted as moved: {busy:?}"
    );

    let mut runs = 0;
    loop {
        runs += 1;
        let quiet = h.driver.rewrite_payloads(&edit).await.expect("rewrite");
        if quiet.jobs == 0 {
            assert_eq!(quiet.leased, 0, "nothing is held any more");
            break;
        }
        assert!(runs < 4, "a quiet store settles: {quiet:?}");
    }
    let mut tags = Vec::new();
    loop {
        let taken = h
            .driver
            .reserve(std::slice::from_ref(&q), 100)
            .await
            .expect("reserve");
        if taken.is_empty() {
            break;
        }
        tags.extend(taken.iter().map(|job| tag_of(&job.payload)));
    }
    tags.sort();
    let mut expected: Vec<String> = (0..MANY).map(|n| tag("new", n)).collect();
    expected.sort();
    assert_eq!(tags.len(), expected.len(), "no job lost or doubled");
    assert_eq!(tags, expected, "every job rewritten once");
}
