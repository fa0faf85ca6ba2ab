//! An established connection as the inbox owns it, and how one is polled for its next message.

use super::accept::SlotGuard;
use super::{InboxEvent, PeerAddr};
use crate::conn::{self, handle_command};
use crate::curve::CurvePublicKey;
use crate::identity::Identity;
use crate::Frames;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio_util::io::poll_read_buf;

/// An established connection, owned by the inbox and read by `Inbox::recv` itself.
pub(super) struct Live {
    pub(super) c: conn::Conn,
    pub(super) identity: Identity,
    /// The CURVE key the handshake authenticated (`None` for NULL).
    pub(super) peer_key: Option<CurvePublicKey>,
    pub(super) peer: PeerAddr,
    /// `peer` rendered once, for log lines.
    pub(super) peer_s: String,
    pub(super) hb: Option<conn::HeartbeatState>,
    /// Frames of a multipart message still arriving.
    pub(super) partial: Frames,
    /// Bytes (plus per-frame bookkeeping) of `partial`, bounded by `max_frame_size`.
    pub(super) partial_cost: usize,
    pub(super) rpool: conn::ReadPool,
    /// Wakes this connection's slot (see [`ReadyQueue`]).
    pub(super) waker: Waker,
    pub(super) _slot: SlotGuard,
}

/// What polling one connection gave.
pub(super) enum Polled {
    /// A complete message.
    Message(InboxEvent),
    /// Nothing more for now; the connection's waker is registered.
    Idle,
    /// The connection is finished, for this reason.
    Closed(String),
}

impl Live {
    /// The body of the next message if it is a single data frame already complete in the read buffer
    /// (the common case under load): no I/O, no timers, no commands — those take [`Live::poll`].
    #[inline]
    pub(super) fn buffered_body(&mut self) -> Option<bytes::Bytes> {
        if self.c.transform || !self.partial.is_empty() {
            return None;
        }
        self.c.dec.decode_final_data(&mut self.c.rbuf)
    }

    /// The two frames of the next message if it is exactly a two-frame data message already
    /// complete in the read buffer within `limit` (a ZRE message between zmesh nodes); like
    /// [`Live::buffered_body`], anything else is left to [`Live::poll`].
    #[inline]
    pub(super) fn buffered_pair_short(
        &mut self,
        limit: usize,
        first: &mut [u8; crate::codec::SHORT_FIRST],
    ) -> Option<(usize, bytes::Bytes)> {
        if self.c.transform || !self.partial.is_empty() {
            return None;
        }
        self.c
            .dec
            .decode_data_pair_short(&mut self.c.rbuf, limit, first)
    }

    /// [`Live::buffered_pair`] with the first frame copied out (see
    /// [`crate::codec::FrameDecoder::decode_data_pair_short`]).
    pub(super) fn buffered_pair(&mut self, limit: usize) -> Option<[bytes::Bytes; 2]> {
        if self.c.transform || !self.partial.is_empty() {
            return None;
        }
        self.c.dec.decode_data_pair(&mut self.c.rbuf, limit)
    }

    /// Drive the connection: heartbeat timer, pending writes (PONG, PING), then decode the next
    /// message from the read buffer, reading the socket when the buffer holds no complete message.
    #[inline]
    pub(super) fn poll(&mut self, limit: usize) -> Polled {
        // Disjoint borrows: the waker is used by reference (no reference-count traffic per message).
        let Live {
            c,
            identity,
            peer_s,
            hb,
            partial,
            partial_cost,
            rpool,
            waker,
            ..
        } = self;
        let mut cx = Context::from_waker(waker);
        if let Some(h) = hb.as_mut() {
            while h.interval.poll_tick(&mut cx).is_ready() {
                if let Err(reason) = h.on_tick(&mut c.out, c.mech.as_mut(), c.transform) {
                    return Polled::Closed(reason);
                }
            }
        }
        if let Err(e) = poll_flush(c, &mut cx) {
            return Polled::Closed(format!("write error: {e}"));
        }
        loop {
            let frame = match c.dec.decode(&mut c.rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    let room = rpool.reserve(&mut c.rbuf, &c.dec);
                    match poll_read_buf(Pin::new(&mut c.rd), &mut cx, &mut c.rbuf) {
                        Poll::Ready(Ok(0)) => {
                            return Polled::Closed("peer closed the connection".into())
                        }
                        Poll::Ready(Ok(n)) => {
                            rpool.record(n, room);
                            if let Some(h) = hb.as_mut() {
                                h.last_recv = tokio::time::Instant::now();
                            }
                            continue;
                        }
                        Poll::Ready(Err(e)) => return Polled::Closed(format!("read error: {e}")),
                        Poll::Pending => return Polled::Idle,
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %peer_s, error = %e, "bad frame, closing");
                    return Polled::Closed(e.to_string());
                }
            };
            let frame = if c.transform {
                match c.mech.decode_frame(frame) {
                    Ok(f) => f,
                    Err(e) => return Polled::Closed(e.to_string()),
                }
            } else {
                frame
            };
            if frame.command {
                let seen = handle_command(
                    &frame.body,
                    &mut c.out,
                    peer_s,
                    c.mech.as_mut(),
                    c.transform,
                );
                if let Some(reason) = seen.fatal() {
                    return Polled::Closed(reason);
                }
                if let Err(e) = poll_flush(c, &mut cx) {
                    return Polled::Closed(format!("write error: {e}"));
                }
                continue;
            }
            *partial_cost += frame.body.len() + 32;
            if *partial_cost > limit.saturating_add(32) {
                return Polled::Closed(format!("message exceeds {limit} bytes"));
            }
            if frame.more {
                partial.push(frame.body);
                continue;
            }
            *partial_cost = 0;
            let frames = if partial.is_empty() {
                // Single-frame message: stored inline, no allocation.
                smallvec::smallvec![frame.body]
            } else {
                partial.push(frame.body);
                std::mem::take(partial)
            };
            return Polled::Message(InboxEvent::Message {
                identity: identity.clone(),
                frames,
            });
        }
    }
}

/// Write what is queued on `c` (command replies, heartbeats) as far as the socket takes it; the
/// connection's waker is registered for writability when it does not take everything.
fn poll_flush(c: &mut conn::Conn, cx: &mut Context<'_>) -> std::io::Result<()> {
    while !c.out.is_empty() {
        match c.out.poll_write_some(Pin::new(&mut c.wr), cx) {
            Poll::Ready(r) => r?,
            Poll::Pending => break,
        }
    }
    Ok(())
}
