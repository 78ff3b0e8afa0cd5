//! A MySQL / MariaDB worker cut off from its server in the middle of a transaction keeps that
//! transaction's locks until the server notices (minutes, with TCP keep-alive; never, while the
//! connection stays open). Those locks must be on its own jobs only: a lock on a job another
//! worker holds would stall that worker's heartbeats and acknowledgement past its lease, and the
//! job would run twice though its worker never lost it.
//!
//! The cut-off worker talks through a [`FaultyLink`] that holds its writes at a chosen statement
//! (`0x03` starts a statement: a pattern with it cannot match inside `READ COMMITTED`).

use std::sync::Arc;
use std::time::Duration;

use routemq::QueueDriver;
use routemq::driver::mysql::MySqlDriver;
use routemq::driver::{Failure, Lease, NewJob};
use routemq_tests::databases::{Server, with_fresh_database};
use routemq_tests::harness::eventually;
use routemq_tests::reliability::link::{FaultyLink, through, upstream};

const QUEUE: &str = "stalled";

/// A second worker's driver, talking to the database of `url` through a link of its own.
async fn through_link(url: &str) -> (FaultyLink, Arc<MySqlDriver>) {
    let link = FaultyLink::start(upstream(url).expect("on 127.0.0.1"))
        .await
        .expect("link");
    let driver = MySqlDriver::connect(&through(url, link.port()).expect("a port"))
        .await
        .expect("connects through the link");
    (link, Arc::new(driver))
}

/// Waits until the link has held `writes` writes in all.
async fn held(link: &FaultyLink, writes: u64, what: &str) {
    assert!(
        eventually(Duration::from_secs(10), || link.held() == writes).await,
        "{what}"
    );
}

/// The owner of `lease` renews and acknowledges it at once (a lock would keep it waiting for
/// the server's lock timeout, 50 s by default), and the job is gone.
async fn owner_settles_at_once(owner: &dyn QueueDriver, lease: &Lease) {
    let settle = async {
        let extended = owner.extend(std::slice::from_ref(lease)).await;
        let acked = owner.ack(std::slice::from_ref(lease)).await;
        (extended, acked)
    };
    let (extended, acked) = tokio::time::timeout(Duration::from_secs(5), settle)
        .await
        .expect("the owner's heartbeat and ack are not held back by the cut-off worker");
    assert_eq!(
        extended.expect("extend"),
        1,
        "the owner still holds the job"
    );
    acked.expect("ack");
    assert_eq!(owner.size(QUEUE).await.expect("size"), 0, "the job is done");
}

/// One job, taken by the cut-off worker (prefetched when `prefetch`), whose lease then runs
/// out and is reaped, and taken by the owner: the cut-off worker's lease and the owner's.
async fn stale_and_owned(
    owner: &dyn QueueDriver,
    cut_off: &MySqlDriver,
    prefetch: bool,
) -> (Lease, Lease) {
    owner
        .push(&[NewJob::new(QUEUE, "{}", Duration::ZERO)])
        .await
        .expect("push");
    let queues = [QUEUE.to_owned()];
    let mut taken = if prefetch {
        cut_off.prefetch(&queues, 1).await
    } else {
        cut_off.reserve(&queues, 1).await
    }
    .expect("the cut-off worker takes the job");
    let stale = taken.pop().expect("one job").lease;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reaped = owner
        .reap(&queues, Duration::from_millis(10), None, "mysql")
        .await
        .expect("reap");
    assert_eq!(reaped.requeued, 1, "the expired lease is taken back");
    let mut taken = owner.reserve(&queues, 1).await.expect("reserve");
    (stale, taken.pop().expect("the owner takes the job").lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cut_off_mid_transaction_holds_no_other_workers_job() {
    with_fresh_database(Server::Mysql, "stalled_claim", |owner, url| async move {
        let (link, cut_off) = through_link(&url).await;
        owner
            .push(&[NewJob::new(QUEUE, "{}", Duration::ZERO)])
            .await
            .expect("push");

        // The cut-off worker reads the job as its candidate, and waits to begin its claim...
        link.hold(&[b"\x03BEGIN", b"START TRANSACTION"]);
        let claim = {
            let cut_off = Arc::clone(&cut_off);
            tokio::spawn(async move { cut_off.reserve(&[QUEUE.to_owned()], 1).await })
        };
        held(&link, 1, "the claim reaches its transaction").await;
        // ...while the owner takes it.
        let mut taken = owner
            .reserve(&[QUEUE.to_owned()], 1)
            .await
            .expect("reserve");
        let lease = taken.pop().expect("the owner takes the job").lease;
        // The claim looks at the job in its transaction, finds it taken, and is cut off before
        // it can end the transaction.
        link.hold(&[b"\x03ROLLBACK", b"\x03COMMIT"]);
        held(&link, 2, "the claim is cut off in its transaction").await;

        owner_settles_at_once(&*owner, &lease).await;
        link.hold(&[]);
        let claimed = claim.await.expect("joins").expect("the claim ends");
        assert!(claimed.is_empty(), "the cut-off claim took nothing");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_off_mid_transaction_holds_no_other_workers_job() {
    with_fresh_database(Server::Mysql, "stalled_start", |owner, url| async move {
        let (link, cut_off) = through_link(&url).await;
        let (stale, lease) = stale_and_owned(&*owner, &cut_off, true).await;

        // The cut-off worker starts its stale prefetched job: it looks at the row in its
        // transaction, finds it taken, and is cut off before it can commit.
        link.hold(&[b"\x03COMMIT"]);
        let start = {
            let cut_off = Arc::clone(&cut_off);
            tokio::spawn(async move { cut_off.start(&[stale]).await })
        };
        held(&link, 1, "the start is cut off in its transaction").await;

        owner_settles_at_once(&*owner, &lease).await;
        link.hold(&[]);
        let started = start.await.expect("joins").expect("the start ends");
        assert_eq!(
            started,
            vec![None],
            "the stale prefetched job does not start"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_cut_off_mid_transaction_holds_no_other_workers_job() {
    with_fresh_database(Server::Mysql, "stalled_fail", |owner, url| async move {
        let (link, cut_off) = through_link(&url).await;
        let (stale, lease) = stale_and_owned(&*owner, &cut_off, false).await;

        // The cut-off worker fails its stale job: it looks at the row in its transaction, finds
        // it taken, and is cut off before its transaction ends.
        link.hold(&[b"\x03ROLLBACK", b"\x03COMMIT"]);
        let fail = {
            let cut_off = Arc::clone(&cut_off);
            tokio::spawn(async move {
                let failure = Failure {
                    connection: "mysql".to_owned(),
                    exception: "stale".to_owned(),
                };
                let failed = cut_off.fail(&stale, &failure).await;
                // The transaction's rollback goes out with the connection's next statement.
                let _ = cut_off.size(QUEUE).await;
                failed
            })
        };
        held(&link, 1, "the failure is cut off in its transaction").await;

        owner_settles_at_once(&*owner, &lease).await;
        link.hold(&[]);
        let failed = fail.await.expect("joins").expect("the failure ends");
        assert!(!failed, "a stale lease fails nothing");
        assert!(
            owner.failed_list(None).await.expect("list").is_empty(),
            "the failed store is empty"
        );
    })
    .await;
}
