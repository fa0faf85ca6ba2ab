//! Shared helpers for the in-process loopback tests (`node_loopback.rs`, `hostile.rs`): nodes
//! pinned to `lo` with a beacon port of their own, and waiting on events with a deadline.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use zmesh::{Event, Events, Node, NodeBuilder, Uuid};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A beacon port no other test in this run uses: 25 ports per test process, spread by pid (cargo
/// runs test binaries one after another, tests inside one binary in parallel).
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 1500) as u16 * 25;
    base + NEXT.fetch_add(1, Ordering::Relaxed) % 25
}

/// A node on loopback with fast (100 ms) beacons.
pub fn builder(name: &str, port: u16) -> NodeBuilder {
    Node::builder()
        .name(name)
        .interface("lo".parse().unwrap())
        .beacon_port(port)
        .beacon_interval(Duration::from_millis(100))
}

/// Waits for the first event matching `f`, skipping others; panics with `what` on timeout.
pub async fn wait_for(events: &mut Events, what: &str, mut f: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) if f(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{what}: event stream ended"),
            Err(_) => panic!("{what}: timed out after {WAIT:?}"),
        }
    }
}

/// ENTER of `who`.
pub fn is_enter(ev: &Event, who: Uuid) -> bool {
    matches!(ev, Event::Enter { peer, .. } if *peer == who)
}

/// EXIT of `who`.
pub fn is_exit(ev: &Event, who: Uuid) -> bool {
    matches!(ev, Event::Exit { peer, .. } if *peer == who)
}

/// Two nodes, alice and bob (headers `X-ROLE` = a / b), that have seen each other enter.
pub async fn pair(port: u16) -> ((Node, Events), (Node, Events)) {
    let (a, mut ea) = builder("alice", port)
        .header("X-ROLE", "a")
        .start()
        .await
        .unwrap();
    let (b, mut eb) = builder("bob", port)
        .header("X-ROLE", "b")
        .start()
        .await
        .unwrap();
    let (ua, ub) = (a.uuid(), b.uuid());
    wait_for(&mut ea, "a sees b", |e| is_enter(e, ub)).await;
    wait_for(&mut eb, "b sees a", |e| is_enter(e, ua)).await;
    ((a, ea), (b, eb))
}
