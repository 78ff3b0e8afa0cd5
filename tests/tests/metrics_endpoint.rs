//! The metrics endpoint under hostile clients: connections that never send a request are closed
//! after the header timeout, a flood of them cannot keep `/metrics` unanswered for longer than
//! that, and unknown paths get a 404.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemq::driver::memory::MemoryDriver;
use routemq::metrics::server::{HEADER_TIMEOUT, MAX_CONNECTIONS, MetricsServer};

/// The status line and body of `GET path` (blocking, bounded by `limit`).
fn get(port: u16, path: &str, limit: Duration) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(limit)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_cut_and_cannot_starve_the_endpoint() {
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(MemoryDriver::new()),
        vec!["metrics-endpoint".to_owned()],
    )
    .await
    .expect("starts");
    let port = server.addr().port();
    let outcome = tokio::task::spawn_blocking(move || {
        // More silent clients than the endpoint serves at once.
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 16)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        let started = Instant::now();
        let (status, body) = get(port, "/metrics", HEADER_TIMEOUT * 4);
        let waited = started.elapsed();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("routemq_queue_ready_jobs"), "{body}");
        assert!(
            waited < HEADER_TIMEOUT * 3,
            "served after the silent clients timed out: {waited:?}"
        );
        // The silent clients were disconnected by the server.
        let mut closed = 0;
        for mut stream in idle {
            stream
                .set_read_timeout(Some(HEADER_TIMEOUT * 3))
                .expect("timeout");
            let mut buffer = [0_u8; 256];
            if stream.read(&mut buffer).is_ok() {
                closed += 1;
            }
        }
        assert_eq!(
            closed,
            MAX_CONNECTIONS + 16,
            "every silent client was cut off"
        );
        let (status, body) = get(port, "/health", HEADER_TIMEOUT);
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "ok\n")
        );
        let (status, _) = get(port, "/nothing", HEADER_TIMEOUT);
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    })
    .await;
    drop(server);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
