//! The sealed form of a job's data: `rmq:enc:v1:{key id}:{base64url(nonce ‖ ciphertext ‖ tag)}`,
//! with a random 24-byte nonce and the job's wire tag as associated data.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};

use super::{CryptoError, Key, Keyring};

/// How every sealed value starts.
pub const SEALED_PREFIX: &str = "rmq:enc:v1:";

const NONCE_LEN: usize = 24;

/// Whether `text` (an envelope's `data`, as a JSON string's contents) is sealed data.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// The id of the key sealed `text` was sealed with.
pub fn key_id_of(text: &str) -> Option<&str> {
    let (id, _) = text.strip_prefix(SEALED_PREFIX)?.split_once(':')?;
    Some(id)
}

/// Seals `plaintext` (the job's data as JSON) for job type `class` under `key`.
pub(crate) fn seal(key: &Key, class: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|_| CryptoError::NoRandomness)?;
    let sealed = key
        .cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: class.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Malformed("the data is too large to seal"))?;
    let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    Ok(format!(
        "{SEALED_PREFIX}{}:{}",
        key.id,
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Opens sealed `text` for job type `class` with whichever of `keyring`'s keys it names.
pub(crate) fn open(keyring: &Keyring, class: &str, text: &str) -> Result<Vec<u8>, CryptoError> {
    let rest = text
        .strip_prefix(SEALED_PREFIX)
        .ok_or(CryptoError::Malformed("not sealed data"))?;
    let (id, body) = rest
        .split_once(':')
        .ok_or(CryptoError::Malformed("no key id"))?;
    // Only a well-formed id is ever echoed (into errors, logs and the failed store).
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CryptoError::Malformed("the key id is not 8 hex digits"));
    }
    let key = keyring.find(id).ok_or_else(|| CryptoError::UnknownKey {
        key_id: id.to_owned(),
    })?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CryptoError::Malformed("not base64url"))?;
    if bytes.len() < NONCE_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    key.cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: class.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Tampered {
            key_id: id.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_its_key_for_its_type_only() {
        let old = Keyring::new([1; 32], &[]);
        let sealed = seal(
            old.current().expect("key"),
            "app.Email",
            br#"{"to": "a@b.c"}"#,
        )
        .expect("seals");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("a@b.c"));
        assert_eq!(key_id_of(&sealed), old.current_id());
        let opened = open(&old, "app.Email", &sealed).expect("opens");
        assert_eq!(opened, br#"{"to": "a@b.c"}"#);
        // Another job type: refused.
        assert!(matches!(
            open(&old, "app.Other", &sealed),
            Err(CryptoError::Tampered { .. })
        ));
        // After a rotation the old key still opens it; without it, the key id is named.
        let rotated = Keyring::new([2; 32], &[[1; 32]]);
        assert!(open(&rotated, "app.Email", &sealed).is_ok());
        let lost = Keyring::new([2; 32], &[]);
        let error = open(&lost, "app.Email", &sealed).expect_err("unknown key");
        assert!(
            error.to_string().contains(old.current_id().expect("id")),
            "{error}"
        );
        // One flipped character: refused.
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).expect("ascii");
        assert!(open(&old, "app.Email", &altered).is_err());
        // A key id that is not 8 hex digits is never echoed.
        let odd = open(&old, "app.Email", "rmq:enc:v1:<script>\n:AAAA").expect_err("malformed");
        assert!(!odd.to_string().contains("script"), "{odd}");
        // Two seals of the same data differ (random nonces).
        let key = old.current().expect("key");
        assert_ne!(
            seal(key, "x", b"{}").expect("seals"),
            seal(key, "x", b"{}").expect("seals")
        );
    }
}
