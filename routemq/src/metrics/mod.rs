//! Prometheus metrics with RouteMQ's names and labels, in the text exposition format.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `routemq_queue_enqueue_started_total` | counter | queue, job_class |
//! | `routemq_queue_enqueue_succeeded_total` | counter | queue, job_class |
//! | `routemq_queue_enqueue_failed_total` | counter | queue, job_class, error |
//! | `routemq_queue_job_started_total` | counter | queue, job_class |
//! | `routemq_queue_job_succeeded_total` | counter | queue, job_class |
//! | `routemq_queue_job_timed_out_total` | counter | queue, job_class |
//! | `routemq_queue_job_retried_total` | counter | queue, job_class |
//! | `routemq_queue_job_failed_total` | counter | queue, job_class, error |
//! | `routemq_queue_job_dead_lettered_total` | counter | queue, job_class, reason |
//! | `routemq_queue_job_duration_seconds` | histogram | queue, job_class |
//! | `routemq_queue_ready_jobs`, `_reserved_jobs`, `_delayed_jobs`, `_failed_jobs`, `_oldest_ready_age_seconds` | gauge | queue |
//!
//! Label values are bounded: queue names (validated), job class names (the type's short name),
//! error kinds (`Failed`, `TimedOut`, ...) and reasons, each cut to 200 characters. Ids, payloads
//! and trace ids are never labels. `queue-work --metrics-addr 127.0.0.1:9090` serves `/metrics`.

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use crate::driver::QueueStats;

/// Histogram bucket bounds in seconds (Prometheus client defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Longest label value.
const MAX_LABEL: usize = 200;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Store {
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The process-wide metric values.
#[derive(Debug, Default)]
pub struct Metrics {
    store: Mutex<Store>,
}

/// The global metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

fn label(value: &str) -> String {
    value.chars().take(MAX_LABEL).collect()
}

fn job_labels(queue: &str, job_class: &str) -> Labels {
    vec![("queue", label(queue)), ("job_class", label(job_class))]
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "routemq_queue_enqueue_started_total",
        "counter",
        "Jobs whose dispatch started.",
    ),
    (
        "routemq_queue_enqueue_succeeded_total",
        "counter",
        "Jobs stored by a dispatch.",
    ),
    (
        "routemq_queue_enqueue_failed_total",
        "counter",
        "Dispatches that failed.",
    ),
    (
        "routemq_queue_job_started_total",
        "counter",
        "Job attempts started by a worker.",
    ),
    (
        "routemq_queue_job_succeeded_total",
        "counter",
        "Job attempts that succeeded.",
    ),
    (
        "routemq_queue_job_timed_out_total",
        "counter",
        "Job attempts that ran past their timeout.",
    ),
    (
        "routemq_queue_job_retried_total",
        "counter",
        "Failed attempts released to run again.",
    ),
    (
        "routemq_queue_job_failed_total",
        "counter",
        "Jobs moved to the failed store.",
    ),
    (
        "routemq_queue_job_dead_lettered_total",
        "counter",
        "Jobs failed without running (tries used up, or undecodable).",
    ),
    (
        "routemq_queue_job_duration_seconds",
        "histogram",
        "Duration of job attempts.",
    ),
    ("routemq_queue_ready_jobs", "gauge", "Jobs ready to run."),
    (
        "routemq_queue_reserved_jobs",
        "gauge",
        "Jobs leased by workers.",
    ),
    ("routemq_queue_delayed_jobs", "gauge", "Jobs not yet due."),
    (
        "routemq_queue_failed_jobs",
        "gauge",
        "Jobs in the failed store.",
    ),
    (
        "routemq_queue_oldest_ready_age_seconds",
        "gauge",
        "Age of the oldest ready job.",
    ),
];

impl Metrics {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, name: &'static str, labels: Labels) {
        *self.store().counters.entry((name, labels)).or_default() += 1;
    }

    /// A dispatch started.
    pub fn enqueue_started(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_enqueue_started_total",
            job_labels(queue, job_class),
        );
    }

    /// A dispatch stored its job.
    pub fn enqueue_succeeded(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_enqueue_succeeded_total",
            job_labels(queue, job_class),
        );
    }

    /// A dispatch failed with an error of kind `error`.
    pub fn enqueue_failed(&self, queue: &str, job_class: &str, error: &str) {
        let mut labels = job_labels(queue, job_class);
        labels.push(("error", label(error)));
        self.add("routemq_queue_enqueue_failed_total", labels);
    }

    /// An attempt started.
    pub fn job_started(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_job_started_total",
            job_labels(queue, job_class),
        );
    }

    /// An attempt succeeded.
    pub fn job_succeeded(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_job_succeeded_total",
            job_labels(queue, job_class),
        );
    }

    /// An attempt timed out.
    pub fn job_timed_out(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_job_timed_out_total",
            job_labels(queue, job_class),
        );
    }

    /// A failed attempt was released to run again.
    pub fn job_retried(&self, queue: &str, job_class: &str) {
        self.add(
            "routemq_queue_job_retried_total",
            job_labels(queue, job_class),
        );
    }

    /// A job went to the failed store after an error of kind `error`.
    pub fn job_failed(&self, queue: &str, job_class: &str, error: &str) {
        let mut labels = job_labels(queue, job_class);
        labels.push(("error", label(error)));
        self.add("routemq_queue_job_failed_total", labels);
    }

    /// A job was failed without running (`reason`: `max_tries_exceeded`, `undecodable`).
    pub fn job_dead_lettered(&self, queue: &str, job_class: &str, reason: &str) {
        let mut labels = job_labels(queue, job_class);
        labels.push(("reason", label(reason)));
        self.add("routemq_queue_job_dead_lettered_total", labels);
    }

    /// Records how long an attempt ran.
    pub fn job_duration(&self, queue: &str, job_class: &str, seconds: f64) {
        let mut store = self.store();
        let histogram = store
            .histograms
            .entry((
                "routemq_queue_job_duration_seconds",
                job_labels(queue, job_class),
            ))
            .or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Sets the per-queue gauges from a stats snapshot.
    pub fn queue_stats(&self, stats: &QueueStats) {
        let labels = vec![("queue", label(&stats.queue))];
        let mut store = self.store();
        for (name, value) in [
            ("routemq_queue_ready_jobs", stats.ready as f64),
            ("routemq_queue_reserved_jobs", stats.reserved as f64),
            ("routemq_queue_delayed_jobs", stats.delayed as f64),
            ("routemq_queue_failed_jobs", stats.failed as f64),
            (
                "routemq_queue_oldest_ready_age_seconds",
                stats.oldest_ready_age_seconds,
            ),
        ] {
            store.gauges.insert((name, labels.clone()), value);
        }
    }

    /// A counter's current value (0 if never incremented); for tests and health checks.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.store()
            .counters
            .iter()
            .filter(|((n, l), _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let store = self.store();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), value) in &store.counters {
                if n == name {
                    let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
                }
            }
            for ((n, labels), value) in &store.gauges {
                if n == name {
                    let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
                }
            }
            for ((n, labels), histogram) in &store.histograms {
                if n != name {
                    continue;
                }
                for (count, bound) in histogram.buckets.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        render_labels(labels, Some(("le", bound.to_string())))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some(("le", "+Inf".to_owned()))),
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    render_labels(labels, None),
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    histogram.count
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.job_started("emails", "SendEmail");
        m.job_started("emails", "SendEmail");
        m.job_failed("emails", "SendEmail", "Failed");
        m.job_duration("emails", "SendEmail", 0.03);
        m.queue_stats(&QueueStats {
            queue: "emails".into(),
            ready: 4,
            ..QueueStats::default()
        });
        let text = m.render();
        assert!(text.contains("# TYPE routemq_queue_job_started_total counter\nroutemq_queue_job_started_total{queue=\"emails\",job_class=\"SendEmail\"} 2\n"), "{text}");
        assert!(text.contains("routemq_queue_job_failed_total{queue=\"emails\",job_class=\"SendEmail\",error=\"Failed\"} 1"));
        assert!(text.contains("routemq_queue_job_duration_seconds_bucket{queue=\"emails\",job_class=\"SendEmail\",le=\"0.025\"} 0"));
        assert!(text.contains("routemq_queue_job_duration_seconds_bucket{queue=\"emails\",job_class=\"SendEmail\",le=\"0.05\"} 1"));
        assert!(text.contains(
            "routemq_queue_job_duration_seconds_count{queue=\"emails\",job_class=\"SendEmail\"} 1"
        ));
        assert!(text.contains("routemq_queue_ready_jobs{queue=\"emails\"} 4"));
        assert_eq!(
            m.counter("routemq_queue_job_started_total", &[("queue", "emails")]),
            2
        );
    }

    #[test]
    fn label_values_are_escaped_and_bounded() {
        let m = Metrics::default();
        m.job_failed("q", "C", &format!("{}\"\n", "x".repeat(300)));
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("routemq_queue_job_failed_total"))
            .expect("line");
        assert!(line.len() < 300, "{line}");
    }
}
