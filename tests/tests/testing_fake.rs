//! `routemq::testing`: the fake queue users put in their own tests.

use std::time::Duration;

use routemq::prelude::*;
use routemq::testing;

#[derive(Debug)]
#[job(name = "fake.SendInvoice", queue = "billing")]
struct SendInvoice {
    order: u64,
}

#[derive(Debug)]
#[job(name = "fake.Unused")]
struct Unused;

macro_rules! noop_job {
    ($($t:ty),*) => {$(
        impl Job for $t {
            async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
                Ok(())
            }
        }
    )*};
}
noop_job!(SendInvoice, Unused);

#[tokio::test]
async fn captures_dispatches_instead_of_storing_them() {
    let fake = testing::fake();
    fake.assert_nothing_dispatched();
    let id = SendInvoice { order: 1 }.dispatch().await.expect("captured");
    assert_eq!(id, "fake-1");
    SendInvoice { order: 2 }
        .dispatch()
        .on_queue("urgent")
        .await
        .expect("captured");
    SendInvoice { order: 3 }
        .dispatch_later(Duration::from_secs(60))
        .await
        .expect("captured");
    routemq::queue()
        .bulk([SendInvoice { order: 4 }, SendInvoice { order: 5 }])
        .await
        .expect("captured");

    fake.assert_dispatched::<SendInvoice>();
    fake.assert_dispatched_times::<SendInvoice>(5);
    fake.assert_dispatched_where::<SendInvoice>(|job| job.order == 3);
    fake.assert_pushed_on::<SendInvoice>("billing");
    fake.assert_pushed_on::<SendInvoice>("urgent");
    fake.assert_not_dispatched::<Unused>();
    let orders: Vec<u64> = fake
        .dispatched::<SendInvoice>()
        .iter()
        .map(|j| j.order)
        .collect();
    assert_eq!(orders, [1, 2, 3, 4, 5]);
    let captured = fake.captured();
    assert_eq!(captured[2].delay, Duration::from_secs(60));
    assert!(captured[3].payload.contains("\"bulk\": true"));
}

#[tokio::test]
async fn failed_assertions_explain_themselves() {
    let fake = testing::fake();
    SendInvoice { order: 9 }.dispatch().await.expect("captured");
    let times = std::panic::catch_unwind(|| fake.assert_dispatched_times::<SendInvoice>(2))
        .expect_err("wrong count");
    let message = times.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(
            "expected `fake.SendInvoice` to be dispatched 2 time(s), it was dispatched 1"
        ),
        "{message}"
    );
    assert!(std::panic::catch_unwind(|| fake.assert_not_dispatched::<SendInvoice>()).is_err());
    assert!(
        std::panic::catch_unwind(|| fake.assert_dispatched_where::<SendInvoice>(|j| j.order == 1))
            .is_err()
    );
    assert!(std::panic::catch_unwind(|| fake.assert_dispatched::<Unused>()).is_err());
    assert!(std::panic::catch_unwind(|| fake.assert_nothing_dispatched()).is_err());
}

#[tokio::test]
async fn invalid_queue_names_are_refused_at_dispatch() {
    let _fake = testing::fake();
    let error = SendInvoice { order: 1 }
        .dispatch()
        .on_queue("a b")
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid queue name \"a b\": use only letters, digits, `_`, `-` and `.`"
    );
}

#[tokio::test]
async fn transactional_dispatches_are_captured_instead_of_inserted() {
    let Some(url) = routemq_tests::services::postgres_url() else {
        return;
    };
    let pool = routemq::sqlx::PgPool::connect(&url).await.expect("connect");
    let fake = testing::fake();
    let mut tx = pool.begin().await.expect("begin");
    let id = SendInvoice { order: 9 }
        .dispatch()
        .within(&mut *tx)
        .await
        .expect("captured");
    let ids = routemq::queue()
        .bulk([SendInvoice { order: 10 }, SendInvoice { order: 11 }])
        .within(&mut *tx)
        .await
        .expect("captured");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        (id.as_str(), ids),
        ("fake-1", vec!["fake-2".to_owned(), "fake-3".to_owned()])
    );
    fake.assert_dispatched_times::<SendInvoice>(3);
    let captured = fake.captured();
    assert!(
        captured
            .iter()
            .all(|c| c.connection == "postgres" && c.queue == "billing")
    );
}
