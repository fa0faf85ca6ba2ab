//! Codec tests: golden bytes, error cases, leniency and round-trip properties.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use uuid::Uuid;

/// The HELLO of docs/zre.md §4.5, 71 bytes.
const GOLDEN_HELLO: [u8; 71] = [
    0xAA, 0xA1, 0x01, 0x02, 0x00, 0x01, 0x18, 0x74, 0x63, 0x70, 0x3A, 0x2F, 0x2F, 0x31, 0x39, 0x32,
    0x2E, 0x31, 0x36, 0x38, 0x2E, 0x31, 0x2E, 0x31, 0x30, 0x3A, 0x34, 0x39, 0x31, 0x35, 0x32, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x43, 0x48, 0x41, 0x54, 0x01, 0x05, 0x6E, 0x6F, 0x64,
    0x65, 0x31, 0x00, 0x00, 0x00, 0x01, 0x07, 0x58, 0x2D, 0x48, 0x45, 0x4C, 0x4C, 0x4F, 0x00, 0x00,
    0x00, 0x05, 0x57, 0x6F, 0x72, 0x6C, 0x64,
];

fn golden_hello_msg() -> ZreMessage {
    ZreMessage::Hello {
        endpoint: "tcp://192.168.1.10:49152".into(),
        groups: vec!["CHAT".into()],
        status: 1,
        name: "node1".into(),
        headers: vec![("X-HELLO".into(), "World".into())],
    }
}

fn frames(v: &[&[u8]]) -> Frames {
    v.iter().map(|f| Bytes::copy_from_slice(f)).collect()
}

#[test]
fn golden_hello() {
    let m = golden_hello_msg();
    let enc = m.encode(1).unwrap();
    assert_eq!(enc.len(), 1);
    assert_eq!(&enc[0][..], &GOLDEN_HELLO[..]);
    assert_eq!(
        ZreMessage::decode(&frames(&[&GOLDEN_HELLO])).unwrap(),
        (1, m)
    );
}

#[test]
fn decode_owned_moves_content_and_agrees_with_decode() {
    let input = frames(&[&[0xAA, 0xA1, 0x02, 0x02, 0x00, 0x07], b"a", b"bc"]);
    let (seq, m) = ZreMessage::decode_owned(input.clone()).unwrap();
    assert_eq!((seq, &m), (7, &ZreMessage::decode(&input).unwrap().1));
    assert_eq!(
        m,
        ZreMessage::Whisper {
            content: frames(&[b"a", b"bc"]).into_iter().collect()
        }
    );
    assert_eq!(
        ZreMessage::decode_owned(vec![].into()),
        Err(WireError::NoFrames)
    );
    assert_eq!(
        ZreMessage::decode_owned(frames(&[&[0xAA, 0xA1, 6, 2, 0, 1], b"x"])),
        Err(WireError::UnexpectedFrames {
            name: "PING",
            count: 1
        })
    );
}

#[test]
fn header_arena_frames_stay_intact_across_blocks() {
    // Enough WHISPERs and SHOUTs to fill several arena blocks, half of them kept alive (so
    // blocks stay shared) and half dropped at once (so blocks get reclaimed in place).
    let content = vec![Bytes::from_static(b"x")];
    let mut kept = Vec::new();
    for i in 0..5_000u16 {
        let w = ZreMessage::Whisper {
            content: content.clone().into(),
        }
        .encode(i)
        .unwrap();
        let [hi, lo] = i.to_be_bytes();
        assert_eq!(&w[0][..], &[0xAA, 0xA1, 0x02, 0x02, hi, lo]);
        let s = ZreMessage::Shout {
            group: "G".repeat(usize::from(i % 256).min(255)),
            content: content.clone().into(),
        }
        .encode(i)
        .unwrap();
        assert_eq!(s[0].len(), 7 + usize::from(i % 256).min(255));
        if i % 2 == 0 {
            kept.push((i, w, s));
        }
    }
    for (i, w, s) in kept {
        let [hi, lo] = i.to_be_bytes();
        assert_eq!(&w[0][..], &[0xAA, 0xA1, 0x02, 0x02, hi, lo]);
        assert_eq!(ZreMessage::decode(&s).unwrap().0, i);
    }
}

#[test]
fn golden_whisper_shout_join_ping_pingok_goodbye() {
    let w = ZreMessage::Whisper {
        content: vec![Bytes::from_static(b"hi")].into(),
    };
    assert_eq!(
        w.encode(2).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x02, 0x02, 0x00, 0x02], b"hi"])
    );
    let s = ZreMessage::Shout {
        group: "CHAT".into(),
        content: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")].into(),
    };
    assert_eq!(
        s.encode(3).unwrap(),
        frames(&[
            &[0xAA, 0xA1, 0x03, 0x02, 0x00, 0x03, 0x04, 0x43, 0x48, 0x41, 0x54],
            b"a",
            b"bc"
        ])
    );
    let j = ZreMessage::Join {
        group: "OPS".into(),
        status: 2,
    };
    assert_eq!(
        j.encode(4).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x04, 0x02, 0x00, 0x04, 0x03, 0x4F, 0x50, 0x53, 0x02]])
    );
    assert_eq!(
        ZreMessage::Ping.encode(5).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x06, 0x02, 0x00, 0x05]])
    );
    assert_eq!(
        ZreMessage::PingOk.encode(0x1234).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x07, 0x02, 0x12, 0x34]])
    );
    assert_eq!(
        ZreMessage::Goodbye.encode(0xFFFF).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x0A, 0x02, 0xFF, 0xFF]])
    );
    for (m, seq) in [(w, 2), (s, 3), (j, 4)] {
        assert_eq!(
            ZreMessage::decode(&m.encode(seq).unwrap()).unwrap(),
            (seq, m)
        );
    }
}

#[test]
fn leave_elect_leader_layout() {
    let l = ZreMessage::Leave {
        group: "G".into(),
        status: 255,
    };
    assert_eq!(
        l.encode(7).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x05, 0x02, 0x00, 0x07, 0x01, b'G', 0xFF]])
    );
    let e = ZreMessage::Elect {
        group: "G".into(),
        challenger: "AB".into(),
    };
    assert_eq!(
        e.encode(1).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x08, 0x02, 0x00, 0x01, 0x01, b'G', 0x02, b'A', b'B']])
    );
    let d = ZreMessage::Leader {
        group: "G".into(),
        leader: "C".into(),
    };
    assert_eq!(
        d.encode(1).unwrap(),
        frames(&[&[0xAA, 0xA1, 0x09, 0x02, 0x00, 0x01, 0x01, b'G', 0x01, b'C']])
    );
}

#[test]
fn names_and_ids() {
    assert_eq!(ZreMessage::PingOk.name(), "PING-OK");
    assert_eq!(ZreMessage::Goodbye.id(), 10);
    assert_eq!(golden_hello_msg().name(), "HELLO");
    assert_eq!(id_name(0), "UNKNOWN");
}

#[test]
fn duplicate_header_keeps_first() {
    let m = ZreMessage::Hello {
        endpoint: "e".into(),
        groups: vec![],
        status: 0,
        name: "n".into(),
        headers: vec![
            ("K".into(), "first".into()),
            ("K".into(), "second".into()),
            ("L".into(), "x".into()),
        ],
    };
    let (_, d) = ZreMessage::decode(&m.encode(1).unwrap()).unwrap();
    match d {
        ZreMessage::Hello { headers, .. } => assert_eq!(
            headers,
            vec![("K".into(), "first".into()), ("L".into(), "x".into())]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_utf8_is_decoded_lossily() {
    let f = [0xAA, 0xA1, 0x04, 0x02, 0x00, 0x04, 0x02, 0xC3, 0x28, 0x01];
    let (_, m) = ZreMessage::decode(&frames(&[&f])).unwrap();
    assert_eq!(
        m,
        ZreMessage::Join {
            group: "\u{FFFD}(".into(),
            status: 1
        }
    );
}

#[test]
fn encode_errors() {
    let long = "x".repeat(256);
    assert_eq!(
        ZreMessage::Join {
            group: long.clone(),
            status: 1
        }
        .encode(1),
        Err(WireError::StringTooLong {
            field: "group",
            len: 256
        })
    );
    assert!(ZreMessage::Join {
        group: "x".repeat(255),
        status: 1
    }
    .encode(1)
    .is_ok());
    assert_eq!(
        ZreMessage::Whisper {
            content: vec![].into()
        }
        .encode(1),
        Err(WireError::EmptyContent)
    );
    assert_eq!(
        ZreMessage::Shout {
            group: "g".into(),
            content: vec![].into()
        }
        .encode(1),
        Err(WireError::EmptyContent)
    );
    let mut h = golden_hello_msg();
    if let ZreMessage::Hello { headers, .. } = &mut h {
        headers.push((long, "v".into()));
    }
    assert!(matches!(
        h.encode(1),
        Err(WireError::StringTooLong {
            field: "header key",
            ..
        })
    ));
}

#[test]
fn decode_errors() {
    assert_eq!(ZreMessage::decode(&[]), Err(WireError::NoFrames));
    assert_eq!(
        ZreMessage::decode(&frames(&[&[0xAA, 0xA0, 6, 2, 0, 1]])),
        Err(WireError::BadSignature(0xAAA0))
    );
    assert_eq!(
        ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 6, 3, 0, 1]])),
        Err(WireError::BadVersion(3))
    );
    assert_eq!(
        ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 11, 2, 0, 1]])),
        Err(WireError::UnknownId(11))
    );
    assert_eq!(
        ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 6, 2, 0]])),
        Err(WireError::Truncated("sequence"))
    );
    assert_eq!(
        ZreMessage::decode(&frames(&[&GOLDEN_HELLO[..70]])),
        Err(WireError::Truncated("header value"))
    );
    assert_eq!(
        ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 6, 2, 0, 1], b"x"])),
        Err(WireError::UnexpectedFrames {
            name: "PING",
            count: 1
        })
    );
    // A huge group count with no data must fail fast, not allocate.
    let f = [0xAA, 0xA1, 1, 2, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        ZreMessage::decode(&frames(&[&f])),
        Err(WireError::Truncated("group"))
    );
}

#[test]
fn lenient_like_c() {
    // Trailing bytes after the last field are ignored.
    let (seq, m) = ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 6, 2, 0, 9, 1, 2, 3]])).unwrap();
    assert_eq!((seq, m), (9, ZreMessage::Ping));
    // A WHISPER without content decodes with empty content.
    let (_, m) = ZreMessage::decode(&frames(&[&[0xAA, 0xA1, 2, 2, 0, 2]])).unwrap();
    assert_eq!(
        m,
        ZreMessage::Whisper {
            content: vec![].into()
        }
    );
}

#[test]
fn content_frames_are_zero_copy() {
    let payload = Bytes::from(vec![7u8; 1000]);
    let input = vec![
        Bytes::from_static(&[0xAA, 0xA1, 2, 2, 0, 2]),
        payload.clone(),
    ];
    let (_, m) = ZreMessage::decode(&input).unwrap();
    match m {
        ZreMessage::Whisper { content } => assert_eq!(content[0].as_ptr(), payload.as_ptr()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn uuid_strings() {
    let u = Uuid::from_u128(0x3A07FC75400A5B36F319333FA8492A52);
    assert_eq!(uuid_to_string(&u), "3A07FC75400A5B36F319333FA8492A52");
    assert_eq!(uuid_from_str("3a07fc75400a5b36f319333fa8492a52"), Some(u));
    assert_eq!(
        uuid_from_str("3A07FC75-400A-5B36-F319-333FA8492A52"),
        Some(u)
    );
    assert_eq!(uuid_from_str("3A07FC75"), None);
    assert_eq!(
        uuid_from_str("{3A07FC75-400A-5B36-F319-333FA8492A52}"),
        None
    );
    assert_eq!(uuid_from_str("zz07FC75400A5B36F319333FA8492A52"), None);
}

// ---- property tests

fn s255() -> impl Strategy<Value = String> {
    // Up to 63 chars of up to 4 bytes each: always <= 255 bytes.
    "\\PC{0,63}"
}

fn content() -> impl Strategy<Value = Vec<Bytes>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..4)
        .prop_map(|v| v.into_iter().map(Bytes::from).collect())
}

fn message() -> impl Strategy<Value = ZreMessage> {
    prop_oneof![
        (
            s255(),
            proptest::collection::vec("\\PC{0,80}", 0..5),
            any::<u8>(),
            s255(),
            proptest::collection::btree_map(s255(), "\\PC{0,80}", 0..5)
        )
            .prop_map(|(endpoint, groups, status, name, headers)| {
                ZreMessage::Hello {
                    endpoint,
                    groups,
                    status,
                    name,
                    headers: headers.into_iter().collect(),
                }
            }),
        content().prop_map(|content| ZreMessage::Whisper {
            content: content.into()
        }),
        (s255(), content()).prop_map(|(group, content)| ZreMessage::Shout {
            group,
            content: content.into()
        }),
        (s255(), any::<u8>()).prop_map(|(group, status)| ZreMessage::Join { group, status }),
        (s255(), any::<u8>()).prop_map(|(group, status)| ZreMessage::Leave { group, status }),
        Just(ZreMessage::Ping),
        Just(ZreMessage::PingOk),
        (s255(), s255()).prop_map(|(group, challenger)| ZreMessage::Elect { group, challenger }),
        (s255(), s255()).prop_map(|(group, leader)| ZreMessage::Leader { group, leader }),
        Just(ZreMessage::Goodbye),
    ]
}

proptest! {
    #[test]
    fn round_trip(m in message(), seq in any::<u16>()) {
        let frames = m.encode(seq).unwrap();
        prop_assert_eq!(ZreMessage::decode(&frames).unwrap(), (seq, m));
    }

    #[test]
    fn arbitrary_frames_never_panic(
        fs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4)
    ) {
        let fs: Vec<Bytes> = fs.into_iter().map(Bytes::from).collect();
        let _ = ZreMessage::decode(&fs);
    }

    #[test]
    fn valid_header_then_garbage_never_panics(
        id in 0u8..12,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        extra in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..3)
    ) {
        let mut first = vec![0xAA, 0xA1, id, 0x02, 0x00, 0x01];
        first.extend_from_slice(&body);
        let mut fs = vec![Bytes::from(first)];
        fs.extend(extra.into_iter().map(Bytes::from));
        if let Ok((seq, m)) = ZreMessage::decode(&fs) {
            prop_assert_eq!(seq, 1);
            prop_assert_eq!(m.id(), id);
        }
    }

    #[test]
    fn truncations_of_valid_messages_never_panic(m in message(), cut in any::<prop::sample::Index>()) {
        let mut frames = m.encode(1).unwrap();
        let n = cut.index(frames[0].len() + 1);
        frames[0] = frames[0].slice(..n);
        let _ = ZreMessage::decode(&frames);
    }
}
