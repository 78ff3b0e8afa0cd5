//! RouteMQ's Redis key layout, with an optional Redis Cluster hash-tag form.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `routemq:queue:{q}` | list | ready jobs (RouteMQ's) |
//! | `routemq:queue:{q}:delayed` | sorted set | delayed jobs, score = due time in epoch seconds (RouteMQ's) |
//! | `routemq:queue:failed:{q}` | list | failed-job records (RouteMQ's) |
//! | `routemq:queue:{q}:inflight` | hash | leased jobs: id → lease token (ours) |
//! | `routemq:queue:{q}:leased` | hash | leased jobs: id → record, as it was stored (ours) |
//! | `routemq:queue:{q}:leases` | sorted set | leased job ids by last heartbeat (ours) |
//! | `routemq:queue:{q}:seq` | string | counter for job ids, lease tokens and failed ids; expires eight days after the queue last emptied (ours) |
//! | `routemq:queue:{q}:prio` | sorted set | ready jobs with a priority, highest first (ours; RouteMQ does not see them) |
//! | `routemq:queue:batches::id:{id}` | hash | a batch: version, created_at, finished_at, doc (ours) |
//! | `routemq:queue:batches::jobs:{id}` | hash | a batch's jobs: job id → outcome (ours) |
//! | `routemq:queue:batches::index` | sorted set | batch ids by creation time, in ms (ours) |
//! | `routemq:queue:batches::finished` | sorted set | finished batch ids by finish time, in ms (ours) |
//! | `routemq:queue:workers::beats` | sorted set | the ids of workers that beat in the last hour, by last beat, in ms (ours) |
//! | `routemq:queue:workers::docs` | hash | those workers: id → presence record (ours) |
//!
//! With hash tags on (`REDIS_HASH_TAGS=true`), the queue name is wrapped in braces in every key
//! (`routemq:queue:{emails}`, `routemq:queue:failed:{emails}`, ...) so that all keys of a queue
//! share one cluster slot; every batch key carries the tag `{batches}`, every worker key `{workers}`
//! (`routemq:queue:batches::{batches}:index`). That layout is not the one RouteMQ (Python) reads.

/// The keys of batches: two sorted sets, and the prefixes of each batch's two hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchKeys {
    /// Batch ids by creation time.
    pub(crate) index: String,
    /// Finished batch ids by finish time.
    pub(crate) finished: String,
    /// Prefix of a batch's record hash (the id follows).
    pub(crate) record: String,
    /// Prefix of a batch's outcomes hash (the id follows).
    pub(crate) jobs: String,
}

/// The keys of worker presence records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerKeys {
    /// Worker ids by last beat.
    pub(crate) beats: String,
    /// Worker id → presence record.
    pub(crate) docs: String,
}

/// How keys are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
    hash_tags: bool,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self {
            prefix: "routemq:queue:".to_owned(),
            hash_tags: false,
        }
    }
}

/// The keys of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueKeys {
    pub(crate) ready: String,
    pub(crate) delayed: String,
    pub(crate) failed: String,
    pub(crate) inflight: String,
    pub(crate) leased: String,
    pub(crate) leases: String,
    pub(crate) seq: String,
    pub(crate) prio: String,
}

impl KeyLayout {
    /// A layout with `prefix` (RouteMQ's is `routemq:queue:`) and optional hash tags.
    pub fn new(prefix: impl Into<String>, hash_tags: bool) -> Self {
        Self {
            prefix: prefix.into(),
            hash_tags,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether keys carry hash tags (the Redis Cluster layout).
    pub fn hash_tags(&self) -> bool {
        self.hash_tags
    }

    /// This layout with hash tags.
    #[must_use]
    pub fn with_hash_tags(self) -> Self {
        Self {
            hash_tags: true,
            ..self
        }
    }

    fn tagged(&self, queue: &str) -> String {
        if self.hash_tags {
            format!("{{{queue}}}")
        } else {
            queue.to_owned()
        }
    }

    pub(crate) fn queue(&self, queue: &str) -> QueueKeys {
        let p = &self.prefix;
        let q = self.tagged(queue);
        QueueKeys {
            ready: format!("{p}{q}"),
            delayed: format!("{p}{q}:delayed"),
            failed: format!("{p}failed:{q}"),
            inflight: format!("{p}{q}:inflight"),
            leased: format!("{p}{q}:leased"),
            leases: format!("{p}{q}:leases"),
            seq: format!("{p}{q}:seq"),
            prio: format!("{p}{q}:prio"),
        }
    }

    /// The sorted set of a slot name's holders (see [`slots`](crate::driver::slots)). Never
    /// a queue's key: queue names have no `:`.
    pub(crate) fn slot(&self, name: &str) -> String {
        if self.hash_tags {
            format!("{}slots::{{{name}}}", self.prefix)
        } else {
            format!("{}slots::{name}", self.prefix)
        }
    }

    /// The keys of batches (one cluster slot for all of them with hash tags).
    pub(crate) fn batches(&self) -> BatchKeys {
        let tag = if self.hash_tags { "{batches}:" } else { "" };
        let base = format!("{}batches::{tag}", self.prefix);
        BatchKeys {
            index: format!("{base}index"),
            finished: format!("{base}finished"),
            record: format!("{base}id:"),
            jobs: format!("{base}jobs:"),
        }
    }

    /// The keys of worker presence records (one cluster slot with hash tags).
    pub(crate) fn workers(&self) -> WorkerKeys {
        let tag = if self.hash_tags { "{workers}:" } else { "" };
        let base = format!("{}workers::{tag}", self.prefix);
        WorkerKeys {
            beats: format!("{base}beats"),
            docs: format!("{base}docs"),
        }
    }

    /// The pub/sub channel that announces new ready jobs.
    pub(crate) fn wake_channel(&self) -> String {
        format!("{}wake", self.prefix)
    }

    /// The SCAN pattern for every key of this layout.
    pub(crate) fn scan_pattern(&self) -> String {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The queue a key belongs to, if it is one of ours.
    pub(crate) fn queue_of(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.prefix)?;
        if ["slots::", "batches::", "workers::"]
            .iter()
            .any(|ours| rest.starts_with(ours))
        {
            return None;
        }
        let rest = rest.strip_prefix("failed:").unwrap_or(rest);
        let name = if self.hash_tags {
            rest.strip_prefix('{')?.split('}').next()?
        } else {
            rest.split(':').next()?
        };
        (crate::names::validate_queue_name(name).is_ok() && name != "wake").then(|| name.to_owned())
    }
}

/// The queue named in a failed-job id (`failed:{queue}:{n}`).
pub(crate) fn queue_of_failed_id(id: &str) -> Option<&str> {
    let mut parts = id.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("failed"), Some(queue), Some(n)) if !n.is_empty() => {
            let queue = queue.trim_matches(['{', '}']);
            crate::names::validate_queue_name(queue).ok()?;
            Some(queue)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routemq_layout_and_hash_tags() {
        let keys = KeyLayout::default().queue("emails");
        assert_eq!(keys.ready, "routemq:queue:emails");
        assert_eq!(keys.delayed, "routemq:queue:emails:delayed");
        assert_eq!(keys.failed, "routemq:queue:failed:emails");
        let tagged = KeyLayout::new("routemq:queue:", true).queue("emails");
        assert_eq!(tagged.ready, "routemq:queue:{emails}");
        assert_eq!(tagged.failed, "routemq:queue:failed:{emails}");
        assert_eq!(tagged.leases, "routemq:queue:{emails}:leases");
    }

    #[test]
    fn keys_map_back_to_queues() {
        let layout = KeyLayout::default();
        assert_eq!(
            layout.queue_of("routemq:queue:emails:delayed").as_deref(),
            Some("emails")
        );
        assert_eq!(
            layout.queue_of("routemq:queue:failed:emails").as_deref(),
            Some("emails")
        );
        assert_eq!(layout.queue_of("routemq:queue:wake"), None);
        assert_eq!(layout.queue_of(&layout.slot("emails")), None);
        assert_eq!(layout.queue_of(&layout.batches().index), None);
        assert_eq!(layout.queue_of(&layout.workers().docs), None);
        assert_eq!(
            KeyLayout::new("p:", true).workers().beats,
            "p:workers::{workers}:beats"
        );
        let tagged_batches = KeyLayout::new("p:", true).batches();
        assert_eq!(tagged_batches.index, "p:batches::{batches}:index");
        assert_eq!(
            KeyLayout::new("p:", true).queue_of(&tagged_batches.finished),
            None
        );
        assert_eq!(layout.slot("emails"), "routemq:queue:slots::emails");
        assert_eq!(layout.queue_of("other:emails"), None);
        let tagged = KeyLayout::new("routemq:queue:", true);
        assert_eq!(
            tagged.queue_of("routemq:queue:{emails}:seq").as_deref(),
            Some("emails")
        );
        assert_eq!(
            queue_of_failed_id("failed:samples-fail:1795901704253379"),
            Some("samples-fail")
        );
        assert_eq!(queue_of_failed_id("42"), None);
        assert_eq!(queue_of_failed_id("failed:a b:1"), None, "not a queue name");
        assert_eq!(
            queue_of_failed_id("failed:failed:1"),
            None,
            "a reserved name"
        );
        assert_eq!(KeyLayout::new("a*b:", false).scan_pattern(), "a\\*b:*");
    }
}
