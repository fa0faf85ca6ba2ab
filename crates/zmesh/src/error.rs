//! Errors returned to the application by the node API, with typed conversions from the errors
//! of the crates below (never `map_err(|_| ..)`: the cause is kept).

use uuid::Uuid;
use zmesh_core::pattern::NameError;
use zmesh_core::reqrep::TickError;
use zmesh_zre::EngineError;

use crate::RequestError;

/// What went wrong with a request the application made. Problems caused by *peers* (bad input,
/// timeouts) are never returned here: they are counted in [`crate::NodeStats`], logged, and surface as
/// events (EXIT, EVASIVE, …) or as a request's [`RequestError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A group name, peer name, header key or value does not fit ZRE's 255-byte string limit, or is empty.
    #[error("invalid {what}: {why}")]
    InvalidArgument {
        /// What was invalid ("group", "name", "header key", …).
        what: &'static str,
        /// Why.
        why: String,
    },
    /// An event name or pattern is not valid.
    #[error("invalid event name or pattern: {0}")]
    InvalidName(#[from] NameError),
    /// No peer with this UUID is known (it never appeared, or it has left).
    #[error("unknown peer {}", zmesh_zre::uuid_to_string(.0))]
    UnknownPeer(Uuid),
    /// WHISPER/SHOUT content must have at least one frame.
    #[error("message content must have at least one frame")]
    EmptyContent,
    /// The first content frame starts with the bytes reserved for zmesh envelopes (`FF 5A 4D`).
    #[error("content starting with FF 5A 4D is reserved for zmesh layer messages")]
    ReservedPrefix,
    /// The peer's outgoing queue was full (it stopped reading); the peer has been dropped and will be
    /// rediscovered by its next beacon.
    #[error("outgoing queue to peer {} is full; peer dropped", zmesh_zre::uuid_to_string(.0))]
    PeerOverflow(Uuid),
    /// A tick could not be sent (nobody can receive it, or it is too large).
    #[error("tick not sent: {0}")]
    Request(RequestError),
    /// An emit was held back: these subscribers have no credit left (nothing was sent).
    #[error("back-pressure from {} subscriber(s)", .0.len())]
    Backpressure(Vec<Uuid>),
    /// An emit was refused (payload too large, too many retained topics).
    #[error("emit refused: {0}")]
    Emit(crate::EmitError),
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
    /// A CURVE key or certificate is unusable (unreadable file, bad Z85, no secret key).
    #[error("CURVE: {0}")]
    Curve(#[from] zmesh_zmtp::curve::CurveError),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        match e {
            EngineError::UnknownPeer(p) => Error::UnknownPeer(p),
            EngineError::EmptyContent => Error::EmptyContent,
            EngineError::Stopped => Error::Stopped,
            EngineError::Wire(w) => Error::InvalidArgument {
                what: "string",
                why: w.to_string(),
            },
            EngineError::InvalidConfig(why) => Error::Config(why.to_owned()),
        }
    }
}

impl From<zmesh_core::driver::DriverError> for Error {
    fn from(e: zmesh_core::driver::DriverError) -> Error {
        match e {
            zmesh_core::driver::DriverError::Engine(e) => e.into(),
            zmesh_core::driver::DriverError::Option(e) => Error::InvalidArgument {
                what: "option",
                why: e.to_string(),
            },
            other => Error::Config(other.to_string()),
        }
    }
}

impl From<TickError> for Error {
    fn from(e: TickError) -> Error {
        match e {
            TickError::Name(n) => Error::InvalidName(n),
            TickError::Request(r) => Error::Request(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_in_errors_are_32_upper_case_hex_like_everywhere_else() {
        let u = Uuid::from_u128(0x3a07_fc75_400a_5b36_f319_333f_a849_2a52);
        assert_eq!(
            Error::UnknownPeer(u).to_string(),
            "unknown peer 3A07FC75400A5B36F319333FA8492A52"
        );
        assert_eq!(
            Error::from(EngineError::UnknownPeer(u)).to_string(),
            "unknown peer 3A07FC75400A5B36F319333FA8492A52"
        );
        assert_eq!(
            EngineError::UnknownPeer(u).to_string(),
            "unknown peer 3A07FC75400A5B36F319333FA8492A52"
        );
        assert!(Error::PeerOverflow(u)
            .to_string()
            .contains("3A07FC75400A5B36F319333FA8492A52"));
    }
}
