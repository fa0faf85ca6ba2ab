//! Two-way ZMTP connections: a DEALER that connects and a ROUTER-side listener whose accepted
//! connections can be written to, for small request/answer protocols such as zgossip.
//!
//! [`Inbox`](crate::Inbox) and [`Outbox`](crate::Outbox) are tuned for ZRE, where a TCP
//! connection carries messages one way only. Protocols of the czmq family (zgossip, and brokers'
//! client protocols) answer on the same connection, which needs both directions. A [`Duplex`] is
//! one such connection after its handshake: a task owns the socket, answers ZMTP PINGs, and moves
//! whole messages between the socket and two bounded channels. [`Duplex::connect`] dials (no
//! automatic reconnection: the protocol above decides when to redial, because a zgossip client
//! must resend HELLO and its tuples on every new connection anyway); [`DuplexListener`] accepts,
//! runs every handshake in its own task under a timeout (a slow-loris peer holds only its own
//! task) and hands established connections out. Messages are not the hot path here: clarity over
//! speed (one channel hop per message each way).

use crate::codec::Metadata;
use crate::conn::{self, handle_command, reserve_read, Stream};
use crate::endpoint::Endpoint;
use crate::error::{HandshakeError, TransportError};
use crate::identity::Identity;
use crate::mechanism::MechanismConfig;
use crate::Frames;
use bytes::Bytes;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Messages buffered per direction per connection.
const CHANNEL: usize = 1024;

/// Settings of a [`Duplex`] connection or a [`DuplexListener`].
#[derive(Debug, Clone)]
pub struct DuplexConfig {
    /// Largest accepted frame body; a larger frame closes the connection. Default 1 MiB (the
    /// protocols above are small).
    pub max_frame_size: usize,
    /// Time allowed to dial and complete the handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Security mechanism. Default NULL.
    pub mechanism: MechanismConfig,
    /// Our identity (connecting side only); empty = none, the ROUTER generates one.
    pub identity: Bytes,
}

impl Default for DuplexConfig {
    fn default() -> Self {
        DuplexConfig {
            max_frame_size: 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            mechanism: MechanismConfig::Null,
            identity: Bytes::new(),
        }
    }
}

/// Why a [`Duplex`] could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DuplexError {
    /// The endpoint is invalid or the socket could not be opened.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The ZMTP handshake failed (or timed out).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
}

/// One established two-way ZMTP connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct Duplex {
    tx: mpsc::Sender<Frames>,
    rx: mpsc::Receiver<Frames>,
    peer: String,
    identity: Identity,
    /// `None` once [`Duplex::close`] handed it to its linger timer.
    task: Option<JoinHandle<()>>,
}

/// How long [`Duplex::close`] lets queued messages drain before the connection is cut.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

impl Drop for Duplex {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Duplex {
    /// Dials `endpoint` (`tcp://host:port`, `ipc:///path`) as a DEALER and completes the handshake.
    pub async fn connect(endpoint: &str, cfg: &DuplexConfig) -> Result<Duplex, DuplexError> {
        let ep: Endpoint = endpoint.parse().map_err(TransportError::from)?;
        let mut meta = Metadata::new().with("Socket-Type", "DEALER");
        if !cfg.identity.is_empty() {
            meta = meta.with("Identity", cfg.identity.clone());
        }
        let peer = ep.to_string();
        let params = conn::HandshakeParams {
            socket_type: "DEALER",
            accept: &["ROUTER", "DEALER"],
            metadata: meta,
            max_frame: cfg.max_frame_size,
            mech: cfg.mechanism.build(false),
            peer: &peer,
        };
        let c = tokio::time::timeout(cfg.handshake_timeout, async {
            let s = dial(&ep).await?;
            conn::handshake(s, params).await
        })
        .await
        .map_err(|_| HandshakeError::Timeout)??;
        Ok(Duplex::start(c, peer, Identity::from_slice(&[])))
    }

    fn start(c: conn::Conn, peer: String, identity: Identity) -> Duplex {
        let (out_tx, out_rx) = mpsc::channel(CHANNEL);
        let (in_tx, in_rx) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(serve(c, out_rx, in_tx, peer.clone()));
        Duplex {
            tx: out_tx,
            rx: in_rx,
            peer,
            identity,
            task: Some(task),
        }
    }

    /// Closes the connection after what is queued has been written (at most 1 s; dropping the
    /// `Duplex` instead cuts it at once). For a last word such as zgossip's INVALID.
    pub fn close(mut self) {
        if let Some(task) = self.task.take() {
            tokio::spawn(async move {
                let abort = task.abort_handle();
                if tokio::time::timeout(CLOSE_LINGER, task).await.is_err() {
                    abort.abort();
                }
            });
        }
    }

    /// Queues a message; `Err` hands it back when the connection is gone or its queue is full.
    pub fn try_send(&self, frames: impl Into<Frames>) -> Result<(), crate::SendError> {
        self.tx.try_send(frames.into()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => crate::SendError::Full(f),
            mpsc::error::TrySendError::Closed(f) => crate::SendError::Closed(f),
        })
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Frames> {
        self.rx.recv().await
    }

    /// Polls for the next message; `Ready(None)` once the connection is closed.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frames>> {
        self.rx.poll_recv(cx)
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The peer's identity (accepted connections: its READY `Identity`, possibly empty).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

async fn dial(ep: &Endpoint) -> Result<Stream, HandshakeError> {
    match ep {
        Endpoint::Ipc(p) => Ok(Stream::Unix(UnixStream::connect(p).await?)),
        Endpoint::Tcp { .. } => {
            let addrs = ep
                .resolve()
                .await
                .map_err(|e| HandshakeError::Io(e.to_string()))?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .map(HandshakeError::from)
                .unwrap_or_else(|| HandshakeError::Io("no address".into())))
        }
    }
}

/// Owns an established connection: writes queued messages, reads messages and commands.
async fn serve(
    c: conn::Conn,
    mut out_rx: mpsc::Receiver<Frames>,
    in_tx: mpsc::Sender<Frames>,
    peer: String,
) {
    let conn::Conn {
        mut rd,
        wr,
        mut rbuf,
        mut dec,
        mut out,
        mut mech,
        transform,
        ..
    } = c;
    let mut partial = Frames::new();
    let reason = 'conn: loop {
        // Everything decodable in the buffer first (frames may have arrived with READY).
        loop {
            let frame = match dec.decode(&mut rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'conn e.to_string(),
            };
            let frame = if transform {
                match mech.decode_frame(frame) {
                    Ok(f) => f,
                    Err(e) => break 'conn e.to_string(),
                }
            } else {
                frame
            };
            if frame.command {
                let seen = handle_command(&frame.body, &mut out, &peer, mech.as_mut(), transform);
                if let Some(r) = seen.fatal() {
                    break 'conn r;
                }
                continue;
            }
            partial.push(frame.body);
            if !frame.more {
                let msg = std::mem::take(&mut partial);
                // After `close` nobody reads: what arrives is dropped while the queue drains.
                let _ = in_tx.send(msg).await;
            }
        }
        reserve_read(&mut rbuf, &dec);
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => break "peer closed the connection".into(),
                Err(e) => break format!("read error: {e}"),
                Ok(_) => {}
            },
            r = out.write_some_shared(&wr), if !out.is_empty() => {
                if let Err(e) = r {
                    break format!("write error: {e}");
                }
            }
            m = out_rx.recv(), if out.is_empty() => match m {
                Some(m) => {
                    let mut next = Some(m);
                    while let Some(m) = next {
                        if let Err(e) = out.push_message(&m, mech.as_mut(), transform) {
                            break 'conn format!("encode error: {e}");
                        }
                        next = out_rx.try_recv().ok();
                    }
                }
                None => {
                    // The owner dropped its sender: flush briefly and close.
                    let _ = tokio::time::timeout(Duration::from_millis(200), async {
                        while !out.is_empty() {
                            if out.write_some_shared(&wr).await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                    break "closed by the owner".into();
                }
            },
        }
    };
    tracing::debug!(%peer, %reason, "duplex connection ended");
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listening socket whose accepted connections are [`Duplex`]es (ROUTER side). Dropping it
/// stops accepting; connections already handed out live on.
#[derive(Debug)]
pub struct DuplexListener {
    endpoint: Endpoint,
    rx: mpsc::Receiver<Duplex>,
    task: JoinHandle<()>,
}

impl Drop for DuplexListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DuplexListener {
    /// Binds `tcp://ip:port` (`*` for an ephemeral port) or `ipc:///path` and starts accepting.
    pub async fn bind(endpoint: &str, cfg: DuplexConfig) -> Result<DuplexListener, TransportError> {
        let ep: Endpoint = endpoint.parse()?;
        let (listener, bound) = match &ep {
            Endpoint::Tcp { .. } => {
                let addrs = ep.resolve().await?;
                let addr: SocketAddr = *addrs.first().ok_or_else(|| {
                    TransportError::Io(std::io::Error::other("endpoint resolves to nothing"))
                })?;
                let sock = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                sock.set_reuseaddr(true)?;
                sock.bind(addr)?;
                let l = sock.listen(1024)?;
                let local = l.local_addr()?;
                let bound: Endpoint = format!("tcp://{local}").parse()?;
                (Listener::Tcp(l), bound)
            }
            Endpoint::Ipc(p) => {
                let _ = std::fs::remove_file(p);
                (Listener::Unix(UnixListener::bind(p)?), ep.clone())
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, cfg, tx));
        Ok(DuplexListener {
            endpoint: bound,
            rx,
            task,
        })
    }

    /// The bound endpoint (with the real port when `*` was asked).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The next established connection.
    pub async fn accept(&mut self) -> Option<Duplex> {
        self.rx.recv().await
    }

    /// Polls for the next established connection.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Duplex>> {
        self.rx.poll_recv(cx)
    }
}

async fn accept_loop(listener: Listener, cfg: DuplexConfig, tx: mpsc::Sender<Duplex>) {
    let mut handshakes = JoinSet::new();
    let mut next_id: u32 = 1;
    loop {
        let accepted = tokio::select! {
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
            _ = tx.closed() => return,
            r = async {
                match &listener {
                    Listener::Tcp(l) => l.accept().await.map(|(s, a)| {
                        let _ = s.set_nodelay(true);
                        (Stream::Tcp(s), a.to_string())
                    }),
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| (Stream::Unix(s), "ipc".to_string())),
                }
            } => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "duplex accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cfg = cfg.clone();
        let tx = tx.clone();
        let generated = {
            let mut v = [0u8; 5];
            v[1..].copy_from_slice(&next_id.to_be_bytes());
            next_id = next_id.wrapping_add(1);
            Identity::from_slice(&v)
        };
        handshakes.spawn(async move {
            let params = conn::HandshakeParams {
                socket_type: "ROUTER",
                accept: &["DEALER", "ROUTER", "REQ"],
                metadata: Metadata::new().with("Socket-Type", "ROUTER"),
                max_frame: cfg.max_frame_size,
                mech: cfg.mechanism.build(true),
                peer: &peer,
            };
            match tokio::time::timeout(cfg.handshake_timeout, conn::handshake(stream, params)).await
            {
                Ok(Ok(c)) => {
                    let identity = match c.peer_meta.get("Identity") {
                        Some(id) if !id.is_empty() => Identity::from_slice(id),
                        _ => generated,
                    };
                    let _ = tx.send(Duplex::start(c, peer, identity)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, reason = %e, "duplex handshake failed"),
                Err(_) => tracing::debug!(%peer, "duplex handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    #[tokio::test]
    async fn messages_flow_both_ways() {
        let mut l = DuplexListener::bind("tcp://127.0.0.1:*", DuplexConfig::default())
            .await
            .unwrap();
        let ep = l.endpoint().to_string();
        let mut c = Duplex::connect(&ep, &DuplexConfig::default())
            .await
            .unwrap();
        let mut s = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .unwrap()
            .unwrap();
        c.try_send(frames![Bytes::from_static(b"hello")]).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &[Bytes::from_static(b"hello")]);
        s.try_send(frames![Bytes::from_static(b"a"), Bytes::from_static(b"b")])
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 2);
        drop(s);
        let end = tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .unwrap();
        assert!(end.is_none(), "closing one side ends the other");
    }

    #[tokio::test]
    async fn close_sends_what_is_queued_first() {
        let mut l = DuplexListener::bind("tcp://127.0.0.1:*", DuplexConfig::default())
            .await
            .unwrap();
        let ep = l.endpoint().to_string();
        let mut c = Duplex::connect(&ep, &DuplexConfig::default())
            .await
            .unwrap();
        let s = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .unwrap()
            .unwrap();
        s.try_send(frames![Bytes::from_static(b"last word")])
            .unwrap();
        s.close();
        let got = tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&[Bytes::from_static(b"last word")][..])
        );
        let end = tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .unwrap();
        assert!(end.is_none());
    }
}
