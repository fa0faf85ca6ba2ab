//! Errors returned to the application.

use thiserror::Error;
use uuid::Uuid;

use crate::msg::WireError;

/// Errors returned to the application.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// No such peer (never seen, removed, or purged).
    #[error("unknown peer {}", crate::msg::uuid_to_string(.0))]
    UnknownPeer(Uuid),
    /// WHISPER/SHOUT need at least one content frame.
    #[error("message content must have at least one frame")]
    EmptyContent,
    /// The engine was stopped.
    #[error("engine is stopped")]
    Stopped,
    /// A name, group or endpoint does not fit the wire format.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
