//! End-to-end tests of zmesh nodes on loopback, in one process: discovery, groups, WHISPER/SHOUT,
//! polite stop, crash expiry, restart, and hostile input through real sockets.
//!
//! Every test pins the interface to `lo` and uses its own beacon port, so tests can run in parallel.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{timeout, Instant};
use zmesh::{Event, Uuid};
use zmesh_zmtp::{Outbox, OutboxConfig};
use zmesh_zre::ZreMessage;

mod loopback;
use loopback::{builder, is_enter, is_exit, pair, port, wait_for, WAIT};

#[tokio::test]
async fn two_nodes_discover_each_other_with_headers() {
    let p = port();
    let (a, mut ea) = builder("alice", p)
        .header("X-ROLE", "a")
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("bob", p)
        .header("X-ROLE", "b")
        .start()
        .await
        .unwrap();
    let ev = wait_for(&mut ea, "enter", |e| is_enter(e, b.uuid())).await;
    let Event::Enter {
        name,
        headers,
        endpoint,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(name, "bob");
    assert!(headers.contains(&("X-ROLE".to_string(), "b".to_string())));
    assert_eq!(Some(endpoint), b.endpoint());
    assert!(b.endpoint().unwrap().starts_with("tcp://127.0.0.1:"));
    assert_eq!(a.peers(), vec![b.uuid()]);
    assert_eq!(a.peer_name(b.uuid()).as_deref(), Some("bob"));
    assert_eq!(a.peer_header(b.uuid(), "X-ROLE").as_deref(), Some("b"));
    assert_eq!(a.peer_endpoint(b.uuid()), b.endpoint());
    assert_eq!(a.interface().unwrap().name, "lo");
}

#[tokio::test]
async fn join_whisper_shout_leave() {
    let ((a, mut ea), (b, mut eb)) = pair(port()).await;
    a.join("CHAT").unwrap();
    wait_for(
        &mut eb,
        "join",
        |e| matches!(e, Event::Join { group, .. } if group == "CHAT"),
    )
    .await;
    assert_eq!(b.peers_by_group("CHAT"), vec![a.uuid()]);
    assert_eq!(b.peer_groups(), vec!["CHAT".to_string()]);
    assert_eq!(a.own_groups(), vec!["CHAT".to_string()]);

    b.whisper(a.uuid(), vec![Bytes::from("one"), Bytes::from("two")])
        .unwrap();
    let ev = wait_for(&mut ea, "whisper", |e| matches!(e, Event::Whisper { .. })).await;
    let Event::Whisper { peer, content, .. } = ev else {
        unreachable!()
    };
    assert_eq!(peer, b.uuid());
    assert_eq!(content, vec![Bytes::from("one"), Bytes::from("two")]);

    // b is not in CHAT but may shout to it; a receives.
    assert_eq!(b.shout("CHAT", vec![Bytes::from("hey")]).unwrap(), 1);
    let ev = wait_for(&mut ea, "shout", |e| matches!(e, Event::Shout { .. })).await;
    assert!(
        matches!(ev, Event::Shout { group, content, .. } if group == "CHAT" && content == vec![Bytes::from("hey")])
    );
    // a shouting to CHAT reaches nobody (b is not in it): not an error.
    assert_eq!(a.shout("CHAT", vec![Bytes::from("x")]).unwrap(), 0);

    a.leave("CHAT").unwrap();
    wait_for(
        &mut eb,
        "leave",
        |e| matches!(e, Event::Leave { group, .. } if group == "CHAT"),
    )
    .await;
    assert!(b.peers_by_group("CHAT").is_empty());
}

#[tokio::test]
async fn user_errors_are_clear() {
    let (a, _ea) = builder("alice", port()).start().await.unwrap();
    assert!(matches!(
        a.join(""),
        Err(zmesh::Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.join(&"g".repeat(256)),
        Err(zmesh::Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.whisper(Uuid::new_v4(), vec![Bytes::from("x")]),
        Err(zmesh::Error::UnknownPeer(_))
    ));
    assert!(matches!(
        a.whisper(Uuid::new_v4(), vec![]),
        Err(zmesh::Error::EmptyContent)
    ));
    assert!(builder("x", port())
        .beacon_interval(Duration::ZERO)
        .start()
        .await
        .is_err());
    assert!(builder(&"n".repeat(300), port()).start().await.is_err());
}

#[tokio::test]
async fn polite_stop_is_seen_at_once() {
    let ((a, mut ea), (b, mut eb)) = pair(port()).await;
    let t = Instant::now();
    b.stop().await;
    wait_for(&mut ea, "exit", |e| is_exit(e, b.uuid())).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "EXIT took {:?}",
        t.elapsed()
    );
    wait_for(&mut eb, "stop", |e| matches!(e, Event::Stop { .. })).await;
    assert!(
        timeout(WAIT, eb.recv()).await.unwrap().is_none(),
        "stream ends after STOP"
    );
    assert!(a.peers().is_empty());
}

/// A polite stop sends exactly one leave beacon (port 0): a second one makes Pyre log "We don't
/// know peer id" and zyre.js emit a second EXIT without a name (it creates a peer from the leave
/// beacon of a peer it already removed). Counted by a UDP socket of our own on the beacon port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polite_stop_sends_one_leave_beacon() {
    use socket2::{Domain, Protocol, Socket, Type};
    let p = port();
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    sock.set_reuse_address(true).unwrap();
    sock.set_reuse_port(true).unwrap();
    sock.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], p)).into())
        .unwrap();
    let sock: std::net::UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (a, _ea) = builder("alice", p).start().await.unwrap();
    let me = a.uuid();
    // Read beacons of `me` until `until`; returns (ordinary, leave) counts.
    let count = |until: std::time::Instant, stop_at_first: bool| {
        let (mut ordinary, mut leave) = (0, 0);
        let mut buf = [0u8; 256];
        while std::time::Instant::now() < until {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(b) = zmesh_zre::Beacon::decode(&buf[..n]) else {
                continue;
            };
            if b.uuid != me {
                continue;
            }
            if b.port == 0 {
                leave += 1;
            } else {
                ordinary += 1;
                if stop_at_first {
                    break;
                }
            }
        }
        (ordinary, leave)
    };
    // The socket hears the node's beacons.
    let deadline = std::time::Instant::now() + WAIT;
    let (ordinary, _) = tokio::task::block_in_place(|| count(deadline, true));
    assert_eq!(ordinary, 1, "no beacon from the node within {WAIT:?}");
    a.stop().await;
    // Everything the stop sent is out once it returned; half a second covers loopback delivery.
    let until = std::time::Instant::now() + Duration::from_millis(500);
    let (_, leave) = tokio::task::block_in_place(|| count(until, false));
    assert_eq!(leave, 1, "leave beacons after a polite stop");
}

#[tokio::test]
async fn crashed_peer_expires() {
    let p = port();
    let (a, mut ea) = builder("alice", p)
        .evasive_timeout(Duration::from_millis(300))
        .expired_timeout(Duration::from_millis(900))
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("bob", p).start().await.unwrap();
    wait_for(&mut ea, "enter", |e| is_enter(e, b.uuid())).await;
    let t = Instant::now();
    b.abort().await;
    wait_for(
        &mut ea,
        "evasive",
        |e| matches!(e, Event::Evasive { peer, .. } if *peer == b.uuid()),
    )
    .await;
    wait_for(&mut ea, "exit", |e| is_exit(e, b.uuid())).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "expired too early: {took:?}"
    );
    assert!(a.peers().is_empty());
}

#[tokio::test]
async fn healthy_idle_peer_never_evasive() {
    // Short timeouts, but with room for a loaded CI machine: the default ping interval is 40% of the
    // evasive timeout (600 ms of 1.5 s), so a healthy peer is refreshed ~2.5 times per period.
    let p = port();
    let evasive = Duration::from_millis(1500);
    let (_a, mut ea) = builder("alice", p)
        .evasive_timeout(evasive)
        .expired_timeout(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("bob", p)
        .evasive_timeout(evasive)
        .start()
        .await
        .unwrap();
    wait_for(&mut ea, "enter", |e| is_enter(e, b.uuid())).await;
    // Four evasive periods of idleness: the proactive PING keeps the peer fresh.
    let quiet = timeout(
        evasive * 4,
        wait_for(&mut ea, "evasive", |e| {
            matches!(
                e,
                Event::Evasive { .. } | Event::Silent { .. } | Event::Exit { .. }
            )
        }),
    )
    .await;
    assert!(
        quiet.is_err(),
        "healthy idle peer flapped: {:?}",
        quiet.ok()
    );
}

#[tokio::test]
async fn restart_with_same_uuid_is_exit_then_enter() {
    let p = port();
    let (a, mut ea) = builder("alice", p).start().await.unwrap();
    let id = Uuid::new_v4();
    let (b, _eb) = builder("bob", p).uuid(id).start().await.unwrap();
    wait_for(&mut ea, "enter", |e| is_enter(e, id)).await;
    b.abort().await;
    // Restart before alice expires it: the new HELLO from a ready peer means "restarted".
    let (_b2, _eb2) = builder("bob", p).uuid(id).start().await.unwrap();
    wait_for(&mut ea, "exit", |e| is_exit(e, id)).await;
    wait_for(&mut ea, "re-enter", |e| is_enter(e, id)).await;
    assert_eq!(a.peers(), vec![id]);
}

#[tokio::test]
async fn many_nodes_full_mesh() {
    let p = port();
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(builder(&format!("n{i}"), p).start().await.unwrap());
    }
    let uuids: Vec<Uuid> = nodes.iter().map(|(n, _)| n.uuid()).collect();
    for (node, events) in nodes.iter_mut() {
        let mut want: std::collections::HashSet<Uuid> = uuids
            .iter()
            .copied()
            .filter(|u| *u != node.uuid())
            .collect();
        while !want.is_empty() {
            if let Event::Enter { peer, .. } =
                wait_for(events, "mesh", |e| matches!(e, Event::Enter { .. })).await
            {
                want.remove(&peer);
            }
        }
    }
}

// ---- hostile input through real sockets ---------------------------------------------------

/// A raw ZRE "peer" made from the transport alone, to send exactly the bytes we want.
fn raw_peer(target: &str, uuid: Uuid) -> Outbox {
    let mut id = vec![1u8];
    id.extend_from_slice(uuid.as_bytes());
    Outbox::connect(target, Bytes::from(id), OutboxConfig::default()).unwrap()
}

fn hello(endpoint: &str, status: u8) -> ZreMessage {
    ZreMessage::Hello {
        endpoint: endpoint.into(),
        groups: vec![],
        status,
        name: "raw".into(),
        headers: vec![],
    }
}

#[tokio::test]
async fn garbage_beacons_and_tcp_do_not_hurt() {
    let p = port();
    let ((a, mut ea), (b, _eb)) = pair(p).await;
    // Garbage and wrong-version datagrams to the beacon port, over loopback broadcast.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_broadcast(true).unwrap();
    let target = ("127.255.255.255", p);
    sock.send_to(b"garbage", target).unwrap();
    sock.send_to(b"ZRE\x02aaaaaaaaaaaaaaaa\x00\x01", target)
        .unwrap();
    sock.send_to(&[0u8; 200], target).unwrap();
    // Garbage TCP to the inbox.
    let ep = a.endpoint().unwrap();
    let addr = zmesh::endpoint_addr(&ep).unwrap();
    for _ in 0..20 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n this is not zmtp at all........................................");
    }
    // Counted, and the mesh still works.
    let deadline = Instant::now() + WAIT;
    while a.stats().bad_beacons < 3 || a.stats().handshake_failures < 20 {
        assert!(Instant::now() < deadline, "counters: {:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.whisper(a.uuid(), vec![Bytes::from("still here")])
        .unwrap();
    wait_for(&mut ea, "whisper after garbage", |e| {
        matches!(e, Event::Whisper { .. })
    })
    .await;
}

#[tokio::test]
async fn protocol_violations_drop_only_the_offender() {
    let ((a, mut ea), (b, _eb)) = pair(port()).await;
    let ep = a.endpoint().unwrap();

    // 1. First message not HELLO: ignored, counted, no ENTER.
    let u1 = Uuid::new_v4();
    let o1 = raw_peer(&ep, u1);
    o1.try_send(
        ZreMessage::Whisper {
            content: vec![Bytes::from("sneaky")].into(),
        }
        .encode(1)
        .unwrap(),
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while a.stats().engine.not_hello_first == 0 {
        assert!(Instant::now() < deadline, "not counted: {:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2. Sequence gap: HELLO (seq 1), then a WHISPER with seq 5 -> peer removed with EXIT.
    let u2 = Uuid::new_v4();
    let o2 = raw_peer(&ep, u2);
    o2.try_send(hello("tcp://127.0.0.1:1", 0).encode(1).unwrap())
        .unwrap();
    wait_for(&mut ea, "raw enter", |e| is_enter(e, u2)).await;
    o2.try_send(
        ZreMessage::Whisper {
            content: vec![Bytes::from("gap")].into(),
        }
        .encode(5)
        .unwrap(),
    )
    .unwrap();
    wait_for(&mut ea, "exit on gap", |e| is_exit(e, u2)).await;

    // 3. Status mismatch: HELLO status 0, then JOIN with status 7 (should be 1) -> EXIT, no panic.
    let u3 = Uuid::new_v4();
    let o3 = raw_peer(&ep, u3);
    o3.try_send(hello("tcp://127.0.0.1:2", 0).encode(1).unwrap())
        .unwrap();
    wait_for(&mut ea, "raw enter 3", |e| is_enter(e, u3)).await;
    o3.try_send(
        ZreMessage::Join {
            group: "G".into(),
            status: 7,
        }
        .encode(2)
        .unwrap(),
    )
    .unwrap();
    wait_for(&mut ea, "exit on status mismatch", |e| is_exit(e, u3)).await;

    // The honest peer is unaffected.
    assert!(a.peers().contains(&b.uuid()));
    b.whisper(a.uuid(), vec![Bytes::from("fine")]).unwrap();
    wait_for(
        &mut ea,
        "honest whisper",
        |e| matches!(e, Event::Whisper { peer, .. } if *peer == b.uuid()),
    )
    .await;
    let s = a.stats().engine;
    assert!(s.sequence_gaps >= 1 && s.status_mismatches >= 1, "{s:?}");
}

#[tokio::test]
async fn slow_application_does_not_stop_the_node() {
    let p = port();
    let (a, mut ea) = builder("alice", p).event_capacity(8).start().await.unwrap();
    let (b, mut eb) = builder("bob", p).start().await.unwrap();
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    // alice's application stops reading; bob floods her with whispers.
    for i in 0..100 {
        b.whisper(a.uuid(), vec![Bytes::from(format!("m{i}"))])
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while a.stats().dropped_events == 0 {
        assert!(
            Instant::now() < deadline,
            "no drops counted: {:?}",
            a.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // alice still answers: bob sees her as present and she still hears new peers.
    assert!(b.peers().contains(&a.uuid()));
    drop(ea);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_wait_applies_back_pressure_instead_of_dropping_the_peer() {
    // A tiny outgoing queue (8 messages): plain `whisper` would overflow it and drop the peer;
    // `whisper_wait` waits for room, so every message arrives and nobody leaves.
    let p = port();
    let small = zmesh_zmtp::OutboxConfig {
        max_queued_messages: 8,
        ..zmesh_zmtp::OutboxConfig::default()
    };
    let (a, mut ea) = builder("alice", p)
        .event_capacity(100_000)
        .start()
        .await
        .unwrap();
    let (b, mut eb) = builder("bob", p)
        .outbox_config(small)
        .start()
        .await
        .unwrap();
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    const N: usize = 20_000;
    let to = a.uuid();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            b.whisper_wait(to, vec![Bytes::from(vec![i as u8; 512])])
                .await
                .unwrap_or_else(|e| panic!("whisper {i}: {e}"));
        }
        b
    });
    let mut got = 0;
    while got < N {
        match wait_for(&mut ea, "whisper", |e| {
            matches!(e, Event::Whisper { .. } | Event::Exit { .. })
        })
        .await
        {
            Event::Whisper { content, .. } => {
                assert_eq!(content[0][0], got as u8, "order");
                got += 1;
            }
            other => panic!("peer left under back-pressure: {other:?}"),
        }
    }
    let b = sender.await.unwrap();
    assert_eq!(b.stats().send_failures, 0);
    assert!(a.peers().contains(&b.uuid()));
}

#[tokio::test]
async fn an_application_waiting_on_events_reads_the_inbox_itself() {
    // The inline receive (`node/receive.rs`): alice's application waits on her events, so the
    // WHISPERs are read by that wait itself (counted), not handed over by the node task.
    let p = port();
    let ((a, mut ea), (b, _eb)) = pair(p).await;
    let before = a.stats().inline_receives;
    for i in 0..20u8 {
        b.whisper(a.uuid(), vec![Bytes::from(vec![i])]).unwrap();
        match wait_for(&mut ea, "whisper", |e| matches!(e, Event::Whisper { .. })).await {
            Event::Whisper { content, .. } => assert_eq!(content[0][0], i, "order"),
            _ => unreachable!(),
        }
    }
    let after = a.stats().inline_receives;
    assert!(after > before, "no inline receive: {:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_node_task_receives_together_keep_order_and_lose_nothing() {
    // On two worker threads the application's inline receive and the node task drain the same
    // inbox concurrently: a flood still arrives whole, in order, without an EXIT. The sender
    // pauses between bursts so that the reader keeps running dry and waiting (the inline
    // receive's moment) while the node task is woken by the same input.
    let p = port();
    let (a, mut ea) = builder("alice", p)
        .event_capacity(200_000)
        .start()
        .await
        .unwrap();
    let (b, mut eb) = builder("bob", p).start().await.unwrap();
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    const N: u32 = 100_000;
    let to = a.uuid();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            b.whisper_wait(to, vec![Bytes::copy_from_slice(&i.to_be_bytes())])
                .await
                .unwrap_or_else(|e| panic!("whisper {i}: {e}"));
            if i % 2_000 == 1_999 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        b
    });
    let reader = tokio::spawn(async move {
        let mut next = 0u32;
        while next < N {
            match wait_for(&mut ea, "whisper", |e| {
                matches!(e, Event::Whisper { .. } | Event::Exit { .. })
            })
            .await
            {
                Event::Whisper { content, .. } => {
                    let got = u32::from_be_bytes(content[0][..4].try_into().unwrap());
                    assert_eq!(got, next, "order");
                    next += 1;
                }
                other => panic!("peer left during the flood: {other:?}"),
            }
        }
        ea
    });
    let b = sender.await.unwrap();
    let _ea = reader.await.unwrap();
    let s = a.stats();
    assert_eq!(s.dropped_events, 0, "{s:?}");
    assert_eq!(s.engine.sequence_gaps, 0, "{s:?}");
    assert!(a.peers().contains(&b.uuid()));
    eprintln!("inline receives: {}", s.inline_receives);
}
