//! Named services through real sockets on loopback: offers seen everywhere, calls balanced over
//! workers, a worker killed mid-call (the retry reaches the other one), stats, a broker relaying
//! calls, and a broker drained politely.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use zmesh::{CallError, Node, Via};

mod loopback;
use loopback::{builder, port, WAIT};

async fn start(name: &str, port: u16, broker: bool) -> Node {
    let (node, mut events) = builder(name, port).broker(broker).start().await.unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    node
}

/// Answers `service` with "<name>:<payload>" after `delay`; returns how many it handled.
fn work(node: &Node, service: &str, delay: Duration) -> tokio::task::JoinHandle<usize> {
    let mut calls = node.offer(service).unwrap();
    let name = node.name().to_owned();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(call) = calls.recv().await {
            n += 1;
            let reply = format!("{name}:{}", String::from_utf8_lossy(call.payload()));
            if delay.is_zero() {
                let _ = call.reply(reply);
            } else {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = call.reply(reply);
                });
            }
        }
        n
    })
}

async fn wait_offers(node: &Node, service: &str, workers: usize, brokers: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = node.services();
        let e = list.iter().find(|e| e.service == service);
        if e.is_some_and(|e| e.workers.len() == workers && e.brokers.len() == brokers) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "offers of {service} never showed up: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_balanced_and_survive_a_killed_worker() {
    let p = port();
    let client = start("client", p, false).await;
    let w1 = start("w1", p, false).await;
    let w2 = start("w2", p, false).await;
    work(&w1, "echo", Duration::ZERO);
    work(&w2, "echo", Duration::from_millis(300));
    wait_offers(&client, "echo", 2, 0).await;

    // Balanced: round robin among equally loaded workers.
    let mut by_worker = std::collections::BTreeMap::new();
    for i in 0..10 {
        let r = client.call("echo", format!("{i}")).await.unwrap();
        assert!(r.payload.ends_with(format!(":{i}").as_bytes()));
        *by_worker.entry(r.info.worker.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_worker.values().copied().collect::<Vec<_>>(), vec![5, 5]);

    // A call in progress at w2 (slow) when w2 dies: the retry reaches w1.
    let mut pending = Vec::new();
    for i in 0..4 {
        pending.push(tokio::spawn(
            client
                .call("echo", format!("k{i}"))
                .retries(3)
                .per_try(Duration::from_secs(1))
                .timeout(Duration::from_secs(8))
                .send(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    w2.abort().await;
    for p in pending {
        let r = p.await.unwrap().unwrap();
        assert!(r.payload.starts_with(b"w1:"), "{:?}", r.payload);
    }

    // Stats: w1 counted its calls.
    let stats = client.service_stats(Duration::from_secs(3)).await.unwrap();
    let w1s = stats
        .iter()
        .find(|s| s.peer == w1.uuid())
        .expect("w1 answers");
    assert!(w1s.stats.services[0].requests >= 7);

    // A service nobody offers fails at once.
    let e = client.call("nobody", "x").await.unwrap_err();
    assert_eq!(e.error, CallError::NoService);
    let e = client.call("bad name", "x").await.unwrap_err();
    assert!(matches!(e.error, CallError::InvalidName(_)));
    for n in [client, w1] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_relays_and_drains() {
    let p = port();
    let broker = start("broker", p, true).await;
    let client = start("client", p, false).await;
    let w = start("w", p, false).await;
    work(&w, "slow", Duration::from_millis(300));
    wait_offers(&client, "slow", 1, 1).await;
    let r = client.call("slow", "a").via(Via::Brokers).await.unwrap();
    assert_eq!(r.payload, Bytes::from_static(b"w:a"));
    assert_eq!(r.info.broker, Some(broker.uuid()));
    assert_eq!(r.info.worker, Some(w.uuid()));

    // Drain while a call is held: it finishes, then the broker has nothing.
    let held = tokio::spawn(client.call("slow", "b").via(Via::Brokers).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(broker.drain(Duration::from_secs(5)).await.unwrap());
    assert_eq!(
        held.await.unwrap().unwrap().payload,
        Bytes::from_static(b"w:b")
    );
    // Drained: no broker offers it any more; a brokers-only call finds nobody.
    wait_offers(&client, "slow", 1, 0).await;
    let e = client
        .call("slow", "c")
        .via(Via::Brokers)
        .await
        .unwrap_err();
    assert_eq!(e.error, CallError::NoService);
    for n in [broker, client, w] {
        n.stop().await;
    }
}

/// A free TCP port on loopback (bound and released: the broker binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node with no beacon at all: it meets only the brokers it is configured with or learns.
async fn beaconless(name: &str, brokers: &[String], broker_at: Option<&str>) -> Node {
    let mut b = zmesh::Node::builder()
        .name(name)
        .interface("lo".parse().unwrap())
        .beacons(false)
        .beacon_interval(Duration::from_millis(100))
        .brokers(brokers)
        .unwrap();
    if let Some(e) = broker_at {
        b = b.broker_at(e).unwrap();
    }
    let (node, mut events) = b.start().await.unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    node
}

async fn wait_brokers(node: &Node, n: usize) {
    let deadline = Instant::now() + WAIT;
    while node.brokers().len() < n {
        assert!(
            Instant::now() < deadline,
            "brokers never learned: {:?}",
            node.brokers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_brokers_gossip_and_fail_over_without_loss() {
    let e1 = format!("tcp://127.0.0.1:{}", free_port());
    let e2 = format!("tcp://127.0.0.1:{}", free_port());
    let b1 = beaconless("b1", &[], Some(&e1)).await;
    assert_eq!(b1.uuid(), zmesh::broker_uuid(&e1));
    let b2 = beaconless("b2", std::slice::from_ref(&e1), Some(&e2)).await;
    // The client knows only b1, the worker only b2: each learns the other broker by gossip.
    let client = beaconless("client", std::slice::from_ref(&e1), None).await;
    let w = beaconless("w", std::slice::from_ref(&e2), None).await;
    work(&w, "slow", Duration::from_millis(400));
    wait_brokers(&client, 2).await;
    wait_brokers(&w, 2).await;
    wait_offers(&client, "slow", 0, 2).await;
    assert!(
        client.peer_info(w.uuid()).is_none(),
        "no beacon: client and worker never meet"
    );

    let r = client.call("slow", "a").await.unwrap();
    assert_eq!(r.payload, Bytes::from_static(b"w:a"));
    assert_eq!(r.info.worker, Some(w.uuid()));

    // Calls held by a broker that dies: retried through the other, processed once.
    let mut pending = Vec::new();
    for i in 0..6 {
        pending.push(
            client
                .call("slow", format!("k{i}"))
                .retries(4)
                .per_try(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .send(),
        );
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    b1.abort().await;
    for (i, p) in pending.into_iter().enumerate() {
        let r = p.await.unwrap();
        assert_eq!(r.payload, Bytes::from(format!("w:k{i}")));
        assert_eq!(r.info.broker, Some(b2.uuid()));
    }
    let stats = w.service_stats(Duration::from_secs(1)).await.unwrap();
    let own = &stats[0].stats.services[0];
    assert_eq!(
        own.requests, 7,
        "every call processed exactly once: {own:?}"
    );
    for n in [b2, client, w] {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_secure_node_needs_the_brokers_key() {
    let r = zmesh::Node::builder()
        .interface("lo".parse().unwrap())
        .secure(zmesh::curve::CurveKeyPair::generate())
        .brokers(&["tcp://127.0.0.1:7999"])
        .unwrap()
        .start()
        .await;
    let Err(e) = r else {
        panic!("a secure node with a keyless broker started");
    };
    assert!(e.to_string().contains("needs its public key"), "{e}");
    assert!(zmesh::parse_broker("tcp://127.0.0.1:7999|not-a-key").is_err());
}
