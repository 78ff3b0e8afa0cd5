//! Fuzzing (proptest-driven, bounded) of the decoders that read what a queue holds: the envelope,
//! the registry lookup and the Redis record. Arbitrary and mutated input must give a value or a
//! typed error, never a panic, and a valid envelope must survive being re-encoded.

use proptest::prelude::*;
use routemq::driver::redis::parse_record;
use routemq::{Envelope, Registry};
use routemq_tests::interop::fixture;

fn sample() -> String {
    fixture("envelope-echo.json").trim().to_owned()
}

/// A valid envelope with a byte range replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = String> {
    let base = sample();
    let len = base.len();
    (
        0..len,
        0..32usize,
        prop::collection::vec(any::<char>(), 0..8),
        0..3u8,
    )
        .prop_map(move |(at, span, insert, mode)| {
            let chars: Vec<char> = base.chars().collect();
            let at = at.min(chars.len());
            let end = (at + span).min(chars.len());
            let mut out: Vec<char> = chars[..at].to_vec();
            match mode {
                0 => out.extend(&insert),
                1 => out.extend(insert.iter().chain(&chars[end..])),
                _ => {}
            }
            if mode != 1 {
                out.extend(&chars[end..]);
            }
            out.into_iter().collect()
        })
}

fn check(input: &str) {
    if let Ok(envelope) = Envelope::decode(input) {
        let again = Envelope::decode(&envelope.to_json())
            .expect("a decoded envelope re-encodes to a valid one");
        assert_eq!(again.class(), envelope.class());
        assert_eq!(again.data(), envelope.data());
    }
    let _ = Registry::global().expect("registry").decode(input);
    let record = format!(
        r#"{{"id": "q:1", "payload": {}, "attempts": 0}}"#,
        serde_json::to_string(input).expect("string")
    );
    assert_eq!(
        parse_record(&record),
        input,
        "a record's payload comes back unchanged"
    );
    let _ = parse_record(input);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(input in any::<String>()) {
        check(&input);
    }

    #[test]
    fn json_shaped_text_never_panics(input in r#"[{}\[\]":,a-z0-9 .\-\\]{0,64}"#) {
        check(&input);
    }

    #[test]
    fn mutated_envelopes_never_panic(input in mutated()) {
        check(&input);
    }
}
