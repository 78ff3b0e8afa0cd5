//! The `otel` feature: with an OpenTelemetry layer installed, the exported `queue.job` span is a
//! child of the exported `queue.enqueue` span, in the same trace, and the envelope carries the
//! OpenTelemetry ids (so a RouteMQ (Python) consumer continues the same trace too).

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use routemq::driver::QueueDriver;
use routemq::driver::memory::MemoryDriver;
use routemq::prelude::*;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
#[job(name = "otel.Traced")]
struct Traced;

impl Job for Traced {
    async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_job_spans_are_children_of_the_dispatch() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("routemq-test"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("first subscriber");

    let driver: Arc<dyn QueueDriver> = Arc::new(MemoryDriver::new());
    let manager = QueueManager::new(routemq::Settings::default());
    manager.register("memory", Arc::clone(&driver));
    let request = tracing::info_span!("http.request");
    let dispatch = std::future::IntoFuture::into_future(
        manager
            .push(Traced)
            .on_connection("memory")
            .on_queue("otel"),
    );
    dispatch.instrument(request).await.expect("dispatch");

    let stored = driver
        .reserve(&["otel".to_owned()], 1)
        .await
        .expect("reserve")
        .remove(0);
    let envelope = routemq::Envelope::decode(&stored.payload).expect("envelope");
    let observability: serde_json::Value =
        serde_json::from_str(envelope.observability().expect("object")).expect("json");
    driver
        .release(&stored.lease, std::time::Duration::ZERO, true)
        .await
        .expect("release");

    let options = WorkerOptions {
        queues: vec!["otel".to_owned()],
        stop_when_empty: true,
        ..WorkerOptions::default()
    };
    Worker::new(Arc::clone(&driver), "memory", options)
        .run()
        .await
        .expect("runs");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} exported"))
    };
    let (request, enqueue, job) = (
        find("http.request"),
        find("queue.enqueue"),
        find("queue.job"),
    );
    let trace_id = request.span_context.trace_id();
    assert_eq!(
        enqueue.span_context.trace_id(),
        trace_id,
        "the dispatch joins the request's trace"
    );
    assert_eq!(enqueue.parent_span_id, request.span_context.span_id());
    assert_eq!(
        job.span_context.trace_id(),
        trace_id,
        "the job continues it"
    );
    assert_eq!(
        job.parent_span_id,
        enqueue.span_context.span_id(),
        "as a child of the dispatch"
    );
    assert_eq!(observability["trace_id"], trace_id.to_string());
    assert_eq!(
        observability["span_id"],
        enqueue.span_context.span_id().to_string()
    );
    assert_eq!(
        observability["parent_span_id"],
        request.span_context.span_id().to_string()
    );
}
