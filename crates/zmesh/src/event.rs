//! The application's events: zmesh's own type, converted from the ZRE engine's, so the engine can
//! change without breaking applications and new kinds of events can be added.

use uuid::Uuid;
use zmesh_zre::{Content, Name};

/// Something that happened in the mesh, as Zyre reports it (ENTER, EXIT, JOIN, LEAVE, WHISPER,
/// SHOUT, EVASIVE, SILENT, STOP). Layer traffic (requests, replies, ticks) never appears here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// This node stopped; the stream ends after it.
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

    /// The group the event is about (JOIN, LEAVE, SHOUT).
    pub fn group(&self) -> Option<&str> {
        match self {
            Event::Join { group, .. } | Event::Leave { group, .. } | Event::Shout { group, .. } => {
                Some(group)
            }
            _ => None,
        }
    }
}

impl From<zmesh_zre::Event> for Event {
    fn from(e: zmesh_zre::Event) -> Event {
        use zmesh_zre::Event as Z;
        match e {
            Z::Enter {
                peer,
                name,
                headers,
                endpoint,
            } => Event::Enter {
                peer,
                name,
                headers,
                endpoint,
            },
            Z::Exit { peer, name } => Event::Exit { peer, name },
            Z::Join { peer, name, group } => Event::Join { peer, name, group },
            Z::Leave { peer, name, group } => Event::Leave { peer, name, group },
            Z::Whisper {
                peer,
                name,
                content,
            } => Event::Whisper {
                peer,
                name,
                content,
            },
            Z::Shout {
                peer,
                name,
                group,
                content,
            } => Event::Shout {
                peer,
                name,
                group,
                content,
            },
            Z::Evasive { peer, name } => Event::Evasive { peer, name },
            Z::Silent { peer, name } => Event::Silent { peer, name },
            Z::Stop { uuid, name } => Event::Stop { uuid, name },
        }
    }
}
