//! Tracing: a job's `queue.job` span continues the trace of the code that dispatched it, through
//! the envelope's `observability` object; a job that dispatches continues its own trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use routemq::Envelope;
use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::prelude::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Recorded = Vec<(String, HashMap<String, String>)>;
static SPANS: Mutex<Recorded> = Mutex::new(Vec::new());

struct Capture;

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        SPANS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((attrs.metadata().name().to_owned(), fields));
    }
}

fn spans(name: &str, queue: &str) -> Vec<HashMap<String, String>> {
    SPANS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(n, f)| {
            n == name && f.get("messaging.destination").map(String::as_str) == Some(queue)
        })
        .map(|(_, f)| f.clone())
        .collect()
}

/// Dispatches a follow-up job to `next_queue` from inside `handle`.
#[derive(Debug)]
#[job(name = "observability.Parent")]
struct Parent {
    next_queue: String,
}

impl Job for Parent {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        routemq::queue()
            .push(Child)
            .on_connection("memory-obs")
            .on_queue(self.next_queue.clone())
            .await?;
        Ok(())
    }
}

#[derive(Debug)]
#[job(name = "observability.Child")]
struct Child;

impl Job for Child {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_spans_continue_the_dispatching_trace() {
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture));
    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let manager = routemq::queue();
    manager.register("memory-obs", Arc::clone(&driver));
    let (first, second) = ("obs-parent", "obs-child");

    manager
        .push(Parent {
            next_queue: second.to_owned(),
        })
        .on_connection("memory-obs")
        .on_queue(first)
        .await
        .expect("dispatch");
    let enqueue = spans("queue.enqueue", first);
    assert_eq!(enqueue.len(), 1);
    let (trace_id, producer_span) = (
        enqueue[0]["trace_id"].clone(),
        enqueue[0]["span_id"].clone(),
    );
    assert_eq!((trace_id.len(), producer_span.len()), (32, 16));

    // The envelope carries the same ids, in RouteMQ's keys.
    let stored = driver
        .reserve(&[first.to_owned()], 1)
        .await
        .expect("reserve")
        .remove(0);
    let observability: serde_json::Value = serde_json::from_str(
        Envelope::decode(&stored.payload)
            .expect("envelope")
            .observability()
            .expect("object"),
    )
    .expect("json");
    assert_eq!(observability["trace_id"], trace_id.as_str());
    assert_eq!(observability["span_id"], producer_span.as_str());
    assert_eq!(observability["trace_flags"], "01");
    assert_eq!(observability["parent_span_id"], serde_json::Value::Null);
    assert_eq!(observability["job_class"], "Parent");
    driver
        .release(&stored.lease, std::time::Duration::ZERO, true)
        .await
        .expect("release");

    let options = WorkerOptions {
        queues: vec![first.to_owned(), second.to_owned()],
        stop_when_empty: true,
        ..WorkerOptions::default()
    };
    let report = Worker::new(Arc::clone(&driver), "memory-obs", options)
        .run()
        .await
        .expect("runs");
    assert_eq!(report.succeeded, 2);

    let parent_job = spans("queue.job", first);
    assert_eq!(parent_job.len(), 1);
    assert_eq!(
        parent_job[0]["trace_id"], trace_id,
        "the job continues the producer's trace"
    );
    assert_eq!(
        parent_job[0]["link.span_id"], producer_span,
        "and links the enqueue span"
    );
    assert_ne!(parent_job[0]["span_id"], producer_span);

    let nested = spans("queue.enqueue", second);
    assert_eq!(nested.len(), 1);
    assert_eq!(
        nested[0]["trace_id"], trace_id,
        "a dispatch inside a job stays in its trace"
    );
    assert_eq!(nested[0]["parent_span_id"], parent_job[0]["span_id"]);
    let child_job = spans("queue.job", second);
    assert_eq!(child_job[0]["trace_id"], trace_id);
    assert_eq!(child_job[0]["link.span_id"], nested[0]["span_id"]);
    assert_eq!(
        child_job[0]["correlation_id"], parent_job[0]["correlation_id"],
        "the correlation id follows the work"
    );

    let metrics = routemq::metrics::metrics();
    assert_eq!(
        metrics.counter(
            "routemq_queue_enqueue_succeeded_total",
            &[("queue", first), ("job_class", "Parent")]
        ),
        1
    );
    assert_eq!(
        metrics.counter(
            "routemq_queue_job_succeeded_total",
            &[("queue", second), ("job_class", "Child")]
        ),
        1
    );
}
