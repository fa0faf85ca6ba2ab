//! The request/reply layer's messages: envelope kinds and the ERROR payload (`docs/protocol.md`).

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A request: `subject` = event, `ttl_ms` = how long the requester waits, payload = argument.
pub const REQUEST: u8 = 1;
/// A tick: like a request, but nobody answers.
pub const TICK: u8 = 2;
/// A reply: `corr` = the request's id, payload = result.
pub const REPLY: u8 = 3;
/// An error reply: `corr` = the request's id, payload = [`ErrorBody`].
pub const ERROR: u8 = 4;
/// The requester gave up: `corr` = the request's id.
pub const CANCEL: u8 = 5;

/// Why a request failed on the responder's side (ERROR payload byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The handler answered with an error (`code` and `message` are the application's).
    Handler,
    /// No handler matches the event.
    NoHandler,
    /// The responder's handler concurrency limit is reached.
    Overloaded,
    /// The request payload exceeds the responder's limit.
    PayloadTooLarge,
}

impl ErrorClass {
    fn to_byte(self) -> u8 {
        match self {
            ErrorClass::Handler => 0,
            ErrorClass::NoHandler => 1,
            ErrorClass::Overloaded => 2,
            ErrorClass::PayloadTooLarge => 3,
        }
    }

    fn from_byte(b: u8) -> Result<ErrorClass, ErrorBodyError> {
        Ok(match b {
            0 => ErrorClass::Handler,
            1 => ErrorClass::NoHandler,
            2 => ErrorClass::Overloaded,
            3 => ErrorClass::PayloadTooLarge,
            other => return Err(ErrorBodyError::UnknownClass(other)),
        })
    }
}

/// The payload of an ERROR: `class u8 | code u16 BE | len u16 BE | message (UTF-8)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Who failed.
    pub class: ErrorClass,
    /// Application error code (0 unless `class` is `Handler`).
    pub code: u16,
    /// Human-readable reason (at most 65,535 bytes; longer messages are cut at a char boundary).
    pub message: String,
}

/// Why an ERROR payload is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorBodyError {
    /// Shorter than its fields.
    #[error("error body truncated")]
    Truncated,
    /// A class this version does not know.
    #[error("unknown error class {0}")]
    UnknownClass(u8),
    /// The message is not UTF-8.
    #[error("error message is not UTF-8")]
    NotUtf8,
    /// Bytes after the message.
    #[error("{0} trailing bytes after the error message")]
    Trailing(usize),
}

impl ErrorBody {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut msg = self.message.as_str();
        if msg.len() > u16::MAX as usize {
            let mut end = u16::MAX as usize;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg = &msg[..end];
        }
        let mut b = BytesMut::with_capacity(5 + msg.len());
        b.put_u8(self.class.to_byte());
        b.put_u16(self.code);
        b.put_u16(msg.len() as u16);
        b.put_slice(msg.as_bytes());
        b.freeze()
    }

    /// Decodes the payload.
    pub fn decode(b: &[u8]) -> Result<ErrorBody, ErrorBodyError> {
        if b.len() < 5 {
            return Err(ErrorBodyError::Truncated);
        }
        let class = ErrorClass::from_byte(b[0])?;
        let code = u16::from_be_bytes([b[1], b[2]]);
        let n = u16::from_be_bytes([b[3], b[4]]) as usize;
        let rest = &b[5..];
        if rest.len() < n {
            return Err(ErrorBodyError::Truncated);
        }
        if rest.len() > n {
            return Err(ErrorBodyError::Trailing(rest.len() - n));
        }
        let message = std::str::from_utf8(rest)
            .map_err(|_| ErrorBodyError::NotUtf8)?
            .to_owned();
        Ok(ErrorBody {
            class,
            code,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden() {
        let b = ErrorBody {
            class: ErrorClass::Handler,
            code: 500,
            message: "boom".into(),
        };
        assert_eq!(&b.encode()[..], b"\x00\x01\xf4\x00\x04boom");
        assert_eq!(ErrorBody::decode(&b.encode()).unwrap(), b);
        assert_eq!(
            ErrorBody::decode(b"\x09\x00\x00\x00\x00"),
            Err(ErrorBodyError::UnknownClass(9))
        );
        assert_eq!(
            ErrorBody::decode(b"\x01\x00\x00\x00\x02a"),
            Err(ErrorBodyError::Truncated)
        );
        assert_eq!(
            ErrorBody::decode(b"\x01\x00\x00\x00\x00a"),
            Err(ErrorBodyError::Trailing(1))
        );
    }

    #[test]
    fn long_message_is_cut_at_a_char_boundary() {
        let b = ErrorBody {
            class: ErrorClass::Handler,
            code: 1,
            message: "é".repeat(40_000),
        };
        let d = ErrorBody::decode(&b.encode()).unwrap();
        assert!(d.message.len() <= u16::MAX as usize);
        assert!(d.message.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_typed_error(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(e) = ErrorBody::decode(&b) {
                prop_assert_eq!(&e.encode()[..], &b[..]);
            }
        }
    }
}
