//! The control layer's messages (`docs/protocol.md` §5): one kind, STATE, whose payload is a
//! node's whole routable state. Limits and validation rules are written once here and applied
//! both when a node sets its own options and when it decodes a peer's.
//!
//! ```text
//! STATE payload (all integers big-endian):
//! version  u64                 increases with every change; older ones are ignored
//! n        u8                  options, at most MAX_OPTIONS, keys strictly ascending
//!   klen u8,  key   (UTF-8)    1..=255 bytes of filter key characters
//!   vlen u16, value (UTF-8)    at most MAX_VALUE bytes
//! r        u16                 request patterns served, at most MAX_PATTERNS
//!   plen u8,  pattern (UTF-8)  a valid pattern (`*`, `**` globs)
//! t        u16                 tick patterns served, at most MAX_PATTERNS
//!   plen u8,  pattern (UTF-8)
//! (nothing after)
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::filter::is_key_char;
use crate::pattern::Pattern;

/// Kind of the STATE message (the only control kind of version 1).
pub const STATE: u8 = 1;

/// Most options a node can have.
pub const MAX_OPTIONS: usize = 64;
/// Longest option value, in bytes.
pub const MAX_VALUE: usize = 1024;
/// Longest option key, in bytes.
pub const MAX_KEY: usize = 255;
/// Most request (and, separately, tick) patterns a node advertises.
pub const MAX_PATTERNS: usize = 256;

/// A node's options: key to value, ordered (the wire order).
pub type Options = BTreeMap<String, String>;

/// A node's routable state: what it says about itself to every zmesh peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Increases with every change.
    pub version: u64,
    /// Its options.
    pub options: Options,
    /// Patterns it serves requests for.
    pub requests: Vec<Pattern>,
    /// Patterns it serves ticks for.
    pub ticks: Vec<Pattern>,
}

/// Why an option, or a STATE payload, is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The payload ends inside the named field.
    #[error("STATE truncated in {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("{0} trailing bytes after STATE")]
    Trailing(usize),
    /// A string is not UTF-8.
    #[error("STATE {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// An empty key, or one with characters a filter cannot name.
    #[error(
        "bad option key {0:?}: 1..=255 bytes, no white space or = ! ^ ~ < > , ; ( ) | @ \" \\ *"
    )]
    BadKey(String),
    /// A value over [`MAX_VALUE`] bytes.
    #[error("option value of {0} bytes exceeds {MAX_VALUE}")]
    ValueTooLong(usize),
    /// More than [`MAX_OPTIONS`] options or [`MAX_PATTERNS`] patterns.
    #[error("more than {0} {1}")]
    TooMany(usize, &'static str),
    /// Keys not strictly ascending (a duplicate, or not the canonical order).
    #[error("option keys out of order at {0:?}")]
    Unordered(String),
    /// A pattern that does not parse.
    #[error("bad pattern {0:?}")]
    BadPattern(String),
}

/// Checks an option key (the rule for our own options and for peers').
pub fn validate_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY || !key.chars().all(is_key_char) {
        return Err(StateError::BadKey(key.to_owned()));
    }
    Ok(())
}

/// Checks an option value.
pub fn validate_value(value: &str) -> Result<(), StateError> {
    if value.len() > MAX_VALUE {
        return Err(StateError::ValueTooLong(value.len()));
    }
    Ok(())
}

impl State {
    /// Encodes the payload. The caller keeps the limits ([`validate_key`], [`validate_value`],
    /// [`MAX_OPTIONS`], [`MAX_PATTERNS`]); patterns beyond the limit are not sent.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        b.put_u64(self.version);
        let n = self.options.len().min(MAX_OPTIONS);
        b.put_u8(n as u8);
        for (k, v) in self.options.iter().take(n) {
            b.put_u8(k.len().min(MAX_KEY) as u8);
            b.put_slice(&k.as_bytes()[..k.len().min(MAX_KEY)]);
            let v = &v.as_bytes()[..v.len().min(MAX_VALUE)];
            b.put_u16(v.len() as u16);
            b.put_slice(v);
        }
        for list in [&self.requests, &self.ticks] {
            let n = list.len().min(MAX_PATTERNS);
            b.put_u16(n as u16);
            for p in list.iter().take(n) {
                // A valid pattern is at most 255 bytes.
                b.put_u8(p.as_str().len() as u8);
                b.put_slice(p.as_str().as_bytes());
            }
        }
        b.freeze()
    }

    /// Decodes and validates a payload.
    pub fn decode(payload: &[u8]) -> Result<State, StateError> {
        let mut r = Reader { buf: payload };
        let version = u64::from_be_bytes(r.array("version")?);
        let n = r.array::<1>("option count")?[0] as usize;
        if n > MAX_OPTIONS {
            return Err(StateError::TooMany(MAX_OPTIONS, "options"));
        }
        let mut options = Options::new();
        for _ in 0..n {
            let kl = r.array::<1>("key length")?[0] as usize;
            let key = r.str(kl, "key")?;
            validate_key(&key)?;
            let vl = u16::from_be_bytes(r.array("value length")?) as usize;
            let value = r.str(vl, "value")?;
            validate_value(&value)?;
            if options.last_key_value().is_some_and(|(k, _)| *k >= key) {
                return Err(StateError::Unordered(key));
            }
            options.insert(key, value);
        }
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = u16::from_be_bytes(r.array("pattern count")?) as usize;
            if n > MAX_PATTERNS {
                return Err(StateError::TooMany(MAX_PATTERNS, "patterns"));
            }
            for _ in 0..n {
                let pl = r.array::<1>("pattern length")?[0] as usize;
                let text = r.str(pl, "pattern")?;
                list.push(Pattern::parse(&text).map_err(|_| StateError::BadPattern(text))?);
            }
        }
        if !r.buf.is_empty() {
            return Err(StateError::Trailing(r.buf.len()));
        }
        let [requests, ticks] = lists;
        Ok(State {
            version,
            options,
            requests,
            ticks,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], StateError> {
        if self.buf.len() < n {
            return Err(StateError::Truncated(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<String, StateError> {
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| StateError::NotUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_hex as hex;

    /// The example in docs/protocol.md §5.
    #[test]
    fn golden() {
        let s = State {
            version: 3,
            options: [("role".to_owned(), "db".to_owned())].into(),
            requests: vec![Pattern::parse("sql.*").unwrap()],
            ticks: vec![],
        };
        let want = concat!(
            "0000000000000003", // version
            "01",               // one option
            "04",
            "726f6c65", // "role"
            "0002",
            "6462", // "db"
            "0001",
            "05",
            "73716c2e2a", // "sql.*"
            "0000"        // no tick pattern
        );
        assert_eq!(hex(&s.encode()), want);
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn typed_errors() {
        let ok = State {
            version: 1,
            options: [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ]
            .into(),
            ..State::default()
        }
        .encode();
        assert_eq!(
            State::decode(&ok[..5]),
            Err(StateError::Truncated("version"))
        );
        let mut trailing = ok.to_vec();
        trailing.push(0);
        assert_eq!(State::decode(&trailing), Err(StateError::Trailing(1)));
        // Swap the keys: out of order.
        let mut swapped = ok.to_vec();
        swapped[10] = b'b';
        swapped[15] = b'a';
        assert_eq!(
            State::decode(&swapped),
            Err(StateError::Unordered("a".into()))
        );
        let mut bad_key = ok.to_vec();
        bad_key[10] = b'=';
        assert_eq!(State::decode(&bad_key), Err(StateError::BadKey("=".into())));
        let mut too_many = ok.to_vec();
        too_many[8] = 65;
        assert_eq!(
            State::decode(&too_many),
            Err(StateError::TooMany(MAX_OPTIONS, "options"))
        );
        let pat = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, b'a', b'*', 0, 0];
        assert_eq!(
            State::decode(&pat),
            Err(StateError::BadPattern("a*".into()))
        );
        assert_eq!(
            validate_value(&"x".repeat(MAX_VALUE + 1)),
            Err(StateError::ValueTooLong(MAX_VALUE + 1))
        );
        assert!(
            validate_key("zone").is_ok()
                && validate_key("").is_err()
                && validate_key("a b").is_err()
        );
    }

    fn arb_state() -> impl Strategy<Value = State> {
        let pat = prop_oneof![Just("a.*"), Just("**"), Just("x.y"), Just("svc.**.z")]
            .prop_map(|p| Pattern::parse(p).unwrap());
        (
            any::<u64>(),
            proptest::collection::btree_map("[a-zA-Z0-9_.-]{1,8}", ".{0,12}", 0..6),
            proptest::collection::vec(pat.clone(), 0..4),
            proptest::collection::vec(pat, 0..4),
        )
            .prop_map(|(version, options, requests, ticks)| State {
                version,
                options,
                requests,
                ticks,
            })
    }

    proptest! {
        #[test]
        fn round_trip(s in arb_state()) {
            prop_assert_eq!(State::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn any_bytes_decode_or_typed_error(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(s) = State::decode(&b) {
                prop_assert_eq!(&s.encode()[..], &b[..]);
            }
        }
    }
}
