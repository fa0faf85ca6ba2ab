//! Scenario 12: named-service calls, in the mesh and through one broker, against NATS
//! queue-group requests through a local `nats-server` (scenario 10's server and responder),
//! same rounds.
//!
//! A worker process (this binary, `--peer svc-worker`) offers `bench.echo` and answers at once;
//! it beacons on the scenario's port (so the driver's mesh client finds it directly) and is
//! configured with the driver's broker (fixed endpoint on 127.0.0.1). In the driver process: a
//! mesh client on the same beacon port calling directly (`Via::Direct`), a broker (no beacon)
//! and a brokered client (no beacon, configured with the broker, `Via::Brokers`). For each path:
//! sequential round trips (median, p99) and pipelined calls/s (64 in flight). A brokered call
//! crosses two hops each way, like every NATS request.

use std::collections::VecDeque;
use std::io::BufRead;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zmesh::{Node, Via};

use crate::link::PIPELINE;
use crate::{fmt_num, median, node_builder, spawn_self, Args, Percentiles, Row, SCENARIO_TIMEOUT};

const SERVICE: &str = "bench.echo";
const WARMUP: usize = 2_000;

/// One path's figures in one round.
#[derive(Debug, Clone, Copy)]
struct PathResult {
    rtt: Percentiles,
    per_s: f64,
}

/// The worker process: offer the service, answer at once, until killed.
pub async fn worker_peer(args: &Args) {
    let port = args.beacon_port.expect("--beacon-port");
    let broker = args.connect.clone().expect("--connect broker endpoint");
    let (node, mut events) = node_builder("svc-worker", port, Duration::from_millis(100))
        .brokers(&[broker])
        .expect("broker endpoint")
        .start()
        .await
        .expect("worker node");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut calls = node.offer(SERVICE).expect("offer");
    println!("ready {}", node.uuid_string());
    while let Some(call) = calls.recv().await {
        let p = call.payload().clone();
        let _ = call.reply(p);
    }
}

async fn wait_path(node: &Node, broker: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = node.services().iter().any(|e| {
            e.service == SERVICE
                && if broker {
                    !e.brokers.is_empty()
                } else {
                    !e.workers.is_empty()
                }
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "scenario 12: no path (broker {broker})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(node: &Node, via: Via, args: &Args) -> PathResult {
    let payload = Bytes::from_static(&[0x5a; 64]);
    let mut rtts = Vec::with_capacity(args.rtt_count);
    for i in 0..WARMUP + args.rtt_count {
        let t0 = Instant::now();
        let r = node
            .call(SERVICE, payload.clone())
            .via(via)
            .await
            .expect("service call failed");
        assert_eq!(r.payload.len(), 64);
        if i >= WARMUP {
            rtts.push(t0.elapsed().as_nanos() as u64);
        }
    }
    let n = args.count64 / 4;
    let mut in_flight = VecDeque::with_capacity(PIPELINE);
    let t0 = Instant::now();
    for _ in 0..n {
        if in_flight.len() == PIPELINE {
            let f: zmesh::CallFuture = in_flight.pop_front().unwrap();
            f.await.expect("pipelined call failed");
        }
        in_flight.push_back(node.call(SERVICE, payload.clone()).via(via).send());
    }
    for f in in_flight {
        f.await.expect("pipelined call failed");
    }
    PathResult {
        rtt: Percentiles::of_nanos(rtts),
        per_s: n as f64 / t0.elapsed().as_secs_f64(),
    }
}

/// One round of both paths.
async fn round(args: &Args, port: u16) -> (PathResult, PathResult) {
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let (broker, mut be) = node_builder("svc-broker", port, Duration::from_millis(100))
        .beacons(false)
        .broker_at(&endpoint)
        .expect("broker endpoint")
        .start()
        .await
        .expect("broker");
    tokio::spawn(async move { while be.recv().await.is_some() {} });
    let (direct, mut de) = node_builder("svc-direct", port, Duration::from_millis(100))
        .start()
        .await
        .expect("direct client");
    tokio::spawn(async move { while de.recv().await.is_some() {} });
    let (brokered, mut ce) = node_builder("svc-brokered", port, Duration::from_millis(100))
        .beacons(false)
        .brokers(std::slice::from_ref(&endpoint))
        .expect("broker endpoint")
        .start()
        .await
        .expect("brokered client");
    tokio::spawn(async move { while ce.recv().await.is_some() {} });
    let mut peer = spawn_self(
        args,
        &[
            "--peer",
            "svc-worker",
            "--beacon-port",
            &port.to_string(),
            "--connect",
            &endpoint,
        ],
    );
    let mut line = String::new();
    let stdout = peer.stdout.take().expect("peer stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("worker ready line");
    assert!(line.starts_with("ready"), "worker: {line:?}");
    let run = async {
        wait_path(&direct, false).await;
        wait_path(&brokered, true).await;
        let d = measure(&direct, Via::Direct, args).await;
        let b = measure(&brokered, Via::Brokers, args).await;
        (d, b)
    };
    let r = tokio::time::timeout(SCENARIO_TIMEOUT, run)
        .await
        .expect("scenario 12 timed out");
    let _ = peer.kill();
    let _ = peer.wait();
    for n in [direct, brokered, broker] {
        n.stop().await;
    }
    r
}

/// Scenario 12 (module docs): rounds of both paths and of NATS, interleaved.
pub async fn run(args: &Args, port: u16) -> Vec<Row> {
    let mut direct = Vec::new();
    let mut brokered = Vec::new();
    let mut nats_rounds = Vec::new();
    for r in 0..args.rounds {
        let (d, b) = round(args, port).await;
        let n = crate::nats::round(args).await;
        eprintln!(
            "  [12]  round {}: direct rtt p50 {:.1} us, {} calls/s | broker rtt p50 {:.1} us, {} calls/s | NATS queue rtt p50 {:.1} us, {} req/s",
            r + 1,
            d.rtt.p50,
            fmt_num(d.per_s),
            b.rtt.p50,
            fmt_num(b.per_s),
            n.queue_rtt.p50,
            fmt_num(n.queue_per_s)
        );
        direct.push(d);
        brokered.push(b);
        nats_rounds.push(n);
    }
    let m = |v: &[PathResult], f: fn(&PathResult) -> f64| median(v.iter().map(f).collect());
    let nq_rtt = median(nats_rounds.iter().map(|n| n.queue_rtt.p50).collect());
    let nq_rate = median(nats_rounds.iter().map(|n| n.queue_per_s).collect());
    let (d_rtt, b_rtt) = (m(&direct, |r| r.rtt.p50), m(&brokered, |r| r.rtt.p50));
    let (d_rate, b_rate) = (m(&direct, |r| r.per_s), m(&brokered, |r| r.per_s));
    vec![
        Row::new(
            12,
            "service call in the mesh, round trip median us (64 B)",
            d_rtt,
            "NATS queue group",
            Some(nq_rtt),
        )
        .target("<= 0.5x NATS", d_rtt <= 0.5 * nq_rtt),
        Row::new(
            12,
            "service call through a broker, round trip median us (64 B)",
            b_rtt,
            "NATS queue group",
            Some(nq_rtt),
        )
        .target("<= NATS", b_rtt <= nq_rtt),
        Row::new(
            12,
            format!("pipelined service calls/s in the mesh ({PIPELINE} in flight)"),
            d_rate,
            "NATS queue group",
            Some(nq_rate),
        )
        .target(">= 2x NATS", d_rate >= 2.0 * nq_rate),
        Row::new(
            12,
            format!("pipelined service calls/s through a broker ({PIPELINE} in flight)"),
            b_rate,
            "NATS queue group",
            Some(nq_rate),
        )
        .target(">= NATS", b_rate >= nq_rate),
        Row::new(
            12,
            "service call round trip p99 us, mesh / broker",
            m(&direct, |r| r.rtt.p99),
            "through a broker",
            Some(m(&brokered, |r| r.rtt.p99)),
        ),
    ]
}
