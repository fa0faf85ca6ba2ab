//! The outbox: a DEALER-style connecting socket for one peer.
//!
//! The user side and the connection task share a `Shared` queue behind a short lock. The count and
//! byte limits cover every message not yet written to the socket (queued or being written), so a peer
//! that never reads fills the kernel buffers, then our queue, and then `try_send` returns
//! [`SendError::Full`] with the message.
//!
//! With a mechanism that does not transform frames (NULL), `try_send` encodes each message straight
//! into the queue as ZMTP frames, in segments of about 64 KiB (small frames copied, large frames kept
//! as their own `Bytes` and written vectored). The socket is shared: while the connection task is not
//! writing, `try_send` writes a segment that just filled up itself, and a message that finds nothing
//! queued goes out directly (a request/reply exchange costs no task hand-off). Otherwise the task,
//! woken when the queue goes from empty to non-empty, writes the segments in order. Frame-transforming
//! mechanisms (CURVE, later) queue whole messages that the task encodes.
//!
//! Two ways in, for two kinds of callers:
//! * [`Outbox::try_send`] / [`Outbox::send`] take `&self`: any task on any thread may send at any
//!   time, so every message takes the queue lock once (one atomic read-modify-write, see
//!   `QueueLock`). This is what the ZRE node uses.
//! * [`OutboxWriter`] (from [`Outbox::writer`]) is the outbox's `BufWriter`: one owner feeds it a run
//!   of messages, which it encodes into a buffer of its own with no lock and no atomic, and hands
//!   over in one go at `flush` (or every 64 KiB, or on drop). Room is reserved in the queue before a
//!   message is accepted, so the limits hold exactly either way.
//!
//! Connection life cycle: connect + handshake (under `handshake_timeout`), serve until the peer goes
//! away, then wait with exponential backoff and reconnect; messages queued meanwhile are sent after
//! the reconnect. Messages already handed to a socket that then failed are lost, as with libzmq.

mod queue;
mod send;
mod task;
#[cfg(test)]
mod tests;
mod writer;

pub use queue::Room;
pub use writer::OutboxWriter;

use self::queue::{msg_size, Queue, QueueLock, Segment, Shared};
use self::send::{until_room, Refused, SendFuture};
use self::task::run;
use crate::conn::OutBuf;
use crate::endpoint::Endpoint;
use crate::error::{SendError, TransportError};
use crate::mechanism::MechanismConfig;
use crate::{Frames, Heartbeat};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
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
            q: QueueLock::new(Queue {
                msgs: VecDeque::new(),
                segs: VecDeque::new(),
                spare: Vec::new(),
                count: 0,
                bytes: 0,
                direct: None,
                busy: false,
                idle: false,
                last_direct: None,
                reserved: (0, 0),
            }),
            encode_early: !config.mechanism.transforms_frames(),
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
    ///
    /// With a non-transforming mechanism (NULL) the message is encoded into the queue's write buffer
    /// right here, and when the connection is up and idle it is written to the socket directly (a
    /// non-blocking write; whatever the kernel does not take is queued for the connection task).
    #[inline]
    pub fn try_send(&self, frames: impl Into<Frames>) -> Result<(), SendError> {
        self.try_send_frames(frames.into())
    }

    /// `try_send` on a built message. Inlined into the caller, so the message stays where the
    /// caller built it and the queueing code reads it by reference: moving a freshly built message
    /// into a callee costs a store-forwarding stall (~7 ns) per message.
    #[inline(always)]
    fn try_send_frames(&self, mut frames: Frames) -> Result<(), SendError> {
        self.queue_message(&mut frames)
            .map_err(|r| r.hand_back(frames))
    }

    /// [`Outbox::try_send`] on a message given as its first frame (borrowed, at most 255 bytes:
    /// a protocol header) and the frames that follow it (borrowed: their bodies are copied or,
    /// when large, their `Bytes` cloned). The same bytes go on the wire as for `try_send` of the
    /// whole message, but nothing is built for it: with a non-transforming mechanism the header
    /// is encoded straight into the write buffer. A ZRE node sends every WHISPER this way.
    ///
    /// On refusal the message is handed back whole in the error, as by `try_send`.
    pub fn try_send_parts(&self, first: &[u8], rest: &[Bytes]) -> Result<(), SendError> {
        assert!(
            first.len() <= 255,
            "try_send_parts: first frame over 255 bytes"
        );
        let mut parts = Parts { first, rest };
        self.queue_message(&mut parts)
            .map_err(|r| r.hand_back(parts.take()))
    }

    /// Queue (or write directly) the message in `msg`; it is taken out of `msg` only when it is
    /// queued whole (transforming mechanisms), otherwise encoded from there.
    #[inline]
    fn queue_message<M: Message>(&self, msg: &mut M) -> Result<(), Refused> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let size = msg.size();
        let mut wake;
        let mut released = 0;
        {
            let mut guard = self.shared.q.lock();
            let q = &mut *guard;
            if q.full_for(size, &self.shared) {
                return Err(Refused::Full);
            }
            if !self.shared.encode_early {
                wake = q.msgs.is_empty();
                q.msgs.push_back(msg.take());
                q.count += 1;
                q.bytes += size;
            } else if let (true, Some(w)) = (q.producer_may_write(false), q.direct.as_ref()) {
                // Direct write: nothing is queued or being written, so the socket is ours.
                let mut buf = q.spare.pop().unwrap_or_default();
                msg.encode(&mut buf);
                let len = buf.len();
                let done = buf.try_write(w);
                q.last_direct = Some(std::time::Instant::now());
                q.idle = false;
                match done {
                    Ok(true) => {
                        q.recycle(buf);
                        wake = false;
                    }
                    _ => {
                        // Not all of it went out (an error is the connection task's to find). A
                        // started message must finish on this connection; an untouched one is an
                        // ordinary queued message.
                        let untouched = buf.len() == len;
                        q.segs.push_back(Segment {
                            buf,
                            msgs: 1,
                            bytes: size,
                            tail: !untouched,
                        });
                        q.count += 1;
                        q.bytes += size;
                        // The connection task takes over what the socket did not take.
                        wake = true;
                    }
                }
            } else {
                wake = q.segs.is_empty();
                let closed = q.push_encoded(msg, size);
                q.count += 1;
                q.bytes += size;
                // Each time a segment fills up, write what is queued if the socket is free; a
                // socket that would block is tried again at the next full segment (not per
                // message), or the connection task takes over when it runs.
                if closed && q.producer_may_write(true) {
                    let (n, left) = q.flush_direct();
                    released = n;
                    // Whatever the socket did not take is the connection task's to write.
                    wake = left;
                }
            }
        }
        if released > 0 {
            self.shared.room.notify_waiters();
        }
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Queue a message, waiting for room if the queue is full.
    ///
    /// The message is offered to the queue when `send` is called (as [`Outbox::try_send`] would);
    /// the returned future only does work if the queue was full, and then waits for room. So a
    /// sender that is not held back pays nothing for the future, and a `send` future that is
    /// dropped unpolled has still queued its message if there was room.
    #[inline]
    pub fn send(
        &self,
        frames: impl Into<Frames>,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + '_ {
        // Fast path: no waiter registered (that costs a lock on the Notify) and nothing moved
        // into the future's state unless the queue is full.
        match self.try_send_frames(frames.into()) {
            Ok(()) => SendFuture::Queued,
            Err(SendError::Full(f)) => SendFuture::Wait(Box::pin(self.wait_and_send(f))),
            Err(e) => SendFuture::Failed(Some(Box::new(e))),
        }
    }

    /// The slow path of [`Outbox::send`]: wait for room, retry.
    async fn wait_and_send(&self, frames: Frames) -> Result<(), SendError> {
        until_room(&self.shared.room, frames, |f| self.try_send_frames(f)).await
    }

    /// A buffered writer on this outbox, for a caller that sends runs of messages and knows where a
    /// run ends (see [`OutboxWriter`]).
    pub fn writer(&self) -> OutboxWriter {
        OutboxWriter::new(self.shared.clone())
    }

    /// A handle that can wait for room in this outbox's queue without borrowing the outbox, so a
    /// caller that keeps outboxes behind a lock can wait with the lock released (see [`Room`]).
    pub fn room(&self) -> Room {
        Room {
            shared: self.shared.clone(),
        }
    }

    /// Messages and payload bytes not yet written to the socket.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.shared.q.lock();
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
        self.shared.room.notify_waiters();
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
        self.shared.room.notify_waiters();
    }
}

/// A message as the queueing code sees it: its payload size, its plain ZMTP encoding, and (for
/// transforming mechanisms, which queue messages whole) the message itself.
pub(super) trait Message {
    fn size(&self) -> usize;
    fn encode(&self, buf: &mut OutBuf);
    fn take(&mut self) -> Frames;
}

impl Message for Frames {
    #[inline]
    fn size(&self) -> usize {
        msg_size(self)
    }
    #[inline]
    fn encode(&self, buf: &mut OutBuf) {
        buf.push_plain(self);
    }
    fn take(&mut self) -> Frames {
        std::mem::take(self)
    }
}

/// A message as a borrowed first frame and the frames that follow it ([`Outbox::try_send_parts`]).
struct Parts<'a> {
    first: &'a [u8],
    rest: &'a [Bytes],
}

impl Message for Parts<'_> {
    #[inline]
    fn size(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }
    #[inline]
    fn encode(&self, buf: &mut OutBuf) {
        buf.push_parts(self.first, self.rest);
    }
    fn take(&mut self) -> Frames {
        let mut frames = Frames::with_capacity(1 + self.rest.len());
        frames.push(Bytes::copy_from_slice(self.first));
        frames.extend(self.rest.iter().cloned());
        frames
    }
}
