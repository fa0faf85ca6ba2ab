//! Codec tests: golden byte vectors written from the ZMTP 3.1 spec (RFC 37) and property tests.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use zmesh_zmtp::codec::check_greeting_prefix;
use zmesh_zmtp::{
    encode_frame, encode_frame_header, CodecError, Command, Frame, FrameDecoder, Greeting,
    HandshakeError, Metadata,
};

fn greeting_bytes(major: u8, minor: u8, mech: &str, server: bool) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0] = 0xFF;
    b[9] = 0x7F;
    b[10] = major;
    b[11] = minor;
    b[12..12 + mech.len()].copy_from_slice(mech.as_bytes());
    b[32] = server as u8;
    b
}

#[test]
fn greeting_golden() {
    let g = Greeting::new("NULL", false);
    let bytes = g.encode();
    // signature FF 00*8 7F, version 03 01, "NULL" + 16 NULs, as-server 00, 31 NUL filler.
    let mut want = vec![
        0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0x03, 0x01, b'N', b'U', b'L', b'L',
    ];
    want.extend_from_slice(&[0; 16]);
    want.push(0);
    want.extend_from_slice(&[0; 31]);
    assert_eq!(want.len(), 64);
    assert_eq!(&bytes[..], &want[..]);
    let back = Greeting::decode(&bytes).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.mechanism_name(), "NULL");
}

#[test]
fn greeting_accepts_3_0_refuses_2_and_garbage() {
    let g = Greeting::decode(&greeting_bytes(3, 0, "NULL", false)).unwrap();
    assert_eq!((g.major, g.minor), (3, 0));
    let g = Greeting::decode(&greeting_bytes(3, 1, "CURVE", true)).unwrap();
    assert_eq!(g.mechanism_name(), "CURVE");
    assert!(g.as_server);
    assert_eq!(
        Greeting::decode(&greeting_bytes(2, 0, "NULL", false)),
        Err(HandshakeError::UnsupportedVersion { major: 2, minor: 0 })
    );
    let mut bad = greeting_bytes(3, 1, "NULL", false);
    bad[0] = b'G';
    assert_eq!(Greeting::decode(&bad), Err(HandshakeError::BadSignature));
    let mut v1 = greeting_bytes(3, 1, "NULL", false);
    v1[9] = 0x7E; // ZMTP 1.0 style: low bit of octet 9 clear
    assert_eq!(Greeting::decode(&v1), Err(HandshakeError::BadSignature));
    // Prefix checks reject early.
    assert_eq!(
        check_greeting_prefix(b"GET / HTTP/1.1"),
        Err(HandshakeError::BadSignature)
    );
    assert!(check_greeting_prefix(&[0xFF, 0, 0]).is_ok());
    assert!(matches!(
        check_greeting_prefix(&greeting_bytes(1, 0, "", false)[..11]),
        Err(HandshakeError::UnsupportedVersion { major: 1, .. })
    ));
}

#[test]
fn short_frame_golden() {
    let mut out = BytesMut::new();
    encode_frame(false, false, b"hello", &mut out);
    assert_eq!(&out[..], b"\x00\x05hello");
    out.clear();
    encode_frame(true, false, b"hi", &mut out);
    assert_eq!(&out[..], b"\x01\x02hi");
    out.clear();
    encode_frame(false, true, b"", &mut out);
    assert_eq!(&out[..], b"\x04\x00");
    // 255 bytes is still short.
    out.clear();
    encode_frame(false, false, &[7u8; 255], &mut out);
    assert_eq!(&out[..2], &[0x00, 0xFF]);
    assert_eq!(out.len(), 257);
}

#[test]
fn long_frame_golden() {
    let body = vec![0xABu8; 256];
    let mut out = BytesMut::new();
    encode_frame(true, false, &body, &mut out);
    assert_eq!(&out[..9], &[0x03, 0, 0, 0, 0, 0, 0, 0x01, 0x00]);
    assert_eq!(&out[9..], &body[..]);
    out.clear();
    encode_frame_header(false, true, 70_000, &mut out);
    assert_eq!(&out[..], &[0x06, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
}

#[test]
fn decode_flags_and_long_small() {
    // A long-form frame carrying 3 bytes is legal and must decode.
    let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x00\x00\x00\x00\x03abc\x05\x01x\x04\x00"[..]);
    let mut d = FrameDecoder::new(1024);
    let f = d.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            more: false,
            command: false,
            body: Bytes::from_static(b"abc")
        }
    );
    let f = d.decode(&mut buf).unwrap().unwrap();
    assert!(f.more && f.command);
    assert_eq!(&f.body[..], b"x");
    let f = d.decode(&mut buf).unwrap().unwrap();
    assert!(!f.more && f.command && f.body.is_empty());
    assert_eq!(d.decode(&mut buf).unwrap(), None);
}

#[test]
fn decode_enforces_max_frame_from_header() {
    let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x00\x00\x10\x00\x00"[..]);
    let mut d = FrameDecoder::new(1024);
    assert_eq!(
        d.decode(&mut buf),
        Err(CodecError::FrameTooLarge {
            size: 0x100000,
            max: 1024
        })
    );
    let mut buf = BytesMut::from(&b"\x02\xff\xff\xff\xff\xff\xff\xff\xff"[..]);
    assert!(matches!(
        FrameDecoder::new(u32::MAX as usize).decode(&mut buf),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn ready_golden() {
    let meta = Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", Bytes::from_static(&[1, 2, 3]));
    let body = Command::Ready(meta.clone()).encode();
    let mut want = Vec::new();
    want.extend_from_slice(b"\x05READY");
    want.extend_from_slice(b"\x0bSocket-Type\x00\x00\x00\x06DEALER");
    want.extend_from_slice(b"\x08Identity\x00\x00\x00\x03\x01\x02\x03");
    assert_eq!(&body[..], &want[..]);
    let back = Command::decode(&body).unwrap();
    assert_eq!(back, Command::Ready(meta));
    if let Command::Ready(m) = back {
        assert_eq!(
            m.get("socket-type").unwrap(),
            &Bytes::from_static(b"DEALER")
        );
    }
    // As a frame: command flag, short size.
    let mut out = BytesMut::new();
    encode_frame(false, true, &body, &mut out);
    assert_eq!(out[0], 0x04);
    assert_eq!(out[1] as usize, want.len());
}

#[test]
fn ping_pong_error_golden() {
    let ping = Command::Ping {
        ttl_ds: 300,
        context: Bytes::from_static(b"ctx"),
    }
    .encode();
    assert_eq!(&ping[..], b"\x04PING\x01\x2cctx");
    assert_eq!(
        Command::decode(&ping).unwrap(),
        Command::Ping {
            ttl_ds: 300,
            context: Bytes::from_static(b"ctx")
        }
    );
    let pong = Command::Pong {
        context: Bytes::from_static(b"ctx"),
    }
    .encode();
    assert_eq!(&pong[..], b"\x04PONGctx");
    assert_eq!(
        Command::decode(&pong).unwrap(),
        Command::Pong {
            context: Bytes::from_static(b"ctx")
        }
    );
    let err = Command::Error("bad".into()).encode();
    assert_eq!(&err[..], b"\x05ERROR\x03bad");
    assert_eq!(Command::decode(&err).unwrap(), Command::Error("bad".into()));
    assert_eq!(
        Command::decode(b"\x04PING\x00"),
        Err(CodecError::Truncated("PING"))
    );
    assert_eq!(
        Command::decode(b"\x05ERROR\x09ab"),
        Err(CodecError::Truncated("ERROR reason"))
    );
    assert_eq!(
        Command::decode(b""),
        Err(CodecError::Truncated("command name"))
    );
    assert!(matches!(
        Command::decode(b"\x09SUBSCRIBEtopic").unwrap(),
        Command::Other { ref name, ref data } if name == "SUBSCRIBE" && &data[..] == b"topic"
    ));
}

#[test]
fn metadata_errors() {
    assert_eq!(
        Metadata::decode(b"\x00"),
        Err(CodecError::InvalidName("metadata"))
    );
    assert_eq!(
        Metadata::decode(b"\x04Name\x00\x00"),
        Err(CodecError::Truncated("metadata"))
    );
    assert_eq!(
        Metadata::decode(b"\x04Name\x00\x00\x00\x05ab"),
        Err(CodecError::Truncated("metadata value"))
    );
}

fn arb_frame() -> impl Strategy<Value = (bool, bool, Vec<u8>)> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..4),
        ],
    )
}

proptest! {
    #[test]
    fn frames_survive_arbitrary_splits(
        frames in prop::collection::vec(arb_frame(), 0..20),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        for (more, cmd, body) in &frames {
            encode_frame(*more, *cmd, body, &mut wire);
        }
        let wire = wire.freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            buf.extend_from_slice(&wire[w[0]..w[1]]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push((f.more, f.command, f.body.to_vec()));
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), max in 0usize..512) {
        let mut dec = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            prop_assert!(f.body.len() <= max);
        }
        let _ = Command::decode(&data);
        let _ = Metadata::decode(&data);
        let _ = check_greeting_prefix(&data);
        if data.len() >= 64 {
            let _ = Greeting::decode(data[..64].try_into().unwrap());
        }
    }

    /// The receive fast path agrees with the full decoder on any input: it either declines without
    /// consuming anything, or returns exactly the frame `decode` would (a final data frame).
    #[test]
    fn fast_path_agrees_with_decode(
        frames in prop::collection::vec(arb_frame(), 0..6),
        junk in prop::collection::vec(any::<u8>(), 0..40),
        cut in 0usize..2000,
        max in 0usize..512,
    ) {
        let mut wire = BytesMut::new();
        for (more, command, body) in &frames {
            zmesh_zmtp::encode_frame(*more, *command, body, &mut wire);
        }
        wire.extend_from_slice(&junk);
        let wire = wire.split_to(cut.min(wire.len()));
        let (mut fast_buf, mut slow_buf) = (wire.clone(), wire);
        let (mut fast, mut slow) = (FrameDecoder::new(max), FrameDecoder::new(max));
        loop {
            let before = fast_buf.len();
            match fast.decode_final_data(&mut fast_buf) {
                Some(body) => {
                    let f = slow.decode(&mut slow_buf).expect("fast path took a valid frame");
                    let f = f.expect("fast path took a complete frame");
                    prop_assert!(!f.more && !f.command);
                    prop_assert_eq!(body, f.body);
                    prop_assert_eq!(fast_buf.len(), slow_buf.len());
                }
                None => {
                    prop_assert_eq!(fast_buf.len(), before, "declining consumes nothing");
                    // Let the full decoder take the next frame on both sides.
                    match (fast.decode(&mut fast_buf), slow.decode(&mut slow_buf)) {
                        (Ok(Some(a)), Ok(Some(b))) => prop_assert_eq!(a, b),
                        (a, b) => {
                            prop_assert_eq!(a.is_err(), b.is_err());
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The two-frame fast path agrees with the full decoder on any input: it either declines
    /// without consuming anything, or returns exactly the two frames `decode` would (a data frame
    /// with MORE, then a final data frame) within the message limit.
    #[test]
    fn pair_fast_path_agrees_with_decode(
        frames in prop::collection::vec(arb_frame(), 0..6),
        junk in prop::collection::vec(any::<u8>(), 0..40),
        cut in 0usize..2000,
        max in 0usize..512,
        limit in 0usize..600,
    ) {
        let mut wire = BytesMut::new();
        for (more, command, body) in &frames {
            zmesh_zmtp::encode_frame(*more, *command, body, &mut wire);
        }
        wire.extend_from_slice(&junk);
        let wire = wire.split_to(cut.min(wire.len()));
        let (mut fast_buf, mut slow_buf) = (wire.clone(), wire);
        let (mut fast, mut slow) = (FrameDecoder::new(max), FrameDecoder::new(max));
        loop {
            let before = fast_buf.len();
            match fast.decode_data_pair(&mut fast_buf, limit) {
                Some([a, b]) => {
                    let f1 = slow.decode(&mut slow_buf).expect("valid").expect("complete");
                    let f2 = slow.decode(&mut slow_buf).expect("valid").expect("complete");
                    prop_assert!(f1.more && !f1.command && !f2.more && !f2.command);
                    prop_assert!(f1.body.len() + f2.body.len() + 64 <= limit + 32);
                    prop_assert_eq!(a, f1.body);
                    prop_assert_eq!(b, f2.body);
                    prop_assert_eq!(fast_buf.len(), slow_buf.len());
                }
                None => {
                    prop_assert_eq!(fast_buf.len(), before, "declining consumes nothing");
                    match (fast.decode(&mut fast_buf), slow.decode(&mut slow_buf)) {
                        (Ok(Some(a)), Ok(Some(b))) => prop_assert_eq!(a, b),
                        (a, b) => {
                            prop_assert_eq!(a.is_err(), b.is_err());
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The short-first-frame pair path takes exactly what the pair path takes, whenever the
    /// first frame is at most `SHORT_FIRST` bytes, hands it over as a copy, and otherwise
    /// declines without consuming anything.
    #[test]
    fn short_pair_agrees_with_pair(
        frames in prop::collection::vec(arb_frame(), 0..6),
        cut in 0usize..2000,
        max in 0usize..512,
        limit in 0usize..600,
    ) {
        use zmesh_zmtp::codec::SHORT_FIRST;
        let mut wire = BytesMut::new();
        for (more, command, body) in &frames {
            zmesh_zmtp::encode_frame(*more, *command, body, &mut wire);
        }
        let wire = wire.split_to(cut.min(wire.len()));
        let (mut short_buf, mut pair_buf) = (wire.clone(), wire);
        let (mut short, mut pair) = (FrameDecoder::new(max), FrameDecoder::new(max));
        let mut first = [0u8; SHORT_FIRST];
        let before = short_buf.len();
        match (
            short.decode_data_pair_short(&mut short_buf, limit, &mut first),
            pair.decode_data_pair(&mut pair_buf, limit),
        ) {
            (Some((n, body)), Some([a, b])) => {
                prop_assert_eq!(&first[..n], &a[..]);
                prop_assert_eq!(body, b);
                prop_assert_eq!(short_buf.len(), pair_buf.len());
            }
            (None, Some([a, _])) => {
                prop_assert!(a.len() > SHORT_FIRST);
                prop_assert_eq!(short_buf.len(), before, "declining consumes nothing");
            }
            (None, None) => prop_assert_eq!(short_buf.len(), before),
            (Some(_), None) => prop_assert!(false, "short path took what the pair path declines"),
        }
    }

    #[test]
    fn commands_roundtrip(name in "[A-Z]{1,12}", props in prop::collection::vec(("[A-Za-z-]{1,20}", prop::collection::vec(any::<u8>(), 0..40)), 0..5), ctx in prop::collection::vec(any::<u8>(), 0..=16), ttl in any::<u16>()) {
        let meta = Metadata(props.into_iter().map(|(n, v)| (n, Bytes::from(v))).collect());
        let c = Command::Ready(meta);
        prop_assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        let p = Command::Ping { ttl_ds: ttl, context: Bytes::from(ctx.clone()) };
        prop_assert_eq!(Command::decode(&p.encode()).unwrap(), p);
        if !["READY", "ERROR", "PING", "PONG"].contains(&name.as_str()) {
            let o = Command::Other { name, data: Bytes::from(ctx) };
            prop_assert_eq!(Command::decode(&o.encode()).unwrap(), o);
        }
    }
}

/// `frames!` (built from a whole inline buffer for one or two frames) makes the same vectors as
/// `smallvec!`, for any number of frames, with or without a trailing comma.
#[test]
fn frames_macro_builds_the_same_vectors() {
    use zmesh_zmtp::{frames, smallvec::smallvec, Frames};
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    let none: Frames = frames![];
    assert!(none.is_empty());
    let one: Frames = frames![b("a")];
    assert_eq!(one, smallvec![b("a")] as Frames);
    assert_eq!(one.len(), 1);
    assert!(!one.spilled());
    let two: Frames = frames![b("a"), b("b"),];
    assert_eq!(two, smallvec![b("a"), b("b")] as Frames);
    let three: Frames = frames![b("a"), b("b"), b("c")];
    assert_eq!(three.as_slice(), &[b("a"), b("b"), b("c")]);
    // A one-frame vector grows like any other.
    let mut grown = frames![b("a")];
    grown.push(b("b"));
    grown.push(b("c"));
    assert_eq!(grown, three);
}

/// Golden: a ZRE WHISPER as it arrives (ZRE frame with MORE, then the content) is taken whole by
/// the two-frame fast path; short, long and incomplete variants behave as documented.
#[test]
fn pair_fast_path_golden() {
    let mut dec = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(&[1u8, 6, 0xAA, 0xA1, 2, 2, 0, 1, 0, 2, b'h', b'i', 0xFF][..]);
    let [a, b] = dec.decode_data_pair(&mut buf, 1 << 20).expect("whole pair");
    assert_eq!(&a[..], &[0xAA, 0xA1, 2, 2, 0, 1]);
    assert_eq!(&b[..], b"hi");
    assert_eq!(&buf[..], &[0xFF], "only the pair is consumed");
    // Long second frame.
    let mut buf = BytesMut::from(&[1u8, 1, 7, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3][..]);
    let [a, b] = dec.decode_data_pair(&mut buf, 1 << 20).expect("long frame");
    assert_eq!((&a[..], &b[..]), (&[7u8][..], &[1u8, 2, 3][..]));
    assert!(buf.is_empty());
    // Incomplete second body, a single frame, a command, over the limit: declined, nothing eaten.
    for (bytes, limit) in [
        (&[1u8, 1, 7, 0, 3, 1, 2][..], 1 << 20),
        (&[0u8, 2, 1, 2][..], 1 << 20),
        (&[5u8, 1, 7, 0, 1, 1][..], 1 << 20),
        (&[1u8, 1, 7, 0, 1, 1][..], 30),
    ] {
        let mut buf = BytesMut::from(bytes);
        assert!(dec.decode_data_pair(&mut buf, limit).is_none(), "{bytes:?}");
        assert_eq!(&buf[..], bytes);
    }
}
