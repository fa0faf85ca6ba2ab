//! # zmesh-core: the sans-IO protocols above ZRE
//!
//! Everything zmesh adds on top of the ZRE protocol lives here, as plain state driven by explicit
//! inputs and an explicit `now`, with no sockets, no clock and no tokio. The async node (crate
//! `zmesh`) and the deterministic simulator (crate `zmesh-sim`) run this very code.
//!
//! | module | what |
//! |---|---|
//! | [`envelope`] | the one-frame envelope every layer message travels in, inside WHISPER/SHOUT |
//! | [`caps`] | which layers a peer speaks, from its HELLO headers |
//! | [`pattern`] | event names and `*` / `**` patterns |
//! | [`layer`] | the seam: the [`Layer`](layer::Layer) trait, its inputs and its [`Io`](layer::Io) |
//! | [`reqrep`] | request/reply, ticks and scatter/gather (requests to many), the first layer |
//! | [`control`] | options, handler advertisement and the peer directory (layer 1, `ctl`) |
//! | [`filter`] | filters over a peer's options and headers, and their textual syntax |
//! | [`events`] | the distributed event emitter: interest-based, retained values, credit (layer 3, `ev`) |
//! | [`services`] | named services: offers, calls with retries, worker de-duplication, brokers (layer 4, `svc`) |
//! | [`routing`] | targets: a peer, any / all peers matching a filter, a group; balancing |
//! | [`driver`] | the ZRE engine and the layers composed, with the output contract |
//! | `testing` | (feature `testing`) the output contract, checked: shared by tests, fuzzers, simulator |
//!
//! The wire formats are specified in `docs/protocol.md` in the repository.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod caps;
pub mod control;
pub mod driver;
pub mod envelope;
pub mod events;
pub mod filter;
pub mod layer;
pub mod pattern;
pub mod reqrep;
pub mod routing;
pub mod services;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
