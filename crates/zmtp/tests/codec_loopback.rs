//! Integration tests over real loopback sockets (127.0.0.1, ::1 and a Unix socket in a temp dir).
//! Every wait is bounded by a timeout on an event; nothing sleeps and hopes.

mod common;

use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use zmesh_zmtp::*;

const T: Duration = Duration::from_secs(10);

fn ident(n: u8) -> Bytes {
    let mut v = vec![0x01u8];
    v.extend_from_slice(&[n; 16]);
    Bytes::from(v)
}

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

async fn next_event(inbox: &mut Inbox) -> InboxEvent {
    timeout(T, inbox.recv())
        .await
        .expect("timed out waiting for an inbox event")
        .expect("inbox closed")
}

/// Next message, skipping connection events.
async fn next_message(inbox: &mut Inbox) -> (Bytes, Frames) {
    loop {
        match next_event(inbox).await {
            InboxEvent::Message { identity, frames } => return (identity.into(), frames),
            _ => continue,
        }
    }
}

async fn wait_state(rx: &mut watch::Receiver<OutboxState>, pred: impl Fn(&OutboxState) -> bool) {
    timeout(T, rx.wait_for(|s| pred(s)))
        .await
        .expect("timed out waiting for outbox state")
        .expect("state channel closed");
}

fn fast_reconnect() -> OutboxConfig {
    OutboxConfig {
        reconnect_interval: Duration::from_millis(20),
        reconnect_interval_max: Duration::from_millis(200),
        ..Default::default()
    }
}

/// An inbox on an ephemeral loopback port and an outbox with identity `ident(n)` connected to it.
async fn inbox_and_outbox(n: u8) -> (Inbox, Outbox) {
    let inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let out = Outbox::connect(&inbox.endpoint().to_string(), ident(n), fast_reconnect()).unwrap();
    (inbox, out)
}

fn port_of(ep: &Endpoint) -> u16 {
    match ep {
        Endpoint::Tcp { port: Some(p), .. } => *p,
        other => panic!("not a bound tcp endpoint: {other}"),
    }
}

/// Minimal hand-written ZMTP peer: send greeting + READY, read the other side's greeting and READY.
async fn raw_handshake(s: &mut TcpStream, socket_type: &str, identity: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&Greeting::new("NULL", false).encode());
    let mut meta = Metadata::new().with("Socket-Type", socket_type.to_string());
    if !identity.is_empty() {
        meta = meta.with("Identity", Bytes::copy_from_slice(identity));
    }
    encode_frame(false, true, &Command::Ready(meta).encode(), &mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    while buf.len() < 64 {
        assert!(
            s.read_buf(&mut buf).await.unwrap() > 0,
            "closed during greeting"
        );
    }
    let g = Greeting::decode(buf[..64].try_into().unwrap()).unwrap();
    assert_eq!((g.major, g.minor), (3, 1));
    let _ = buf.split_to(64);
    let f = read_frame(s, &mut buf).await;
    assert!(f.command);
    assert!(matches!(
        Command::decode(&f.body).unwrap(),
        Command::Ready(_)
    ));
    buf
}

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    let mut dec = FrameDecoder::new(1 << 30);
    loop {
        if let Some(f) = dec.decode(buf).unwrap() {
            return f;
        }
        let n = timeout(T, s.read_buf(buf))
            .await
            .expect("read timed out")
            .unwrap();
        assert!(n > 0, "peer closed");
    }
}

#[tokio::test]
async fn multipart_delivery_with_identity_and_order() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let port = port_of(inbox.endpoint());
    assert_ne!(port, 0);
    assert_eq!(
        inbox.endpoint().to_string(),
        format!("tcp://127.0.0.1:{port}")
    );
    let out = Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(7),
        OutboxConfig::default(),
    )
    .unwrap();
    out.try_send(frames(&[b"a", b"", b"ccc"])).unwrap();
    match next_event(&mut inbox).await {
        InboxEvent::Accepted {
            identity,
            socket_type,
            peer,
            ..
        } => {
            assert_eq!(identity, ident(7));
            assert_eq!(socket_type, "DEALER");
            assert!(matches!(peer, PeerAddr::Tcp(a) if a.ip().is_loopback()));
        }
        other => panic!("expected Accepted, got {other:?}"),
    }
    let (id, f) = next_message(&mut inbox).await;
    assert_eq!(id, ident(7));
    assert_eq!(f, frames(&[b"a", b"", b"ccc"]));
    for i in 0u32..5000 {
        out.send(vec![Bytes::copy_from_slice(&i.to_be_bytes())])
            .await
            .unwrap();
    }
    for i in 0u32..5000 {
        let (_, f) = next_message(&mut inbox).await;
        assert_eq!(&f[0][..], &i.to_be_bytes());
    }
    assert!(out.is_connected());
    out.close(Some(Duration::from_secs(1))).await;
    match next_event(&mut inbox).await {
        InboxEvent::Disconnected { identity, .. } => assert_eq!(identity, ident(7)),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime_large_frames() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let out = Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(1),
        OutboxConfig::default(),
    )
    .unwrap();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let big = Bytes::from(big);
    for _ in 0..4 {
        out.send(vec![big.clone(), Bytes::from_static(b"tail"), big.clone()])
            .await
            .unwrap();
    }
    for _ in 0..4 {
        let (_, f) = next_message(&mut inbox).await;
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], big);
        assert_eq!(&f[1][..], b"tail");
        assert_eq!(f[2], big);
    }
}

#[tokio::test]
async fn messages_queued_before_bind_are_delivered() {
    let ep = common::unused_loopback_endpoint();
    let out = Outbox::connect(&ep, ident(2), fast_reconnect()).unwrap();
    for i in 0..10u8 {
        out.try_send(vec![Bytes::from(vec![i])]).unwrap();
    }
    let mut st = out.state();
    wait_state(&mut st, |s| matches!(s, OutboxState::Disconnected { .. })).await;
    assert_eq!(out.queued(), (10, 10));
    let mut inbox = Inbox::bind(&ep, InboxConfig::default()).await.unwrap();
    for i in 0..10u8 {
        let (id, f) = next_message(&mut inbox).await;
        assert_eq!(id, ident(2));
        assert_eq!(f.as_slice(), &[Bytes::from(vec![i])]);
    }
}

#[tokio::test]
async fn inbox_restart_delivery_resumes() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let ep = inbox.endpoint().to_string();
    let out = Outbox::connect(&ep, ident(3), fast_reconnect()).unwrap();
    out.try_send(frames(&[b"before"])).unwrap();
    assert_eq!(next_message(&mut inbox).await.1, frames(&[b"before"]));
    let mut st = out.state();
    wait_state(&mut st, |s| *s == OutboxState::Connected).await;
    drop(inbox);
    wait_state(&mut st, |s| matches!(s, OutboxState::Disconnected { .. })).await;
    out.try_send(frames(&[b"after", b"restart"])).unwrap();
    let mut inbox = Inbox::bind(&ep, InboxConfig::default()).await.unwrap();
    let (id, f) = next_message(&mut inbox).await;
    assert_eq!(id, ident(3));
    assert_eq!(f, frames(&[b"after", b"restart"]));
}

#[tokio::test]
async fn handover_to_new_connection_with_same_identity() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let ep = inbox.endpoint().to_string();
    // The first one must not reconnect during the test (it would take the identity back).
    let slow = OutboxConfig {
        reconnect_interval: Duration::from_secs(30),
        ..Default::default()
    };
    let first = Outbox::connect(&ep, ident(4), slow.clone()).unwrap();
    first.try_send(frames(&[b"one"])).unwrap();
    let (_, f) = next_message(&mut inbox).await;
    assert_eq!(f, frames(&[b"one"]));
    let second = Outbox::connect(&ep, ident(4), slow).unwrap();
    second.try_send(frames(&[b"two"])).unwrap();
    // Order: old connection's Disconnected, then new Accepted, then the new message.
    match next_event(&mut inbox).await {
        InboxEvent::Disconnected {
            identity, reason, ..
        } => {
            assert_eq!(identity, ident(4));
            assert!(reason.contains("replaced"), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(
        matches!(next_event(&mut inbox).await, InboxEvent::Accepted { identity, .. } if identity == ident(4))
    );
    match next_event(&mut inbox).await {
        InboxEvent::Message {
            identity,
            frames: f,
        } => {
            assert_eq!(identity, ident(4));
            assert_eq!(f, frames(&[b"two"]));
        }
        other => panic!("expected Message, got {other:?}"),
    }
    let mut st = first.state();
    wait_state(&mut st, |s| matches!(s, OutboxState::Disconnected { .. })).await;
}

#[tokio::test]
async fn try_send_full_when_peer_never_reads() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ep = format!("tcp://{}", listener.local_addr().unwrap());
    let cfg = OutboxConfig {
        max_queued_messages: 64,
        max_queued_bytes: 512 * 1024,
        ..Default::default()
    };
    let out = Outbox::connect(&ep, ident(5), cfg).unwrap();
    let (mut sock, _) = listener.accept().await.unwrap();
    let _leftover = raw_handshake(&mut sock, "ROUTER", b"").await;
    let mut st = out.state();
    wait_state(&mut st, |s| *s == OutboxState::Connected).await;
    // The peer now never reads: kernel buffers fill, then our queue, then Full.
    let msg = vec![Bytes::from(vec![0x5Au8; 16 * 1024])];
    let mut accepted = 0usize;
    let full = loop {
        match out.try_send(msg.clone()) {
            Ok(()) => accepted += 1,
            Err(SendError::Full(back)) => break back,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(accepted < 100_000, "never reported Full");
        tokio::task::yield_now().await;
    };
    assert_eq!(
        full.as_slice(),
        &msg[..],
        "the refused message is handed back intact"
    );
    let (n, bytes) = out.queued();
    assert!(
        n <= 64 && bytes <= 512 * 1024,
        "limits respected: {n} msgs, {bytes} bytes"
    );
    // The async send waits for room, which never comes.
    assert!(timeout(Duration::from_millis(200), out.send(msg.clone()))
        .await
        .is_err());
    drop(sock);
}

#[tokio::test]
async fn bad_peers_fail_handshake_others_unaffected() {
    let cfg = InboxConfig {
        handshake_timeout: Duration::from_millis(300),
        max_frame_size: 1024,
        ..Default::default()
    };
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", cfg).await.unwrap();
    let addr = format!("127.0.0.1:{}", port_of(inbox.endpoint()));
    let good = Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(6),
        OutboxConfig::default(),
    )
    .unwrap();
    good.try_send(frames(&[b"first"])).unwrap();
    assert_eq!(next_message(&mut inbox).await.1, frames(&[b"first"]));

    async fn expect_failure(inbox: &mut Inbox, want: impl Fn(&HandshakeError) -> bool) {
        loop {
            match next_event(inbox).await {
                InboxEvent::HandshakeFailed { reason, .. } => {
                    assert!(want(&reason), "unexpected reason {reason:?}");
                    return;
                }
                InboxEvent::Message { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    // HTTP garbage.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    expect_failure(&mut inbox, |r| *r == HandshakeError::BadSignature).await;
    // ZMTP 2.0 greeting.
    let mut s2 = TcpStream::connect(&addr).await.unwrap();
    let mut g = Greeting::new("NULL", false).encode();
    g[10] = 2;
    s2.write_all(&g).await.unwrap();
    expect_failure(&mut inbox, |r| {
        matches!(r, HandshakeError::UnsupportedVersion { major: 2, .. })
    })
    .await;
    // Another mechanism: refused with an ERROR command we can read.
    let mut s3 = TcpStream::connect(&addr).await.unwrap();
    s3.write_all(&Greeting::new("PLAIN", false).encode())
        .await
        .unwrap();
    expect_failure(&mut inbox, |r| {
        *r == HandshakeError::MechanismMismatch {
            ours: "NULL".into(),
            theirs: "PLAIN".into(),
        }
    })
    .await;
    let mut buf = BytesMut::new();
    while buf.len() < 64 {
        assert!(s3.read_buf(&mut buf).await.unwrap() > 0);
    }
    let _ = buf.split_to(64);
    let f = read_frame(&mut s3, &mut buf).await;
    assert!(f.command);
    assert!(matches!(Command::decode(&f.body).unwrap(), Command::Error(r) if r.contains("PLAIN")));
    // Slow-loris: half a signature then silence.
    let mut s4 = TcpStream::connect(&addr).await.unwrap();
    s4.write_all(&[0xFF, 0, 0]).await.unwrap();
    expect_failure(&mut inbox, |r| *r == HandshakeError::Timeout).await;
    // Incompatible socket type (PUB): refused.
    let mut s5 = TcpStream::connect(&addr).await.unwrap();
    let mut out = BytesMut::new();
    out.extend_from_slice(&Greeting::new("NULL", false).encode());
    encode_frame(
        false,
        true,
        &Command::Ready(Metadata::new().with("Socket-Type", "PUB")).encode(),
        &mut out,
    );
    s5.write_all(&out).await.unwrap();
    expect_failure(&mut inbox, |r| {
        matches!(r, HandshakeError::IncompatibleSocketType { .. })
    })
    .await;
    // Random bytes with a valid first byte.
    let mut s6 = TcpStream::connect(&addr).await.unwrap();
    s6.write_all(&[0xFF, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 3, 3])
        .await
        .unwrap();
    expect_failure(&mut inbox, |r| *r == HandshakeError::BadSignature).await;

    // After the handshake: a frame above max_frame_size closes only that connection.
    let mut s7 = TcpStream::connect(&addr).await.unwrap();
    raw_handshake(&mut s7, "DEALER", b"big").await;
    assert!(matches!(
        next_event(&mut inbox).await,
        InboxEvent::Accepted { .. }
    ));
    let mut out = BytesMut::new();
    encode_frame(false, false, &vec![0u8; 4096], &mut out);
    s7.write_all(&out).await.unwrap();
    match next_event(&mut inbox).await {
        InboxEvent::Disconnected {
            identity, reason, ..
        } => {
            assert_eq!(&identity[..], b"big");
            assert!(reason.contains("exceeds"), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }

    // The good peer is unaffected.
    good.try_send(frames(&[b"still", b"here"])).unwrap();
    assert_eq!(
        next_message(&mut inbox).await.1,
        frames(&[b"still", b"here"])
    );
    drop((s, s2, s4, s5, s6));
}

#[tokio::test]
async fn ping_answered_with_pong_and_error_reported() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", port_of(inbox.endpoint()));
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut buf = raw_handshake(&mut s, "DEALER", b"").await;
    let id = match next_event(&mut inbox).await {
        InboxEvent::Accepted { identity, .. } => identity,
        other => panic!("{other:?}"),
    };
    assert_eq!(id.len(), 5, "generated identity is 0x00 + u32");
    assert_eq!(id[0], 0);
    let mut out = BytesMut::new();
    let ping = Command::Ping {
        ttl_ds: 30,
        context: Bytes::from_static(b"hb-1"),
    };
    encode_frame(false, true, &ping.encode(), &mut out);
    encode_frame(true, false, b"m1", &mut out);
    encode_frame(false, false, b"m2", &mut out);
    s.write_all(&out).await.unwrap();
    // The inbox answers PINGs while it is being received from (it reads its connections inside
    // `recv`), so the PONG and the message arrive together.
    let (f, msg) = tokio::join!(read_frame(&mut s, &mut buf), next_message(&mut inbox));
    assert!(f.command);
    assert_eq!(
        Command::decode(&f.body).unwrap(),
        Command::Pong {
            context: Bytes::from_static(b"hb-1")
        }
    );
    assert_eq!(msg, (id.to_bytes(), frames(&[b"m1", b"m2"])));
    let mut out = BytesMut::new();
    encode_frame(
        false,
        true,
        &Command::Error("go away".into()).encode(),
        &mut out,
    );
    s.write_all(&out).await.unwrap();
    match next_event(&mut inbox).await {
        InboxEvent::Disconnected { reason, .. } => assert!(reason.contains("go away"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn outbox_heartbeat_pings_and_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ep = format!("tcp://{}", listener.local_addr().unwrap());
    let cfg = OutboxConfig {
        heartbeat: Some(Heartbeat {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
            ttl: Duration::from_secs(1),
        }),
        reconnect_interval: Duration::from_secs(30),
        ..Default::default()
    };
    let out = Outbox::connect(&ep, ident(8), cfg).unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = raw_handshake(&mut s, "ROUTER", b"").await;
    let f = read_frame(&mut s, &mut buf).await;
    match Command::decode(&f.body).unwrap() {
        Command::Ping { ttl_ds, .. } => assert_eq!(ttl_ds, 10),
        other => panic!("{other:?}"),
    }
    // We never answer: the outbox must give up on the connection.
    let mut st = out.state();
    wait_state(
        &mut st,
        |s| matches!(s, OutboxState::Disconnected { reason } if reason.contains("heartbeat")),
    )
    .await;
}

#[tokio::test]
async fn ipc_large_frames() {
    let dir = std::env::temp_dir().join(format!("zmtp-test-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inbox.sock");
    let ep = format!("ipc://{}", path.display());
    let mut inbox = Inbox::bind(&ep, InboxConfig::default()).await.unwrap();
    assert_eq!(inbox.endpoint().to_string(), ep);
    let out = Outbox::connect(&ep, ident(9), OutboxConfig::default()).unwrap();
    let big = Bytes::from(
        (0..1024 * 1024)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<u8>>(),
    );
    out.send(vec![Bytes::from_static(b"hdr"), big.clone()])
        .await
        .unwrap();
    match next_event(&mut inbox).await {
        InboxEvent::Accepted { peer, identity, .. } => {
            assert_eq!(peer, PeerAddr::Ipc);
            assert_eq!(identity, ident(9));
        }
        other => panic!("{other:?}"),
    }
    let (_, f) = next_message(&mut inbox).await;
    assert_eq!(f.as_slice(), &[Bytes::from_static(b"hdr"), big]);
    drop(inbox);
    assert!(!path.exists(), "socket file removed on close");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no ::1 on this machine");
        return;
    }
    let mut inbox = Inbox::bind("tcp://[::1]:*", InboxConfig::default())
        .await
        .unwrap();
    let ep = inbox.endpoint().to_string();
    assert!(ep.starts_with("tcp://[::1]:"), "{ep}");
    let out = Outbox::connect(&ep, ident(10), OutboxConfig::default()).unwrap();
    out.try_send(frames(&[b"v6"])).unwrap();
    assert_eq!(
        next_message(&mut inbox).await,
        (ident(10), frames(&[b"v6"]))
    );
}

#[tokio::test]
async fn bad_user_input_is_a_clear_error() {
    assert!(matches!(
        Inbox::bind("udp://1.2.3.4:5", InboxConfig::default()).await,
        Err(TransportError::Endpoint(_))
    ));
    assert!(matches!(
        Outbox::connect("tcp://127.0.0.1:*", ident(1), OutboxConfig::default()),
        Err(TransportError::Endpoint(EndpointError::WildcardPort(_)))
    ));
    assert!(matches!(
        Outbox::connect(
            "tcp://127.0.0.1:1",
            Bytes::from(vec![1u8; 256]),
            OutboxConfig::default()
        ),
        Err(TransportError::InvalidIdentity(_))
    ));
}

#[test]
fn connect_outside_runtime_is_an_error() {
    assert!(matches!(
        Outbox::connect("tcp://127.0.0.1:1", ident(1), OutboxConfig::default()),
        Err(TransportError::NoRuntime)
    ));
}

#[tokio::test]
async fn zmtp_3_0_peer_accepted() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", port_of(inbox.endpoint()));
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut g = Greeting::new("NULL", false);
    g.minor = 0;
    let mut out = BytesMut::new();
    out.extend_from_slice(&g.encode());
    let meta = Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", "old");
    encode_frame(false, true, &Command::Ready(meta).encode(), &mut out);
    encode_frame(false, false, b"hello from 3.0", &mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(
        next_message(&mut inbox).await,
        (Bytes::from_static(b"old"), frames(&[b"hello from 3.0"]))
    );
}

/// `try_recv` drains what has arrived without registering a waker, and a `recv` afterwards is
/// still woken by the next message (a `try_recv` returning `None` must not lose the wake-up).
#[tokio::test]
async fn try_recv_drains_and_recv_still_wakes() {
    let (mut inbox, out) = inbox_and_outbox(9).await;
    for m in [&b"a"[..], b"b", b"c"] {
        out.try_send(frames(&[m])).unwrap();
    }
    assert!(matches!(
        next_event(&mut inbox).await,
        InboxEvent::Accepted { .. }
    ));
    let mut got = Vec::new();
    timeout(T, async {
        while got.len() < 3 {
            match inbox.try_recv() {
                Some(InboxEvent::Message { frames, .. }) => got.push(frames[0].clone()),
                Some(other) => panic!("unexpected {other:?}"),
                None => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("try_recv never delivered the three messages");
    assert_eq!(got, [&b"a"[..], b"b", b"c"]);
    assert!(inbox.try_recv().is_none());
    // Nothing is pending now; the next message must wake a plain `recv`.
    out.try_send(frames(&[b"d"])).unwrap();
    assert_eq!(next_message(&mut inbox).await.1, frames(&[b"d"]));
    // And a connection event arriving while only `recv` waits wakes it too.
    drop(out);
    assert!(matches!(
        next_event(&mut inbox).await,
        InboxEvent::Disconnected { .. }
    ));
}

/// A writer delivers what it was fed, in order, at flush — explicit, automatic at 64 KiB, or on
/// drop — mixed single- and multipart messages, large frames written vectored included.
#[tokio::test]
async fn writer_delivers_in_order_at_each_flush() {
    let (mut inbox, out) = inbox_and_outbox(9).await;
    let msg = |i: u32| -> Frames {
        let mut body = vec![(i % 251) as u8; if i.is_multiple_of(97) { 20_000 } else { 40 }];
        body[..4].copy_from_slice(&i.to_be_bytes());
        if i.is_multiple_of(5) {
            frames![Bytes::from(body), Bytes::from_static(b"tail")]
        } else {
            frames![Bytes::from(body)]
        }
    };
    let check = |i: u32, f: &Frames| {
        let want = msg(i);
        assert_eq!(f, &want, "message {i}");
    };
    let mut w = out.writer();
    // Nothing is queued before a flush (a small run stays in the writer).
    w.try_feed(msg(0)).unwrap();
    assert_eq!(out.queued(), (0, 0), "fed, not queued yet");
    w.flush();
    let (id, f) = next_message(&mut inbox).await;
    assert_eq!(id, ident(9));
    check(0, &f);
    // A long run flushes itself every 64 KiB; the rest goes at the explicit flush.
    for i in 1..5_000u32 {
        w.feed(msg(i)).await.unwrap();
    }
    w.flush();
    for i in 1..5_000u32 {
        check(i, &next_message(&mut inbox).await.1);
    }
    // Dropping the writer flushes it.
    for i in 5_000..5_010u32 {
        w.try_feed(msg(i)).unwrap();
    }
    drop(w);
    for i in 5_000..5_010u32 {
        check(i, &next_message(&mut inbox).await.1);
    }
    // All unused room was given back.
    let deadline = tokio::time::Instant::now() + T;
    while out.queued() != (0, 0) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", out.queued());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The writer obeys the outbox's count and byte limits exactly (room is reserved before a message
/// is accepted), reports `Full` with the message handed back, and `Closed` once the outbox is gone.
#[tokio::test]
async fn writer_respects_limits_and_reports_full_and_closed() {
    let cfg = OutboxConfig {
        max_queued_messages: 100,
        max_queued_bytes: 10_000,
        ..fast_reconnect()
    };
    // Nobody listens there: every message stays queued.
    let out = Outbox::connect(&common::unused_loopback_endpoint(), ident(10), cfg).unwrap();
    let mut w = out.writer();
    // 30 x 300 bytes = 9,000 fit; the 34th would exceed 10,000 bytes.
    let mut accepted = 0;
    let refused = loop {
        match w.try_feed(frames![Bytes::from(vec![7u8; 300])]) {
            Ok(()) => accepted += 1,
            Err(SendError::Full(back)) => break back,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(accepted <= 100);
    };
    assert_eq!(accepted, 33);
    assert_eq!(refused.as_slice(), &[Bytes::from(vec![7u8; 300])]);
    // Full flushed the writer: everything fed is queued, nothing more is reserved.
    assert_eq!(out.queued(), (33, 9_900));
    // The count limit holds too, and try_send sees the same queue.
    let mut w2 = out.writer();
    let mut small = 0;
    while w2.try_feed(frames![Bytes::from_static(b"x")]).is_ok() {
        small += 1;
        assert!(small <= 100);
    }
    assert!(matches!(
        out.try_send(frames![Bytes::from_static(b"y")]),
        Err(SendError::Full(_))
    ));
    w2.flush();
    let (n, bytes) = out.queued();
    assert!(n <= 100 && bytes <= 10_000, "{n} msgs, {bytes} bytes");
    assert_eq!(
        n, 100,
        "the count limit is reachable: {small} small messages"
    );
    // Once the outbox is gone, the writer reports Closed.
    drop(out);
    assert!(matches!(
        w.try_feed(frames![Bytes::from_static(b"z")]),
        Err(SendError::Closed(_))
    ));
}

/// `recv_into` delivers the same stream as `recv`: messages (single-frame fast path and
/// multipart) into the caller's buffer, which it clears first, and connection events boxed, in
/// order.
#[tokio::test]
async fn recv_into_same_stream_as_recv() {
    let (mut inbox, out) = inbox_and_outbox(11).await;
    for i in 0..100u8 {
        if i % 10 == 0 {
            out.try_send(frames![Bytes::from(vec![i]), Bytes::from_static(b"more")])
                .unwrap();
        } else {
            out.try_send(frames![Bytes::from(vec![i])]).unwrap();
        }
    }
    // Left-overs in the buffer must not leak into the next message.
    let mut buf: Frames = frames![
        Bytes::from_static(b"stale"),
        Bytes::from_static(b"x"),
        Bytes::from_static(b"y")
    ];
    let mut got = 0u8;
    let mut accepted = false;
    while got < 100 {
        match timeout(T, inbox.recv_into(&mut buf))
            .await
            .expect("in time")
        {
            Some(Received::Message(id)) => {
                assert!(accepted, "Accepted comes before the first message");
                assert_eq!(id, ident(11));
                if got.is_multiple_of(10) {
                    assert_eq!(
                        buf,
                        frames![Bytes::from(vec![got]), Bytes::from_static(b"more")]
                    );
                } else {
                    assert_eq!(buf, frames![Bytes::from(vec![got])]);
                }
                got += 1;
            }
            Some(Received::Event(ev)) => match *ev {
                InboxEvent::Accepted { identity, .. } => {
                    assert_eq!(identity, ident(11));
                    accepted = true;
                }
                other => panic!("unexpected {other:?}"),
            },
            None => panic!("inbox closed"),
        }
    }
    drop(out);
    match timeout(T, inbox.recv_into(&mut buf))
        .await
        .expect("in time")
    {
        Some(Received::Event(ev)) => {
            assert!(matches!(*ev, InboxEvent::Disconnected { .. }), "{ev:?}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(buf.is_empty(), "an event leaves the buffer empty");
}
