//! Chains and `dispatch_at`.

use std::time::{Duration, SystemTime};

use crate::Harness;
use crate::jobs::{ChainStep, Record};
use crate::ledger;

/// A chain runs its jobs one after another; a failure stops it and runs its `catch` job.
pub async fn chains_run_in_order_and_stop_at_a_failure(h: Harness) {
    let step = |n, fail| ChainStep {
        key: h.key.clone(),
        n,
        fail,
    };
    // Each job on this test's queue (two of them, to cross queues).
    let queue = h.queue.clone();
    let other = h.other_queue();
    let first = h
        .manager
        .chain()
        .then(step(1, false))
        .on_queue(queue.clone())
        .then(step(2, false))
        .on_queue(other.clone())
        .then(step(3, false))
        .on_queue(queue.clone())
        .dispatch()
        .await
        .expect("chain");
    assert!(!first.is_empty());
    assert_eq!(
        h.driver.size(&queue).await.expect("size"),
        1,
        "one job stored"
    );
    let options = routemq::WorkerOptions {
        queues: vec![queue.clone(), other.clone()],
        ..h.options()
    };
    let report = h.work(options.clone()).await;
    assert_eq!(report.succeeded, 3);
    let ran: Vec<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    assert_eq!(ran, [1, 2, 3]);

    h.manager
        .chain()
        .then(step(11, false))
        .on_queue(queue.clone())
        .then(step(12, true))
        .on_queue(queue.clone())
        .then(step(13, false))
        .on_queue(queue.clone())
        .catch(step(99, false))
        .on_queue(other.clone())
        .dispatch()
        .await
        .expect("chain");
    let report = h.work(options).await;
    assert_eq!((report.succeeded, report.failed), (2, 1), "{report:?}");
    let ran: Vec<u64> = ledger::of(&h.key, "run")
        .iter()
        .map(|e| e.n)
        .skip(3)
        .collect();
    assert_eq!(ran, [11, 12, 99], "13 never runs; the catch job does");
    let failed = h.driver.failed_list(Some(&queue)).await.expect("failed");
    assert!(
        failed.iter().any(|f| f.payload.contains("\"n\": 12")),
        "{failed:?}"
    );
    assert!(
        h.manager.chain().dispatch().await.is_err(),
        "an empty chain is refused"
    );
}

/// `dispatch_at` keeps a job invisible until its time.
pub async fn dispatch_at_waits_for_its_time(h: Harness) {
    let at = SystemTime::now() + Duration::from_millis(800);
    h.manager
        .push(Record {
            key: h.key.clone(),
            n: 1,
        })
        .on_queue(h.queue.clone())
        .at(at)
        .await
        .expect("dispatch");
    let report = h.work(h.options()).await;
    assert_eq!(report.succeeded, 1);
    let ran = ledger::of(&h.key, "run");
    assert_eq!(ran.len(), 1);
    assert!(SystemTime::now() >= at, "ran before its time");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(stats.ready + stats.delayed, 0);
}

/// A chain whose next job cannot be stored (its connection does not exist here), or whose next
/// job cannot be decoded, fails, and its catch job runs; nothing retries for ever.
pub async fn broken_links_fail_the_chain_and_run_its_catch(h: Harness) {
    use routemq::envelope::{Chain, ChainLink, Envelope};
    let encoded = |n: u64, fail: bool| {
        Envelope::encode(
            &ChainStep {
                key: h.key.clone(),
                n,
                fail,
            },
            &h.queue,
            &routemq::envelope::Observability::default(),
        )
        .expect("encode")
    };
    let link = |payload: String, connection: &str| ChainLink {
        queue: h.queue.clone(),
        connection: connection.to_owned(),
        payload,
    };
    let catch = Some(link(encoded(99, false), &h.connection));
    // 1 succeeds, but its next job is for a connection this worker does not know.
    let unreachable = Envelope::decode(&encoded(1, false))
        .expect("decode")
        .with_chain(Some(Chain {
            next: vec![link(encoded(2, false), "nowhere")],
            catch: catch.clone(),
        }))
        .to_json();
    h.push_raw(&unreachable).await;
    // 3 succeeds; its next job names a type nobody registered.
    let undecodable = Envelope::decode(&encoded(3, false))
        .expect("decode")
        .with_chain(Some(Chain {
            next: vec![link(
                r#"{"class": "nobody.Registered", "data": {}}"#.to_owned(),
                &h.connection,
            )],
            catch,
        }))
        .to_json();
    h.push_raw(&undecodable).await;
    let options = routemq::WorkerOptions {
        concurrency: 1,
        ..h.options()
    };
    let report = h.work(options).await;
    let mut ran: Vec<u64> = ledger::of(&h.key, "run").iter().map(|e| e.n).collect();
    ran.sort_unstable();
    assert_eq!(ran, [1, 3, 99, 99], "{report:?}");
    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().any(|f| {
        f.exception
            .contains("could not store the next job of its chain")
    }));
    assert!(failed.iter().any(|f| f.exception.starts_with("UnknownJob")));
    assert_eq!(h.size().await, 0);
}
