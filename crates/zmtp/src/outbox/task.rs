//! The connection task: dial, handshake, serve the connection, back off and reconnect.

use super::queue::{msg_size, Shared, BATCH_BYTES, BATCH_MSGS};
use super::{OutboxConfig, OutboxState};
use crate::codec::FrameDecoder;
use crate::codec::Metadata;
use crate::conn::{self, handle_command, hb_tick, reserve_read, OutBuf};
use crate::endpoint::Endpoint;
use crate::error::HandshakeError;
use crate::mechanism::Mechanism;
use crate::Frames;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a served connection ended.
enum End {
    /// Closed by the user after flushing.
    Closed,
    /// Lost; reconnect.
    Lost(String),
}

pub(super) async fn run(ep: Endpoint, identity: Bytes, cfg: OutboxConfig, shared: Arc<Shared>) {
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
            let s = conn::dial(&ep).await?;
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
