//! Scenario 10: the NATS baselines of request/reply — a local `nats-server` (Debian package
//! `nats-server`, started here on 127.0.0.1 and stopped after the round) and the `async-nats`
//! client: a responder process (this binary, `--peer nats-echo`) answers on a plain subject and
//! as the only member of a queue group; the driver measures sequential round trips and
//! pipelined requests (64 in flight) for both, as scenarios 8 and 9 do for zmesh. Every message
//! crosses the broker (two hops), which is what the zmesh figures are compared with.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::link::PIPELINE;
use crate::{spawn_self, Args, Percentiles, SCENARIO_TIMEOUT};

const PLAIN: &str = "bench.echo";
const QUEUE: &str = "bench.q";
const WARMUP: usize = 2_000;

/// One round's figures.
#[derive(Debug, Clone, Copy)]
pub struct NatsResult {
    /// Plain request/reply round trips.
    pub req_rtt: Percentiles,
    /// Plain requests/s, pipelined.
    pub req_per_s: f64,
    /// Queue-group request round trips.
    pub queue_rtt: Percentiles,
    /// Queue-group requests/s, pipelined.
    pub queue_per_s: f64,
}

/// A `nats-server` on loopback, killed (our own child, by pid) when dropped.
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub(crate) async fn start_server() -> (Server, String) {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server not installed (scripts/install-test-deps.sh installs it)");
    let server = Server(child);
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, url)
}

/// The responder process: echo on the plain subject and in the queue group, until killed.
pub async fn echo_peer(args: &Args) {
    let url = args.connect.clone().expect("--connect URL");
    let client = async_nats::connect(&url)
        .await
        .expect("connect to nats-server");
    let mut plain = client.subscribe(PLAIN).await.expect("subscribe");
    let mut queue = client
        .queue_subscribe(QUEUE, "workers".into())
        .await
        .expect("queue subscribe");
    client.flush().await.expect("flush");
    println!("ready");
    loop {
        let msg = tokio::select! {
            m = plain.next() => m,
            m = queue.next() => m,
        };
        let Some(msg) = msg else { return };
        if let Some(reply) = msg.reply {
            let _ = client.publish(reply, msg.payload).await;
        }
    }
}

async fn phases(
    client: &async_nats::Client,
    subject: &'static str,
    args: &Args,
) -> (Percentiles, f64) {
    let payload = Bytes::from_static(&[0x5a; 64]);
    let mut rtts = Vec::with_capacity(args.rtt_count);
    for i in 0..WARMUP + args.rtt_count {
        let t0 = Instant::now();
        let reply = client
            .request(subject, payload.clone())
            .await
            .expect("NATS request failed");
        assert_eq!(reply.payload.len(), 64);
        if i >= WARMUP {
            rtts.push(t0.elapsed().as_nanos() as u64);
        }
    }
    let n = args.count64 / 4;
    type Pending = tokio::task::JoinHandle<Result<async_nats::Message, async_nats::RequestError>>;
    let mut in_flight: VecDeque<Pending> = VecDeque::with_capacity(PIPELINE);
    let t0 = Instant::now();
    for _ in 0..n {
        if in_flight.len() == PIPELINE {
            let h = in_flight.pop_front().unwrap();
            h.await.unwrap().expect("pipelined NATS request failed");
        }
        let c = client.clone();
        let p = payload.clone();
        in_flight.push_back(tokio::spawn(async move { c.request(subject, p).await }));
    }
    for h in in_flight {
        h.await.unwrap().expect("pipelined NATS request failed");
    }
    (
        Percentiles::of_nanos(rtts),
        n as f64 / t0.elapsed().as_secs_f64(),
    )
}

/// One round: server up, responder up, both measurements, everything stopped.
pub async fn round(args: &Args) -> NatsResult {
    let (_server, url) = start_server().await;
    let mut peer = spawn_self(args, &["--peer", "nats-echo", "--connect", &url]);
    let mut line = String::new();
    let stdout = peer.stdout.take().expect("peer stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("read the responder's ready line");
    assert_eq!(line.trim(), "ready", "NATS responder: {line:?}");
    let client = async_nats::connect(&url)
        .await
        .expect("connect to nats-server");
    let run = async {
        let (req_rtt, req_per_s) = phases(&client, PLAIN, args).await;
        let (queue_rtt, queue_per_s) = phases(&client, QUEUE, args).await;
        NatsResult {
            req_rtt,
            req_per_s,
            queue_rtt,
            queue_per_s,
        }
    };
    let r = tokio::time::timeout(SCENARIO_TIMEOUT, run)
        .await
        .expect("NATS phases timed out");
    let _ = peer.kill();
    let _ = peer.wait();
    r
}
