//! The CURVE security mechanism (CurveZMQ, RFC 26, on ZMTP as RFC 25 says), interoperable with
//! libzmq, in pure Rust on RustCrypto (`crypto_box` / `crypto_secretbox`, byte-identical to
//! libsodium's `crypto_box` and `crypto_secretbox`). `docs/curve.md` lists the wire facts.
//!
//! * [`keys`] — public keys and key pairs, Z85 text;
//! * [`cert`] — czmq `zcert` certificate files (pyzmq's `zmq.auth` reads and writes the same);
//! * [`handshake`] — pure codecs of HELLO, WELCOME, cookie, INITIATE (+ vouch) and READY;
//! * [`message`] — MESSAGE sealing and opening with strictly increasing short nonces;
//! * [`auth`] — the inbox's authenticator hook (ZAP's role, in process).
//!
//! [`CurveMechanism`] drives the handshake as a [`Mechanism`]: the inbox is the CURVE server (it
//! holds a long-term key pair that clients know), every outbox a CURVE client (it knows the
//! server's public key and proves its own long-term key in the vouch). Use it through
//! [`MechanismConfig::Curve`](crate::MechanismConfig::Curve) with a [`CurveConfig`].

pub mod auth;
pub mod cert;
pub mod handshake;
pub mod keys;
pub mod message;

pub use auth::{AllowAny, AllowList, AuthDecision, AuthRequest, Authenticator};
pub use cert::Certificate;
/// The RustCrypto types the pure codecs take (short-term secret keys, precomputed session boxes).
pub use crypto_box::{SalsaBox, SecretKey};
pub use keys::{CurveKeyPair, CurvePublicKey};
pub use message::MessageCodec;

use crate::codec::{encode_frame_header, Command, Frame, Greeting, Metadata};
use crate::error::{CodecError, HandshakeError};
use crate::inbox::PeerAddr;
use crate::mechanism::{Mechanism, MechanismStep};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Everything that can be wrong with CURVE input (keys, certificates, handshake commands, MESSAGEs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurveError {
    /// A key in text form is not 40 characters of valid Z85.
    #[error("bad key text: {0}")]
    BadKeyText(String),
    /// A certificate file is unreadable or lacks its keys.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Not the command expected at this point of the handshake (or not a MESSAGE afterwards).
    #[error("expected a {0} command")]
    UnexpectedCommand(&'static str),
    /// A command of the wrong size (HELLO must be 200 bytes, WELCOME 168, ...).
    #[error("{command} of {got} bytes (expected {expected})")]
    WrongSize {
        /// The command.
        command: &'static str,
        /// Required size (minimum for INITIATE, READY and MESSAGE).
        expected: usize,
        /// Size received.
        got: usize,
    },
    /// HELLO with a CurveZMQ version other than 1.0.
    #[error("unsupported CurveZMQ version {major}.{minor}")]
    BadVersion {
        /// Major version received.
        major: u8,
        /// Minor version received.
        minor: u8,
    },
    /// A field ended early.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A box did not open (wrong key, wrong nonce, or a flipped bit).
    #[error("cannot open {0} box")]
    BadBox(&'static str),
    /// The cookie in INITIATE is not the one we sent on this connection.
    #[error("cookie does not match this connection")]
    CookieMismatch,
    /// The vouch does not name this connection's short-term key and our long-term key.
    #[error("vouch does not match")]
    VouchMismatch,
    /// A short nonce not above the last one from this peer (replay or reordering).
    #[error("short nonce {got} not above {last} (replay or reordering)")]
    NonceReplay {
        /// The last nonce accepted from the peer.
        last: u64,
        /// The nonce received.
        got: u64,
    },
    /// We have sent 2^64 - 1 messages on this connection.
    #[error("short nonces exhausted")]
    NoncesExhausted,
    /// The metadata inside INITIATE or READY does not parse.
    #[error("metadata: {0}")]
    Metadata(CodecError),
    /// The authenticator refused the client's key.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A handshake command after the handshake completed.
    #[error("handshake command after the handshake completed")]
    HandshakeOver,
    /// The configuration cannot work (e.g. a client without the server's key).
    #[error("configuration: {0}")]
    Config(&'static str),
}

/// The operating system's CSPRNG, as the codecs' key generation wants it (for tests and tools that
/// drive the pure codecs by hand).
pub fn crypto_rng() -> crypto_box::aead::OsRng {
    crypto_box::aead::OsRng
}

/// Counters of one CURVE configuration (shared by every connection built from it): how many
/// clients the authenticator refused and how many connections broke the protocol.
#[derive(Debug, Default)]
pub struct CurveStats {
    refused: AtomicU64,
    protocol_errors: AtomicU64,
}

impl CurveStats {
    /// Clients refused by the authenticator.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Handshakes or MESSAGEs refused as malformed, forged or replayed.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors.load(Ordering::Relaxed)
    }
}

/// CURVE settings of an inbox (server) or an outbox (client); cheap to clone (shared parts).
#[derive(Clone)]
pub struct CurveConfig {
    keys: Arc<CurveKeyPair>,
    server_key: Option<CurvePublicKey>,
    authenticator: Arc<dyn Authenticator>,
    stats: Arc<CurveStats>,
}

impl CurveConfig {
    /// Server side (for an inbox): our long-term key pair; every client is allowed until
    /// [`CurveConfig::with_authenticator`] says otherwise.
    pub fn server(keys: CurveKeyPair) -> Self {
        CurveConfig {
            keys: Arc::new(keys),
            server_key: None,
            authenticator: Arc::new(AllowAny),
            stats: Arc::default(),
        }
    }

    /// Client side (for an outbox): our long-term key pair and the server's public key.
    pub fn client(keys: CurveKeyPair, server_key: CurvePublicKey) -> Self {
        CurveConfig {
            server_key: Some(server_key),
            ..Self::server(keys)
        }
    }

    /// Decide which clients a server accepts ([`AllowList`], a closure, ...).
    pub fn with_authenticator(mut self, auth: impl Authenticator) -> Self {
        self.authenticator = Arc::new(auth);
        self
    }

    /// Our public key (what clients must know to connect to a server).
    pub fn public_key(&self) -> CurvePublicKey {
        self.keys.public()
    }

    /// The server key a client connects to.
    pub fn server_key(&self) -> Option<CurvePublicKey> {
        self.server_key
    }

    /// The counters shared by every connection of this configuration.
    pub fn stats(&self) -> Arc<CurveStats> {
        self.stats.clone()
    }

    /// The per-connection state machine.
    pub fn mechanism(&self, server: bool) -> CurveMechanism {
        CurveMechanism {
            server,
            cfg: self.clone(),
            state: State::Start,
            own: Metadata::new(),
            codec: None,
            peer_key: None,
            peer: None,
        }
    }
}

impl std::fmt::Debug for CurveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveConfig")
            .field("public_key", &self.keys.public())
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

impl PartialEq for CurveConfig {
    fn eq(&self, o: &Self) -> bool {
        self.keys == o.keys
            && self.server_key == o.server_key
            && Arc::ptr_eq(&self.authenticator, &o.authenticator)
            && Arc::ptr_eq(&self.stats, &o.stats)
    }
}

impl Eq for CurveConfig {}

enum State {
    Start,
    /// Client: HELLO sent with our short-term key C'.
    AwaitWelcome {
        short: SecretKey,
    },
    /// Client: INITIATE sent.
    AwaitReady,
    /// Server: waiting for HELLO.
    AwaitHello,
    /// Server: WELCOME sent; the cookie key K and what HELLO told us.
    AwaitInitiate {
        cookie_key: Zeroizing<[u8; 32]>,
        client_short: CurvePublicKey,
        hello_nonce: u64,
    },
    Done,
}

/// One side of one CURVE connection (see the module doc).
pub struct CurveMechanism {
    server: bool,
    cfg: CurveConfig,
    state: State,
    own: Metadata,
    /// The session (C'<->S') once known, with the MESSAGE nonces.
    codec: Option<MessageCodec>,
    /// The peer's long-term key once proven (client: S; server: C).
    peer_key: Option<CurvePublicKey>,
    peer: Option<PeerAddr>,
}

/// Client nonces: HELLO 1, INITIATE 2, MESSAGEs from 3. Server nonces: READY 1, MESSAGEs from 2.
const CLIENT_HELLO_NONCE: u64 = 1;
const CLIENT_INITIATE_NONCE: u64 = 2;
const SERVER_READY_NONCE: u64 = 1;

impl CurveMechanism {
    fn fail(&self, e: CurveError) -> HandshakeError {
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        if matches!(e, CurveError::Unauthorized(_)) {
            self.cfg.stats.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cfg
                .stats
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%peer, server = self.server, reason = %e, "CURVE refused");
        HandshakeError::Curve(e)
    }

    fn client_welcome(
        &mut self,
        short: SecretKey,
        body: &[u8],
    ) -> Result<MechanismStep, CurveError> {
        let server = self.cfg.server_key.ok_or(CurveError::Config(
            "a CURVE client needs the server's public key",
        ))?;
        let (server_short, cookie) = handshake::decode_welcome(body, &short, &server)?;
        let codec = MessageCodec::new(&server_short, &short, false, CLIENT_INITIATE_NONCE + 1, 0);
        let initiate = handshake::encode_initiate(
            &cookie,
            CLIENT_INITIATE_NONCE,
            codec.session(),
            &self.cfg.keys,
            &handshake::public_of(&short),
            &server,
            &server_short,
            &handshake::random16(),
            &self.own,
        );
        self.codec = Some(codec);
        self.state = State::AwaitReady;
        Ok(MechanismStep {
            send: vec![initiate],
            peer_metadata: None,
        })
    }

    fn client_ready(&mut self, body: &[u8]) -> Result<MechanismStep, CurveError> {
        let codec = self
            .codec
            .as_mut()
            .ok_or(CurveError::UnexpectedCommand("WELCOME"))?;
        let (n, meta) = handshake::decode_ready(body, codec.session())?;
        codec.accept_nonce(n)?;
        self.peer_key = self.cfg.server_key;
        self.state = State::Done;
        Ok(MechanismStep {
            send: Vec::new(),
            peer_metadata: Some(meta),
        })
    }

    fn server_hello(&mut self, body: &[u8]) -> Result<MechanismStep, CurveError> {
        let hello = handshake::decode_hello(body, &self.cfg.keys.secret_key())?;
        let short = SecretKey::generate(&mut crypto_box::aead::OsRng);
        let cookie_key = handshake::random_key();
        let cookie = handshake::seal_cookie(
            &cookie_key,
            &handshake::random16(),
            &hello.client_short,
            &short,
        );
        let welcome = handshake::encode_welcome(
            &self.cfg.keys.secret_key(),
            &hello.client_short,
            &handshake::random16(),
            &handshake::public_of(&short),
            &cookie,
        );
        self.state = State::AwaitInitiate {
            cookie_key,
            client_short: hello.client_short,
            hello_nonce: hello.short_nonce,
        };
        Ok(MechanismStep {
            send: vec![welcome],
            peer_metadata: None,
        })
    }

    fn server_initiate(
        &mut self,
        cookie_key: &[u8; 32],
        client_short: &CurvePublicKey,
        hello_nonce: u64,
        body: &[u8],
    ) -> Result<MechanismStep, CurveError> {
        let outer = handshake::parse_initiate(body)?;
        let (cookie_client, server_short) = handshake::open_cookie(cookie_key, outer.cookie)?;
        if !cookie_client.ct_eq(client_short) {
            return Err(CurveError::CookieMismatch);
        }
        if outer.short_nonce <= hello_nonce {
            return Err(CurveError::NonceReplay {
                last: hello_nonce,
                got: outer.short_nonce,
            });
        }
        let server_short = SecretKey::from_bytes(*server_short);
        let codec = MessageCodec::new(
            client_short,
            &server_short,
            true,
            SERVER_READY_NONCE + 1,
            outer.short_nonce,
        );
        let init = handshake::open_initiate(
            &outer,
            codec.session(),
            client_short,
            &server_short,
            &self.cfg.keys.public(),
        )?;
        let req = AuthRequest {
            peer: self.peer.unwrap_or(PeerAddr::Ipc),
            public_key: &init.client,
            metadata: &init.metadata,
        };
        match self.cfg.authenticator.authenticate(&req) {
            AuthDecision::Allow => {}
            AuthDecision::Deny(reason) => return Err(CurveError::Unauthorized(reason)),
        }
        let ready = handshake::encode_ready(SERVER_READY_NONCE, codec.session(), &self.own);
        self.codec = Some(codec);
        self.peer_key = Some(init.client);
        self.state = State::Done;
        Ok(MechanismStep {
            send: vec![ready],
            peer_metadata: Some(init.metadata),
        })
    }
}

impl Mechanism for CurveMechanism {
    fn name(&self) -> &'static str {
        "CURVE"
    }

    fn as_server(&self) -> bool {
        self.server
    }

    fn set_peer_addr(&mut self, peer: PeerAddr) {
        self.peer = Some(peer);
    }

    fn start(&mut self, own: &Metadata, peer: &Greeting) -> Result<MechanismStep, HandshakeError> {
        self.own = own.clone();
        // The peer's as-server bit is not checked: libzmq 4.3 sends it as 0 even on a CURVE server
        // (its greeting pads everything after the mechanism name with zeros). Roles come from
        // the configuration; two servers or two clients fail at the first command instead.
        let _ = peer;
        if self.server {
            self.state = State::AwaitHello;
            return Ok(MechanismStep::default());
        }
        let Some(server) = self.cfg.server_key else {
            return Err(self.fail(CurveError::Config(
                "a CURVE client needs the server's public key",
            )));
        };
        let short = SecretKey::generate(&mut crypto_box::aead::OsRng);
        let hello = handshake::encode_hello(&short, &server, CLIENT_HELLO_NONCE);
        self.state = State::AwaitWelcome { short };
        Ok(MechanismStep {
            send: vec![hello],
            peer_metadata: None,
        })
    }

    fn on_command(&mut self, body: Bytes) -> Result<MechanismStep, HandshakeError> {
        if body.starts_with(b"\x05ERROR") {
            let reason = match Command::decode(&body) {
                Ok(Command::Error(r)) if is_zap_status(&r) => {
                    format!("{r} (ZAP status: the server refused our key)")
                }
                Ok(Command::Error(r)) => r,
                _ => "malformed ERROR".into(),
            };
            return Err(HandshakeError::PeerError(reason));
        }
        let r = match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitWelcome { short } => self.client_welcome(short, &body),
            State::AwaitReady => self.client_ready(&body),
            State::AwaitHello => self.server_hello(&body),
            State::AwaitInitiate {
                cookie_key,
                client_short,
                hello_nonce,
            } => self.server_initiate(&cookie_key, &client_short, hello_nonce, &body),
            State::Start | State::Done => Err(CurveError::HandshakeOver),
        };
        r.map_err(|e| self.fail(e))
    }

    fn transforms_frames(&self) -> bool {
        true
    }

    fn encode_frame(&mut self, frame: Frame) -> Result<Frame, HandshakeError> {
        let mut out = BytesMut::new();
        self.encode_frame_into(frame.more, frame.command, &frame.body, &mut out)?;
        // Strip the ZMTP frame header the codec wrote (short form up to 255 bytes).
        let header = if frame.body.len() + message::MESSAGE_OVERHEAD <= 255 {
            2
        } else {
            9
        };
        let body = out.split_off(header).freeze();
        Ok(Frame {
            more: false,
            command: false,
            body,
        })
    }

    fn encode_frame_into(
        &mut self,
        more: bool,
        command: bool,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), HandshakeError> {
        match self.codec.as_mut() {
            Some(c) if matches!(self.state, State::Done) => c
                .seal_into(more, command, body, out)
                .map_err(HandshakeError::Curve),
            _ => Err(HandshakeError::Curve(CurveError::Config(
                "CURVE frame before the handshake completed",
            ))),
        }
    }

    fn decode_frame(&mut self, frame: Frame) -> Result<Frame, HandshakeError> {
        let Some(codec) = self.codec.as_mut() else {
            return Err(self.fail(CurveError::UnexpectedCommand("handshake")));
        };
        if frame.command && frame.body.starts_with(b"\x05ERROR") {
            // libzmq may send a plaintext ERROR; it can only close the connection.
            return Ok(frame);
        }
        match codec.open(&frame.body) {
            Ok(f) => Ok(f),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn peer_public_key(&self) -> Option<CurvePublicKey> {
        self.peer_key
    }
}

impl std::fmt::Debug for CurveMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveMechanism")
            .field("server", &self.server)
            .field("peer_key", &self.peer_key)
            .finish_non_exhaustive()
    }
}

/// An ERROR reason that is a ZAP status code (`300`, `400`, `500`), as libzmq sends when its ZAP
/// handler refuses a client (and as zmesh sends for a refused key).
fn is_zap_status(r: &str) -> bool {
    let b = r.as_bytes();
    b.len() == 3 && (b'3'..=b'5').contains(&b[0]) && &b[1..] == b"00"
}

/// Append one ZMTP frame header plus body (helper of the default `encode_frame_into`).
pub(crate) fn push_plain_frame(more: bool, command: bool, body: &[u8], out: &mut BytesMut) {
    encode_frame_header(more, command, body.len(), out);
    out.extend_from_slice(body);
}
