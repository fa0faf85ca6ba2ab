//! Discovery: where a node learns that peers exist.
//!
//! The node does not care *how* a peer was found. Every way of finding peers is a [`Source`] of
//! [`Sighting`]s — "a node with this UUID accepts ZRE connections at this address (and has this
//! public key)" or "this node is leaving" — and the node runs any number of sources at once,
//! feeding every sighting to the same engine input. Today's source is the UDP beacon (IPv4
//! broadcast, exactly as Zyre sends it; `beacon.rs`), attached to the chosen interface; any
//! other source (static peers, DNS, gossip, multicast, IPv6 — the discovery issue) is added with
//! [`NodeBuilder::discovery_source`](crate::NodeBuilder::discovery_source) and needs no change
//! in the node or the engine.
//!
//! Besides beacons the node itself runs the sources its builder names: a zgossip hub and client
//! (`gossip.rs`, wire-compatible with Zyre's `zyre_gossip_bind/connect`) and static or DNS peers
//! ([`peers`]), which ride on it (docs/discovery.md).
//!
//! Addresses are typed (`SocketAddr`, IPv4 or IPv6); the endpoint string ZRE uses
//! (`tcp://10.0.0.5:49152`, `tcp://[fd00::5]:49152`) is derived from it once, by [`endpoint_of`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use uuid::Uuid;

pub(crate) mod beacon;
pub(crate) mod gossip;
pub(crate) mod hub;
pub mod peers;
pub(crate) mod plan;

/// One observation of a peer by a discovery source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sighting {
    /// A node with this UUID accepts ZRE connections at `addr`.
    Seen {
        /// The peer's UUID.
        uuid: Uuid,
        /// Where to connect.
        addr: SocketAddr,
        /// `addr` as a ZRE endpoint string (built once per sender by the source).
        endpoint: Arc<str>,
        /// The peer's CURVE public key, when the source carries one (a version-3 beacon, gossip's
        /// `endpoint|key`).
        public_key: Option<[u8; 32]>,
    },
    /// The node announced it is leaving (a port-0 beacon).
    Left {
        /// The peer's UUID.
        uuid: Uuid,
    },
}

impl Sighting {
    /// A `Seen` sighting of `uuid` at `addr`, without a key.
    pub fn seen(uuid: Uuid, addr: SocketAddr) -> Sighting {
        Sighting::Seen {
            uuid,
            addr,
            endpoint: endpoint_of(addr),
            public_key: None,
        }
    }

    /// A `Seen` sighting of `uuid` at `addr` with its CURVE public key: what a secure node needs
    /// (it ignores keyless sightings, and connects to the peer as a CURVE client of this key).
    pub fn seen_with_key(uuid: Uuid, addr: SocketAddr, public_key: [u8; 32]) -> Sighting {
        Sighting::Seen {
            uuid,
            addr,
            endpoint: endpoint_of(addr),
            public_key: Some(public_key),
        }
    }
}

/// The ZRE endpoint string of a TCP address: `tcp://ip:port`, `tcp://[ipv6]:port`, and for a
/// link-local IPv6 address with its scope `tcp://[fe80::1%3]:port` (the interface index, as
/// libzmq and `SocketAddrV6` parse it).
pub fn endpoint_of(addr: SocketAddr) -> Arc<str> {
    format!("tcp://{addr}").into()
}

/// What a source heard.
#[derive(Debug)]
#[non_exhaustive]
pub enum Heard {
    /// A usable sighting.
    Sighting(Sighting),
    /// Our own announcement, looped back (not bad input).
    Own,
    /// Something that was not a usable sighting (counted as bad input, logged at debug).
    Garbage(String),
}

/// A way of finding peers. The node polls every source it runs and announces itself through
/// each of them every beacon interval.
pub trait Source: Send + fmt::Debug + 'static {
    /// A short name for logs (`beacon`, `static`, `gossip`).
    fn kind(&self) -> &'static str;

    /// The next thing heard. An error means the source is broken: the node drops it (a beacon
    /// source is re-created at the next interval).
    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>>;

    /// Tells the network we accept ZRE connections on `tcp_port` (0: we are leaving). Must not
    /// block for long.
    fn announce(&mut self, tcp_port: u16) -> io::Result<()>;

    /// What the node is and whom it knows, given every beacon interval once its inbox is bound
    /// (before [`Source::announce`]). Sources that publish more than a port (gossip publishes the
    /// node's UUID and endpoint) or that must forget departed nodes use it; the default ignores it.
    fn observe(&mut self, _view: &NodeView<'_>) {}
}

/// The node as its sources see it (see [`Source::observe`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NodeView<'a> {
    /// Our UUID.
    pub uuid: Uuid,
    /// Our advertised ZRE endpoint.
    pub endpoint: &'a str,
    /// Our CURVE public key (secure mode).
    pub public_key: Option<&'a [u8; 32]>,
    /// The peers we have a session with, sorted.
    pub peers: &'a [Uuid],
}
