//! MESSAGE framing (RFC 25/26): after the handshake every ZMTP frame travels as
//! `\x07MESSAGE` · short nonce (u64 BE) · Box[flags + body](C'<->S') under the nonce
//! `"CurveZMQMESSAGEC"` (client to server) or `"CurveZMQMESSAGES"` (server to client) + short nonce.
//! Inner flags: bit 0 MORE, bit 1 COMMAND (so PING/PONG travel encrypted too). The outer ZMTP frame
//! has no flags, as libzmq sends it.
//!
//! Speed: a MESSAGE box is NaCl's `crypto_secretbox` (XSalsa20-Poly1305) under the session key
//! `k` = `crypto_box_beforenm`(C', s'). XSalsa20 first derives a subkey with HSalsa20 from `k` and
//! the nonce's first 16 bytes, and those are the constant prefix `"CurveZMQMESSAGEC"` /
//! `"CurveZMQMESSAGES"`: the subkey is the same for every MESSAGE of one direction. So
//! [`DirectionKey`] computes it once per connection and direction, and a MESSAGE costs a Salsa20
//! keystream under the subkey with the short nonce (as Salsa20's 8-byte nonce) plus a Poly1305,
//! exactly what `crypto_secretbox` computes minus one HSalsa20 (a third of the cipher work of a
//! small message). The golden MESSAGE vectors (computed by libsodium) check the bytes. A frame is
//! sealed in place in the caller's write buffer and opened in place in a per-connection arena, so
//! sending or receiving a message allocates nothing per message.

use super::handshake::{session_box, TAG_LEN};
use super::keys::CurvePublicKey;
use super::CurveError;
use crate::codec::{encode_frame_header, Frame};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use crypto_box::{SalsaBox, SecretKey};
use curve25519_dalek::montgomery::MontgomeryPoint;
use poly1305::universal_hash::KeyInit;
use poly1305::Poly1305;
use salsa20::cipher::consts::U10;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::{hsalsa, Salsa20};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

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

/// `crypto_box_beforenm`: HSalsa20(X25519(ours, peer), 0), the key every box between the two
/// keys is sealed under (what `SalsaBox::new` computes and keeps inside).
fn beforenm(peer: &CurvePublicKey, ours: &SecretKey) -> Zeroizing<[u8; 32]> {
    let scalar = Zeroizing::new(ours.to_scalar());
    let shared = Zeroizing::new((MontgomeryPoint(*peer.as_bytes()) * *scalar).to_bytes());
    Zeroizing::new(hsalsa::<U10>((&*shared).into(), &Default::default()).into())
}

/// The MESSAGE key of one direction of one connection: XSalsa20's subkey for that direction's
/// nonce prefix (see the module doc). Zeroized on drop.
pub struct DirectionKey {
    subkey: Zeroizing<[u8; 32]>,
}

impl DirectionKey {
    /// The key for MESSAGEs under `prefix` ([`CLIENT_PREFIX`] or [`SERVER_PREFIX`]) between our
    /// short-term secret and the peer's short-term public key.
    pub fn new(peer: &CurvePublicKey, ours: &SecretKey, prefix: &[u8; 16]) -> Self {
        Self::from_beforenm(&beforenm(peer, ours), prefix)
    }

    fn from_beforenm(k: &[u8; 32], prefix: &[u8; 16]) -> Self {
        DirectionKey {
            subkey: Zeroizing::new(hsalsa::<U10>(k.into(), prefix.into()).into()),
        }
    }

    /// Salsa20 under the subkey with the short nonce, and the Poly1305 keyed with its first 32
    /// bytes (the rest of the keystream encrypts the message).
    fn start(&self, short_nonce: u64) -> (Salsa20, Poly1305) {
        let mut cipher = Salsa20::new((&*self.subkey).into(), &short_nonce.to_be_bytes().into());
        let mut mac_key = Zeroizing::new([0u8; 32]);
        cipher.apply_keystream(&mut *mac_key);
        (cipher, Poly1305::new((&*mac_key).into()))
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal_in_place(&self, short_nonce: u64, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let (mut cipher, mac) = self.start(short_nonce);
        cipher.apply_keystream(buf);
        mac.compute_unpadded(buf).into()
    }

    /// Checks `tag` (in constant time) and decrypts `buf` in place; on a bad tag `buf` is left
    /// as it was.
    pub fn open_in_place(
        &self,
        short_nonce: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CurveError> {
        let (mut cipher, mac) = self.start(short_nonce);
        let expected: [u8; TAG_LEN] = mac.compute_unpadded(buf).into();
        if !bool::from(expected.ct_eq(tag)) {
            return Err(CurveError::BadBox("MESSAGE"));
        }
        cipher.apply_keystream(buf);
        Ok(())
    }
}

/// Seal one frame as a complete ZMTP frame holding a MESSAGE command, appended to `out`.
pub fn seal_message(
    key: &DirectionKey,
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
    let tag = key.seal_in_place(short_nonce, plain);
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
    key: &DirectionKey,
    body: &[u8],
    arena: &mut BytesMut,
) -> Result<Frame, CurveError> {
    let n = message_nonce(body)?;
    let sealed = &body[32..];
    if arena.capacity() < sealed.len() {
        arena.reserve(sealed.len().max(ARENA));
    }
    arena.extend_from_slice(sealed);
    let tag: &[u8; TAG_LEN] = body[16..32].try_into().expect("16 bytes");
    if let Err(e) = key.open_in_place(n, &mut arena[..], tag) {
        arena.clear();
        return Err(e);
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

/// The MESSAGE state of one established CURVE connection: the precomputed session box (for
/// INITIATE and READY), the two direction keys, our next short nonce and the peer's last one (a
/// MESSAGE whose nonce is not above it closes the connection: replay or reordering).
pub struct MessageCodec {
    session: SalsaBox,
    send: DirectionKey,
    recv: DirectionKey,
    next_send: u64,
    last_recv: u64,
    arena: BytesMut,
}

impl MessageCodec {
    /// The state for a connection between our short-term secret `ours` and the peer's short-term
    /// public key `peer`. `server`: we are the CURVE server. `next_send`: our next short nonce;
    /// `last_recv`: the peer's last short nonce seen during the handshake.
    pub fn new(
        peer: &CurvePublicKey,
        ours: &SecretKey,
        server: bool,
        next_send: u64,
        last_recv: u64,
    ) -> Self {
        let (send_prefix, recv_prefix) = if server {
            (SERVER_PREFIX, CLIENT_PREFIX)
        } else {
            (CLIENT_PREFIX, SERVER_PREFIX)
        };
        let k = beforenm(peer, ours);
        MessageCodec {
            session: session_box(peer, ours),
            send: DirectionKey::from_beforenm(&k, send_prefix),
            recv: DirectionKey::from_beforenm(&k, recv_prefix),
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
        seal_message(&self.send, n, flags, body, out);
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
        let f = open_message(&self.recv, body, &mut self.arena)?;
        self.last_recv = n;
        Ok(f)
    }

    /// The precomputed session box (C'<->S'), for INITIATE and READY.
    pub fn session(&self) -> &SalsaBox {
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
