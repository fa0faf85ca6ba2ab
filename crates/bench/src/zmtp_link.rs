//! The zmesh ZMTP transport alone: the "Harmony" pattern ZRE itself uses.
//!
//! Each process binds one [`Inbox`] and connects one [`Outbox`] (identity `0x01` + 16 bytes) to the
//! other process's inbox, so traffic A -> B flows over A's outbox and replies B -> A over B's
//! outbox. Messages are single-frame.
//!
//! Two ways to send, both measured by `zmtp-bench`:
//! * [`Api::Writer`] (`zmesh`): an [`OutboxWriter`] fed per message and flushed at every
//!   [`Link::flush`] — the same structure as the baseline's buffered writer, and how an
//!   application that sends runs of messages uses the outbox;
//! * [`Api::TrySend`] (`zmesh-send`): `Outbox::send` per message, as the ZRE node sends (each
//!   WHISPER is its own `try_send`, callable from any task).
//!
//! Both receive with `Inbox::recv_into` into a frame buffer the link keeps.
//!
//! Setup is two steps so that the driver can start its peer process in between:
//! [`bind`] binds the inbox, [`ZmtpLink::join`] connects the outbox to the other side.

use std::time::Duration;

use bytes::Bytes;
use zmesh_zmtp::{
    Frames, Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig, OutboxWriter, Received,
};

use crate::Link;

/// The ZRE-style identity: 0x01 followed by 16 bytes derived from `tag` (a UUID in ZRE).
pub fn identity(tag: u8) -> Bytes {
    let mut id = vec![0x01u8];
    id.extend((0..16).map(|i| tag.wrapping_mul(31).wrapping_add(i)));
    Bytes::from(id)
}

/// Binds an inbox on an ephemeral loopback port (its endpoint is `inbox.endpoint()`).
pub async fn bind() -> Inbox {
    bind_with(InboxConfig::default()).await
}

/// [`bind`] with a given configuration (e.g. CURVE).
pub async fn bind_with(config: InboxConfig) -> Inbox {
    Inbox::bind("tcp://127.0.0.1:*", config).await.unwrap()
}

/// How the link sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// An [`OutboxWriter`], flushed at [`Link::flush`].
    Writer,
    /// `Outbox::send` per message.
    TrySend,
}

/// Our bound inbox and our outbox connected to the other process's inbox.
pub struct ZmtpLink {
    inbox: Inbox,
    outbox: Outbox,
    /// With [`Api::Writer`].
    writer: Option<OutboxWriter>,
    /// The frame buffer `Inbox::recv_into` fills.
    frames: Frames,
}

impl ZmtpLink {
    /// Connects an outbox with identity [`identity`]`(tag)` to the inbox at `theirs`.
    pub fn join(inbox: Inbox, theirs: &str, tag: u8, api: Api) -> ZmtpLink {
        Self::join_with(inbox, theirs, tag, api, OutboxConfig::default())
    }

    /// [`ZmtpLink::join`] with a given outbox configuration (e.g. CURVE).
    pub fn join_with(
        inbox: Inbox,
        theirs: &str,
        tag: u8,
        api: Api,
        config: OutboxConfig,
    ) -> ZmtpLink {
        let outbox = Outbox::connect(theirs, identity(tag), config).unwrap();
        let writer = (api == Api::Writer).then(|| outbox.writer());
        ZmtpLink {
            inbox,
            outbox,
            writer,
            frames: Frames::new(),
        }
    }
}

impl Link for ZmtpLink {
    async fn send(&mut self, msg: Bytes) {
        let sent = match self.writer.as_mut() {
            Some(w) => w.feed(zmesh_zmtp::frames![msg]).await,
            None => self.outbox.send(zmesh_zmtp::frames![msg]).await,
        };
        if let Err(e) = sent {
            panic!("zmtp send failed: {e:?}");
        }
    }

    async fn flush(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.flush();
        }
    }

    async fn recv(&mut self) -> Bytes {
        loop {
            match self.inbox.recv_into(&mut self.frames).await {
                Some(Received::Message(_)) => {
                    assert_eq!(self.frames.len(), 1, "bench messages are single-frame");
                    return self.frames.pop().unwrap();
                }
                Some(Received::Event(ev)) => match *ev {
                    InboxEvent::HandshakeFailed { peer, reason } => {
                        panic!("zmtp handshake with {peer} failed: {reason:?}")
                    }
                    InboxEvent::Disconnected { peer, reason, .. } => {
                        panic!("zmtp peer {peer} disconnected: {reason}")
                    }
                    _ => {}
                },
                None => panic!("zmtp inbox closed"),
            }
        }
    }

    async fn shutdown(mut self) {
        // Dropping the writer flushes it.
        self.writer = None;
        self.outbox.close(Some(Duration::from_secs(10))).await;
    }
}
