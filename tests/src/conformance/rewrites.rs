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
    for name in ["old-failed", "old-leased"] {
        h.driver.push(&[push(name, 0, 0)]).await.expect("push");
        let leased = h
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
