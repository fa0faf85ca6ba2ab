//! Scenario 11: event-emitter fan-out, one publisher to `--fan-nodes` subscribers (default 20)
//! held by another process, deliveries/s, against SHOUT to a group of the same size (scenario
//! 3's measurement, same round) and NATS pub/sub through a local `nats-server` (one connection
//! per subscriber, in another process).
//!
//! All three are windowed alike: every receiver acks its running count every
//! `fanout::ACK_EVERY` messages (a WHISPER for zmesh, a publish on `fan.ack` for NATS) and the sender
//! keeps at most `fanout::WINDOW` messages ahead of the slowest. zmesh subscribers use
//! `Overflow::BackPressure` (lossless; the publisher's `emit_wait` honours their credit).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use zmesh::{OnOptions, Overflow};

use crate::fanout::{ack_due, announce_and_wait, FanSource, FanWindow, SIZE};

use crate::{
    fmt_num, median, nats, node_builder, read_announce, reap, spawn_self, Args, Row,
    SCENARIO_TIMEOUT,
};

const TOPIC: &str = "fan.x";

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
    let source = FanSource::start(args, port, "emit-src", "emit-fan", |n| {
        n.subscribers(TOPIC).len()
    })
    .await;
    let node = source.node.clone();
    let msg = Bytes::from(vec![0xcd; SIZE]);
    source
        .run(args.fan_count, || {
            let (node, msg) = (node.clone(), msg.clone());
            async move {
                match node.emit(TOPIC, msg.clone()) {
                    Ok(n) => n,
                    // A subscriber's credit is used up: wait for it (acks queue meanwhile).
                    Err(zmesh::Error::Backpressure(_)) => {
                        node.emit_wait(TOPIC, msg).await.expect("emit_wait")
                    }
                    Err(e) => panic!("emit: {e}"),
                }
            }
        })
        .await
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
                if let Some(ack) = ack_due(n, count) {
                    node.whisper(src, ack).expect("ack whisper");
                }
            }
        }));
    }
    announce_and_wait(nodes, tasks).await;
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
    let mut window = FanWindow::new(n, args.fan_count);
    let msg = Bytes::from(vec![0xcd; SIZE]);
    let t0 = Instant::now();
    while let Some(room) = window.room() {
        for _ in 0..room {
            client.publish(TOPIC, msg.clone()).await.expect("publish");
            window.sent();
        }
        client.flush().await.expect("flush");
        let m = acks.next().await.expect("ack stream");
        let i = u16::from_be_bytes([m.payload[0], m.payload[1]]) as usize;
        window.ack(i, &m.payload[2..]);
    }
    let rate = window.rate(t0.elapsed());
    reap(child);
    rate
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
                if let Some(ack) = ack_due(n, count) {
                    let mut b = (i as u16).to_be_bytes().to_vec();
                    b.extend_from_slice(&ack);
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
