//! The plain tokio TCP baseline zmesh is measured against.
//!
//! Each process binds a `TcpListener` and connects one `TcpStream` to the other process's listener
//! (our "outbox"); the connection the other process makes to us is our "inbox". Messages are
//! length-prefixed (`u32` big-endian + payload), written through a 64 KiB write buffer flushed when
//! full (or on [`Link::flush`] when latency matters), and read with one big `read_buf` followed by
//! zero-copy splitting of every complete frame in the buffer — as a competent engineer would write
//! it by hand. It is the ceiling zmesh is measured against.
//!
//! Setup is two steps so that the driver can start its peer process in between:
//! [`listen`] binds and reports our address, [`TcpLink::join`] connects to the other side and
//! accepts its connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Link;

/// Write-side buffer flushed at this size.
const TCP_WBUF: usize = 64 * 1024;
/// Initial read buffer; grown by this much whenever less than [`READ_SLACK`] is free.
const TCP_RBUF: usize = 256 * 1024;
/// Smallest free room in the read buffer before a `read_buf`.
const READ_SLACK: usize = 16 * 1024;

/// Binds a listener on an ephemeral loopback port; returns it with its `ip:port`.
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Baseline link: one outgoing stream (our "outbox") and one accepted stream (our "inbox").
pub struct TcpLink {
    out: TcpStream,
    wbuf: BytesMut,
    inc: TcpStream,
    rbuf: BytesMut,
}

impl TcpLink {
    /// Connects to the other process's listener at `theirs`, then accepts its connection on
    /// `listener` (both processes connect before they accept, so neither waits for the other).
    pub async fn join(listener: TcpListener, theirs: &str) -> TcpLink {
        let out = TcpStream::connect(theirs).await.unwrap();
        let (inc, _) = listener.accept().await.unwrap();
        TcpLink::new(out, inc)
    }

    /// Wraps two connected streams (Nagle disabled on both).
    pub fn new(out: TcpStream, inc: TcpStream) -> TcpLink {
        out.set_nodelay(true).unwrap();
        inc.set_nodelay(true).unwrap();
        TcpLink {
            out,
            wbuf: BytesMut::with_capacity(TCP_WBUF * 2),
            inc,
            rbuf: BytesMut::with_capacity(TCP_RBUF),
        }
    }

    /// Writes out whatever is buffered.
    async fn write_out(&mut self) {
        if !self.wbuf.is_empty() {
            self.out.write_all(&self.wbuf).await.expect("tcp write");
            self.wbuf.clear();
        }
    }
}

impl Link for TcpLink {
    async fn send(&mut self, msg: Bytes) {
        self.wbuf.put_u32(msg.len() as u32);
        self.wbuf.extend_from_slice(&msg);
        if self.wbuf.len() >= TCP_WBUF {
            self.write_out().await;
        }
    }

    async fn flush(&mut self) {
        self.write_out().await;
    }

    async fn recv(&mut self) -> Bytes {
        loop {
            // A complete frame already buffered: split it off without copying.
            if self.rbuf.len() >= 4 {
                let len = u32::from_be_bytes(self.rbuf[..4].try_into().unwrap()) as usize;
                if self.rbuf.len() >= 4 + len {
                    self.rbuf.advance(4);
                    return self.rbuf.split_to(len).freeze();
                }
                self.rbuf.reserve(4 + len);
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_SLACK {
                self.rbuf.reserve(TCP_RBUF);
            }
            let n = self.inc.read_buf(&mut self.rbuf).await.expect("tcp read");
            assert!(n > 0, "tcp: peer closed the connection");
        }
    }

    async fn shutdown(mut self) {
        self.write_out().await;
        let _ = self.out.shutdown().await;
    }
}
