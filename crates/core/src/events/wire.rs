//! The event emitter's messages (`docs/protocol.md` §7): envelope kinds and the SUBS and CREDIT
//! payloads. Limits are written once here and applied when sending and when decoding.
//!
//! ```text
//! SUBS payload (big-endian): version u64 | window u32 | n u16 | n x (flags u8, plen u8, pattern)
//!   flags bit 0: send me the retained value of matching topics
//!   flags bit 1: flow-controlled: events on matching topics count against my credit
//!   other bits must be 0
//! CREDIT payload: allowed u64  (counted events this subscriber accepts from the publisher, in total)
//! EVENT / RETAINED / FLOW_EVENT: subject = topic, payload = data, id = the publisher's sequence;
//!   FLOW_EVENT is an EVENT that counts against the subscriber's credit
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::pattern::Pattern;

/// A node's subscriptions, whole (sent on meeting and on every change).
pub const SUBS: u8 = 1;
/// An event: `subject` = topic, `id` = the publisher's sequence number.
pub const EVENT: u8 = 2;
/// A retained value replayed to a new subscriber (like EVENT).
pub const RETAINED: u8 = 3;
/// Flow control: how many counted events in total the subscriber accepts from the publisher.
pub const CREDIT: u8 = 4;
/// An event that counts against the subscriber's credit (a flow-controlled pattern matched).
pub const FLOW_EVENT: u8 = 5;

/// Most subscription patterns a node announces.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// SUBS flag: send the retained values of matching topics.
pub const F_RETAINED: u8 = 1;
/// SUBS flag: events on matching topics count against the credit window.
pub const F_FLOW: u8 = 2;

/// One announced subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sub {
    /// What it matches.
    pub pattern: Pattern,
    /// It wants the retained values of matching topics.
    pub retained: bool,
    /// Events it matches count against the credit window.
    pub flow: bool,
}

/// A node's subscriptions as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subs {
    /// Increases with every change.
    pub version: u64,
    /// Credit window: how many counted events the publisher may send ahead of the
    /// subscriber's consumption (used only for flow-controlled patterns).
    pub window: u32,
    /// The subscriptions.
    pub patterns: Vec<Sub>,
}

/// Why a SUBS or CREDIT payload is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its fields.
    #[error("truncated in {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// More than [`MAX_SUBSCRIPTIONS`] patterns.
    #[error("more than {MAX_SUBSCRIPTIONS} subscriptions")]
    TooMany,
    /// A pattern that does not parse, or flag bits that are not defined.
    #[error("bad subscription {0:?}")]
    BadPattern(String),
}

impl Subs {
    /// Encodes the payload (patterns beyond the limit are not sent).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u64(self.version);
        b.put_u32(self.window);
        let n = self.patterns.len().min(MAX_SUBSCRIPTIONS);
        b.put_u16(n as u16);
        for s in self.patterns.iter().take(n) {
            let flags = if s.retained { F_RETAINED } else { 0 } | if s.flow { F_FLOW } else { 0 };
            b.put_u8(flags);
            b.put_u8(s.pattern.as_str().len() as u8);
            b.put_slice(s.pattern.as_str().as_bytes());
        }
        b.freeze()
    }

    /// Decodes and validates a payload.
    pub fn decode(b: &[u8]) -> Result<Subs, WireError> {
        let take = |b: &mut &[u8], n: usize, what| -> Result<Vec<u8>, WireError> {
            if b.len() < n {
                return Err(WireError::Truncated(what));
            }
            let (a, rest) = b.split_at(n);
            *b = rest;
            Ok(a.to_vec())
        };
        let mut r = b;
        let version = u64::from_be_bytes(take(&mut r, 8, "version")?.try_into().unwrap());
        let window = u32::from_be_bytes(take(&mut r, 4, "window")?.try_into().unwrap());
        let n = u16::from_be_bytes(take(&mut r, 2, "count")?.try_into().unwrap()) as usize;
        if n > MAX_SUBSCRIPTIONS {
            return Err(WireError::TooMany);
        }
        let mut patterns = Vec::with_capacity(n);
        for _ in 0..n {
            let flags = take(&mut r, 1, "flags")?[0];
            let len = take(&mut r, 1, "pattern length")?[0] as usize;
            let text = String::from_utf8(take(&mut r, len, "pattern")?)
                .map_err(|e| WireError::BadPattern(String::from_utf8_lossy(e.as_bytes()).into()))?;
            if flags & !(F_RETAINED | F_FLOW) != 0 {
                return Err(WireError::BadPattern(text));
            }
            let pattern = Pattern::parse(&text).map_err(|_| WireError::BadPattern(text))?;
            patterns.push(Sub {
                pattern,
                retained: flags & F_RETAINED != 0,
                flow: flags & F_FLOW != 0,
            });
        }
        if !r.is_empty() {
            return Err(WireError::Trailing(r.len()));
        }
        Ok(Subs {
            version,
            window,
            patterns,
        })
    }
}

/// Encodes a CREDIT payload.
pub fn encode_credit(allowed: u64) -> Bytes {
    Bytes::copy_from_slice(&allowed.to_be_bytes())
}

/// Decodes a CREDIT payload.
pub fn decode_credit(b: &[u8]) -> Result<u64, WireError> {
    match b.len() {
        8 => Ok(u64::from_be_bytes(b.try_into().unwrap())),
        n if n < 8 => Err(WireError::Truncated("allowed")),
        n => Err(WireError::Trailing(n - 8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_hex as hex;

    /// The example in docs/protocol.md §7.
    #[test]
    fn golden() {
        let s = Subs {
            version: 2,
            window: 1024,
            patterns: vec![Sub {
                pattern: Pattern::parse("a.*").unwrap(),
                retained: true,
                flow: true,
            }],
        };
        assert_eq!(
            hex(&s.encode()),
            "0000000000000002 00000400 0001 03 03 612e2a".replace(' ', "")
        );
        assert_eq!(Subs::decode(&s.encode()).unwrap(), s);
        assert_eq!(hex(&encode_credit(5)), "0000000000000005");
        assert_eq!(decode_credit(&encode_credit(5)), Ok(5));
        assert_eq!(decode_credit(b"\x00"), Err(WireError::Truncated("allowed")));
        assert_eq!(decode_credit(&[0; 9]), Err(WireError::Trailing(1)));
        let bad_flag = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 4, 1, b'a'];
        assert_eq!(
            Subs::decode(&bad_flag),
            Err(WireError::BadPattern("a".into()))
        );
        let bad_pat = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, b'a', b'*'];
        assert_eq!(
            Subs::decode(&bad_pat),
            Err(WireError::BadPattern("a*".into()))
        );
        assert_eq!(Subs::decode(&[0; 13]), Err(WireError::Truncated("count")));
    }

    proptest! {
        #[test]
        fn round_trip(version in any::<u64>(), window in any::<u32>(), pats in proptest::collection::vec((prop_oneof![Just("a.*"), Just("**"), Just("x.y.z")], any::<bool>(), any::<bool>()), 0..5)) {
            let s = Subs { version, window, patterns: pats.into_iter().map(|(p, retained, flow)| Sub { pattern: Pattern::parse(p).unwrap(), retained, flow }).collect() };
            prop_assert_eq!(Subs::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn any_bytes_decode_or_typed_error(b in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(s) = Subs::decode(&b) {
                prop_assert_eq!(&s.encode()[..], &b[..]);
            }
        }
    }
}
