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
//! | `routemq_queue_job_cancelled_total` | counter | queue, job_class |
//! | `routemq_queue_job_retried_total` | counter | queue, job_class |
//! | `routemq_queue_job_failed_total` | counter | queue, job_class, error |
//! | `routemq_queue_job_dead_lettered_total` | counter | queue, job_class, reason |
//! | `routemq_queue_job_duration_seconds` | histogram | queue, job_class |
//! | `routemq_queue_ready_jobs`, `_reserved_jobs`, `_delayed_jobs`, `_failed_jobs`, `_oldest_ready_age_seconds` | gauge | queue |
//!
//! Label values are bounded: queue names (validated), job class names (the type's short name),
//! error kinds (`Failed`, `TimedOut`, ...) and reasons, each cut to 200 characters. Ids, payloads
//! and trace ids are never labels. `queue-work --metrics-addr 127.0.0.1:9090` serves `/metrics`.

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use crate::driver::QueueStats;

/// Histogram bucket bounds in seconds (Prometheus client defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Longest label value.
const MAX_LABEL: usize = 200;

/// The counters and duration histogram of one (queue, job class) pair, updated without locks.
#[derive(Debug, Default)]
pub struct JobSeries {
    started: AtomicU64,
    succeeded: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    retried: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    /// By error kind (rare, so a lock is fine).
    failed: Mutex<BTreeMap<String, u64>>,
    /// By reason.
    dead_lettered: Mutex<BTreeMap<String, u64>>,
}

impl JobSeries {
    /// An attempt started.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt succeeded.
    pub fn succeeded(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt timed out.
    pub fn timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// A running job was stopped by a cancellation (`queue-cancel`).
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed attempt was released to run again.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// The job went to the failed store after an error of kind `error`.
    pub fn failed(&self, error: &str) {
        *lock(&self.failed).entry(label(error)).or_default() += 1;
    }

    /// The job was failed without running.
    pub fn dead_lettered(&self, reason: &str) {
        *lock(&self.dead_lettered).entry(label(reason)).or_default() += 1;
    }

    /// How long an attempt ran.
    pub fn duration(&self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (seconds.max(0.0) * 1e6) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The dispatch counters of one (queue, job class) pair.
#[derive(Debug, Default)]
struct EnqueueSeries {
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: Mutex<BTreeMap<String, u64>>,
}

type BySeries<T> = RwLock<BTreeMap<String, BTreeMap<String, Arc<T>>>>;

/// The process-wide metric values.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: BySeries<JobSeries>,
    enqueues: BySeries<EnqueueSeries>,
    gauges: Mutex<BTreeMap<String, QueueStats>>,
}

/// The global metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn label(value: &str) -> String {
    value.chars().take(MAX_LABEL).collect()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The series for (queue, class), created on first use; later lookups take a read lock and no
/// allocation.
fn series<T: Default>(map: &BySeries<T>, queue: &str, class: &str) -> Arc<T> {
    if let Some(found) = map
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(queue)
        .and_then(|m| m.get(class))
    {
        return Arc::clone(found);
    }
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        map.entry(label(queue))
            .or_default()
            .entry(label(class))
            .or_default(),
    )
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
        "routemq_queue_job_cancelled_total",
        "counter",
        "Running jobs stopped by a cancellation.",
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

/// One sample line: name, labels (already in order), value.
type Sample = (&'static str, Vec<(&'static str, String)>, String);

impl Metrics {
    /// The counters of jobs of `class` on `queue` (hold on to it for a job's lifetime).
    pub fn job(&self, queue: &str, class: &str) -> Arc<JobSeries> {
        series(&self.jobs, queue, class)
    }

    /// A dispatch started.
    pub fn enqueue_started(&self, queue: &str, job_class: &str) {
        series(&self.enqueues, queue, job_class)
            .started
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A dispatch stored its job.
    pub fn enqueue_succeeded(&self, queue: &str, job_class: &str) {
        series(&self.enqueues, queue, job_class)
            .succeeded
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A dispatch failed with an error of kind `error`.
    pub fn enqueue_failed(&self, queue: &str, job_class: &str, error: &str) {
        *lock(&series(&self.enqueues, queue, job_class).failed)
            .entry(label(error))
            .or_default() += 1;
    }

    /// Sets the per-queue gauges from a stats snapshot.
    pub fn queue_stats(&self, stats: &QueueStats) {
        lock(&self.gauges).insert(label(&stats.queue), stats.clone());
    }

    fn samples(&self) -> Vec<Sample> {
        let mut out: Vec<Sample> = Vec::new();
        let pair = |q: &str, c: &str| vec![("queue", q.to_owned()), ("job_class", c.to_owned())];
        for (queue, classes) in self
            .enqueues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (class, s) in classes {
                out.push((
                    "routemq_queue_enqueue_started_total",
                    pair(queue, class),
                    s.started.load(Ordering::Relaxed).to_string(),
                ));
                out.push((
                    "routemq_queue_enqueue_succeeded_total",
                    pair(queue, class),
                    s.succeeded.load(Ordering::Relaxed).to_string(),
                ));
                for (error, n) in lock(&s.failed).iter() {
                    let mut labels = pair(queue, class);
                    labels.push(("error", error.clone()));
                    out.push(("routemq_queue_enqueue_failed_total", labels, n.to_string()));
                }
            }
        }
        for (queue, classes) in self
            .jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (class, s) in classes {
                for (name, counter) in [
                    ("routemq_queue_job_started_total", &s.started),
                    ("routemq_queue_job_succeeded_total", &s.succeeded),
                    ("routemq_queue_job_timed_out_total", &s.timed_out),
                    ("routemq_queue_job_cancelled_total", &s.cancelled),
                    ("routemq_queue_job_retried_total", &s.retried),
                ] {
                    out.push((
                        name,
                        pair(queue, class),
                        counter.load(Ordering::Relaxed).to_string(),
                    ));
                }
                for (error, n) in lock(&s.failed).iter() {
                    let mut labels = pair(queue, class);
                    labels.push(("error", error.clone()));
                    out.push(("routemq_queue_job_failed_total", labels, n.to_string()));
                }
                for (reason, n) in lock(&s.dead_lettered).iter() {
                    let mut labels = pair(queue, class);
                    labels.push(("reason", reason.clone()));
                    out.push((
                        "routemq_queue_job_dead_lettered_total",
                        labels,
                        n.to_string(),
                    ));
                }
                let count = s.count.load(Ordering::Relaxed);
                if count > 0 {
                    for (bucket, bound) in s.buckets.iter().zip(BUCKETS) {
                        let mut labels = pair(queue, class);
                        labels.push(("le", bound.to_string()));
                        out.push((
                            "routemq_queue_job_duration_seconds",
                            labels,
                            bucket.load(Ordering::Relaxed).to_string(),
                        ));
                    }
                    let mut labels = pair(queue, class);
                    labels.push(("le", "+Inf".to_owned()));
                    out.push((
                        "routemq_queue_job_duration_seconds",
                        labels,
                        count.to_string(),
                    ));
                    let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                    out.push((
                        "routemq_queue_job_duration_seconds_sum",
                        pair(queue, class),
                        sum.to_string(),
                    ));
                    out.push((
                        "routemq_queue_job_duration_seconds_count",
                        pair(queue, class),
                        count.to_string(),
                    ));
                }
            }
        }
        for (queue, stats) in lock(&self.gauges).iter() {
            let labels = vec![("queue", queue.clone())];
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
                out.push((name, labels.clone(), value.to_string()));
            }
        }
        out
    }

    /// A counter's current value summed over the series matching `labels`; for tests and checks.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples()
            .iter()
            .filter(|(n, l, _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .filter_map(|(_, _, v)| v.parse::<u64>().ok())
            .sum()
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let samples = self.samples();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sample, labels, value) in &samples {
                let suffix = match sample.strip_prefix(name) {
                    Some("") if *kind == "histogram" => "_bucket",
                    Some(rest @ ("" | "_sum" | "_count")) => rest,
                    _ => continue,
                };
                let rendered: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(out, "{name}{suffix}{{{}}} {value}", rendered.join(","));
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
        let series = m.job("emails", "SendEmail");
        series.started();
        series.started();
        series.failed("Failed");
        series.duration(0.03);
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
        m.job("q", "C").failed(&format!("{}\"\n", "x".repeat(300)));
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("routemq_queue_job_failed_total"))
            .expect("line");
        assert!(line.len() < 300, "{line}");
    }
}
