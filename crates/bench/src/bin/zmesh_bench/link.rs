//! Scenarios 1 and 2: WHISPER throughput and round trip between two processes, against the zmesh
//! ZMTP transport alone and plain tokio TCP doing the same thing.
//!
//! # Pattern (identical for the three implementations)
//!
//! Process A (the driver) and process B (this binary re-executed with `--peer`) each own one end of a
//! [`Link`]. For the node, a link is a zmesh [`Node`] whose peer is the other process's node; for the
//! transport, an [`Inbox`] plus an [`Outbox`] connected to the other process's inbox (the "Harmony"
//! pattern ZRE itself uses); for the baseline, a pair of plain TCP streams with a `u32` length prefix.
//!
//! * **Throughput** is *windowed*: A keeps at most `window` messages un-acknowledged; B acknowledges
//!   every `ack_every` messages with the running count. The window matters for the node: `whisper`
//!   has no async back-pressure — when a peer's outbox queue (100,000 messages / 64 MiB by default) is
//!   full it returns `PeerOverflow` and *drops the peer*. An application that streams must therefore
//!   pace itself, and this is the pacing a real application would use. The same window is applied to
//!   the baselines so the pattern is the same.
//! * **Round trip**: A sends one 64-byte message, B sends it back, A times each round trip separately.

use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zmesh::{Event, Events, Node, Uuid};
use zmesh_bench::rtt::{echo, hello_driver, hello_peer, round_trips};
use zmesh_bench::tcp_baseline::{self, TcpLink};
use zmesh_bench::zmtp_link::{self, Api, ZmtpLink};
pub use zmesh_bench::Link;

use crate::{node_builder, read_announce, spawn_self, Args, Percentiles, SCENARIO_TIMEOUT};

/// Untimed round trips before the timed ones.
const RTT_WARMUP: usize = 2_000;

/// Throughput parameters of one message size.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Content bytes per message.
    pub size: usize,
    /// Messages in the run.
    pub count: usize,
    /// Most un-acknowledged messages.
    pub window: usize,
    /// B acknowledges every this many messages.
    pub ack_every: usize,
}

/// The two throughput runs: 64 B and 4 KiB.
pub fn windows(args: &Args) -> [Window; 2] {
    [
        Window {
            size: 64,
            count: args.count64,
            window: 32_768,
            ack_every: 4_096,
        },
        Window {
            size: 4096,
            count: args.count4k,
            window: 4_096,
            ack_every: 512,
        },
    ]
}

// ------------------------------------------------------------------------------------------------
// zmesh node: WHISPER over a full ZRE session.

/// A zmesh node plus the UUID of the node in the other process.
pub struct NodeLink {
    node: Node,
    events: Events,
    peer: Uuid,
}

impl NodeLink {
    /// Connections our node opened so far: (over a Unix socket, over TCP).
    pub fn connects(&self) -> (u64, u64) {
        let s = self.node.stats();
        (s.ipc_connects, s.tcp_connects)
    }
}

impl Link for NodeLink {
    async fn send(&mut self, msg: Bytes) {
        if let Err(e) = self.node.whisper(self.peer, msg) {
            panic!("whisper failed (the window should prevent overflow): {e}");
        }
    }

    async fn flush(&mut self) {}

    async fn recv(&mut self) -> Bytes {
        loop {
            match self.events.recv().await.expect("node event stream ended") {
                Event::Whisper {
                    peer, mut content, ..
                } if peer == self.peer => {
                    assert_eq!(content.len(), 1, "bench whispers are single-frame");
                    return content.pop().unwrap();
                }
                Event::Exit { peer, .. } if peer == self.peer => {
                    panic!(
                        "the other node left (EXIT) in the middle of the benchmark; our stats: {:?}",
                        self.node.stats()
                    )
                }
                _ => {}
            }
        }
    }

    async fn shutdown(self) {
        let dropped = self.node.stats().dropped_events;
        assert_eq!(
            dropped, 0,
            "node dropped {dropped} events (queue too small)"
        );
        self.node.stop().await;
    }
}

/// Event queue large enough that a full window never overflows it.
const NODE_EVENT_CAPACITY: usize = 100_000;

/// Driver side: start our node, start the peer process, wait until each sees the other.
/// `ipc`: both nodes with the same-host fast path on (scenario 14).
pub async fn node_driver(args: &Args, port: u16, ipc: bool) -> (NodeLink, Child) {
    let uuid = Uuid::new_v4();
    let (node, mut events) = node_builder("bench-a", port, Duration::from_millis(100))
        .same_host(ipc)
        .uuid(uuid)
        .event_capacity(NODE_EVENT_CAPACITY)
        .start()
        .await
        .expect("start node A");
    let connect = zmesh::uuid_to_string(&uuid);
    let port_s = port.to_string();
    let mut extra = vec![
        "--peer",
        "node",
        "--connect",
        &connect,
        "--beacon-port",
        &port_s,
    ];
    if ipc {
        extra.push("--ipc");
    }
    let mut child = spawn_self(args, &extra);
    let theirs = read_announce(&mut child, "READY");
    let peer = zmesh::uuid_from_str(&theirs).expect("peer uuid");
    wait_enter(&mut events, peer).await;
    (NodeLink { node, events, peer }, child)
}

/// Peer side: start our node and wait for the driver's node.
pub async fn node_peer(args: &Args) -> NodeLink {
    let port = args.beacon_port.expect("--beacon-port");
    let peer = zmesh::uuid_from_str(args.connect.as_deref().expect("--connect")).expect("uuid");
    let (node, mut events) = node_builder("bench-b", port, Duration::from_millis(100))
        .same_host(args.ipc)
        .event_capacity(NODE_EVENT_CAPACITY)
        .start()
        .await
        .expect("start node B");
    // Scenario 8's responder: echo every request, from a task of its own.
    let mut requests = node.on_request(ECHO_EVENT).expect("register bench handler");
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let p = req.payload().clone();
            req.reply(p);
        }
    });
    println!("READY {}", node.uuid_string());
    wait_enter(&mut events, peer).await;
    NodeLink { node, events, peer }
}

/// Waits for the ENTER of `peer` (discovery on loopback takes a few beacon intervals at most).
pub async fn wait_enter(events: &mut Events, peer: Uuid) {
    let fut = async {
        loop {
            match events.recv().await {
                Some(Event::Enter { peer: p, .. }) if p == peer => return,
                Some(_) => {}
                None => panic!("event stream ended before ENTER"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("peer not discovered within 30 s");
}

// ------------------------------------------------------------------------------------------------
// Baselines: the zmesh ZMTP transport alone and plain tokio TCP (shared with zmtp-bench, see the
// `zmesh_bench` library).

/// Driver side of the transport baseline.
pub async fn zmtp_driver(args: &Args) -> (ZmtpLink, Child) {
    let inbox = zmtp_link::bind().await;
    let ours = inbox.endpoint().to_string();
    let mut child = spawn_self(args, &["--peer", "zmtp", "--connect", &ours]);
    let theirs = read_announce(&mut child, "ENDPOINT");
    (ZmtpLink::join(inbox, &theirs, 1, Api::TrySend), child)
}

/// Peer side of the transport baseline.
pub async fn zmtp_peer(args: &Args) -> ZmtpLink {
    let inbox = zmtp_link::bind().await;
    println!("ENDPOINT {}", inbox.endpoint());
    ZmtpLink::join(
        inbox,
        args.connect.as_deref().expect("--connect"),
        2,
        Api::TrySend,
    )
}

/// Driver side of the plain-TCP baseline.
pub async fn tcp_driver(args: &Args) -> (TcpLink, Child) {
    let (listener, ours) = tcp_baseline::listen().await;
    let mut child = spawn_self(args, &["--peer", "tcp", "--connect", &ours]);
    let theirs = read_announce(&mut child, "ENDPOINT");
    (TcpLink::join(listener, &theirs).await, child)
}

/// Peer side of the plain-TCP baseline.
pub async fn tcp_peer(args: &Args) -> TcpLink {
    let (listener, ours) = tcp_baseline::listen().await;
    println!("ENDPOINT {ours}");
    TcpLink::join(listener, args.connect.as_deref().expect("--connect")).await
}

// ------------------------------------------------------------------------------------------------
// The scenarios, generic over the link.

/// What one implementation measured in one round.
#[derive(Debug, Clone, Default)]
pub struct LinkResult {
    /// Messages/s for each entry of [`windows`].
    pub msgs_per_s: Vec<f64>,
    /// Round-trip percentiles in microseconds.
    pub rtt: Percentiles,
    /// Scenario 8 (node only): request/reply round trips.
    pub req_rtt: Option<Percentiles>,
    /// Scenario 8 (node only): requests/s with [`PIPELINE`] in flight.
    pub req_per_s: Option<f64>,
    /// Scenario 9 (node only): request-any round trips (same peer, routed).
    pub any_rtt: Option<Percentiles>,
    /// Scenario 9 (node only): request-any/s with [`PIPELINE`] in flight.
    pub any_per_s: Option<f64>,
}

/// Requests in flight in the pipelined request run.
pub const PIPELINE: usize = 64;

/// The event the bench's peer node answers (echo).
const ECHO_EVENT: &str = "bench.echo";

/// Process A, node only: throughput, WHISPER round trips, then (scenario 8) request round trips
/// and pipelined requests against the same peer node; tells the peer when it is done.
pub async fn drive_node(mut link: NodeLink, args: &Args, requests: bool, any: bool) -> LinkResult {
    let mut r = drive_phases(&mut link, args).await;
    if requests || any {
        let (node, peer) = (link.node.clone(), link.peer);
        let fut = request_phases(args, || node.request(peer, ECHO_EVENT, payload64()).send());
        let (rtt, rate) = tokio::time::timeout(SCENARIO_TIMEOUT, fut)
            .await
            .expect("requests timed out");
        r.req_rtt = Some(rtt);
        r.req_per_s = Some(rate);
    }
    if any {
        // The peer's handler is advertised through the control layer: wait until it is known.
        let node = link.node.clone();
        let everyone = zmesh::Filter::Everyone;
        let known = async {
            while node.responders(&everyone, ECHO_EVENT).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(SCENARIO_TIMEOUT, known)
            .await
            .expect("the peer's handler was never advertised");
        let fut = request_phases(args, || {
            let f = node
                .request_any(everyone.clone(), ECHO_EVENT, payload64())
                .send();
            debug_assert_eq!(f.peer(), Some(link.peer));
            f
        });
        let (rtt, rate) = tokio::time::timeout(SCENARIO_TIMEOUT, fut)
            .await
            .expect("requests to any timed out");
        r.any_rtt = Some(rtt);
        r.any_per_s = Some(rate);
    }
    link.send(Bytes::from_static(b"done")).await;
    link.shutdown().await;
    r
}

fn payload64() -> Bytes {
    Bytes::from_static(&[0x5a; 64])
}

/// Sequential request round trips, then pipelined requests with [`PIPELINE`] in flight; `send`
/// sends one request (to the peer, or to any).
async fn request_phases(args: &Args, send: impl Fn() -> zmesh::ReplyFuture) -> (Percentiles, f64) {
    let mut rtts = Vec::with_capacity(args.rtt_count);
    for i in 0..RTT_WARMUP + args.rtt_count {
        let t0 = Instant::now();
        let reply = send().await.expect("bench request failed");
        let dt = t0.elapsed();
        assert_eq!(reply.len(), 64);
        if i >= RTT_WARMUP {
            rtts.push(dt.as_nanos() as u64);
        }
    }
    let n = args.count64 / 4;
    let mut in_flight = std::collections::VecDeque::with_capacity(PIPELINE);
    let t0 = Instant::now();
    for _ in 0..n {
        if in_flight.len() == PIPELINE {
            let f: zmesh::ReplyFuture = in_flight.pop_front().unwrap();
            f.await.expect("pipelined request failed");
        }
        in_flight.push_back(send());
    }
    for f in in_flight {
        f.await.expect("pipelined request failed");
    }
    (
        Percentiles::of_nanos(rtts),
        n as f64 / t0.elapsed().as_secs_f64(),
    )
}

/// Process B, node only: mirror of [`drive_node`] (its handler answers requests meanwhile).
pub async fn serve_node(mut link: NodeLink, args: &Args) {
    serve_phases(&mut link, args).await;
    let done = link.recv().await;
    assert_eq!(&done[..], b"done");
    link.shutdown().await;
}

/// Process A: throughput runs, then round trips.
pub async fn drive<L: Link>(mut link: L, args: &Args) -> LinkResult {
    let r = drive_phases(&mut link, args).await;
    link.shutdown().await;
    r
}

async fn drive_phases<L: Link>(link: &mut L, args: &Args) -> LinkResult {
    hello_driver(&mut *link).await;

    let mut msgs_per_s = Vec::new();
    for w in windows(args) {
        let fut = throughput(&mut *link, w);
        let rate = tokio::time::timeout(SCENARIO_TIMEOUT, fut)
            .await
            .expect("throughput timed out");
        msgs_per_s.push(rate);
    }

    let fut = round_trips(&mut *link, 64, RTT_WARMUP, args.rtt_count);
    let rtts = tokio::time::timeout(SCENARIO_TIMEOUT, fut)
        .await
        .expect("round trips timed out");
    LinkResult {
        msgs_per_s,
        rtt: Percentiles::of_nanos(rtts),
        ..LinkResult::default()
    }
}

/// Windowed one-way throughput, sender side; returns messages/s.
async fn throughput<L: Link>(link: &mut L, w: Window) -> f64 {
    let msg = Bytes::from(vec![0xab; w.size]);
    let t0 = Instant::now();
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < w.count {
        while sent < w.count && sent - acked < w.window {
            link.send(msg.clone()).await;
            sent += 1;
        }
        link.flush().await;
        let ack = link.recv().await;
        acked = u64::from_be_bytes(ack[..8].try_into().unwrap()) as usize;
    }
    w.count as f64 / t0.elapsed().as_secs_f64()
}

/// Process B: mirror of [`drive`].
pub async fn serve<L: Link>(mut link: L, args: &Args) {
    serve_phases(&mut link, args).await;
    link.shutdown().await;
}

async fn serve_phases<L: Link>(link: &mut L, args: &Args) {
    hello_peer(&mut *link).await;
    for w in windows(args) {
        let mut bytes = 0usize;
        for n in 1..=w.count {
            bytes += link.recv().await.len();
            if n.is_multiple_of(w.ack_every) || n == w.count {
                link.send(Bytes::copy_from_slice(&(n as u64).to_be_bytes()))
                    .await;
                link.flush().await;
            }
        }
        assert_eq!(bytes, w.count * w.size, "received a different byte count");
    }
    echo(&mut *link, RTT_WARMUP + args.rtt_count).await;
}
