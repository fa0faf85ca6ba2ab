//! Errors returned to the application by the node API.

use uuid::Uuid;

/// What went wrong with a request the application made. Problems caused by *peers* (bad input,
/// timeouts) are never returned here: they are counted in [`crate::NodeStats`], logged, and surface as
/// events (EXIT, EVASIVE, …).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A group name, peer name, header key or value does not fit ZRE's 255-byte string limit, or is empty.
    #[error("invalid {what}: {why}")]
    InvalidArgument {
        /// What was invalid ("group", "name", "header key", …).
        what: &'static str,
        /// Why.
        why: String,
    },
    /// No peer with this UUID is known (it never appeared, or it has left).
    #[error("unknown peer {0}")]
    UnknownPeer(Uuid),
    /// WHISPER/SHOUT content must have at least one frame.
    #[error("message content must have at least one frame")]
    EmptyContent,
    /// The peer's outgoing queue was full (it stopped reading); the peer has been dropped and will be
    /// rediscovered by its next beacon.
    #[error("outgoing queue to peer {0} is full; peer dropped")]
    PeerOverflow(Uuid),
    /// The node has been stopped.
    #[error("node is stopped")]
    Stopped,
    /// A configuration value given to the builder is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An operating-system error while setting the node up.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The transport refused a request (e.g. an unparsable advertised endpoint).
    #[error("transport: {0}")]
    Transport(#[from] zmesh_zmtp::TransportError),
}
