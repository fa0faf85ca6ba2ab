//! The distributed event emitter through real sockets on loopback: interest-based delivery and
//! the wildcard rules, per-publisher order, local delivery, retained values for late
//! subscribers, `once`, unsubscribing by dropping, a slow subscriber that drops its oldest
//! events (counted), and one that back-pressures the publisher without losing anything.

use std::time::Duration;

use tokio::time::Instant;
use zmesh::{Emitted, Error, Node, OnOptions, Overflow};

mod loopback;
use loopback::{builder, port, WAIT};

async fn node(name: &str, port: u16, window: Option<u32>) -> Node {
    let mut b = builder(name, port);
    if let Some(w) = window {
        b = b.emitter_window(w);
    }
    let (node, mut events) = b.start().await.unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    node
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next(on: &mut zmesh::On) -> Emitted {
    tokio::time::timeout(WAIT, on.recv())
        .await
        .expect("an event")
        .expect("stream open")
}

#[tokio::test]
async fn interest_wildcards_order_local_delivery_and_unsubscribe() {
    let p = port();
    let publ = node("pub", p, None).await;
    let a = node("a", p, None).await;
    let b = node("b", p, None).await;
    let mut on_a = a.on("s.*").unwrap();
    let mut on_b = b.on("**").unwrap(); // nanomitter's catch-all "*"
    let mut one_seg = b.on("*").unwrap(); // exactly one segment
    let mut local = publ.on("s.**").unwrap();
    until("subscriptions known", || publ.subscribers("s.x").len() == 2).await;
    assert_eq!(publ.subscribers("t"), vec![b.uuid()]);
    for i in 0..100u32 {
        assert_eq!(publ.emit("s.x", i.to_string()).unwrap(), 2);
    }
    publ.emit("t", "single").unwrap();
    for i in 0..100u32 {
        for (on, from) in [
            (&mut on_a, Some(publ.uuid())),
            (&mut on_b, Some(publ.uuid())),
            (&mut local, None),
        ] {
            let ev = next(on).await;
            assert_eq!(
                (ev.topic.as_str(), ev.payload.as_ref()),
                ("s.x", i.to_string().as_bytes())
            );
            assert_eq!(ev.publisher, from, "local events come from this node");
        }
    }
    let ev = next(&mut on_b).await;
    assert_eq!((ev.topic.as_str(), ev.publisher), ("t", Some(publ.uuid())));
    let ev = next(&mut one_seg).await;
    assert_eq!(ev.topic, "t", "`*` matches one segment only");
    // Nobody wants it: nothing sent.
    assert_eq!(
        publ.emit("u.v.w", "x").unwrap(),
        1,
        "only the catch-all of b"
    );
    // Dropping the stream unsubscribes: the publisher stops sending to a.
    drop(on_a);
    until("a unsubscribed", || {
        publ.subscribers("s.x") == vec![b.uuid()]
    })
    .await;
    assert!(matches!(publ.emit("s..x", ""), Err(Error::InvalidName(_))));
    assert!(a.stats().emitter.unwanted <= 1);
}

#[tokio::test]
async fn retained_values_reach_late_subscribers_and_once_waits_for_one() {
    let p = port();
    let publ = node("pub", p, None).await;
    let sub = node("sub", p, None).await;
    until("peers", || {
        publ.peers().len() == 1 && sub.peers().len() == 1
    })
    .await;
    publ.emit_retained("cfg.mode", "v1").unwrap();
    publ.emit_retained("cfg.mode", "v2").unwrap();
    publ.emit("cfg.other", "not kept").unwrap();
    let mut plain = sub.on("cfg.*").unwrap();
    let mut late = sub
        .on_with(
            "cfg.*",
            OnOptions {
                retained: true,
                ..OnOptions::default()
            },
        )
        .unwrap();
    let ev = next(&mut late).await;
    assert_eq!(
        (ev.topic.as_str(), ev.payload.as_ref(), ev.retained),
        ("cfg.mode", &b"v2"[..], true)
    );
    until("subscription known", || {
        publ.subscribers("cfg.x").len() == 1
    })
    .await;
    let waiter = {
        let sub = sub.clone();
        tokio::spawn(async move { sub.once("cfg.go").await })
    };
    until("once subscribed", || {
        publ.subscribers("cfg.go").len() == 1 && !publ.subscribers("cfg.go").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    publ.emit("cfg.go", "now").unwrap();
    let got = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.payload, "now");
    // The plain subscription saw only the live event, not the retained one.
    let ev = next(&mut plain).await;
    assert_eq!((ev.topic.as_str(), ev.retained), ("cfg.go", false));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), late.recv())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_slow_subscriber_drops_its_oldest_or_back_pressures_the_publisher() {
    let p = port();
    let publ = node("pub", p, None).await;
    let slow = node("slow", p, Some(8)).await;
    // Drop-oldest: 10 kept, 90 dropped and counted.
    let mut lossy = slow
        .on_with(
            "d.*",
            OnOptions {
                overflow: Overflow::DropOldest(10),
                ..OnOptions::default()
            },
        )
        .unwrap();
    until("subscription known", || publ.subscribers("d.x").len() == 1).await;
    for i in 0..100u32 {
        publ.emit("d.x", i.to_string()).unwrap();
    }
    until("all arrived", || {
        slow.stats().emitter.events_received >= 100
    })
    .await;
    assert_eq!(lossy.dropped(), 90);
    assert_eq!(slow.stats().emitter_dropped, 90);
    for i in 90..100u32 {
        assert_eq!(next(&mut lossy).await.payload, i.to_string());
    }
    // Back-pressure: a window of 8 events; the publisher is held, nothing is lost.
    let mut held = slow
        .on_with(
            "b.*",
            OnOptions {
                overflow: Overflow::BackPressure,
                ..OnOptions::default()
            },
        )
        .unwrap();
    until("subscription known", || publ.subscribers("b.x").len() == 1).await;
    let mut sent = 0u32;
    let refused = loop {
        match publ.emit("b.x", sent.to_string()) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 8, "the window is 8");
    };
    assert_eq!(sent, 8);
    assert!(
        matches!(refused, Error::Backpressure(ref v) if v == &vec![slow.uuid()]),
        "{refused}"
    );
    let publisher = {
        let publ = publ.clone();
        tokio::spawn(async move {
            for i in 8..40u32 {
                publ.emit_wait("b.x", i.to_string()).await.unwrap();
            }
        })
    };
    // The subscriber reads slowly; every event arrives, in order.
    for i in 0..40u32 {
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(next(&mut held).await.payload, i.to_string());
    }
    tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap()
        .unwrap();
    assert!(publ.stats().emitter.backpressured >= 1);
    assert!(slow.stats().emitter.credits_sent >= 1);
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_payloads() {
    let p = port();
    let publ = node("pub", p, None).await;
    let mut on = publ.on("j.*").unwrap();
    publ.emit_json("j.x", &serde_json::json!({"t": 21.5}))
        .unwrap();
    let v: serde_json::Value = next(&mut on).await.json().unwrap();
    assert_eq!(v["t"], 21.5);
}
