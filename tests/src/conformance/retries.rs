//! Failed attempts: retries, delays, `failed()`, permanent errors, timeouts, panics, bad payloads.

use std::time::Duration;

use crate::Harness;
use crate::jobs::{
    AlwaysFail, FailTimes, MaxExceptions, Panicky, PostponeTimes, Record, RetryAfterOne,
    RetryUntil, Sleepy, Throttled,
};
use crate::ledger;

/// Attempts count 1, 2, 3 across retries; a job that succeeds on its last try is not failed.
pub async fn attempts_count_across_retries(h: Harness) {
    h.push(FailTimes {
        key: h.key.clone(),
        fail_times: 2,
    })
    .await;
    let report = h.work(h.options()).await;
    assert_eq!(
        (report.retried, report.succeeded, report.failed),
        (2, 1, 0),
        "{report:?}"
    );
    let attempts: Vec<u32> = ledger::of(&h.key, "run")
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        ledger::of(&h.key, "failed").is_empty(),
        "failed() is never called for a retry"
    );
    assert!(
        h.driver
            .failed_list(Some(&h.queue))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(h.size().await, 0);
}

/// `retry_after = 1` keeps the job invisible for a second before the next attempt.
pub async fn retry_delay_is_honoured(h: Harness) {
    h.push(RetryAfterOne { key: h.key.clone() }).await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.succeeded), (1, 1));
    let runs = ledger::of(&h.key, "run");
    assert_eq!(runs.len(), 2);
    let gap = runs[1].at.duration_since(runs[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "second attempt after {gap:?}"
    );
    assert!(gap < Duration::from_secs(4), "second attempt after {gap:?}");
}

/// After the last try `failed()` runs exactly once and the job is in the failed store.
pub async fn failed_hook_runs_once_after_last_try(h: Harness) {
    let id = h
        .push(AlwaysFail {
            key: h.key.clone(),
            permanent: false,
        })
        .await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.failed), (2, 1), "{report:?}");
    assert_eq!(ledger::of(&h.key, "run").len(), 3);
    let failed_calls = ledger::of(&h.key, "failed");
    assert_eq!(failed_calls.len(), 1, "failed() exactly once");
    assert_eq!(failed_calls[0].attempt, 3);
    assert_eq!(failed_calls[0].job_id, id);
    let stored = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].queue, h.queue);
    assert_eq!(stored[0].connection, h.connection);
    assert!(
        stored[0]
            .exception
            .starts_with("Failed: the mail server refused"),
        "{}",
        stored[0].exception
    );
    assert!(stored[0].payload.contains("conformance.AlwaysFail"));
    assert_eq!(h.size().await, 0);
}

/// A permanent error skips the remaining tries.
pub async fn permanent_error_skips_remaining_tries(h: Harness) {
    h.push(AlwaysFail {
        key: h.key.clone(),
        permanent: true,
    })
    .await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.failed), (0, 1));
    assert_eq!(ledger::of(&h.key, "run").len(), 1);
    assert_eq!(ledger::of(&h.key, "failed").len(), 1);
    let stored = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert!(
        stored[0]
            .exception
            .starts_with("Permanent: the address does not exist"),
        "{}",
        stored[0].exception
    );
}

/// A job over its timeout is cancelled, its attempt fails, and the next attempt runs.
pub async fn timeout_fails_the_attempt_and_cancels(h: Harness) {
    h.push(Sleepy {
        key: h.key.clone(),
        millis: 5_000,
    })
    .await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.succeeded), (1, 1), "{report:?}");
    let events: Vec<(&str, u32)> = ledger::events(&h.key)
        .iter()
        .map(|e| (e.what, e.attempt))
        .collect();
    assert!(
        events.contains(&("cancelled", 1)),
        "the token fired on timeout: {events:?}"
    );
    assert!(
        !events.contains(&("done", 1)),
        "the first attempt was stopped: {events:?}"
    );
    assert!(events.contains(&("done", 2)), "{events:?}");
}

/// A panic in `handle` is a failed attempt, and the worker keeps going.
pub async fn panic_is_a_failed_attempt(h: Harness) {
    h.push(Panicky { key: h.key.clone() }).await;
    h.push(Record {
        key: h.key.clone(),
        n: 7,
    })
    .await;
    let report = h
        .work(routemq::WorkerOptions {
            concurrency: 1,
            ..h.options()
        })
        .await;
    assert_eq!(
        (report.retried, report.succeeded, report.failed),
        (1, 2, 0),
        "{report:?}"
    );
    let runs: Vec<u32> = ledger::of(&h.key, "run")
        .iter()
        .filter(|e| e.n == 0)
        .map(|e| e.attempt)
        .collect();
    assert_eq!(runs, [1, 2]);
}

/// Payloads that cannot run go to the failed store with the reason; other jobs are unaffected.
pub async fn undecodable_payloads_go_to_the_failed_store(h: Harness) {
    let unknown = r#"{"class": "nobody.Registered", "data": {}, "max_tries": 3, "queue": "x"}"#;
    let mismatch = r#"{"class": "conformance.Record", "data": {"key": 5}}"#;
    let truncated = r#"{"class": "conformance.Record", "data": {"key": "#;
    let ids = [
        h.push_raw(unknown).await,
        h.push_raw("not json at all").await,
        h.push_raw(mismatch).await,
        h.push_raw(truncated).await,
    ];
    h.push(Record {
        key: h.key.clone(),
        n: 1,
    })
    .await;

    let report = h.work(h.options()).await;
    assert_eq!((report.failed, report.succeeded), (4, 1), "{report:?}");
    assert_eq!(
        ledger::of(&h.key, "run").len(),
        1,
        "the valid job still ran"
    );
    let stored = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(stored.len(), 4);
    let exception_of = |payload: &str| {
        stored
            .iter()
            .find(|f| f.payload == payload)
            .map(|f| f.exception.clone())
            .expect("stored unchanged")
    };
    let e = exception_of(unknown);
    assert!(
        e.starts_with("UnknownJob: job `nobody.Registered` is not registered"),
        "{e}"
    );
    assert!(e.contains("use <that_crate> as _;"), "{e}");
    assert!(
        exception_of("not json at all").starts_with("InvalidPayload: payload is not valid JSON")
    );
    let e = exception_of(mismatch);
    assert!(
        e.starts_with(
            "PayloadMismatch: payload of job `conformance.Record` does not decode into Record"
        ),
        "{e}"
    );
    assert!(exception_of(truncated).starts_with("InvalidPayload:"));
    assert_eq!(ids.len(), 4);
}

/// A postponed job goes back for its delay with its attempt refunded: with `max_tries = 1` it
/// still runs three times as attempt 1, and nothing reaches the failed store.
pub async fn postponed_jobs_keep_their_attempt(h: Harness) {
    h.push(PostponeTimes {
        key: h.key.clone(),
        times: 2,
    })
    .await;
    let report = h.work(h.options()).await;
    assert_eq!(
        (
            report.postponed,
            report.succeeded,
            report.retried,
            report.failed
        ),
        (2, 1, 0, 0),
        "{report:?}"
    );
    let runs = ledger::of(&h.key, "run");
    let attempts: Vec<u32> = runs.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 1, 1]);
    for pair in runs.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(180), "rerun after {gap:?}");
    }
    assert!(
        h.driver
            .failed_list(Some(&h.queue))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(h.size().await, 0);
}

/// `ThrottlesExceptions`: after two failures, the key's next job waits out the cool-down (its
/// attempt refunded), then runs.
pub async fn throttled_jobs_wait_out_the_cool_down(h: Harness) {
    for (n, fail) in [(1, true), (2, true), (3, false)] {
        h.push(Throttled {
            key: h.key.clone(),
            n,
            fail,
        })
        .await;
    }
    let options = routemq::WorkerOptions {
        concurrency: 1,
        prefetch: Some(0),
        ..h.options()
    };
    let report = h.work(options).await;
    assert_eq!((report.failed, report.succeeded), (2, 1), "{report:?}");
    assert!(report.postponed >= 1, "{report:?}");
    let runs = ledger::of(&h.key, "run");
    let order: Vec<(u64, u32)> = runs.iter().map(|e| (e.n, e.attempt)).collect();
    assert_eq!(order, [(1, 1), (2, 1), (3, 1)]);
    let held = runs[2].at.duration_since(runs[1].at);
    assert!(
        held >= Duration::from_millis(900),
        "ran {held:?} after the second failure"
    );
}

/// `max_exceptions = 2`: the second exception is final though tries remain; a release is not one.
pub async fn max_exceptions_ends_retries_early(h: Harness) {
    let id = h.push(MaxExceptions { key: h.key.clone() }).await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.failed), (2, 1), "{report:?}");
    let attempts: Vec<u32> = ledger::of(&h.key, "run")
        .iter()
        .map(|e| e.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .exception
            .contains("2 exceptions, the job's max_exceptions: still broken"),
        "{}",
        failed[0].exception
    );
    // The count went with the job: its slot holds nobody.
    let slot = format!("exceptions:{}:{}:{id}", h.connection, h.queue);
    let free = h
        .driver
        .acquire_slot(&slot, "probe", 1, Duration::ZERO)
        .await
        .expect("probe");
    assert!(free.taken, "the exception count was cleared");
}

/// `retry_until = 3` with retries 2 s apart: the second failure would retry past the deadline,
/// so it is final.
pub async fn retry_until_ends_retries_at_the_deadline(h: Harness) {
    h.push(RetryUntil { key: h.key.clone() }).await;
    let report = h.work(h.options()).await;
    assert_eq!((report.retried, report.failed), (1, 1), "{report:?}");
    assert_eq!(ledger::of(&h.key, "run").len(), 2);
    let failed = h.driver.failed_list(Some(&h.queue)).await.expect("list");
    assert!(
        failed[0]
            .exception
            .contains("retry_until passed, no more tries: still broken"),
        "{}",
        failed[0].exception
    );
}
