//! # zmesh-zmtp — a pure-Rust ZMTP 3.1 transport on tokio
//!
//! Two socket shapes, which is all ZRE needs:
//! * [`Inbox`] — ROUTER semantics: binds, accepts any number of peers, delivers `(identity, frames)`
//!   per connection in order, with connection events;
//! * [`Outbox`] — DEALER semantics, one per peer: connects with an identity, queues while connecting,
//!   reconnects with backoff, bounded queue with typed `Full`.
//!
//! Layers, bottom-up:
//! * [`codec`] — pure encode/decode of greetings, frames, commands and metadata (RFC 37);
//! * [`mechanism`] — the security-mechanism slot (NULL, CURVE);
//! * [`curve`] — CurveZMQ (RFC 25/26): keys, certificates, handshake and MESSAGE codecs, and the
//!   inbox's authenticator hook;
//! * `conn` — stream abstraction, handshake driver, batched write buffer;
//! * [`inbox`], [`outbox`] — the sockets;
//! * [`duplex`] — two-way connections (DEALER and ROUTER side) for czmq-style protocols (zgossip).
//!
//! Performance: the inbox reads its established connections inside `Inbox::recv` (no task hand-off
//! between the socket and the caller) and decodes many messages per `read`; writes drain many queued
//! messages into one buffer (large frames are written vectored, without a copy); received frame
//! bodies are zero-copy slices of the read buffer. For hot loops, [`OutboxWriter`] sends runs of
//! messages without a lock per message and [`Inbox::recv_into`] receives into a reused buffer;
//! `zmtp-bench` (see BENCHMARKS.md) measures both against a hand-written tokio TCP baseline.
#![warn(missing_docs)]

pub mod codec;
mod conn;
pub mod curve;
pub mod duplex;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod inbox;
pub mod mechanism;
pub mod outbox;

pub use bytes::Bytes;
pub use codec::{
    encode_frame, encode_frame_header, Command, Frame, FrameDecoder, Greeting, Metadata,
};
pub use curve::{
    AllowAny, AllowList, AuthDecision, AuthRequest, Authenticator, Certificate, CurveConfig,
    CurveError, CurveKeyPair, CurvePublicKey, CurveStats,
};
pub use duplex::{Duplex, DuplexConfig, DuplexError, DuplexListener};
pub use endpoint::Endpoint;
pub use error::{CodecError, EndpointError, HandshakeError, SendError, TransportError};
pub use identity::Identity;
pub use inbox::{Inbox, InboxConfig, InboxEvent, PeerAddr, Received};
pub use mechanism::{Mechanism, MechanismConfig, MechanismStep, NullMechanism};
pub use outbox::{Outbox, OutboxConfig, OutboxState, OutboxWriter, Room};

use std::time::Duration;

/// A ZMTP message: one or more frames.
///
/// Up to two frames are stored inline (a ZRE message is one or two frames; a plain request or
/// reply is one): building, sending, receiving and dropping such a message allocates nothing
/// beyond the frame bodies. Longer messages spill to the heap like a `Vec`. Anything that takes
/// frames accepts `impl Into<Frames>`, so a `Vec<Bytes>` works everywhere; [`frames!`] builds one
/// without a `Vec`.
pub type Frames = smallvec::SmallVec<[Bytes; 2]>;

pub use smallvec;

/// Builds a [`Frames`] message from frame bodies (`Bytes`): `frames![body]`,
/// `frames![header, body]`, any number of frames.
///
/// Like `smallvec![]`, but a one- or two-frame message is built from a whole inline buffer
/// instead of an empty vector plus pushes: measured ~15-20 ns cheaper per message on the 64-byte
/// send path (the pushes' writes are read back by the next copy of the vector, which the CPU
/// cannot forward from its store buffer).
#[macro_export]
macro_rules! frames {
    () => {
        $crate::Frames::new()
    };
    ($one:expr $(,)?) => {
        // The unused slot holds the static empty `Bytes`: never read, and dropping it is a no-op.
        $crate::Frames::from_buf_and_len([$one, $crate::Bytes::new()], 1)
    };
    ($a:expr, $b:expr $(,)?) => {
        $crate::Frames::from_buf([$a, $b])
    };
    ($($x:expr),+ $(,)?) => {
        $crate::smallvec::smallvec![$($x),+]
    };
}

/// Our own heartbeating (ZMTP 3.1 PING/PONG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Send a PING this often.
    pub interval: Duration,
    /// Close the connection if nothing at all was received for this long.
    pub timeout: Duration,
    /// TTL announced in our PINGs (the peer may close if it hears nothing from us for this long).
    pub ttl: Duration,
}
