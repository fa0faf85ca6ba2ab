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

use crate::codec::FrameDecoder;
use crate::codec::Metadata;
use crate::conn::{self, handle_command, hb_tick, reserve_read, OutBuf, Stream, WriteHalf};
use crate::endpoint::Endpoint;
use crate::error::{HandshakeError, SendError, TransportError};
use crate::mechanism::{Mechanism, MechanismConfig};
use crate::{Frames, Heartbeat};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// Payload bytes per write batch (segment of pre-encoded frames, or messages taken per batch).
const BATCH_BYTES: usize = 256 * 1024;
/// Messages per write batch.
const BATCH_MSGS: usize = 8192;
/// Payload bytes per segment of pre-encoded messages; a full segment is written by `try_send` itself
/// when the socket is free (as a hand-written sender flushes its write buffer when full).
const SEG_BYTES: usize = 64 * 1024;
/// After a direct write, the next message is written directly too only if this much time has passed
/// (or the connection task has since found nothing to do): a request/reply exchange writes every
/// message at once, while a burst of sends writes its first message directly and batches the rest.
const DIRECT_GAP: Duration = Duration::from_micros(5);
/// Emptied segment buffers kept for reuse (each keeps its allocation).
const SPARE_BUFS: usize = 2;

/// Whether a run of `msgs` messages of `bytes` payload bytes fills a segment (or a writer's buffer).
fn segment_full(msgs: usize, bytes: usize) -> bool {
    bytes >= SEG_BYTES || msgs >= BATCH_MSGS
}

/// A run of messages already encoded as ZMTP frames, written by the connection task in one go.
struct Segment {
    buf: OutBuf,
    /// Messages in it.
    msgs: usize,
    /// Their payload bytes.
    bytes: usize,
    /// The rest of a message whose start a direct write already put on the current connection: it
    /// must be written next on that connection and means nothing to any other (dropped on
    /// disconnect). Nothing is appended to such a segment.
    tail: bool,
}

struct Queue {
    /// Frame-transforming mechanisms: whole messages, encoded by the connection task.
    msgs: VecDeque<Frames>,
    /// Other mechanisms (NULL): messages encoded at enqueue time, in order.
    segs: VecDeque<Segment>,
    /// Emptied buffers for new segments.
    spare: Vec<OutBuf>,
    /// Messages not yet written (queued + in flight).
    count: usize,
    /// Payload bytes not yet written (queued + in flight).
    bytes: usize,
    /// The live connection's socket while connected with a non-transforming mechanism: `try_send`
    /// may write to it directly while the connection task is not `busy` (see `idle`).
    direct: Option<Arc<WriteHalf>>,
    /// The connection task has claimed bytes it is writing: the socket is its alone.
    busy: bool,
    /// The connection task has nothing queued, in flight or being written, and has seen that since
    /// the last direct write: the next message may go straight to the socket. Cleared by a direct
    /// write (which wakes the task to set it again), so a burst of sends writes its first message
    /// directly and batches the rest instead of making one system call per message.
    idle: bool,
    /// When `try_send` last wrote a message directly (see [`DIRECT_GAP`]).
    last_direct: Option<std::time::Instant>,
    /// Room reserved by [`OutboxWriter`]s for messages they have not flushed yet (messages,
    /// bytes): counted against the limits, not reported as queued.
    reserved: (usize, usize),
}

/// The queue's lock: a test-and-test-and-set spin lock, released by a plain store.
///
/// Every `try_send` takes this lock once, so its cost is paid per message. A `std::sync::Mutex`
/// costs two atomic read-modify-writes per acquisition (`lock cmpxchg` to take it, `xchg` to release
/// it, because its release must learn whether a waiter sleeps); each one drains the store buffer,
/// and on this class of VM the pair is ~19 ns of a ~110 ns send (perf, 64 B one-way). This lock's
/// release is a plain `Release` store, so a send pays one read-modify-write instead of two.
///
/// The price is that a waiting thread spins instead of sleeping, so it must never wait long:
/// critical sections are a few copies and at most one non-blocking socket write (never an await,
/// never a blocking call), and a waiter that does not get the lock after a few spins yields its
/// thread to the scheduler, so a preempted holder on a 2-core machine gets to run and finish. With
/// the current-thread runtime (one thread, the common case) there is never a waiter at all. A panic
/// inside a critical section releases the lock (the guard's `Drop`); nothing later relies on a
/// half-updated queue.
struct QueueLock {
    locked: AtomicBool,
    q: std::cell::UnsafeCell<Queue>,
}

// SAFETY: the queue is only reached through `QueueGuard`, which exists only while `locked` is held
// (acquire on take, release on drop), so accesses from different threads never overlap.
unsafe impl Sync for QueueLock {}

/// Exclusive access to the queue while alive.
struct QueueGuard<'a> {
    lock: &'a QueueLock,
}

impl QueueLock {
    fn new(q: Queue) -> Self {
        QueueLock {
            locked: AtomicBool::new(false),
            q: std::cell::UnsafeCell::new(q),
        }
    }

    #[inline]
    fn lock(&self) -> QueueGuard<'_> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        QueueGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            // Test before test-and-set: wait on a plain load, not on the cache line's ownership.
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl std::ops::Deref for QueueGuard<'_> {
    type Target = Queue;
    #[inline]
    fn deref(&self) -> &Queue {
        // SAFETY: the guard holds the lock (see `QueueLock`).
        unsafe { &*self.lock.q.get() }
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Queue {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.q.get() }
    }
}

impl Drop for QueueGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

struct Shared {
    q: QueueLock,
    /// Messages are encoded at enqueue time (the mechanism does not transform frames).
    encode_early: bool,
    /// Wakes the connection task when the queue goes empty -> non-empty, after a direct write, or on
    /// close.
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

impl Queue {
    /// Whether a message of `size` payload bytes must be refused: the limits would be exceeded,
    /// counting what is queued, in flight and reserved by writers. A message larger than the byte
    /// limit is accepted into an otherwise empty queue.
    #[inline]
    fn full_for(&self, size: usize, shared: &Shared) -> bool {
        let count = self.count + self.reserved.0;
        count > 0
            && (count >= shared.max_msgs || self.bytes + self.reserved.1 + size > shared.max_bytes)
    }

    fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.segs.is_empty()
    }

    /// Whether a producer may write to the socket itself right now: the connection is up and its
    /// task is not writing, and either the producer just filled a segment, or nothing is queued
    /// and no direct write happened in the last [`DIRECT_GAP`] (unless the task has since found
    /// nothing to do).
    fn producer_may_write(&self, filled: bool) -> bool {
        !self.busy
            && self.direct.is_some()
            && (filled
                || (self.segs.is_empty()
                    && (self.idle || self.last_direct.is_none_or(|t| t.elapsed() >= DIRECT_GAP))))
    }

    /// Append an encoded message to the last open segment (or a new one). True when this filled
    /// the segment.
    fn push_encoded(&mut self, frames: &Frames, size: usize) -> bool {
        let open = matches!(self.segs.back(),
            Some(s) if !s.tail && !segment_full(s.msgs, s.bytes));
        if !open {
            let buf = self.spare.pop().unwrap_or_default();
            self.segs.push_back(Segment {
                buf,
                msgs: 0,
                bytes: 0,
                tail: false,
            });
        }
        let seg = self.segs.back_mut().expect("segment just ensured");
        seg.buf.push_plain(frames);
        seg.msgs += 1;
        seg.bytes += size;
        segment_full(seg.msgs, seg.bytes)
    }

    fn recycle(&mut self, buf: OutBuf) {
        if self.spare.len() < SPARE_BUFS && buf.is_empty() {
            self.spare.push(buf);
        }
    }

    /// Write queued segments straight to the socket (only while the connection task is not busy)
    /// until they are all out or the socket would block. A segment left partly written must be
    /// finished on this connection (marked `tail`). Returns the messages released and whether
    /// anything is left for the connection task.
    fn flush_direct(&mut self) -> (usize, bool) {
        let Some(w) = self.direct.as_ref() else {
            return (0, !self.segs.is_empty());
        };
        let mut released = 0;
        while let Some(seg) = self.segs.front_mut() {
            let len = seg.buf.len();
            match seg.buf.try_write(w) {
                Ok(true) => {
                    self.count -= seg.msgs;
                    self.bytes -= seg.bytes;
                    released += seg.msgs;
                    let seg = self.segs.pop_front().expect("front exists");
                    if self.spare.len() < SPARE_BUFS {
                        self.spare.push(seg.buf);
                    }
                }
                _ => {
                    // Would block, or an error (the connection task will meet it too).
                    if seg.buf.len() != len {
                        seg.tail = true;
                    }
                    break;
                }
            }
        }
        (released, !self.segs.is_empty())
    }
}

impl Shared {
    fn queue_empty(&self) -> bool {
        self.q.lock().is_empty()
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

    /// Queue (or write directly) the message in `frames`; it is taken out of `frames` only when
    /// it is queued whole (transforming mechanisms), otherwise encoded from there.
    fn queue_message(&self, frames: &mut Frames) -> Result<(), Refused> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let size = msg_size(frames);
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
                q.msgs.push_back(std::mem::take(frames));
                q.count += 1;
                q.bytes += size;
            } else if let (true, Some(w)) = (q.producer_may_write(false), q.direct.as_ref()) {
                // Direct write: nothing is queued or being written, so the socket is ours.
                let mut buf = q.spare.pop().unwrap_or_default();
                buf.push_plain(frames);
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
                let closed = q.push_encoded(frames, size);
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
        OutboxWriter {
            shared: self.shared.clone(),
            buf: OutBuf::default(),
            msgs: Vec::new(),
            count: 0,
            bytes: 0,
            granted: (0, 0),
            reserved: (0, 0),
        }
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

/// Messages a writer reserves room for at a time (fewer if the queue has less room).
const RESERVE_MSGS: usize = 1024;

/// A buffered writer on an [`Outbox`]: the outbox's `BufWriter`.
///
/// [`Outbox::try_send`] takes the queue lock for every message, because any task or thread may
/// send on the same outbox at any time and the connection task drains the queue concurrently. On
/// this class of machine that one atomic read-modify-write is ~16 ns of a ~95 ns send. A writer
/// avoids it for a caller that sends runs of messages: it reserves room in the outbox's queue for
/// many messages at once (one lock), encodes each message into a buffer of its own (no lock, no
/// atomic), and hands the buffer to the outbox in one go (one lock) when it is flushed — by
/// [`OutboxWriter::flush`], when the buffer reaches 64 KiB, or when the writer is dropped.
///
/// Semantics are those of `try_send`/`send` with a flush point: the same limits (room is reserved
/// before a message is accepted, so the count and byte limits hold exactly; a writer's unused
/// reservation is given back at every flush), the same order for the messages of one writer, and
/// the same reconnect behaviour once they are queued. Messages fed but not yet flushed are not
/// queued yet: a `try_send` on the outbox in between goes first, and a writer that is never
/// flushed or dropped never sends. A writer owns a handle on the outbox's queue, so it can be
/// kept anywhere; writing through it after the outbox was closed returns `Closed`, and what it
/// still buffered then is dropped, as queued messages are by a close without linger (flush before
/// [`Outbox::close`] to have them lingered).
pub struct OutboxWriter {
    shared: Arc<Shared>,
    /// Non-transforming mechanisms: the fed messages, encoded.
    buf: OutBuf,
    /// Transforming mechanisms: the fed messages, as they are.
    msgs: Vec<Frames>,
    /// Messages and payload bytes fed since the last flush.
    count: usize,
    bytes: usize,
    /// Room reserved in the queue since the last flush (messages, bytes), and how much of it is
    /// not used yet.
    granted: (usize, usize),
    reserved: (usize, usize),
}

impl fmt::Debug for OutboxWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxWriter")
            .field("buffered_messages", &self.count)
            .field("buffered_bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl OutboxWriter {
    /// Accept a message into the writer's buffer without waiting: `Full` when the outbox's queue
    /// has no room for it (the buffer is flushed first, so that what is buffered can drain), or
    /// `Closed`; the message is handed back in the error.
    #[inline(always)]
    pub fn try_feed(&mut self, frames: impl Into<Frames>) -> Result<(), SendError> {
        // Inlined (as `Outbox::try_send`): the message is encoded from where the caller built
        // it, not moved into a callee first.
        let frames = frames.into();
        let size = msg_size(&frames);
        if self.reserved.0 == 0 || self.reserved.1 < size {
            if let Err(r) = self.reserve(size) {
                return Err(r.hand_back(frames));
            }
        }
        self.reserved.0 -= 1;
        self.reserved.1 -= size;
        self.count += 1;
        self.bytes += size;
        if self.shared.encode_early {
            self.buf.push_plain(&frames);
        } else {
            self.msgs.push(frames);
        }
        if segment_full(self.count, self.bytes) {
            self.flush();
        }
        Ok(())
    }

    /// Accept a message into the writer's buffer, waiting for room in the outbox's queue if it is
    /// full (the buffer is flushed before waiting).
    ///
    /// As with [`Outbox::send`], the message is offered when `feed` is called; the returned future
    /// only does work (and only allocates) if the queue was full, so feeding a message that fits
    /// costs no future state.
    #[inline]
    pub fn feed(
        &mut self,
        frames: impl Into<Frames>,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + '_ {
        match self.try_feed(frames) {
            Ok(()) => SendFuture::Queued,
            Err(SendError::Full(f)) => SendFuture::Wait(Box::pin(self.wait_and_feed(f))),
            Err(e) => SendFuture::Failed(Some(Box::new(e))),
        }
    }

    /// The slow path of [`OutboxWriter::feed`]: wait for room, retry.
    async fn wait_and_feed(&mut self, frames: Frames) -> Result<(), SendError> {
        let shared = self.shared.clone();
        until_room(&shared.room, frames, |f| self.try_feed(f)).await
    }

    /// Hand everything fed so far to the outbox's queue (one lock), and give back unused room.
    /// Never waits: the room was reserved when the messages were fed. When the connection is up
    /// and its task is not writing, the buffer is written to the socket at once, as
    /// [`Outbox::try_send`] writes a message that finds the queue empty.
    pub fn flush(&mut self) {
        if self.granted == (0, 0) {
            return;
        }
        let (wake, released) = {
            let mut guard = self.shared.q.lock();
            let q = &mut *guard;
            // The reservation becomes the messages it was used for; the rest is given back.
            q.reserved.0 -= self.granted.0;
            q.reserved.1 -= self.granted.1;
            let gave_back = self.reserved.0;
            self.granted = (0, 0);
            self.reserved = (0, 0);
            let mut wake = false;
            let mut released = 0;
            if self.count == 0 {
                // Only room to give back.
            } else if self.shared.closing.load(Ordering::Acquire) {
                // Closed while we were buffering: these messages are not sent.
                self.buf.clear();
                self.msgs.clear();
            } else if self.shared.encode_early {
                q.count += self.count;
                q.bytes += self.bytes;
                let was_empty = q.segs.is_empty();
                // Written at once by the same rule as `try_send`: a full buffer whenever the
                // socket is free, a partial one (an explicit flush) if nothing else is queued.
                let write_now = q.producer_may_write(segment_full(self.count, self.bytes));
                let buf = self.buf.take_all();
                q.segs.push_back(Segment {
                    buf,
                    msgs: self.count,
                    bytes: self.bytes,
                    tail: false,
                });
                if write_now {
                    let (n, left) = q.flush_direct();
                    released = n;
                    q.last_direct = Some(std::time::Instant::now());
                    q.idle = false;
                    // Whatever the socket did not take is the connection task's to write.
                    wake = left;
                } else {
                    wake = was_empty;
                }
            } else {
                q.count += self.count;
                q.bytes += self.bytes;
                wake = q.msgs.is_empty();
                q.msgs.extend(self.msgs.drain(..));
            }
            self.count = 0;
            self.bytes = 0;
            (wake, released + gave_back)
        };
        if released > 0 {
            self.shared.room.notify_waiters();
        }
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Flush, then reserve room for at least one message of `size` bytes (and for up to
    /// [`RESERVE_MSGS`] messages / [`SEG_BYTES`] bytes, at most half of the room left).
    #[cold]
    fn reserve(&mut self, size: usize) -> Result<(), Refused> {
        self.flush();
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let mut q = self.shared.q.lock();
        let room_msgs = self.shared.max_msgs.saturating_sub(q.count + q.reserved.0);
        let room_bytes = self.shared.max_bytes.saturating_sub(q.bytes + q.reserved.1);
        let grant = if room_msgs >= 1 && room_bytes >= size {
            // At most half of the room left (but always this message), so that a writer holding
            // an unused reservation does not shut other senders out of a nearly full queue.
            (
                (room_msgs / 2).clamp(1, RESERVE_MSGS),
                (room_bytes / 2).min(SEG_BYTES).max(size),
            )
        } else if q.count + q.reserved.0 == 0 {
            // As `try_send`: a message larger than the byte limit goes into an empty queue.
            (1, size)
        } else {
            return Err(Refused::Full);
        };
        q.reserved.0 += grant.0;
        q.reserved.1 += grant.1;
        self.granted = grant;
        self.reserved = grant;
        Ok(())
    }
}

impl Drop for OutboxWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Offer `frames` with `attempt` until it is not refused as `Full`, waiting for `room` to be
/// notified in between. The waiter is registered before each attempt, so room made between a
/// refused attempt and the wait is not missed.
async fn until_room(
    room: &Notify,
    mut frames: Frames,
    mut attempt: impl FnMut(Frames) -> Result<(), SendError>,
) -> Result<(), SendError> {
    loop {
        let notified = room.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match attempt(frames) {
            Err(SendError::Full(f)) => {
                frames = f;
                notified.await;
            }
            other => return other,
        }
    }
}

/// Why a message could not be queued or a writer could not reserve room.
enum Refused {
    Full,
    Closed,
}

impl Refused {
    /// The user-facing error, with the refused message handed back.
    fn hand_back(self, frames: Frames) -> SendError {
        match self {
            Refused::Full => SendError::Full(frames),
            Refused::Closed => SendError::Closed(frames),
        }
    }
}

/// The future returned by [`Outbox::send`]: already queued, refused for good, or waiting for room.
/// The rare cases are boxed so the common one is a one-word value with nothing to move.
enum SendFuture<'a> {
    Queued,
    Failed(Option<Box<SendError>>),
    Wait(Pin<Box<dyn std::future::Future<Output = Result<(), SendError>> + Send + 'a>>),
}

impl std::future::Future for SendFuture<'_> {
    type Output = Result<(), SendError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            SendFuture::Queued => Poll::Ready(Ok(())),
            SendFuture::Failed(e) => {
                let e = e
                    .take()
                    .expect("Outbox::send future polled after completion");
                Poll::Ready(Err(*e))
            }
            SendFuture::Wait(f) => f.as_mut().poll(cx),
        }
    }
}

/// Waits for room in an [`Outbox`]'s queue (from [`Outbox::room`]).
///
/// `try_send` followed by `Full` is how a caller learns the queue is full; `Room::wait` is how it
/// waits for space without holding the outbox itself. It resolves once a message of the given size
/// would be accepted, or once the outbox is closed (the next send then reports `Closed`). Another
/// sender may take the room first; callers loop on `try_send`.
#[derive(Clone)]
pub struct Room {
    shared: Arc<Shared>,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room").finish_non_exhaustive()
    }
}

impl Room {
    /// Whether a message of `size` payload bytes would be accepted now (or the outbox is closed).
    pub fn available(&self, size: usize) -> bool {
        if self.shared.closing.load(Ordering::Acquire) {
            return true;
        }
        let q = self.shared.q.lock();
        !q.full_for(size, &self.shared)
    }

    /// Resolves once [`Room::available`] would return true.
    pub async fn wait(&self, size: usize) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.available(size) {
                return;
            }
            notified.await;
        }
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
///
/// `out` holds the bytes this task has claimed and is writing: a segment of pre-encoded messages
/// (NULL) or a batch it encoded itself (transforming mechanisms), followed by our own commands (PONG,
/// PING). While `out` is non-empty the socket is ours; when it is empty and nothing is queued the
/// task marks the queue idle and `try_send` may write directly. Commands produced while we do not own
/// the socket wait in `cmds` and are claimed together with the next segment, so they never land in
/// the middle of a message.
async fn serve(c: conn::Conn, cfg: &OutboxConfig, shared: &Shared, peer: &str) -> End {
    let conn::Conn {
        mut rd,
        wr,
        mut rbuf,
        mut dec,
        out: mut cmds,
        mut mech,
        transform,
        peer_minor,
        ..
    } = c;
    let wr = Arc::new(wr);
    let mut hb = conn::heartbeat_for(cfg.heartbeat.as_ref(), peer_minor);
    let mut out = OutBuf::default();
    let mut batch: Vec<Frames> = Vec::new();
    let (mut in_msgs, mut in_bytes) = (0usize, 0usize);
    let mut ignored = 0u64;
    if shared.encode_early {
        let mut q = shared.q.lock();
        q.direct = Some(wr.clone());
        q.idle = false;
    }
    let mut rx = RecvSide {
        dec: &mut dec,
        rbuf: &mut rbuf,
        mech: mech.as_mut(),
        transform,
        peer,
        ignored: &mut ignored,
    };
    // Frames that arrived together with the peer's READY (e.g. a PING).
    let first = rx.drain(&mut cmds);
    let end = if let Some(reason) = first {
        End::Lost(reason)
    } else {
        loop {
            if out.is_empty() {
                // Everything claimed before is written: release it and claim what comes next.
                let released = in_msgs;
                {
                    let mut guard = shared.q.lock();
                    let q = &mut *guard;
                    q.count -= in_msgs;
                    q.bytes -= in_bytes;
                    (in_msgs, in_bytes) = (0, 0);
                    if shared.encode_early {
                        if let Some(seg) = q.segs.pop_front() {
                            let done = std::mem::replace(&mut out, seg.buf);
                            q.recycle(done);
                            (in_msgs, in_bytes) = (seg.msgs, seg.bytes);
                        }
                    } else {
                        while in_msgs < BATCH_MSGS && in_bytes < BATCH_BYTES {
                            let Some(m) = q.msgs.pop_front() else { break };
                            in_bytes += msg_size(&m);
                            in_msgs += 1;
                            batch.push(m);
                        }
                    }
                    out.append(&mut cmds);
                    // While we hold bytes, the socket is ours alone.
                    q.busy = !out.is_empty() || !batch.is_empty();
                    q.idle = !q.busy;
                }
                if released > 0 {
                    shared.room.notify_waiters();
                }
                let mut encode_err = None;
                for m in batch.drain(..) {
                    if let Err(e) = out.push_message(&m, rx.mech, transform) {
                        encode_err = Some(e);
                    }
                }
                if let Some(e) = encode_err {
                    break End::Lost(format!("encode error: {e}"));
                }
                if out.is_empty() && shared.closing.load(Ordering::Acquire) && shared.queue_empty()
                {
                    break End::Closed;
                }
            } else {
                // The socket is ours until `out` is written: commands can go right behind it.
                out.append(&mut cmds);
            }
            reserve_read(rx.rbuf, rx.dec);
            tokio::select! {
                biased;
                r = rd.read_buf(rx.rbuf) => match r {
                    Ok(0) => break End::Lost("peer closed the connection".into()),
                    Err(e) => break End::Lost(format!("read error: {e}")),
                    Ok(_) => {
                        if let Some(h) = hb.as_mut() {
                            h.last_recv = tokio::time::Instant::now();
                        }
                        if let Some(reason) = rx.drain(&mut cmds) {
                            break End::Lost(reason);
                        }
                    }
                },
                r = out.write_some_shared(&wr), if !out.is_empty() => {
                    if let Err(e) = r {
                        break End::Lost(format!("write error: {e}"));
                    }
                }
                _ = shared.wake.notified(), if out.is_empty() => {}
                _ = hb_tick(&mut hb) => {
                    if let Some(h) = hb.as_mut() {
                        if let Err(reason) = h.on_tick(&mut cmds, &mut *rx.mech, transform) {
                            break End::Lost(reason);
                        }
                    }
                }
            }
        }
    };
    // Take the socket back from `try_send`; what it left half-written dies with the connection.
    let mut lost = in_msgs;
    {
        let mut q = shared.q.lock();
        q.direct = None;
        q.busy = false;
        q.idle = false;
        q.count -= in_msgs;
        q.bytes -= in_bytes;
        if matches!(q.segs.front(), Some(s) if s.tail) {
            let s = q.segs.pop_front().expect("front exists");
            q.count -= s.msgs;
            q.bytes -= s.bytes;
            lost += s.msgs;
        }
    }
    shared.room.notify_waiters();
    if lost > 0 && matches!(end, End::Lost(_)) {
        tracing::debug!(peer, lost, "messages in flight lost with the connection");
    }
    if let End::Closed = end {
        if let Ok(mut w) = Arc::try_unwrap(wr) {
            let _ = w.shutdown().await;
        }
    }
    end
}

/// The receive side of an outbox connection.
struct RecvSide<'a> {
    dec: &'a mut FrameDecoder,
    rbuf: &'a mut BytesMut,
    mech: &'a mut dyn Mechanism,
    transform: bool,
    peer: &'a str,
    ignored: &'a mut u64,
}

impl RecvSide<'_> {
    /// Decode what the peer sent: answer PINGs (into `cmds`), report ERROR, drop messages (a DEALER
    /// outbox only sends).
    fn drain(&mut self, cmds: &mut OutBuf) -> Option<String> {
        loop {
            let frame = match self.dec.decode(self.rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            };
            let frame = if self.transform {
                match self.mech.decode_frame(frame) {
                    Ok(f) => f,
                    Err(e) => return Some(e.to_string()),
                }
            } else {
                frame
            };
            if frame.command {
                let seen = handle_command(&frame.body, cmds, self.peer, self.mech, self.transform);
                if let Some(reason) = seen.fatal() {
                    return Some(reason);
                }
            } else {
                *self.ignored += 1;
                if *self.ignored == 1 {
                    tracing::debug!(peer = self.peer, "outbox ignores messages sent by the peer");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inbox, InboxConfig, InboxEvent};

    /// The handles can be shared across tasks and threads (the queue lock is hand-written, so
    /// this is checked rather than assumed).
    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Outbox>();
        send_sync::<OutboxWriter>();
        send_sync::<Room>();
    }

    /// Several tasks on a multi-thread runtime share one outbox (one of them through a writer):
    /// direct writes, inline flushes of full segments, writer flushes and the connection task's
    /// writes interleave, yet every message arrives once, whole, and in order per sender; mixed
    /// sizes include frames written vectored; the limits are small enough to be hit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_keep_order_and_lose_nothing() {
        let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
            .await
            .unwrap();
        let ob = Arc::new(
            Outbox::connect(
                &inbox.endpoint().to_string(),
                Bytes::from_static(b"\x01conc"),
                OutboxConfig {
                    max_queued_messages: 5_000,
                    ..OutboxConfig::default()
                },
            )
            .unwrap(),
        );
        const SENDERS: u8 = 4;
        const PER: u32 = 20_000;
        let mut tasks = Vec::new();
        for s in 0..SENDERS {
            let ob = ob.clone();
            tasks.push(tokio::spawn(async move {
                // Sender 0 goes through a writer, flushed every 100 messages and at the end.
                let mut writer = (s == 0).then(|| ob.writer());
                for i in 0..PER {
                    let size = match i % 500 {
                        0 => 20_000, // vectored
                        1 => 3_000,
                        _ => 8 + (i % 40) as usize,
                    };
                    let mut body = vec![s; size];
                    body[1..5].copy_from_slice(&i.to_be_bytes());
                    let frames = if i % 7 == 0 {
                        vec![Bytes::from(body), Bytes::from_static(b"tail")]
                    } else {
                        vec![Bytes::from(body)]
                    };
                    match writer.as_mut() {
                        Some(w) => {
                            w.feed(frames).await.unwrap();
                            if i % 100 == 99 {
                                w.flush();
                            }
                        }
                        None => ob.send(frames).await.unwrap(),
                    }
                    if i % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                if let Some(mut w) = writer {
                    w.flush();
                }
            }));
        }
        let mut next = [0u32; SENDERS as usize];
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got < SENDERS as u32 * PER {
            let ev = tokio::time::timeout_at(deadline, inbox.recv())
                .await
                .expect("all messages in time")
                .expect("inbox open");
            if let InboxEvent::Message { frames, .. } = ev {
                let b = &frames[0];
                let s = b[0] as usize;
                let i = u32::from_be_bytes(b[1..5].try_into().unwrap());
                assert_eq!(i, next[s], "sender {s}: out of order or lost");
                assert_eq!(frames.len(), if i % 7 == 0 { 2 } else { 1 });
                assert!(b[5..].iter().all(|&x| x == s as u8), "corrupt body");
                next[s] += 1;
                got += 1;
            } else if !matches!(ev, InboxEvent::Accepted { .. }) {
                panic!("unexpected {ev:?}");
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(ob.queued().0, 0);
    }
}
