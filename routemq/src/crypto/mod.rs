//! Encrypted job data: `#[job(encrypted)]` stores the job's `data` sealed with
//! XChaCha20-Poly1305 under a key from the environment, so the plaintext never reaches the store,
//! the failed store, logs or metrics.
//!
//! - `ROUTEMQ_KEY`: the current key, 32 bytes in base64 (`queue-keygen` prints a new one).
//! - `ROUTEMQ_PREVIOUS_KEYS`: older keys, comma-separated, still accepted for reading, so that
//!   jobs written before a rotation still run.
//!
//! Each sealed value names the key it was sealed with (a key id: 8 hex digits derived from the
//! key, never the key) and is bound to the job's type (its wire tag is the associated data), so a
//! ciphertext cannot be moved to another job type. The envelope's `data` becomes a string,
//! `"rmq:enc:v1:{key id}:{nonce and ciphertext, base64url}"`. RouteMQ (Python) cannot read it:
//! its worker cannot unserialize such a job and deletes it, so keep Python workers off queues
//! that carry encrypted job types. An encrypted job type refuses data that is not sealed (a job
//! written in plaintext by someone else), and a worker with encrypted job types does not start
//! without a usable key.
//!
//! Keys can also come from code (a secret manager): [`install`] a [`Keyring`] before the first
//! dispatch or job.
//!
//! To retire a key: make a new key current and list the old one in `ROUTEMQ_PREVIOUS_KEYS`
//! (workers first, then producers), run [`reencrypt`] (`queue-reencrypt`) until it reports
//! nothing leased or unreadable, then drop the old key.

mod reencrypt;
mod reseal;
mod sealed;

use std::sync::OnceLock;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hmac::{Hmac, Mac};

pub use reencrypt::{ReencryptError, Reencrypted, reencrypt, reencrypt_with};
pub use reseal::reseal;
pub use sealed::{SEALED_PREFIX, is_sealed, key_id_of};
pub(crate) use sealed::{open, seal};

type HmacSha256 = Hmac<sha2::Sha256>;

/// Why a key could not be used, or data could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// No key is configured.
    #[error("no encryption key: set ROUTEMQ_KEY (32 bytes, base64; `queue-keygen` prints one)")]
    NoKey,
    /// A configured key is not 32 bytes of base64.
    #[error("invalid key in {variable}: {reason}")]
    InvalidKey {
        /// Where the key came from.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data was sealed with a key this process does not have.
    #[error(
        "sealed with key {key_id}, which is neither ROUTEMQ_KEY nor one of ROUTEMQ_PREVIOUS_KEYS"
    )]
    UnknownKey {
        /// The key id the data names.
        key_id: String,
    },
    /// The data does not open under its key: it was altered, or belongs to another job type.
    #[error(
        "sealed data does not open under key {key_id}: altered, or sealed for another job type"
    )]
    Tampered {
        /// The key id the data names.
        key_id: String,
    },
    /// The value is not sealed data routemq wrote.
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    /// The job type is encrypted but the job's data is not sealed: it was not written by routemq
    /// with a key (or was written before the type became encrypted), and is refused.
    #[error("the job type is encrypted but this job's data is not sealed; refused")]
    Unsealed,
    /// The operating system gave no random bytes for a nonce.
    #[error("no random bytes from the operating system for a nonce")]
    NoRandomness,
}

/// One key: its id, its cipher, and its key for unique-job keys.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) cipher: XChaCha20Poly1305,
    mac_key: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 of `label` under `key`.
fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// `bytes` in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Key {
    /// A key from its 32 raw bytes: the cipher and the unique-key MAC use keys derived from it.
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        let id = hex(&derive(bytes, b"routemq key id")[..4]);
        let cipher_key = derive(bytes, b"routemq job data v1");
        let cipher = XChaCha20Poly1305::new((&cipher_key).into());
        Self {
            id,
            cipher,
            mac_key: derive(bytes, b"routemq unique keys v1"),
        }
    }

    /// Parses a base64 key (standard or URL-safe, padded or not).
    fn parse(variable: &'static str, text: &str) -> Result<Self, CryptoError> {
        use base64::Engine;
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| CryptoError::InvalidKey {
                variable,
                reason: "not base64".to_owned(),
            })?;
        let bytes: [u8; 32] =
            bytes
                .try_into()
                .map_err(|bytes: Vec<u8>| CryptoError::InvalidKey {
                    variable,
                    reason: format!("{} bytes, not 32", bytes.len()),
                })?;
        Ok(Self::from_bytes(&bytes))
    }
}

/// The current key (which seals) and the previous ones (which still open).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl Keyring {
    /// A keyring from 32-byte keys: `current` seals, every key opens.
    pub fn new(current: [u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: Some(Key::from_bytes(&current)),
            previous: previous.iter().map(Key::from_bytes).collect(),
        }
    }

    /// The keys from `ROUTEMQ_KEY` and `ROUTEMQ_PREVIOUS_KEYS` (a `.env` file included); none
    /// when they are unset.
    pub fn from_env() -> Result<Self, CryptoError> {
        let current = crate::config::env_var("ROUTEMQ_KEY")
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::parse("ROUTEMQ_KEY", &k))
            .transpose()?;
        let previous = crate::config::env_var("ROUTEMQ_PREVIOUS_KEYS")
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::parse("ROUTEMQ_PREVIOUS_KEYS", k))
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }

    /// Whether it holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.previous.is_empty()
    }

    /// The id of the current key, if there is one.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(|key| key.id.as_str())
    }

    pub(crate) fn current(&self) -> Result<&Key, CryptoError> {
        self.current.as_ref().ok_or(CryptoError::NoKey)
    }

    pub(crate) fn find(&self, id: &str) -> Option<&Key> {
        self.current
            .iter()
            .chain(&self.previous)
            .find(|key| key.id == id)
    }

    /// A unique job's key as stored for an encrypted job type: an HMAC under the current key, so
    /// the data it is made of never reaches the store.
    pub(crate) fn hide_unique_key(&self, key: &str) -> Result<String, CryptoError> {
        Ok(hex(&derive(&self.current()?.mac_key, key.as_bytes())))
    }
}

static INSTALLED: OnceLock<Keyring> = OnceLock::new();

/// Installs `keyring` for this process; it wins over the environment's keys from then on. Call
/// it once, before the first dispatch or job: a second call is refused (returns `false`).
pub fn install(keyring: Keyring) -> bool {
    INSTALLED.set(keyring).is_ok()
}

/// The process's keyring: the installed one, else the environment's (read once).
pub fn keyring() -> Result<&'static Keyring, CryptoError> {
    static FROM_ENV: OnceLock<Result<Keyring, CryptoError>> = OnceLock::new();
    if let Some(keyring) = INSTALLED.get() {
        return Ok(keyring);
    }
    FROM_ENV
        .get_or_init(Keyring::from_env)
        .as_ref()
        .map_err(Clone::clone)
}

/// A new random key: its base64 form (for `ROUTEMQ_KEY`) and its key id.
pub fn generate_key() -> (String, String) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    let id = Key::from_bytes(&bytes).id;
    (base64::engine::general_purpose::STANDARD.encode(bytes), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_have_stable_ids() {
        let (text, id) = generate_key();
        let key = Key::parse("ROUTEMQ_KEY", &text).expect("a generated key parses");
        assert_eq!(key.id, id);
        let again = Key::parse("ROUTEMQ_KEY", &format!(" {text}\n")).expect("trimmed");
        assert_eq!(key.id, again.id);
        assert_eq!(key.id.len(), 8);
        assert_ne!(key.id, generate_key().1);
        let short = Key::parse("ROUTEMQ_KEY", "AAAA").expect_err("3 bytes");
        assert!(short.to_string().contains("3 bytes, not 32"), "{short}");
        assert!(Key::parse("ROUTEMQ_KEY", "not base64!").is_err());
        let ring = Keyring::new([7; 32], &[]);
        let hidden = ring.hide_unique_key("shop-42").expect("key");
        assert_eq!(hidden.len(), 64);
        assert!(!hidden.contains("shop"));
        assert_eq!(hidden, ring.hide_unique_key("shop-42").expect("key"));
    }
}
