//! What the inbox reports: connection addresses, events, and what [`Inbox::recv_into`] received.

#[cfg(doc)]
use super::Inbox;
use crate::curve::CurvePublicKey;
use crate::error::HandshakeError;
use crate::identity::Identity;
use crate::Frames;
use std::fmt;
use std::net::SocketAddr;

/// Where a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix-domain socket peer (unnamed).
    Ipc,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "tcp://{a}"),
            PeerAddr::Ipc => f.write_str("ipc"),
        }
    }
}

/// Something that happened on the inbox.
#[derive(Debug, Clone)]
pub enum InboxEvent {
    /// A complete message from the peer with this identity (frames in order).
    Message {
        /// The sender's identity.
        identity: Identity,
        /// The frames.
        frames: Frames,
    },
    /// A peer completed the handshake.
    Accepted {
        /// Peer address.
        peer: PeerAddr,
        /// Its identity (from READY, or generated).
        identity: Identity,
        /// Its Socket-Type.
        socket_type: String,
        /// The client's long-term public key, proven and accepted by the CURVE handshake (and the
        /// inbox's authenticator); `None` with NULL. Every later message from this identity comes
        /// from a holder of this key: [`Inbox::peer_key`] looks it up by identity.
        peer_key: Option<CurvePublicKey>,
    },
    /// A connection was closed before or during the handshake.
    HandshakeFailed {
        /// Peer address.
        peer: PeerAddr,
        /// Why.
        reason: HandshakeError,
    },
    /// An established connection closed.
    Disconnected {
        /// Peer address.
        peer: PeerAddr,
        /// Its identity.
        identity: Identity,
        /// Why (peer closed, ERROR received, bad frame, heartbeat timeout, handover, ...).
        reason: String,
    },
}

/// What [`Inbox::recv_into`] received.
#[derive(Debug)]
pub enum Received {
    /// A message from the peer with this identity; its frames are in the caller's buffer.
    Message(Identity),
    /// Any other event (never [`InboxEvent::Message`]).
    Event(Box<InboxEvent>),
}
