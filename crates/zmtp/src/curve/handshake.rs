//! Pure codecs of the CurveZMQ handshake commands (RFC 26 as libzmq implements it): HELLO, WELCOME,
//! the cookie, INITIATE (with the vouch) and READY. Each command is built by one function and taken
//! apart by one (or two, when the server must open the cookie before it can open the rest); none
//! does I/O and every failure is a typed [`CurveError`].
//!
//! Boxes on the wire are NaCl `crypto_box` (XSalsa20-Poly1305) *without* the 16 zero bytes of
//! `crypto_box_BOXZEROBYTES`: MAC (16) followed by the ciphertext, which is exactly what RustCrypto's
//! `encrypt` returns.

use super::keys::{CurveKeyPair, CurvePublicKey, KEY_LEN};
use super::CurveError;
use crate::codec::Metadata;
use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::{Aead, AeadCore, KeyInit};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use crypto_secretbox::XSalsa20Poly1305;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Size of a HELLO command body.
pub const HELLO_LEN: usize = 200;
/// Size of a WELCOME command body.
pub const WELCOME_LEN: usize = 168;
/// Size of a cookie.
pub const COOKIE_LEN: usize = 96;
/// Smallest INITIATE command body (no metadata).
pub const INITIATE_MIN_LEN: usize = 257;
/// Smallest READY command body (no metadata).
pub const READY_MIN_LEN: usize = 30;
/// Poly1305 tag length: what a box adds to its plaintext.
pub const TAG_LEN: usize = 16;

const HELLO_NAME: &[u8] = b"\x05HELLO";
const WELCOME_NAME: &[u8] = b"\x07WELCOME";
const INITIATE_NAME: &[u8] = b"\x08INITIATE";
const READY_NAME: &[u8] = b"\x05READY";

/// A 24-byte nonce from a 16- or 8-byte prefix and the 8- or 16-byte rest.
pub(crate) fn nonce(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    debug_assert_eq!(prefix.len() + tail.len(), 24);
    let mut n = crypto_box::Nonce::default();
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n
}

/// 16 random bytes (long nonces, cookie nonces).
pub(crate) fn random16() -> [u8; 16] {
    let n = XSalsa20Poly1305::generate_nonce(&mut crypto_box::aead::OsRng);
    let mut out = [0u8; 16];
    out.copy_from_slice(&n[..16]);
    out
}

/// A random secretbox key (the per-connection cookie key), zeroized on drop.
pub(crate) fn random_key() -> Zeroizing<[u8; 32]> {
    let k = XSalsa20Poly1305::generate_key(&mut crypto_box::aead::OsRng);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&k);
    out
}

fn check_name(body: &[u8], name: &'static [u8], command: &'static str) -> Result<(), CurveError> {
    if body.len() < name.len() || &body[..name.len()] != name {
        return Err(CurveError::UnexpectedCommand(command));
    }
    Ok(())
}

fn key_at(b: &[u8], at: usize) -> [u8; KEY_LEN] {
    b[at..at + KEY_LEN].try_into().expect("32 bytes")
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Build HELLO: `\x05HELLO`, version 1.0, 72 zero bytes, C', short nonce, Box[64 zeros](C'->S).
pub fn encode_hello(client_short: &SecretKey, server: &CurvePublicKey, short_nonce: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(HELLO_LEN);
    b.extend_from_slice(HELLO_NAME);
    b.extend_from_slice(&[1, 0]);
    b.extend_from_slice(&[0u8; 72]);
    b.extend_from_slice(client_short.public_key().as_bytes());
    b.put_u64(short_nonce);
    let bx = SalsaBox::new(&PublicKey::from(*server.as_bytes()), client_short);
    let sig = bx
        .encrypt(
            &nonce(b"CurveZMQHELLO---", &short_nonce.to_be_bytes()),
            &[0u8; 64][..],
        )
        .expect("encrypting into a Vec cannot fail");
    b.extend_from_slice(&sig);
    debug_assert_eq!(b.len(), HELLO_LEN);
    b.freeze()
}

/// What a valid HELLO carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The client's short-term public key C'.
    pub client_short: CurvePublicKey,
    /// The client's short nonce for this command.
    pub short_nonce: u64,
}

/// Check and open HELLO with the server's long-term secret key: size, name, version 1.0, and a
/// signature box that opens (proving the client knows S) to 64 zero bytes.
pub fn decode_hello(body: &[u8], server: &SecretKey) -> Result<Hello, CurveError> {
    check_name(body, HELLO_NAME, "HELLO")?;
    if body.len() != HELLO_LEN {
        return Err(CurveError::WrongSize {
            command: "HELLO",
            expected: HELLO_LEN,
            got: body.len(),
        });
    }
    if body[6] != 1 || body[7] != 0 {
        return Err(CurveError::BadVersion {
            major: body[6],
            minor: body[7],
        });
    }
    let client_short = key_at(body, 80);
    let short_nonce = u64_at(body, 112);
    let bx = SalsaBox::new(&PublicKey::from(client_short), server);
    let plain = Zeroizing::new(
        bx.decrypt(
            &nonce(b"CurveZMQHELLO---", &body[112..120]),
            &body[120..200],
        )
        .map_err(|_| CurveError::BadBox("HELLO"))?,
    );
    if !bool::from(plain.ct_eq(&[0u8; 64][..])) {
        return Err(CurveError::BadBox("HELLO signature is not zeros"));
    }
    Ok(Hello {
        client_short: CurvePublicKey::from_bytes(client_short),
        short_nonce,
    })
}

/// Build a cookie: nonce16 followed by SecretBox[C' + s'](K) under `"COOKIE--"` + nonce16.
pub fn seal_cookie(
    key: &[u8; 32],
    cookie_nonce: &[u8; 16],
    client_short: &CurvePublicKey,
    server_short: &SecretKey,
) -> [u8; COOKIE_LEN] {
    let mut plain = Zeroizing::new([0u8; 64]);
    plain[..32].copy_from_slice(client_short.as_bytes());
    plain[32..].copy_from_slice(&server_short.to_bytes());
    let sb = XSalsa20Poly1305::new(key.into());
    let ct = sb
        .encrypt(&nonce(b"COOKIE--", cookie_nonce), &plain[..])
        .expect("encrypting into a Vec cannot fail");
    let mut out = [0u8; COOKIE_LEN];
    out[..16].copy_from_slice(cookie_nonce);
    out[16..].copy_from_slice(&ct);
    out
}

/// Open a cookie with K: returns (C', s').
pub fn open_cookie(
    key: &[u8; 32],
    cookie: &[u8],
) -> Result<(CurvePublicKey, Zeroizing<[u8; 32]>), CurveError> {
    if cookie.len() != COOKIE_LEN {
        return Err(CurveError::Truncated("cookie"));
    }
    let sb = XSalsa20Poly1305::new(key.into());
    let plain = Zeroizing::new(
        sb.decrypt(&nonce(b"COOKIE--", &cookie[..16]), &cookie[16..])
            .map_err(|_| CurveError::BadBox("cookie"))?,
    );
    let mut s = Zeroizing::new([0u8; 32]);
    s.copy_from_slice(&plain[32..64]);
    Ok((CurvePublicKey::from_bytes(key_at(&plain, 0)), s))
}

/// Build WELCOME: `\x07WELCOME`, nonce16, Box[S' + cookie](S->C') under `"WELCOME-"` + nonce16.
pub fn encode_welcome(
    server: &SecretKey,
    client_short: &CurvePublicKey,
    long_nonce: &[u8; 16],
    server_short: &CurvePublicKey,
    cookie: &[u8; COOKIE_LEN],
) -> Bytes {
    let mut plain = [0u8; 128];
    plain[..32].copy_from_slice(server_short.as_bytes());
    plain[32..].copy_from_slice(cookie);
    let bx = SalsaBox::new(&PublicKey::from(*client_short.as_bytes()), server);
    let ct = bx
        .encrypt(&nonce(b"WELCOME-", long_nonce), &plain[..])
        .expect("encrypting into a Vec cannot fail");
    let mut b = BytesMut::with_capacity(WELCOME_LEN);
    b.extend_from_slice(WELCOME_NAME);
    b.extend_from_slice(long_nonce);
    b.extend_from_slice(&ct);
    debug_assert_eq!(b.len(), WELCOME_LEN);
    b.freeze()
}

/// Open WELCOME with C' and S: returns (S', cookie).
pub fn decode_welcome(
    body: &[u8],
    client_short: &SecretKey,
    server: &CurvePublicKey,
) -> Result<(CurvePublicKey, [u8; COOKIE_LEN]), CurveError> {
    check_name(body, WELCOME_NAME, "WELCOME")?;
    if body.len() != WELCOME_LEN {
        return Err(CurveError::WrongSize {
            command: "WELCOME",
            expected: WELCOME_LEN,
            got: body.len(),
        });
    }
    let bx = SalsaBox::new(&PublicKey::from(*server.as_bytes()), client_short);
    let plain = bx
        .decrypt(&nonce(b"WELCOME-", &body[8..24]), &body[24..])
        .map_err(|_| CurveError::BadBox("WELCOME"))?;
    let mut cookie = [0u8; COOKIE_LEN];
    cookie.copy_from_slice(&plain[32..128]);
    Ok((CurvePublicKey::from_bytes(key_at(&plain, 0)), cookie))
}

/// Build INITIATE: `\x08INITIATE`, cookie, short nonce, Box[C + vouch nonce16 + vouch + metadata]
/// (C'->S') under `"CurveZMQINITIATE"` + short nonce, where vouch = Box[C' + S](C->S') under
/// `"VOUCH---"` + vouch nonce16. `session` is the precomputed C'<->S' box.
#[allow(clippy::too_many_arguments)]
pub fn encode_initiate(
    cookie: &[u8; COOKIE_LEN],
    short_nonce: u64,
    session: &SalsaBox,
    client: &CurveKeyPair,
    client_short: &CurvePublicKey,
    server: &CurvePublicKey,
    server_short: &CurvePublicKey,
    vouch_nonce: &[u8; 16],
    metadata: &Metadata,
) -> Bytes {
    let mut vouch_plain = [0u8; 64];
    vouch_plain[..32].copy_from_slice(client_short.as_bytes());
    vouch_plain[32..].copy_from_slice(server.as_bytes());
    let vouch = SalsaBox::new(
        &PublicKey::from(*server_short.as_bytes()),
        &client.secret_key(),
    )
    .encrypt(&nonce(b"VOUCH---", vouch_nonce), &vouch_plain[..])
    .expect("encrypting into a Vec cannot fail");
    let mut plain = BytesMut::with_capacity(128 + 64);
    plain.extend_from_slice(client.public().as_bytes());
    plain.extend_from_slice(vouch_nonce);
    plain.extend_from_slice(&vouch);
    metadata.encode_into(&mut plain);
    let ct = session
        .encrypt(
            &nonce(b"CurveZMQINITIATE", &short_nonce.to_be_bytes()),
            &plain[..],
        )
        .expect("encrypting into a Vec cannot fail");
    let mut b = BytesMut::with_capacity(9 + COOKIE_LEN + 8 + ct.len());
    b.extend_from_slice(INITIATE_NAME);
    b.extend_from_slice(cookie);
    b.put_u64(short_nonce);
    b.extend_from_slice(&ct);
    b.freeze()
}

/// The parts of INITIATE readable before anything is opened.
#[derive(Debug)]
pub struct InitiateOuter<'a> {
    /// The cookie the server sent in WELCOME (the server opens it with its cookie key).
    pub cookie: &'a [u8],
    /// The client's short nonce for this command.
    pub short_nonce: u64,
    /// The box the server opens with (C', s') from the cookie.
    pub sealed: &'a [u8],
}

/// Split INITIATE into cookie, short nonce and box (size and name checked).
pub fn parse_initiate(body: &[u8]) -> Result<InitiateOuter<'_>, CurveError> {
    check_name(body, INITIATE_NAME, "INITIATE")?;
    if body.len() < INITIATE_MIN_LEN {
        return Err(CurveError::WrongSize {
            command: "INITIATE",
            expected: INITIATE_MIN_LEN,
            got: body.len(),
        });
    }
    Ok(InitiateOuter {
        cookie: &body[9..105],
        short_nonce: u64_at(body, 105),
        sealed: &body[113..],
    })
}

/// What the INITIATE box holds, once opened and vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiate {
    /// The client's long-term public key C: the identity that was authenticated.
    pub client: CurvePublicKey,
    /// The client's metadata (Socket-Type, Identity, ...).
    pub metadata: Metadata,
}

/// Open the INITIATE box with the session box (C'<->S'), then the vouch with (C, s'), and check the
/// vouch names this connection's C' and our S (in constant time).
pub fn open_initiate(
    outer: &InitiateOuter<'_>,
    session: &SalsaBox,
    client_short: &CurvePublicKey,
    server_short: &SecretKey,
    server: &CurvePublicKey,
) -> Result<Initiate, CurveError> {
    let plain = Zeroizing::new(
        session
            .decrypt(
                &nonce(b"CurveZMQINITIATE", &outer.short_nonce.to_be_bytes()),
                outer.sealed,
            )
            .map_err(|_| CurveError::BadBox("INITIATE"))?,
    );
    // Size check done by `parse_initiate`: 257 - 113 - 16 = 128 plaintext bytes at least.
    let client = CurvePublicKey::from_bytes(key_at(&plain, 0));
    let vouch = SalsaBox::new(&PublicKey::from(*client.as_bytes()), server_short)
        .decrypt(&nonce(b"VOUCH---", &plain[32..48]), &plain[48..128])
        .map_err(|_| CurveError::BadBox("vouch"))?;
    let ok = vouch[..32].ct_eq(client_short.as_bytes()) & vouch[32..64].ct_eq(server.as_bytes());
    if !bool::from(ok) {
        return Err(CurveError::VouchMismatch);
    }
    let metadata = Metadata::decode(&plain[128..]).map_err(CurveError::Metadata)?;
    Ok(Initiate { client, metadata })
}

/// Build READY: `\x05READY`, short nonce, Box[metadata](S'->C') under `"CurveZMQREADY---"` + nonce.
pub fn encode_ready(short_nonce: u64, session: &SalsaBox, metadata: &Metadata) -> Bytes {
    let mut plain = BytesMut::new();
    metadata.encode_into(&mut plain);
    let ct = session
        .encrypt(
            &nonce(b"CurveZMQREADY---", &short_nonce.to_be_bytes()),
            &plain[..],
        )
        .expect("encrypting into a Vec cannot fail");
    let mut b = BytesMut::with_capacity(14 + ct.len());
    b.extend_from_slice(READY_NAME);
    b.put_u64(short_nonce);
    b.extend_from_slice(&ct);
    b.freeze()
}

/// Open READY: returns the server's short nonce and metadata.
pub fn decode_ready(body: &[u8], session: &SalsaBox) -> Result<(u64, Metadata), CurveError> {
    check_name(body, READY_NAME, "READY")?;
    if body.len() < READY_MIN_LEN {
        return Err(CurveError::WrongSize {
            command: "READY",
            expected: READY_MIN_LEN,
            got: body.len(),
        });
    }
    let plain = session
        .decrypt(&nonce(b"CurveZMQREADY---", &body[6..14]), &body[14..])
        .map_err(|_| CurveError::BadBox("READY"))?;
    let metadata = Metadata::decode(&plain).map_err(CurveError::Metadata)?;
    Ok((u64_at(body, 6), metadata))
}

/// The precomputed box between our secret and the peer's public key (`crypto_box_beforenm`).
pub fn session_box(peer: &CurvePublicKey, ours: &SecretKey) -> SalsaBox {
    SalsaBox::new(&PublicKey::from(*peer.as_bytes()), ours)
}

/// The public key of a secret key, as our key type.
pub fn public_of(secret: &SecretKey) -> CurvePublicKey {
    CurvePublicKey::from_bytes(*secret.public_key().as_bytes())
}
