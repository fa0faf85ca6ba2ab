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
use std::time::{Duration, Instant};

use bytes::Bytes;
use zmesh::{Event, Uuid};
use zmesh_zmtp::{Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig};

use crate::{
    fmt_num, median, node_builder, read_announce, reap, spawn_self, Args, Row, SCENARIO_TIMEOUT,
};

/// Most messages the shouter may be ahead of the slowest receiver.
const WINDOW: usize = 16_384;
/// Receivers acknowledge every this many messages.
const ACK_EVERY: usize = 2_048;
/// Content size of a SHOUT.
const SIZE: usize = 64;
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

/// Node fan-out, driver side; returns deliveries/s.
pub(crate) async fn node_fanout(args: &Args, port: u16) -> f64 {
    let uuid = Uuid::new_v4();
    let (node, mut events) = node_builder("fan-src", port, Duration::from_millis(100))
        .uuid(uuid)
        .event_capacity(100_000)
        .start()
        .await
        .expect("start shouter");
    let mut child = spawn_self(
        args,
        &[
            "--peer",
            "fan-node",
            "--connect",
            &zmesh::uuid_to_string(&uuid),
            "--beacon-port",
            &port.to_string(),
        ],
    );
    let receivers: Vec<Uuid> = read_announce(&mut child, "READY")
        .split(',')
        .map(|s| zmesh::uuid_from_str(s).expect("receiver uuid"))
        .collect();
    assert_eq!(receivers.len(), args.fan_nodes);
    // Wait until every receiver has entered and joined the group.
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.peers_by_group(GROUP).len() < receivers.len() {
        assert!(
            Instant::now() < deadline,
            "receivers did not all join within 60 s"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
    let index: HashMap<Uuid, usize> = receivers.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let mut acked = vec![0usize; receivers.len()];
    let msg = Bytes::from(vec![0xcd; SIZE]);
    let count = args.fan_count;
    let t0 = Instant::now();
    let mut sent = 0usize;
    loop {
        let slowest = *acked.iter().min().unwrap();
        if slowest >= count {
            break;
        }
        while sent < count && sent - slowest < WINDOW {
            let n = node.shout(GROUP, vec![msg.clone()]).expect("shout");
            assert_eq!(n, receivers.len(), "a receiver was dropped");
            sent += 1;
        }
        match events.recv().await.expect("events ended") {
            Event::Whisper { peer, content, .. } => {
                if let Some(&i) = index.get(&peer) {
                    acked[i] = ack_count(&content[0]);
                }
            }
            Event::Exit { name, .. } => panic!("receiver {name} left during fan-out"),
            _ => {}
        }
    }
    let dt = t0.elapsed();
    assert_eq!(node.stats().dropped_events, 0);
    node.stop().await;
    reap(child);
    (count * receivers.len()) as f64 / dt.as_secs_f64()
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
                        if n.is_multiple_of(ACK_EVERY) || n == count {
                            node.whisper(
                                src,
                                vec![Bytes::copy_from_slice(&(n as u64).to_be_bytes())],
                            )
                            .expect("ack whisper");
                        }
                    }
                    Some(_) => {}
                    None => panic!("receiver event stream ended"),
                }
            }
            assert_eq!(node.stats().dropped_events, 0, "receiver dropped events");
        }));
    }
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
    let mut acked = vec![0usize; receivers];
    let msg = Bytes::from(vec![0xcd; SIZE]);
    let count = args.fan_count;
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
    let mut sent = 0usize;
    loop {
        let slowest = *acked.iter().min().unwrap();
        if slowest >= count {
            break;
        }
        while sent < count && sent - slowest < WINDOW {
            for o in &outboxes {
                o.send(vec![msg.clone()]).await.expect("zmtp send");
            }
            sent += 1;
        }
        // A receiver that has everything closes its ack outbox (its last ack came before): other
        // inbox events are ignored.
        if let InboxEvent::Message { identity, frames } = inbox.recv().await.expect("inbox closed")
        {
            acked[identity[1] as usize] = ack_count(&frames[0]);
        }
    }
    let dt = t0.elapsed();
    for o in outboxes {
        o.close(Some(Duration::from_secs(5))).await;
    }
    reap(child);
    (count * receivers) as f64 / dt.as_secs_f64()
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
                    if n.is_multiple_of(ACK_EVERY) || n == count {
                        outbox
                            .send(vec![Bytes::copy_from_slice(&(n as u64).to_be_bytes())])
                            .await
                            .unwrap();
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
