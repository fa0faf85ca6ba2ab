//! # zmesh-fuzz-harness: one function per fuzz target
//!
//! Everything that reads bytes from the network in zmesh — discovery beacons, ZRE messages, ZMTP
//! frames, greetings and commands, the protocol engine that consumes them, the zmesh envelope and
//! the driver with its request/reply layer above the engine, the control layer's STATE, the
//! routing targets and filters, and the services layer's payloads and envelopes — must survive any
//! input without panicking. This crate holds the *harness* for each of those entry points as a
//! plain `fn(&[u8])`:
//!
//! * the cargo-fuzz project in `fuzz/` (nightly-only tooling, run with `RUSTC_BOOTSTRAP=1`) wraps
//!   each function in a `fuzz_target!` and lets libFuzzer search for crashes;
//! * the stable integration test `tests/replay_corpus.rs` feeds every file of the saved corpus
//!   (`fuzz/corpus/<target>/`) and of the crash regressions (`fuzz/regressions/<target>/`) to the
//!   very same functions, so CI checks on stable Rust that nothing found once ever comes back.
//!
//! A harness does more than "call the decoder": wherever the API promises something checkable it
//! asserts it (a decoded value re-encodes and re-decodes to itself; chunked frame decoding equals
//! one-shot decoding; the engine's outputs form a consistent stream — see [`engine`]). A failed
//! assertion is a crash like any other and therefore a finding.
//!
//! [`TARGETS`] lists the harnesses by fuzz-target name; the replay test iterates over it.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod codecs;
pub mod curve;
pub mod engine;
pub mod envelope;
pub mod events;
pub mod gossip;
pub mod layer;
pub mod routing;
pub mod script;
pub mod services;

pub use codecs::{
    beacon_decode, zmtp_frame_decode, zmtp_greeting_and_command_decode, zre_message_decode,
};
pub use curve::curve_handshake_and_message;
pub use engine::{engine_messages, engine_secure};
pub use envelope::envelope_decode;
pub use events::events_decode;
pub use gossip::gossip_messages;
pub use layer::layer_envelopes;
pub use routing::routing_decode;
pub use services::services_decode;

/// A harness: takes arbitrary bytes, panics only on a bug in the code under test.
pub type Harness = fn(&[u8]);

/// Every harness, keyed by its cargo-fuzz target name (which is also the name of its corpus and
/// regression directories under `fuzz/`).
pub const TARGETS: &[(&str, Harness)] = &[
    ("beacon_decode", beacon_decode),
    ("zre_message_decode", zre_message_decode),
    ("zmtp_frame_decode", zmtp_frame_decode),
    (
        "zmtp_greeting_and_command_decode",
        zmtp_greeting_and_command_decode,
    ),
    ("engine_messages", engine_messages),
    ("engine_secure", engine_secure),
    ("envelope_decode", envelope_decode),
    ("layer_envelopes", layer_envelopes),
    ("curve_handshake_and_message", curve_handshake_and_message),
    ("routing_decode", routing_decode),
    ("events_decode", events_decode),
    ("gossip_messages", gossip_messages),
    ("services_decode", services_decode),
];
