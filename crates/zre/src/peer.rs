//! One remote peer as the engine sees it: connection state, sequence numbers, status counter and
//! liveness timers.
//!
//! A peer object lives from the moment we decide to talk to a UUID (a sighting or its HELLO) until
//! it is removed. Its states (zre-spec §7, made explicit here):
//!
//! | state          | connected | ready | meaning                                                |
//! |----------------|-----------|-------|--------------------------------------------------------|
//! | `Discovered`   | yes       | no    | outbox created, our HELLO sent, their HELLO not yet seen |
//! | `Ready`        | yes       | yes   | their HELLO accepted, ENTER emitted                    |
//! | `Disconnected` | no        | no    | purged (another UUID appeared at the same endpoint); ignored until it expires |
//!
//! Sequence numbers are per peer object: `sent_sequence` is pre-incremented for every message we
//! send (so our HELLO is 1) and `want_sequence` is the last sequence accepted from them. A new peer
//! object (after a removal) starts again at 0, exactly like C Zyre.
//!
//! The liveness computation lives here (`Peer::tick`, `Peer::next_deadline`); the engine module
//! documentation explains the policy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

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
}

/// Liveness parameters shared by all peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) evasive: Duration,
    pub(crate) expired: Duration,
    /// Zero = no proactive ping (pure Zyre behaviour).
    pub(crate) ping_interval: Duration,
    pub(crate) reap: Duration,
    /// Deadlines are rounded up to this grid (see `Engine::poll_timeout`).
    pub(crate) grid: Duration,
    /// How long a zmesh peer whose beacons keep arriving may stay TCP-quiet before we probe it
    /// (`max(expired / 3, ping_interval)`; see the liveness policy in the engine docs).
    pub(crate) quiet_ping: Duration,
}

impl Timing {
    /// When an idle ready peer gets its proactive PING: `ping_interval`, or — for the side of the
    /// pair that defers — halfway between `ping_interval` and the evasive timeout.
    pub(crate) fn ping_after(&self, defers: bool) -> Duration {
        self.ping_interval + self.defer_gap(defers)
    }

    /// When a TCP-quiet zmesh peer whose beacons keep arriving gets its probe PING: `quiet_ping`,
    /// or, for the side that defers, the same gap later as [`Timing::ping_after`] adds.
    pub(crate) fn quiet_ping_after(&self, defers: bool) -> Duration {
        self.quiet_ping + self.defer_gap(defers)
    }

    /// How much later the deferring side of a pair pings: half the way from `ping_interval` to
    /// the evasive timeout (1.25 s by default), so the other side's PING normally arrives first.
    fn defer_gap(&self, defers: bool) -> Duration {
        if defers {
            self.evasive.saturating_sub(self.ping_interval) / 2
        } else {
            Duration::ZERO
        }
    }
}

/// What a timer tick asks the engine to do for one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TickActions {
    pub(crate) expire: bool,
    pub(crate) ping: bool,
    pub(crate) evasive: bool,
    pub(crate) silent: bool,
}

/// Engine-internal peer record.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) uuid: Uuid,
    pub(crate) endpoint: String,
    pub(crate) connected: bool,
    pub(crate) ready: bool,
    pub(crate) name: String,
    pub(crate) hello_endpoint: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) groups: Vec<String>,
    pub(crate) sent_sequence: u16,
    pub(crate) want_sequence: u16,
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
    /// may stand in for TCP traffic when deciding to ping (see the engine docs).
    pub(crate) zmesh: bool,
    pub(crate) evasive: bool,
    pub(crate) silent: bool,
    /// This side of the pair pings an idle link later (the peer's UUID is smaller than ours).
    pub(crate) defers_ping: bool,
}

impl Peer {
    /// A freshly discovered, connected peer; its timers start now.
    pub(crate) fn new(uuid: Uuid, endpoint: &str, now: Instant) -> Peer {
        Peer {
            uuid,
            endpoint: endpoint.to_owned(),
            connected: true,
            ready: false,
            name: String::new(),
            hello_endpoint: None,
            headers: Vec::new(),
            groups: Vec::new(),
            sent_sequence: 0,
            want_sequence: 0,
            status: 0,
            last_heard: now,
            last_beacon: None,
            ping_sent_at: None,
            probe_at: None,
            zmesh: false,
            evasive: false,
            silent: false,
            defers_ping: false,
        }
    }

    /// The state as seen from outside.
    pub(crate) fn state(&self) -> PeerState {
        match (self.connected, self.ready) {
            (true, true) => PeerState::Ready,
            (true, false) => PeerState::Discovered,
            _ => PeerState::Disconnected,
        }
    }

    /// True if its HELLO advertised [`ZMESH_HEADER`].
    pub(crate) fn accepts_extensions(&self) -> bool {
        self.headers.iter().any(|(k, _)| k == ZMESH_HEADER)
    }

    /// Something valid arrived from the peer: it is alive.
    pub(crate) fn refresh(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_sent_at = None;
        self.probe_at = None;
        self.evasive = false;
        self.silent = false;
    }

    /// True if this peer's beacons count as a sign of life: a ready, connected zmesh peer, with
    /// proactive pinging on (with `ping_interval = 0` the engine behaves exactly like Zyre).
    fn beacon_aware(&self, t: &Timing) -> bool {
        self.zmesh && self.ready && self.connected && !t.ping_interval.is_zero()
    }

    /// The last sign of life: the last TCP message, or — for a beacon-aware peer — a later
    /// beacon (the engine stops recording beacons while a PING is unanswered, so this value
    /// never moves during an EVASIVE episode).
    pub(crate) fn seen(&self, t: &Timing) -> Instant {
        match self.last_beacon {
            Some(b) if self.beacon_aware(t) => self.last_heard.max(b),
            _ => self.last_heard,
        }
    }

    /// When the next proactive PING is due (if none is outstanding): `ping_after` past the last
    /// sign of life, but for a beacon-aware peer no later than `quiet_ping_after` past its last
    /// TCP message, so a broken TCP path under live beacons is still probed.
    fn ping_due(&self, t: &Timing) -> Option<Instant> {
        if t.ping_interval.is_zero() || self.ping_sent_at.is_some() {
            return None;
        }
        let due = self.seen(t) + t.ping_after(self.defers_ping);
        if self.beacon_aware(t) {
            Some(due.min(self.last_heard + t.quiet_ping_after(self.defers_ping)))
        } else {
            Some(due)
        }
    }

    /// Applies the liveness policy at `now` and reports what the engine must do. Updates the
    /// peer's own flags as if the requested PING is sent.
    pub(crate) fn tick(&mut self, now: Instant, t: &Timing) -> TickActions {
        let mut a = TickActions::default();
        let seen = self.seen(t);
        if now >= seen + t.expired {
            a.expire = true;
            return a;
        }
        // Only a ready, connected peer can answer a PING (their PING-OK before HELLO would be
        // dropped), so only those are probed and reported.
        if !(self.ready && self.connected) {
            return a;
        }
        let evasive_at = seen + t.evasive;
        if now >= evasive_at {
            if !self.evasive {
                self.evasive = true;
                a.evasive = true;
                a.ping = true;
            } else if match self.ping_sent_at {
                None => true,
                Some(p) => now >= p + t.reap,
            } {
                a.ping = true;
            }
            if !self.silent && now >= evasive_at + t.reap {
                self.silent = true;
                a.silent = true;
            }
        } else if self.ping_due(t).is_some_and(|due| now >= due) {
            a.ping = true;
        }
        if a.ping {
            self.ping_sent_at = Some(now);
            self.probe_at.get_or_insert(now);
        }
        a
    }

    /// The earliest instant at which [`Peer::tick`] would do something.
    pub(crate) fn next_deadline(&self, t: &Timing) -> Instant {
        let seen = self.seen(t);
        let mut d = seen + t.expired;
        if !(self.ready && self.connected) {
            return d;
        }
        let evasive_at = seen + t.evasive;
        if !self.evasive {
            d = d.min(evasive_at);
            if let Some(due) = self.ping_due(t) {
                d = d.min(due);
            }
        } else {
            if let Some(p) = self.ping_sent_at {
                d = d.min(p + t.reap);
            }
            if !self.silent {
                d = d.min(evasive_at + t.reap);
            }
        }
        d
    }

    /// Public snapshot.
    pub(crate) fn info(&self) -> PeerInfo {
        PeerInfo {
            uuid: self.uuid,
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            hello_endpoint: self.hello_endpoint.clone(),
            headers: self.headers.clone(),
            groups: self.groups.clone(),
            ready: self.ready,
            state: self.state(),
            accepts_extensions: self.accepts_extensions(),
            evasive: self.evasive,
            status: self.status,
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
