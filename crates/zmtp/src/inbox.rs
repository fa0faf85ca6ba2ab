//! The inbox: a ROUTER-style listening socket.
//!
//! Layout: one accept task owns the listener and a `JoinSet` of connection tasks (dropping the inbox
//! aborts the accept task, which drops the set, which aborts every connection). Each connection task
//! does the handshake under a timeout, then reads in chunks, decodes every complete message of a
//! chunk and hands them to the inbox as ONE `Vec<InboxEvent>` over a bounded channel. When the
//! consumer falls behind, the channel fills, the connection task waits in `send`, stops reading its
//! socket, and TCP flow control pushes back on the sender: memory stays bounded.
//!
//! Identities: the peer's READY `Identity` property, or a generated 5-byte `0x00 + u32` (as libzmq
//! does). A registry maps identity -> live connection; a new connection with an identity already
//! present takes over (ROUTER_HANDOVER): the old connection is told to stop, emits its
//! `Disconnected`, and only then does the new one emit `Accepted`, so events for one identity stay in
//! a sensible order.

use crate::codec::Metadata;
use crate::conn::{self, handle_command, hb_tick, Incoming, Stream};
use crate::endpoint::Endpoint;
use crate::error::{HandshakeError, TransportError};
use crate::mechanism::MechanismConfig;
use crate::{Frames, Heartbeat};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Configuration of an [`Inbox`].
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Largest accepted frame body; a larger frame closes the connection. Also bounds a partially
    /// received multipart message (bytes plus 32 bytes of bookkeeping per frame). Default 64 MiB.
    pub max_frame_size: usize,
    /// Time allowed from accept to a completed handshake (slow-loris guard). Default 10 s.
    pub handshake_timeout: Duration,
    /// Our own PINGs; `None` (default) = only answer the peer's PINGs.
    pub heartbeat: Option<Heartbeat>,
    /// Security mechanism. Default NULL.
    pub mechanism: MechanismConfig,
    /// Maximum simultaneous connections (including ones still in handshake). Default 1024.
    pub max_connections: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_frame_size: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            heartbeat: None,
            mechanism: MechanismConfig::Null,
            max_connections: 1024,
        }
    }
}

/// Where a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix-domain socket peer (unnamed).
    Ipc,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "tcp://{a}"),
            PeerAddr::Ipc => f.write_str("ipc"),
        }
    }
}

/// Something that happened on the inbox.
#[derive(Debug, Clone)]
pub enum InboxEvent {
    /// A complete message from the peer with this identity (frames in order).
    Message {
        /// The sender's identity.
        identity: Bytes,
        /// The frames.
        frames: Frames,
    },
    /// A peer completed the handshake.
    Accepted {
        /// Peer address.
        peer: PeerAddr,
        /// Its identity (from READY, or generated).
        identity: Bytes,
        /// Its Socket-Type.
        socket_type: String,
    },
    /// A connection was closed before or during the handshake.
    HandshakeFailed {
        /// Peer address.
        peer: PeerAddr,
        /// Why.
        reason: HandshakeError,
    },
    /// An established connection closed.
    Disconnected {
        /// Peer address.
        peer: PeerAddr,
        /// Its identity.
        identity: Bytes,
        /// Why (peer closed, ERROR received, bad frame, heartbeat timeout, handover, ...).
        reason: String,
    },
}

/// Events travel in batches: one channel operation per socket read.
type Batch = VecDeque<InboxEvent>;
/// Batches buffered between connection tasks and the consumer (the back-pressure bound).
const CHANNEL_BATCHES: usize = 256;
/// Most events per batch.
const MAX_BATCH: usize = 1024;
/// Emptied batch buffers kept for reuse.
const POOL_BATCHES: usize = 8;

/// Emptied batch buffers travel back from the consumer to the connection tasks, so a busy inbox
/// does not allocate (and free) a batch buffer per read: with per-message allocations around it,
/// a large allocation per batch also makes the allocator consolidate its small-block caches.
#[derive(Clone, Default)]
struct BatchPool(Arc<Mutex<Vec<Batch>>>);

impl BatchPool {
    fn take(&self) -> Batch {
        self.0
            .lock()
            .expect("batch pool lock")
            .pop()
            .unwrap_or_else(|| VecDeque::with_capacity(MAX_BATCH))
    }

    fn give(&self, b: Batch) {
        if b.capacity() >= MAX_BATCH && b.capacity() <= 2 * MAX_BATCH {
            let mut p = self.0.lock().expect("batch pool lock");
            if p.len() < POOL_BATCHES {
                p.push(b);
            }
        }
    }
}

/// A batch holding one event.
fn one(ev: InboxEvent) -> Batch {
    VecDeque::from(vec![ev])
}

/// A ROUTER-style listening socket. Dropping it stops accepting and closes all connections.
pub struct Inbox {
    endpoint: Endpoint,
    rx: mpsc::Receiver<Batch>,
    current: Batch,
    pool: BatchPool,
    task: JoinHandle<()>,
    ipc_path: Option<PathBuf>,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), PeerAddr::Tcp(a)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), PeerAddr::Ipc))
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

impl Inbox {
    /// Bind and start accepting: `tcp://ip:port`, `tcp://ip:*` (ephemeral), `tcp://[::1]:port`,
    /// `ipc:///path` (an existing socket file at the path is replaced, as libzmq does).
    pub async fn bind(endpoint: &str, config: InboxConfig) -> Result<Inbox, TransportError> {
        let ep: Endpoint = endpoint.parse()?;
        let (listener, bound, ipc_path) = match &ep {
            Endpoint::Tcp { host, .. } => {
                let mut last_err = None;
                let mut found = None;
                for addr in ep.resolve().await? {
                    match bind_tcp(addr) {
                        Ok(l) => {
                            found = Some(l);
                            break;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                let l = match found {
                    Some(l) => l,
                    None => return Err(last_err.expect("resolve returned addresses").into()),
                };
                let local = l.local_addr()?;
                let host = if host == "*" {
                    host.clone()
                } else {
                    local.ip().to_string()
                };
                let bound = Endpoint::Tcp {
                    host,
                    port: Some(local.port()),
                };
                (Listener::Tcp(l), bound, None)
            }
            Endpoint::Ipc(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(md) = std::fs::symlink_metadata(path) {
                    if md.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let l = UnixListener::bind(path)?;
                (Listener::Unix(l), ep.clone(), Some(path.clone()))
            }
        };
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let pool = BatchPool::default();
        tracing::debug!(endpoint = %bound, "inbox bound");
        let task = tokio::spawn(accept_loop(listener, Arc::new(config), tx, pool.clone()));
        Ok(Inbox {
            endpoint: bound,
            rx,
            current: VecDeque::new(),
            pool,
            task,
            ipc_path,
        })
    }

    /// The endpoint actually bound (ephemeral port resolved), e.g. `tcp://127.0.0.1:49152`.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Next event; `None` once closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<InboxEvent> {
        loop {
            if let Some(ev) = self.current.pop_front() {
                return Some(ev);
            }
            let next = self.rx.recv().await?;
            self.pool.give(std::mem::replace(&mut self.current, next));
        }
    }

    /// Next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<InboxEvent> {
        loop {
            if let Some(ev) = self.current.pop_front() {
                return Some(ev);
            }
            let next = self.rx.try_recv().ok()?;
            self.pool.give(std::mem::replace(&mut self.current, next));
        }
    }

    /// Stop accepting and drop all connections.
    pub fn close(self) {
        drop(self)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.ipc_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("endpoint", &self.endpoint.to_string())
            .finish()
    }
}

/// A live connection in the identity registry.
struct Entry {
    conn_id: u64,
    /// Tell the connection to stop; it answers on the enclosed sender once its `Disconnected` is queued.
    kill: oneshot::Sender<oneshot::Sender<()>>,
}

type Registry = Arc<Mutex<HashMap<Bytes, Entry>>>;

async fn accept_loop(
    listener: Listener,
    cfg: Arc<InboxConfig>,
    tx: mpsc::Sender<Batch>,
    pool: BatchPool,
) {
    let registry: Registry = Arc::default();
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if conns.len() >= cfg.max_connections {
                        tracing::debug!(%peer, "connection limit reached, refusing");
                        drop(stream);
                        let _ = tx.try_send(one(InboxEvent::HandshakeFailed {
                            peer,
                            reason: HandshakeError::TooManyConnections,
                        }));
                        continue;
                    }
                    next_id += 1;
                    conns.spawn(serve(stream, peer, next_id, cfg.clone(), tx.clone(), registry.clone(), pool.clone()));
                }
                Err(e) => {
                    // E.g. EMFILE: back off briefly instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A libzmq-style generated identity: 0x00 followed by a 32-bit counter.
fn generated_identity() -> Bytes {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let ctr = NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        AtomicU32::new(seed)
    });
    let n = ctr.fetch_add(1, Ordering::Relaxed);
    let mut v = vec![0u8];
    v.extend_from_slice(&n.to_be_bytes());
    Bytes::from(v)
}

static CONN_SEQ: AtomicU64 = AtomicU64::new(0);

async fn serve(
    stream: Stream,
    peer: PeerAddr,
    _accept_id: u64,
    cfg: Arc<InboxConfig>,
    tx: mpsc::Sender<Batch>,
    registry: Registry,
    pool: BatchPool,
) {
    let conn_id = CONN_SEQ.fetch_add(1, Ordering::Relaxed);
    let peer_s = peer.to_string();
    let params = conn::HandshakeParams {
        socket_type: "ROUTER",
        accept: &["DEALER", "REQ", "ROUTER"],
        metadata: Metadata::new().with("Socket-Type", "ROUTER"),
        max_frame: cfg.max_frame_size,
        mech: cfg.mechanism.build(true),
        peer: &peer_s,
    };
    let conn =
        match tokio::time::timeout(cfg.handshake_timeout, conn::handshake(stream, params)).await {
            Ok(Ok(c)) => c,
            r => {
                let reason = match r {
                    Ok(Err(e)) => e,
                    _ => HandshakeError::Timeout,
                };
                tracing::debug!(peer = %peer, %reason, "inbox handshake failed");
                let _ = tx
                    .send(one(InboxEvent::HandshakeFailed { peer, reason }))
                    .await;
                return;
            }
        };
    let identity = match conn.peer_meta.get("Identity") {
        // Own copy: do not pin the handshake read buffer for the connection's lifetime.
        Some(id) if !id.is_empty() => Bytes::copy_from_slice(id),
        _ => generated_identity(),
    };
    let socket_type = conn
        .peer_meta
        .get("Socket-Type")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();

    // Register, taking over any live connection with the same identity.
    let (kill_tx, kill_rx) = oneshot::channel();
    let old = registry.lock().expect("registry lock").insert(
        identity.clone(),
        Entry {
            conn_id,
            kill: kill_tx,
        },
    );
    if let Some(old) = old {
        tracing::debug!(peer = %peer, "identity already connected: handing over");
        let (done_tx, done_rx) = oneshot::channel();
        if old.kill.send(done_tx).is_ok() {
            let _ = done_rx.await;
        }
    }
    if tx
        .send(one(InboxEvent::Accepted {
            peer,
            identity: identity.clone(),
            socket_type,
        }))
        .await
        .is_err()
    {
        return;
    }
    let (reason, done) = run(conn, &identity, &peer_s, &cfg, &tx, kill_rx, &pool).await;
    {
        let mut reg = registry.lock().expect("registry lock");
        if reg.get(&identity).map(|e| e.conn_id) == Some(conn_id) {
            reg.remove(&identity);
        }
    }
    tracing::debug!(peer = %peer, %reason, "inbox connection closed");
    let _ = tx
        .send(one(InboxEvent::Disconnected {
            peer,
            identity,
            reason,
        }))
        .await;
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// The established-connection loop. Returns the close reason and, on handover, whom to tell we're done.
async fn run(
    mut c: conn::Conn,
    identity: &Bytes,
    peer: &str,
    cfg: &InboxConfig,
    tx: &mpsc::Sender<Batch>,
    mut kill: oneshot::Receiver<oneshot::Sender<()>>,
    pool: &BatchPool,
) -> (String, Option<oneshot::Sender<()>>) {
    let mut hb = conn::heartbeat_for(cfg.heartbeat.as_ref(), c.peer_minor);
    let mut partial: Frames = Vec::new();
    let mut partial_cost = 0usize;
    let limit = cfg.max_frame_size;
    // Frames that arrived together with the peer's READY are processed before the first read.
    let mut pending_input = !c.rbuf.is_empty();
    let mut rpool = conn::ReadPool::new();
    loop {
        if !pending_input {
            let room = rpool.reserve(&mut c.rbuf, &c.dec);
            tokio::select! {
                biased;
                k = &mut kill => return ("replaced by a new connection with the same identity".into(), k.ok()),
                r = c.out.write_some(&mut c.wr), if !c.out.is_empty() => {
                    if let Err(e) = r {
                        return (format!("write error: {e}"), None);
                    }
                    continue;
                }
                r = tokio::io::AsyncReadExt::read_buf(&mut c.rd, &mut c.rbuf) => match r {
                    Ok(0) => return ("peer closed the connection".into(), None),
                    Ok(n) => rpool.record(n, room),
                    Err(e) => return (format!("read error: {e}"), None),
                },
                _ = hb_tick(&mut hb) => {
                    if let Some(h) = hb.as_mut() {
                        if let Err(reason) = h.on_tick(&mut c.out) {
                            return (reason, None);
                        }
                    }
                    continue;
                }
            }
        }
        pending_input = false;
        if let Some(h) = hb.as_mut() {
            h.last_recv = tokio::time::Instant::now();
        }
        // Decode everything complete in the buffer into one batch.
        let mut batch: Batch = pool.take();
        loop {
            let frame = match c.dec.decode(&mut c.rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer, error = %e, "bad frame, closing");
                    flush_batch(tx, batch).await;
                    return (e.to_string(), None);
                }
            };
            let frame = if c.transform {
                match c.mech.decode_frame(frame) {
                    Ok(f) => f,
                    Err(e) => {
                        flush_batch(tx, batch).await;
                        return (e.to_string(), None);
                    }
                }
            } else {
                frame
            };
            if frame.command {
                if let Incoming::PeerError(r) = handle_command(&frame.body, &mut c.out, peer) {
                    flush_batch(tx, batch).await;
                    return (format!("peer sent ERROR: {r}"), None);
                }
                continue;
            }
            partial_cost += frame.body.len() + 32;
            if partial_cost > limit.saturating_add(32) {
                flush_batch(tx, batch).await;
                return (format!("message exceeds {limit} bytes"), None);
            }
            if !frame.more {
                partial_cost = 0;
                let frames = if partial.is_empty() {
                    // Single-frame message: an exact one-element allocation.
                    vec![frame.body]
                } else {
                    partial.push(frame.body);
                    std::mem::take(&mut partial)
                };
                batch.push_back(InboxEvent::Message {
                    identity: identity.clone(),
                    frames,
                });
                if batch.len() >= MAX_BATCH {
                    // Bounded batches: their buffers are recycled through the pool.
                    let next = pool.take();
                    if tx.send(std::mem::replace(&mut batch, next)).await.is_err() {
                        return ("inbox closed".into(), None);
                    }
                }
            } else {
                partial.push(frame.body);
            }
        }
        if batch.is_empty() {
            pool.give(batch);
        } else if tx.send(batch).await.is_err() {
            return ("inbox closed".into(), None);
        }
    }
}

async fn flush_batch(tx: &mpsc::Sender<Batch>, batch: Batch) {
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
}
