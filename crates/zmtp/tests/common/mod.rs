//! Helpers shared by the transport's integration tests.

/// `tcp://127.0.0.1:<port>` for a port that was free a moment ago and that nothing listens on
/// now: an outbox connecting there keeps its messages queued until a test binds an inbox on it.
pub fn unused_loopback_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}
