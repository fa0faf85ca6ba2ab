//! The zmesh envelope: how every layer above ZRE travels inside one WHISPER/SHOUT content frame.
//!
//! ZRE has a closed set of commands, and Zyre, Pyre and zyre.js drop a peer after one message they
//! cannot decode. So zmesh never adds ZRE command ids: a layer message is the **single content
//! frame** of an ordinary WHISPER (or SHOUT), and it is only ever sent to peers that announced the
//! layer in their HELLO ([`crate::caps`]). A plain ZRE peer never receives one.
//!
//! The layout is specified in `docs/protocol.md` (with golden vectors in this module's tests):
//!
//! ```text
//! 0   4  magic FF 5A 4D 01   (0xFF is never the first byte of UTF-8 text; "ZM"; version 1)
//! 4   1  layer               (which layer owns the message, see Layer)
//! 5   1  kind                (meaning defined by the layer)
//! 6   1  flags               (which optional fields follow; unknown bits are an error)
//! 7   8  id, u64 BE          (unique per origin node: (origin, id) names a message mesh-wide)
//! [8  corr, u64 BE]          if F_CORR: the id this message answers (a reply's original id)
//! [2  attempt, u16 BE]       if F_ATTEMPT: retry count (0 = first try)
//! [4  ttl_ms, u32 BE]        if F_TTL: time the sender still waits, relative (no clock skew)
//! [16 origin uuid]           if F_ORIGIN: the original sender, when relayed (else: the ZRE sender)
//! [16 dest uuid]             if F_DEST: the final receiver, when relayed (else: the ZRE receiver)
//! [2+N subject]              if F_SUBJECT: u16 BE length + UTF-8 (event, topic, service name)
//! rest payload               opaque bytes, to the end of the frame
//! ```
//!
//! `F_POSS_DUP` carries no field: the sender may have sent this (origin, id) before.
//!
//! Decoding is a pure function from bytes to [`Envelope`] or a typed [`EnvelopeError`]; it never
//! panics and never allocates more than the subject. The payload is a zero-copy slice of the frame.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;
use uuid::Uuid;

/// The four bytes every envelope starts with: `0xFF`, `"ZM"`, version 1.
pub const MAGIC: [u8; 4] = [0xFF, b'Z', b'M', VERSION];
/// The envelope version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the fixed header (magic, layer, kind, flags, id).
pub const FIXED_LEN: usize = 15;
/// Longest subject (event name, topic, service): the u16 length field's limit.
pub const MAX_SUBJECT: usize = u16::MAX as usize;

/// Flag: the `corr` field is present.
pub const F_CORR: u8 = 1 << 0;
/// Flag: the `attempt` field is present.
pub const F_ATTEMPT: u8 = 1 << 1;
/// Flag: the `ttl_ms` field is present.
pub const F_TTL: u8 = 1 << 2;
/// Flag: the `origin` field is present.
pub const F_ORIGIN: u8 = 1 << 3;
/// Flag: the `dest` field is present.
pub const F_DEST: u8 = 1 << 4;
/// Flag: the `subject` field is present.
pub const F_SUBJECT: u8 = 1 << 5;
/// Flag: this may be a duplicate of a message sent before (a retry).
pub const F_POSS_DUP: u8 = 1 << 6;
/// Every flag bit version 1 defines.
pub const KNOWN_FLAGS: u8 = F_CORR | F_ATTEMPT | F_TTL | F_ORIGIN | F_DEST | F_SUBJECT | F_POSS_DUP;

/// Which layer a message belongs to (envelope byte 4). Written once here so no two layers can
/// claim the same byte; the layers of the roadmap have their numbers reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Layer(pub u8);

impl Layer {
    /// Control messages between zmesh nodes (state exchange; reserved).
    pub const CONTROL: Layer = Layer(1);
    /// Request/reply and ticks ([`crate::reqrep`]).
    pub const REQREP: Layer = Layer(2);
    /// Distributed event emitter (reserved).
    pub const EVENTS: Layer = Layer(3);
    /// Named services (reserved).
    pub const SERVICES: Layer = Layer(4);
    /// Leader election (reserved).
    pub const ELECTION: Layer = Layer(5);
    /// Distributed logging (reserved).
    pub const LOG: Layer = Layer(6);
    /// File distribution (reserved).
    pub const FILES: Layer = Layer(7);
}

/// True if `frame` claims to be an envelope (starts with [`MAGIC`]'s first three bytes, any
/// version). Cheap enough for every WHISPER: a 3-byte compare.
pub fn is_envelope(frame: &[u8]) -> bool {
    frame.len() >= 3 && frame[..3] == MAGIC[..3]
}

/// One decoded (or to-be-encoded) envelope. Optional fields are `None` when their flag is clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The layer that owns the message.
    pub layer: Layer,
    /// The message kind, defined by the layer.
    pub kind: u8,
    /// Unique per origin node.
    pub id: u64,
    /// The id this message answers.
    pub corr: Option<u64>,
    /// Retry count.
    pub attempt: Option<u16>,
    /// Milliseconds the sender still waits for an answer.
    pub ttl_ms: Option<u32>,
    /// Original sender, when relayed.
    pub origin: Option<Uuid>,
    /// Final receiver, when relayed.
    pub dest: Option<Uuid>,
    /// Event name, topic or service name.
    pub subject: Option<String>,
    /// The sender may have sent this message before.
    pub possible_duplicate: bool,
    /// Opaque payload.
    pub payload: Bytes,
}

/// Why a frame is not a usable envelope. Every variant is bad input from the network: counted,
/// logged at debug and dropped by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Does not start with the magic bytes.
    #[error("not a zmesh envelope")]
    NotEnvelope,
    /// A version this crate does not read.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// The frame ends inside the named field.
    #[error("envelope truncated in {0}")]
    Truncated(&'static str),
    /// Flag bits this version does not define.
    #[error("unknown envelope flags {0:#04x}")]
    UnknownFlags(u8),
    /// The subject is not UTF-8.
    #[error("envelope subject is not UTF-8")]
    SubjectNotUtf8,
    /// Encoding only: the subject is longer than [`MAX_SUBJECT`].
    #[error("subject of {0} bytes exceeds {MAX_SUBJECT}")]
    SubjectTooLong(usize),
}

impl Envelope {
    /// An envelope with no optional field and an empty payload.
    pub fn new(layer: Layer, kind: u8, id: u64) -> Envelope {
        Envelope {
            layer,
            kind,
            id,
            corr: None,
            attempt: None,
            ttl_ms: None,
            origin: None,
            dest: None,
            subject: None,
            possible_duplicate: false,
            payload: Bytes::new(),
        }
    }

    /// The flags byte this envelope encodes with.
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if self.corr.is_some() {
            f |= F_CORR;
        }
        if self.attempt.is_some() {
            f |= F_ATTEMPT;
        }
        if self.ttl_ms.is_some() {
            f |= F_TTL;
        }
        if self.origin.is_some() {
            f |= F_ORIGIN;
        }
        if self.dest.is_some() {
            f |= F_DEST;
        }
        if self.subject.is_some() {
            f |= F_SUBJECT;
        }
        if self.possible_duplicate {
            f |= F_POSS_DUP;
        }
        f
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + self.corr.map_or(0, |_| 8)
            + self.attempt.map_or(0, |_| 2)
            + self.ttl_ms.map_or(0, |_| 4)
            + self.origin.map_or(0, |_| 16)
            + self.dest.map_or(0, |_| 16)
            + self.subject.as_ref().map_or(0, |s| 2 + s.len())
            + self.payload.len()
    }

    /// Encodes into one frame. Fails only for a subject over [`MAX_SUBJECT`] bytes.
    pub fn encode(&self) -> Result<Bytes, EnvelopeError> {
        if let Some(s) = &self.subject {
            if s.len() > MAX_SUBJECT {
                return Err(EnvelopeError::SubjectTooLong(s.len()));
            }
        }
        let mut b = BytesMut::with_capacity(self.encoded_len());
        b.put_slice(&MAGIC);
        b.put_u8(self.layer.0);
        b.put_u8(self.kind);
        b.put_u8(self.flags());
        b.put_u64(self.id);
        if let Some(c) = self.corr {
            b.put_u64(c);
        }
        if let Some(a) = self.attempt {
            b.put_u16(a);
        }
        if let Some(t) = self.ttl_ms {
            b.put_u32(t);
        }
        if let Some(o) = self.origin {
            b.put_slice(o.as_bytes());
        }
        if let Some(d) = self.dest {
            b.put_slice(d.as_bytes());
        }
        if let Some(s) = &self.subject {
            // Checked above: fits in u16.
            b.put_u16(s.len() as u16);
            b.put_slice(s.as_bytes());
        }
        b.put_slice(&self.payload);
        Ok(b.freeze())
    }

    /// Decodes one frame. The payload is a zero-copy slice of `frame`.
    pub fn decode(frame: &Bytes) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader { buf: frame, pos: 0 };
        let magic = r.take(4, "magic").map_err(|_| EnvelopeError::NotEnvelope)?;
        if magic[..3] != MAGIC[..3] {
            return Err(EnvelopeError::NotEnvelope);
        }
        if magic[3] != VERSION {
            return Err(EnvelopeError::Version(magic[3]));
        }
        let layer = Layer(r.u8("layer")?);
        let kind = r.u8("kind")?;
        let flags = r.u8("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(EnvelopeError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        let id = r.u64("id")?;
        let corr = (flags & F_CORR != 0).then(|| r.u64("corr")).transpose()?;
        let attempt = (flags & F_ATTEMPT != 0)
            .then(|| r.u16("attempt"))
            .transpose()?;
        let ttl_ms = (flags & F_TTL != 0).then(|| r.u32("ttl")).transpose()?;
        let origin = (flags & F_ORIGIN != 0)
            .then(|| r.uuid("origin"))
            .transpose()?;
        let dest = (flags & F_DEST != 0).then(|| r.uuid("dest")).transpose()?;
        let subject = if flags & F_SUBJECT != 0 {
            let n = r.u16("subject length")? as usize;
            let s = r.take(n, "subject")?;
            Some(
                std::str::from_utf8(s)
                    .map_err(|_| EnvelopeError::SubjectNotUtf8)?
                    .to_owned(),
            )
        } else {
            None
        };
        let payload = frame.slice(r.pos..);
        Ok(Envelope {
            layer,
            kind,
            id,
            corr,
            attempt,
            ttl_ms,
            origin,
            dest,
            subject,
            possible_duplicate: flags & F_POSS_DUP != 0,
            payload,
        })
    }
}

/// A bounds-checked cursor; every read names the field it would truncate.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EnvelopeError::Truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, EnvelopeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn uuid(&mut self, what: &'static str) -> Result<Uuid, EnvelopeError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_hex as hex;

    #[test]
    fn golden_minimal() {
        let mut e = Envelope::new(Layer::REQREP, 2, 0x0102030405060708);
        e.payload = Bytes::from_static(b"hi");
        let b = e.encode().unwrap();
        assert_eq!(
            hex(&b),
            "ff5a4d01020200010203040506070868 69".replace(' ', "")
        );
        assert_eq!(Envelope::decode(&b).unwrap(), e);
    }

    #[test]
    fn golden_all_fields() {
        let e = Envelope {
            layer: Layer::REQREP,
            kind: 1,
            id: 7,
            corr: Some(9),
            attempt: Some(2),
            ttl_ms: Some(10_000),
            origin: Some(Uuid::from_bytes([0x11; 16])),
            dest: Some(Uuid::from_bytes([0x22; 16])),
            subject: Some("a.b".into()),
            possible_duplicate: true,
            payload: Bytes::from_static(b"\x00"),
        };
        let b = e.encode().unwrap();
        let want = concat!(
            "ff5a4d01",
            "02",
            "01",
            "7f",
            "0000000000000007", // fixed
            "0000000000000009", // corr
            "0002",             // attempt
            "00002710",         // ttl 10 000 ms
            "11111111111111111111111111111111",
            "22222222222222222222222222222222",
            "0003",
            "612e62", // subject "a.b"
            "00"      // payload
        );
        assert_eq!(hex(&b), want);
        assert_eq!(b.len(), e.encoded_len());
        assert_eq!(Envelope::decode(&b).unwrap(), e);
    }

    /// The example in docs/protocol.md §3.
    #[test]
    fn doc_example() {
        let mut e = Envelope::new(Layer::REQREP, 1, 7);
        e.ttl_ms = Some(10_000);
        e.subject = Some("a.b".into());
        e.payload = Bytes::from_static(b"\x00");
        let want = "ff5a4d01 02 01 24 0000000000000007 00002710 0003 612e62 00".replace(' ', "");
        assert_eq!(hex(&e.encode().unwrap()), want);
    }

    #[test]
    fn typed_errors() {
        let d = |b: &[u8]| Envelope::decode(&Bytes::copy_from_slice(b));
        assert_eq!(d(b""), Err(EnvelopeError::NotEnvelope));
        assert_eq!(d(b"hello world"), Err(EnvelopeError::NotEnvelope));
        assert_eq!(d(&[0xff, b'Z', b'M', 2]), Err(EnvelopeError::Version(2)));
        assert_eq!(
            d(&[0xff, b'Z', b'M', 1, 2, 1]),
            Err(EnvelopeError::Truncated("flags"))
        );
        assert_eq!(
            d(&[0xff, b'Z', b'M', 1, 2, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(EnvelopeError::UnknownFlags(0x80))
        );
        assert_eq!(
            d(&[0xff, b'Z', b'M', 1, 2, 1, F_CORR, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(EnvelopeError::Truncated("corr"))
        );
        let mut e = Envelope::new(Layer::REQREP, 1, 1);
        e.subject = Some("x".into());
        let mut b = e.encode().unwrap().to_vec();
        *b.last_mut().unwrap() = 0xC0; // lone continuation-less lead byte
        assert_eq!(d(&b), Err(EnvelopeError::SubjectNotUtf8));
        e.subject = Some("x".repeat(MAX_SUBJECT + 1));
        assert_eq!(
            e.encode(),
            Err(EnvelopeError::SubjectTooLong(MAX_SUBJECT + 1))
        );
    }

    #[test]
    fn text_is_never_an_envelope() {
        assert!(!is_envelope(b"ZM\x01 hello"));
        assert!(!is_envelope("é".as_bytes()));
        assert!(is_envelope(&MAGIC));
    }

    fn arb_envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<(u8, u8, u64)>(),
            any::<(Option<u64>, Option<u16>, Option<u32>)>(),
            any::<(Option<[u8; 16]>, Option<[u8; 16]>)>(),
            proptest::option::of(".{0,40}"),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(
                |((layer, kind, id), (corr, attempt, ttl_ms), (o, d), subject, dup, p)| Envelope {
                    layer: Layer(layer),
                    kind,
                    id,
                    corr,
                    attempt,
                    ttl_ms,
                    origin: o.map(Uuid::from_bytes),
                    dest: d.map(Uuid::from_bytes),
                    subject,
                    possible_duplicate: dup,
                    payload: Bytes::from(p),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(e in arb_envelope()) {
            let b = e.encode().unwrap();
            prop_assert_eq!(b.len(), e.encoded_len());
            prop_assert_eq!(Envelope::decode(&b).unwrap(), e);
        }

        #[test]
        fn any_bytes_decode_or_typed_error(mut b in proptest::collection::vec(any::<u8>(), 0..120), magic in any::<bool>()) {
            if magic && b.len() >= 4 {
                b[..4].copy_from_slice(&MAGIC);
            }
            let frame = Bytes::from(b);
            if let Ok(e) = Envelope::decode(&frame) {
                // Whatever decodes re-encodes to the same bytes (one encoding per value).
                prop_assert_eq!(e.encode().unwrap(), frame);
            }
        }
    }
}
