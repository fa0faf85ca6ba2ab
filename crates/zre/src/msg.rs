//! The ten ZRE v2 TCP messages (zre-spec §4) as a pure codec over ZeroMQ frames.
//!
//! Every ZRE message is one ZeroMQ frame
//!
//! ```text
//! AA A1 | id (1) | version = 0x02 (1) | sequence (2, big-endian) | fields...
//! ```
//!
//! followed, for WHISPER and SHOUT only, by one or more content frames. The identity frame that the
//! receiving ROUTER prepends is *not* part of what [`ZreMessage::decode`] sees; the engine handles it.
//!
//! Field encodings (zproto `zproto_codec_c`):
//!
//! | type      | encoding                                                   |
//! |-----------|------------------------------------------------------------|
//! | `string`  | 1-byte length + bytes (max 255)                            |
//! | `longstr` | 4-byte big-endian length + bytes                           |
//! | `strings` | 4-byte count, then `count` × `longstr`                     |
//! | `hash`    | 4-byte count, then `count` × (`string` key, `longstr` value) |
//!
//! # Design decisions
//!
//! * **Strings and UTF-8.** ZRE strings are arbitrary bytes to C. We expose them as Rust `String`s
//!   and decode with `String::from_utf8_lossy` semantics: invalid sequences become U+FFFD and are
//!   *never* an error, so a peer with a Latin-1 name is not disconnected for it (dropping a message
//!   would make the next one look like a sequence gap, which removes the peer). Encoding writes the
//!   UTF-8 bytes of the `String` exactly, so our own output is byte-exact; only foreign non-UTF-8
//!   strings cannot round-trip.
//! * **Limits.** A `string` longer than 255 bytes is a [`WireError::StringTooLong`] on encode — we
//!   never truncate silently as the C setters do.
//! * **Header hash.** Decoding keeps the *first* of duplicate keys (C's `zhash_insert` refuses the
//!   later ones). Encoding writes the headers in the order given.
//! * **Leniency on decode, like C.** Trailing bytes after the last field of the ZRE frame are
//!   ignored (the generated C decoder never checks for them). A WHISPER/SHOUT with no content frame
//!   decodes with empty `content` (the message is valid on the wire; only our encoder refuses to
//!   produce it). Extra frames after a non-content message are an error
//!   ([`WireError::UnexpectedFrames`]): C would misparse them as the next message.
//! * **Zero copy.** Content frames are `Bytes` clones of the input frames.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;
use uuid::Uuid;

/// The two signature bytes every ZRE message starts with (`0xAAA0 | 1`).
pub const SIGNATURE: u16 = 0xAAA1;
/// The message version byte; always 2, also in CURVE mode.
pub const VERSION: u8 = 2;
/// Maximum length in bytes of a `string` field (group, name, endpoint, header key, ...).
pub const MAX_STRING_LEN: usize = 255;

/// Message id of HELLO.
pub const ID_HELLO: u8 = 1;
/// Message id of WHISPER.
pub const ID_WHISPER: u8 = 2;
/// Message id of SHOUT.
pub const ID_SHOUT: u8 = 3;
/// Message id of JOIN.
pub const ID_JOIN: u8 = 4;
/// Message id of LEAVE.
pub const ID_LEAVE: u8 = 5;
/// Message id of PING.
pub const ID_PING: u8 = 6;
/// Message id of PING-OK.
pub const ID_PING_OK: u8 = 7;
/// Message id of ELECT (Zyre ≥ 2.0.1 only).
pub const ID_ELECT: u8 = 8;
/// Message id of LEADER (Zyre ≥ 2.0.1 only).
pub const ID_LEADER: u8 = 9;
/// Message id of GOODBYE (Zyre ≥ 2.0.1 only).
pub const ID_GOODBYE: u8 = 10;

/// One ZRE v2 message, without its sequence number (which the sender assigns per peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZreMessage {
    /// First message on every connection: who the sender is and what it is in.
    Hello {
        /// Where the sender accepts connections (`tcp://ip:port`).
        endpoint: String,
        /// Groups the sender is in, in its join order.
        groups: Vec<String>,
        /// The sender's group-change counter.
        status: u8,
        /// The sender's public name.
        name: String,
        /// Application headers (order as sent; duplicates removed on decode, first wins).
        headers: Vec<(String, String)>,
    },
    /// A message to one peer.
    Whisper {
        /// Content frames (at least one when encoding).
        content: Vec<Bytes>,
    },
    /// A message to a group, sent once to every member.
    Shout {
        /// Target group.
        group: String,
        /// Content frames (at least one when encoding).
        content: Vec<Bytes>,
    },
    /// The sender joined `group`; `status` is its incremented group-change counter.
    Join {
        /// Group joined.
        group: String,
        /// Sender's status after the change.
        status: u8,
    },
    /// The sender left `group`; `status` is its incremented group-change counter.
    Leave {
        /// Group left.
        group: String,
        /// Sender's status after the change.
        status: u8,
    },
    /// Liveness probe; answered with PING-OK.
    Ping,
    /// Answer to PING.
    PingOk,
    /// Leader-election wave (zre-spec §10).
    Elect {
        /// Group the election is for.
        group: String,
        /// Challenger's UUID string.
        challenger: String,
    },
    /// Leader-election result (zre-spec §10).
    Leader {
        /// Group the election is for.
        group: String,
        /// Leader's UUID string.
        leader: String,
    },
    /// Polite departure.
    Goodbye,
}

/// Why frames could not be decoded, or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// No frame at all was given to the decoder.
    #[error("no frames")]
    NoFrames,
    /// The ZRE frame ended before `field` could be read.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// The first two bytes are not `AA A1`.
    #[error("bad signature {0:#06x}")]
    BadSignature(u16),
    /// The version byte is not 2.
    #[error("unsupported message version {0}")]
    BadVersion(u8),
    /// The id byte is not one of the ten known messages.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// Content frames were attached to a message that has none.
    #[error("{count} unexpected extra frame(s) after {name}")]
    UnexpectedFrames {
        /// Name of the message.
        name: &'static str,
        /// Number of extra frames.
        count: usize,
    },
    /// Encode: a `string` field longer than 255 bytes.
    #[error("{field} is {len} bytes long; ZRE strings are limited to 255")]
    StringTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Encode: a `longstr` or a list longer than 2^32 - 1.
    #[error("{field} is too long for a 32-bit length ({len})")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// Encode: WHISPER/SHOUT without any content frame (a C receiver would corrupt its event stream).
    #[error("WHISPER/SHOUT needs at least one content frame")]
    EmptyContent,
}

impl ZreMessage {
    /// The wire id of this message (1..=10).
    pub fn id(&self) -> u8 {
        match self {
            ZreMessage::Hello { .. } => ID_HELLO,
            ZreMessage::Whisper { .. } => ID_WHISPER,
            ZreMessage::Shout { .. } => ID_SHOUT,
            ZreMessage::Join { .. } => ID_JOIN,
            ZreMessage::Leave { .. } => ID_LEAVE,
            ZreMessage::Ping => ID_PING,
            ZreMessage::PingOk => ID_PING_OK,
            ZreMessage::Elect { .. } => ID_ELECT,
            ZreMessage::Leader { .. } => ID_LEADER,
            ZreMessage::Goodbye => ID_GOODBYE,
        }
    }

    /// The protocol name of this message ("HELLO", "PING-OK", ...), for logs.
    pub fn name(&self) -> &'static str {
        id_name(self.id())
    }

    /// Encodes into ZeroMQ frames: first the ZRE frame carrying `sequence`, then (WHISPER/SHOUT
    /// only) the content frames, which are cheap `Bytes` clones.
    pub fn encode(&self, sequence: u16) -> Result<Vec<Bytes>, WireError> {
        // The hot messages get their small ZRE frame from a per-thread arena (see
        // [`encode_content_header`]); the rare ones allocate their own buffer.
        match self {
            ZreMessage::Whisper { content } => {
                return content_frames(ID_WHISPER, sequence, None, content);
            }
            ZreMessage::Shout { group, content } => {
                return content_frames(ID_SHOUT, sequence, Some(group), content);
            }
            _ => {}
        }
        let mut b = BytesMut::with_capacity(64);
        b.put_u16(SIGNATURE);
        b.put_u8(self.id());
        b.put_u8(VERSION);
        b.put_u16(sequence);
        match self {
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                put_string(&mut b, "endpoint", endpoint)?;
                put_count(&mut b, "groups", groups.len())?;
                for g in groups {
                    put_longstr(&mut b, "group", g)?;
                }
                b.put_u8(*status);
                put_string(&mut b, "name", name)?;
                put_count(&mut b, "headers", headers.len())?;
                for (k, v) in headers {
                    put_string(&mut b, "header key", k)?;
                    put_longstr(&mut b, "header value", v)?;
                }
            }
            ZreMessage::Whisper { .. } | ZreMessage::Shout { .. } => {
                unreachable!("encoded above")
            }
            ZreMessage::Join { group, status } | ZreMessage::Leave { group, status } => {
                put_string(&mut b, "group", group)?;
                b.put_u8(*status);
            }
            ZreMessage::Ping | ZreMessage::PingOk | ZreMessage::Goodbye => {}
            ZreMessage::Elect { group, challenger } => {
                put_string(&mut b, "group", group)?;
                put_string(&mut b, "challenger_id", challenger)?;
            }
            ZreMessage::Leader { group, leader } => {
                put_string(&mut b, "group", group)?;
                put_string(&mut b, "leader_id", leader)?;
            }
        }
        Ok(vec![b.freeze()])
    }

    /// Decodes the frames of one ZRE message (identity frame already removed). Returns the
    /// sequence number and the message. Never panics, whatever the input.
    ///
    /// The content frames of a WHISPER/SHOUT are cloned into a new list; a receiver that owns the
    /// frames should use [`ZreMessage::decode_owned`], which moves them instead.
    pub fn decode(frames: &[Bytes]) -> Result<(u16, ZreMessage), WireError> {
        let (first, rest) = frames.split_first().ok_or(WireError::NoFrames)?;
        // An empty slice makes an empty Vec without allocating; only content frames are copied.
        decode_parts(first, rest.to_vec())
    }

    /// Like [`ZreMessage::decode`], taking the frames by value: the content frames of a
    /// WHISPER/SHOUT become the message's `content` without copying the list (the received
    /// `Vec` is reused). The receive path of a node decodes every message this way.
    pub fn decode_owned(mut frames: Vec<Bytes>) -> Result<(u16, ZreMessage), WireError> {
        if frames.is_empty() {
            return Err(WireError::NoFrames);
        }
        // Shifts the (few) content frames down by one; no allocation.
        let first = frames.remove(0);
        decode_parts(&first, frames)
    }
}

/// Decodes the ZRE frame `first`; `rest` are the frames that followed it (content for
/// WHISPER/SHOUT, an error for every other message when not empty).
fn decode_parts(first: &[u8], rest: Vec<Bytes>) -> Result<(u16, ZreMessage), WireError> {
    // Fast path for the message that dominates traffic: a WHISPER is nothing but its header.
    if let [0xAA, 0xA1, ID_WHISPER, VERSION, hi, lo, ..] = *first {
        return Ok((
            u16::from_be_bytes([hi, lo]),
            ZreMessage::Whisper { content: rest },
        ));
    }
    let mut r = Reader { buf: first };
    let signature = r.u16("signature")?;
    if signature != SIGNATURE {
        return Err(WireError::BadSignature(signature));
    }
    let id = r.u8("id")?;
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    let sequence = r.u16("sequence")?;
    let extra = rest.len();
    let msg = match id {
        ID_HELLO => {
            let endpoint = r.string("endpoint")?;
            let count = r.u32("groups count")?;
            let mut groups = Vec::new();
            for _ in 0..count {
                groups.push(r.longstr("group")?);
            }
            let status = r.u8("status")?;
            let name = r.string("name")?;
            let count = r.u32("headers count")?;
            let mut headers: Vec<(String, String)> = Vec::new();
            for _ in 0..count {
                let k = r.string("header key")?;
                let v = r.longstr("header value")?;
                // zhash_insert keeps the first value of a duplicated key.
                if !headers.iter().any(|(hk, _)| *hk == k) {
                    headers.push((k, v));
                }
            }
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            }
        }
        ID_WHISPER => ZreMessage::Whisper { content: rest },
        ID_SHOUT => ZreMessage::Shout {
            group: r.string("group")?,
            content: rest,
        },
        ID_JOIN => ZreMessage::Join {
            group: r.string("group")?,
            status: r.u8("status")?,
        },
        ID_LEAVE => ZreMessage::Leave {
            group: r.string("group")?,
            status: r.u8("status")?,
        },
        ID_PING => ZreMessage::Ping,
        ID_PING_OK => ZreMessage::PingOk,
        ID_ELECT => ZreMessage::Elect {
            group: r.string("group")?,
            challenger: r.string("challenger_id")?,
        },
        ID_LEADER => ZreMessage::Leader {
            group: r.string("group")?,
            leader: r.string("leader_id")?,
        },
        ID_GOODBYE => ZreMessage::Goodbye,
        other => return Err(WireError::UnknownId(other)),
    };
    if id != ID_WHISPER && id != ID_SHOUT && extra != 0 {
        return Err(WireError::UnexpectedFrames {
            name: id_name(id),
            count: extra,
        });
    }
    Ok((sequence, msg))
}

/// Size of the blocks the per-thread header arena carves ZRE frames from.
const ARENA_BLOCK: usize = 4096;
/// Largest ZRE frame of a WHISPER/SHOUT: the 6-byte header plus a 1+255-byte group.
const MAX_CONTENT_HEADER: usize = 6 + 1 + MAX_STRING_LEN;

thread_local! {
    /// Where WHISPER/SHOUT frames are written: each encode appends its 6 (WHISPER) or 7 + group
    /// (SHOUT) bytes and splits them off as a `Bytes` sharing the block. A block is freed when
    /// its last frame is dropped, and reused in place when every frame carved from it has been
    /// dropped by the time it is full (the usual case: the transport copies a message into its
    /// write buffer when it is queued). One allocation per ~680 WHISPERs instead of one each.
    static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// The frames of a WHISPER (`group` = None) or SHOUT: the ZRE frame, then the content frames.
fn content_frames(
    id: u8,
    sequence: u16,
    group: Option<&str>,
    content: &[Bytes],
) -> Result<Vec<Bytes>, WireError> {
    if content.is_empty() {
        return Err(WireError::EmptyContent);
    }
    if let Some(g) = group {
        check_string("group", g)?;
    }
    let header = ARENA.with(|arena| {
        let mut b = arena.borrow_mut();
        if b.capacity() < MAX_CONTENT_HEADER {
            // Reclaims the block in place if it is no longer shared, else starts a new one.
            b.reserve(ARENA_BLOCK);
        }
        let [sig_hi, sig_lo] = SIGNATURE.to_be_bytes();
        let [seq_hi, seq_lo] = sequence.to_be_bytes();
        b.extend_from_slice(&[sig_hi, sig_lo, id, VERSION, seq_hi, seq_lo]);
        if let Some(g) = group {
            b.extend_from_slice(&[g.len() as u8]);
            b.extend_from_slice(g.as_bytes());
        }
        b.split().freeze()
    });
    let mut frames = Vec::with_capacity(1 + content.len());
    frames.push(header);
    frames.extend(content.iter().cloned());
    Ok(frames)
}

/// Name of a message id, "UNKNOWN" for ids outside 1..=10.
pub fn id_name(id: u8) -> &'static str {
    match id {
        ID_HELLO => "HELLO",
        ID_WHISPER => "WHISPER",
        ID_SHOUT => "SHOUT",
        ID_JOIN => "JOIN",
        ID_LEAVE => "LEAVE",
        ID_PING => "PING",
        ID_PING_OK => "PING-OK",
        ID_ELECT => "ELECT",
        ID_LEADER => "LEADER",
        ID_GOODBYE => "GOODBYE",
        _ => "UNKNOWN",
    }
}

/// Checks that `value` fits a ZRE `string` field (≤ 255 bytes). Useful for validating user input
/// (names, groups, endpoints) before it reaches the encoder.
pub fn check_string(field: &'static str, value: &str) -> Result<(), WireError> {
    if value.len() > MAX_STRING_LEN {
        Err(WireError::StringTooLong {
            field,
            len: value.len(),
        })
    } else {
        Ok(())
    }
}

/// Formats a UUID the way Zyre does everywhere above the wire: 32 uppercase hex digits, no dashes.
pub fn uuid_to_string(u: &Uuid) -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    u.simple().encode_upper(&mut buf).to_owned()
}

/// Parses a UUID given as 32 hex digits (any case, Zyre style) or in the dashed form.
pub fn uuid_from_str(s: &str) -> Option<Uuid> {
    let s = s.trim();
    if s.len() != 32 && s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

fn put_string(b: &mut BytesMut, field: &'static str, s: &str) -> Result<(), WireError> {
    check_string(field, s)?;
    b.put_u8(s.len() as u8);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_count(b: &mut BytesMut, field: &'static str, n: usize) -> Result<(), WireError> {
    let n = u32::try_from(n).map_err(|_| WireError::TooLong { field, len: n })?;
    b.put_u32(n);
    Ok(())
}

fn put_longstr(b: &mut BytesMut, field: &'static str, s: &str) -> Result<(), WireError> {
    put_count(b, field, s.len())?;
    b.put_slice(s.as_bytes());
    Ok(())
}

/// Bounds-checked cursor over the ZRE frame.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u8(field)? as usize;
        Ok(String::from_utf8_lossy(self.take(n, field)?).into_owned())
    }

    fn longstr(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u32(field)? as usize;
        Ok(String::from_utf8_lossy(self.take(n, field)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The HELLO of zre-spec §4.5, 71 bytes.
    const GOLDEN_HELLO: [u8; 71] = [
        0xAA, 0xA1, 0x01, 0x02, 0x00, 0x01, 0x18, 0x74, 0x63, 0x70, 0x3A, 0x2F, 0x2F, 0x31, 0x39,
        0x32, 0x2E, 0x31, 0x36, 0x38, 0x2E, 0x31, 0x2E, 0x31, 0x30, 0x3A, 0x34, 0x39, 0x31, 0x35,
        0x32, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x43, 0x48, 0x41, 0x54, 0x01, 0x05,
        0x6E, 0x6F, 0x64, 0x65, 0x31, 0x00, 0x00, 0x00, 0x01, 0x07, 0x58, 0x2D, 0x48, 0x45, 0x4C,
        0x4C, 0x4F, 0x00, 0x00, 0x00, 0x05, 0x57, 0x6F, 0x72, 0x6C, 0x64,
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

    fn frames(v: &[&[u8]]) -> Vec<Bytes> {
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
                content: frames(&[b"a", b"bc"])
            }
        );
        assert_eq!(ZreMessage::decode_owned(vec![]), Err(WireError::NoFrames));
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
                content: content.clone(),
            }
            .encode(i)
            .unwrap();
            let [hi, lo] = i.to_be_bytes();
            assert_eq!(&w[0][..], &[0xAA, 0xA1, 0x02, 0x02, hi, lo]);
            let s = ZreMessage::Shout {
                group: "G".repeat(usize::from(i % 256).min(255)),
                content: content.clone(),
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
            content: vec![Bytes::from_static(b"hi")],
        };
        assert_eq!(
            w.encode(2).unwrap(),
            frames(&[&[0xAA, 0xA1, 0x02, 0x02, 0x00, 0x02], b"hi"])
        );
        let s = ZreMessage::Shout {
            group: "CHAT".into(),
            content: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
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
            ZreMessage::Whisper { content: vec![] }.encode(1),
            Err(WireError::EmptyContent)
        );
        assert_eq!(
            ZreMessage::Shout {
                group: "g".into(),
                content: vec![]
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
        assert_eq!(m, ZreMessage::Whisper { content: vec![] });
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
            content().prop_map(|content| ZreMessage::Whisper { content }),
            (s255(), content()).prop_map(|(group, content)| ZreMessage::Shout { group, content }),
            (s255(), any::<u8>()).prop_map(|(group, status)| ZreMessage::Join { group, status }),
            (s255(), any::<u8>()).prop_map(|(group, status)| ZreMessage::Leave { group, status }),
            Just(ZreMessage::Ping),
            Just(ZreMessage::PingOk),
            (s255(), s255())
                .prop_map(|(group, challenger)| ZreMessage::Elect { group, challenger }),
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
}
