//! Hostile and broken peers against a real node, on loopback, in one process.
//!
//! * peers that connect and say nothing, and peers that trickle their greeting byte by byte;
//! * thousands of garbage connections (random bytes, bare connects, a greeting then garbage, a
//!   ROUTER-incompatible socket type);
//! * a peer that completes the handshake and then never reads: the node's outbox to it fills up to
//!   its configured bound, the peer is dropped with EXIT, and a good peer keeps its throughput;
//! * a peer that floods WHISPERs: another node still gets timely answers.
//!
//! In every case the node keeps serving the honest peers, and that is what is asserted; the figures
//! (throughput, latency, memory) are printed for the record (`--nocapture` shows them).
//!
//! The raw peers are built from the transport crate (`zmesh_zmtp::Outbox`/`Inbox`) or, where the point
//! is to misbehave below ZMTP, from plain TCP sockets writing hand-made ZMTP bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use zmesh::{Event, Events, Node, Uuid};
use zmesh_zmtp::{
    encode_frame, Command, Greeting, Inbox, InboxConfig, Metadata, Outbox, OutboxConfig,
};
use zmesh_zre::ZreMessage;

mod loopback;
use loopback::{builder, is_enter, is_exit, pair, port, wait_for, WAIT};

fn addr_of(node: &Node) -> std::net::SocketAddr {
    zmesh::endpoint_addr(&node.endpoint().unwrap()).unwrap()
}

fn identity(uuid: Uuid) -> Bytes {
    let mut id = vec![1u8];
    id.extend_from_slice(uuid.as_bytes());
    Bytes::from(id)
}

fn hello(endpoint: &str, name: &str) -> ZreMessage {
    ZreMessage::Hello {
        endpoint: endpoint.into(),
        groups: vec![],
        status: 0,
        name: name.into(),
        headers: vec![],
    }
}

/// The bytes a ZMTP 3.1 NULL peer of `socket_type` sends first: greeting, then READY.
fn zmtp_opening(socket_type: &str, identity: Option<Bytes>) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&Greeting::new("NULL", false).encode());
    let mut md = Metadata::new().with("Socket-Type", Bytes::from(socket_type.to_string()));
    if let Some(id) = identity {
        md = md.with("Identity", id);
    }
    encode_frame(false, true, &Command::Ready(md).encode(), &mut out);
    out.to_vec()
}

/// One ZRE message as ZMTP frames on the wire.
fn zmtp_message(msg: &ZreMessage, sequence: u16) -> Vec<u8> {
    let frames = msg.encode(sequence).unwrap();
    let mut out = BytesMut::new();
    for (i, f) in frames.iter().enumerate() {
        encode_frame(i + 1 < frames.len(), false, f, &mut out);
    }
    out.to_vec()
}

/// TCP sockets of this network namespace on local port `port` that are neither listening nor in
/// TIME_WAIT (from /proc/net/tcp). A connection the node failed to close would linger here in
/// CLOSE_WAIT. Unlike a count of our own fds, this is not disturbed by tests running in parallel.
fn live_sockets_on(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 {
                continue;
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 06 = TIME_WAIT, 0A = LISTEN.
            if local_port == Some(port) && cols[3] != "06" && cols[3] != "0A" {
                n += 1;
            }
        }
    }
    n
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Counts WHISPERs `node` receives from `from` and keeps the latest delivery times, in a task, so the
/// test can measure throughput and latency without holding the event stream. Other events go to
/// `other` (for EXIT checks).
struct Receiver {
    count: Arc<AtomicU64>,
    others: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

fn spawn_receiver(mut events: Events, from: Uuid) -> Receiver {
    let count = Arc::new(AtomicU64::new(0));
    let (tx, others) = tokio::sync::mpsc::unbounded_channel();
    let c = count.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match &ev {
                Event::Whisper { peer, .. } if *peer == from => {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    let _ = tx.send(ev);
                }
            }
        }
    });
    Receiver { count, others }
}

/// Whispers `n` messages of `size` bytes from `a` to `b` (at most `window` unreceived at a time, so
/// a small outbox limit is respected) and returns messages per second, delivery included.
async fn throughput(a: &Node, b: Uuid, rx: &Receiver, n: u64, size: usize, window: u64) -> f64 {
    let payload = Bytes::from(vec![0x5a; size]);
    let start_count = rx.count.load(Ordering::Relaxed);
    let t = Instant::now();
    let deadline = t + WAIT * 3;
    let mut sent = 0;
    while sent < n {
        let received = rx.count.load(Ordering::Relaxed) - start_count;
        if sent - received < window {
            a.whisper(b, vec![payload.clone()])
                .expect("whisper to the good peer");
            sent += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "good peer stalled: {received}/{sent}"
            );
            tokio::task::yield_now().await;
        }
    }
    while rx.count.load(Ordering::Relaxed) - start_count < n {
        assert!(Instant::now() < deadline, "good peer stalled at the end");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Waits until `f(stats)` holds, polling.
async fn wait_stats(
    node: &Node,
    what: &str,
    within: Duration,
    f: impl Fn(&zmesh::NodeStats) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let s = node.stats();
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delivery latency of `count` whispers b -> a, one at a time; returns (median, max).
async fn whisper_latency(
    a_events: &mut Events,
    b: &Node,
    a: Uuid,
    count: usize,
) -> (Duration, Duration) {
    let mut lat = Vec::new();
    for i in 0..count {
        let tag = format!("probe-{i}");
        let t = Instant::now();
        b.whisper(a, vec![Bytes::from(tag.clone())]).unwrap();
        wait_for(
            a_events,
            "probe whisper",
            |e| matches!(e, Event::Whisper { content, .. } if content[0] == tag.as_bytes()),
        )
        .await;
        lat.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat.sort();
    (lat[lat.len() / 2], *lat.last().unwrap())
}

// ---- silent and trickling peers ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_peers_do_not_block_anyone() {
    let ((a, mut ea), (b, _eb)) = pair(port()).await;
    let addr = addr_of(&a);
    let (base_med, base_max) = whisper_latency(&mut ea, &b, a.uuid(), 10).await;
    let failures0 = a.stats().handshake_failures;

    // 100 peers that connect and never send a byte.
    const SILENT: usize = 100;
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // A well-formed peer that trickles greeting, READY and HELLO one byte every 5 ms: it must be
    // accepted (fragmented reads are fine), and enter.
    let slow_uuid = Uuid::new_v4();
    let mut bytes = zmtp_opening("DEALER", Some(identity(slow_uuid)));
    bytes.extend(zmtp_message(&hello("tcp://127.0.0.1:9", "trickler"), 1));
    let trickle_len = bytes.len();
    let trickler = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for byte in bytes {
            s.write_all(&[byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s // keep the connection open
    });
    // A slow-loris: one greeting byte per 500 ms never finishes within the handshake timeout.
    let loris = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let greeting = Greeting::new("NULL", false).encode();
        let t = Instant::now();
        for byte in greeting {
            if s.write_all(&[byte]).await.is_err() {
                return Some(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    });

    // Meanwhile the honest peer is served as before.
    let (busy_med, busy_max) = whisper_latency(&mut ea, &b, a.uuid(), 10).await;
    wait_for(&mut ea, "trickler enters", |e| is_enter(e, slow_uuid)).await;
    let _trickled = trickler.await.unwrap();

    // The silent ones and the slow-loris are cut at the inbox handshake timeout (10 s by default;
    // NodeBuilder has no setter for it).
    wait_stats(&a, "silent peers dropped", Duration::from_secs(16), |s| {
        // the silent ones plus the slow-loris
        s.handshake_failures > failures0 + SILENT as u64
    })
    .await;
    for mut s in silent {
        // The node sent its greeting; after that the connection must be closed.
        let mut buf = [0u8; 256];
        let closed = timeout(Duration::from_secs(2), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "silent connection not closed by the node");
    }
    let cut_after = timeout(Duration::from_secs(5), loris)
        .await
        .unwrap()
        .unwrap();
    let (after_med, after_max) = whisper_latency(&mut ea, &b, a.uuid(), 5).await;
    eprintln!(
        "FIGURES silent/trickle: whisper latency median/max baseline {base_med:?}/{base_max:?}, \
         with {SILENT} silent + 2 trickling peers {busy_med:?}/{busy_max:?}, after {after_med:?}/{after_max:?}; \
         {trickle_len}-byte trickled handshake+HELLO accepted; slow-loris cut after {cut_after:?}"
    );
    assert!(
        busy_max < Duration::from_secs(1),
        "honest peer slowed to {busy_max:?}"
    );
    assert!(cut_after.is_some(), "slow-loris was never cut");
    assert!(a.peers().contains(&b.uuid()));
}

// ---- garbage connections -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_garbage_connections() {
    let ((a, mut ea), (b, _eb)) = pair(port()).await;
    let addr = addr_of(&a);
    let live0 = live_sockets_on(addr.port());
    let failures0 = a.stats().handshake_failures;
    const CONNS: usize = 2000;
    const CONCURRENCY: usize = 64;
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONNS {
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let payload: Vec<u8> = {
                let mut rng = rand::thread_rng();
                match i % 4 {
                    // Random bytes.
                    0 => {
                        let mut v = vec![0u8; rng.gen_range(1..400)];
                        rng.fill_bytes(&mut v);
                        v
                    }
                    // Nothing at all.
                    1 => vec![],
                    // A valid greeting, then random bytes instead of READY.
                    2 => {
                        let mut v = Greeting::new("NULL", false).encode().to_vec();
                        let mut junk = vec![0u8; rng.gen_range(1..200)];
                        rng.fill_bytes(&mut junk);
                        v.extend(junk);
                        v
                    }
                    // A complete handshake of a socket type ROUTER does not talk to.
                    _ => zmtp_opening("PUB", None),
                }
            };
            let _ = s.write_all(&payload).await;
            let _ = s.shutdown().await;
            // Wait for the node to close its end (bounded: garbage must not pin a connection).
            let mut buf = [0u8; 256];
            let closed = timeout(Duration::from_secs(5), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            closed.is_ok()
        }));
    }
    let mut closed_by_node = 0;
    for task in tasks {
        if task.await.unwrap() {
            closed_by_node += 1;
        }
    }
    let took = t.elapsed();
    wait_stats(&a, "garbage counted", WAIT, |s| {
        s.handshake_failures >= failures0 + CONNS as u64
    })
    .await;
    // The honest peer never noticed.
    let (med, max) = whisper_latency(&mut ea, &b, a.uuid(), 5).await;
    // No socket leak: every connection the garbage opened is closed again on the node's side.
    let deadline = Instant::now() + WAIT;
    while live_sockets_on(addr.port()) > live0 {
        assert!(
            Instant::now() < deadline,
            "node kept garbage connections open: {} -> {}",
            live0,
            live_sockets_on(addr.port())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "FIGURES garbage: {CONNS} connections ({CONCURRENCY} at a time) in {took:?} \
         ({:.0}/s), {closed_by_node} closed by the node within 5 s, handshake_failures +{}, \
         node-side sockets {} -> {}, honest whisper latency after median {med:?} max {max:?}",
        CONNS as f64 / took.as_secs_f64(),
        a.stats().handshake_failures - failures0,
        live0,
        live_sockets_on(addr.port())
    );
    assert_eq!(
        closed_by_node, CONNS,
        "some garbage connections were left open"
    );
    assert!(a.peers().contains(&b.uuid()));
    assert!(b.peers().contains(&a.uuid()));
}

// ---- a peer that never reads ---------------------------------------------------------------

/// A ROUTER-side fake that completes the ZMTP handshake on every connection, then never reads.
async fn never_reading_server() -> (
    u16,
    tokio::task::JoinHandle<Vec<TcpStream>>,
    Arc<AtomicBool>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let Ok(Ok((mut s, _))) = timeout(Duration::from_millis(100), listener.accept()).await
            else {
                continue;
            };
            // Greeting + READY in one write; the peer's greeting and READY are never read.
            let _ = s.write_all(&zmtp_opening("ROUTER", None)).await;
            held.push(s);
        }
        held
    });
    (port, task, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_peer_is_dropped_and_others_keep_full_speed() {
    const MAX_BYTES: usize = 8 << 20;
    const MSG: usize = 64 << 10;
    let p = port();
    let (a, ea) = builder("alice", p)
        .outbox_config(OutboxConfig {
            max_queued_messages: 20_000,
            max_queued_bytes: MAX_BYTES,
            ..OutboxConfig::default()
        })
        .start()
        .await
        .unwrap();
    let (b, mut eb) = builder("bob", p).start().await.unwrap();
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    let mut rx_b = spawn_receiver(eb, a.uuid());
    let mut ea = ea;
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    let a_events = spawn_receiver(ea, Uuid::nil());
    let mut a_others = a_events.others;

    // Full speed to the good peer, before anything bad happens (after a warm-up round).
    throughput(&a, b.uuid(), &rx_b, 20_000, 100, 2_000).await;
    let before = throughput(&a, b.uuid(), &rx_b, 20_000, 100, 2_000).await;

    // The fake: a HELLO from its own outbox names the never-reading server as its endpoint, so the
    // node connects there and handshakes (the server answers greeting + READY), then gets stuck.
    let (fake_port, server, stop_server) = never_reading_server().await;
    let fake = Uuid::new_v4();
    let fake_out = Outbox::connect(
        &a.endpoint().unwrap(),
        identity(fake),
        OutboxConfig::default(),
    )
    .unwrap();
    fake_out
        .send(
            hello(&format!("tcp://127.0.0.1:{fake_port}"), "deaf")
                .encode(1)
                .unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(WAIT, a_others.recv()).await {
            Ok(Some(ev)) if is_enter(&ev, fake) => break,
            Ok(Some(_)) => assert!(Instant::now() < deadline, "fake never entered"),
            other => panic!("fake never entered: {other:?}"),
        }
    }
    let rss0 = rss_kib();

    // Stall: 6 MiB to the deaf peer, below the 8 MiB queue bound plus what the kernel absorbs.
    let big = Bytes::from(vec![0xa5; MSG]);
    let mut pushed = 0usize;
    for _ in 0..96 {
        a.whisper(fake, vec![big.clone()])
            .expect("6 MiB must fit (kernel + queue bound)");
        pushed += MSG;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = throughput(&a, b.uuid(), &rx_b, 20_000, 100, 2_000).await;
    let rss_stalled = rss_kib();

    // Push on: the queue bound must refuse, dropping the deaf peer with EXIT.
    let t = Instant::now();
    let overflow = loop {
        match a.whisper(fake, vec![big.clone()]) {
            Ok(()) => pushed += MSG,
            Err(e) => break e,
        }
        assert!(
            pushed <= MAX_BYTES + (32 << 20),
            "{pushed} bytes accepted for a peer that reads nothing: memory is not bounded"
        );
        tokio::task::yield_now().await;
    };
    assert!(
        matches!(overflow, zmesh::Error::PeerOverflow(u) if u == fake),
        "{overflow:?}"
    );
    let exit = timeout(WAIT, async {
        loop {
            match a_others.recv().await {
                Some(ev) if is_exit(&ev, fake) => return,
                Some(_) => {}
                None => panic!("a's events ended"),
            }
        }
    })
    .await;
    assert!(exit.is_ok(), "no EXIT for the dropped peer");
    let dropped_after = t.elapsed();
    assert!(!a.peers().contains(&fake));
    assert!(matches!(
        a.whisper(fake, vec![Bytes::from("x")]),
        Err(zmesh::Error::UnknownPeer(_))
    ));
    let rss_dropped = rss_kib();

    let after = throughput(&a, b.uuid(), &rx_b, 20_000, 100, 2_000).await;
    eprintln!(
        "FIGURES never-reading peer: good-peer whisper throughput (100 B) before {before:.0} msg/s, \
         while the deaf peer is stalled {during:.0} msg/s, after it was dropped {after:.0} msg/s; \
         {:.1} MiB accepted for the deaf peer before PeerOverflow (queue bound {} MiB, rest in kernel \
         buffers), EXIT {dropped_after:?} after the push resumed; RSS {} MiB at ENTER, {} MiB stalled, \
         {} MiB after drop; send_failures {}",
        pushed as f64 / (1 << 20) as f64,
        MAX_BYTES >> 20,
        rss0 / 1024,
        rss_stalled / 1024,
        rss_dropped / 1024,
        a.stats().send_failures
    );
    // The good peer kept its session and got every message.
    assert!(a.peers().contains(&b.uuid()));
    while let Ok(ev) = rx_b.others.try_recv() {
        assert!(!is_exit(&ev, a.uuid()), "b lost a: {ev:?}");
    }
    assert!(a.stats().send_failures >= 1);
    stop_server.store(true, Ordering::Relaxed);
    drop(server.await.unwrap());
}

// ---- a flooding peer -------------------------------------------------------------------------

/// What the flood scenario measured.
struct FloodReport {
    /// Round trips of the pings that were answered (sorted).
    answered: Vec<Duration>,
    /// Pings never answered within [`PING_TIMEOUT`].
    lost: usize,
    /// Flood whispers the server application saw, and over how long.
    flood_seen: u64,
    flood_time: Duration,
    baseline: Vec<Duration>,
    server_exits: u64,
    client_exits: usize,
    server_knows_client: bool,
    stats: zmesh::NodeStats,
}

/// An honest client's ping must be answered within this long.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const PINGS: usize = 10;

/// Sends `n` pings from `c` to `server` one after another; returns the sorted round trips of those
/// answered within [`PING_TIMEOUT`] and how many were not.
async fn rtts(
    c: &Node,
    ec: &mut Events,
    server: Uuid,
    n: usize,
    exits: &mut usize,
) -> (Vec<Duration>, usize) {
    let mut v = Vec::new();
    let mut lost = 0;
    for i in 0..n {
        let tag = Bytes::from(i.to_string());
        let t = Instant::now();
        c.whisper(server, vec![Bytes::from("ping"), tag.clone()])
            .unwrap();
        let answered = timeout(PING_TIMEOUT, async {
            while let Some(e) = ec.recv().await {
                match e {
                    Event::Whisper { content, .. } if content.len() == 2 && content[1] == tag => {
                        return
                    }
                    Event::Exit { .. } => *exits += 1,
                    _ => {}
                }
            }
        })
        .await;
        match answered {
            Ok(()) => v.push(t.elapsed()),
            Err(_) => lost += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v.sort();
    (v, lost)
}

/// A server node whose application answers "ping" with "pong"; a client node pinging it; a raw
/// peer flooding the server with 1 KiB WHISPERs as fast as TCP lets it (sequence numbers wrap).
async fn flood_scenario() -> FloodReport {
    let p = port();
    let (a, mut ea) = builder("server", p).start().await.unwrap();
    let (c, mut ec) = builder("client", p).start().await.unwrap();
    wait_for(&mut ea, "a sees c", |e| is_enter(e, c.uuid())).await;
    wait_for(&mut ec, "c sees a", |e| is_enter(e, a.uuid())).await;

    // The server application: answers "ping" from anyone with "pong", counts everything else.
    let flood_seen = Arc::new(AtomicU64::new(0));
    let exits = Arc::new(AtomicU64::new(0));
    let server = {
        let (a, flood_seen, exits) = (a.clone(), flood_seen.clone(), exits.clone());
        tokio::spawn(async move {
            while let Some(ev) = ea.recv().await {
                match ev {
                    Event::Whisper { peer, content, .. } if content[0] == "ping" => {
                        let _ = a.whisper(peer, vec![Bytes::from("pong"), content[1].clone()]);
                    }
                    Event::Whisper { .. } => {
                        flood_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Exit { .. } => {
                        exits.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
    };
    let mut client_exits = 0;
    let (baseline, lost0) = rtts(&c, &mut ec, a.uuid(), 10, &mut client_exits).await;
    assert_eq!(lost0, 0, "pings lost before any flood");

    // The flooder: a well-behaved inbox (so the server's connection to it works) and a raw outbox
    // that sends HELLO then WHISPERs as fast as the server accepts them.
    let mut flood_inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let flood_ep = flood_inbox.endpoint().to_string();
    let drain = tokio::spawn(async move { while flood_inbox.recv().await.is_some() {} });
    let flooder = Uuid::new_v4();
    let out = Outbox::connect(
        &a.endpoint().unwrap(),
        identity(flooder),
        OutboxConfig::default(),
    )
    .unwrap();
    out.send(hello(&flood_ep, "flooder").encode(1).unwrap())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let payload = Bytes::from(vec![0x42; 1024]);
            let mut seq: u16 = 1;
            while !stop.load(Ordering::Relaxed) {
                seq = seq.wrapping_add(1);
                let msg = ZreMessage::Whisper {
                    content: vec![payload.clone()].into(),
                }
                .encode(seq)
                .unwrap();
                if out.send(msg).await.is_err() {
                    break;
                }
            }
            out
        })
    };
    // Let the flood get going, then measure the honest client's round trips through it.
    let flood_start = Instant::now();
    wait_stats(&a, "flood arriving", WAIT, |_| {
        flood_seen.load(Ordering::Relaxed) > 10_000
    })
    .await;
    let (answered, lost) = rtts(&c, &mut ec, a.uuid(), PINGS, &mut client_exits).await;
    // Keep flooding until the sequence numbers have wrapped (65,535 -> 0) at least once.
    wait_stats(&a, "flood past a sequence wrap", WAIT * 2, |s| {
        s.engine.messages_received > 65_536 + 10_000
    })
    .await;
    let report = FloodReport {
        answered,
        lost,
        flood_seen: flood_seen.load(Ordering::Relaxed),
        flood_time: flood_start.elapsed(),
        baseline,
        server_exits: exits.load(Ordering::Relaxed),
        client_exits,
        server_knows_client: a.peers().contains(&c.uuid()),
        stats: a.stats(),
    };
    stop.store(true, Ordering::Relaxed);
    let _out = flood.await.unwrap();
    server.abort();
    drain.abort();
    let pct = |v: &[Duration], p: f64| v.get(((v.len().max(1) - 1) as f64 * p) as usize).copied();
    eprintln!(
        "FIGURES flood: {} flood whispers (1 KiB) reached the server application in {:?} ({:.0}/s); \
         honest ping->pong RTT median/max baseline {:?}/{:?}, during flood {:?}/{:?}, {} of {PINGS} \
         pings unanswered within {PING_TIMEOUT:?}; server dropped_events {}, messages_received {}, \
         sequence_gaps {}",
        report.flood_seen,
        report.flood_time,
        report.flood_seen as f64 / report.flood_time.as_secs_f64(),
        pct(&report.baseline, 0.5),
        pct(&report.baseline, 1.0),
        pct(&report.answered, 0.5),
        pct(&report.answered, 1.0),
        report.lost,
        report.stats.dropped_events,
        report.stats.engine.messages_received,
        report.stats.engine.sequence_gaps,
    );
    report
}

/// The node survives a flood: no peer is lost, honest traffic still gets through, sequence numbers
/// wrap cleanly, and what the application could not take is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_does_not_break_the_node() {
    let r = flood_scenario().await;
    assert_eq!(r.server_exits, 0, "the server lost a peer under flood");
    assert_eq!(r.client_exits, 0, "the client lost the server under flood");
    assert!(r.server_knows_client);
    assert!(
        !r.answered.is_empty(),
        "no ping answered at all during the flood"
    );
    assert!(
        r.stats.engine.messages_received > 65_536 + 10_000,
        "flood too small to wrap sequence numbers: {:?}",
        r.stats.engine
    );
    assert_eq!(r.stats.engine.sequence_gaps, 0, "sequence wrap mishandled");
}

/// The stronger property: a flooding peer must not cost an honest peer its messages. The flood
/// fills the application's event queue; the queue's per-peer fairness drops only the flooder's
/// excess and hands the honest client's pings out round-robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_does_not_starve_others() {
    let r = flood_scenario().await;
    assert_eq!(
        r.lost, 0,
        "{} of {PINGS} honest pings lost during a flood (server dropped_events {})",
        r.lost, r.stats.dropped_events
    );
    let max = r.answered.last().copied().unwrap_or_default();
    assert!(max < PING_TIMEOUT, "honest client starved: max RTT {max:?}");
}
