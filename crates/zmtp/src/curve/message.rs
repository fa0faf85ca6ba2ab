//! MESSAGE framing (RFC 25/26): after the handshake every ZMTP frame travels as
//! `\x07MESSAGE` · short nonce (u64 BE) · Box[flags + body](C'<->S') under the nonce
//! `"CurveZMQMESSAGEC"` (client to server) or `"CurveZMQMESSAGES"` (server to client) + short nonce.
//! Inner flags: bit 0 MORE, bit 1 COMMAND (so PING/PONG travel encrypted too). The outer ZMTP frame
//! has no flags, as libzmq sends it.
//!
//! Speed: the box is precomputed once per connection (`SalsaBox` holds the `beforenm` key); a frame
//! is sealed in place in the caller's write buffer and opened in place in a per-connection arena, so
//! sending or receiving a message allocates nothing per message.

use super::handshake::{nonce, TAG_LEN};
use super::CurveError;
use crate::codec::{encode_frame_header, Frame};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use crypto_box::aead::AeadInPlace;
use crypto_box::SalsaBox;

/// `\x07MESSAGE`.
pub const MESSAGE_NAME: &[u8; 8] = b"\x07MESSAGE";
/// Smallest MESSAGE body: name, nonce, tag and the flags byte.
pub const MESSAGE_MIN_LEN: usize = 8 + 8 + TAG_LEN + 1;
/// Bytes a MESSAGE adds to a frame body.
pub const MESSAGE_OVERHEAD: usize = MESSAGE_MIN_LEN;
/// Nonce prefix of MESSAGEs from client to server.
pub const CLIENT_PREFIX: &[u8; 16] = b"CurveZMQMESSAGEC";
/// Nonce prefix of MESSAGEs from server to client.
pub const SERVER_PREFIX: &[u8; 16] = b"CurveZMQMESSAGES";
/// Inner flag: more frames follow.
pub const INNER_MORE: u8 = 0x01;
/// Inner flag: the frame is a ZMTP command.
pub const INNER_COMMAND: u8 = 0x02;
/// Plaintext arena chunk: decrypted bodies are slices of it (one allocation per many messages).
const ARENA: usize = 64 * 1024;

/// Seal one frame as a complete ZMTP frame holding a MESSAGE command, appended to `out`.
pub fn seal_message(
    session: &SalsaBox,
    prefix: &[u8; 16],
    short_nonce: u64,
    flags: u8,
    body: &[u8],
    out: &mut BytesMut,
) {
    let len = MESSAGE_OVERHEAD + body.len();
    encode_frame_header(false, false, len, out);
    out.reserve(len);
    let start = out.len();
    out.extend_from_slice(MESSAGE_NAME);
    out.put_u64(short_nonce);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.put_u8(flags);
    out.extend_from_slice(body);
    let (head, plain) = out[start..].split_at_mut(32);
    let tag = session
        .encrypt_in_place_detached(&nonce(prefix, &short_nonce.to_be_bytes()), b"", plain)
        .expect("in-place encryption of a slice cannot fail");
    head[16..32].copy_from_slice(&tag);
}

/// The short nonce of a MESSAGE body (name and size checked).
pub fn message_nonce(body: &[u8]) -> Result<u64, CurveError> {
    if body.len() < 8 || &body[..8] != MESSAGE_NAME {
        return Err(CurveError::UnexpectedCommand("MESSAGE"));
    }
    if body.len() < MESSAGE_MIN_LEN {
        return Err(CurveError::WrongSize {
            command: "MESSAGE",
            expected: MESSAGE_MIN_LEN,
            got: body.len(),
        });
    }
    Ok(u64::from_be_bytes(body[8..16].try_into().expect("8 bytes")))
}

/// Open a MESSAGE body into `arena` (reused between calls): the inner frame.
pub fn open_message(
    session: &SalsaBox,
    prefix: &[u8; 16],
    body: &[u8],
    arena: &mut BytesMut,
) -> Result<Frame, CurveError> {
    let n = message_nonce(body)?;
    let sealed = &body[32..];
    if arena.capacity() < sealed.len() {
        arena.reserve(sealed.len().max(ARENA));
    }
    arena.extend_from_slice(sealed);
    let tag = crypto_box::Tag::from_slice(&body[16..32]);
    if session
        .decrypt_in_place_detached(&nonce(prefix, &n.to_be_bytes()), b"", &mut arena[..], tag)
        .is_err()
    {
        arena.clear();
        return Err(CurveError::BadBox("MESSAGE"));
    }
    let mut plain = arena.split();
    let flags = plain[0];
    plain.advance(1);
    Ok(Frame {
        more: flags & INNER_MORE != 0,
        command: flags & INNER_COMMAND != 0,
        body: plain.freeze(),
    })
}

/// The MESSAGE state of one established CURVE connection: the precomputed session box, our next
/// short nonce and the peer's last one (a MESSAGE whose nonce is not above it closes the
/// connection: replay or reordering).
pub struct MessageCodec {
    session: SalsaBox,
    send_prefix: &'static [u8; 16],
    recv_prefix: &'static [u8; 16],
    next_send: u64,
    last_recv: u64,
    arena: BytesMut,
}

impl MessageCodec {
    /// The state after a handshake. `server`: we are the CURVE server. `next_send`: our next short
    /// nonce; `last_recv`: the peer's last short nonce seen during the handshake.
    pub fn new(session: SalsaBox, server: bool, next_send: u64, last_recv: u64) -> Self {
        let (send_prefix, recv_prefix) = if server {
            (SERVER_PREFIX, CLIENT_PREFIX)
        } else {
            (CLIENT_PREFIX, SERVER_PREFIX)
        };
        MessageCodec {
            session,
            send_prefix,
            recv_prefix,
            next_send,
            last_recv,
            arena: BytesMut::new(),
        }
    }

    /// Seal one frame onto `out` as a ZMTP frame; fails only when the nonces are exhausted.
    pub fn seal_into(
        &mut self,
        more: bool,
        command: bool,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CurveError> {
        let n = self.next_send;
        if n == u64::MAX {
            return Err(CurveError::NoncesExhausted);
        }
        self.next_send += 1;
        let flags = ((more as u8) * INNER_MORE) | ((command as u8) * INNER_COMMAND);
        seal_message(&self.session, self.send_prefix, n, flags, body, out);
        Ok(())
    }

    /// Open one received MESSAGE body: checks the nonce is above the last one, then the box.
    pub fn open(&mut self, body: &[u8]) -> Result<Frame, CurveError> {
        let n = message_nonce(body)?;
        if n <= self.last_recv {
            return Err(CurveError::NonceReplay {
                last: self.last_recv,
                got: n,
            });
        }
        let f = open_message(&self.session, self.recv_prefix, body, &mut self.arena)?;
        self.last_recv = n;
        Ok(f)
    }

    /// The precomputed session box (C'<->S'), also used for INITIATE and READY.
    pub(crate) fn session(&self) -> &SalsaBox {
        &self.session
    }

    /// Take a handshake command's short nonce from the peer (must be above the last one).
    pub(crate) fn accept_nonce(&mut self, n: u64) -> Result<(), CurveError> {
        if n <= self.last_recv {
            return Err(CurveError::NonceReplay {
                last: self.last_recv,
                got: n,
            });
        }
        self.last_recv = n;
        Ok(())
    }

    /// Open a received body given as `Bytes` (convenience for tests and fuzzing).
    pub fn open_bytes(&mut self, body: &Bytes) -> Result<Frame, CurveError> {
        self.open(body)
    }
}

impl std::fmt::Debug for MessageCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCodec")
            .field("next_send", &self.next_send)
            .field("last_recv", &self.last_recv)
            .finish_non_exhaustive()
    }
}
