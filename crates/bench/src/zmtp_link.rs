//! The zmesh ZMTP transport alone: the "Harmony" pattern ZRE itself uses.
//!
//! Each process binds one [`Inbox`] and connects one [`Outbox`] (identity `0x01` + 16 bytes) to the
//! other process's inbox, so traffic A -> B flows over A's outbox and replies B -> A over B's
//! outbox. Messages are single-frame.
//!
//! Setup is two steps so that the driver can start its peer process in between:
//! [`bind`] binds the inbox, [`ZmtpLink::join`] connects the outbox to the other side.

use std::time::Duration;

use bytes::Bytes;
use zmesh_zmtp::{Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig};

use crate::Link;

/// The ZRE-style identity: 0x01 followed by 16 bytes derived from `tag` (a UUID in ZRE).
pub fn identity(tag: u8) -> Bytes {
    let mut id = vec![0x01u8];
    id.extend((0..16).map(|i| tag.wrapping_mul(31).wrapping_add(i)));
    Bytes::from(id)
}

/// Binds an inbox on an ephemeral loopback port (its endpoint is `inbox.endpoint()`).
pub async fn bind() -> Inbox {
    Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap()
}

/// Our bound inbox and our outbox connected to the other process's inbox.
pub struct ZmtpLink {
    inbox: Inbox,
    outbox: Outbox,
}

impl ZmtpLink {
    /// Connects an outbox with identity [`identity`]`(tag)` to the inbox at `theirs`.
    pub fn join(inbox: Inbox, theirs: &str, tag: u8) -> ZmtpLink {
        let outbox = Outbox::connect(theirs, identity(tag), OutboxConfig::default()).unwrap();
        ZmtpLink { inbox, outbox }
    }
}

impl Link for ZmtpLink {
    async fn send(&mut self, msg: Bytes) {
        if let Err(e) = self.outbox.send(zmesh_zmtp::frames![msg]).await {
            panic!("zmtp send failed: {e:?}");
        }
    }

    async fn flush(&mut self) {}

    async fn recv(&mut self) -> Bytes {
        loop {
            // Matched straight on the `Option`, as an application would: the event is not moved
            // out of it first (a copy of 112 bytes per message).
            match self.inbox.recv().await {
                Some(InboxEvent::Message { mut frames, .. }) => {
                    assert_eq!(frames.len(), 1, "bench messages are single-frame");
                    return frames.pop().unwrap();
                }
                Some(InboxEvent::HandshakeFailed { peer, reason }) => {
                    panic!("zmtp handshake with {peer} failed: {reason:?}")
                }
                Some(InboxEvent::Disconnected { peer, reason, .. }) => {
                    panic!("zmtp peer {peer} disconnected: {reason}")
                }
                Some(InboxEvent::Accepted { .. }) => {}
                None => panic!("zmtp inbox closed"),
            }
        }
    }

    async fn shutdown(self) {
        self.outbox.close(Some(Duration::from_secs(10))).await;
    }
}
