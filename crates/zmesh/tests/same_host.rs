//! The same-host fast path: nodes on one host talk over Unix sockets, and fall back to TCP when
//! the host identity differs or the peer's socket is missing or stale.
//!
//! Every test pins the interface to `lo`, uses its own beacon port and its own socket
//! directory, so tests can run in parallel.

use std::path::PathBuf;

use bytes::Bytes;
use zmesh::{Event, Events, Node, NodeBuilder, Uuid, HOST_HEADER, IPC_HEADER};

mod loopback;
use loopback::{builder, is_enter, port, wait_for};

/// A fresh socket directory for one test (removed by [`Dir`]'s drop).
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        Dir(std::env::temp_dir().join(format!("zmesh-samehost-{tag}-{}", std::process::id())))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(name: &str, port: u16, dir: &Dir) -> NodeBuilder {
    builder(name, port).same_host_dir(&dir.0)
}

/// Both have entered each other, and a WHISPER went each way.
async fn meet(a: &Node, ea: &mut Events, b: &Node, eb: &mut Events) {
    wait_for(ea, "a sees b", |e| is_enter(e, b.uuid())).await;
    wait_for(eb, "b sees a", |e| is_enter(e, a.uuid())).await;
    a.whisper(b.uuid(), Bytes::from_static(b"to b")).unwrap();
    wait_for(
        eb,
        "whisper a->b",
        |e| matches!(e, Event::Whisper { peer, .. } if *peer == a.uuid()),
    )
    .await;
    b.whisper(a.uuid(), Bytes::from_static(b"to a")).unwrap();
    wait_for(
        ea,
        "whisper b->a",
        |e| matches!(e, Event::Whisper { peer, .. } if *peer == b.uuid()),
    )
    .await;
}

#[tokio::test]
async fn two_nodes_on_one_host_talk_over_unix_sockets() {
    let (p, dir) = (port(), Dir::new("same"));
    let (a, mut ea) = node("a", p, &dir).start().await.unwrap();
    let (b, mut eb) = node("b", p, &dir).start().await.unwrap();
    meet(&a, &mut ea, &b, &mut eb).await;
    for n in [&a, &b] {
        let s = n.stats();
        assert_eq!((s.ipc_connects, s.tcp_connects), (1, 0), "{s:?}");
    }
    // The HELLO says where and on which host; the endpoint stays the TCP one (plain ZRE peers
    // and other hosts use it).
    let ipc = a.peer_header(b.uuid(), IPC_HEADER).unwrap();
    assert!(ipc.starts_with("ipc://") && ipc.contains(&b.uuid().simple().to_string()));
    assert_eq!(
        a.peer_header(b.uuid(), HOST_HEADER),
        b.peer_header(a.uuid(), HOST_HEADER)
    );
    assert!(a.peer_endpoint(b.uuid()).unwrap().starts_with("tcp://"));
    // A polite stop removes the socket.
    let path = PathBuf::from(ipc.trim_start_matches("ipc://"));
    assert!(path.exists());
    b.stop().await;
    assert!(!path.exists());
}

#[tokio::test]
async fn a_peer_with_another_host_identity_is_reached_over_tcp() {
    let (p, dir) = (port(), Dir::new("other"));
    let (a, mut ea) = node("a", p, &dir).start().await.unwrap();
    let (b, mut eb) = node("b", p, &dir)
        .same_host_id("0123456789abcdef")
        .start()
        .await
        .unwrap();
    meet(&a, &mut ea, &b, &mut eb).await;
    for n in [&a, &b] {
        let s = n.stats();
        assert_eq!((s.ipc_connects, s.tcp_connects), (0, 1), "{s:?}");
    }
    assert_eq!(
        a.peer_header(b.uuid(), HOST_HEADER).as_deref(),
        Some("0123456789abcdef")
    );
}

#[tokio::test]
async fn a_stale_or_missing_socket_falls_back_to_tcp() {
    let (p, dir) = (port(), Dir::new("stale"));
    let (a, mut ea) = node("a", p, &dir).same_host_id("h").start().await.unwrap();
    // b runs without the fast path; a socket file is left where a would look for it, with
    // nobody listening (a crashed node's leftover).
    let ub = Uuid::new_v4();
    let stale = dir.0.join(format!("h-{}.sock", ub.simple()));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let (b, mut eb) = node("b", p, &dir)
        .uuid(ub)
        .same_host(false)
        .start()
        .await
        .unwrap();
    meet(&a, &mut ea, &b, &mut eb).await;
    // a: stale file, TCP. b: no fast path at all, TCP.
    for n in [&a, &b] {
        let s = n.stats();
        assert_eq!((s.ipc_connects, s.tcp_connects), (0, 1), "{s:?}");
    }
    assert_eq!(a.peer_header(b.uuid(), IPC_HEADER), None);
}
