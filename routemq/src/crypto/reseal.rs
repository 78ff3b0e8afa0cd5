//! Sealing stored data again under the current key (`queue-reencrypt`): a job's data, and the
//! data of the jobs its chain carries, when sealed under an older key.
//!
//! Sealed values are plain ASCII (`rmq:enc:v1:`, hex and base64url), so they appear verbatim in
//! an envelope however deeply it is nested in another (a chain's jobs are envelopes held as JSON
//! strings). Resealing swaps each old value for its new one in the text, and leaves every other
//! byte of the envelope as it was stored.

use super::{CryptoError, Keyring, key_id_of, open, seal};
use crate::envelope::Envelope;

/// The sealed values of `payload` (its data and its chain's jobs' data) that are not under the
/// current key, each with its replacement.
fn stale_values(
    keyring: &Keyring,
    payload: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), CryptoError> {
    // Not an envelope: nothing of ours is sealed in it.
    let Ok(envelope) = Envelope::decode(payload) else {
        return Ok(());
    };
    if envelope.is_sealed() {
        let sealed = envelope
            .data()
            .strip_prefix('"')
            .and_then(|data| data.strip_suffix('"'))
            .filter(|data| !data.contains('\\'))
            .ok_or(CryptoError::Malformed("not a plain JSON string"))?;
        let current = keyring.current()?;
        if key_id_of(sealed) != Some(current.id.as_str()) {
            let plain = open(keyring, envelope.class(), sealed)?;
            out.push((sealed.to_owned(), seal(current, envelope.class(), &plain)?));
        }
    }
    if let Some(chain) = envelope.chain() {
        for link in chain.next.iter().chain(&chain.catch) {
            stale_values(keyring, &link.payload, out)?;
        }
    }
    Ok(())
}

/// `payload` with every sealed value sealed under an older key sealed again under the current
/// one; `None` when there is none. An error when one cannot be opened (its key is not in
/// `keyring`, or it was altered) or there is no current key.
pub fn reseal(keyring: &Keyring, payload: &str) -> Result<Option<String>, CryptoError> {
    let mut stale = Vec::new();
    stale_values(keyring, payload, &mut stale)?;
    if stale.is_empty() {
        return Ok(None);
    }
    let mut text = payload.to_owned();
    for (old, new) in &stale {
        text = text.replacen(old.as_str(), new, 1);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Chain, ChainLink};

    fn sealed_envelope(keyring: &Keyring, class: &str, data: &str) -> String {
        let sealed = seal(
            keyring.current().expect("as set up"),
            class,
            data.as_bytes(),
        )
        .expect("as set up");
        format!(r#"{{"class": "{class}", "data": "{sealed}", "max_tries": 3, "queue": "q"}}"#)
    }

    #[test]
    fn old_data_is_sealed_again_and_nothing_else_changes() {
        let old = Keyring::new([1; 32], &[]);
        let new = Keyring::new([2; 32], &[[1; 32]]);
        let payload = sealed_envelope(&old, "note", r#"{"to": "ann@example.com"}"#);
        let resealed = reseal(&new, &payload)
            .expect("as set up")
            .expect("an old key's data changes");
        let envelope = Envelope::decode(&resealed).expect("as set up");
        let data = envelope.data().trim_matches('"');
        assert_eq!(key_id_of(data), new.current_id());
        assert_eq!(
            open(&Keyring::new([2; 32], &[]), "note", data).expect("as set up"),
            br#"{"to": "ann@example.com"}"#
        );
        let (before, after) = (payload.split(data_of(&payload)), resealed.split(data));
        assert_eq!(before.collect::<Vec<_>>(), after.collect::<Vec<_>>());
        assert_eq!(
            reseal(&new, &resealed).expect("as set up"),
            None,
            "current data stays"
        );
        assert_eq!(
            reseal(&new, r#"{"class": "plain", "data": {}}"#).expect("as set up"),
            None
        );
    }

    fn data_of(payload: &str) -> &str {
        let start = payload.find("rmq:enc").expect("as set up");
        let end = start + payload[start..].find('"').expect("as set up");
        &payload[start..end]
    }

    #[test]
    fn a_chains_jobs_are_sealed_again_too() {
        let old = Keyring::new([1; 32], &[]);
        let new = Keyring::new([2; 32], &[[1; 32]]);
        let next = sealed_envelope(&old, "second", "{}");
        let chain = Chain {
            next: vec![ChainLink {
                queue: "q".into(),
                connection: "c".into(),
                payload: next,
            }],
            catch: None,
        };
        let outer = Envelope::decode(&sealed_envelope(&old, "first", "{}"))
            .expect("as set up")
            .with_chain(Some(chain))
            .to_json();
        let resealed = reseal(&new, &outer).expect("as set up").expect("as set up");
        assert!(!resealed.contains(old.current_id().expect("as set up")));
        let envelope = Envelope::decode(&resealed).expect("as set up");
        let inner = &envelope.chain().expect("as set up").next[0].payload;
        let inner = Envelope::decode(inner).expect("as set up");
        assert_eq!(key_id_of(inner.data().trim_matches('"')), new.current_id());
        assert_eq!(
            open(&new, "second", inner.data().trim_matches('"')).expect("as set up"),
            b"{}"
        );
    }

    #[test]
    fn data_under_a_key_not_given_is_an_error() {
        let old = Keyring::new([1; 32], &[]);
        let payload = sealed_envelope(&old, "note", "{}");
        let stranger = Keyring::new([3; 32], &[]);
        assert!(matches!(
            reseal(&stranger, &payload),
            Err(CryptoError::UnknownKey { .. })
        ));
    }
}
