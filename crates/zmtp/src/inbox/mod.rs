//! The inbox: a ROUTER-style listening socket.
//!
//! Layout: one accept task owns the listener and a `JoinSet` of handshake tasks, each under the
//! handshake timeout (a slow-loris peer only holds its own task; dropping the inbox aborts the
//! accept task, which aborts every handshake). A connection that completes its handshake is handed
//! to the [`Inbox`] itself, which owns it from then on and reads it **inside [`Inbox::recv`]**:
//! there is no per-connection task between the socket and the caller, so a message costs no task
//! hand-off and no intermediate queue (a round trip pays one wake-up per direction, like a
//! hand-written tokio server).
//!
//! Every established connection is polled with its own waker, which puts the connection on a ready
//! queue and wakes the consumer (the same idea as `FuturesUnordered`, specialised: one waker
//! allocation per connection, nothing per message). `recv` reads the connection at the head of the
//! queue, decodes one message per call from its buffer (frame bodies are zero-copy slices of the
//! read buffer), and moves on to the next ready connection after [`TURN_BUDGET`] messages or when
//! the connection has nothing more, so one busy peer cannot starve the others. Reading only happens
//! in `recv`: a consumer that falls behind stops reading, the kernel buffers fill, and TCP flow
//! control pushes back on the sender — memory stays bounded without any queue of our own.
//!
//! Two ways to read the same event stream: [`Inbox::recv`] returns each message inside an
//! [`InboxEvent`]; [`Inbox::recv_into`] puts a message's frames into a buffer the caller reuses and
//! returns only the identity (for hot loops: it saves the copies of the 112-byte event).
//!
//! Identities: the peer's READY `Identity` property, or a generated 5-byte `0x00 + u32` (as libzmq
//! does). A new connection with an identity already present takes over (ROUTER_HANDOVER): the old
//! connection is closed and its `Disconnected` is delivered before the new `Accepted`.

mod accept;
mod events;
mod live;
mod ready;

pub use events::{InboxEvent, PeerAddr, Received};

use self::accept::{accept_loop, bind_tcp, Control, Established, Listener};
use self::live::{Live, Polled};
use self::ready::{ConnWaker, ReadyQueue};
use crate::conn;
use crate::curve::CurvePublicKey;
use crate::endpoint::Endpoint;
use crate::error::TransportError;
use crate::identity::Identity;
use crate::mechanism::MechanismConfig;
use crate::{Frames, Heartbeat};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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

/// Control messages buffered between the accept side and the consumer.
const CONTROL_QUEUE: usize = 256;
/// Most messages taken from one connection before the next ready connection gets its turn.
const TURN_BUDGET: usize = 256;

/// A ROUTER-style listening socket. Dropping it stops accepting and closes all connections.
///
/// The inbox owns its established connections and reads them itself inside [`Inbox::recv`]: a
/// message goes from the socket to the caller with no task hand-off in between (see the module doc).
pub struct Inbox {
    endpoint: Endpoint,
    /// Finished handshakes and handshake failures from the accept task.
    control: mpsc::Receiver<Control>,
    /// The accept side has gone away (only after a panic; it lives as long as the inbox).
    control_closed: bool,
    /// Established connections by slot.
    conns: Vec<Option<Live>>,
    /// Free slots of `conns`.
    free: Vec<usize>,
    /// Identity -> slot of its live connection (for handover).
    by_identity: HashMap<Identity, usize>,
    ready: Arc<ReadyQueue>,
    /// The connection being read and how many more messages it may deliver in this turn.
    current: Option<(usize, usize)>,
    /// Connection events waiting to be delivered (ordered before further messages).
    pending: VecDeque<InboxEvent>,
    max_frame_size: usize,
    heartbeat: Option<Heartbeat>,
    task: JoinHandle<()>,
    ipc_path: Option<PathBuf>,
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
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        tracing::debug!(endpoint = %bound, "inbox bound");
        let max_frame_size = config.max_frame_size;
        let heartbeat = config.heartbeat;
        let task = tokio::spawn(accept_loop(listener, Arc::new(config), tx));
        Ok(Inbox {
            endpoint: bound,
            control: rx,
            control_closed: false,
            conns: Vec::new(),
            free: Vec::new(),
            by_identity: HashMap::new(),
            ready: Arc::default(),
            current: None,
            pending: VecDeque::new(),
            max_frame_size,
            heartbeat,
            task,
            ipc_path,
        })
    }

    /// The endpoint actually bound (ephemeral port resolved), e.g. `tcp://127.0.0.1:49152`.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Next event; `None` once closed. Cancel-safe: all progress is kept in the inbox, so a `recv`
    /// dropped in a `select!` loses nothing.
    ///
    /// This is also what drives the established connections (reading, answering PINGs, heartbeats):
    /// an inbox nobody calls `recv` on reads nothing, and TCP flow control pushes back on senders.
    #[inline]
    pub async fn recv(&mut self) -> Option<InboxEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Next event if one is ready, without waiting.
    ///
    /// Registers no waker: a task that drains with `try_recv` and then awaits [`Inbox::recv`]
    /// keeps its registration from that `recv` (nothing is swapped out and back per message).
    pub fn try_recv(&mut self) -> Option<InboxEvent> {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(ev) = self.poll_fast() {
            return ev;
        }
        match self.poll_recv_slow(&mut cx, false) {
            Poll::Ready(ev) => ev,
            Poll::Pending => None,
        }
    }

    /// Poll for the next event (the building block of [`Inbox::recv`]).
    #[inline]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<InboxEvent>> {
        // The fast path's result is returned as it is, not unwrapped and re-wrapped: each re-wrap
        // of the 112-byte event is a copy, and measurably so per message.
        let fast = self.poll_fast();
        if fast.is_ready() {
            return fast;
        }
        self.poll_recv_slow(cx, true)
    }

    /// Next message into `frames`, a buffer the caller keeps and reuses; `None` once closed.
    ///
    /// The same stream as [`Inbox::recv`] — same order, same fairness, cancel-safe — in a shape
    /// made for a hot receive loop: a message's frames are put straight into `frames` (cleared
    /// first) and only the sender's identity is returned, and the rare connection events come
    /// boxed. `recv` returns every message inside a 112-byte event that is built, returned and
    /// taken apart again; on small messages those copies are a good part of the receive cost
    /// (~25 ns of ~90 ns per 64-byte message on the benchmark machine).
    pub async fn recv_into(&mut self, frames: &mut Frames) -> Option<Received> {
        std::future::poll_fn(|cx| self.poll_recv_into(cx, frames)).await
    }

    /// [`Inbox::recv_into`] if a message or event is ready, without waiting (and, as
    /// [`Inbox::try_recv`], without registering a waker): the shape for draining a batch after a
    /// `recv` woke the caller.
    ///
    /// Two-frame messages (a protocol header and a body, as ZRE sends) are looked for first.
    pub fn try_recv_into(&mut self, frames: &mut Frames) -> Option<Received> {
        if let Some((pair, identity)) = self.fast_pair() {
            *frames = Frames::from_buf(pair);
            return Some(Received::Message(identity));
        }
        if let Some((body, identity)) = self.fast_body() {
            *frames = crate::frames![body];
            return Some(Received::Message(identity));
        }
        frames.clear();
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_recv_slow(&mut cx, false) {
            Poll::Ready(Some(InboxEvent::Message {
                identity,
                frames: f,
            })) => {
                *frames = f;
                Some(Received::Message(identity))
            }
            Poll::Ready(Some(ev)) => Some(Received::Event(Box::new(ev))),
            Poll::Ready(None) | Poll::Pending => None,
        }
    }

    /// The fast path of [`Inbox::try_recv_into`] for a protocol whose messages are a short
    /// header frame and a body (ZRE): if the connection whose turn it is has a whole two-frame
    /// data message buffered whose first frame is at most [`SHORT_FIRST`] bytes, calls `f` with
    /// the sender's identity, the first frame (borrowed) and the second, and returns its result.
    /// Otherwise `None`, nothing is consumed, and the caller takes [`Inbox::try_recv_into`],
    /// which delivers the same message the ordinary way. Only the body is split off the read
    /// buffer: one reference count per message instead of two, and no `Bytes` for the header.
    ///
    /// [`SHORT_FIRST`]: crate::codec::SHORT_FIRST
    #[inline]
    pub fn try_recv_short_pair<R>(
        &mut self,
        f: impl FnOnce(&Identity, &[u8], bytes::Bytes) -> R,
    ) -> Option<R> {
        let (true, Some((slot, budget @ 2..))) = (self.pending.is_empty(), self.current) else {
            return None;
        };
        let live = self.conns[slot].as_mut()?;
        let mut first = [0u8; crate::codec::SHORT_FIRST];
        let (n, body) = live.buffered_pair_short(self.max_frame_size, &mut first)?;
        self.current = Some((slot, budget - 1));
        Some(f(&live.identity, &first[..n], body))
    }

    /// Poll form of [`Inbox::recv_into`].
    #[inline]
    pub fn poll_recv_into(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Frames,
    ) -> Poll<Option<Received>> {
        frames.clear();
        if let Some((body, identity)) = self.fast_body() {
            frames.push(body);
            return Poll::Ready(Some(Received::Message(identity)));
        }
        if let Some((pair, identity)) = self.fast_pair() {
            frames.extend(pair);
            return Poll::Ready(Some(Received::Message(identity)));
        }
        match self.poll_recv_slow(cx, true) {
            Poll::Ready(Some(InboxEvent::Message {
                identity,
                frames: f,
            })) => {
                *frames = f;
                Poll::Ready(Some(Received::Message(identity)))
            }
            Poll::Ready(Some(ev)) => Poll::Ready(Some(Received::Event(Box::new(ev)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Fast path: the current connection has another single-frame message buffered.
    #[inline]
    fn poll_fast(&mut self) -> Poll<Option<InboxEvent>> {
        match self.fast_body() {
            // `frames!` builds the vector from a whole inline buffer: ~20 ns per message cheaper
            // than `smallvec![body]` (an empty vector plus a push).
            Some((body, identity)) => Poll::Ready(Some(InboxEvent::Message {
                identity,
                frames: crate::frames![body],
            })),
            None => match self.fast_pair() {
                Some(([a, b], identity)) => Poll::Ready(Some(InboxEvent::Message {
                    identity,
                    frames: crate::frames![a, b],
                })),
                None => Poll::Pending,
            },
        }
    }

    /// The fast path of `recv` and `recv_into`: the body of the current connection's next
    /// message, with its sender's identity, if it is a single data frame already buffered and
    /// the connection's turn is not over.
    #[inline]
    fn fast_body(&mut self) -> Option<(bytes::Bytes, Identity)> {
        let (true, Some((slot, budget @ 2..))) = (self.pending.is_empty(), self.current) else {
            return None;
        };
        let live = self.conns[slot].as_mut()?;
        let body = live.buffered_body()?;
        self.current = Some((slot, budget - 1));
        Some((body, live.identity.clone()))
    }

    /// Like [`Inbox::fast_body`], for a message of exactly two data frames (a ZRE message).
    #[inline]
    fn fast_pair(&mut self) -> Option<([bytes::Bytes; 2], Identity)> {
        let (true, Some((slot, budget @ 2..))) = (self.pending.is_empty(), self.current) else {
            return None;
        };
        let live = self.conns[slot].as_mut()?;
        let pair = live.buffered_pair(self.max_frame_size)?;
        self.current = Some((slot, budget - 1));
        Some((pair, live.identity.clone()))
    }

    /// Everything else: connection events, reading sockets, commands, multipart, turn-taking.
    /// `register`: leave `cx`'s waker to be woken by new connections and ready ones (false for
    /// `try_recv`, which must not replace the waker of a task waiting in `recv`).
    fn poll_recv_slow(&mut self, cx: &mut Context<'_>, register: bool) -> Poll<Option<InboxEvent>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Poll::Ready(Some(ev));
            }
            // 1. The connection whose turn it is.
            if let Some((slot, budget)) = self.current {
                let Some(live) = self.conns[slot].as_mut() else {
                    self.current = None;
                    continue;
                };
                match live.poll(self.max_frame_size) {
                    Polled::Message(ev) => {
                        if budget <= 1 {
                            // Turn over: back of the queue, after the others that are ready.
                            self.current = None;
                            self.ready.lock().push(slot);
                        } else {
                            self.current = Some((slot, budget - 1));
                        }
                        return Poll::Ready(Some(ev));
                    }
                    Polled::Idle => self.current = None,
                    Polled::Closed(reason) => {
                        self.current = None;
                        self.remove(slot, reason);
                    }
                }
                continue;
            }
            // 2. New connections and handshake failures.
            if !self.control_closed {
                let polled = if register {
                    self.control.poll_recv(cx)
                } else {
                    match self.control.try_recv() {
                        Ok(c) => Poll::Ready(Some(c)),
                        Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
                        Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
                    }
                };
                match polled {
                    Poll::Ready(Some(Control::Event(ev))) => return Poll::Ready(Some(ev)),
                    Poll::Ready(Some(Control::Established(est))) => {
                        self.insert(*est);
                        continue;
                    }
                    Poll::Ready(None) => self.control_closed = true,
                    Poll::Pending => {}
                }
            }
            // 3. The next connection that was woken.
            let next = {
                let mut r = self.ready.lock();
                match r.queue.pop_front() {
                    Some(slot) => {
                        r.queued[slot] = false;
                        Some(slot)
                    }
                    None => {
                        if register && !r.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            r.waker = Some(cx.waker().clone());
                        }
                        None
                    }
                }
            };
            match next {
                Some(slot) => self.current = Some((slot, TURN_BUDGET)),
                None if self.control_closed && self.by_identity.is_empty() => {
                    return Poll::Ready(None)
                }
                None => return Poll::Pending,
            }
        }
    }

    /// Take in a connection that finished its handshake; an older connection with the same
    /// identity is closed first (ROUTER_HANDOVER), so its `Disconnected` comes before the new
    /// `Accepted`.
    fn insert(&mut self, est: Established) {
        let Established {
            conn,
            identity,
            peer,
            socket_type,
            slot: guard,
        } = est;
        if let Some(&old) = self.by_identity.get(&identity) {
            tracing::debug!(%peer, "identity already connected: handing over");
            self.remove(
                old,
                "replaced by a new connection with the same identity".into(),
            );
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let waker = Waker::from(Arc::new(ConnWaker {
            slot,
            ready: self.ready.clone(),
        }));
        let hb = conn::heartbeat_for(self.heartbeat.as_ref(), conn.peer_minor);
        let peer_key = conn.peer_key;
        self.conns[slot] = Some(Live {
            c: conn,
            identity: identity.clone(),
            peer_key,
            peer,
            peer_s: peer.to_string(),
            hb,
            partial: Frames::new(),
            partial_cost: 0,
            rpool: conn::ReadPool::new(),
            waker,
            _slot: guard,
        });
        self.by_identity.insert(identity.clone(), slot);
        // Polled once at once: frames may have arrived together with the peer's READY.
        self.ready.lock().push(slot);
        self.pending.push_back(InboxEvent::Accepted {
            peer,
            identity,
            socket_type,
            peer_key,
        });
    }

    /// Drop the connection in `slot` and queue its `Disconnected`.
    fn remove(&mut self, slot: usize, reason: String) {
        let Some(live) = self.conns[slot].take() else {
            return;
        };
        self.free.push(slot);
        if self.by_identity.get(&live.identity) == Some(&slot) {
            self.by_identity.remove(&live.identity);
        }
        tracing::debug!(peer = %live.peer, %reason, "inbox connection closed");
        self.pending.push_back(InboxEvent::Disconnected {
            peer: live.peer,
            identity: live.identity,
            reason,
        });
    }

    /// The CURVE public key authenticated for the live connection with this identity (`None` for
    /// NULL connections and unknown identities).
    ///
    /// Between two `recv` calls the identity of the message just returned maps to the connection
    /// it came from (a handover replaces the mapping only inside `recv`, after the old
    /// connection's `Disconnected`), so calling this right after a message gives the key of its
    /// sender. A hash lookup, paid only by callers that want the key: the NULL receive path is
    /// unchanged.
    pub fn peer_key(&self, identity: &[u8]) -> Option<CurvePublicKey> {
        let slot = *self.by_identity.get(identity)?;
        self.conns[slot].as_ref()?.peer_key
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
            .field("connections", &self.by_identity.len())
            .finish()
    }
}
