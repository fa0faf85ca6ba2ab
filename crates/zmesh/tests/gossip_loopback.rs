//! Gossip discovery on loopback, beacons off: a zmesh hub, zmesh clients, forwarding, expiry of
//! departed nodes' tuples, secure mode's `endpoint|key` values, and static peers.

use std::collections::HashMap;
use std::time::Duration;

use zmesh::discovery::peers::PeerSpec;
use zmesh::{Node, NodeBuilder};
use zmesh_zmtp::{frames, Bytes, Duplex, DuplexConfig};
use zmesh_zre::gossip::GossipMsg;

mod loopback;
use loopback::{builder, is_enter, is_exit, port, wait_for, WAIT};

/// A loopback node without beacons (each node its own beacon port as well, so beacons could
/// not bring them together even if they were on).
fn quiet(name: &str) -> NodeBuilder {
    builder(name, port()).beacons(false)
}

async fn hub() -> (Node, zmesh::Events, String) {
    let (h, eh) = quiet("hub")
        .gossip_bind("tcp://127.0.0.1:*")
        .start()
        .await
        .unwrap();
    let ep = h.gossip_endpoint().expect("hub endpoint");
    assert!(!ep.ends_with(":*"), "real port: {ep}");
    (h, eh, ep)
}

#[tokio::test]
async fn clients_of_one_hub_meet_each_other_and_the_hub() {
    let (h, mut eh, ep) = hub().await;
    let (a, mut ea) = quiet("a").gossip_connect(&ep).start().await.unwrap();
    let (b, mut eb) = quiet("b").gossip_connect(&ep).start().await.unwrap();
    enters_all(&mut ea, "a", &[b.uuid(), h.uuid()]).await;
    enters_all(&mut eb, "b", &[a.uuid(), h.uuid()]).await;
    enters_all(&mut eh, "hub", &[a.uuid(), b.uuid()]).await;
    // WHISPER over the gossip-found session.
    a.whisper(b.uuid(), vec![Bytes::from("hi")]).unwrap();
    wait_for(
        &mut eb,
        "b gets the whisper",
        |e| matches!(e, zmesh::Event::Whisper { peer, .. } if *peer == a.uuid()),
    )
    .await;
}

/// A client idle far longer than czmq's 1 s hub timeout still hears of later nodes.
#[tokio::test]
async fn an_idle_client_still_learns_late_joiners() {
    let (_h, _eh, ep) = hub().await;
    let (a, mut ea) = quiet("a").gossip_connect(&ep).start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (b, _eb) = quiet("b").gossip_connect(&ep).start().await.unwrap();
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    let _ = a;
}

/// Two hubs joined by gossip: a client of each meets the other (zgossip forwarding).
#[tokio::test]
async fn two_hubs_forward_between_their_clients() {
    let (_h1, _e1, ep1) = hub().await;
    let (h2, _e2) = quiet("hub2")
        .gossip_bind("tcp://127.0.0.1:*")
        .gossip_connect(&ep1)
        .start()
        .await
        .unwrap();
    let ep2 = h2.gossip_endpoint().unwrap();
    let (a, mut ea) = quiet("a").gossip_connect(&ep1).start().await.unwrap();
    let (b, mut eb) = quiet("b").gossip_connect(&ep2).start().await.unwrap();
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eb, "b enters a", |e| is_enter(e, a.uuid())).await;
}

/// Waits until every peer of `want` has entered (in any order).
async fn enters_all(events: &mut zmesh::Events, who: &str, want: &[zmesh::Uuid]) {
    let mut left: Vec<_> = want.to_vec();
    while !left.is_empty() {
        let ev = wait_for(events, &format!("{who} enters {left:?}"), |e| {
            left.iter().any(|u| is_enter(e, *u))
        })
        .await;
        left.retain(|u| !is_enter(&ev, *u));
    }
}

/// Reads what a hub sends a fresh client after HELLO until `want` keys are there.
async fn tuples_from(ep: &str, want: &[String]) -> HashMap<String, String> {
    tuples_over(ep, &DuplexConfig::default(), want).await
}

/// [`tuples_from`] over a connection with these settings (a CURVE client for a secure hub).
async fn tuples_over(ep: &str, cfg: &DuplexConfig, want: &[String]) -> HashMap<String, String> {
    let mut d = Duplex::connect(ep, cfg).await.unwrap();
    d.try_send(frames![Bytes::from(GossipMsg::Hello.encode().unwrap())])
        .unwrap();
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.iter().all(|k| got.contains_key(k)) {
        let m = tokio::time::timeout_at(deadline, d.recv())
            .await
            .expect("hub sent the tuples in time")
            .expect("hub kept the connection");
        if let Ok(GossipMsg::Publish { key, value, .. }) = GossipMsg::decode(&m[0]) {
            got.insert(key, value);
        }
    }
    // The hub sends all tuples at once after HELLO: whatever else there is has arrived by now or
    // is already in our socket.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), d.recv()).await {
        if let Ok(GossipMsg::Publish { key, value, .. }) = GossipMsg::decode(&m[0]) {
            got.insert(key, value);
        }
    }
    got
}

#[tokio::test]
async fn the_hub_publishes_what_zyre_publishes_and_forgets_departed_nodes() {
    let (h, mut eh, ep) = hub().await;
    let (a, _ea) = quiet("a").gossip_connect(&ep).start().await.unwrap();
    let (b, _eb) = quiet("b").gossip_connect(&ep).start().await.unwrap();
    let key = |n: &Node| zmesh::uuid_to_string(&n.uuid());
    // a and b reach the hub in either order.
    enters_all(&mut eh, "hub", &[a.uuid(), b.uuid()]).await;
    let t = tuples_from(&ep, &[key(&h), key(&a), key(&b)]).await;
    // Key = UUID as 32 upper-case hex digits, value = the ZRE endpoint.
    assert_eq!(t[&key(&a)], a.endpoint().unwrap());
    assert_eq!(t[&key(&h)], h.endpoint().unwrap());
    assert_eq!(key(&a).len(), 32);
    assert_eq!(key(&a), key(&a).to_uppercase());
    let gone = key(&a);
    a.stop().await;
    wait_for(&mut eh, "hub sees a leave", |e| is_exit(e, a.uuid())).await;
    // The hub forgets at its next beacon tick (100 ms here): poll a fresh client's view.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = tuples_from(&ep, &[key(&h), key(&b)]).await;
        if !t.contains_key(&gone) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "departed node's tuple still served"
        );
    }
}

#[tokio::test]
async fn secure_nodes_meet_by_gossip_with_endpoint_and_key() {
    let keys: Vec<_> = (0..4).map(|_| zmesh::curve::generate_key_pair()).collect();
    let (h, mut eh) = quiet("hub")
        .secure(keys[0].clone())
        .gossip_bind("tcp://127.0.0.1:*")
        .start()
        .await
        .unwrap();
    let ep = h.gossip_endpoint().unwrap();
    // A secure hub speaks CURVE: its clients give its key, as zyre_gossip_connect_curve.
    let hub_key = z85::encode(keys[0].public().as_bytes());
    let hub = format!("{ep}|{hub_key}");
    let (a, mut ea) = quiet("a")
        .secure(keys[1].clone())
        .gossip_connect(&hub)
        .start()
        .await
        .unwrap();
    let (b, _eb) = quiet("b")
        .secure(keys[2].clone())
        .gossip_connect(&hub)
        .start()
        .await
        .unwrap();
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    wait_for(&mut eh, "hub enters a", |e| is_enter(e, a.uuid())).await;
    let ka = zmesh::uuid_to_string(&a.uuid());
    let curve = DuplexConfig {
        mechanism: zmesh_zmtp::MechanismConfig::Curve(zmesh_zmtp::CurveConfig::client(
            keys[3].clone(),
            keys[0].public(),
        )),
        ..DuplexConfig::default()
    };
    let t = tuples_over(&ep, &curve, std::slice::from_ref(&ka)).await;
    let want = format!(
        "{}|{}",
        a.endpoint().unwrap(),
        z85::encode(keys[1].public().as_bytes())
    );
    assert_eq!(t[&ka], want);
    // A plain (NULL) client gets nothing from a secure hub.
    assert!(Duplex::connect(&ep, &DuplexConfig::default())
        .await
        .is_err());
    // A bad key in the hub string is refused at start.
    let e = quiet("c")
        .secure(keys[3].clone())
        .gossip_connect(format!("{ep}|short"))
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Z85"), "{e}");
}

#[tokio::test]
async fn static_peers_by_uuid_and_by_gossip_endpoint() {
    // By UUID@endpoint: Zyre's require_peer.
    let (a, mut ea) = quiet("a").start().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let a_ep = loop {
        if let Some(ep) = a.endpoint() {
            break ep;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let spec: PeerSpec = format!("{}@{a_ep}", zmesh::uuid_to_string(&a.uuid()))
        .parse()
        .unwrap();
    let (b, mut eb) = quiet("b").peer(spec).start().await.unwrap();
    wait_for(&mut eb, "b enters a", |e| is_enter(e, a.uuid())).await;
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    // By endpoint only: a gossip endpoint, the UUID arrives in the tuple.
    let (_h, _eh, hub_ep) = hub().await;
    let (c, mut ec) = quiet("c")
        .peer(hub_ep.parse().unwrap())
        .start()
        .await
        .unwrap();
    let (d, _ed) = quiet("d")
        .peer(hub_ep.parse().unwrap())
        .start()
        .await
        .unwrap();
    wait_for(&mut ec, "c enters d", |e| is_enter(e, d.uuid())).await;
    let _ = c;
}

#[tokio::test]
async fn bad_gossip_settings_are_refused_at_start() {
    let e = quiet("x")
        .gossip_connect("nonsense")
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("gossip connect"), "{e}");
    // A port already taken.
    let (_h, _eh, ep) = hub().await;
    let e = quiet("y").gossip_bind(&ep).start().await;
    assert!(e.is_err(), "binding a taken port must fail");
}

/// A hub that goes away and comes back at the same endpoint: its clients redial, say HELLO and
/// publish again, so a node that joins the new hub meets them.
#[tokio::test]
async fn clients_redial_a_restarted_hub() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://{}", free.local_addr().unwrap());
    drop(free);
    let (h1, _e1) = quiet("hub1").gossip_bind(&ep).start().await.unwrap();
    let (a, mut ea) = quiet("a").gossip_connect(&ep).start().await.unwrap();
    wait_for(&mut ea, "a enters hub1", |e| is_enter(e, h1.uuid())).await;
    h1.stop().await;
    let (h2, _e2) = quiet("hub2").gossip_bind(&ep).start().await.unwrap();
    let (b, mut eb) = quiet("b").gossip_connect(&ep).start().await.unwrap();
    enters_all(&mut eb, "b", &[a.uuid(), h2.uuid()]).await;
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
}

/// Bad input on a hub's gossip port: answered with INVALID, the link closed, counted.
#[tokio::test]
async fn a_hub_counts_and_refuses_bad_gossip() {
    let (h, _eh, ep) = hub().await;
    let mut d = Duplex::connect(&ep, &DuplexConfig::default())
        .await
        .unwrap();
    d.try_send(frames![Bytes::from_static(b"not zgossip")])
        .unwrap();
    let m = tokio::time::timeout(WAIT, d.recv())
        .await
        .unwrap()
        .expect("INVALID before the close");
    assert_eq!(GossipMsg::decode(&m[0]), Ok(GossipMsg::Invalid));
    assert!(tokio::time::timeout(WAIT, d.recv())
        .await
        .unwrap()
        .is_none());
    // A well-formed tuple that is not a UUID and an endpoint, from a client that said HELLO.
    let d = Duplex::connect(&ep, &DuplexConfig::default())
        .await
        .unwrap();
    d.try_send(frames![Bytes::from(GossipMsg::Hello.encode().unwrap())])
        .unwrap();
    let bogus = GossipMsg::Publish {
        key: "nope".into(),
        value: "elsewhere".into(),
        ttl: 0,
    };
    d.try_send(frames![Bytes::from(bogus.encode().unwrap())])
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.stats().bad_beacons < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad gossip not counted: {}",
            h.stats().bad_beacons
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
