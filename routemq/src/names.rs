//! Queue names: what a queue may be called, checked at dispatch and by the worker.
//!
//! Letters, digits, `_`, `-` and `.`, 1 to 255 bytes. This keeps names safe in every backend: no
//! SQL quoting issues, no Redis key separators (`:`), glob characters or cluster hash-tag braces,
//! and RouteMQ's failed-job ids (`failed:{queue}:{n}`) stay parseable. `failed` and `delayed` are
//! reserved: in RouteMQ's Redis layout a queue named `failed` would share keys with other queues'
//! failed lists (`routemq:queue:failed:delayed` is both queue `failed`'s delayed set and queue
//! `delayed`'s failed list).

/// Longest queue name (RouteMQ's `VARCHAR(255)` column).
pub const MAX_QUEUE_NAME_LEN: usize = 255;

/// A queue name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue name {name:?}: {reason}")]
pub struct InvalidQueueName {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a queue name.
///
/// ```
/// assert!(routemq::validate_queue_name("emails.high-priority_2").is_ok());
/// assert!(routemq::validate_queue_name("emails; DROP TABLE queue_jobs").is_err());
/// ```
pub fn validate_queue_name(name: &str) -> Result<(), InvalidQueueName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_QUEUE_NAME_LEN {
        "it is longer than 255 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        "use only letters, digits, `_`, `-` and `.`"
    } else if matches!(name, "failed" | "delayed") {
        "`failed` and `delayed` are reserved (their Redis keys would collide with other queues')"
    } else {
        return Ok(());
    };
    Err(InvalidQueueName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_that_could_inject_or_collide() {
        for bad in [
            "",
            "a b",
            "q'1",
            "q\"",
            "{q}",
            "q:delayed",
            "50%",
            "q*",
            "q?",
            "q[1]",
            "x;--",
            "ü",
            "failed",
            "delayed",
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_queue_name(&"q".repeat(256)).is_err());
        assert!(validate_queue_name(&"q".repeat(255)).is_ok());
    }
}
