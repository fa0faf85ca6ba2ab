//! CURVE codecs against golden vectors computed by libsodium (the library libzmq uses), plus
//! property tests: round trips, and bad input (truncation, flipped bits, replays, bad version,
//! a vouch that does not match) giving typed errors and never a panic.
//!
//! The vectors come from `interop/libzmq/curve_vectors.py` (libsodium through ctypes, fixed keys
//! and nonces): the same bytes libzmq would put on the wire for the same keys and nonces.

use bytes::BytesMut;
use proptest::prelude::*;
use zmesh_zmtp::codec::Metadata;
use zmesh_zmtp::curve::handshake::{self, *};
use zmesh_zmtp::curve::message::{self, *};
use zmesh_zmtp::curve::{CurveError, CurveKeyPair, CurvePublicKey, MessageCodec, SecretKey};

const HELLO: &str = "0548454c4c4f0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a20900000000000000018373e6339d1671fc8c8e1bd8896fa8eb3caa99ee23ab921111a41f4bdd6ec09729dd00c5951d9619a1586b75e93f5b2180c86e7866a061a6ec676f7819da3d9c68b56b80edc36981cab1b7ef50882957";
const COOKIE: &str = "040404040404040404040404040404043e56d7cf4621f1839953b91c0b44147c6850c24436159066ea9285a92df8c356331f0ae55d3587fb2f9ef1f2fef49c58a691523909ea9ac49661f41507748f2da030c13d89c6bc7445d138788811fd79";
const WELCOME: &str = "0757454c434f4d45050505050505050505050505050505052500727df2e7a7107629f58ea4f0a14034128dcd96f514e3966446ac3a9dd2b59781b9ac17487811a52e617be69f04ac3d9e06b060bda092b5a0d93cc0be7832d754a3e0e4682ef624915370afc3ff8d71554024833e1921a66307cdff2468bf383d60e12230059d44588c7c9484c4d44e51456a5ef6e5374ae72321013c784df4f779b0ed2d727f6d4bc5267ba23dc4";
const INITIATE: &str = "08494e495449415445040404040404040404040404040404043e56d7cf4621f1839953b91c0b44147c6850c24436159066ea9285a92df8c356331f0ae55d3587fb2f9ef1f2fef49c58a691523909ea9ac49661f41507748f2da030c13d89c6bc7445d138788811fd790000000000000002606d733cd076097deb4e85eb28457df05d0d6412f78edb8a330ea01a031b62ba262a7983e1b3d89971a4c8787979010df3263a14b8e1bada606f174139e99aa3b75ff83d18993cb5f7ae4ac5e86f0d9dbff852b94e885189ee272c6165741b1444de431df53c6b7e9d41e64c3598952880dbad50127d1be101d38aaff5dffa7d5221e0bc54dbc790db50959d21dd670783bf8e3e81bf46b9cb4b7b101983b59d33fe504dfa2d6ecdc1d5679ee15c7b7bf731938882773e";
const READY: &str = "0552454144590000000000000001aa4c723678c71dfe6f3bc26813dc46cf8c8523db54e3e1ea33d4794898e5721f7fec0a9e7d43";
const MESSAGE_C3: &str =
    "074d4553534147450000000000000003b81f7717989162c7f0a156bb639ed3995eee9c50a189";
const MESSAGE_S2: &str =
    "074d45535341474500000000000000021a60c8ac0996e50a92f6c99b2c9014b329967b080629a5a3";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Keys {
    server: CurveKeyPair,
    client: CurveKeyPair,
    c_short: SecretKey,
    s_short: SecretKey,
}

fn keys() -> Keys {
    Keys {
        server: CurveKeyPair::from_secret_z85("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6").unwrap(),
        client: CurveKeyPair::from_secret_z85("D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs").unwrap(),
        c_short: SecretKey::from_bytes([1; 32]),
        s_short: SecretKey::from_bytes([2; 32]),
    }
}

/// The server's long-term secret key as the pure codecs take it (its Z85 text decodes like a
/// public key's: 40 characters, 32 bytes).
fn server_secret(k: &Keys) -> SecretKey {
    let raw = CurvePublicKey::from_z85("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6").unwrap();
    let sk = SecretKey::from_bytes(*raw.as_bytes());
    assert_eq!(sk.public_key().as_bytes(), k.server.public().as_bytes());
    sk
}

fn client_meta() -> Metadata {
    Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", &b"\x01abc"[..])
}

#[test]
fn key_pairs_match_libsodium() {
    let k = keys();
    assert_eq!(
        k.server.public().to_z85(),
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    );
    assert_eq!(
        k.client.public().to_z85(),
        "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    );
}

#[test]
fn hello_golden() {
    let k = keys();
    let hello = encode_hello(&k.c_short, &k.server.public(), 1);
    assert_eq!(hello.as_ref(), unhex(HELLO));
    let h = decode_hello(&hello, &server_secret(&k)).unwrap();
    assert_eq!(h.client_short, public_of(&k.c_short));
    assert_eq!(h.short_nonce, 1);
}

#[test]
fn cookie_and_welcome_golden() {
    let k = keys();
    let c = public_of(&k.c_short);
    let cookie = seal_cookie(&[3; 32], &[4; 16], &c, &k.s_short);
    assert_eq!(cookie.as_ref(), unhex(COOKIE));
    let (c2, s2) = open_cookie(&[3; 32], &cookie).unwrap();
    assert_eq!((c2, *s2), (c, k.s_short.to_bytes()));
    assert_eq!(
        open_cookie(&[9; 32], &cookie).unwrap_err(),
        CurveError::BadBox("cookie")
    );
    let welcome = encode_welcome(
        &server_secret(&k),
        &c,
        &[5; 16],
        &public_of(&k.s_short),
        &cookie,
    );
    assert_eq!(welcome.as_ref(), unhex(WELCOME));
    let (s, ck) = decode_welcome(&welcome, &k.c_short, &k.server.public()).unwrap();
    assert_eq!((s, ck), (public_of(&k.s_short), cookie));
}

#[test]
fn initiate_golden_and_vouch() {
    let k = keys();
    let (c, s) = (public_of(&k.c_short), public_of(&k.s_short));
    let cookie: [u8; 96] = unhex(COOKIE).try_into().unwrap();
    let client_session = session_box(&s, &k.c_short);
    let init = encode_initiate(
        &cookie,
        2,
        &client_session,
        &k.client,
        &c,
        &k.server.public(),
        &s,
        &[6; 16],
        &client_meta(),
    );
    assert_eq!(init.as_ref(), unhex(INITIATE));
    let outer = parse_initiate(&init).unwrap();
    assert_eq!((outer.cookie, outer.short_nonce), (&cookie[..], 2));
    let server_session = session_box(&c, &k.s_short);
    let opened =
        open_initiate(&outer, &server_session, &c, &k.s_short, &k.server.public()).unwrap();
    assert_eq!(opened.client, k.client.public());
    assert_eq!(opened.metadata, client_meta());

    // A vouch for another server key (or another short-term key) does not match.
    let other = CurveKeyPair::generate().public();
    let bad = encode_initiate(
        &cookie,
        2,
        &client_session,
        &k.client,
        &c,
        &other,
        &s,
        &[6; 16],
        &client_meta(),
    );
    let outer = parse_initiate(&bad).unwrap();
    assert_eq!(
        open_initiate(&outer, &server_session, &c, &k.s_short, &k.server.public()).unwrap_err(),
        CurveError::VouchMismatch
    );
    let bad = encode_initiate(
        &cookie,
        2,
        &client_session,
        &k.client,
        &other,
        &k.server.public(),
        &s,
        &[6; 16],
        &client_meta(),
    );
    let outer = parse_initiate(&bad).unwrap();
    assert_eq!(
        open_initiate(&outer, &server_session, &c, &k.s_short, &k.server.public()).unwrap_err(),
        CurveError::VouchMismatch
    );
}

#[test]
fn ready_golden() {
    let k = keys();
    let (c, s) = (public_of(&k.c_short), public_of(&k.s_short));
    let meta = Metadata::new().with("Socket-Type", "ROUTER");
    let ready = encode_ready(1, &session_box(&c, &k.s_short), &meta);
    assert_eq!(ready.as_ref(), unhex(READY));
    assert_eq!(
        decode_ready(&ready, &session_box(&s, &k.c_short)).unwrap(),
        (1, meta)
    );
}

#[test]
fn message_golden_both_directions() {
    let k = keys();
    let (c, s) = (public_of(&k.c_short), public_of(&k.s_short));
    let mut out = BytesMut::new();
    seal_message(
        &DirectionKey::new(&s, &k.c_short, CLIENT_PREFIX),
        3,
        INNER_MORE,
        b"hello",
        &mut out,
    );
    let want = unhex(MESSAGE_C3);
    assert_eq!(
        &out[..2],
        &[0x00, want.len() as u8],
        "outer frame: no flags, short size"
    );
    assert_eq!(&out[2..], &want[..]);
    let mut server = MessageCodec::new(&c, &k.s_short, true, 2, 2);
    let f = server.open(&want).unwrap();
    assert!(f.more && !f.command);
    assert_eq!(&f.body[..], b"hello");
    // The same MESSAGE again is a replay.
    assert_eq!(
        server.open(&want).unwrap_err(),
        CurveError::NonceReplay { last: 3, got: 3 }
    );

    let mut client = MessageCodec::new(&s, &k.c_short, false, 3, 1);
    let f = client.open(&unhex(MESSAGE_S2)).unwrap();
    assert!(f.command && !f.more);
    assert_eq!(&f.body[..], b"\x04PING\x00\x64");
}

#[test]
fn hello_with_bad_version_or_size_or_box_is_refused() {
    let k = keys();
    let hello = unhex(HELLO);
    let mut bad = hello.clone();
    bad[6] = 2;
    assert_eq!(
        decode_hello(&bad, &server_secret(&k)).unwrap_err(),
        CurveError::BadVersion { major: 2, minor: 0 }
    );
    assert!(matches!(
        decode_hello(&hello[..199], &server_secret(&k)).unwrap_err(),
        CurveError::WrongSize {
            command: "HELLO",
            expected: 200,
            got: 199
        }
    ));
    // A HELLO for another server does not open.
    let other = SecretKey::from_bytes([7; 32]);
    assert_eq!(
        decode_hello(&hello, &other).unwrap_err(),
        CurveError::BadBox("HELLO")
    );
}

#[test]
fn every_truncation_of_every_command_is_a_typed_error() {
    let k = keys();
    let (c, s) = (public_of(&k.c_short), public_of(&k.s_short));
    let srv = session_box(&c, &k.s_short);
    let cli = session_box(&s, &k.c_short);
    let hello = unhex(HELLO);
    let welcome = unhex(WELCOME);
    let init = unhex(INITIATE);
    let ready = unhex(READY);
    let msg = unhex(MESSAGE_C3);
    for n in 0..hello.len() {
        assert!(decode_hello(&hello[..n], &server_secret(&k)).is_err());
    }
    for n in 0..welcome.len() {
        assert!(decode_welcome(&welcome[..n], &k.c_short, &k.server.public()).is_err());
    }
    for n in 0..init.len() {
        let r = parse_initiate(&init[..n])
            .and_then(|o| open_initiate(&o, &srv, &c, &k.s_short, &k.server.public()));
        assert!(r.is_err(), "INITIATE truncated to {n}");
    }
    for n in 0..ready.len() {
        assert!(decode_ready(&ready[..n], &cli).is_err());
    }
    for n in 0..msg.len() {
        let mut server = MessageCodec::new(&c, &k.s_short, true, 2, 2);
        assert!(server.open(&msg[..n]).is_err());
    }
}

#[test]
fn every_flipped_bit_in_a_box_is_refused() {
    let k = keys();
    let (c, s) = (public_of(&k.c_short), public_of(&k.s_short));
    let msg = unhex(MESSAGE_C3);
    for bit in 0..msg.len() * 8 {
        let mut m = msg.clone();
        m[bit / 8] ^= 1 << (bit % 8);
        let mut server = MessageCodec::new(&c, &k.s_short, true, 2, 2);
        assert!(server.open(&m).is_err(), "bit {bit} flipped yet opened");
    }
    let ready = unhex(READY);
    let cli = session_box(&s, &k.c_short);
    for bit in 14 * 8..ready.len() * 8 {
        let mut m = ready.clone();
        m[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            decode_ready(&m, &cli).unwrap_err(),
            CurveError::BadBox("READY")
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any frame sealed by one side opens on the other, in order, with its flags.
    #[test]
    fn seal_open_round_trip(frames in proptest::collection::vec(
        (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)), 1..8)) {
        let a = SecretKey::from_bytes([11; 32]);
        let b = SecretKey::from_bytes([12; 32]);
        let mut client = MessageCodec::new(&public_of(&b), &a, false, 3, 1);
        let mut server = MessageCodec::new(&public_of(&a), &b, true, 2, 2);
        let mut wire = BytesMut::new();
        for (more, command, body) in &frames {
            client.seal_into(*more, *command, body, &mut wire).unwrap();
        }
        let mut dec = zmesh_zmtp::FrameDecoder::new(1 << 20);
        for (more, command, body) in &frames {
            let outer = dec.decode(&mut wire).unwrap().unwrap();
            prop_assert!(!outer.more && !outer.command);
            prop_assert_eq!(outer.body.len(), body.len() + message::MESSAGE_OVERHEAD);
            let f = server.open(&outer.body).unwrap();
            prop_assert_eq!((f.more, f.command, &f.body[..]), (*more, *command, &body[..]));
        }
        prop_assert!(wire.is_empty());
    }

    /// Random bytes given to every decoder give an error or a value, never a panic.
    #[test]
    fn decoders_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), prefix in 0usize..5) {
        let names: [&[u8]; 5] = [b"\x05HELLO", b"\x07WELCOME", b"\x08INITIATE", b"\x05READY", b"\x07MESSAGE"];
        let mut b = names[prefix].to_vec();
        b.extend_from_slice(&body);
        let k = keys();
        let srv = session_box(&public_of(&k.c_short), &k.s_short);
        let _ = decode_hello(&b, &server_secret(&k));
        let _ = decode_welcome(&b, &k.c_short, &k.server.public());
        if let Ok(o) = parse_initiate(&b) {
            let _ = open_initiate(&o, &srv, &public_of(&k.c_short), &k.s_short, &k.server.public());
        }
        let _ = decode_ready(&b, &srv);
        let _ = open_cookie(&[3; 32], &b);
        let mut m = MessageCodec::new(&public_of(&k.c_short), &k.s_short, true, 2, 2);
        let _ = m.open(&b);
        let _ = handshake::HELLO_LEN;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The codec's precomputed direction key (HSalsa20 once per connection) seals exactly what
    /// NaCl's `crypto_box` (RustCrypto's `SalsaBox`, the whole 24-byte nonce each time) seals, for
    /// any keys, nonce and body, in both directions; and opens it.
    #[test]
    fn direction_key_equals_crypto_box(
        a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), n in any::<u64>(), server in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..300)) {
        use crypto_box::aead::AeadInPlace;
        let (a, b) = (SecretKey::from_bytes(a), SecretKey::from_bytes(b));
        let prefix = if server { SERVER_PREFIX } else { CLIENT_PREFIX };
        let mut nonce = crypto_box::Nonce::default();
        nonce[..16].copy_from_slice(prefix);
        nonce[16..].copy_from_slice(&n.to_be_bytes());
        let mut want = body.clone();
        let want_tag = session_box(&public_of(&b), &a)
            .encrypt_in_place_detached(&nonce, b"", &mut want)
            .unwrap();
        let mut got = body.clone();
        let tag = DirectionKey::new(&public_of(&b), &a, prefix).seal_in_place(n, &mut got);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&tag[..], &want_tag[..]);
        // The other side (its own secret, our public key) opens it.
        DirectionKey::new(&public_of(&a), &b, prefix).open_in_place(n, &mut got, &tag).unwrap();
        prop_assert_eq!(got, body);
    }
}
