//! One remote peer as the engine sees it: session state, sequence numbers, status counter and
//! liveness timers.
//!
//! A peer object lives from the moment we decide to talk to a UUID (a sighting or its HELLO) until
//! it is removed. Its session states (docs/zre.md §7, made explicit here) are the [`PeerState`] it
//! holds:
//!
//! | state          | outbox | meaning                                                          |
//! |----------------|--------|------------------------------------------------------------------|
//! | `Discovered`   | yes    | outbox created, our HELLO sent, their HELLO not yet seen         |
//! | `Ready`        | yes    | their HELLO accepted, ENTER emitted                              |
//! | `Disconnected` | no     | purged (another UUID appeared at the same endpoint); ignored until it expires |
//!
//! Sequence numbers are per peer object: `sent_sequence` is pre-incremented for every message we
//! send (so our HELLO is 1) and `want_sequence` is the last sequence accepted from them. A new peer
//! object (after a removal) starts again at 0, exactly like C Zyre. How the two wrap after 65534
//! depends on the peer's implementation: see [`crate::sequence`].
//!
//! The liveness computation (`Peer::tick`, `Peer::next_deadline`, the liveness episode) lives in
//! the engine's liveness module, with the policy it implements.

use std::collections::HashMap;

use std::time::Instant;

use uuid::Uuid;

use crate::engine::liveness::Liveness;
use crate::name::Name;
use crate::sequence::{SeqWrap, PLAIN_PEER_WRAP};

/// Header that marks a zmesh node. A peer whose HELLO carries it (any value) is known to accept
/// the messages C Zyre ≤ 2.0.0 does not understand (ELECT, LEADER, GOODBYE).
pub const ZMESH_HEADER: &str = "X-ZMESH";
/// Value this crate puts in its own [`ZMESH_HEADER`] (capability level; "1" = ids 8–10 understood).
pub const ZMESH_HEADER_VALUE: &str = "1";

/// Externally visible state of a peer (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// We connected and sent HELLO; their HELLO has not arrived yet.
    Discovered,
    /// Their HELLO was accepted; ENTER was emitted.
    Ready,
    /// Purged because another UUID took over its endpoint; waits to expire.
    Disconnected,
}

/// A snapshot of what the engine knows about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Peer UUID.
    pub uuid: Uuid,
    /// Public name from its HELLO (empty before HELLO).
    pub name: String,
    /// Endpoint our outbox connects to (sighting address, or HELLO endpoint for HELLO-created peers).
    pub endpoint: String,
    /// Endpoint the peer declared in its HELLO (`None` before HELLO).
    pub hello_endpoint: Option<String>,
    /// Headers from its HELLO.
    pub headers: Vec<(String, String)>,
    /// Groups it is in, in the order we learned them.
    pub groups: Vec<String>,
    /// True once its HELLO was accepted (same as `state == Ready`).
    pub ready: bool,
    /// Connection state.
    pub state: PeerState,
    /// True if its HELLO carried [`ZMESH_HEADER`] (it accepts ELECT/LEADER/GOODBYE).
    pub accepts_extensions: bool,
    /// True while it is evasive (nothing heard for the evasive timeout).
    pub evasive: bool,
    /// Its current status counter as we track it.
    pub status: u8,
    /// Secure mode: the CURVE public key its UUID is bound to (`None` in plain mode).
    pub public_key: Option<[u8; 32]>,
}

/// Engine-internal peer record.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) uuid: Uuid,
    pub(crate) endpoint: String,
    /// Session state: Discovered → Ready, or Disconnected once purged.
    pub(crate) state: PeerState,
    pub(crate) name: Name,
    pub(crate) hello_endpoint: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) groups: Vec<String>,
    pub(crate) sent_sequence: u16,
    pub(crate) want_sequence: u16,
    /// How our sequence to it goes on after 65534: what it expects (see [`crate::sequence`]).
    pub(crate) wrap: SeqWrap,
    pub(crate) status: u8,
    /// Last accepted TCP message (or creation).
    pub(crate) last_heard: Instant,
    /// Last sighting (beacon) of the peer at the endpoint we talk to it on.
    pub(crate) last_beacon: Option<Instant>,
    /// Last PING we sent that is not answered yet.
    pub(crate) ping_sent_at: Option<Instant>,
    /// First unanswered PING of the current episode: beacons heard after it are not recorded
    /// in `last_beacon` (the TCP path is in question).
    pub(crate) probe_at: Option<Instant>,
    /// Its HELLO carried [`ZMESH_HEADER`]: it runs the same beacon-aware policy, so its beacons
    /// may stand in for TCP traffic when deciding to ping (see the liveness policy in
    /// `engine/liveness.rs`).
    pub(crate) zmesh: bool,
    /// Where it stands in the current EVASIVE/SILENT episode.
    pub(crate) liveness: Liveness,
    /// This side of the pair pings an idle link later (the peer's UUID is smaller than ours).
    pub(crate) defers_ping: bool,
    /// Secure mode: the key its UUID was announced with; every message from it must come over a
    /// connection authenticated with this key (engine module documentation).
    pub(crate) public_key: Option<[u8; 32]>,
    /// When a discovery source last named `endpoint` (its creation counts as one: a HELLO's
    /// endpoint gets the same grace as a sighting's). Decides when a sighting elsewhere moves
    /// the peer.
    pub(crate) endpoint_seen: Option<Instant>,
    /// When we last moved this ready peer (engine `move_peer`): a HELLO from it within the
    /// evasive timeout after that is its answer to our new session, not a restart to answer
    /// with a HELLO of ours (which would restart it again, and so on).
    pub(crate) moved_at: Option<Instant>,
}

impl Peer {
    /// A freshly discovered, connected peer; its timers start now.
    pub(crate) fn new(uuid: Uuid, endpoint: &str, now: Instant) -> Peer {
        Peer {
            uuid,
            endpoint: endpoint.to_owned(),
            state: PeerState::Discovered,
            name: Name::default(),
            hello_endpoint: None,
            headers: Vec::new(),
            groups: Vec::new(),
            sent_sequence: 0,
            want_sequence: 0,
            wrap: PLAIN_PEER_WRAP,
            status: 0,
            last_heard: now,
            last_beacon: None,
            ping_sent_at: None,
            probe_at: None,
            zmesh: false,
            liveness: Liveness::Alive,
            defers_ping: false,
            public_key: None,
            endpoint_seen: Some(now),
            moved_at: None,
        }
    }

    /// Their HELLO was accepted (and the peer was not purged since).
    pub(crate) fn is_ready(&self) -> bool {
        self.state == PeerState::Ready
    }

    /// It has an outbox (it was not purged).
    pub(crate) fn is_connected(&self) -> bool {
        self.state != PeerState::Disconnected
    }

    /// True if its HELLO advertised [`ZMESH_HEADER`].
    pub(crate) fn accepts_extensions(&self) -> bool {
        self.headers.iter().any(|(k, _)| k == ZMESH_HEADER)
    }

    /// Public snapshot.
    pub(crate) fn info(&self) -> PeerInfo {
        PeerInfo {
            uuid: self.uuid,
            name: self.name.to_string(),
            endpoint: self.endpoint.clone(),
            hello_endpoint: self.hello_endpoint.clone(),
            headers: self.headers.clone(),
            groups: self.groups.clone(),
            ready: self.is_ready(),
            state: self.state,
            accepts_extensions: self.accepts_extensions(),
            evasive: self.liveness != Liveness::Alive,
            status: self.status,
            public_key: self.public_key,
        }
    }
}

/// The engine's peer table.
///
/// A hash map, because the hot paths are lookups: an idle node looks a peer up for every beacon
/// (one per peer per second) and every inbound message, and with a hundred nodes per host the
/// tables are cold in the CPU cache — a B-tree search costs several cache misses, a hash lookup
/// one or two. Wherever the iteration order shows in the engine's outputs, [`PeerTable::uuids`]
/// returns UUIDs sorted, so the engine stays deterministic (the simulator replays seeds exactly)
/// whatever the hasher's seed.
///
/// The hasher is `foldhash` (seeded per process, a few instructions for a 16-byte key) rather than
/// the standard SipHash, which cost ~170 instructions per lookup — two lookups per WHISPER sent,
/// one per message received. The per-process random seed keeps a hostile network from choosing
/// UUIDs that collide on every host.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    map: HashMap<Uuid, Peer, foldhash::fast::RandomState>,
}

impl PeerTable {
    pub(crate) fn get(&self, uuid: &Uuid) -> Option<&Peer> {
        self.map.get(uuid)
    }

    pub(crate) fn get_mut(&mut self, uuid: &Uuid) -> Option<&mut Peer> {
        self.map.get_mut(uuid)
    }

    pub(crate) fn contains_key(&self, uuid: &Uuid) -> bool {
        self.map.contains_key(uuid)
    }

    pub(crate) fn insert(&mut self, uuid: Uuid, peer: Peer) {
        self.map.insert(uuid, peer);
    }

    pub(crate) fn remove(&mut self, uuid: &Uuid) -> Option<Peer> {
        self.map.remove(uuid)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// All peers, in no particular order (for order-independent folds such as a minimum).
    pub(crate) fn values(&self) -> impl Iterator<Item = &Peer> {
        self.map.values()
    }

    /// All peers, mutably, in no particular order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.map.values_mut()
    }

    /// The UUIDs of the peers that match `keep`, sorted.
    pub(crate) fn uuids(&self, keep: impl Fn(&Peer) -> bool) -> Vec<Uuid> {
        let mut v: Vec<Uuid> = self
            .map
            .values()
            .filter(|p| keep(p))
            .map(|p| p.uuid)
            .collect();
        v.sort_unstable();
        v
    }
}
