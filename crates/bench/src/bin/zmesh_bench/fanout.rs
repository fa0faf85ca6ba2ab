//! Scenario 3: SHOUT fan-out. One node in this process shouts to a group of `--fan-nodes` nodes held
//! by another process; deliveries/s = receivers × messages / time until the last receiver has all.
//!
//! Windowed like scenario 1: every receiver whispers its running count back every [`ACK_EVERY`]
//! messages and the shouter keeps at most [`WINDOW`] messages ahead of the slowest receiver (a SHOUT
//! is queued on every receiver's outbox, and a full outbox drops that peer).
//!
//! Baseline: the ZMTP transport alone doing the same fan-out — one outbox per receiver, the same
//! message sent on each, the same window and acks (each receiver acks over its own outbox).

use std::collections::HashMap;
use std::future::Future;
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zmesh::{Event, Events, Node, Uuid};
use zmesh_zmtp::{Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig};

use crate::{
    fmt_num, median, node_builder, read_announce, reap, spawn_self, Args, Row, SCENARIO_TIMEOUT,
};

/// Most messages the sender may be ahead of the slowest receiver (scenarios 3 and 11).
const WINDOW: usize = 16_384;
/// Receivers acknowledge every this many messages.
const ACK_EVERY: usize = 2_048;
/// Content size of a fanned-out message.
pub(crate) const SIZE: usize = 64;
const GROUP: &str = "FAN";

/// Driver: rounds of node fan-out and transport fan-out, interleaved.
pub async fn run(args: &Args, port: u16) -> Vec<Row> {
    let (mut node, mut zmtp) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let n = tokio::time::timeout(SCENARIO_TIMEOUT, node_fanout(args, port))
            .await
            .expect("node fan-out timed out");
        let z = tokio::time::timeout(SCENARIO_TIMEOUT, zmtp_fanout(args))
            .await
            .expect("zmtp fan-out timed out");
        eprintln!(
            "  [3] round {}: SHOUT to {}: {} deliveries/s | ZMTP fan-out {} deliveries/s",
            round + 1,
            args.fan_nodes,
            fmt_num(n),
            fmt_num(z)
        );
        node.push(n);
        zmtp.push(z);
    }
    vec![Row::new(
        3,
        format!("SHOUT 64 B to {} nodes, deliveries/s", args.fan_nodes),
        median(node),
        "ZMTP fan-out",
        Some(median(zmtp)),
    )]
}

fn ack_count(b: &[u8]) -> usize {
    u64::from_be_bytes(b[..8].try_into().expect("8-byte ack")) as usize
}

/// The sender's window, the same for every fan-out of scenarios 3 and 11: at most [`WINDOW`]
/// messages ahead of the slowest receiver's last acknowledged count.
pub(crate) struct FanWindow {
    acked: Vec<usize>,
    sent: usize,
    count: usize,
}

impl FanWindow {
    pub(crate) fn new(receivers: usize, count: usize) -> FanWindow {
        FanWindow {
            acked: vec![0; receivers],
            sent: 0,
            count,
        }
    }

    /// How many messages may be sent now (possibly 0: wait for an ack), or `None` once every
    /// receiver has acknowledged all of them.
    pub(crate) fn room(&self) -> Option<usize> {
        let slowest = *self.acked.iter().min().expect("at least one receiver");
        (slowest < self.count).then(|| (self.count - self.sent).min(WINDOW - (self.sent - slowest)))
    }

    pub(crate) fn sent(&mut self) {
        self.sent += 1;
    }

    /// Receiver `i` acknowledged: `ack` is its running count (8 bytes, big-endian).
    pub(crate) fn ack(&mut self, i: usize, ack: &[u8]) {
        self.acked[i] = ack_count(ack);
    }

    /// Deliveries per second after `dt`.
    pub(crate) fn rate(&self, dt: Duration) -> f64 {
        (self.count * self.acked.len()) as f64 / dt.as_secs_f64()
    }
}

/// A receiver's acknowledgement after its `n`-th message of `count`, when one is due.
pub(crate) fn ack_due(n: usize, count: usize) -> Option<Bytes> {
    (n.is_multiple_of(ACK_EVERY) || n == count)
        .then(|| Bytes::copy_from_slice(&(n as u64).to_be_bytes()))
}

/// The driver side of a node fan-out before the timed part: the sending node, the receivers'
/// process (`--peer ROLE`) and their UUIDs, once `ready` counts every receiver (joined the group,
/// subscribed).
pub(crate) struct FanSource {
    pub(crate) node: Node,
    events: Events,
    child: Child,
    pub(crate) receivers: Vec<Uuid>,
    index: HashMap<Uuid, usize>,
}

impl FanSource {
    pub(crate) async fn start(
        args: &Args,
        port: u16,
        name: &str,
        role: &str,
        ready: impl Fn(&Node) -> usize,
    ) -> FanSource {
        let uuid = Uuid::new_v4();
        let (node, mut events) = node_builder(name, port, Duration::from_millis(100))
            .uuid(uuid)
            .event_capacity(100_000)
            .start()
            .await
            .expect("start the sending node");
        let child = spawn_self(
            args,
            &[
                "--peer",
                role,
                "--connect",
                &zmesh::uuid_to_string(&uuid),
                "--beacon-port",
                &port.to_string(),
            ],
        );
        let mut child = child;
        let receivers: Vec<Uuid> = read_announce(&mut child, "READY")
            .split(',')
            .map(|s| zmesh::uuid_from_str(s).expect("receiver uuid"))
            .collect();
        assert_eq!(receivers.len(), args.fan_nodes);
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready(&node) < receivers.len() {
            assert!(
                Instant::now() < deadline,
                "receivers not all ready within 60 s"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
        }
        let index = receivers.iter().enumerate().map(|(i, u)| (*u, i)).collect();
        FanSource {
            node,
            events,
            child,
            receivers,
            index,
        }
    }

    /// The timed part: `send` queues one message to every receiver (returning how many it
    /// reached), windowed by the receivers' acks; returns deliveries/s.
    pub(crate) async fn run<F, Fut>(mut self, count: usize, mut send: F) -> f64
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = usize>,
    {
        let mut window = FanWindow::new(self.receivers.len(), count);
        let t0 = Instant::now();
        while let Some(room) = window.room() {
            for _ in 0..room {
                assert_eq!(send().await, self.receivers.len(), "a receiver was lost");
                window.sent();
            }
            match self.events.recv().await.expect("events ended") {
                Event::Whisper { peer, content, .. } => {
                    if let Some(&i) = self.index.get(&peer) {
                        window.ack(i, &content[0]);
                    }
                }
                Event::Exit { name, .. } => panic!("receiver {name} left during fan-out"),
                _ => {}
            }
        }
        let rate = window.rate(t0.elapsed());
        assert_eq!(self.node.stats().dropped_events, 0);
        self.node.stop().await;
        reap(self.child);
        rate
    }
}

/// Receiver side: prints the nodes' UUIDs for the driver, waits for every receiver task, stops
/// the nodes.
pub(crate) async fn announce_and_wait(nodes: Vec<Node>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    let ids: Vec<String> = nodes.iter().map(|n| n.uuid_string()).collect();
    println!("READY {}", ids.join(","));
    for t in tasks {
        t.await.expect("receiver task");
    }
    let stops: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(async move { n.stop().await }))
        .collect();
    for s in stops {
        let _ = s.await;
    }
}

/// Node fan-out, driver side; returns deliveries/s.
pub(crate) async fn node_fanout(args: &Args, port: u16) -> f64 {
    let source = FanSource::start(args, port, "fan-src", "fan-node", |n| {
        n.peers_by_group(GROUP).len()
    })
    .await;
    let node = source.node.clone();
    let msg = Bytes::from(vec![0xcd; SIZE]);
    source
        .run(args.fan_count, || {
            let n = node.shout(GROUP, vec![msg.clone()]).expect("shout");
            std::future::ready(n)
        })
        .await
}

/// Peer process: `--fan-nodes` nodes in group FAN, each acking to the shouter.
pub async fn node_receivers(args: &Args) {
    let port = args.beacon_port.expect("--beacon-port");
    let src = zmesh::uuid_from_str(args.connect.as_deref().expect("--connect")).expect("uuid");
    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.fan_nodes {
        let (node, mut events) =
            node_builder(&format!("fan-{i}"), port, Duration::from_millis(100))
                .event_capacity(100_000)
                .start()
                .await
                .expect("start receiver");
        node.join(GROUP).unwrap();
        nodes.push(node.clone());
        let count = args.fan_count;
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while n < count {
                match events.recv().await {
                    Some(Event::Shout { content, .. }) => {
                        assert_eq!(content[0].len(), SIZE);
                        n += 1;
                        if let Some(ack) = ack_due(n, count) {
                            node.whisper(src, ack).expect("ack whisper");
                        }
                    }
                    Some(_) => {}
                    None => panic!("receiver event stream ended"),
                }
            }
            assert_eq!(node.stats().dropped_events, 0, "receiver dropped events");
        }));
    }
    announce_and_wait(nodes, tasks).await;
}

/// Identity `0x01, tag, 0 × 15`.
fn identity(tag: usize) -> Bytes {
    let mut id = vec![0u8; 17];
    id[0] = 1;
    id[1] = tag as u8;
    Bytes::from(id)
}

/// Transport fan-out, driver side; returns deliveries/s.
async fn zmtp_fanout(args: &Args) -> f64 {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let ours = inbox.endpoint().to_string();
    let mut child = spawn_self(args, &["--peer", "fan-zmtp", "--connect", &ours]);
    let outboxes: Vec<Outbox> = read_announce(&mut child, "ENDPOINTS")
        .split(',')
        .map(|ep| Outbox::connect(ep, identity(200), OutboxConfig::default()).unwrap())
        .collect();
    let receivers = outboxes.len();
    let mut window = FanWindow::new(receivers, args.fan_count);
    let msg = Bytes::from(vec![0xcd; SIZE]);
    // Hello round: every receiver acks 0 once connected both ways.
    for o in &outboxes {
        o.send(vec![Bytes::from_static(b"hello")]).await.unwrap();
    }
    let mut hellos = 0;
    while hellos < receivers {
        if let Some(InboxEvent::Message { .. }) = inbox.recv().await {
            hellos += 1;
        }
    }
    let t0 = Instant::now();
    while let Some(room) = window.room() {
        for _ in 0..room {
            for o in &outboxes {
                o.send(vec![msg.clone()]).await.expect("zmtp send");
            }
            window.sent();
        }
        // A receiver that has everything closes its ack outbox (its last ack came before): other
        // inbox events are ignored.
        if let InboxEvent::Message { identity, frames } = inbox.recv().await.expect("inbox closed")
        {
            window.ack(identity[1] as usize, &frames[0]);
        }
    }
    let rate = window.rate(t0.elapsed());
    for o in outboxes {
        o.close(Some(Duration::from_secs(5))).await;
    }
    reap(child);
    rate
}

/// Peer process: `--fan-nodes` inboxes, each acking over its own outbox to the driver's inbox.
pub async fn zmtp_receivers(args: &Args) {
    let connect = args.connect.clone().expect("--connect");
    let mut endpoints = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.fan_nodes {
        let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
            .await
            .unwrap();
        endpoints.push(inbox.endpoint().to_string());
        let outbox = Outbox::connect(&connect, identity(i), OutboxConfig::default()).unwrap();
        let count = args.fan_count;
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut hello = false;
            while n < count {
                if let InboxEvent::Message { frames, .. } = inbox.recv().await.expect("inbox") {
                    if !hello {
                        hello = true;
                        outbox.send(vec![Bytes::from(vec![0u8; 8])]).await.unwrap();
                        continue;
                    }
                    assert_eq!(frames[0].len(), SIZE);
                    n += 1;
                    if let Some(ack) = ack_due(n, count) {
                        outbox.send(vec![ack]).await.unwrap();
                    }
                }
            }
            outbox.close(Some(Duration::from_secs(5))).await;
        }));
    }
    println!("ENDPOINTS {}", endpoints.join(","));
    for t in tasks {
        t.await.expect("receiver task");
    }
}
