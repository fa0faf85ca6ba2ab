//! # zmesh-zre: the ZRE protocol without I/O
//!
//! This crate holds everything about ZRE (the ZeroMQ Realtime Exchange protocol, as C Zyre speaks
//! it) that can be expressed without sockets or clocks:
//!
//! * [`beacon`]: the 22/54-byte UDP discovery beacon;
//! * [`msg`]: the ten ZRE v2 TCP messages (HELLO ... GOODBYE) as a frame codec.
//!
//! Both codecs are pure functions over byte slices with typed errors; no input can make them panic.
#![warn(missing_docs)]

pub mod beacon;
pub mod msg;

pub use beacon::{
    Beacon, BeaconError, BEACON_PREFIX, BEACON_V1_LEN, BEACON_V3_LEN, BEACON_VERSION_V1,
    BEACON_VERSION_V3,
};
pub use bytes::Bytes;
pub use msg::{uuid_from_str, uuid_to_string, WireError, ZreMessage};
pub use uuid::Uuid;
