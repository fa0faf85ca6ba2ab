//! Discovery is a set of sources: a node without beacons finds its peer through a source added
//! with `NodeBuilder::discovery_source`, running beside (or instead of) the UDP beacons.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use zmesh::discovery::{Heard, Sighting, Source};
use zmesh::Uuid;

mod loopback;
use loopback::{builder, is_enter, port, wait_for};

/// A static peer list: every announce re-emits the sightings (as a re-resolved DNS name would).
#[derive(Debug)]
struct StaticPeers {
    /// UUID, address and (for secure nodes) CURVE public key.
    peers: Vec<(Uuid, SocketAddr, Option<[u8; 32]>)>,
    queue: Vec<Sighting>,
    announced: Vec<u16>,
    waker: Option<Waker>,
}

impl Source for StaticPeers {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>> {
        match self.queue.pop() {
            Some(s) => Poll::Ready(Ok(Heard::Sighting(s))),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn announce(&mut self, tcp_port: u16) -> io::Result<()> {
        self.announced.push(tcp_port);
        if tcp_port != 0 {
            self.queue
                .extend(self.peers.iter().map(|(u, a, k)| match k {
                    Some(k) => Sighting::seen_with_key(*u, *a, *k),
                    None => Sighting::seen(*u, *a),
                }));
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_node_without_beacons_meets_its_peer_through_a_static_source() {
    // Two different beacon ports: the beacons cannot bring them together.
    let (a, mut ea) = builder("a", port()).start().await.unwrap();
    let deadline = tokio::time::Instant::now() + loopback::WAIT;
    let a_ep = loop {
        if let Some(ep) = a.endpoint() {
            break ep;
        }
        assert!(tokio::time::Instant::now() < deadline, "a never attached");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let addr = zmesh::endpoint_addr(&a_ep).unwrap();
    let source = StaticPeers {
        peers: vec![(a.uuid(), addr, None)],
        queue: Vec::new(),
        announced: Vec::new(),
        waker: None,
    };
    let (b, mut eb) = builder("b", port())
        .beacons(false)
        .discovery_source(source)
        .start()
        .await
        .unwrap();
    wait_for(&mut eb, "b enters a", |e| is_enter(e, a.uuid())).await;
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    // The layers work over it too.
    let mut echo = a.on_request("e").unwrap();
    tokio::spawn(async move {
        while let Some(r) = echo.recv().await {
            let p = r.payload().clone();
            r.reply(p);
        }
    });
    assert_eq!(&b.request(a.uuid(), "e", "x").await.unwrap()[..], b"x");
}

/// Secure nodes through a source: the sighting carries the peer's key, and the node connects as a
/// CURVE client of that key.
#[tokio::test]
async fn a_secure_node_meets_its_peer_through_a_keyed_source() {
    let (ka, kb) = (
        zmesh::curve::generate_key_pair(),
        zmesh::curve::generate_key_pair(),
    );
    let (a, mut ea) = builder("a", port())
        .secure(ka.clone())
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + loopback::WAIT;
    let a_ep = loop {
        if let Some(ep) = a.endpoint() {
            break ep;
        }
        assert!(tokio::time::Instant::now() < deadline, "a never attached");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let addr = zmesh::endpoint_addr(&a_ep).unwrap();
    let source = StaticPeers {
        peers: vec![(a.uuid(), addr, Some(*ka.public().as_bytes()))],
        queue: Vec::new(),
        announced: Vec::new(),
        waker: None,
    };
    let (b, mut eb) = builder("b", port())
        .secure(kb.clone())
        .beacons(false)
        .discovery_source(source)
        .start()
        .await
        .unwrap();
    wait_for(&mut eb, "b enters a", |e| is_enter(e, a.uuid())).await;
    wait_for(&mut ea, "a enters b", |e| is_enter(e, b.uuid())).await;
    assert_eq!(b.peer_key(a.uuid()), Some(ka.public()));
    assert_eq!(a.peer_key(b.uuid()), Some(kb.public()));
}

#[test]
fn endpoints_are_typed_v4_and_v6() {
    let s = Sighting::seen(Uuid::nil(), "[fd00::5]:49152".parse().unwrap());
    let Sighting::Seen { endpoint, .. } = s else {
        unreachable!()
    };
    assert_eq!(&*endpoint, "tcp://[fd00::5]:49152");
    assert_eq!(
        &*zmesh::discovery::endpoint_of("10.0.0.5:7".parse().unwrap()),
        "tcp://10.0.0.5:7"
    );
}
