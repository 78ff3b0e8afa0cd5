//! Trace context carried from the code that dispatches a job to the worker that runs it.
//!
//! Dispatch writes RouteMQ's `observability` object into the envelope: `trace_id` (32 hex),
//! `span_id` (16 hex), `trace_flags`, `parent_span_id`, and `correlation_id` when one is set. The
//! worker runs each attempt in a `queue.job` span whose `trace_id` continues the producer's and
//! whose `link.span_id` is the producer's `queue.enqueue` span, so a trace goes on from the
//! dispatching code into the job, across RouteMQ (Python) and routemq (Rust) alike. A job that
//! dispatches other jobs passes its own context on.

use serde::Deserialize;

/// The trace context of the current job or dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `"01"` (sampled).
    pub trace_flags: String,
    /// A correlation id that follows the work across jobs, if one was set.
    pub correlation_id: Option<String>,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The context of the job running on this task, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `context` as the current trace context (dispatches inside continue it).
pub async fn scope<F: std::future::Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

pub(crate) fn random_hex(bytes: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes * 2);
    let mut bits = fastrand::u128(..);
    for _ in 0..bytes * 2 {
        out.push(char::from(HEX[(bits & 0xf) as usize]));
        bits >>= 4;
    }
    out
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && text.bytes().any(|b| b != b'0')
}

/// The ids a new producer span gets: the current trace continued, or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIds {
    /// The trace.
    pub trace_id: String,
    /// The enqueue span.
    pub span_id: String,
    /// The span that was current when dispatching (a job that dispatches), if any.
    pub parent_span_id: Option<String>,
    /// Carried over from the current context.
    pub correlation_id: Option<String>,
}

/// Ids for a `queue.enqueue` span.
pub fn producer_ids() -> ProducerIds {
    match current() {
        Some(parent) => ProducerIds {
            trace_id: parent.trace_id,
            span_id: random_hex(8),
            parent_span_id: Some(parent.span_id),
            correlation_id: parent.correlation_id,
        },
        None => ProducerIds {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            parent_span_id: None,
            correlation_id: None,
        },
    }
}

#[derive(Deserialize, Default)]
struct Incoming {
    trace_id: Option<String>,
    span_id: Option<String>,
    trace_flags: Option<String>,
    correlation_id: Option<String>,
}

/// What a consumer span knows: its own context and the producer span it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerIds {
    /// The job's own context.
    pub context: TraceContext,
    /// The producer's span id (the link), when the envelope carried a valid one.
    pub link_span_id: Option<String>,
}

/// The consumer's ids from an envelope's raw `observability` object (missing or invalid ids start
/// a new trace; a missing correlation id gets a new one, as RouteMQ does).
pub fn consumer_ids(observability: Option<&str>) -> ConsumerIds {
    let incoming: Incoming = observability
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or_default();
    let trace_id = incoming.trace_id.filter(|t| is_hex(t, 32));
    let link_span_id = incoming
        .span_id
        .filter(|s| is_hex(s, 16))
        .filter(|_| trace_id.is_some());
    ConsumerIds {
        context: TraceContext {
            trace_id: trace_id.unwrap_or_else(|| random_hex(16)),
            span_id: random_hex(8),
            trace_flags: incoming
                .trace_flags
                .filter(|f| is_hex(f, 2) || f == "00")
                .unwrap_or_else(|| "01".to_owned()),
            correlation_id: Some(incoming.correlation_id.unwrap_or_else(|| random_hex(16))),
        },
        link_span_id,
    }
}

/// With the `otel` feature: the ids of an OpenTelemetry layer, when one is installed.
#[cfg(feature = "otel")]
pub(crate) mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The OpenTelemetry (trace id, span id) of `span`, if a layer gave it valid ones.
    pub(crate) fn ids_of(span: &tracing::Span) -> Option<(String, String)> {
        let context = span.context();
        let otel = context.span();
        let span_context = otel.span_context();
        span_context.is_valid().then(|| {
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        })
    }

    /// Makes `span` a child of the producer span named in the envelope (a remote parent).
    pub(crate) fn adopt_parent(span: &tracing::Span, trace_id: &str, parent_span_id: &str) {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(trace_id),
            SpanId::from_hex(parent_span_id),
        ) else {
            return;
        };
        let remote = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_continues_a_valid_trace_and_links_the_producer() {
        let ids = consumer_ids(Some(
            r#"{"trace_id": "6e609b4cd39a40fcc6d9ccad5e2d2ca8", "span_id": "30f1a0decf2242f6", "trace_flags": "01"}"#,
        ));
        assert_eq!(ids.context.trace_id, "6e609b4cd39a40fcc6d9ccad5e2d2ca8");
        assert_eq!(ids.link_span_id.as_deref(), Some("30f1a0decf2242f6"));
        assert_ne!(ids.context.span_id, "30f1a0decf2242f6");
        let fresh = consumer_ids(Some(
            r#"{"trace_id": "nothex", "span_id": "30f1a0decf2242f6"}"#,
        ));
        assert_eq!(fresh.context.trace_id.len(), 32);
        assert_eq!(fresh.link_span_id, None);
        assert!(consumer_ids(None).context.correlation_id.is_some());
    }

    #[tokio::test]
    async fn a_dispatch_inside_a_job_continues_its_trace() {
        let job = TraceContext {
            trace_id: "a".repeat(32),
            span_id: "b".repeat(16),
            trace_flags: "01".into(),
            correlation_id: Some("c".into()),
        };
        let ids = scope(job, async { producer_ids() }).await;
        assert_eq!(ids.trace_id, "a".repeat(32));
        assert_eq!(ids.parent_span_id.as_deref(), Some("bbbbbbbbbbbbbbbb"));
        assert_eq!(ids.correlation_id.as_deref(), Some("c"));
        assert!(producer_ids().parent_span_id.is_none());
    }
}
