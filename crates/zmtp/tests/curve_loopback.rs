//! CURVE over real loopback sockets: zmesh inbox (server) <-> zmesh outbox (client), the
//! authenticator hook, and hostile clients written by hand from the pure codecs (replayed nonce,
//! flipped bit, truncated command, bad version, forged vouch, slow-loris). Every wait is bounded by
//! a timeout on an event; a healthy connection runs alongside the hostile ones throughout.

use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use zmesh_zmtp::curve::handshake::*;
use zmesh_zmtp::curve::{MessageCodec, SecretKey};
use zmesh_zmtp::*;

const T: Duration = Duration::from_secs(10);

fn ident(n: u8) -> Bytes {
    let mut v = vec![0x01u8];
    v.extend_from_slice(&[n; 16]);
    Bytes::from(v)
}

async fn next_event(inbox: &mut Inbox) -> InboxEvent {
    timeout(T, inbox.recv())
        .await
        .expect("timed out waiting for an inbox event")
        .expect("inbox closed")
}

async fn wait_state(rx: &mut watch::Receiver<OutboxState>, pred: impl Fn(&OutboxState) -> bool) {
    timeout(T, rx.wait_for(|s| pred(s)))
        .await
        .expect("timed out waiting for outbox state")
        .expect("state channel closed");
}

fn server_cfg(keys: &CurveKeyPair) -> CurveConfig {
    CurveConfig::server(keys.clone())
}

async fn curve_inbox(cfg: CurveConfig) -> Inbox {
    Inbox::bind(
        "tcp://127.0.0.1:*",
        InboxConfig {
            mechanism: MechanismConfig::Curve(cfg),
            handshake_timeout: Duration::from_millis(1500),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn curve_outbox(inbox: &Inbox, n: u8, me: &CurveKeyPair, server: CurvePublicKey) -> Outbox {
    Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(n),
        OutboxConfig {
            mechanism: MechanismConfig::Curve(CurveConfig::client(me.clone(), server)),
            reconnect_interval: Duration::from_millis(20),
            reconnect_interval_max: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Wait for the Accepted of `id` (other events are ignored) and return its CURVE key.
async fn accepted(inbox: &mut Inbox, id: &Bytes) -> Option<CurvePublicKey> {
    loop {
        if let InboxEvent::Accepted {
            identity, peer_key, ..
        } = next_event(inbox).await
        {
            if identity == *id {
                return peer_key;
            }
        }
    }
}

/// Next message (connection events skipped), with the sender's key looked up right away.
async fn next_message(inbox: &mut Inbox) -> (Bytes, Frames, Option<CurvePublicKey>) {
    loop {
        if let InboxEvent::Message { identity, frames } = next_event(inbox).await {
            let key = inbox.peer_key(&identity);
            return (identity.into(), frames, key);
        }
    }
}

/// Next HandshakeFailed or Disconnected reason (messages and Accepted of others skipped).
async fn next_failure(inbox: &mut Inbox) -> String {
    loop {
        match next_event(inbox).await {
            InboxEvent::HandshakeFailed { reason, .. } => return format!("{reason}"),
            InboxEvent::Disconnected { reason, .. } => return reason,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn curve_multipart_and_1mib_messages_with_the_key_on_every_message() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let mut inbox = curve_inbox(server_cfg(&server)).await;
    let out = curve_outbox(&inbox, 1, &client, server.public());
    assert_eq!(accepted(&mut inbox, &ident(1)).await, Some(client.public()));
    assert_eq!(inbox.peer_key(&ident(1)), Some(client.public()));

    let big = Bytes::from(
        (0..(1 << 20))
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    out.try_send(frames![Bytes::from_static(b"a"), Bytes::new()])
        .unwrap();
    out.try_send(vec![
        Bytes::from_static(b"x"),
        big.clone(),
        Bytes::from_static(b"z"),
    ])
    .unwrap();
    for i in 0u32..2000 {
        out.try_send(frames![Bytes::copy_from_slice(&i.to_be_bytes())])
            .unwrap();
    }
    let (id, f, key) = next_message(&mut inbox).await;
    assert_eq!((id, key), (ident(1), Some(client.public())));
    assert_eq!(f.as_slice(), &[Bytes::from_static(b"a"), Bytes::new()]);
    let (_, f, _) = next_message(&mut inbox).await;
    assert_eq!(f.len(), 3);
    assert_eq!(f[1], big);
    for i in 0u32..2000 {
        let (_, f, key) = next_message(&mut inbox).await;
        assert_eq!(f[0].as_ref(), i.to_be_bytes());
        assert_eq!(key, Some(client.public()));
    }
}

#[tokio::test]
async fn encrypted_heartbeats_keep_the_connection_up() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let mut inbox = curve_inbox(server_cfg(&server)).await;
    let out = Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(2),
        OutboxConfig {
            mechanism: MechanismConfig::Curve(CurveConfig::client(client, server.public())),
            heartbeat: Some(Heartbeat {
                interval: Duration::from_millis(20),
                timeout: Duration::from_millis(400),
                ttl: Duration::from_secs(1),
            }),
            ..Default::default()
        },
    )
    .unwrap();
    accepted(&mut inbox, &ident(2)).await;
    // 40 PINGs go out (sealed); the outbox closes on a missing PONG after 400 ms. Meanwhile the
    // inbox is driven by `recv` (which answers the PINGs), and must see nothing but silence.
    let mut state = out.state();
    wait_state(&mut state, |s| matches!(s, OutboxState::Connected)).await;
    state.borrow_and_update();
    let quiet = timeout(Duration::from_millis(800), async {
        loop {
            tokio::select! {
                ev = inbox.recv() => panic!("unexpected inbox event {ev:?}"),
                r = state.changed() => {
                    r.unwrap();
                    let now = state.borrow_and_update().clone();
                    assert!(matches!(now, OutboxState::Connected), "outbox lost the connection: {now:?}");
                }
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "stayed up for the whole window");
    out.try_send(frames![Bytes::from_static(b"still here")])
        .unwrap();
    assert_eq!(next_message(&mut inbox).await.1[0], "still here");
}

#[tokio::test]
async fn allow_list_from_a_directory_refuses_counts_and_reloads() {
    let dir = std::env::temp_dir().join(format!("zmesh-allow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = CurveKeyPair::generate();
    let known = CurveKeyPair::generate();
    let stranger = CurveKeyPair::generate();
    Certificate::new(known.clone())
        .save(dir.join("known.key"))
        .unwrap();
    let list = AllowList::from_dir(&dir).unwrap();
    assert_eq!(
        list.len(),
        1,
        "the _secret file is not a public certificate"
    );
    let cfg = server_cfg(&server).with_authenticator(list.clone());
    let stats = cfg.stats();
    let mut inbox = curve_inbox(cfg).await;

    let good = curve_outbox(&inbox, 3, &known, server.public());
    assert_eq!(accepted(&mut inbox, &ident(3)).await, Some(known.public()));
    let bad = curve_outbox(&inbox, 4, &stranger, server.public());
    let reason = next_failure(&mut inbox).await;
    assert!(
        reason.contains("unauthorized") && reason.contains("allow-list"),
        "{reason}"
    );
    assert!(stats.refused() >= 1);
    let mut st = bad.state();
    wait_state(
        &mut st,
        // The server answers a refused key with ZAP's status, as libzmq does.
        |s| matches!(s, OutboxState::Disconnected { reason } if reason.contains("400 (ZAP status")),
    )
    .await;
    good.try_send(frames![Bytes::from_static(b"ok")]).unwrap();
    assert_eq!(next_message(&mut inbox).await.1[0], "ok");

    // The stranger's certificate is added to the directory; a reload lets it in (it retries).
    Certificate::new(stranger.clone())
        .save_public(dir.join("stranger.key"))
        .unwrap();
    assert_eq!(list.reload().unwrap(), 2);
    assert_eq!(
        accepted(&mut inbox, &ident(4)).await,
        Some(stranger.public())
    );
    bad.try_send(frames![Bytes::from_static(b"in")]).unwrap();
    let (id, _, key) = next_message(&mut inbox).await;
    assert_eq!((id, key), (ident(4), Some(stranger.public())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn closure_authenticator_sees_key_address_and_metadata() {
    let server = CurveKeyPair::generate();
    let alice = CurveKeyPair::generate();
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let allowed = alice.public();
    let cfg = server_cfg(&server).with_authenticator(move |req: &AuthRequest<'_>| {
        a.fetch_add(1, Ordering::SeqCst);
        let loopback = matches!(req.peer, PeerAddr::Tcp(s) if s.ip().is_loopback());
        let dealer = req
            .metadata
            .get("Socket-Type")
            .is_some_and(|v| v == "DEALER");
        if *req.public_key == allowed && loopback && dealer {
            AuthDecision::Allow
        } else {
            AuthDecision::Deny("not alice".into())
        }
    });
    let stats = cfg.stats();
    let mut inbox = curve_inbox(cfg).await;
    let _bob = curve_outbox(&inbox, 5, &CurveKeyPair::generate(), server.public());
    assert!(next_failure(&mut inbox).await.contains("not alice"));
    let _alice = curve_outbox(&inbox, 6, &alice, server.public());
    assert_eq!(accepted(&mut inbox, &ident(6)).await, Some(alice.public()));
    assert!(asked.load(Ordering::SeqCst) >= 2);
    assert!(stats.refused() >= 1);
}

#[tokio::test]
async fn client_with_the_wrong_server_key_or_mechanism_is_refused() {
    let server = CurveKeyPair::generate();
    let cfg = server_cfg(&server);
    let stats = cfg.stats();
    let mut inbox = curve_inbox(cfg).await;
    let _wrong = curve_outbox(
        &inbox,
        7,
        &CurveKeyPair::generate(),
        CurveKeyPair::generate().public(),
    );
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("cannot open HELLO box"), "{reason}");
    assert!(stats.protocol_errors() >= 1);
    let _null = Outbox::connect(
        &inbox.endpoint().to_string(),
        ident(8),
        OutboxConfig::default(),
    )
    .unwrap();
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("mechanism mismatch"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Hand-written hostile clients.

/// A raw CURVE client: greeting, then commands as plain ZMTP command frames.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Raw {
    async fn connect(inbox: &Inbox) -> Raw {
        let addr = inbox.endpoint().to_string().replace("tcp://", "");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&Greeting::new("CURVE", false).encode())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 64 {
            assert!(timeout(T, s.read_buf(&mut buf)).await.unwrap().unwrap() > 0);
        }
        let g = Greeting::decode(buf[..64].try_into().unwrap()).unwrap();
        assert!(
            g.as_server,
            "zmesh sets the as-server bit on a CURVE server (RFC 37)"
        );
        assert_eq!(g.mechanism_name(), "CURVE");
        let _ = buf.split_to(64);
        Raw {
            s,
            buf,
            dec: FrameDecoder::new(1 << 20),
        }
    }

    async fn send(&mut self, command: bool, body: &[u8]) {
        let mut out = BytesMut::new();
        encode_frame(false, command, body, &mut out);
        self.s.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` when the server closes.
    async fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            if timeout(T, self.s.read_buf(&mut self.buf))
                .await
                .unwrap()
                .ok()?
                == 0
            {
                return None;
            }
        }
    }

    /// Wait until the server closes, skipping frames (e.g. its ERROR).
    async fn expect_closed(&mut self) {
        while self.read().await.is_some() {}
    }
}

/// How the hand-written handshake misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    VouchForOtherServer,
}

/// Run the handshake by hand up to READY; returns the raw connection and our MESSAGE state.
async fn raw_handshake(
    inbox: &Inbox,
    server: CurvePublicKey,
    me: &CurveKeyPair,
    id: &Bytes,
    tamper: Tamper,
) -> (Raw, Option<MessageCodec>) {
    let mut raw = Raw::connect(inbox).await;
    let short = SecretKey::generate(&mut zmesh_zmtp::curve::crypto_rng());
    raw.send(true, &encode_hello(&short, &server, 1)).await;
    let welcome = raw.read().await.expect("WELCOME");
    let (server_short, cookie) = decode_welcome(&welcome.body, &short, &server).unwrap();
    let session = session_box(&server_short, &short);
    let vouched = if tamper == Tamper::VouchForOtherServer {
        CurveKeyPair::generate().public()
    } else {
        server
    };
    let meta = Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", id.clone());
    let init = encode_initiate(
        &cookie,
        2,
        &session,
        me,
        &public_of(&short),
        &vouched,
        &server_short,
        &[9; 16],
        &meta,
    );
    raw.send(true, &init).await;
    let Some(ready) = raw.read().await else {
        return (raw, None);
    };
    if ready.body.starts_with(b"\x05ERROR") {
        return (raw, None);
    }
    let (n, _) = decode_ready(&ready.body, &session).unwrap();
    assert_eq!(n, 1);
    (
        raw,
        Some(MessageCodec::new(&server_short, &short, false, 3, n)),
    )
}

/// A healthy CURVE outbox that must keep delivering while hostile clients come and go.
async fn healthy(inbox: &mut Inbox, server: &CurveKeyPair) -> Outbox {
    let out = curve_outbox(inbox, 99, &CurveKeyPair::generate(), server.public());
    accepted(inbox, &ident(99)).await;
    out
}

async fn healthy_still_delivers(inbox: &mut Inbox, out: &Outbox, tag: &'static [u8]) {
    out.try_send(frames![Bytes::from_static(tag)]).unwrap();
    loop {
        let (id, f, _) = next_message(inbox).await;
        if id == ident(99) {
            assert_eq!(f[0], tag);
            return;
        }
    }
}

#[tokio::test]
async fn replayed_nonce_closes_the_connection() {
    let server = CurveKeyPair::generate();
    let mut inbox = curve_inbox(server_cfg(&server)).await;
    let ok = healthy(&mut inbox, &server).await;
    let me = CurveKeyPair::generate();
    let (mut raw, codec) =
        raw_handshake(&inbox, server.public(), &me, &ident(10), Tamper::None).await;
    let mut codec = codec.expect("READY");
    assert_eq!(accepted(&mut inbox, &ident(10)).await, Some(me.public()));
    let mut wire = BytesMut::new();
    codec.seal_into(false, false, b"once", &mut wire).unwrap();
    raw.s.write_all(&wire).await.unwrap();
    let (id, f, key) = next_message(&mut inbox).await;
    assert_eq!(
        (id, &f[0][..], key),
        (ident(10), &b"once"[..], Some(me.public()))
    );
    raw.s.write_all(&wire).await.unwrap(); // the same MESSAGE again
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("replay"), "{reason}");
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"after replay").await;
}

#[tokio::test]
async fn flipped_bit_in_a_message_box_closes_the_connection() {
    let server = CurveKeyPair::generate();
    let mut inbox = curve_inbox(server_cfg(&server)).await;
    let ok = healthy(&mut inbox, &server).await;
    let (mut raw, codec) = raw_handshake(
        &inbox,
        server.public(),
        &CurveKeyPair::generate(),
        &ident(11),
        Tamper::None,
    )
    .await;
    let mut codec = codec.expect("READY");
    accepted(&mut inbox, &ident(11)).await;
    let mut wire = BytesMut::new();
    codec
        .seal_into(false, false, b"tampered", &mut wire)
        .unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 0x10;
    raw.s.write_all(&wire).await.unwrap();
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("cannot open MESSAGE box"), "{reason}");
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"after flip").await;
}

#[tokio::test]
async fn plaintext_frame_after_the_handshake_closes_the_connection() {
    let server = CurveKeyPair::generate();
    let mut inbox = curve_inbox(server_cfg(&server)).await;
    let (mut raw, codec) = raw_handshake(
        &inbox,
        server.public(),
        &CurveKeyPair::generate(),
        &ident(12),
        Tamper::None,
    )
    .await;
    assert!(codec.is_some());
    accepted(&mut inbox, &ident(12)).await;
    raw.send(false, b"not encrypted").await;
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("MESSAGE"), "{reason}");
}

#[tokio::test]
async fn bad_handshakes_fail_with_a_reason_and_others_are_unaffected() {
    let server = CurveKeyPair::generate();
    let cfg = server_cfg(&server);
    let stats = cfg.stats();
    let mut inbox = curve_inbox(cfg).await;
    let ok = healthy(&mut inbox, &server).await;
    let short = SecretKey::generate(&mut zmesh_zmtp::curve::crypto_rng());
    let hello = encode_hello(&short, &server.public(), 1);

    // Truncated HELLO.
    let mut raw = Raw::connect(&inbox).await;
    raw.send(true, &hello[..150]).await;
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("HELLO of 150 bytes"), "{reason}");
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"1").await;

    // HELLO with version 2.0.
    let mut raw = Raw::connect(&inbox).await;
    let mut v2 = hello.to_vec();
    v2[6] = 2;
    raw.send(true, &v2).await;
    let reason = next_failure(&mut inbox).await;
    assert!(
        reason.contains("unsupported CurveZMQ version 2.0"),
        "{reason}"
    );
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"2").await;

    // INITIATE whose vouch names another server.
    let (mut raw, codec) = raw_handshake(
        &inbox,
        server.public(),
        &CurveKeyPair::generate(),
        &ident(13),
        Tamper::VouchForOtherServer,
    )
    .await;
    assert!(codec.is_none(), "no READY for a forged vouch");
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("vouch does not match"), "{reason}");
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"3").await;

    // Garbage instead of HELLO, and a MESSAGE before the handshake.
    let mut raw = Raw::connect(&inbox).await;
    raw.send(true, b"\x07MESSAGE0000000000000000000000000000")
        .await;
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("expected a HELLO"), "{reason}");
    raw.expect_closed().await;
    assert!(stats.protocol_errors() >= 4);
    assert_eq!(stats.refused(), 0);

    // Slow-loris: greeting, then silence; the handshake timeout (1.5 s) closes it.
    let mut raw = Raw::connect(&inbox).await;
    // A command frame announcing 200 bytes, of which 10 arrive.
    let mut partial = vec![0x04, 200];
    partial.extend_from_slice(&hello[..10]);
    raw.s.write_all(&partial).await.unwrap();
    let reason = next_failure(&mut inbox).await;
    assert!(reason.contains("timed out"), "{reason}");
    raw.expect_closed().await;
    healthy_still_delivers(&mut inbox, &ok, b"4").await;
}
