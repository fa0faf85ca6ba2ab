//! The security-mechanism slot.
//!
//! ZMTP separates "how we authenticate and protect frames" from framing. After both greetings are
//! exchanged, the connection drives a [`Mechanism`] as a small state machine: it is asked for its first
//! commands ([`Mechanism::start`]), then fed every command the peer sends ([`Mechanism::on_command`])
//! until it reports the peer's metadata (handshake complete). From then on each outgoing and incoming
//! frame passes through [`Mechanism::encode_frame`] / [`Mechanism::decode_frame`] — identity for NULL,
//! while CURVE (RFC 26/25) wraps every frame into an encrypted MESSAGE command and back. A mechanism
//! that does not transform frames says so via [`Mechanism::transforms_frames`] so the hot path skips
//! the hooks.
//!
//! NULL (RFC 37 §"The NULL Security Mechanism") is implemented here; CURVE (RFC 25/26) is
//! [`crate::curve::CurveMechanism`], chosen with [`MechanismConfig::Curve`].

use crate::codec::{Command, Frame, Greeting, Metadata};
use crate::curve::{CurveConfig, CurvePublicKey};
use crate::error::HandshakeError;
use crate::inbox::PeerAddr;
use bytes::{Bytes, BytesMut};

/// Output of one handshake step.
#[derive(Debug, Default)]
pub struct MechanismStep {
    /// Command bodies to send to the peer, in order (each goes into a COMMAND frame).
    pub send: Vec<Bytes>,
    /// `Some` once the handshake is complete: the peer's metadata (Socket-Type, Identity, ...).
    pub peer_metadata: Option<Metadata>,
}

/// A ZMTP security mechanism (client or server side of one connection).
pub trait Mechanism: Send {
    /// Mechanism name as it appears in the greeting ("NULL", "CURVE").
    fn name(&self) -> &'static str;

    /// Value of the greeting's as-server bit.
    fn as_server(&self) -> bool;

    /// Called once after both greetings were exchanged. `own` is our metadata (Socket-Type, Identity).
    /// Returns the first commands to send and, for mechanisms that need nothing from the peer, maybe
    /// the final result already.
    fn start(&mut self, own: &Metadata, peer: &Greeting) -> Result<MechanismStep, HandshakeError>;

    /// Feed one handshake command body received from the peer.
    fn on_command(&mut self, body: Bytes) -> Result<MechanismStep, HandshakeError>;

    /// Whether [`encode_frame`](Self::encode_frame)/[`decode_frame`](Self::decode_frame) change frames.
    /// `false` lets the connection skip them (NULL).
    fn transforms_frames(&self) -> bool {
        false
    }

    /// Transform an outgoing frame after the handshake (CURVE: encrypt into a MESSAGE command).
    fn encode_frame(&mut self, frame: Frame) -> Result<Frame, HandshakeError> {
        Ok(frame)
    }

    /// Transform an incoming frame after the handshake (CURVE: decrypt a MESSAGE command).
    fn decode_frame(&mut self, frame: Frame) -> Result<Frame, HandshakeError> {
        Ok(frame)
    }

    /// Append one outgoing frame, transformed and with its ZMTP frame header, to a write buffer.
    /// Lets a mechanism seal in place with no allocation per frame (CURVE); the default goes
    /// through [`encode_frame`](Self::encode_frame).
    fn encode_frame_into(
        &mut self,
        more: bool,
        command: bool,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), HandshakeError> {
        let f = self.encode_frame(Frame {
            more,
            command,
            body: Bytes::copy_from_slice(body),
        })?;
        crate::curve::push_plain_frame(f.more, f.command, &f.body, out);
        Ok(())
    }

    /// Told where the peer is before the handshake starts (for the authenticator and log lines).
    fn set_peer_addr(&mut self, _peer: PeerAddr) {}

    /// The peer's long-term public key once the handshake proved it (CURVE); `None` for NULL.
    fn peer_public_key(&self) -> Option<CurvePublicKey> {
        None
    }
}

/// Which mechanism a socket uses. Both sides must agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MechanismConfig {
    /// No security: READY metadata exchange only.
    #[default]
    Null,
    /// CURVE: encrypted and authenticated. An inbox needs [`CurveConfig::server`], an outbox
    /// [`CurveConfig::client`] (with the server's public key).
    Curve(CurveConfig),
}

impl MechanismConfig {
    /// Build the per-connection state machine. `server` is true for accepted (inbox) connections.
    pub fn build(&self, server: bool) -> Box<dyn Mechanism> {
        match self {
            MechanismConfig::Null => Box::new(NullMechanism::new(server)),
            MechanismConfig::Curve(c) => Box::new(c.mechanism(server)),
        }
    }

    /// Whether the mechanism transforms frames (CURVE), without building one.
    pub(crate) fn transforms_frames(&self) -> bool {
        !matches!(self, MechanismConfig::Null)
    }

    /// Mechanism name as sent in the greeting.
    pub fn name(&self) -> &'static str {
        match self {
            MechanismConfig::Null => "NULL",
            MechanismConfig::Curve(_) => "CURVE",
        }
    }
}

/// The NULL mechanism: each side sends READY with its metadata and takes the peer's READY (or ERROR).
///
/// The client sends READY at once. The server (accepting side) answers the client's READY with its
/// own: the connection can check the client's metadata (socket type) first and answer an
/// incompatible peer with ERROR instead of READY. It also matters in practice: a libzmq client that
/// finds our READY incompatible closes at once, and if our READY reached it together with the end of
/// our greeting it closes before its own READY is flushed, leaving us only an EOF to report; waiting
/// for its READY means we always learn its socket type. Every client implementation (libzmq, JeroMQ,
/// zmq.rs, ours) sends READY without waiting for the server's.
#[derive(Debug, Default)]
pub struct NullMechanism {
    server: bool,
    /// Our metadata, kept by a server until the client's READY arrives.
    own: Option<Metadata>,
    done: bool,
}

impl NullMechanism {
    /// A NULL mechanism for the accepting (`server = true`) or connecting side.
    pub fn new(server: bool) -> Self {
        NullMechanism {
            server,
            own: None,
            done: false,
        }
    }
}

impl Mechanism for NullMechanism {
    fn name(&self) -> &'static str {
        "NULL"
    }

    fn as_server(&self) -> bool {
        false
    }

    fn start(&mut self, own: &Metadata, _peer: &Greeting) -> Result<MechanismStep, HandshakeError> {
        if self.server {
            self.own = Some(own.clone());
            return Ok(MechanismStep::default());
        }
        Ok(MechanismStep {
            send: vec![Command::Ready(own.clone()).encode()],
            peer_metadata: None,
        })
    }

    fn on_command(&mut self, body: Bytes) -> Result<MechanismStep, HandshakeError> {
        if self.done {
            return Err(HandshakeError::Malformed("command after READY".into()));
        }
        match Command::decode(&body)? {
            Command::Ready(meta) => {
                self.done = true;
                let send = match self.own.take() {
                    Some(own) => vec![Command::Ready(own).encode()],
                    None => Vec::new(),
                };
                Ok(MechanismStep {
                    send,
                    peer_metadata: Some(meta),
                })
            }
            Command::Error(reason) => Err(HandshakeError::PeerError(reason)),
            Command::Other { name, .. } => Err(HandshakeError::Malformed(format!(
                "unexpected {name} command in NULL handshake"
            ))),
            other => Err(HandshakeError::Malformed(format!(
                "unexpected command in NULL handshake: {other:?}"
            ))),
        }
    }
}
