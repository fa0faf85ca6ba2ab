//! Harness of the CURVE codecs and state machine (`curve_handshake_and_message`).
//!
//! Input: byte 0 is the mode, the rest a list of command bodies, each behind a big-endian `u16`
//! length (`0xFFFF` = the rest of the input).
//!
//! * mode bit 0 clear — **codecs with fixed keys**: every body is given to the decoder its name
//!   selects (HELLO, WELCOME, INITIATE with the cookie and vouch, READY, MESSAGE; anything else to
//!   all of them). The keys, short-term keys and cookie key are fixed (see [`Fixed`]), so the seeds
//!   (valid commands built with those keys by [`seeds`]) let the fuzzer mutate its way into the
//!   inner checks: cookie contents, vouch, metadata, nonce order. MESSAGEs go through one
//!   server-side and one client-side [`MessageCodec`]: accepted nonces strictly increase, and an
//!   opened frame re-sealed with the same nonce gives back the exact input bytes.
//! * mode bit 0 set — **the handshake state machine** ([`CurveMechanism`]) as server (bit 1 clear)
//!   or client (bit 1 set): the bodies are fed in order as handshake commands until it completes or
//!   fails, then as MESSAGE frames. Once complete, the peer's key must be known.

use bytes::{Bytes, BytesMut};
use zmesh_zmtp::codec::{Frame, Greeting, Metadata};
use zmesh_zmtp::curve::handshake::*;
use zmesh_zmtp::curve::message::{CLIENT_PREFIX, SERVER_PREFIX};
use zmesh_zmtp::curve::{CurveConfig, CurveKeyPair, MessageCodec, SecretKey};
use zmesh_zmtp::mechanism::Mechanism;

/// The fixed keys of the codec mode (any values do; these are easy to spot in a hex dump).
pub struct Fixed {
    /// Server long-term key pair S.
    pub server: CurveKeyPair,
    /// Client long-term key pair C.
    pub client: CurveKeyPair,
    /// Client short-term secret C'.
    pub c_short: SecretKey,
    /// Server short-term secret S'.
    pub s_short: SecretKey,
    /// Cookie key K.
    pub cookie_key: [u8; 32],
}

impl Fixed {
    /// The fixed keys.
    pub fn new() -> Self {
        Fixed {
            server: CurveKeyPair::from_secret_bytes([0x51; 32]),
            client: CurveKeyPair::from_secret_bytes([0x43; 32]),
            c_short: SecretKey::from_bytes([1; 32]),
            s_short: SecretKey::from_bytes([2; 32]),
            cookie_key: [3; 32],
        }
    }
}

impl Default for Fixed {
    fn default() -> Self {
        Self::new()
    }
}

fn split(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]);
        let tail = &rest[2..];
        let n = if len == 0xFFFF {
            tail.len()
        } else {
            usize::from(len).min(tail.len())
        };
        out.push(&tail[..n]);
        rest = &tail[n..];
    }
    out
}

/// The harness (see the module doc).
pub fn curve_handshake_and_message(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bodies = split(rest);
    if mode & 1 == 0 {
        codecs(&bodies, mode & 2 != 0);
    } else {
        state_machine(&bodies, mode & 2 != 0);
    }
}

fn codecs(bodies: &[&[u8]], client_messages: bool) {
    let k = Fixed::new();
    let c = public_of(&k.c_short);
    let s = public_of(&k.s_short);
    let server_sk = SecretKey::from_bytes(server_secret(&k));
    let srv_session = session_box(&c, &k.s_short);
    let mut server_rx = MessageCodec::new(&c, &k.s_short, true, 2, 2);
    let mut client_rx = MessageCodec::new(&s, &k.c_short, false, 3, 1);
    let mut last = (2u64, 1u64);
    for body in bodies {
        let any = !body.starts_with(b"\x05HELLO")
            && !body.starts_with(b"\x07WELCOME")
            && !body.starts_with(b"\x08INITIATE")
            && !body.starts_with(b"\x05READY")
            && !body.starts_with(b"\x07MESSAGE");
        if any || body.starts_with(b"\x05HELLO") {
            if let Ok(h) = decode_hello(body, &server_sk) {
                assert_eq!(body.len(), HELLO_LEN);
                assert_eq!(h.client_short.as_bytes()[..], body[80..112]);
            }
        }
        if any || body.starts_with(b"\x07WELCOME") {
            if let Ok((_, cookie)) = decode_welcome(body, &k.c_short, &k.server.public()) {
                assert_eq!(body.len(), WELCOME_LEN);
                let _ = open_cookie(&k.cookie_key, &cookie);
            }
        }
        if any || body.starts_with(b"\x08INITIATE") {
            if let Ok(outer) = parse_initiate(body) {
                if let Ok((cookie_c, _)) = open_cookie(&k.cookie_key, outer.cookie) {
                    let _ = cookie_c.ct_eq(&c);
                }
                let r = open_initiate(&outer, &srv_session, &c, &k.s_short, &k.server.public());
                if let Ok(init) = r {
                    // Only the holder of C's secret can vouch; the fuzzer cannot forge another.
                    assert_eq!(init.client, k.client.public());
                }
            }
        }
        if any || body.starts_with(b"\x05READY") {
            let _ = decode_ready(body, &session_box(&s, &k.c_short));
        }
        if any || body.starts_with(b"\x07MESSAGE") {
            let (rx, prefix, sealer) = if client_messages {
                (&mut client_rx, SERVER_PREFIX, session_box(&c, &k.s_short))
            } else {
                (&mut server_rx, CLIENT_PREFIX, session_box(&s, &k.c_short))
            };
            if let Ok(f) = rx.open(body) {
                let n = u64::from_be_bytes(body[8..16].try_into().expect("8 bytes"));
                let prev = if client_messages {
                    &mut last.1
                } else {
                    &mut last.0
                };
                assert!(n > *prev, "accepted nonces strictly increase");
                *prev = n;
                // Re-sealing the opened frame under the same nonce gives the input back (nobody
                // but the key holders can make a box, so every box that opens came from a seal).
                let flags = u8::from(f.more) | (u8::from(f.command) << 1);
                assert_eq!(sealed_body(&sealer, prefix, n, flags, &f.body), *body);
            }
        }
    }
}

/// One sealed MESSAGE body, made with RustCrypto's `SalsaBox` (NaCl `crypto_box` with the full
/// 24-byte nonce), independently of the codec's precomputed-subkey path it checks.
fn sealed_body(
    session: &zmesh_zmtp::curve::SalsaBox,
    prefix: &[u8; 16],
    n: u64,
    flags: u8,
    body: &[u8],
) -> Bytes {
    use crypto_box::aead::AeadInPlace;
    let mut nonce = crypto_box::Nonce::default();
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    let mut plain = vec![flags];
    plain.extend_from_slice(body);
    let tag = session
        .encrypt_in_place_detached(&nonce, b"", &mut plain)
        .expect("in-place encryption cannot fail");
    let mut out = BytesMut::new();
    out.extend_from_slice(b"\x07MESSAGE");
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&plain);
    out.freeze()
}

/// The raw server secret of [`Fixed`] (the key pair keeps it private; the fixed value is known).
fn server_secret(_k: &Fixed) -> [u8; 32] {
    [0x51; 32]
}

fn state_machine(bodies: &[&[u8]], client: bool) {
    let k = Fixed::new();
    let cfg = if client {
        CurveConfig::client(k.client.clone(), k.server.public())
    } else {
        CurveConfig::server(k.server.clone())
    };
    let mut mech = cfg.mechanism(!client);
    let own = Metadata::new().with("Socket-Type", "DEALER");
    if mech.start(&own, &Greeting::new("CURVE", client)).is_err() {
        return;
    }
    let mut done = false;
    for body in bodies {
        let body = Bytes::copy_from_slice(body);
        if !done {
            match mech.on_command(body) {
                Ok(step) => {
                    if step.peer_metadata.is_some() {
                        assert!(mech.peer_public_key().is_some(), "complete without a key");
                        done = true;
                    }
                }
                Err(_) => return,
            }
        } else if mech
            .decode_frame(Frame {
                more: false,
                command: false,
                body,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Seeds for the corpus: valid commands built with the fixed keys, in the input format.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let k = Fixed::new();
    let c = public_of(&k.c_short);
    let s = public_of(&k.s_short);
    let server_sk = SecretKey::from_bytes(server_secret(&k));
    let hello = encode_hello(&k.c_short, &k.server.public(), 1);
    let cookie = seal_cookie(&k.cookie_key, &[4; 16], &c, &k.s_short);
    let welcome = encode_welcome(&server_sk, &c, &[5; 16], &s, &cookie);
    let cli = session_box(&s, &k.c_short);
    let meta = Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", Bytes::from_static(b"\x01id"));
    let initiate = encode_initiate(
        &cookie,
        2,
        &cli,
        &k.client,
        &c,
        &k.server.public(),
        &s,
        &[6; 16],
        &meta,
    );
    let ready = encode_ready(
        1,
        &session_box(&c, &k.s_short),
        &Metadata::new().with("Socket-Type", "ROUTER"),
    );
    let srv = session_box(&c, &k.s_short);
    let m_c3 = sealed_body(&cli, CLIENT_PREFIX, 3, 1, b"hello");
    let m_c4 = sealed_body(&cli, CLIENT_PREFIX, 4, 0, &[0xAB; 300]);
    let m_s2 = sealed_body(&srv, SERVER_PREFIX, 2, 2, b"\x04PING\x00\x64");
    let cut = |mode: u8, bodies: &[&[u8]]| {
        let mut v = vec![mode];
        for b in bodies {
            v.extend_from_slice(&(b.len() as u16).to_be_bytes());
            v.extend_from_slice(b);
        }
        v
    };
    vec![
        (
            "codecs-handshake",
            cut(0, &[&hello, &welcome, &initiate, &ready]),
        ),
        ("codecs-messages-to-server", cut(0, &[&m_c3, &m_c4, &m_c3])),
        ("codecs-messages-to-client", cut(2, &[&m_s2, &m_s2])),
        (
            "server-hello-then-initiate",
            cut(1, &[&hello, &initiate, &m_c3]),
        ),
        ("client-welcome-ready", cut(3, &[&welcome, &ready, &m_s2])),
        ("server-error", cut(1, &[b"\x05ERROR\x03bad"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are not vacuous: in codec mode every handshake command and MESSAGE of the seeds
    /// opens with the fixed keys (so mutations start from inside the checks).
    #[test]
    fn seeds_open_with_the_fixed_keys() {
        let k = Fixed::new();
        let c = public_of(&k.c_short);
        let s = public_of(&k.s_short);
        let seeds = seeds();
        let get = |name: &str| seeds.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        let hs = get("codecs-handshake");
        let b = split(&hs[1..]);
        assert!(decode_hello(b[0], &SecretKey::from_bytes([0x51; 32])).is_ok());
        assert!(decode_welcome(b[1], &k.c_short, &k.server.public()).is_ok());
        let outer = parse_initiate(b[2]).unwrap();
        let srv = session_box(&c, &k.s_short);
        let init = open_initiate(&outer, &srv, &c, &k.s_short, &k.server.public()).unwrap();
        assert_eq!(init.client, k.client.public());
        assert!(decode_ready(b[3], &session_box(&s, &k.c_short)).is_ok());
        let ms = get("codecs-messages-to-server");
        let m = split(&ms[1..]);
        let mut rx = MessageCodec::new(&c, &k.s_short, true, 2, 2);
        assert!(rx.open(m[0]).is_ok() && rx.open(m[1]).is_ok());
        assert!(rx.open(m[2]).is_err(), "the third is a replay");
        for (_, data) in &seeds {
            curve_handshake_and_message(data);
        }
    }
}
