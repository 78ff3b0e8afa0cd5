//! Property test: any job value survives encode → store → decode unchanged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use routemq::envelope::Observability;
use routemq::prelude::*;
use routemq::{Envelope, Registry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    bytes: Vec<u8>,
    label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
#[job(
    name = "roundtrip.Everything",
    backoff = "exponential",
    max_delay = 12.5,
    jitter = 0.1
)]
struct Everything {
    text: String,
    int: i64,
    unsigned: u64,
    float: f64,
    flag: bool,
    list: Vec<String>,
    maybe: Option<i32>,
    map: BTreeMap<String, i64>,
    nested: Inner,
}

#[derive(Debug, Clone, PartialEq)]
#[job(name = "roundtrip.Pair")]
struct Pair(String, f64);

macro_rules! noop_job {
    ($($t:ty),*) => {$(
        impl Job for $t {
            async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
                Ok(())
            }
        }
    )*};
}
noop_job!(Everything, Pair);

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
}

prop_compose! {
    fn everything()(
        text in any::<String>(),
        int in any::<i64>(),
        unsigned in any::<u64>(),
        float in finite(),
        flag in any::<bool>(),
        list in prop::collection::vec(any::<String>(), 0..4),
        maybe in any::<Option<i32>>(),
        map in prop::collection::btree_map(any::<String>(), any::<i64>(), 0..4),
        bytes in prop::collection::vec(any::<u8>(), 0..8),
        label in any::<Option<String>>(),
    ) -> Everything {
        Everything { text, int, unsigned, float, flag, list, maybe, map, nested: Inner { bytes, label } }
    }
}

fn round_trip<T: Job>(job: &T, queue: &str) -> (String, T) {
    let observability = Observability {
        job_class: "x",
        queue,
        connection: "memory",
        ..Default::default()
    };
    let payload = Envelope::encode(job, queue, &observability).expect("encodes");
    let (envelope, registration, _) = Registry::global()
        .expect("registry")
        .decode(&payload)
        .expect("decodes");
    assert_eq!(registration.name(), T::NAME);
    assert_eq!(envelope.queue(), queue);
    assert_eq!(envelope.to_json(), payload, "re-encoding is stable");
    let back: T = serde_json::from_str(envelope.data()).expect("data decodes");
    (payload, back)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_job_round_trips(job in everything(), queue in "[A-Za-z0-9_.-]{1,40}") {
        let (payload, back) = round_trip(&job, &queue);
        prop_assert!(payload.is_ascii(), "Python's ensure_ascii layout");
        prop_assert_eq!(back, job);
        let envelope = Envelope::decode(&payload).expect("decodes");
        prop_assert!(envelope.backoff_enabled());
        prop_assert_eq!(envelope.backoff_max_delay(), Some(12.5));
    }

    #[test]
    fn tuple_jobs_round_trip(text in any::<String>(), number in finite()) {
        let job = Pair(text, number);
        let (payload, back) = round_trip(&job, "pairs");
        prop_assert!(payload.contains(r#""data": {"0": "#), "tuple fields are keyed by position");
        prop_assert_eq!(back, job);
    }
}
