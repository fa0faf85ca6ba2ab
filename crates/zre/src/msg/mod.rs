//! The ten ZRE v2 TCP messages (docs/zre.md §4) as a pure codec over ZeroMQ frames.
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

mod decode;
mod encode;
#[cfg(test)]
mod tests;
mod uuid_text;

use thiserror::Error;

use crate::content::{Content, Frames};

pub use uuid_text::{uuid_from_str, uuid_to_string};

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
        content: Content,
    },
    /// A message to a group, sent once to every member.
    Shout {
        /// Target group.
        group: String,
        /// Content frames (at least one when encoding).
        content: Content,
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
    /// Leader-election wave (docs/zre.md §10).
    Elect {
        /// Group the election is for.
        group: String,
        /// Challenger's UUID string.
        challenger: String,
    },
    /// Leader-election result (docs/zre.md §10).
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
