//! The parts of the two-process scenarios both binaries run the same way: the hello exchange that
//! proves both directions are connected, and the timed round trips (driver) with their echo (peer).

use std::time::Instant;

use bytes::Bytes;

use crate::Link;

/// Driver side of the hello: send `hello`, wait for it to come back.
pub async fn hello_driver<L: Link>(link: &mut L) {
    link.send(Bytes::from_static(b"hello")).await;
    link.flush().await;
    let hello = link.recv().await;
    assert_eq!(&hello[..], b"hello");
}

/// Peer side of the hello: echo the first message.
pub async fn hello_peer<L: Link>(link: &mut L) {
    let hello = link.recv().await;
    link.send(hello).await;
    link.flush().await;
}

/// Driver side: `warmup` untimed then `count` timed round trips of `size`-byte messages; returns
/// the timed ones in nanoseconds, in the order they were made.
pub async fn round_trips<L: Link>(
    link: &mut L,
    size: usize,
    warmup: usize,
    count: usize,
) -> Vec<u64> {
    let ping = Bytes::from(vec![0x5a; size]);
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        link.send(ping.clone()).await;
        link.flush().await;
        let pong = link.recv().await;
        let dt = t0.elapsed();
        assert_eq!(pong.len(), size);
        if i >= warmup {
            rtts.push(dt.as_nanos() as u64);
        }
    }
    rtts
}

/// Peer side of [`round_trips`]: send each of `n` messages straight back.
pub async fn echo<L: Link>(link: &mut L, n: usize) {
    for _ in 0..n {
        let m = link.recv().await;
        link.send(m).await;
        link.flush().await;
    }
}
