//! Error types of the transport.
//!
//! The split mirrors where an error can come from:
//! * [`EndpointError`] — the user gave an endpoint string we cannot parse (bad user input, clear message);
//! * [`CodecError`] — bytes from the network do not follow the ZMTP grammar (pure codec functions);
//! * [`HandshakeError`] — a connection could not be established at the ZMTP level (greeting, mechanism,
//!   socket-type checks, timeouts); reported in events, never panics;
//! * [`TransportError`] — returned by `bind` / `connect`;
//! * [`SendError`] — an outbox refused a message; the message is always handed back.

use crate::Frames;

/// An endpoint string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The scheme is neither `tcp://` nor `ipc://`.
    #[error("unsupported endpoint scheme in {0:?} (expected tcp:// or ipc://)")]
    UnknownScheme(String),
    /// A tcp endpoint without `:port`.
    #[error("missing port in endpoint {0:?}")]
    MissingPort(String),
    /// The port is not a number in 0..=65535 or `*`.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// The host part is empty or malformed (e.g. an unterminated `[ipv6`).
    #[error("invalid host in endpoint {0:?}")]
    InvalidHost(String),
    /// `ipc://` with an empty path.
    #[error("empty ipc path")]
    EmptyPath,
    /// A wildcard port (`*`) where a concrete port is required (connect).
    #[error("wildcard port not allowed when connecting: {0:?}")]
    WildcardPort(String),
    /// A host name could not be resolved to any address.
    #[error("cannot resolve host {0:?}")]
    Unresolvable(String),
}

/// Bytes from the network violate the ZMTP 3.x grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A frame announced a size above the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Size announced by the frame header.
        size: u64,
        /// Configured maximum.
        max: usize,
    },
    /// A command body ended before a field was complete.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A command or property name is empty or not printable ASCII.
    #[error("invalid name in {0}")]
    InvalidName(&'static str),
    /// A field that must be text is not valid UTF-8.
    #[error("invalid text in {0}")]
    InvalidText(&'static str),
    /// A field is longer than the grammar allows (e.g. a PING context above 16 bytes).
    #[error("field too long in {0}")]
    TooLong(&'static str),
}

/// Why a ZMTP connection could not be established (or was refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first 10 bytes are not a ZMTP 3.x signature (e.g. HTTP, random bytes, ZMTP 1.0).
    #[error("bad greeting signature")]
    BadSignature,
    /// The peer speaks a ZMTP major version below 3.
    #[error("unsupported ZMTP version {major}.{minor}")]
    UnsupportedVersion {
        /// Peer's major version.
        major: u8,
        /// Peer's minor version.
        minor: u8,
    },
    /// The peer uses another security mechanism than we do.
    #[error("mechanism mismatch: ours {ours}, theirs {theirs}")]
    MechanismMismatch {
        /// Our mechanism name.
        ours: String,
        /// The peer's mechanism name.
        theirs: String,
    },
    /// The mechanism is one this library does not implement.
    #[error("unsupported mechanism {0}")]
    UnsupportedMechanism(String),
    /// The peer's socket type cannot talk to ours (e.g. PUB to ROUTER).
    #[error("incompatible socket type: ours {ours}, theirs {theirs}")]
    IncompatibleSocketType {
        /// Our socket type.
        ours: String,
        /// The peer's socket type.
        theirs: String,
    },
    /// The handshake did not complete within the configured time (slow-loris guard).
    #[error("handshake timed out")]
    Timeout,
    /// A frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// Configured maximum.
        max: usize,
    },
    /// The peer sent something that does not parse or is not allowed at this point.
    #[error("malformed handshake: {0}")]
    Malformed(String),
    /// The peer sent an ERROR command with this reason.
    #[error("peer sent ERROR: {0}")]
    PeerError(String),
    /// An I/O error (including the peer closing the connection mid-handshake).
    #[error("i/o: {0}")]
    Io(String),
    /// Too many connections; the new one was refused.
    #[error("connection limit reached")]
    TooManyConnections,
    /// The CURVE handshake or a CURVE MESSAGE failed (bad box, replayed nonce, refused key, ...).
    #[error("CURVE: {0}")]
    Curve(crate::curve::CurveError),
}

impl From<CodecError> for HandshakeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::FrameTooLarge { size, max } => HandshakeError::FrameTooLarge { size, max },
            other => HandshakeError::Malformed(other.to_string()),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e.to_string())
    }
}

/// Errors of `Inbox::bind` / `Outbox::connect`.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint string is invalid.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Binding or another socket operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `Outbox::connect` was called outside a tokio runtime.
    #[error("no tokio runtime: Outbox::connect must be called from within a tokio runtime")]
    NoRuntime,
    /// The identity is not acceptable (ZMTP limits it to 255 bytes).
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
}

/// An outbox did not accept a message. The message is handed back in both cases.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The queue is at its message-count or byte limit.
    #[error("outbox queue full")]
    Full(Frames),
    /// The outbox is closed.
    #[error("outbox closed")]
    Closed(Frames),
}

impl SendError {
    /// Take the refused message back.
    pub fn into_inner(self) -> Frames {
        match self {
            SendError::Full(f) | SendError::Closed(f) => f,
        }
    }
}
