//! What the engine asks of the shell ([`Output`]) and the application events it carries.

use crate::content::{Content, Frames};
use crate::name::Name;
use uuid::Uuid;

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Create an outbox (DEALER) to `endpoint` with identity [`routing_id`] of our UUID. Our HELLO
    /// follows as a [`Output::Send`]; queue it even if the connection is not up yet.
    ///
    /// [`routing_id`]: super::routing_id
    Connect {
        /// Peer the outbox is for.
        peer: Uuid,
        /// Where to connect.
        endpoint: String,
        /// Secure mode: the peer's CURVE public key, the server key the outbox must use (always
        /// `Some` in secure mode, always `None` otherwise).
        public_key: Option<[u8; 32]>,
    },
    /// Queue these frames on that peer's outbox (sequence numbers already assigned; must not be
    /// reordered or dropped silently — call [`Engine::handle_send_failed`] if they cannot be queued).
    ///
    /// [`Engine::handle_send_failed`]: super::Engine::handle_send_failed
    Send {
        /// Destination peer.
        peer: Uuid,
        /// ZRE frame followed by content frames.
        frames: Frames,
    },
    /// Drop that peer's outbox.
    Disconnect {
        /// Peer whose outbox goes away.
        peer: Uuid,
    },
    /// Deliver to the application.
    Event(Event),
}

/// Application events, as Zyre emits them (docs/zre.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's HELLO was accepted.
    Enter {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
        /// Its HELLO headers.
        headers: Vec<(String, String)>,
        /// The endpoint declared in its HELLO.
        endpoint: String,
    },
    /// A peer that had entered is gone.
    Exit {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
    },
    /// A peer joined a group.
    Join {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
        /// Group.
        group: String,
    },
    /// A peer left a group.
    Leave {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
        /// Group.
        group: String,
    },
    /// A message to us alone.
    Whisper {
        /// Sender.
        peer: Uuid,
        /// Sender's name.
        name: Name,
        /// Content frames.
        content: Content,
    },
    /// A message to a group.
    Shout {
        /// Sender.
        peer: Uuid,
        /// Sender's name.
        name: Name,
        /// Group.
        group: String,
        /// Content frames.
        content: Content,
    },
    /// Nothing heard from the peer for the evasive timeout (once per episode).
    Evasive {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
    },
    /// The PING sent when the peer became evasive was not answered (once per episode).
    Silent {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: Name,
    },
    /// We stopped.
    Stop {
        /// Our UUID.
        uuid: Uuid,
        /// Our name.
        name: Name,
    },
}

impl Event {
    /// The peer the event is about; `None` for [`Event::Stop`], which is about this node.
    pub fn peer(&self) -> Option<Uuid> {
        match self {
            Event::Enter { peer, .. }
            | Event::Exit { peer, .. }
            | Event::Join { peer, .. }
            | Event::Leave { peer, .. }
            | Event::Whisper { peer, .. }
            | Event::Shout { peer, .. }
            | Event::Evasive { peer, .. }
            | Event::Silent { peer, .. } => Some(*peer),
            Event::Stop { .. } => None,
        }
    }
}
