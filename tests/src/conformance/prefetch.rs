//! Prefetched reservations: the attempt counts when the job starts, never while it waits.

use std::time::Duration;

use routemq::WorkerOptions;
use routemq::driver::Lease;

use crate::Harness;
use crate::hostile::OneTry;
use crate::jobs::Record;
use crate::ledger;

impl Harness {
    /// Prefetches this test's one job: its lease, not started.
    async fn prefetch_one(&self) -> Lease {
        let mut jobs = self
            .driver
            .prefetch(std::slice::from_ref(&self.queue), 1)
            .await
            .expect("prefetch");
        assert_eq!(jobs.len(), 1, "one job prefetched");
        jobs.remove(0).lease
    }

    /// Pushes a [`Record`] numbered `n`.
    async fn push_record(&self, n: u64) {
        self.push(Record {
            key: self.key.clone(),
            n,
        })
        .await;
    }

    /// Lets every lease of this test's queue expire (a one-second visibility timeout), then reaps.
    async fn reap_expired(&self) -> routemq::driver::Reaped {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        self.driver
            .reap(
                std::slice::from_ref(&self.queue),
                Duration::from_secs(1),
                None,
                &self.connection,
            )
            .await
            .expect("reap")
    }

    /// Starts one prefetched lease.
    async fn start_one(&self, lease: &Lease) -> Option<Lease> {
        let mut started = self
            .driver
            .start(std::slice::from_ref(lease))
            .await
            .expect("start");
        assert_eq!(started.len(), 1, "one answer per lease");
        started.remove(0)
    }
}

/// A prefetched job is leased (no other worker gets it) but its attempt counts only at `start`,
/// which hands back the lease to settle the run with; a lease can start once.
pub async fn prefetched_jobs_count_their_attempt_when_they_start(h: Harness) {
    let queues = [h.queue.clone()];
    h.push_record(1).await;
    let prefetched = h.prefetch_one().await;
    assert_eq!(prefetched.attempts, 0, "no attempt counted yet");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved), (0, 1), "it is leased");
    assert!(
        h.driver
            .reserve(&queues, 1)
            .await
            .expect("reserve")
            .is_empty()
    );

    let started = h.start_one(&prefetched).await.expect("still held");
    assert_eq!(started.attempts, 1, "the run is attempt 1");
    let again = h.start_one(&prefetched).await;
    assert!(
        again.is_none() || again.as_ref() == Some(&started),
        "a lease starts once (starting it again counts nothing): {again:?}"
    );
    assert_eq!(
        h.start_one(&started).await,
        None,
        "only a prefetched lease starts"
    );
    assert_eq!(
        h.driver
            .extend(std::slice::from_ref(&started))
            .await
            .expect("extend"),
        1
    );
    h.driver.ack(&[started]).await.expect("ack");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved, stats.failed), (0, 0, 0));
}

/// A prefetched job whose worker died before starting it goes back to its queue with no attempt
/// used, even on its last try: a `max_tries = 1` job then runs, instead of failing unrun.
pub async fn an_expired_prefetched_job_comes_back_unspent(h: Harness) {
    h.push(OneTry { key: h.key.clone() }).await;
    let dead = h.prefetch_one().await;
    let reaped = h.reap_expired().await;
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));
    assert_eq!(
        h.start_one(&dead).await,
        None,
        "the dead worker's lease is gone"
    );

    let report = h.work(h.options()).await;
    assert_eq!((report.succeeded, report.failed), (1, 0), "{report:?}");
    let runs = ledger::of(&h.key, "run");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempt, 1, "the prefetch used no attempt");
    assert!(
        h.driver
            .failed_list(Some(&h.queue))
            .await
            .expect("failed list")
            .is_empty()
    );
}

/// Giving back a prefetched job with a refund (a worker stopping) leaves its attempts as they were
/// (nothing was counted, so nothing is returned) and does not count as a stall.
pub async fn refunding_a_prefetched_job_changes_no_attempt(h: Harness) {
    let queues = [h.queue.clone()];
    h.push_record(1).await;
    let first = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0);
    assert!(
        h.driver
            .release(&first.lease, Duration::ZERO, false)
            .await
            .expect("release")
    );
    let prefetched = h.prefetch_one().await;
    assert_eq!(prefetched.attempts, 1, "the first run counted");
    assert!(
        h.driver
            .release(&prefetched, Duration::ZERO, true)
            .await
            .expect("release")
    );
    let next = h
        .driver
        .prefetch(&queues, 1)
        .await
        .expect("prefetch")
        .remove(0);
    let next = next.prefetched.expect("prefetched");
    assert_eq!(
        next.started.attempts, 2,
        "one run before, the next is the second"
    );
    assert_eq!(next.stalls, 0, "a worker giving a job back is no stall");
}

/// A worker with one slot and a prefetch buffer runs every job once, each as attempt 1.
pub async fn a_worker_counts_each_prefetched_job_once(h: Harness) {
    for n in 0..12 {
        h.push_record(n).await;
    }
    let report = h
        .work(WorkerOptions {
            concurrency: 1,
            prefetch: Some(5),
            ..h.options()
        })
        .await;
    assert_eq!(report.succeeded, 12, "{report:?}");
    let runs = ledger::of(&h.key, "run");
    assert_eq!(runs.len(), 12);
    assert!(runs.iter().all(|run| run.attempt == 1), "{runs:?}");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved), (0, 0));
}

/// `ack_and_start` acknowledges finished jobs and starts prefetched ones in one call.
pub async fn ack_and_start_settles_both_in_one_call(h: Harness) {
    let queues = [h.queue.clone()];
    for n in 0..2 {
        h.push_record(n).await;
    }
    let finished = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0);
    let waiting = h.prefetch_one().await;
    let started = h
        .driver
        .ack_and_start(
            std::slice::from_ref(&finished.lease),
            std::slice::from_ref(&waiting),
        )
        .await
        .expect("ack and start");
    let [Some(started)] = started.as_slice() else {
        panic!("one started lease: {started:?}");
    };
    assert_eq!(started.attempts, 1);
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.ready, stats.reserved),
        (0, 1),
        "the finished one is gone"
    );
    h.driver
        .ack_and_start(std::slice::from_ref(started), &[])
        .await
        .expect("ack alone");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!((stats.ready, stats.reserved, stats.failed), (0, 0, 0));
}

/// A prefetched job taken back without a recorded start comes back marked as stalled, so that the
/// next worker starts it only once the start is stored (a job that kills its worker before its
/// start lands still uses up its tries); a start clears the mark.
pub async fn a_job_taken_back_unstarted_is_marked_stalled(h: Harness) {
    let queues = [h.queue.clone()];
    h.push_record(1).await;
    let stalls =
        |jobs: &[routemq::driver::ReservedJob]| jobs[0].prefetched.as_ref().map(|p| p.stalls);
    let first = h.driver.prefetch(&queues, 1).await.expect("prefetch");
    assert_eq!(stalls(&first), Some(0));
    let started = first[0]
        .prefetched
        .as_ref()
        .expect("prefetched")
        .started
        .clone();
    assert_eq!(started.attempts, 1, "the run it would start is attempt 1");
    let reaped = h.reap_expired().await;
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));

    let second = h.driver.prefetch(&queues, 1).await.expect("prefetch");
    assert_eq!(stalls(&second), Some(1), "taken back once without a start");
    assert_eq!(second[0].lease.attempts, 0, "still no attempt used");
    let run = h.start_one(&second[0].lease).await.expect("held");
    assert_eq!(
        Some(&run),
        second[0].prefetched.as_ref().map(|p| &p.started),
        "start gives the lease the prefetch announced"
    );
    assert!(
        h.driver
            .release(&run, Duration::ZERO, false)
            .await
            .expect("release")
    );
    let third = h.driver.prefetch(&queues, 1).await.expect("prefetch");
    assert_eq!(stalls(&third), Some(0), "the start cleared the mark");
    assert_eq!(third[0].lease.attempts, 1);
}

/// The lease of a worker whose reservation expired cannot release, fail, acknowledge or renew the
/// job once another worker has prefetched it (a prefetch does not add to the count, so only the
/// lease's kind tells the two apart).
pub async fn a_stale_lease_cannot_touch_a_prefetched_reservation(h: Harness) {
    let queues = [h.queue.clone()];
    h.push_record(1).await;
    let stale = h
        .driver
        .reserve(&queues, 1)
        .await
        .expect("reserve")
        .remove(0);
    let reaped = h.reap_expired().await;
    assert_eq!(reaped.requeued, 1);
    let prefetched = h.prefetch_one().await;
    assert_eq!(prefetched.attempts, stale.lease.attempts, "same count");

    let failure = routemq::driver::Failure {
        connection: h.connection.clone(),
        exception: "Stale: no".to_owned(),
    };
    assert!(
        !h.driver
            .release(&stale.lease, Duration::ZERO, false)
            .await
            .expect("release")
    );
    assert!(!h.driver.fail(&stale.lease, &failure).await.expect("fail"));
    assert_eq!(
        h.driver
            .extend(std::slice::from_ref(&stale.lease))
            .await
            .expect("extend"),
        0
    );
    h.driver
        .ack(std::slice::from_ref(&stale.lease))
        .await
        .expect("ack");
    let stats = h.driver.stats(&h.queue).await.expect("stats");
    assert_eq!(
        (stats.reserved, stats.failed),
        (1, 0),
        "still the prefetch's"
    );
    let run = h.start_one(&prefetched).await.expect("still held");
    assert_eq!(run.attempts, 2);
}
