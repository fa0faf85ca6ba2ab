//! [`OutboxWriter`]: the outbox's buffered writer.

use super::queue::{msg_size, segment_full, Segment, Shared, SEG_BYTES};
use super::send::{until_room, Refused, SendFuture};
#[cfg(doc)]
use super::Outbox;
use crate::conn::OutBuf;
use crate::error::SendError;
use crate::Frames;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    /// An empty writer on the queue in `shared` (see [`Outbox::writer`]).
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        OutboxWriter {
            shared,
            buf: OutBuf::default(),
            msgs: Vec::new(),
            count: 0,
            bytes: 0,
            granted: (0, 0),
            reserved: (0, 0),
        }
    }

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
