//! Harnesses for the pure codecs: beacons, ZRE messages, ZMTP frames, greetings and commands.
//!
//! Each harness turns the fuzzer's flat byte string into the shape the decoder expects (a list
//! of frames, a stream cut into reads, a greeting followed by command bodies), decodes, and then
//! checks the properties that the codec documents:
//!
//! * **round trip** — whatever decodes, re-encodes into something that decodes to the same value
//!   (allowing only the documented lossy cases: non-UTF-8 strings widened by U+FFFD replacement);
//! * **incrementality** — the ZMTP frame decoder yields the same frames and the same error
//!   however the stream is split into reads;
//! * **consistency** — e.g. a greeting that decodes passes every partial-prefix check.
//!
//! Cutting schemes are deliberately simple (a length byte per piece) so that the fuzzer and a
//! human reading a crash file can both follow them.

use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use zmesh_zmtp::codec::{check_greeting_prefix, SHORT_FIRST};
use zmesh_zmtp::{
    encode_frame, CodecError, Command, Endpoint, Frame, FrameDecoder, Greeting, Mechanism,
    MechanismConfig, Metadata,
};
use zmesh_zre::{Beacon, WireError, ZreMessage, BEACON_V1_LEN, BEACON_V3_LEN};

// ---------------------------------------------------------------------------------- beacons

/// `beacon_decode`: the whole input is one UDP datagram.
///
/// Checks: an accepted beacon is 22 or 54 bytes, has version 1 or 3, carries a key exactly when
/// it is version 3, and re-encodes to the datagram (for a 54-byte version-1 datagram: to its first
/// 22 bytes, since C Zyre ignores the tail).
pub fn beacon_decode(data: &[u8]) {
    match Beacon::decode(data) {
        Ok(b) => {
            assert!(data.len() == BEACON_V1_LEN || data.len() == BEACON_V3_LEN);
            assert!(b.version == 1 || b.version == 3, "version {}", b.version);
            assert_eq!(b.public_key.is_some(), b.version == 3);
            let enc = b.encode();
            let expect = if b.version == 1 {
                &data[..BEACON_V1_LEN]
            } else {
                data
            };
            assert_eq!(enc, expect, "beacon does not re-encode to its datagram");
            assert_eq!(Beacon::decode(&enc), Ok(b));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ------------------------------------------------------------------------------ ZRE messages

/// Cuts `data` into 0–4 frames: empty input is zero frames; otherwise the first byte chooses
/// `1 + (b & 3)` frames, every frame but the last is a length byte followed by that many bytes
/// (fewer if the input ends), and the last frame is whatever remains.
pub fn split_frames(data: &[u8]) -> Vec<Bytes> {
    let Some((&first, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = 1 + usize::from(first & 3);
    let mut frames = Vec::with_capacity(count);
    for _ in 1..count {
        let Some((&len, tail)) = rest.split_first() else {
            frames.push(Bytes::new());
            continue;
        };
        let len = usize::from(len).min(tail.len());
        frames.push(Bytes::copy_from_slice(&tail[..len]));
        rest = &tail[len..];
    }
    frames.push(Bytes::copy_from_slice(rest));
    frames
}

/// `zre_message_decode`: the input cut by [`split_frames`] is the frame list after the ROUTER
/// identity (first frame = ZRE frame, the rest = content frames).
///
/// Checks: WHISPER/SHOUT content is exactly the trailing frames; other messages only decode with
/// no trailing frame; a decoded message re-encodes (unless a lossily decoded string grew past 255
/// bytes, or a WHISPER/SHOUT had no content — both documented) and re-decodes to itself with the
/// same sequence number. A HELLO endpoint, which the node hands to the ZMTP endpoint parser to
/// connect, goes through [`endpoint_parse`]. The node's receive-path decoders
/// (`decode_owned`, `decode_first_and`) give what `decode` gives.
pub fn zre_message_decode(data: &[u8]) {
    let frames = split_frames(data);
    let decoded = ZreMessage::decode(&frames);
    // The receive path's decoders (frames by value; a two-frame message as a borrowed ZRE frame
    // and its body) agree with the reference on every input.
    let owned = ZreMessage::decode_owned(frames.iter().cloned().collect());
    assert_eq!(
        owned.as_ref().ok(),
        decoded.as_ref().ok(),
        "decode_owned disagrees"
    );
    if let [first, body] = frames.as_slice() {
        let parts = ZreMessage::decode_first_and(first, body.clone());
        assert_eq!(
            parts.as_ref().ok(),
            decoded.as_ref().ok(),
            "decode_first_and disagrees"
        );
    }
    let (seq, msg) = match decoded {
        Ok(x) => x,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = msg.name();
    match &msg {
        ZreMessage::Whisper { content } | ZreMessage::Shout { content, .. } => {
            assert_eq!(&content[..], &frames[1..]);
        }
        _ => assert_eq!(frames.len(), 1, "{} accepted extra frames", msg.name()),
    }
    if let ZreMessage::Hello { endpoint, .. } = &msg {
        endpoint_parse(endpoint);
    }
    match msg.encode(seq) {
        Ok(enc) => {
            let again = ZreMessage::decode(&enc).expect("our own encoding must decode");
            assert_eq!(again, (seq, msg));
        }
        Err(WireError::StringTooLong { len, .. }) => {
            // Only possible when U+FFFD replacement widened a ≤255-byte wire string.
            assert!(len > 255);
            assert!(
                format!("{msg:?}").contains('\u{FFFD}'),
                "StringTooLong without lossy decoding: {msg:?}"
            );
        }
        Err(WireError::EmptyContent) => assert!(matches!(
            &msg,
            ZreMessage::Whisper { content } | ZreMessage::Shout { content, .. } if content.is_empty()
        )),
        Err(e) => panic!("decoded message cannot be re-encoded: {e} ({msg:?})"),
    }
}

/// Parses an endpoint string from the network like the node does before connecting, and checks
/// that a parsed endpoint prints to a string that parses back to the same endpoint.
pub fn endpoint_parse(s: &str) {
    match Endpoint::from_str(s) {
        Ok(ep) => {
            let printed = ep.to_string();
            let again = Endpoint::from_str(&printed)
                .unwrap_or_else(|e| panic!("{s:?} parsed, but its display {printed:?} not: {e}"));
            assert_eq!(again, ep, "{s:?} -> {printed:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ------------------------------------------------------------------------------- ZMTP frames

/// The result of decoding a byte stream: frames produced, the error that ended it (if any) and
/// the bytes left over in the buffer.
#[derive(Debug, PartialEq, Eq)]
struct StreamResult {
    frames: Vec<Frame>,
    error: Option<CodecError>,
    leftover: usize,
}

/// Pulls frames out of `buf` until the decoder needs more input or fails. Returns false on error.
/// With `fast`, the input is first offered to the inbox's fast paths as the node's inbox does: a
/// two-frame data message with a short first frame ([`FrameDecoder::decode_data_pair_short`]),
/// any two-frame data message ([`FrameDecoder::decode_data_pair`]), a final data frame
/// ([`FrameDecoder::decode_final_data`]); whatever they decline goes to the full decoder — so
/// comparing a `fast` pull with a plain one checks that they all agree.
fn pull(
    dec: &mut FrameDecoder,
    buf: &mut BytesMut,
    max_frame: usize,
    out: &mut StreamResult,
    fast: bool,
) -> bool {
    loop {
        if fast {
            let before = buf.len();
            let mut short = [0u8; SHORT_FIRST];
            let pair = match dec.decode_data_pair_short(buf, usize::MAX, &mut short) {
                Some((n, body)) => Some([Bytes::copy_from_slice(&short[..n]), body]),
                None => {
                    assert_eq!(buf.len(), before, "a declining pair path consumed input");
                    dec.decode_data_pair(buf, usize::MAX)
                }
            };
            if let Some([first, second]) = pair {
                for (more, body) in [(true, first), (false, second)] {
                    assert!(
                        body.len() <= max_frame,
                        "pair path took a frame above max_frame"
                    );
                    out.frames.push(Frame {
                        more,
                        command: false,
                        body,
                    });
                }
                continue;
            }
            assert_eq!(buf.len(), before, "a declining pair path consumed input");
            match dec.decode_final_data(buf) {
                Some(body) => {
                    assert!(
                        body.len() <= max_frame,
                        "fast path took a frame above max_frame"
                    );
                    out.frames.push(Frame {
                        more: false,
                        command: false,
                        body,
                    });
                    continue;
                }
                None => assert_eq!(buf.len(), before, "a declining fast path consumed input"),
            }
        }
        match dec.decode(buf) {
            Ok(Some(f)) => {
                assert!(f.body.len() <= max_frame, "frame above max_frame accepted");
                out.frames.push(f);
            }
            Ok(None) => {
                // Whatever is pending must fit the limit the header was checked against.
                assert!(dec.body_remaining(buf.len()) <= max_frame);
                return true;
            }
            Err(e) => {
                out.error = Some(e);
                return false;
            }
        }
    }
}

/// `zmtp_frame_decode`: byte 0–1 choose `max_frame` (big-endian u16; `0xFFFF` = unlimited),
/// bytes 2–5 a cyclic pattern of read sizes (0–255 bytes, 0 = an empty read), the rest is the
/// TCP byte stream.
///
/// Checks: decoding in those chunks (with the inbox's fast paths first — two-frame data messages,
/// short-first-frame pairs, final data frames — as the node's inbox does) gives exactly the frames, error and leftover of decoding the whole stream at
/// once with the full decoder; no frame exceeds `max_frame`; re-encoding the frames with
/// [`encode_frame`] and decoding again gives them back.
pub fn zmtp_frame_decode(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let limit = u16::from_be_bytes([data[0], data[1]]);
    let max_frame = if limit == u16::MAX {
        usize::MAX
    } else {
        usize::from(limit)
    };
    let pattern = &data[2..6];
    let stream = &data[6..];

    // One-shot reference.
    let mut whole = StreamResult {
        frames: Vec::new(),
        error: None,
        leftover: 0,
    };
    let mut dec = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::from(stream);
    pull(&mut dec, &mut buf, max_frame, &mut whole, false);
    whole.leftover = buf.len();

    // Chunked, like successive socket reads.
    let mut chunked = StreamResult {
        frames: Vec::new(),
        error: None,
        leftover: 0,
    };
    let mut dec = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut i = 0;
    // Every read size may be 0, so bound the number of reads, then deliver the rest at once.
    while pos < stream.len() && i < 4 * stream.len() + 8 {
        let n = usize::from(pattern[i % pattern.len()]).min(stream.len() - pos);
        i += 1;
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        if !pull(&mut dec, &mut buf, max_frame, &mut chunked, true) {
            break;
        }
    }
    if chunked.error.is_none() && pos < stream.len() {
        buf.extend_from_slice(&stream[pos..]);
        pull(&mut dec, &mut buf, max_frame, &mut chunked, true);
    }
    if chunked.error.is_none() {
        chunked.leftover = buf.len();
    } else {
        // After an error the connection is closed; the buffer content is irrelevant.
        chunked.leftover = whole.leftover;
    }
    assert_eq!(
        chunked, whole,
        "chunked decoding differs from one-shot decoding"
    );

    // Re-encode and decode again.
    let mut enc = BytesMut::new();
    for f in &whole.frames {
        encode_frame(f.more, f.command, &f.body, &mut enc);
    }
    let mut dec = FrameDecoder::new(usize::MAX);
    let mut again = Vec::new();
    while let Some(f) = dec.decode(&mut enc).expect("our own frames must decode") {
        again.push(f);
    }
    assert!(enc.is_empty(), "re-encoded frames left bytes behind");
    assert_eq!(again, whole.frames);
}

// ----------------------------------------------------------------- greetings and commands

/// Cuts command bodies: a length byte then that many bytes; length 255 means "the rest".
fn split_bodies(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut bodies = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = if len == 255 {
            tail.len()
        } else {
            usize::from(len).min(tail.len())
        };
        bodies.push(&tail[..len]);
        rest = &tail[len..];
    }
    bodies
}

/// Decodes one command body and checks peek/round-trip properties.
fn check_command(body: &[u8]) {
    if let Ok(m) = Metadata::decode(body) {
        let mut enc = BytesMut::new();
        m.encode_into(&mut enc);
        assert_eq!(Metadata::decode(&enc), Ok(m.clone()), "metadata round trip");
        let _ = m.get("Socket-Type");
        let _ = m.get("identity");
    }
    let cmd = match Command::decode(body) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let name = Command::peek_name(body).expect("a decoded command has a name");
    let expect: &[u8] = match &cmd {
        Command::Ready(_) => b"READY",
        Command::Error(_) => b"ERROR",
        Command::Ping { .. } => b"PING",
        Command::Pong { .. } => b"PONG",
        Command::Other { name, .. } => name.as_bytes(),
    };
    assert_eq!(name, expect);
    let enc = cmd.encode();
    let again = Command::decode(&enc).expect("our own command must decode");
    match (&cmd, &again) {
        // Lossy: invalid UTF-8 became U+FFFD, which may then be cut at 255 bytes on encode.
        (Command::Error(a), Command::Error(b)) => assert!(a.starts_with(b.as_str())),
        _ => assert_eq!(again, cmd, "command round trip"),
    }
}

/// `zmtp_greeting_and_command_decode`: byte 0 is a mode (bit 0: bytes 1–64 are a greeting;
/// bit 1: the mechanism plays server); the rest is cut into command bodies (length byte + body,
/// 255 = the rest) which are decoded one by one and fed, in order, to a fresh NULL mechanism as
/// the peer's handshake commands.
///
/// Checks: a greeting decodes exactly when the full 64-byte prefix check passes, the prefix check
/// is monotonic (once a prefix is refused every longer one is), a decoded greeting re-encodes to
/// itself; commands pass [`check_command`]; the NULL mechanism sends exactly one READY with our
/// metadata (client: on start; server: in answer to the peer's READY), completes only on READY, and
/// refuses everything after completion.
pub fn zmtp_greeting_and_command_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (greeting, rest): (Option<&[u8]>, &[u8]) = if mode & 1 != 0 && rest.len() >= 64 {
        (Some(&rest[..64]), &rest[64..])
    } else {
        (None, rest)
    };
    let mut peer_greeting = Greeting::new("NULL", false);
    if let Some(g) = greeting {
        let mut refused = false;
        for k in 0..=64 {
            let r = check_greeting_prefix(&g[..k]);
            if refused {
                assert!(
                    r.is_err(),
                    "prefix check accepted {k} bytes after refusing fewer"
                );
            }
            refused = r.is_err();
        }
        let arr: &[u8; 64] = g.try_into().expect("64 bytes");
        match Greeting::decode(arr) {
            Ok(parsed) => {
                assert!(!refused);
                assert!(parsed.major >= 3);
                let _ = parsed.mechanism_name();
                assert_eq!(Greeting::decode(&parsed.encode()), Ok(parsed.clone()));
                peer_greeting = parsed;
            }
            Err(e) => {
                assert!(refused, "greeting refused although its prefix check passed");
                let _ = e.to_string();
            }
        }
    } else {
        // Partial greetings arrive over several reads; the prefix check must cope with any.
        for k in 0..=rest.len().min(64) {
            let _ = check_greeting_prefix(&rest[..k]);
        }
    }

    let bodies = split_bodies(rest);
    for body in &bodies {
        check_command(body);
    }

    // The NULL handshake: the client sends READY at once, the server answers the client's READY
    // with its own; either way exactly one READY carrying our metadata leaves per completed
    // handshake, and only a READY completes it.
    let server = mode & 2 != 0;
    let mut mech: Box<dyn Mechanism> = MechanismConfig::default().build(server);
    let _ = (mech.name(), mech.as_server(), mech.transforms_frames());
    let own = Metadata::new()
        .with("Socket-Type", "ROUTER")
        .with("Identity", Bytes::new());
    let step = mech
        .start(&own, &peer_greeting)
        .expect("NULL start cannot fail");
    assert!(
        step.peer_metadata.is_none(),
        "NULL completed before any peer command"
    );
    let mut sent = step.send;
    let mut done = false;
    for body in bodies {
        match mech.on_command(Bytes::copy_from_slice(body)) {
            Ok(step) => {
                assert!(!done, "NULL mechanism accepted a command after READY");
                let meta = step
                    .peer_metadata
                    .expect("NULL completes on its only command");
                assert_eq!(Command::decode(body), Ok(Command::Ready(meta)));
                sent.extend(step.send);
                done = true;
            }
            Err(e) => {
                // The connection is closed on a handshake error; driving the mechanism further
                // must still not panic, so keep feeding.
                let _ = e.to_string();
            }
        }
    }
    let expected = if server { usize::from(done) } else { 1 };
    assert_eq!(
        sent.len(),
        expected,
        "READY commands sent (server: {server})"
    );
    for body in &sent {
        assert_eq!(Command::decode(body), Ok(Command::Ready(own.clone())));
    }
}
