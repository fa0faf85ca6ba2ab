//! # zmesh-zre: the ZRE protocol without I/O
//!
//! This crate holds everything about ZRE (the ZeroMQ Realtime Exchange protocol, as C Zyre speaks
//! it) that can be expressed without sockets or clocks:
//!
//! * [`beacon`]: the 22/54-byte UDP discovery beacon;
//! * [`msg`]: the ten ZRE v2 TCP messages (HELLO ... GOODBYE) as a frame codec;
//! * [`gossip`]: zgossip (czmq's gossip discovery): codec and sans-IO hub/client state;
//! * [`sequence`]: the 16-bit message sequence and the two ways implementations wrap it;
//! * [`engine`]: the sans-IO protocol engine ([`Engine`]) — peer table, groups, sequence and
//!   status bookkeeping, liveness — driven by explicit inputs and an explicit `Instant`, producing
//!   [`Output`]s for the async shell (crate `zmesh`) to carry out.
//!
//! * `testing` (feature `testing`): the engine's output contract, checked — one model shared by
//!   the engine tests, the fuzz harness and the simulator.
//!
//! The codecs are pure functions over byte slices with typed errors; no input can make them (or
//! the engine) panic. The engine never depends on tokio, sockets or the system clock.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod beacon;
mod content;
pub mod engine;
pub mod gossip;
mod group;
pub mod msg;
mod name;
pub mod peer;
pub mod sequence;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use beacon::{
    is_usable_key, Beacon, BeaconError, BeaconRefusal, BEACON_PREFIX, BEACON_V1_LEN, BEACON_V3_LEN,
    BEACON_VERSION_V1, BEACON_VERSION_V3,
};
pub use bytes::Bytes;
pub use content::{Content, Frames};
pub use engine::{
    routing_id, Config, Engine, EngineError, Event, Output, Stats, DEFAULT_ENDPOINT_MOVE_AFTER,
    DEFAULT_EVASIVE_TIMEOUT, DEFAULT_EXPIRED_TIMEOUT, DEFAULT_PING_INTERVAL, IDENTITY_LEN,
};
pub use msg::{uuid_from_str, uuid_to_string, WireError, ZreMessage};
pub use name::Name;
pub use peer::{PeerInfo, PeerState, ZMESH_HEADER, ZMESH_HEADER_VALUE};
pub use uuid::Uuid;
