//! Envelopes that the Python RouteMQ 0.25.0 really wrote decode into the matching Rust jobs, and
//! what we write back is RouteMQ's envelope.

use routemq::envelope::Observability;
use routemq::{Envelope, Registry};
use routemq_tests::interop::{EchoJob, FailJob, fixture};
use serde_json::{Value, json};

/// Every envelope in the fixtures, with where it came from.
fn sample_payloads() -> Vec<(String, String)> {
    let mut payloads = vec![
        (
            "envelope-echo.json".to_owned(),
            fixture("envelope-echo.json").trim().to_owned(),
        ),
        (
            "envelope-failed-after-restore.json".to_owned(),
            fixture("envelope-failed-after-restore.json")
                .trim()
                .to_owned(),
        ),
    ];
    for file in ["redis-ready-record.json", "redis-failed-record.json"] {
        let record: Value = serde_json::from_str(&fixture(file)).expect("record is JSON");
        payloads.push((
            file.to_owned(),
            record["payload"]
                .as_str()
                .expect("payload string")
                .to_owned(),
        ));
    }
    let delayed = fixture("redis-delayed-member-and-score.txt");
    let member: Value =
        serde_json::from_str(delayed.lines().next().expect("member line")).expect("member JSON");
    payloads.push((
        "redis-delayed-member".to_owned(),
        member["payload"].as_str().expect("payload").to_owned(),
    ));
    for file in [
        "sql-queue_jobs-rows.json",
        "sql-queue_failed_jobs-rows.json",
    ] {
        let rows: Vec<Value> = serde_json::from_str(&fixture(file)).expect("rows");
        for (i, row) in rows.iter().enumerate() {
            payloads.push((
                format!("{file}[{i}]"),
                row["payload"].as_str().expect("payload").to_owned(),
            ));
        }
    }
    payloads
}

#[test]
fn every_sample_decodes_into_its_rust_job() {
    let registry = Registry::global().expect("registry");
    let samples = sample_payloads();
    assert_eq!(samples.len(), 8);
    for (source, payload) in samples {
        let (envelope, registration, _job) = registry
            .decode(&payload)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        match envelope.class() {
            "interop_jobs.EchoJob" => {
                let job: EchoJob = serde_json::from_str(envelope.data()).expect("echo data");
                assert_eq!(job.text, "hello-0 ünïcødé \"quoted\"", "{source}");
                assert_eq!(job.number, 0);
                assert_eq!(
                    job.items,
                    vec![json!(0), json!("two"), json!(3.5), Value::Null, json!(true)]
                );
                assert_eq!(
                    job.meta,
                    json!({"index": 0, "nested": {"deep": [1, {"k": "v"}], "flag": false}})
                );
                assert_eq!(
                    (envelope.effective_max_tries(), envelope.timeout_secs()),
                    (3, Some(30.0))
                );
                assert_eq!(envelope.queue(), "interop");
            }
            "interop_jobs.FailJob" => {
                let job: FailJob = serde_json::from_str(envelope.data()).expect("fail data");
                assert_eq!(job.reason, "forced-0", "{source}");
                assert_eq!(envelope.effective_max_tries(), 2);
            }
            other => panic!("{source}: unexpected class {other}"),
        }
        assert_eq!(registration.name(), envelope.class());
    }
}

#[test]
fn re_encoding_a_sample_gives_it_back_byte_for_byte() {
    for (source, payload) in sample_payloads() {
        let envelope = Envelope::decode(&payload).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(envelope.to_json(), payload, "{source}");
    }
}

#[test]
fn a_rust_job_encodes_to_the_envelope_routemq_wrote() {
    let payload = fixture("envelope-echo.json");
    let original: Value = serde_json::from_str(&payload).expect("JSON");
    let envelope = Envelope::decode(payload.trim()).expect("decodes");
    let job: EchoJob = serde_json::from_str(envelope.data()).expect("data");
    let observability = Observability {
        job_class: "EchoJob",
        queue: "samples",
        connection: "redis",
        ..Default::default()
    };
    let encoded = Envelope::encode(&job, "interop", &observability).expect("encodes");
    let ours: Value = serde_json::from_str(&encoded).expect("JSON");

    let keys = |v: &Value| {
        v.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&ours), keys(&original), "same fields");
    let field_order = |text: &str| {
        [
            "class",
            "data",
            "observability",
            "max_tries",
            "timeout",
            "retry_after",
            "retry_backoff_enabled",
            "retry_backoff_max_delay",
            "retry_backoff_jitter",
            "queue",
        ]
        .map(|k| text.rfind(&format!("\"{k}\": ")).expect("field present"))
    };
    let order = field_order(&encoded);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "RouteMQ's field order: {encoded}"
    );
    for key in [
        "class",
        "data",
        "max_tries",
        "timeout",
        "retry_after",
        "retry_backoff_enabled",
        "retry_backoff_max_delay",
        "retry_backoff_jitter",
        "queue",
    ] {
        assert_eq!(ours[key], original[key], "{key}");
    }
    assert_eq!(
        ours["observability"],
        json!({"job_class": "EchoJob", "queue": "samples", "connection": "redis"})
    );
    // Python's layout: ", " and ": " separators, non-ASCII escaped.
    assert!(encoded.starts_with(r#"{"class": "interop_jobs.EchoJob", "data": {"text": "hello-0 \u00fcn\u00efc\u00f8d\u00e9 \"quoted\"", "number": 0, "items": [0, "two", 3.5, null, true]"#), "{encoded}");
    assert!(encoded.is_ascii());
}

#[test]
fn a_restored_failed_payload_with_extra_data_keys_still_decodes() {
    let payload = fixture("envelope-failed-after-restore.json");
    let (envelope, _, _) = Registry::global()
        .expect("registry")
        .decode(payload.trim())
        .expect("tolerates extra keys");
    assert!(envelope.data().contains("retry_backoff_enabled"));
}
