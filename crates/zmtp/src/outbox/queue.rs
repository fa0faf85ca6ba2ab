//! The queue shared by the user side and the connection task: segments of encoded messages, the
//! hand-written lock around it, the limits, and [`Room`].

#[cfg(doc)]
use super::Outbox;
use super::OutboxState;
use crate::conn::{OutBuf, WriteHalf};
use crate::Frames;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Payload bytes per write batch (segment of pre-encoded frames, or messages taken per batch).
pub(super) const BATCH_BYTES: usize = 256 * 1024;
/// Messages per write batch.
pub(super) const BATCH_MSGS: usize = 8192;
/// Payload bytes per segment of pre-encoded messages; a full segment is written by `try_send` itself
/// when the socket is free (as a hand-written sender flushes its write buffer when full).
pub(super) const SEG_BYTES: usize = 64 * 1024;
/// After a direct write, the next message is written directly too only if this much time has passed
/// (or the connection task has since found nothing to do): a request/reply exchange writes every
/// message at once, while a burst of sends writes its first message directly and batches the rest.
pub(super) const DIRECT_GAP: Duration = Duration::from_micros(5);
/// Emptied segment buffers kept for reuse (each keeps its allocation).
pub(super) const SPARE_BUFS: usize = 2;

/// Whether a run of `msgs` messages of `bytes` payload bytes fills a segment (or a writer's buffer).
pub(super) fn segment_full(msgs: usize, bytes: usize) -> bool {
    bytes >= SEG_BYTES || msgs >= BATCH_MSGS
}

/// A run of messages already encoded as ZMTP frames, written by the connection task in one go.
pub(super) struct Segment {
    pub(super) buf: OutBuf,
    /// Messages in it.
    pub(super) msgs: usize,
    /// Their payload bytes.
    pub(super) bytes: usize,
    /// The rest of a message whose start a direct write already put on the current connection: it
    /// must be written next on that connection and means nothing to any other (dropped on
    /// disconnect). Nothing is appended to such a segment.
    pub(super) tail: bool,
}

pub(super) struct Queue {
    /// Frame-transforming mechanisms: whole messages, encoded by the connection task.
    pub(super) msgs: VecDeque<Frames>,
    /// Other mechanisms (NULL): messages encoded at enqueue time, in order.
    pub(super) segs: VecDeque<Segment>,
    /// Emptied buffers for new segments.
    pub(super) spare: Vec<OutBuf>,
    /// Messages not yet written (queued + in flight).
    pub(super) count: usize,
    /// Payload bytes not yet written (queued + in flight).
    pub(super) bytes: usize,
    /// The live connection's socket while connected with a non-transforming mechanism: `try_send`
    /// may write to it directly while the connection task is not `busy` (see `idle`).
    pub(super) direct: Option<Arc<WriteHalf>>,
    /// The connection task has claimed bytes it is writing: the socket is its alone.
    pub(super) busy: bool,
    /// The connection task has nothing queued, in flight or being written, and has seen that since
    /// the last direct write: the next message may go straight to the socket. Cleared by a direct
    /// write (which wakes the task to set it again), so a burst of sends writes its first message
    /// directly and batches the rest instead of making one system call per message.
    pub(super) idle: bool,
    /// When `try_send` last wrote a message directly (see [`DIRECT_GAP`]).
    pub(super) last_direct: Option<std::time::Instant>,
    /// Room reserved by [`OutboxWriter`]s for messages they have not flushed yet (messages,
    /// bytes): counted against the limits, not reported as queued.
    pub(super) reserved: (usize, usize),
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
pub(super) struct QueueLock {
    locked: AtomicBool,
    q: std::cell::UnsafeCell<Queue>,
}

// SAFETY: the queue is only reached through `QueueGuard`, which exists only while `locked` is held
// (acquire on take, release on drop), so accesses from different threads never overlap.
unsafe impl Sync for QueueLock {}

/// Exclusive access to the queue while alive.
pub(super) struct QueueGuard<'a> {
    lock: &'a QueueLock,
}

impl QueueLock {
    pub(super) fn new(q: Queue) -> Self {
        QueueLock {
            locked: AtomicBool::new(false),
            q: std::cell::UnsafeCell::new(q),
        }
    }

    #[inline]
    pub(super) fn lock(&self) -> QueueGuard<'_> {
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

pub(super) struct Shared {
    pub(super) q: QueueLock,
    /// Messages are encoded at enqueue time (the mechanism does not transform frames).
    pub(super) encode_early: bool,
    /// Wakes the connection task when the queue goes empty -> non-empty, after a direct write, or on
    /// close.
    pub(super) wake: Notify,
    /// Wakes senders waiting for room (and `close` waiting for the flush).
    pub(super) room: Notify,
    /// Interrupts the reconnect backoff on close.
    pub(super) close_notify: Notify,
    pub(super) closing: AtomicBool,
    pub(super) max_msgs: usize,
    pub(super) max_bytes: usize,
    pub(super) state: watch::Sender<OutboxState>,
}

impl Queue {
    /// Whether a message of `size` payload bytes must be refused: the limits would be exceeded,
    /// counting what is queued, in flight and reserved by writers. A message larger than the byte
    /// limit is accepted into an otherwise empty queue.
    #[inline]
    pub(super) fn full_for(&self, size: usize, shared: &Shared) -> bool {
        let count = self.count + self.reserved.0;
        count > 0
            && (count >= shared.max_msgs || self.bytes + self.reserved.1 + size > shared.max_bytes)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.segs.is_empty()
    }

    /// Whether a producer may write to the socket itself right now: the connection is up and its
    /// task is not writing, and either the producer just filled a segment, or nothing is queued
    /// and no direct write happened in the last [`DIRECT_GAP`] (unless the task has since found
    /// nothing to do).
    pub(super) fn producer_may_write(&self, filled: bool) -> bool {
        !self.busy
            && self.direct.is_some()
            && (filled
                || (self.segs.is_empty()
                    && (self.idle || self.last_direct.is_none_or(|t| t.elapsed() >= DIRECT_GAP))))
    }

    /// Append an encoded message to the last open segment (or a new one). True when this filled
    /// the segment.
    pub(super) fn push_encoded(&mut self, msg: &impl super::Message, size: usize) -> bool {
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
        msg.encode(&mut seg.buf);
        seg.msgs += 1;
        seg.bytes += size;
        segment_full(seg.msgs, seg.bytes)
    }

    pub(super) fn recycle(&mut self, buf: OutBuf) {
        if self.spare.len() < SPARE_BUFS && buf.is_empty() {
            self.spare.push(buf);
        }
    }

    /// Write queued segments straight to the socket (only while the connection task is not busy)
    /// until they are all out or the socket would block. A segment left partly written must be
    /// finished on this connection (marked `tail`). Returns the messages released and whether
    /// anything is left for the connection task.
    pub(super) fn flush_direct(&mut self) -> (usize, bool) {
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
    pub(super) fn queue_empty(&self) -> bool {
        self.q.lock().is_empty()
    }
}

pub(super) fn msg_size(m: &Frames) -> usize {
    m.iter().map(|f| f.len()).sum()
}

/// Waits for room in an [`Outbox`]'s queue (from [`Outbox::room`]).
///
/// `try_send` followed by `Full` is how a caller learns the queue is full; `Room::wait` is how it
/// waits for space without holding the outbox itself. It resolves once a message of the given size
/// would be accepted, or once the outbox is closed (the next send then reports `Closed`). Another
/// sender may take the room first; callers loop on `try_send`.
#[derive(Clone)]
pub struct Room {
    pub(super) shared: Arc<Shared>,
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
