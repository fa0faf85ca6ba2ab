//! # zmesh — decentralised applications over ZRE
//!
//! A zmesh [`Node`] finds its peers on the local network with zero configuration (UDP beacons),
//! keeps track of their presence (ENTER, EXIT, EVASIVE, SILENT), and talks to them: WHISPER to one
//! peer, SHOUT to a group, JOIN and LEAVE groups, headers for service discovery, and
//! **request/reply** with timeouts, cancellation and typed outcomes ([`Node::request`],
//! [`Node::on_request`]). It speaks the ZRE protocol byte for byte as the C Zyre implementation
//! does, so zmesh, Zyre, Pyre and zyre.js nodes on one network form one mesh; everything zmesh
//! adds travels inside ordinary WHISPERs, and only to peers that announced it.
//!
//! # Getting started
//!
//! ```no_run
//! # async fn demo() -> Result<(), zmesh::Error> {
//! use zmesh::{Event, Node};
//! let (node, mut events) = Node::builder()
//!     .name("alice")
//!     .interface("lo".parse().unwrap()) // pin the interface; the default is the first LAN interface
//!     .start()
//!     .await?;
//! node.join("CHAT")?;
//! let mut requests = node.on_request("time.now")?; // answer requests for "time.now"
//! tokio::spawn(async move {
//!     while let Some(req) = requests.recv().await {
//!         req.reply(format!("{:?}", std::time::SystemTime::now()));
//!     }
//! });
//! while let Some(event) = events.recv().await {
//!     if let Event::Enter { peer, name, .. } = &event {
//!         node.whisper(*peer, vec![format!("hello {name}").into()])?;
//!         if let Ok(reply) = node.request(*peer, "time.now", "").await {
//!             println!("{name}'s clock: {}", String::from_utf8_lossy(&reply));
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Programs without an async runtime use [`blocking`]: the same node from plain threads
//! (`recv_timeout`, `whisper`, `request`, ...), like Zyre's `zyre_recv`.
//!
//! # Secure mode
//!
//! [`NodeBuilder::secure`] runs a node in Zyre's secure mode (CURVE encryption and authentication
//! on every connection, version-3 beacons with the public key, `X-PUBLICKEY` in HELLO), with an
//! optional allow-list ([`NodeBuilder::allow_list`]); plain nodes and secure ones ignore each other.
//! Every peer's UUID is bound to the key it was announced with, so an admitted peer cannot speak
//! as another ([`Node::peer_key`]). Keys and certificates: [`curve`]. Details: `docs/curve.md`.
//!
//! # Delivery contracts
//!
//! * **Events** ([`Events`], [`GroupEvents`]) go through a bounded queue (default 10,000) that is
//!   fair between peers: events of one peer arrive in order, peers are served round-robin, and
//!   when the application falls behind, the newest WHISPER/SHOUT/JOIN/LEAVE of the peers holding
//!   more than their fair share are dropped and counted ([`NodeStats::dropped_events`]); ENTER
//!   and EXIT are never dropped. The node never waits for the application, so it keeps answering
//!   PINGs and is never reported evasive because its application is slow.
//! * **Requests** never pass through that queue: every request ends exactly once with a reply or
//!   a [`RequestError`] that says what is known about the handler (see [`zmesh_core::reqrep`]).
//!   All request state is bounded ([`NodeBuilder::max_requests_in_flight`],
//!   [`NodeBuilder::max_running_requests`]).
//! * **Ticks** are at-most-once; a tick stream holds [`TICK_QUEUE`] ticks.
//! * **Routing** ([`Node::request_any`], [`Node::request_all`], [`Node::tick_any`], ...):
//!   targets chosen by a [`Filter`] over the peers' options ([`Node::set_option`], seen by
//!   every peer within one trip) and HELLO headers; `any` is least-outstanding with round robin
//!   among equals, `all` is an [`AllReplies`] stream that always ends. Peer events
//!   ([`Node::peer_events`]) have the contract of group streams.
//! * **Events** of the distributed emitter ([`Node::emit`], [`Node::on`]) go only to peers with
//!   a matching subscription, in order per publisher; a slow subscription either drops its
//!   oldest events (counted) or back-pressures the publishers ([`Overflow`]).
//! * **Service calls** ([`Node::offer`], [`Node::call`]) are delivered at least once while the
//!   deadline and the retries allow, and processed at most once per worker within its de-dup
//!   window; brokers ([`NodeBuilder::brokers`]) relay them and hold nothing vital
//!   (`docs/services.md` says exactly where the guarantee ends).
//!
//! # Layout
//!
//! | crate / module | what |
//! |---|---|
//! | `zmesh` [`node`](Node) | the async shell: node task, sockets, timers, the public API |
//! | `zmesh` `events`, `event` | the application's fair, bounded event queue and [`Event`] |
//! | `zmesh` `discovery`, `iface` | sources of sightings ([`discovery::Source`]): UDP beacons, the zgossip hub and client, static and DNS peers; interface selection |
//! | `zmesh` `node::brokers`, `node::services` | brokers at fixed endpoints (a source of broker sightings) and the services API |
//! | `zmesh` [`blocking`] | the node from plain threads, on a runtime of its own |
//! | `zmesh` [`curve`] | keys, certificates and allow-lists for secure mode (CURVE) |
//! | [`zmesh_core`] | sans-IO layers above ZRE: the envelope, the layer seam, request/reply, control and routing, the event emitter, services and brokers, the driver |
//! | [`zmesh_zre`] | the ZRE wire codec and the sans-IO protocol engine |
//! | [`zmesh_zmtp`] | the ZMTP 3.1 transport |
//!
//! The wire formats zmesh defines (and the ZRE facts it relies on) are in `docs/` in the
//! repository.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod blocking;
pub mod discovery;
mod error;
mod event;
mod events;
pub mod iface;
mod node;

pub use bytes::Bytes;
pub use error::Error;
pub use event::Event;
pub use iface::{InterfaceSpec, SelectedInterface};
pub use node::{
    broker_uuid, endpoint_addr, parse_broker, AllReplies, AllRequest, AnyRequest, BrokerAddr, Call,
    CallFailed, CallFuture, Emitted, Events, GroupEvents, IncomingCall, IncomingRequest,
    IncomingTick, Node, NodeBuilder, NodeServiceStats, NodeStats, Offered, On, OnOptions, Options,
    Overflow, PeerEvent, PeerEvents, PeerInfo, Reply, ReplyFuture, Request, Requests, ServiceEntry,
    Ticks, DEFAULT_BEACON_INTERVAL, DEFAULT_BEACON_PORT, DEFAULT_EVENT_CAPACITY,
    DEFAULT_ON_CAPACITY, HOST_HEADER, IPC_HEADER, TICK_QUEUE,
};
pub use uuid::Uuid;
pub use zmesh_core::events::EmitError;
pub use zmesh_core::filter::{Attributes, Cmp, Filter, ParseError as FilterParseError};
pub use zmesh_core::reqrep::GatherEnd;
pub use zmesh_core::reqrep::DEFAULT_TIMEOUT as DEFAULT_REQUEST_TIMEOUT;
pub use zmesh_core::reqrep::{NoResponders, RequestError};
pub use zmesh_core::routing::{Target, TargetError};
pub use zmesh_core::services::{CallError, CallInfo, ServiceStats, StatsBody, Via};
pub use zmesh_zmtp::{InboxConfig, OutboxConfig};

/// CURVE keys, certificates and allow-lists for secure mode ([`NodeBuilder::secure`],
/// [`NodeBuilder::allow_list`]); the transport's own types, re-exported.
pub mod curve {
    pub use zmesh_zmtp::curve::cert::secret_path;
    pub use zmesh_zmtp::curve::{AllowList, Certificate, CurveError, CurveKeyPair, CurvePublicKey};
    pub use zmesh_zre::is_usable_key;

    /// A fresh key pair for secure mode: its public key never starts with a zero byte, which
    /// Zyre (and zmesh) read as "no key" in a beacon (a plain `CurveKeyPair::generate` does so
    /// once in 256 draws, and a node refuses such a key).
    pub fn generate_key_pair() -> CurveKeyPair {
        loop {
            let k = CurveKeyPair::generate();
            if is_usable_key(k.public().as_bytes()) {
                return k;
            }
        }
    }
}
pub use zmesh_zre::{
    uuid_from_str, uuid_to_string, Content, Name, DEFAULT_EVASIVE_TIMEOUT, DEFAULT_EXPIRED_TIMEOUT,
};

/// The counters inside [`NodeStats`], by layer.
pub mod stats {
    pub use zmesh_core::control::Stats as ControlStats;
    pub use zmesh_core::driver::Stats as EnvelopeStats;
    pub use zmesh_core::events::Stats as EmitterStats;
    pub use zmesh_core::reqrep::Stats as RequestStats;
    pub use zmesh_zre::Stats as EngineStats;
}
