//! The outbox: a DEALER-style connecting socket for one peer.
//!
//! The user side and the connection task share a [`Shared`] queue guarded by a short mutex. The count
//! and byte limits cover every message not yet written to the socket (queued or in the batch being
//! written), so a peer that never reads fills the kernel buffers, then our queue, and then `try_send`
//! returns [`SendError::Full`] with the message. The task is woken only when the queue goes from empty
//! to non-empty (no per-message wakeup); it drains up to a batch worth of messages at a time into one
//! write buffer (small frames copied, large frames written vectored from their own `Bytes`).
//!
//! Connection life cycle: connect + handshake (under `handshake_timeout`), serve until the peer goes
//! away, then wait with exponential backoff and reconnect; messages queued meanwhile are sent after
//! the reconnect. Messages already handed to a socket that then failed are lost, as with libzmq.

use crate::codec::Metadata;
use crate::conn::{self, handle_command, hb_tick, reserve_read, Incoming, Stream};
use crate::endpoint::Endpoint;
use crate::error::{HandshakeError, SendError, TransportError};
use crate::mechanism::MechanismConfig;
use crate::{Frames, Heartbeat};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Configuration of an [`Outbox`].
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Maximum messages not yet written to the socket. Default 100 000.
    pub max_queued_messages: usize,
    /// Maximum payload bytes not yet written to the socket. Default 64 MiB. A single message larger
    /// than this is accepted only into an otherwise empty queue.
    pub max_queued_bytes: usize,
    /// First reconnect delay. Default 100 ms.
    pub reconnect_interval: Duration,
    /// Reconnect delay cap (doubling backoff). Default 5 s.
    pub reconnect_interval_max: Duration,
    /// Time allowed for TCP connect + ZMTP handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Our own PINGs; default `None`.
    pub heartbeat: Option<Heartbeat>,
    /// Security mechanism; default NULL.
    pub mechanism: MechanismConfig,
    /// Largest frame accepted from the peer. Default 64 MiB.
    pub max_frame_size: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_queued_messages: 100_000,
            max_queued_bytes: 64 * 1024 * 1024,
            reconnect_interval: Duration::from_millis(100),
            reconnect_interval_max: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            heartbeat: None,
            mechanism: MechanismConfig::Null,
            max_frame_size: 64 * 1024 * 1024,
        }
    }
}

/// Connection state of an outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxState {
    /// Connecting / handshaking (initially and between retries).
    Connecting,
    /// Handshake done; messages flow.
    Connected,
    /// The last attempt or connection failed; a retry follows after the backoff.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Closed by the user.
    Closed,
}

/// Bytes taken from the queue per write batch.
const BATCH_BYTES: usize = 256 * 1024;
/// Messages taken from the queue per write batch.
const BATCH_MSGS: usize = 8192;

struct Queue {
    msgs: VecDeque<Frames>,
    /// Messages not yet written (queued + in flight).
    count: usize,
    /// Payload bytes not yet written (queued + in flight).
    bytes: usize,
}

struct Shared {
    q: Mutex<Queue>,
    /// Wakes the connection task when the queue goes empty -> non-empty, or on close.
    wake: Notify,
    /// Wakes senders waiting for room (and `close` waiting for the flush).
    room: Notify,
    /// Interrupts the reconnect backoff on close.
    close_notify: Notify,
    closing: AtomicBool,
    max_msgs: usize,
    max_bytes: usize,
    state: watch::Sender<OutboxState>,
}

impl Shared {
    fn release(&self, msgs: usize, bytes: usize) {
        if msgs == 0 {
            return;
        }
        {
            let mut q = self.q.lock().expect("queue lock");
            q.count -= msgs;
            q.bytes -= bytes;
        }
        self.room.notify_waiters();
    }

    /// Move up to one batch from the queue into `into`; returns (messages, bytes) taken.
    fn take_batch(&self, into: &mut Vec<Frames>) -> (usize, usize) {
        let mut q = self.q.lock().expect("queue lock");
        let (mut n, mut b) = (0, 0);
        while n < BATCH_MSGS && b < BATCH_BYTES {
            let Some(m) = q.msgs.pop_front() else { break };
            b += msg_size(&m);
            n += 1;
            into.push(m);
        }
        (n, b)
    }

    fn queue_empty(&self) -> bool {
        self.q.lock().expect("queue lock").msgs.is_empty()
    }
}

fn msg_size(m: &Frames) -> usize {
    m.iter().map(|f| f.len()).sum()
}

/// A DEALER-style connection to one peer with a bounded send queue and automatic reconnect.
/// Dropping it closes it without linger.
pub struct Outbox {
    shared: Arc<Shared>,
    state: watch::Receiver<OutboxState>,
    task: Option<JoinHandle<()>>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("endpoint", &self.endpoint.to_string())
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Outbox {
    /// Start connecting to `endpoint` (`tcp://host:port` or `ipc:///path`) presenting `identity` in
    /// READY. Not async: spawns the connection task on the current tokio runtime; messages can be
    /// sent at once and are queued until the handshake completes.
    pub fn connect(
        endpoint: &str,
        identity: Bytes,
        config: OutboxConfig,
    ) -> Result<Outbox, TransportError> {
        let ep: Endpoint = endpoint.parse()?;
        if let Endpoint::Tcp { port: None, .. } = ep {
            return Err(crate::error::EndpointError::WildcardPort(endpoint.to_string()).into());
        }
        if identity.len() > 255 {
            return Err(TransportError::InvalidIdentity(format!(
                "{} bytes (maximum 255)",
                identity.len()
            )));
        }
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let (state_tx, state_rx) = watch::channel(OutboxState::Connecting);
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                msgs: VecDeque::new(),
                count: 0,
                bytes: 0,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            close_notify: Notify::new(),
            closing: AtomicBool::new(false),
            max_msgs: config.max_queued_messages.max(1),
            max_bytes: config.max_queued_bytes,
            state: state_tx,
        });
        let task = handle.spawn(run(ep.clone(), identity, config, shared.clone()));
        Ok(Outbox {
            shared,
            state: state_rx,
            task: Some(task),
            endpoint: ep,
        })
    }

    /// Queue a message without waiting. `Full` when the message-count or byte limit would be exceeded;
    /// the message is handed back in the error.
    pub fn try_send(&self, frames: Frames) -> Result<(), SendError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SendError::Closed(frames));
        }
        let size = msg_size(&frames);
        let was_empty;
        {
            let mut q = self.shared.q.lock().expect("queue lock");
            if q.count > 0
                && (q.count >= self.shared.max_msgs || q.bytes + size > self.shared.max_bytes)
            {
                return Err(SendError::Full(frames));
            }
            was_empty = q.msgs.is_empty();
            q.msgs.push_back(frames);
            q.count += 1;
            q.bytes += size;
        }
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Queue a message, waiting for room if the queue is full.
    pub async fn send(&self, frames: Frames) -> Result<(), SendError> {
        // Fast path without registering a waiter (that costs a lock on the Notify).
        let mut frames = match self.try_send(frames) {
            Err(SendError::Full(f)) => f,
            other => return other,
        };
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_send(frames) {
                Err(SendError::Full(f)) => {
                    frames = f;
                    notified.await;
                }
                other => return other,
            }
        }
    }

    /// Messages and payload bytes not yet written to the socket.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.shared.q.lock().expect("queue lock");
        (q.count, q.bytes)
    }

    /// Whether the handshake with the peer is currently complete.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == OutboxState::Connected
    }

    /// A watch on the connection state.
    pub fn state(&self) -> watch::Receiver<OutboxState> {
        self.state.clone()
    }

    /// The endpoint this outbox connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Close: with `Some(linger)`, keep trying to deliver queued messages for up to `linger` (then
    /// shut the connection down cleanly); with `None`, stop at once.
    pub async fn close(mut self, linger: Option<Duration>) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        self.shared.close_notify.notify_waiters();
        if let (Some(linger), Some(task)) = (linger, self.task.as_mut()) {
            if tokio::time::timeout(linger, task).await.is_ok() {
                self.task = None;
            }
        }
        // Drop aborts whatever is left.
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.shared.state.send_replace(OutboxState::Closed);
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

/// How a served connection ended.
enum End {
    /// Closed by the user after flushing.
    Closed,
    /// Lost; reconnect.
    Lost(String),
}

async fn run(ep: Endpoint, identity: Bytes, cfg: OutboxConfig, shared: Arc<Shared>) {
    let peer = ep.to_string();
    let mut backoff = cfg.reconnect_interval;
    loop {
        if shared.closing.load(Ordering::Acquire) && shared.queue_empty() {
            break;
        }
        shared.state.send_replace(OutboxState::Connecting);
        let params = conn::HandshakeParams {
            socket_type: "DEALER",
            accept: &["ROUTER", "DEALER", "REP"],
            metadata: Metadata::new()
                .with("Socket-Type", "DEALER")
                .with("Identity", identity.clone()),
            max_frame: cfg.max_frame_size,
            mech: cfg.mechanism.build(false),
            peer: &peer,
        };
        let attempt = tokio::time::timeout(cfg.handshake_timeout, async {
            let s = dial(&ep).await?;
            conn::handshake(s, params).await
        })
        .await;
        let reason = match attempt {
            Ok(Ok(c)) => {
                backoff = cfg.reconnect_interval;
                shared.state.send_replace(OutboxState::Connected);
                tracing::debug!(%peer, "outbox connected");
                match serve(c, &cfg, &shared, &peer).await {
                    End::Closed => break,
                    End::Lost(r) => r,
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => HandshakeError::Timeout.to_string(),
        };
        tracing::debug!(%peer, %reason, "outbox disconnected; will retry");
        shared
            .state
            .send_replace(OutboxState::Disconnected { reason });
        let closed = shared.close_notify.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if !shared.closing.load(Ordering::Acquire) {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = closed => {}
            }
        } else if shared.queue_empty() {
            break;
        } else {
            tokio::time::sleep(backoff).await;
        }
        backoff = (backoff * 2).min(cfg.reconnect_interval_max.max(cfg.reconnect_interval));
    }
    shared.state.send_replace(OutboxState::Closed);
}

/// Serve an established connection until it is lost or the outbox is closed and flushed.
async fn serve(mut c: conn::Conn, cfg: &OutboxConfig, shared: &Shared, peer: &str) -> End {
    let mut hb = conn::heartbeat_for(cfg.heartbeat.as_ref(), c.peer_minor);
    let mut batch: Vec<Frames> = Vec::new();
    let (mut in_msgs, mut in_bytes) = (0usize, 0usize);
    let mut ignored_incoming = 0u64;
    // Frames that arrived together with the peer's READY (e.g. a PING).
    if let Some(reason) = drain_incoming(&mut c, peer, &mut ignored_incoming) {
        return End::Lost(reason);
    }
    let end = loop {
        if c.out.is_empty() {
            shared.release(in_msgs, in_bytes);
            (in_msgs, in_bytes) = shared.take_batch(&mut batch);
            let mut encode_err = None;
            for m in batch.drain(..) {
                if let Err(e) = c.out.push_message(&m, c.mech.as_mut(), c.transform) {
                    encode_err = Some(e);
                }
            }
            if let Some(e) = encode_err {
                break End::Lost(format!("encode error: {e}"));
            }
            if c.out.is_empty() && shared.closing.load(Ordering::Acquire) && shared.queue_empty() {
                let _ = c.wr.shutdown().await;
                break End::Closed;
            }
        }
        reserve_read(&mut c.rbuf, &c.dec);
        tokio::select! {
            biased;
            r = c.rd.read_buf(&mut c.rbuf) => match r {
                Ok(0) => break End::Lost("peer closed the connection".into()),
                Err(e) => break End::Lost(format!("read error: {e}")),
                Ok(_) => {
                    if let Some(h) = hb.as_mut() {
                        h.last_recv = tokio::time::Instant::now();
                    }
                    if let Some(reason) = drain_incoming(&mut c, peer, &mut ignored_incoming) {
                        break End::Lost(reason);
                    }
                }
            },
            r = c.out.write_some(&mut c.wr), if !c.out.is_empty() => {
                if let Err(e) = r {
                    break End::Lost(format!("write error: {e}"));
                }
            }
            _ = shared.wake.notified(), if c.out.is_empty() => {}
            _ = hb_tick(&mut hb) => {
                if let Some(h) = hb.as_mut() {
                    if let Err(reason) = h.on_tick(&mut c.out) {
                        break End::Lost(reason);
                    }
                }
            }
        }
    };
    if in_msgs > 0 {
        if matches!(end, End::Lost(_)) {
            tracing::debug!(
                peer,
                lost = in_msgs,
                "messages in flight lost with the connection"
            );
        }
        shared.release(in_msgs, in_bytes);
    }
    end
}

/// Decode what the peer sent: answer PINGs, report ERROR, drop messages (a DEALER outbox only sends).
fn drain_incoming(c: &mut conn::Conn, peer: &str, ignored: &mut u64) -> Option<String> {
    loop {
        let frame = match c.dec.decode(&mut c.rbuf) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => return Some(e.to_string()),
        };
        let frame = if c.transform {
            match c.mech.decode_frame(frame) {
                Ok(f) => f,
                Err(e) => return Some(e.to_string()),
            }
        } else {
            frame
        };
        if frame.command {
            if let Incoming::PeerError(r) = handle_command(&frame.body, &mut c.out, peer) {
                return Some(format!("peer sent ERROR: {r}"));
            }
        } else {
            *ignored += 1;
            if *ignored == 1 {
                tracing::debug!(peer, "outbox ignores messages sent by the peer");
            }
        }
    }
}
