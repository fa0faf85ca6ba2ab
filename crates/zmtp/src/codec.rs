//! The ZMTP 3.1 wire codec (RFC 37; 3.0 is RFC 23) as pure functions over byte slices. No I/O here.
//!
//! ```text
//! greeting  = signature version mechanism as-server filler          ; always 64 octets
//! signature = %xFF 8%x00 %x7F                                         ; 10 octets
//! version   = %x03 %x01                                               ; we send 3.1, accept 3.0
//! mechanism = 20OCTET                                                 ; "NULL" padded with NULs
//! frame     = flags size body                                         ; flags: bit0 MORE, bit1 LONG, bit2 COMMAND
//! size      = OCTET (short) | 8OCTET (long, network order)
//! command   = name-size name data                                     ; body of a COMMAND frame
//! READY     = "READY" *(name-size name 4OCTET-value-size value)       ; metadata
//! ERROR     = "ERROR" reason-size reason
//! PING      = "PING" 2OCTET-ttl-deciseconds 0*16context
//! PONG      = "PONG" 0*16context
//! ```
//!
//! Decoding of frames is incremental ([`FrameDecoder`]) and zero-copy: bodies are split off the read
//! buffer as [`Bytes`] that share its allocation.

use crate::error::{CodecError, HandshakeError};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of a ZMTP 3.x greeting.
pub const GREETING_LEN: usize = 64;
/// Flag bit: more frames follow in this message.
pub const FLAG_MORE: u8 = 0x01;
/// Flag bit: 8-octet size field.
pub const FLAG_LONG: u8 = 0x02;
/// Flag bit: this frame is a command.
pub const FLAG_COMMAND: u8 = 0x04;

/// The 64-octet greeting both peers send first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Major version (3).
    pub major: u8,
    /// Minor version (1 for what we send; 0 accepted from peers).
    pub minor: u8,
    /// Mechanism name, NUL padded.
    pub mechanism: [u8; 20],
    /// The as-server bit (always false for NULL).
    pub as_server: bool,
}

impl Greeting {
    /// A ZMTP 3.1 greeting for the given mechanism name (at most 20 bytes; longer names are cut).
    pub fn new(mechanism: &str, as_server: bool) -> Greeting {
        let mut m = [0u8; 20];
        let n = mechanism.len().min(20);
        m[..n].copy_from_slice(&mechanism.as_bytes()[..n]);
        Greeting {
            major: 3,
            minor: 1,
            mechanism: m,
            as_server,
        }
    }

    /// The mechanism name without NUL padding (lossy for non-UTF-8 bytes).
    pub fn mechanism_name(&self) -> String {
        let end = self.mechanism.iter().position(|&b| b == 0).unwrap_or(20);
        String::from_utf8_lossy(&self.mechanism[..end]).into_owned()
    }

    /// Encode to the 64 wire octets.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = 0xFF;
        b[9] = 0x7F;
        b[10] = self.major;
        b[11] = self.minor;
        b[12..32].copy_from_slice(&self.mechanism);
        b[32] = self.as_server as u8;
        b
    }

    /// Decode 64 octets. Refuses a bad signature and a major version below 3.
    pub fn decode(b: &[u8; 64]) -> Result<Greeting, HandshakeError> {
        check_greeting_prefix(b)?;
        let mut mechanism = [0u8; 20];
        mechanism.copy_from_slice(&b[12..32]);
        Ok(Greeting {
            major: b[10],
            minor: b[11],
            mechanism,
            as_server: b[32] != 0,
        })
    }
}

/// Check as much of a greeting as has arrived, so garbage or an old peer is refused after 1, 10 or 11
/// bytes instead of waiting for all 64 (which such a peer may never send).
///
/// Like libzmq we require octet 0 to be `0xFF` and the low bit of octet 9 to be set (ZMTP 1.0 peers
/// clear it); the padding octets are not checked.
pub fn check_greeting_prefix(b: &[u8]) -> Result<(), HandshakeError> {
    if !b.is_empty() && b[0] != 0xFF {
        return Err(HandshakeError::BadSignature);
    }
    if b.len() >= 10 && b[9] & 0x01 == 0 {
        return Err(HandshakeError::BadSignature);
    }
    if b.len() >= 11 && b[10] < 3 {
        return Err(HandshakeError::UnsupportedVersion {
            major: b[10],
            minor: b.get(11).copied().unwrap_or(0),
        });
    }
    Ok(())
}

/// One ZMTP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// More frames of this message follow.
    pub more: bool,
    /// This frame carries a command, not message data.
    pub command: bool,
    /// The payload.
    pub body: Bytes,
}

/// Incremental frame decoder: feed it the connection's read buffer, get whole frames out.
///
/// The header is parsed once and remembered, so a large body arriving in many reads costs nothing
/// extra. The size limit is enforced as soon as the header arrives, before any body is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    /// Parsed header of the frame whose body is still incomplete: (flags, body length).
    pending: Option<(u8, usize)>,
}

impl FrameDecoder {
    /// A decoder refusing frames whose body is larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            max_frame,
            pending: None,
        }
    }

    /// Decode the next frame from the front of `buf`, consuming its bytes. `Ok(None)` = need more input.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let (flags, len) = match self.pending {
            Some(h) => h,
            None => {
                let Some(&flags) = buf.first() else {
                    return Ok(None);
                };
                let long = flags & FLAG_LONG != 0;
                let header_len = if long { 9 } else { 2 };
                if buf.len() < header_len {
                    return Ok(None);
                }
                let size: u64 = if long {
                    u64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"))
                } else {
                    buf[1] as u64
                };
                if size > self.max_frame as u64 {
                    return Err(CodecError::FrameTooLarge {
                        size,
                        max: self.max_frame,
                    });
                }
                buf.advance(header_len);
                let h = (flags, size as usize);
                self.pending = Some(h);
                h
            }
        };
        if buf.len() < len {
            return Ok(None);
        }
        self.pending = None;
        let body = buf.split_to(len).freeze();
        Ok(Some(Frame {
            more: flags & FLAG_MORE != 0,
            command: flags & FLAG_COMMAND != 0,
            body,
        }))
    }

    /// Fast path for the common case: when no header is pending and `buf` starts with a complete
    /// final data frame (no MORE, no COMMAND flag) within the size limit, split its body off and
    /// return it. Anything else (commands, multipart, incomplete input, oversize) returns `None`
    /// without consuming a byte, and the caller uses [`FrameDecoder::decode`], which handles it all.
    #[inline]
    pub fn decode_final_data(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        if self.pending.is_some() {
            return None;
        }
        let (header_len, len) = match buf.first() {
            Some(0) if buf.len() >= 2 => (2, buf[1] as usize),
            Some(&FLAG_LONG) if buf.len() >= 9 => {
                let size = u64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"));
                if size > self.max_frame as u64 {
                    return None;
                }
                (9, size as usize)
            }
            _ => return None,
        };
        if len > self.max_frame || buf.len() - header_len < len {
            return None;
        }
        buf.advance(header_len);
        Some(buf.split_to(len).freeze())
    }

    /// Fast path for a whole data message of two frames (a ZRE message: its ZRE frame, then one
    /// content frame), the shape of almost every message between zmesh nodes: when no header is
    /// pending and `buf` starts with a complete data frame with MORE followed by a complete final
    /// data frame, both within the size limit and together within `limit` (counted like the
    /// general path: body + 32 per frame), split both off. Anything else returns `None` without
    /// consuming a byte, and the caller takes the general path ([`FrameDecoder::decode`]).
    #[inline]
    pub fn decode_data_pair(&mut self, buf: &mut BytesMut, limit: usize) -> Option<[Bytes; 2]> {
        if self.pending.is_some() {
            return None;
        }
        let (h1, n1) = self.data_header(buf, 0, FLAG_MORE)?;
        let second = h1 + n1;
        let (h2, n2) = self.data_header(buf, second, 0)?;
        if buf.len() - second - h2 < n2 || (n1 + 32) + (n2 + 32) > limit.saturating_add(32) {
            return None;
        }
        buf.advance(h1);
        let a = buf.split_to(n1).freeze();
        buf.advance(h2);
        let b = buf.split_to(n2).freeze();
        Some([a, b])
    }

    /// [`FrameDecoder::decode_data_pair`] for a first frame of at most [`SHORT_FIRST`] bytes,
    /// handed over as a copy (`first` is filled and its length returned) instead of a `Bytes`:
    /// only the second frame is split off the read buffer, so the message costs one reference
    /// count on the buffer instead of two. `None` (nothing consumed) whenever `decode_data_pair`
    /// would return `None`, or the first frame is longer.
    #[inline]
    pub fn decode_data_pair_short(
        &mut self,
        buf: &mut BytesMut,
        limit: usize,
        first: &mut [u8; SHORT_FIRST],
    ) -> Option<(usize, Bytes)> {
        if self.pending.is_some() {
            return None;
        }
        let (h1, n1) = self.data_header(buf, 0, FLAG_MORE)?;
        if n1 > SHORT_FIRST {
            return None;
        }
        let second = h1 + n1;
        let (h2, n2) = self.data_header(buf, second, 0)?;
        if buf.len() - second - h2 < n2 || (n1 + 32) + (n2 + 32) > limit.saturating_add(32) {
            return None;
        }
        first[..n1].copy_from_slice(&buf[h1..second]);
        buf.advance(second + h2);
        Some((n1, buf.split_to(n2).freeze()))
    }

    /// The header at `at` of a data frame whose flags are exactly `more` (plus LONG), within the
    /// size limit and whose header is complete: (header length, body length). For the first frame
    /// of a pair the body must be complete too (the second header follows it).
    #[inline]
    fn data_header(&self, buf: &[u8], at: usize, more: u8) -> Option<(usize, usize)> {
        let rest = buf.get(at..)?;
        let (header_len, len) = match *rest.first()? {
            f if f == more && rest.len() >= 2 => (2, rest[1] as usize),
            f if f == more | FLAG_LONG && rest.len() >= 9 => {
                let size = u64::from_be_bytes(rest[1..9].try_into().expect("8 bytes"));
                if size > self.max_frame as u64 {
                    return None;
                }
                (9, size as usize)
            }
            _ => return None,
        };
        if len > self.max_frame || (more != 0 && rest.len() - header_len < len) {
            return None;
        }
        Some((header_len, len))
    }

    /// Bytes still missing for the body of a frame whose header was already read (0 if none).
    /// Used as a hint to reserve read-buffer space once for a large frame.
    pub fn body_remaining(&self, buffered: usize) -> usize {
        match self.pending {
            Some((_, len)) => len.saturating_sub(buffered),
            None => 0,
        }
    }
}

/// Longest first frame [`FrameDecoder::decode_data_pair_short`] hands over as a copy.
pub const SHORT_FIRST: usize = 64;

/// Flags octet for a frame.
fn flags(more: bool, command: bool, len: usize) -> u8 {
    let mut f = 0;
    if more {
        f |= FLAG_MORE;
    }
    if command {
        f |= FLAG_COMMAND;
    }
    if len > 255 {
        f |= FLAG_LONG;
    }
    f
}

/// Append the header of a frame of `len` body bytes (short form up to 255, long form above).
/// Used with vectored writes: header copied into the write buffer, body written from its own `Bytes`.
pub fn encode_frame_header(more: bool, command: bool, len: usize, out: &mut BytesMut) {
    let f = flags(more, command, len);
    if len > 255 {
        out.reserve(9);
        out.put_u8(f);
        out.put_u64(len as u64);
    } else {
        out.reserve(2);
        out.put_u8(f);
        out.put_u8(len as u8);
    }
}

/// Append a whole frame (header and a copy of the body).
pub fn encode_frame(more: bool, command: bool, body: &[u8], out: &mut BytesMut) {
    encode_frame_header(more, command, body.len(), out);
    out.extend_from_slice(body);
}

/// Connection metadata carried in READY (and, later, in CURVE's INITIATE): ordered name/value pairs.
/// Names compare case-insensitively, as the spec requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(pub Vec<(String, Bytes)>);

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Metadata(Vec::new())
    }

    /// Builder: append a property.
    pub fn with(mut self, name: &str, value: impl Into<Bytes>) -> Self {
        self.0.push((name.to_string(), value.into()));
        self
    }

    /// Value of the first property called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Append the wire form (name-size name value-size value)*.
    pub fn encode_into(&self, out: &mut BytesMut) {
        for (name, value) in &self.0 {
            let n = &name.as_bytes()[..name.len().min(255)];
            out.put_u8(n.len() as u8);
            out.extend_from_slice(n);
            out.put_u32(value.len() as u32);
            out.extend_from_slice(value);
        }
    }

    /// Parse the wire form.
    pub fn decode(mut b: &[u8]) -> Result<Metadata, CodecError> {
        let mut props = Vec::new();
        while !b.is_empty() {
            let n = b[0] as usize;
            if n == 0 {
                return Err(CodecError::InvalidName("metadata"));
            }
            if b.len() < 1 + n + 4 {
                return Err(CodecError::Truncated("metadata"));
            }
            let name = &b[1..1 + n];
            if !name.iter().all(|c| c.is_ascii_graphic()) {
                return Err(CodecError::InvalidName("metadata"));
            }
            let name = std::str::from_utf8(name).expect("ascii").to_string();
            let vlen = u32::from_be_bytes(b[1 + n..5 + n].try_into().expect("4 bytes")) as usize;
            b = &b[5 + n..];
            if b.len() < vlen {
                return Err(CodecError::Truncated("metadata value"));
            }
            props.push((name, Bytes::copy_from_slice(&b[..vlen])));
            b = &b[vlen..];
        }
        Ok(Metadata(props))
    }
}

/// A ZMTP command (the body of a frame with the COMMAND flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// NULL-mechanism handshake: our metadata.
    Ready(Metadata),
    /// Fatal error with a human-readable reason (at most 255 bytes on the wire).
    Error(String),
    /// Heartbeat request: time-to-live in deciseconds and up to 16 bytes of context.
    Ping {
        /// Time-to-live in tenths of a second (0 = none).
        ttl_ds: u16,
        /// Context to echo in the PONG.
        context: Bytes,
    },
    /// Heartbeat reply echoing the PING's context.
    Pong {
        /// Echoed context.
        context: Bytes,
    },
    /// Any other command (e.g. CURVE's HELLO/WELCOME, SUBSCRIBE): name and raw data.
    Other {
        /// Command name.
        name: String,
        /// Raw command data after the name.
        data: Bytes,
    },
}

fn put_name(out: &mut BytesMut, name: &str) {
    out.put_u8(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

impl Command {
    /// Encode to a command body (name-size, name, data); wrap it in a frame with the COMMAND flag.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        match self {
            Command::Ready(m) => {
                put_name(&mut out, "READY");
                m.encode_into(&mut out);
            }
            Command::Error(reason) => {
                put_name(&mut out, "ERROR");
                // Cut at 255 bytes on a char boundary.
                let mut end = reason.len().min(255);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.put_u8(end as u8);
                out.extend_from_slice(&reason.as_bytes()[..end]);
            }
            Command::Ping { ttl_ds, context } => {
                put_name(&mut out, "PING");
                out.put_u16(*ttl_ds);
                out.extend_from_slice(&context[..context.len().min(16)]);
            }
            Command::Pong { context } => {
                put_name(&mut out, "PONG");
                out.extend_from_slice(&context[..context.len().min(16)]);
            }
            Command::Other { name, data } => {
                put_name(&mut out, &name[..name.len().min(255)]);
                out.extend_from_slice(data);
            }
        }
        out.freeze()
    }

    /// Decode a command body.
    pub fn decode(body: &[u8]) -> Result<Command, CodecError> {
        let Some(&n) = body.first() else {
            return Err(CodecError::Truncated("command name"));
        };
        let n = n as usize;
        if n == 0 {
            return Err(CodecError::InvalidName("command"));
        }
        if body.len() < 1 + n {
            return Err(CodecError::Truncated("command name"));
        }
        let name = &body[1..1 + n];
        let data = &body[1 + n..];
        match name {
            b"READY" => Ok(Command::Ready(Metadata::decode(data)?)),
            b"ERROR" => {
                let Some(&len) = data.first() else {
                    return Err(CodecError::Truncated("ERROR reason"));
                };
                let len = len as usize;
                if data.len() < 1 + len {
                    return Err(CodecError::Truncated("ERROR reason"));
                }
                Ok(Command::Error(
                    String::from_utf8_lossy(&data[1..1 + len]).into_owned(),
                ))
            }
            b"PING" => {
                if data.len() < 2 {
                    return Err(CodecError::Truncated("PING"));
                }
                let ctx = &data[2..];
                if ctx.len() > 16 {
                    return Err(CodecError::TooLong("PING context"));
                }
                Ok(Command::Ping {
                    ttl_ds: u16::from_be_bytes([data[0], data[1]]),
                    context: Bytes::copy_from_slice(ctx),
                })
            }
            b"PONG" => {
                if data.len() > 16 {
                    return Err(CodecError::TooLong("PONG context"));
                }
                Ok(Command::Pong {
                    context: Bytes::copy_from_slice(data),
                })
            }
            _ => {
                if !name.iter().all(|c| c.is_ascii_graphic()) {
                    return Err(CodecError::InvalidName("command"));
                }
                Ok(Command::Other {
                    name: String::from_utf8_lossy(name).into_owned(),
                    data: Bytes::copy_from_slice(data),
                })
            }
        }
    }

    /// The command name of an encoded body, without decoding the rest (cheap dispatch).
    pub fn peek_name(body: &[u8]) -> Option<&[u8]> {
        let n = *body.first()? as usize;
        body.get(1..1 + n)
    }
}
