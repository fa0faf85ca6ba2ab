//! The zgossip message codec (czmq `src/zgossip_msg.xml`), as pure functions over byte slices.
//!
//! Every zgossip message is one ZMTP frame (after the routing id on the ROUTER side):
//!
//! ```text
//! offset size field
//!  0      2   signature 0xAA 0xA0
//!  2      1   message id: 1 HELLO, 2 PUBLISH, 3 PING, 4 PONG, 5 INVALID
//!  3      1   version, always 1
//! PUBLISH only:
//!  4      1   key length K (a czmq "string")
//!  5      K   key
//!  5+K    4   value length V, big-endian (a czmq "longstr")
//!  9+K    V   value
//!  9+K+V  4   ttl in milliseconds, big-endian
//! ```
//!
//! czmq's decoder ignores bytes after the last field; this one refuses them
//! ([`GossipMsgError::TrailingBytes`]) so that decoding and encoding are exact inverses (czmq never
//! sends any). Keys and values must be UTF-8 (what Zyre puts there is ASCII: a UUID and an
//! endpoint).

use thiserror::Error;

/// The two signature bytes that open every zgossip message.
pub const GOSSIP_SIGNATURE: [u8; 2] = [0xAA, 0xA0];
/// The protocol version every message carries.
pub const GOSSIP_VERSION: u8 = 1;
/// The longest key a PUBLISH can carry (its length is one byte).
pub const GOSSIP_MAX_KEY: usize = 255;

/// Message ids.
const ID_HELLO: u8 = 1;
const ID_PUBLISH: u8 = 2;
const ID_PING: u8 = 3;
const ID_PONG: u8 = 4;
const ID_INVALID: u8 = 5;

/// One zgossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GossipMsg {
    /// A client opens the conversation.
    Hello,
    /// A tuple: `key` = `value`, valid `ttl` milliseconds (czmq never reads the ttl).
    Publish {
        /// The key (Zyre: the node UUID as 32 upper-case hex digits).
        key: String,
        /// The value (Zyre: the node's endpoint, `endpoint|z85-public-key` in secure mode).
        value: String,
        /// Time to live in milliseconds; informational.
        ttl: u32,
    },
    /// A client's heartbeat.
    Ping,
    /// The server's answer to a PING.
    Pong,
    /// The server did not expect this message (e.g. PUBLISH before HELLO); the client should say
    /// HELLO again.
    Invalid,
}

/// Why bytes are not a zgossip message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GossipMsgError {
    /// Shorter than its fields say.
    #[error("zgossip message truncated")]
    Truncated,
    /// The first two bytes are not 0xAA 0xA0.
    #[error("not a zgossip message (bad signature)")]
    BadSignature,
    /// An id outside 1..=5.
    #[error("unknown zgossip message id {0}")]
    UnknownId(u8),
    /// A version other than 1.
    #[error("unsupported zgossip version {0}")]
    BadVersion(u8),
    /// Bytes after the last field.
    #[error("{0} bytes after the end of the zgossip message")]
    TrailingBytes(usize),
    /// A key or value that is not UTF-8.
    #[error("zgossip {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A key longer than 255 bytes cannot be encoded.
    #[error("zgossip key of {0} bytes is longer than 255")]
    KeyTooLong(usize),
}

impl GossipMsg {
    /// The message as one frame body.
    ///
    /// # Errors
    /// [`GossipMsgError::KeyTooLong`] for a key over 255 bytes (a value over 4 GiB cannot exist
    /// in memory here).
    pub fn encode(&self) -> Result<Vec<u8>, GossipMsgError> {
        let (id, extra) = match self {
            GossipMsg::Hello => (ID_HELLO, 0),
            GossipMsg::Publish { key, value, .. } => {
                if key.len() > GOSSIP_MAX_KEY {
                    return Err(GossipMsgError::KeyTooLong(key.len()));
                }
                (ID_PUBLISH, 1 + key.len() + 4 + value.len() + 4)
            }
            GossipMsg::Ping => (ID_PING, 0),
            GossipMsg::Pong => (ID_PONG, 0),
            GossipMsg::Invalid => (ID_INVALID, 0),
        };
        let mut out = Vec::with_capacity(4 + extra);
        out.extend_from_slice(&GOSSIP_SIGNATURE);
        out.push(id);
        out.push(GOSSIP_VERSION);
        if let GossipMsg::Publish { key, value, ttl } = self {
            out.push(key.len() as u8);
            out.extend_from_slice(key.as_bytes());
            let vlen = u32::try_from(value.len()).map_err(|_| GossipMsgError::Truncated)?;
            out.extend_from_slice(&vlen.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
        }
        Ok(out)
    }

    /// Decodes one frame body.
    pub fn decode(data: &[u8]) -> Result<GossipMsg, GossipMsgError> {
        let mut r = Reader(data);
        if r.take(2)? != GOSSIP_SIGNATURE {
            return Err(GossipMsgError::BadSignature);
        }
        let id = r.u8()?;
        if !(ID_HELLO..=ID_INVALID).contains(&id) {
            return Err(GossipMsgError::UnknownId(id));
        }
        let version = r.u8()?;
        if version != GOSSIP_VERSION {
            return Err(GossipMsgError::BadVersion(version));
        }
        let msg = match id {
            ID_HELLO => GossipMsg::Hello,
            ID_PING => GossipMsg::Ping,
            ID_PONG => GossipMsg::Pong,
            ID_INVALID => GossipMsg::Invalid,
            _ => {
                let klen = r.u8()? as usize;
                let key = utf8(r.take(klen)?, "key")?;
                let vlen = r.u32()? as usize;
                let value = utf8(r.take(vlen)?, "value")?;
                let ttl = r.u32()?;
                GossipMsg::Publish { key, value, ttl }
            }
        };
        if !r.0.is_empty() {
            return Err(GossipMsgError::TrailingBytes(r.0.len()));
        }
        Ok(msg)
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            GossipMsg::Hello => "HELLO",
            GossipMsg::Publish { .. } => "PUBLISH",
            GossipMsg::Ping => "PING",
            GossipMsg::Pong => "PONG",
            GossipMsg::Invalid => "INVALID",
        }
    }
}

fn utf8(b: &[u8], what: &'static str) -> Result<String, GossipMsgError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| GossipMsgError::NotUtf8(what))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GossipMsgError> {
        if self.0.len() < n {
            return Err(GossipMsgError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, GossipMsgError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, GossipMsgError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden vectors: the bytes czmq's `zgossip_msg_send` produces for these messages (layout of
    /// `zgossip_msg.c`: signature, id, version, then PUBLISH's string/longstr/number4).
    #[test]
    fn golden_vectors() {
        assert_eq!(GossipMsg::Hello.encode().unwrap(), [0xAA, 0xA0, 1, 1]);
        assert_eq!(GossipMsg::Ping.encode().unwrap(), [0xAA, 0xA0, 3, 1]);
        assert_eq!(GossipMsg::Pong.encode().unwrap(), [0xAA, 0xA0, 4, 1]);
        assert_eq!(GossipMsg::Invalid.encode().unwrap(), [0xAA, 0xA0, 5, 1]);
        let p = GossipMsg::Publish {
            key: "AB".into(),
            value: "tcp://1.2.3.4:5".into(),
            ttl: 0x0102_0304,
        };
        let mut want = vec![0xAA, 0xA0, 2, 1, 2, b'A', b'B', 0, 0, 0, 15];
        want.extend_from_slice(b"tcp://1.2.3.4:5");
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(p.encode().unwrap(), want);
        assert_eq!(GossipMsg::decode(&want).unwrap(), p);
    }

    #[test]
    fn typed_errors() {
        use GossipMsgError::*;
        assert_eq!(GossipMsg::decode(&[]), Err(Truncated));
        assert_eq!(GossipMsg::decode(&[0xAA, 0xA1, 1, 1]), Err(BadSignature));
        assert_eq!(GossipMsg::decode(&[0xAA, 0xA0, 9, 1]), Err(UnknownId(9)));
        assert_eq!(GossipMsg::decode(&[0xAA, 0xA0, 1, 2]), Err(BadVersion(2)));
        assert_eq!(
            GossipMsg::decode(&[0xAA, 0xA0, 1, 1, 0]),
            Err(TrailingBytes(1))
        );
        assert_eq!(
            GossipMsg::decode(&[0xAA, 0xA0, 2, 1, 1, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(NotUtf8("key"))
        );
        assert_eq!(
            GossipMsg::decode(&[0xAA, 0xA0, 2, 1, 0, 0, 0, 0, 9]),
            Err(Truncated)
        );
        let long = GossipMsg::Publish {
            key: "k".repeat(256),
            value: String::new(),
            ttl: 0,
        };
        assert_eq!(long.encode(), Err(KeyTooLong(256)));
    }

    fn any_msg() -> impl Strategy<Value = GossipMsg> {
        prop_oneof![
            Just(GossipMsg::Hello),
            Just(GossipMsg::Ping),
            Just(GossipMsg::Pong),
            Just(GossipMsg::Invalid),
            ("[ -~]{0,255}", ".{0,64}", any::<u32>())
                .prop_filter("key fits", |(k, _, _)| k.len() <= 255)
                .prop_map(|(key, value, ttl)| GossipMsg::Publish { key, value, ttl }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in any_msg()) {
            let bytes = m.encode().unwrap();
            prop_assert_eq!(GossipMsg::decode(&bytes).unwrap(), m);
        }

        #[test]
        fn any_bytes_decode_without_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = GossipMsg::decode(&data) {
                prop_assert_eq!(m.encode().unwrap(), data);
            }
        }

        #[test]
        fn every_truncation_is_refused(m in any_msg()) {
            let bytes = m.encode().unwrap();
            for n in 0..bytes.len() {
                prop_assert!(GossipMsg::decode(&bytes[..n]).is_err());
            }
        }
    }
}
