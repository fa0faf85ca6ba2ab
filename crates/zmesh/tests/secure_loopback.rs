//! Secure mode (CURVE, Zyre's `zyre_set_zcert`) end to end on loopback, in one process: two
//! secure nodes meet and talk; allow-lists keep an unlisted node out on both sides until it is
//! listed and the list reloaded; secure and plain nodes on one beacon port ignore each other; a
//! peer admitted with its own key cannot speak as another peer's UUID (zyre#533).
//!
//! Absence ("no ENTER") is never waited for blindly: each test first waits for positive evidence
//! that the excluded node was active and was refused (counters), then checks nothing else came.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use zmesh::curve::{AllowList, Certificate, CurveKeyPair};
use zmesh::{Event, Events, Node, NodeStats, OutboxConfig, Uuid};
use zmesh_zmtp::curve::CurveConfig;
use zmesh_zmtp::{MechanismConfig, Outbox, OutboxState};
use zmesh_zre::ZreMessage;

mod loopback;
use loopback::{builder, is_enter, port, wait_for, WAIT};

/// Reconnects quickly, so a node let in by a reload is not waiting out a 5 s backoff.
fn quick_outboxes() -> OutboxConfig {
    OutboxConfig {
        reconnect_interval_max: Duration::from_millis(300),
        ..OutboxConfig::default()
    }
}

async fn secure_node(name: &str, port: u16, keys: &CurveKeyPair) -> (Node, Events) {
    builder(name, port)
        .secure(keys.clone())
        .outbox_config(quick_outboxes())
        .start()
        .await
        .unwrap()
}

/// Waits until `f` holds for the node's counters.
async fn wait_stats(node: &Node, what: &str, f: impl Fn(&NodeStats) -> bool) -> NodeStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node.stats();
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: timed out; stats {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything in the node's event stream right now.
fn drain(events: &mut Events) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

fn entered(evs: &[Event]) -> Vec<Uuid> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Enter { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "zmesh-secure-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn two_secure_nodes_enter_whisper_and_shout() {
    let p = port();
    let (ka, kb) = (
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
    );
    let (a, mut ea) = secure_node("alice", p, &ka).await;
    let (b, mut eb) = secure_node("bob", p, &kb).await;
    assert_eq!(a.public_key(), Some(ka.public()));
    let ev = wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    // B's HELLO announced its key as Zyre does, and A bound B's UUID to it.
    let Event::Enter { headers, .. } = ev else {
        unreachable!()
    };
    assert!(headers.contains(&("X-PUBLICKEY".into(), kb.public().to_z85())));
    assert_eq!(a.peer_key(b.uuid()), Some(kb.public()));
    assert_eq!(b.peer_key(a.uuid()), Some(ka.public()));
    assert_eq!(a.peer_info(b.uuid()).unwrap().public_key, Some(kb.public()));

    b.join("CHAT").unwrap();
    wait_for(
        &mut ea,
        "join",
        |e| matches!(e, Event::Join { group, .. } if group == "CHAT"),
    )
    .await;
    a.whisper(b.uuid(), vec![Bytes::from("secret whisper")])
        .unwrap();
    let ev = wait_for(&mut eb, "whisper", |e| matches!(e, Event::Whisper { .. })).await;
    assert!(matches!(ev, Event::Whisper { peer, content, .. }
        if peer == a.uuid() && content == vec![Bytes::from("secret whisper")]));
    assert_eq!(
        a.shout("CHAT", vec![Bytes::from("secret shout")]).unwrap(),
        1
    );
    let ev = wait_for(&mut eb, "shout", |e| matches!(e, Event::Shout { .. })).await;
    assert!(matches!(ev, Event::Shout { peer, group, content, .. }
        if peer == a.uuid() && group == "CHAT" && content == vec![Bytes::from("secret shout")]));
    // Requests (the request/reply layer) ride the same encrypted links.
    let mut handler = b.on_request("echo").unwrap();
    tokio::spawn(async move {
        while let Some(req) = handler.recv().await {
            let p = req.payload().clone();
            req.reply(p);
        }
    });
    let reply = tokio::time::timeout(WAIT, a.request(b.uuid(), "echo", "ping"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, Bytes::from("ping"));
    for n in [&a, &b] {
        let s = n.stats();
        assert_eq!(s.engine.impersonations, 0, "{s:?}");
        assert_eq!(s.engine.mode_mismatches, 0, "{s:?}");
        assert_eq!(s.curve_refused, 0, "{s:?}");
    }
    a.stop().await;
    wait_for(
        &mut eb,
        "exit",
        |e| matches!(e, Event::Exit { peer, .. } if *peer == a.uuid()),
    )
    .await;
}

/// A and B allow each other; C (a key of its own, no list of its own) is heard and refused by
/// both, and meets neither until its certificate is added and the lists reloaded.
#[tokio::test]
async fn an_unlisted_node_gets_no_enter_on_either_side_until_listed() {
    let p = port();
    let dir = TempDir::new();
    let (ka, kb, kc) = (
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
    );
    Certificate::new(ka.clone())
        .save_public(dir.0.join("alice.key"))
        .unwrap();
    // B's pair is saved as czmq does: public file plus `_secret` (which the list skips).
    kb.save_cert(dir.0.join("bob.key")).unwrap();
    let list_a = AllowList::from_dir(&dir.0).unwrap();
    let list_b = AllowList::from_dir(&dir.0).unwrap();
    assert_eq!(list_a.len(), 2);
    let start = |name: &'static str, keys: &CurveKeyPair, list: &AllowList| {
        builder(name, p)
            .secure(keys.clone())
            .allow_list(list.clone())
            .outbox_config(quick_outboxes())
            .start()
    };
    let (a, mut ea) = start("alice", &ka, &list_a).await.unwrap();
    let (b, mut eb) = start("bob", &kb, &list_b).await.unwrap();
    let (c, mut ec) = secure_node("carol", p, &kc).await;
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    // Evidence that C is there and refused: A and B heard its beacons (and ignored them), and
    // refused its connections at least twice each (so C has retried after a refusal).
    for n in [&a, &b] {
        wait_stats(n, "carol heard and refused", |s| {
            s.unlisted_sightings >= 2 && s.curve_refused >= 2
        })
        .await;
    }
    assert!(!entered(&drain(&mut ea)).contains(&c.uuid()));
    assert!(!entered(&drain(&mut eb)).contains(&c.uuid()));
    assert_eq!(entered(&drain(&mut ec)), Vec::<Uuid>::new());
    assert!(c.peers().is_empty());
    assert_eq!(a.peers(), vec![b.uuid()]);

    // List C and reload both lists at run time: C meets both, both meet C.
    Certificate::new(kc.clone())
        .save_public(dir.0.join("carol.key"))
        .unwrap();
    assert_eq!(list_a.reload().unwrap(), 3);
    assert_eq!(list_b.reload().unwrap(), 3);
    wait_for(&mut ea, "a sees c", |e| is_enter(e, c.uuid())).await;
    wait_for(&mut eb, "b sees c", |e| is_enter(e, c.uuid())).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = wait_for(&mut ec, "c sees a and b", |e| {
            matches!(e, Event::Enter { .. })
        })
        .await;
        seen.extend(entered(&[ev]));
    }
    seen.sort();
    let mut want = vec![a.uuid(), b.uuid()];
    want.sort();
    assert_eq!(seen, want);
}

/// Two secure and two plain nodes on one beacon port: each pair meets, and nobody meets the
/// other mode's nodes (each counts the other's beacons as unusable).
#[tokio::test]
async fn secure_and_plain_nodes_ignore_each_other() {
    let p = port();
    let (s1, mut es1) = secure_node("s1", p, &zmesh::curve::generate_key_pair()).await;
    let (s2, mut es2) = secure_node("s2", p, &zmesh::curve::generate_key_pair()).await;
    let (p1, mut ep1) = builder("p1", p).start().await.unwrap();
    let (p2, mut ep2) = builder("p2", p).start().await.unwrap();
    wait_for(&mut es1, "s1 sees s2", |e| is_enter(e, s2.uuid())).await;
    wait_for(&mut es2, "s2 sees s1", |e| is_enter(e, s1.uuid())).await;
    wait_for(&mut ep1, "p1 sees p2", |e| is_enter(e, p2.uuid())).await;
    wait_for(&mut ep2, "p2 sees p1", |e| is_enter(e, p1.uuid())).await;
    // Both modes have heard the other's beacons several times (two senders each).
    for n in [&s1, &s2, &p1, &p2] {
        wait_stats(n, "other mode's beacons", |s| s.bad_beacons >= 4).await;
    }
    for (n, e, other) in [
        (&s1, &mut es1, s2.uuid()),
        (&s2, &mut es2, s1.uuid()),
        (&p1, &mut ep1, p2.uuid()),
        (&p2, &mut ep2, p1.uuid()),
    ] {
        assert!(entered(&drain(e)).is_empty(), "{}", n.name());
        assert_eq!(n.peers(), vec![other], "{}", n.name());
        let s = n.stats();
        assert_eq!(s.handshake_failures, 0, "{}: {s:?}", n.name());
    }
    assert_eq!(p1.public_key(), None);
    assert_eq!(p1.peer_key(p2.uuid()), None);
}

/// A plain node pointed straight at a secure node's inbox (no beacons involved): its NULL
/// handshake is refused by the CURVE inbox, counted there, and neither side sees an ENTER.
#[tokio::test]
async fn a_plain_connection_to_a_secure_inbox_is_refused() {
    let p = port();
    let (s, _es) = secure_node("secure", p, &zmesh::curve::generate_key_pair()).await;
    let endpoint = wait_endpoint(&s).await;
    let me = Uuid::new_v4();
    let outbox = Outbox::connect(&endpoint, identity(me), OutboxConfig::default()).unwrap();
    outbox
        .try_send(hello_frames("tcp://127.0.0.1:1", &[]))
        .unwrap();
    wait_stats(&s, "plaintext handshake refused", |st| {
        st.handshake_failures >= 1
    })
    .await;
    assert!(s.peers().is_empty());
    assert!(!matches!(*outbox.state().borrow(), OutboxState::Connected));
}

/// zyre#533 over real sockets: M completes the CURVE handshake with its own (admitted) key but
/// presents B's routing id. Its HELLO claiming B's UUID and its WHISPERs in B's name are refused
/// and counted; B's own messages keep arriving.
#[tokio::test]
async fn a_peer_cannot_speak_as_another_peers_uuid() {
    let p = port();
    let (ka, kb) = (
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
    );
    let (a, mut ea) = secure_node("alice", p, &ka).await;
    let (b, _eb) = secure_node("bob", p, &kb).await;
    wait_for(&mut ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    let a_endpoint = wait_endpoint(&a).await;

    // The impostor's connection to A, authenticated as its own key, identity 0x01 + B's UUID.
    let km = zmesh::curve::generate_key_pair();
    let impostor = Outbox::connect(
        &a_endpoint,
        identity(b.uuid()),
        OutboxConfig {
            mechanism: MechanismConfig::Curve(CurveConfig::client(km.clone(), ka.public())),
            ..OutboxConfig::default()
        },
    )
    .unwrap();
    // A HELLO as B announcing the impostor's key (which its connection proves), then a WHISPER.
    let headers = [("X-PUBLICKEY", km.public().to_z85())];
    impostor
        .try_send(hello_frames("tcp://127.0.0.1:1", &headers))
        .unwrap();
    let whisper = ZreMessage::Whisper {
        content: vec![Bytes::from("forged")].into(),
    };
    impostor.try_send(whisper.encode(2).unwrap()).unwrap();
    wait_stats(&a, "impostor refused", |s| s.engine.impersonations >= 2).await;
    assert!(drain(&mut ea).iter().all(|e| !matches!(
        e,
        Event::Whisper { .. } | Event::Exit { .. } | Event::Enter { .. }
    )));
    assert_eq!(a.peers(), vec![b.uuid()]);
    assert_eq!(a.peer_key(b.uuid()), Some(kb.public()));
    drop(impostor);
    // The real B still gets through.
    b.whisper(a.uuid(), vec![Bytes::from("real")]).unwrap();
    let ev = wait_for(&mut ea, "b's whisper", |e| {
        matches!(e, Event::Whisper { .. })
    })
    .await;
    assert!(matches!(ev, Event::Whisper { peer, content, .. }
        if peer == b.uuid() && content == vec![Bytes::from("real")]));
}

/// A node that crashes and comes back with the same UUID but a new key is refused while the old
/// binding lives, then seen again once it has expired; with the same key it is seen at once.
#[tokio::test]
async fn a_restart_under_a_new_key_is_seen_once_the_old_binding_expires() {
    let p = port();
    let fast = |name: &str, keys: &CurveKeyPair| {
        builder(name, p)
            .secure(keys.clone())
            .outbox_config(quick_outboxes())
            .evasive_timeout(Duration::from_millis(300))
            .expired_timeout(Duration::from_millis(1500))
    };
    let (ka, k1, k2) = (
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
    );
    let ub = Uuid::new_v4();
    let (a, mut ea) = fast("alice", &ka).start().await.unwrap();
    let (b, _eb) = fast("bob", &k1).uuid(ub).start().await.unwrap();
    wait_for(&mut ea, "a sees b", |e| is_enter(e, ub)).await;
    // Same UUID, same key: a crash and restart is an ordinary restart.
    b.abort().await;
    let (b, _eb) = fast("bob", &k1).uuid(ub).start().await.unwrap();
    wait_for(&mut ea, "a sees b again", |e| is_enter(e, ub)).await;
    assert_eq!(a.peer_key(ub), Some(k1.public()));
    // Same UUID, new key: refused until the old binding expires, then bound to the new key.
    b.abort().await;
    let (_b, mut eb) = fast("bob", &k2).uuid(ub).start().await.unwrap();
    wait_for(&mut eb, "new b sees a", |e| is_enter(e, a.uuid())).await;
    let mut enter = None;
    while enter.is_none() {
        let ev = wait_for(&mut ea, "a sees new b", |e| {
            matches!(e, Event::Enter { .. } | Event::Exit { .. })
        })
        .await;
        if is_enter(&ev, ub) {
            enter = Some(ev);
        }
    }
    assert_eq!(a.peer_key(ub), Some(k2.public()));
    assert!(a.stats().engine.impersonations + a.stats().engine.key_conflicts > 0);
}

#[tokio::test]
async fn an_allow_list_without_keys_is_a_config_error() {
    let r = builder("x", port())
        .allow_list(AllowList::new())
        .start()
        .await;
    assert!(matches!(r, Err(zmesh::Error::Config(_))), "{r:?}");
    // Zyre ignores keys whose first byte is 0, so a node with one would be invisible.
    let keys = (0u16..)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..2].copy_from_slice(&i.to_be_bytes());
            CurveKeyPair::from_secret_bytes(secret)
        })
        .find(|k| k.public().as_bytes()[0] == 0)
        .unwrap();
    let r = builder("x", port()).secure(keys).start().await;
    assert!(matches!(r, Err(zmesh::Error::Config(_))), "{r:?}");
}

async fn wait_endpoint(node: &Node) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(e) = node.endpoint() {
            return e;
        }
        assert!(Instant::now() < deadline, "node never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn identity(uuid: Uuid) -> Bytes {
    let mut id = vec![1u8];
    id.extend_from_slice(uuid.as_bytes());
    Bytes::from(id)
}

fn hello_frames(endpoint: &str, headers: &[(&str, String)]) -> Vec<Bytes> {
    ZreMessage::Hello {
        endpoint: endpoint.into(),
        groups: vec![],
        status: 0,
        name: "impostor".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
    .encode(1)
    .unwrap()
    .to_vec()
}
