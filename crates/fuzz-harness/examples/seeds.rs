//! Writes hand-made seed inputs for the fuzz targets into `<dir>/<target>/seed-*`
//! (default `fuzz/corpus`): valid beacons, every ZRE message in the harness's frame-cutting
//! scheme, ZMTP frame streams, greetings with handshake commands. libFuzzer then mutates from
//! well-formed inputs instead of having to discover signatures like `ZRE` or `AA A1` by itself.
//!
//! ```text
//! cargo run -p zmesh-fuzz-harness --example seeds -- fuzz/corpus
//! ```

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use zmesh_core::envelope::{Envelope, Layer};
use zmesh_core::reqrep::wire::{self, ErrorBody, ErrorClass};
use zmesh_fuzz_harness::script::{encode, CapsChoice, Corr, EnvSpec, LayerStep};
use zmesh_zmtp::{encode_frame, Command, Greeting, Metadata};
use zmesh_zre::{Beacon, Uuid, ZreMessage};

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus dir");
    fs::write(d.join(format!("seed-{name}")), data).expect("write seed");
}

/// Encodes frames in the `split_frames` scheme of `zre_message_decode`.
fn cut(frames: &[Bytes]) -> Vec<u8> {
    let mut out = vec![(frames.len() - 1) as u8];
    for (i, f) in frames.iter().enumerate() {
        if i + 1 < frames.len() {
            out.push(f.len().min(255) as u8);
            out.extend_from_slice(&f[..f.len().min(255)]);
        } else {
            out.extend_from_slice(f);
        }
    }
    out
}

fn main() {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let dir = Path::new(&arg);
    let uuid = Uuid::from_u128(0x3A07FC75400A5B36F319333FA8492A52);

    write(
        dir,
        "beacon_decode",
        "v1",
        &Beacon::v1(uuid, 49152).encode(),
    );
    write(
        dir,
        "beacon_decode",
        "v1-leaving",
        &Beacon::v1(uuid, 0).encode(),
    );
    write(
        dir,
        "beacon_decode",
        "v3",
        &Beacon::v3(uuid, 5670, [7; 32]).encode(),
    );

    let content = vec![Bytes::from_static(b"hello"), Bytes::from_static(b"world")];
    let msgs = [
        ZreMessage::Hello {
            endpoint: "tcp://127.0.0.1:5670".into(),
            groups: vec!["GLOBAL".into(), "chat".into()],
            status: 2,
            name: "peer".into(),
            headers: vec![("X-ZMESH".into(), "1".into()), ("X-A".into(), "b".into())],
        },
        ZreMessage::Whisper {
            content: content.clone().into(),
        },
        ZreMessage::Shout {
            group: "chat".into(),
            content: content.into(),
        },
        ZreMessage::Join {
            group: "chat".into(),
            status: 3,
        },
        ZreMessage::Leave {
            group: "chat".into(),
            status: 4,
        },
        ZreMessage::Ping,
        ZreMessage::PingOk,
        ZreMessage::Elect {
            group: "chat".into(),
            challenger: uuid.simple().to_string().to_uppercase(),
        },
        ZreMessage::Leader {
            group: "chat".into(),
            leader: uuid.simple().to_string().to_uppercase(),
        },
        ZreMessage::Goodbye,
    ];
    for (i, m) in msgs.iter().enumerate() {
        let frames = m.encode(i as u16 + 1).expect("encodable");
        write(dir, "zre_message_decode", m.name(), &cut(&frames));
    }

    // Frame streams: max_frame 0x1000, read pattern 1/7/0/64, a short, a long and a command frame.
    let mut stream = vec![0x10, 0x00, 1, 7, 0, 64];
    let mut b = BytesMut::new();
    encode_frame(true, false, b"", &mut b);
    encode_frame(true, false, &[0xAA; 300], &mut b);
    encode_frame(false, false, b"last", &mut b);
    encode_frame(
        false,
        true,
        &Command::Ready(Metadata::new()).encode(),
        &mut b,
    );
    stream.extend_from_slice(&b);
    write(dir, "zmtp_frame_decode", "mixed", &stream);

    // Greeting (mode bit 0) + handshake commands, each behind a length byte.
    let mut g = vec![0x01];
    g.extend_from_slice(&Greeting::new("NULL", false).encode());
    let cmds = [
        Command::Ready(
            Metadata::new()
                .with("Socket-Type", "DEALER")
                .with("Identity", Bytes::from_static(&[1, 2, 3])),
        ),
        Command::Error("go away".into()),
        Command::Ping {
            ttl_ds: 100,
            context: Bytes::from_static(b"ctx"),
        },
        Command::Pong {
            context: Bytes::from_static(b"ctx"),
        },
        Command::Other {
            name: "SUBSCRIBE".into(),
            data: Bytes::from_static(b"topic"),
        },
    ];
    for c in &cmds {
        let body = c.encode();
        g.push(body.len() as u8);
        g.extend_from_slice(&body);
    }
    write(
        dir,
        "zmtp_greeting_and_command_decode",
        "null-handshake",
        &g,
    );
    let mut g30 = vec![0x03];
    let mut greeting = Greeting::new("CURVE", true).encode();
    greeting[11] = 0;
    g30.extend_from_slice(&greeting);
    write(
        dir,
        "zmtp_greeting_and_command_decode",
        "zmtp30-curve",
        &g30,
    );

    // CURVE: valid handshake commands and MESSAGEs built with the harness's fixed keys.
    for (name, data) in zmesh_fuzz_harness::curve::seeds() {
        write(dir, "curve_handshake_and_message", name, &data);
    }
    layer_seeds(dir);
    routing_seeds(dir);
    events_seeds(dir);
}

/// `events_decode`: SUBS payloads (mode byte 0) and a CREDIT (mode byte 1).
fn events_seeds(dir: &Path) {
    use zmesh_core::events::{wire, Sub, Subs};
    use zmesh_core::pattern::Pattern;
    let sub = |p: &str, retained, flow| Sub {
        pattern: Pattern::parse(p).unwrap(),
        retained,
        flow,
    };
    let full = Subs {
        version: 9,
        window: 1024,
        patterns: vec![
            sub("s.*", true, false),
            sub("**", false, true),
            sub("a.**.z", true, true),
        ],
    };
    for (name, s) in [("subs-empty", Subs::default()), ("subs-full", full)] {
        let mut b = vec![0u8];
        b.extend_from_slice(&s.encode());
        write(dir, "events_decode", name, &b);
    }
    let mut b = vec![1u8];
    b.extend_from_slice(&wire::encode_credit(4096));
    write(dir, "events_decode", "credit", &b);
}

/// `routing_decode`: STATE payloads (mode byte 0) and target texts (mode byte 1).
fn routing_seeds(dir: &Path) {
    use zmesh_core::control::State;
    use zmesh_core::pattern::Pattern;
    let full = State {
        version: 7,
        options: [
            ("role".to_owned(), "sensor".to_owned()),
            ("zone".to_owned(), "eu-west".to_owned()),
        ]
        .into(),
        requests: vec![
            Pattern::parse("sensor.*").unwrap(),
            Pattern::parse("**").unwrap(),
        ],
        ticks: vec![Pattern::parse("t.**.x").unwrap()],
    };
    for (name, state) in [("state-empty", State::default()), ("state-full", full)] {
        let mut b = vec![0u8];
        b.extend_from_slice(&state.encode());
        write(dir, "routing_decode", name, &b);
    }
    for (name, text) in [
        ("any", "any"),
        ("all-filter", "all:role=sensor,zone~^eu-"),
        ("operators", "any:a=1|2;b!=x,(c^=p;d<=3.5),e,@G,f>1e3"),
        ("quoted", r#"any:name~"^(web|api)-[0-9]+$",v="a\"b""#),
        ("group", "group:workers"),
        ("uuid", "3A07FC75400A5B36F319333FA8492A52"),
        ("name", "alice"),
    ] {
        let mut b = vec![1u8];
        b.extend_from_slice(text.as_bytes());
        write(dir, "routing_decode", name, &b);
    }
}

fn layer_seeds(dir: &Path) {
    // envelope_decode: every request/reply kind, every optional field.
    let mut req = Envelope::new(Layer::REQREP, wire::REQUEST, 42);
    req.subject = Some("svc.echo".into());
    req.ttl_ms = Some(10_000);
    req.payload = Bytes::from_static(b"ping");
    let mut reply = Envelope::new(Layer::REQREP, wire::REPLY, 43);
    reply.corr = Some(42);
    reply.payload = Bytes::from_static(b"pong");
    let mut error = Envelope::new(Layer::REQREP, wire::ERROR, 44);
    error.corr = Some(42);
    error.payload = ErrorBody {
        class: ErrorClass::Handler,
        code: 500,
        message: "boom".into(),
    }
    .encode();
    let mut cancel = Envelope::new(Layer::REQREP, wire::CANCEL, 45);
    cancel.corr = Some(42);
    let mut tick = Envelope::new(Layer::REQREP, wire::TICK, 46);
    tick.subject = Some("tick.a".into());
    let mut full = Envelope::new(Layer::SERVICES, 9, u64::MAX);
    full.corr = Some(1);
    full.attempt = Some(3);
    full.ttl_ms = Some(u32::MAX);
    full.origin = Some(Uuid::from_u128(1));
    full.dest = Some(Uuid::from_u128(2));
    full.subject = Some("grüße".into());
    full.possible_duplicate = true;
    full.payload = Bytes::from_static(b"\xff\x00payload");
    for (name, env) in [
        ("request", req),
        ("reply", reply),
        ("error", error),
        ("cancel", cancel),
        ("tick", tick),
        ("all-fields", full),
    ] {
        write(
            dir,
            "envelope_decode",
            name,
            &env.encode().expect("encodable"),
        );
    }

    for (name, steps) in layer_scripts() {
        write(
            dir,
            "layer_envelopes",
            name,
            &encode(0xFFFF_FFFF_FFFF_FFFE, &steps),
        );
    }
}

/// `layer_envelopes`: one script per outcome and responder path.
fn layer_scripts() -> Vec<(&'static str, Vec<LayerStep>)> {
    use CapsChoice::*;
    use LayerStep::*;
    let hello = |p| Hello(p, Req);
    let req = |peer, timeout_ms| Request {
        peer,
        event: 0,
        len: 3,
        timeout_ms,
    };
    let reply_to = |i, payload: &[u8]| {
        Envelope(
            0,
            EnvSpec::Reply {
                corr: Corr::Ours(i),
                payload: payload.to_vec(),
            },
        )
    };
    let error_to = |i, class| {
        Envelope(
            0,
            EnvSpec::Error {
                corr: Corr::Ours(i),
                class,
                code: 7,
                message: "boom".into(),
            },
        )
    };
    let inbound = |peer, id, ttl| {
        Envelope(
            peer,
            EnvSpec::Request {
                id,
                event: 0,
                ttl_ms: Some(ttl),
                len: 2,
            },
        )
    };
    let register = |id, pattern, tick| Register {
        id,
        pattern,
        tick,
        via_handle: id % 2 == 0,
    };
    let answer = |which, error| Reply {
        which,
        error,
        len: 4,
        via_handle: error,
    };
    vec![
        (
            "reply",
            vec![
                hello(0),
                req(0, Some(1000)),
                reply_to(0, b"ok"),
                Advance(10),
            ],
        ),
        (
            "error-classes",
            vec![
                hello(0),
                req(0, Some(1000)),
                req(0, Some(1000)),
                req(0, Some(1000)),
                error_to(0, 0),
                error_to(1, 1),
                error_to(2, 2),
                req(0, None),
                error_to(3, 3),
                error_to(3, 4),
            ],
        ),
        (
            "timeout-then-late-reply",
            vec![
                hello(0),
                req(0, None),
                Advance(499),
                Advance(1),
                reply_to(0, b"late"),
            ],
        ),
        (
            "huge-timeout",
            vec![
                hello(0),
                req(0, Some(u16::MAX)),
                Deadline,
                reply_to(0, b"ok"),
            ],
        ),
        (
            "peer-left",
            vec![
                hello(0),
                req(0, Some(5000)),
                Goodbye(0),
                hello(1),
                req(1, None),
                Departure(1),
            ],
        ),
        (
            "cancel",
            vec![
                hello(0),
                req(0, Some(5000)),
                Cancel(0, false),
                reply_to(0, b"x"),
                Cancel(0, true),
            ],
        ),
        (
            "restart-same-uuid",
            vec![
                hello(0),
                req(0, Some(5000)),
                hello(0),
                reply_to(0, b"stale"),
            ],
        ),
        (
            "refused-send",
            vec![
                hello(0),
                req(0, Some(5000)),
                Refuse,
                req(0, Some(5000)),
                Deadline,
            ],
        ),
        (
            "own-limits",
            vec![
                hello(0),
                hello(1),
                req(0, Some(900)),
                req(0, Some(900)),
                req(0, Some(900)),
                req(0, Some(900)),
                req(1, Some(900)),
                req(1, Some(900)),
                req(1, Some(900)),
                req(1, Some(900)),
                Request {
                    peer: 0,
                    event: 1,
                    len: 200,
                    timeout_ms: None,
                },
                Request {
                    peer: 4,
                    event: 5,
                    len: 1,
                    timeout_ms: None,
                },
                Deadline,
            ],
        ),
        (
            "responder",
            vec![
                hello(1),
                register(1, 0, false),
                register(2, 2, false),
                inbound(1, 5, 1000),
                answer(0, false),
                inbound(1, 6, 1000),
                answer(0, true),
                inbound(1, 7, 1000),
                Abandon(0),
                inbound(1, 8, 1000),
                Envelope(1, EnvSpec::Cancel(Corr::Theirs(3))),
                inbound(1, 9, 50),
                Advance(60),
                answer(250, false),
                inbound(1, 10, 1000),
                inbound(1, 10, 1000),
                Goodbye(1),
                answer(0, false),
            ],
        ),
        (
            "responder-limits",
            vec![
                hello(1),
                hello(2),
                register(1, 2, false),
                inbound(1, 1, 1000),
                inbound(1, 2, 1000),
                inbound(2, 3, 1000),
                inbound(2, 4, 1000),
                Envelope(
                    1,
                    EnvSpec::Request {
                        id: 9,
                        event: 3,
                        ttl_ms: Some(100),
                        len: 100,
                    },
                ),
                Unregister(1),
                inbound(1, 20, 1000),
                Envelope(
                    1,
                    EnvSpec::Request {
                        id: 21,
                        event: 0,
                        ttl_ms: None,
                        len: 0,
                    },
                ),
                Deadline,
            ],
        ),
        (
            "capabilities",
            vec![
                Hello(2, Plain),
                Hello(3, Other),
                Hello(1, Empty),
                req(2, None),
                req(3, None),
                req(1, None),
                register(1, 2, false),
                inbound(2, 1, 1000),
                inbound(3, 2, 1000),
                answer(0, false),
                Tick(2, 0, false),
                Tick(3, 0, true),
            ],
        ),
        (
            "ticks",
            vec![
                hello(0),
                register(3, 2, true),
                register(1, 0, true),
                Envelope(0, EnvSpec::Tick { event: 0, len: 1 }),
                Envelope(0, EnvSpec::Tick { event: 2, len: 99 }),
                Tick(0, 0, false),
                Tick(0, 5, true),
                Tick(4, 0, false),
            ],
        ),
        (
            "stop",
            vec![
                hello(0),
                hello(1),
                register(1, 2, false),
                req(0, Some(5000)),
                inbound(1, 1, 5000),
                Stop,
                req(0, None),
                inbound(1, 2, 5000),
                reply_to(0, b"after stop"),
                Deadline,
            ],
        ),
        (
            "damaged-and-foreign",
            vec![
                hello(0),
                hello(1),
                req(0, Some(3000)),
                Damaged {
                    peer: 0,
                    env: EnvSpec::Reply {
                        corr: Corr::Ours(0),
                        payload: b"xyz".to_vec(),
                    },
                    cut: 20,
                    flip: (6, 0x80),
                },
                Raw(0, true, vec![2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
                Raw(0, false, b"plain data".to_vec()),
                Envelope(
                    0,
                    EnvSpec::Other {
                        layer: 4,
                        kind: 1,
                        corr: Some(1),
                    },
                ),
                Envelope(
                    0,
                    EnvSpec::Other {
                        layer: 2,
                        kind: 99,
                        corr: None,
                    },
                ),
                Envelope(
                    1,
                    EnvSpec::Reply {
                        corr: Corr::Ours(0),
                        payload: b"foreign".to_vec(),
                    },
                ),
                Envelope(
                    0,
                    EnvSpec::Error {
                        corr: Corr::Ours(0),
                        class: 9,
                        code: 0,
                        message: "bad body".into(),
                    },
                ),
                SendFailed(0),
            ],
        ),
    ]
}
