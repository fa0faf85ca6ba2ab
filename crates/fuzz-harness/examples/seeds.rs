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
            content: content.clone(),
        },
        ZreMessage::Shout {
            group: "chat".into(),
            content,
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
}
