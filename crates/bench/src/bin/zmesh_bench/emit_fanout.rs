//! Scenario 11: event-emitter fan-out, one publisher to `--fan-nodes` subscribers (default 20)
//! held by another process, deliveries/s, against SHOUT to a group of the same size (scenario
//! 3's measurement, same round) and NATS pub/sub through a local `nats-server` (one connection
//! per subscriber, in another process).
//!
//! All three are windowed alike: every receiver acks its running count every
//! [`ACK_EVERY`] messages (a WHISPER for zmesh, a publish on `fan.ack` for NATS) and the sender
//! keeps at most [`WINDOW`] messages ahead of the slowest. zmesh subscribers use
//! `Overflow::BackPressure` (lossless; the publisher's `emit_wait` honours their credit).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use zmesh::{Event, OnOptions, Overflow, Uuid};

use crate::{
    fmt_num, median, nats, node_builder, read_announce, reap, spawn_self, Args, Row,
    SCENARIO_TIMEOUT,
};

const WINDOW: usize = 16_384;
const ACK_EVERY: usize = 2_048;
const SIZE: usize = 64;
const TOPIC: &str = "fan.x";

fn ack_count(b: &[u8]) -> usize {
    u64::from_be_bytes(b[..8].try_into().expect("8-byte ack")) as usize
}

/// Rounds of emitter fan-out, SHOUT fan-out and NATS fan-out, interleaved.
pub async fn run(args: &Args, port: u16) -> Vec<Row> {
    let (mut emit, mut shout, mut natsv) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let e = tokio::time::timeout(SCENARIO_TIMEOUT, emitter_fanout(args, port))
            .await
            .expect("emitter fan-out timed out");
        let s = tokio::time::timeout(SCENARIO_TIMEOUT, crate::fanout::node_fanout(args, port))
            .await
            .expect("SHOUT fan-out timed out");
        let n = tokio::time::timeout(SCENARIO_TIMEOUT, nats_fanout(args))
            .await
            .expect("NATS fan-out timed out");
        eprintln!(
            "  [11] round {}: emit to {}: {} deliveries/s | SHOUT {} | NATS pub/sub {}",
            round + 1,
            args.fan_nodes,
            fmt_num(e),
            fmt_num(s),
            fmt_num(n)
        );
        emit.push(e);
        shout.push(s);
        natsv.push(n);
    }
    let e = median(emit);
    vec![
        Row::new(
            11,
            format!("emit 64 B to {} subscribers, deliveries/s", args.fan_nodes),
            e,
            "SHOUT to a group of as many",
            Some(median(shout)),
        ),
        Row::new(
            11,
            format!("emit 64 B to {} subscribers, deliveries/s", args.fan_nodes),
            e,
            "NATS pub/sub (nats-server)",
            Some(median(natsv)),
        ),
    ]
}

/// Emitter fan-out, driver side; returns deliveries/s.
async fn emitter_fanout(args: &Args, port: u16) -> f64 {
    let uuid = Uuid::new_v4();
    let (node, mut events) = node_builder("emit-src", port, Duration::from_millis(100))
        .uuid(uuid)
        .event_capacity(100_000)
        .start()
        .await
        .expect("start publisher");
    let mut child = spawn_self(
        args,
        &[
            "--peer",
            "emit-fan",
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.subscribers(TOPIC).len() < receivers.len() {
        assert!(
            Instant::now() < deadline,
            "subscribers not all known within 60 s"
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
            match node.emit(TOPIC, msg.clone()) {
                Ok(n) => {
                    assert_eq!(n, receivers.len(), "a subscriber was lost");
                    sent += 1;
                }
                // A subscriber's credit is used up: wait for it (acks queue meanwhile).
                Err(zmesh::Error::Backpressure(_)) => {
                    let n = node.emit_wait(TOPIC, msg.clone()).await.expect("emit_wait");
                    assert_eq!(n, receivers.len(), "a subscriber was lost");
                    sent += 1;
                }
                Err(e) => panic!("emit: {e}"),
            }
        }
        match events.recv().await.expect("events ended") {
            Event::Whisper { peer, content, .. } => {
                if let Some(&i) = index.get(&peer) {
                    acked[i] = ack_count(&content[0]);
                }
            }
            Event::Exit { name, .. } => panic!("subscriber {name} left during fan-out"),
            _ => {}
        }
    }
    let dt = t0.elapsed();
    node.stop().await;
    reap(child);
    (count * receivers.len()) as f64 / dt.as_secs_f64()
}

/// Peer process: `--fan-nodes` nodes subscribed to `fan.*` (back-pressure), each acking.
pub async fn emit_receivers(args: &Args) {
    let port = args.beacon_port.expect("--beacon-port");
    let src = zmesh::uuid_from_str(args.connect.as_deref().expect("--connect")).expect("uuid");
    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.fan_nodes {
        let (node, mut events) =
            node_builder(&format!("sub-{i}"), port, Duration::from_millis(100))
                .start()
                .await
                .expect("start subscriber");
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let options = OnOptions {
            overflow: Overflow::BackPressure,
            ..OnOptions::default()
        };
        let mut on = node.on_with("fan.*", options).expect("subscribe");
        nodes.push(node.clone());
        let count = args.fan_count;
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while n < count {
                let ev = on.recv().await.expect("subscription ended");
                assert_eq!(ev.payload.len(), SIZE);
                n += 1;
                if n.is_multiple_of(ACK_EVERY) || n == count {
                    node.whisper(src, vec![Bytes::copy_from_slice(&(n as u64).to_be_bytes())])
                        .expect("ack whisper");
                }
            }
        }));
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.uuid_string()).collect();
    println!("READY {}", ids.join(","));
    for t in tasks {
        t.await.expect("subscriber task");
    }
    for n in nodes {
        n.stop().await;
    }
}

/// NATS fan-out, driver side; returns deliveries/s.
async fn nats_fanout(args: &Args) -> f64 {
    let (_server, url) = nats::start_server().await;
    let client = async_nats::connect(&url)
        .await
        .expect("connect to nats-server");
    let mut acks = client.subscribe("fan.ack").await.expect("subscribe acks");
    client.flush().await.expect("flush");
    let mut child = spawn_self(args, &["--peer", "nats-fan", "--connect", &url]);
    let n = read_announce(&mut child, "READY")
        .parse::<usize>()
        .expect("count");
    let mut acked = vec![0usize; n];
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
            client.publish(TOPIC, msg.clone()).await.expect("publish");
            sent += 1;
        }
        client.flush().await.expect("flush");
        let m = acks.next().await.expect("ack stream");
        let i = u16::from_be_bytes([m.payload[0], m.payload[1]]) as usize;
        acked[i] = ack_count(&m.payload[2..]);
    }
    let dt = t0.elapsed();
    reap(child);
    (count * n) as f64 / dt.as_secs_f64()
}

/// Peer process: `--fan-nodes` NATS connections subscribed to `fan.*`, each acking.
pub async fn nats_receivers(args: &Args) {
    let url = args.connect.clone().expect("--connect URL");
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for i in 0..args.fan_nodes {
        let client = async_nats::connect(&url).await.expect("connect");
        let mut sub = client.subscribe("fan.*").await.expect("subscribe");
        client.flush().await.expect("flush");
        ready.push(client.clone());
        let count = args.fan_count;
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while n < count {
                let m = sub.next().await.expect("subscription");
                if m.subject.as_str() != TOPIC {
                    continue;
                }
                n += 1;
                if n.is_multiple_of(ACK_EVERY) || n == count {
                    let mut b = (i as u16).to_be_bytes().to_vec();
                    b.extend_from_slice(&(n as u64).to_be_bytes());
                    client.publish("fan.ack", b.into()).await.expect("ack");
                    client.flush().await.expect("flush");
                }
            }
        }));
    }
    println!("READY {}", args.fan_nodes);
    for t in tasks {
        t.await.expect("subscriber task");
    }
}
