//! The sans-IO ZRE protocol engine.
//!
//! [`Engine`] owns the whole protocol state of one node — peer table, groups, sequence numbers,
//! status counter, liveness timers — and nothing else. It never touches a socket or a clock:
//!
//! * the shell feeds **inputs**: discovery sightings ([`Engine::handle_sighting`],
//!   [`Engine::handle_departure`]), inbox messages ([`Engine::handle_message`]), send failures
//!   ([`Engine::handle_send_failed`]), timer expiries ([`Engine::handle_timeout`]) and application
//!   commands ([`Engine::join`], [`Engine::whisper`], ...), each with the current `Instant`;
//! * after every call the shell drains **outputs** with [`Engine::poll_output`]: create an outbox
//!   ([`Output::Connect`]), queue frames on it ([`Output::Send`]), drop it ([`Output::Disconnect`]),
//!   or deliver an application [`Event`];
//! * the shell sleeps until [`Engine::poll_timeout`] (or the next input).
//!
//! Every rule of zre-spec §5–§7 is applied here, so the engine is tested by feeding encoded
//! messages as a remote peer would and asserting on the outputs.
//!
//! # Receiver rules (zre-spec §5.2)
//!
//! * The identity frame must be 17 bytes (`0x01` + UUID; byte 0 is not checked, like C). Anything
//!   else is dropped and counted ([`Stats::bad_identity`]).
//! * Undecodable frames are dropped and counted ([`Stats::malformed`]) *without* advancing the
//!   expected sequence — so, as with C, the next good message from that peer shows a gap.
//! * Nothing counts before HELLO: a non-HELLO from an unknown or not-yet-ready peer is dropped and
//!   counted ([`Stats::not_hello_first`]); no event, no peer creation.
//! * HELLO from an unknown UUID creates the peer (outbox to the HELLO's endpoint, our HELLO with
//!   sequence 1). HELLO from a *ready* peer is a restart: EXIT + Disconnect of the old peer object,
//!   then a fresh one (Connect + HELLO seq 1) and ENTER.
//! * The sequence check is strict (`u16`, wrapping). A gap removes the peer (EXIT + Disconnect);
//!   its next beacon brings it back. A HELLO must carry sequence 1.
//! * JOIN/LEAVE must carry exactly `previous status + 1` (mod 256). C Zyre `assert`s (aborts) on
//!   a mismatch; **we treat it as a protocol error on that peer**: the peer is removed with EXIT,
//!   counted ([`Stats::status_mismatches`]), and no JOIN/LEAVE event is emitted for that message.
//!   A JOIN for a group the peer is already in (or LEAVE for one it is not in) advances the status
//!   but emits no event.
//! * PING is answered with PING-OK. GOODBYE removes the peer with EXIT (C only does that in
//!   gossip mode; we always do, since a node that says goodbye is gone). ELECT and LEADER are
//!   accepted (sequence advances, liveness refreshed) and otherwise ignored
//!   ([`Stats::elections_ignored`]); elections are not implemented yet.
//! * Self-connection guard: messages whose identity carries our own UUID are dropped; sightings
//!   and HELLOs that would make us connect to our own endpoint under another UUID are dropped; a
//!   HELLO for a not-ready peer whose outbox points at our own endpoint is dropped (C's guard).
//! * Purge: when a new peer is created at endpoint E, any other connected peer at E is
//!   disconnected (its outbox dropped) and ignored until it expires (C behaviour). *Difference*:
//!   if the purged peer had entered, we emit its EXIT right away (C emits it up to 30 s later, when
//!   the expired timer fires), so [`Engine::peers`] and the event stream always agree.
//! * There is no CURVE mode in this engine; `X-PUBLICKEY` is just a header, so the C assert on an
//!   empty key has no counterpart here. Nothing a peer sends can make the engine panic.
//!
//! # Sender rules (zre-spec §6)
//!
//! Every peer object numbers its messages from 1 (HELLO). A sequence number is consumed only when
//! the frames are actually produced, so an encoding error never creates a gap. Our `u8` status
//! is incremented before each JOIN/LEAVE and only on a real change; JOIN/LEAVE go to every
//! connected peer (ready or not, like C — they have our HELLO already). SHOUT goes once to every
//! ready peer known to be in the group (we need not be in it ourselves); never to ourselves.
//!
//! # Liveness policy
//!
//! C Zyre ignores beacons for liveness and pings a peer only after `evasive_timeout` (5 s) of TCP
//! silence, emitting EVASIVE first — so on an idle network every healthy peer flaps EVASIVE every
//! 5 s. Pyre does the opposite: beacons refresh a peer completely, so a broken TCP path under live
//! beacons is never noticed. We take the middle road:
//!
//! * **Signs of life.** Every accepted TCP message (any type, including PING and PING-OK) is
//!   one. For zmesh peers, so are beacons — but only until a PING goes unanswered (below).
//!   EVASIVE and EXIT count from the last sign of life, so a crashed peer (beacons and TCP stop
//!   together) is reported EXIT the expired timeout after the crash, within a beacon interval.
//! * **Proactive ping.** When there was no sign of life from a ready peer for `ping_interval`
//!   (default 2.5 s, half the 5 s evasive timeout) we send one PING. A healthy peer — Zyre,
//!   Pyre or zmesh — answers PING-OK well before `evasive_timeout`, so it never becomes EVASIVE.
//!   The PING also refreshes *their* view of us, so only one side of a pair needs to ping: the
//!   node with the smaller UUID pings at `ping_interval`, the other waits until halfway between
//!   `ping_interval` and `evasive_timeout` (3.75 s) and is normally refreshed first.
//!   `ping_interval = 0` disables this and everything below about beacons (exact Zyre behaviour).
//! * **Beacons as a sign of life, for zmesh peers only.** For a ready peer whose HELLO carries
//!   `X-ZMESH` (it runs this same policy, so it does not report us EVASIVE while it hears our
//!   beacons), a beacon from it at the endpoint we talk to counts as a sign of life, as Zyre's
//!   pre-2017 `zyre_peer_refresh` (and Pyre) does. While its beacons keep arriving, such a peer is
//!   pinged only after `expired_timeout / 3` (10 s; the deferring side 1.25 s later) of TCP
//!   silence instead of 2.5 s: an idle 100-node host then carries ~10 instead of ~36 ZRE messages
//!   per node per second. Beacons heard while a PING is unanswered are not recorded (the TCP path
//!   is in question), so a **broken TCP path under live beacons** still ends in EXIT: PING at
//!   ~11 s of TCP silence, EVASIVE `evasive_timeout` after the last beacon before that PING
//!   (~16 s), SILENT a reap interval later, EXIT `expired_timeout` after that beacon (~41 s).
//!   When its beacons stop (crash, UDP blocked, gossip-only discovery) the fast rhythm above
//!   applies, counted from the last beacon. Foreign peers (Zyre, zyre.js, Pyre) keep the fast
//!   rhythm and TCP-only liveness: Zyre and zyre.js would otherwise report us EVASIVE every 5 s.
//! * **Timer grid.** [`Engine::poll_timeout`] rounds deadlines up to a grid of a quarter of the
//!   reap interval (250 ms by default), so a node with a hundred peers wakes a few times per second
//!   instead of once per peer deadline; timers fire at most one grid step late.
//! * **EVASIVE** when there was no sign of life for `evasive_timeout`; from then on we PING every
//!   reap interval (`min(evasive, expired, 1 s)`, as Zyre). **SILENT** once it has been evasive
//!   for one more reap interval (the PING sent when it became evasive went unanswered), **EXIT**
//!   at `expired_timeout` (default 30 s) after the last sign of life. *Difference*: EVASIVE and
//!   SILENT are edge-triggered — emitted once per episode, not on every reap tick as in C. Any
//!   message from the peer ends the episode.
//! * **Lost-HELLO recovery.** If a peer we created (and sent our HELLO to) is still not ready an
//!   `evasive_timeout` later, yet keeps sending non-HELLO messages, it is talking to us on an older
//!   session: it still holds us as ready, and our new HELLO was lost (a reset or partition right
//!   after we re-created it). Zyre stays split like that until the peer expires us, then until we
//!   expire it — about two expiry periods. We forget the record silently instead; the next sighting
//!   re-creates it with a fresh HELLO, which the peer takes as a restart and answers with its own
//!   HELLO ([`Stats::stale_sessions`]). The grace period keeps messages still in flight from the
//!   old session (the normal case right after a re-creation) from triggering it.
//! * Peers that are not ready (no HELLO yet) or purged are neither pinged nor reported; they are
//!   removed silently when `expired_timeout` has passed since their creation (C also emits EXIT for
//!   them, without ENTER ever having been emitted; we emit EXIT only for peers that entered).
//!
//! [`Engine::poll_timeout`] returns, in O(1), a lower bound of the earliest deadline over all peers
//! (no fixed tick; exact after each [`Engine::handle_timeout`], never later than a real deadline),
//! or `None` when there are no peers or the engine is stopped.
//!
//! # Extensions capability rule
//!
//! ELECT (8), LEADER (9) and GOODBYE (10) are unknown to Zyre ≤ 2.0.0, which treats them as
//! malformed and then drops us on the next sequence number. We therefore send them **only to peers
//! whose HELLO headers contain `X-ZMESH`** ([`ZMESH_HEADER`]). The engine adds
//! `X-ZMESH: 1` to its own HELLO headers unless the config already has that header.
//!
//! # stop()
//!
//! [`Engine::stop`] sends GOODBYE to every ready peer that accepts it, then a Disconnect for every
//! connected peer, then [`Event::Stop`]. No EXIT events are emitted for the peers (as in C, where
//! `zyre_stop` does not emit EXITs either). The shell should let queued GOODBYEs drain before it
//! closes the outboxes (and sends the port-0 beacon, which is its business). After `stop` the engine
//! ignores all inputs, commands return [`EngineError::Stopped`], and `poll_timeout` is `None`.
//!
//! # Other differences from C Zyre
//!
//! * [`Engine::peers`] lists ready peers only (C lists every peer object, including ones that
//!   never sent HELLO).
//! * [`Engine::handle_send_failed`] removes the peer at once (EXIT + Disconnect). In C the
//!   equivalent path is dead code and the lost message shows up as a gap on the other side.
//! * Bad user input (names/groups longer than 255 bytes, empty content) is an error, never
//!   silently truncated.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tracing::{debug, trace, warn};
use uuid::Uuid;

use crate::group::{OwnGroups, PeerGroups};
use crate::msg::{check_string, uuid_to_string, WireError, ZreMessage};
use crate::peer::{
    Peer, PeerInfo, PeerTable, TickActions, Timing, ZMESH_HEADER, ZMESH_HEADER_VALUE,
};

/// Default evasive timeout (Zyre: 5000 ms).
pub const DEFAULT_EVASIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default expired timeout (Zyre: 30000 ms).
pub const DEFAULT_EXPIRED_TIMEOUT: Duration = Duration::from_secs(30);
/// Default proactive ping interval (see the liveness policy in the module documentation).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(2500);
/// Upper bound of the reap interval (Zyre: `min(evasive, expired, 1000 ms)`).
pub const MAX_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Deadlines are rounded up to `reap interval / TIMER_GRID_DIVISOR` (see [`Engine::poll_timeout`]).
const TIMER_GRID_DIVISOR: u32 = 4;

/// A zmesh peer whose beacons keep arriving is probed after `expired_timeout / QUIET_PING_DIVISOR`
/// of TCP silence (10 s by default; see the liveness policy).
const QUIET_PING_DIVISOR: u32 = 3;

/// Length of the identity frame a ZRE ROUTER sees: `0x01` + 16-byte UUID.
pub const IDENTITY_LEN: usize = 17;

/// The routing id our outboxes must present (`0x01` followed by our UUID): the shell sets it as the
/// ZMTP `Identity` property of every DEALER it creates for [`Output::Connect`].
pub fn routing_id(own: &Uuid) -> [u8; IDENTITY_LEN] {
    let mut id = [1u8; IDENTITY_LEN];
    id[1..].copy_from_slice(own.as_bytes());
    id
}

/// Node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our UUID.
    pub uuid: Uuid,
    /// Our public name (≤ 255 bytes).
    pub name: String,
    /// Our HELLO headers (keys ≤ 255 bytes). `X-ZMESH` is added automatically if absent.
    pub headers: Vec<(String, String)>,
    /// Nothing heard for this long → EVASIVE (default 5 s).
    pub evasive_timeout: Duration,
    /// Nothing heard for this long → EXIT (default 30 s).
    pub expired_timeout: Duration,
    /// Proactively PING a ready peer not heard from for this long (default 2.5 s; zero disables,
    /// and also turns off beacon-aware liveness). Should be clearly below `evasive_timeout`.
    pub ping_interval: Duration,
    /// Our advertised endpoint, sent in HELLO (may be set later with [`Engine::set_endpoint`]).
    pub endpoint: String,
}

impl Config {
    /// A configuration with the default timers, no headers and no endpoint yet.
    pub fn new(uuid: Uuid, name: impl Into<String>) -> Config {
        Config {
            uuid,
            name: name.into(),
            headers: Vec::new(),
            evasive_timeout: DEFAULT_EVASIVE_TIMEOUT,
            expired_timeout: DEFAULT_EXPIRED_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            endpoint: String::new(),
        }
    }

    /// Checks everything that would otherwise fail later on the wire.
    pub fn validate(&self) -> Result<(), EngineError> {
        check_string("name", &self.name)?;
        check_string("endpoint", &self.endpoint)?;
        for (k, _) in &self.headers {
            check_string("header key", k)?;
        }
        if self.evasive_timeout.is_zero() {
            return Err(EngineError::InvalidConfig("evasive_timeout must be > 0"));
        }
        if self.expired_timeout.is_zero() {
            return Err(EngineError::InvalidConfig("expired_timeout must be > 0"));
        }
        Ok(())
    }
}

impl Default for Config {
    /// A random UUID and, like Zyre, the first 6 characters of its string as name.
    fn default() -> Config {
        let uuid = Uuid::new_v4();
        let name = uuid_to_string(&uuid)[..6].to_owned();
        Config::new(uuid, name)
    }
}

/// Errors returned to the application.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// No such peer (never seen, removed, or purged).
    #[error("unknown peer {0}")]
    UnknownPeer(Uuid),
    /// WHISPER/SHOUT need at least one content frame.
    #[error("message content must have at least one frame")]
    EmptyContent,
    /// The engine was stopped.
    #[error("engine is stopped")]
    Stopped,
    /// A name, group or endpoint does not fit the wire format.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Create an outbox (DEALER) to `endpoint` with identity [`routing_id`] of our UUID. Our HELLO
    /// follows as a [`Output::Send`]; queue it even if the connection is not up yet.
    Connect {
        /// Peer the outbox is for.
        peer: Uuid,
        /// Where to connect.
        endpoint: String,
    },
    /// Queue these frames on that peer's outbox (sequence numbers already assigned; must not be
    /// reordered or dropped silently — call [`Engine::handle_send_failed`] if they cannot be queued).
    Send {
        /// Destination peer.
        peer: Uuid,
        /// ZRE frame followed by content frames.
        frames: Vec<Bytes>,
    },
    /// Drop that peer's outbox.
    Disconnect {
        /// Peer whose outbox goes away.
        peer: Uuid,
    },
    /// Deliver to the application.
    Event(Event),
}

/// Application events, as Zyre emits them (zre-spec §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's HELLO was accepted.
    Enter {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
        /// Its HELLO headers.
        headers: Vec<(String, String)>,
        /// The endpoint declared in its HELLO.
        endpoint: String,
    },
    /// A peer that had entered is gone.
    Exit {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
    },
    /// A peer joined a group.
    Join {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
        /// Group.
        group: String,
    },
    /// A peer left a group.
    Leave {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
        /// Group.
        group: String,
    },
    /// A message to us alone.
    Whisper {
        /// Sender.
        peer: Uuid,
        /// Sender's name.
        name: String,
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// A message to a group.
    Shout {
        /// Sender.
        peer: Uuid,
        /// Sender's name.
        name: String,
        /// Group.
        group: String,
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// Nothing heard from the peer for the evasive timeout (once per episode).
    Evasive {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
    },
    /// The PING sent when the peer became evasive was not answered (once per episode).
    Silent {
        /// Peer UUID.
        peer: Uuid,
        /// Its name.
        name: String,
    },
    /// We stopped.
    Stop {
        /// Our UUID.
        uuid: Uuid,
        /// Our name.
        name: String,
    },
}

impl Event {
    /// The peer the event is about; `None` for [`Event::Stop`], which is about this node.
    pub fn peer(&self) -> Option<Uuid> {
        match self {
            Event::Enter { peer, .. }
            | Event::Exit { peer, .. }
            | Event::Join { peer, .. }
            | Event::Leave { peer, .. }
            | Event::Whisper { peer, .. }
            | Event::Shout { peer, .. }
            | Event::Evasive { peer, .. }
            | Event::Silent { peer, .. } => Some(*peer),
            Event::Stop { .. } => None,
        }
    }
}

/// Counters of everything unusual the engine saw (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted from ready peers (including HELLO).
    pub messages_received: u64,
    /// Messages produced as [`Output::Send`].
    pub messages_sent: u64,
    /// Frames that failed to decode.
    pub malformed: u64,
    /// Identity frames that were not 17 bytes.
    pub bad_identity: u64,
    /// Non-HELLO messages from unknown or not-ready peers.
    pub not_hello_first: u64,
    /// Sequence errors (peer removed).
    pub sequence_gaps: u64,
    /// JOIN/LEAVE with a wrong status (peer removed).
    pub status_mismatches: u64,
    /// HELLO from a ready peer (peer re-created).
    pub restarts: u64,
    /// Peers disconnected because another UUID appeared at their endpoint.
    pub purged: u64,
    /// Messages, sightings or HELLOs that would connect us to ourselves.
    pub self_connections: u64,
    /// Messages from purged peers (ignored).
    pub from_disconnected: u64,
    /// HELLOs (or sightings) with an unusable (empty) endpoint.
    pub bad_endpoint: u64,
    /// ELECT/LEADER received and ignored.
    pub elections_ignored: u64,
    /// GOODBYEs received.
    pub goodbyes: u64,
    /// Port-0 beacons / departures for known peers.
    pub departures: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// PINGs received.
    pub pings_received: u64,
    /// Peers removed by the expired timer.
    pub expired: u64,
    /// Send failures reported by the shell.
    pub send_failures: u64,
    /// Not-ready peers forgotten because they kept talking on an old session (lost HELLO).
    pub stale_sessions: u64,
}

/// The sans-IO ZRE node. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    uuid: Uuid,
    name: String,
    headers: Vec<(String, String)>,
    endpoint: String,
    timing: Timing,
    /// Origin of the timer grid (the creation time).
    epoch: Instant,
    /// A lower bound of the earliest peer deadline (see [`Engine::poll_timeout`]); `None` when
    /// there are no peers.
    next_wake: Option<Instant>,
    peers: PeerTable,
    peer_groups: PeerGroups,
    own: OwnGroups,
    outputs: VecDeque<Output>,
    stats: Stats,
    stopped: bool,
}

impl Engine {
    /// Creates an engine.
    ///
    /// # Panics
    ///
    /// If [`Config::validate`] fails (a name, endpoint or header key over 255 bytes, or a zero
    /// timeout). Use [`Engine::try_new`] to get the error instead.
    pub fn new(config: Config, now: Instant) -> Engine {
        match Engine::try_new(config, now) {
            Ok(e) => e,
            Err(e) => panic!("invalid zmesh-zre config: {e}"),
        }
    }

    /// Creates an engine, or reports why the configuration is unusable.
    pub fn try_new(config: Config, now: Instant) -> Result<Engine, EngineError> {
        config.validate()?;
        let mut headers = config.headers;
        if !headers.iter().any(|(k, _)| k == ZMESH_HEADER) {
            headers.push((ZMESH_HEADER.to_owned(), ZMESH_HEADER_VALUE.to_owned()));
        }
        let reap = config
            .evasive_timeout
            .min(config.expired_timeout)
            .min(MAX_REAP_INTERVAL);
        Ok(Engine {
            uuid: config.uuid,
            name: config.name,
            headers,
            endpoint: config.endpoint,
            timing: Timing {
                evasive: config.evasive_timeout,
                expired: config.expired_timeout,
                ping_interval: config.ping_interval,
                reap,
                grid: (reap / TIMER_GRID_DIVISOR).max(Duration::from_millis(1)),
                quiet_ping: (config.expired_timeout / QUIET_PING_DIVISOR).max(config.ping_interval),
            },
            epoch: now,
            next_wake: None,
            peers: PeerTable::default(),
            peer_groups: PeerGroups::default(),
            own: OwnGroups::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            stopped: false,
        })
    }

    /// Sets our advertised endpoint (used in every HELLO sent from now on).
    ///
    /// # Panics
    ///
    /// If `endpoint` is longer than 255 bytes; see [`Engine::try_set_endpoint`].
    pub fn set_endpoint(&mut self, endpoint: String) {
        if let Err(e) = self.try_set_endpoint(endpoint) {
            panic!("invalid endpoint: {e}");
        }
    }

    /// Sets our advertised endpoint, or reports that it does not fit in a HELLO.
    pub fn try_set_endpoint(&mut self, endpoint: String) -> Result<(), EngineError> {
        check_string("endpoint", &endpoint)?;
        self.endpoint = endpoint;
        Ok(())
    }

    /// Our UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Our public name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Our advertised endpoint ("" until set).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The headers we send in HELLO (configured ones plus `X-ZMESH`).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Our current status counter.
    pub fn status(&self) -> u8 {
        self.own.status()
    }

    /// True after [`Engine::stop`].
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    // ------------------------------------------------------------------ inputs from the network

    /// A discovery sighting (beacon, gossip, seed): an unknown UUID becomes a new peer (Connect +
    /// HELLO). For a known UUID at the endpoint we talk to it on, the sighting is noted as a sign
    /// of life (zmesh peers only, and not while a PING to it is unanswered: liveness policy in
    /// the module docs). Our own UUID, an empty endpoint, and our own endpoint are ignored.
    ///
    /// This is the hot path of an idle node (one call per peer per beacon interval): a known
    /// peer costs one map lookup, no allocation and no output.
    pub fn handle_sighting(&mut self, now: Instant, uuid: Uuid, endpoint: &str) {
        if self.stopped || uuid == self.uuid {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&uuid) {
            // Beacons heard while a PING is unanswered do not count: the TCP path is in
            // question. A sighting only ever moves this peer's deadlines later, so `next_wake`
            // stays a valid lower bound without being touched.
            if peer.probe_at.is_none() && peer.endpoint == endpoint {
                peer.last_beacon = Some(now);
            }
            return;
        }
        if endpoint.is_empty() {
            self.stats.bad_endpoint += 1;
            debug!(peer = %uuid, "sighting without endpoint ignored");
            return;
        }
        if endpoint == self.endpoint {
            self.stats.self_connections += 1;
            debug!(peer = %uuid, endpoint, "sighting at our own endpoint ignored");
            return;
        }
        self.create_peer(now, uuid, endpoint);
    }

    /// A port-0 beacon or other polite departure: removes a known peer (EXIT if it had entered).
    pub fn handle_departure(&mut self, _now: Instant, uuid: Uuid) {
        if self.stopped || !self.peers.contains_key(&uuid) {
            return;
        }
        self.stats.departures += 1;
        debug!(peer = %uuid, "peer departed");
        self.remove_peer(uuid);
    }

    /// One message from the inbox: `identity` is the ROUTER's identity frame, `frames` the rest.
    /// Applies all receiver rules (module documentation); never panics.
    pub fn handle_message(&mut self, now: Instant, identity: &[u8], frames: Vec<Bytes>) {
        if self.stopped {
            return;
        }
        let Ok(id) = <[u8; IDENTITY_LEN]>::try_from(identity) else {
            self.stats.bad_identity += 1;
            debug!(
                len = identity.len(),
                "message with bad identity length dropped"
            );
            return;
        };
        let (sequence, msg) = match ZreMessage::decode_owned(frames) {
            Ok(x) => x,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(error = %e, "malformed message dropped");
                return;
            }
        };
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&id[1..]);
        let uuid = Uuid::from_bytes(raw);
        if uuid == self.uuid {
            self.stats.self_connections += 1;
            debug!("message carrying our own uuid dropped");
            return;
        }
        trace!(peer = %uuid, msg = msg.name(), sequence, "received");

        if let ZreMessage::Hello { endpoint, .. } = &msg {
            if !self.accept_hello(now, uuid, sequence, endpoint) {
                return;
            }
        } else {
            let Some(peer) = self.peers.get_mut(&uuid) else {
                self.stats.not_hello_first += 1;
                debug!(peer = %uuid, msg = msg.name(), "message from unknown peer dropped");
                return;
            };
            if !peer.connected {
                self.stats.from_disconnected += 1;
                debug!(peer = %uuid, "message from purged peer dropped");
                return;
            }
            if !peer.ready {
                self.stats.not_hello_first += 1;
                debug!(peer = %uuid, msg = msg.name(), "message before HELLO dropped");
                // Lost-HELLO recovery (module docs): the peer is still talking on an old session
                // long after our HELLO should have reached it, so that HELLO was lost. Forget the
                // record; the next sighting sends a fresh HELLO, which the peer treats as a restart.
                if now.saturating_duration_since(peer.last_heard) >= self.timing.evasive {
                    self.stats.stale_sessions += 1;
                    debug!(peer = %uuid, "peer talks on a stale session; forgetting it");
                    self.remove_peer(uuid);
                }
                return;
            }
            let want = peer.want_sequence.wrapping_add(1);
            if sequence != want {
                self.stats.sequence_gaps += 1;
                warn!(peer = %uuid, want, got = sequence, "messages lost; removing peer");
                self.remove_peer(uuid);
                return;
            }
            peer.want_sequence = want;
            // Hot path: a WHISPER/SHOUT only becomes an event, so deliver it with the peer at hand
            // (one map lookup per message instead of three). When no PING is outstanding and the
            // peer is not evasive, `refresh` only moves `last_heard` later, which moves none of
            // its deadlines earlier: `next_wake` stays a valid lower bound without recomputing.
            if let ZreMessage::Whisper { .. } | ZreMessage::Shout { .. } = &msg {
                let calm = peer.ping_sent_at.is_none()
                    && peer.probe_at.is_none()
                    && !peer.evasive
                    && !peer.silent;
                peer.refresh(now);
                let due = (!calm).then(|| peer.next_deadline(&self.timing));
                let name = peer.name.clone();
                if let Some(due) = due {
                    self.lower_wake(due);
                }
                self.stats.messages_received += 1;
                let event = match msg {
                    ZreMessage::Whisper { content } => Event::Whisper {
                        peer: uuid,
                        name,
                        content,
                    },
                    ZreMessage::Shout { group, content } => Event::Shout {
                        peer: uuid,
                        name,
                        group,
                        content,
                    },
                    _ => return, // matched above
                };
                self.event(event);
                return;
            }
        }
        self.stats.messages_received += 1;
        if self.dispatch(uuid, msg) {
            if let Some(peer) = self.peers.get_mut(&uuid) {
                peer.refresh(now);
                let due = peer.next_deadline(&self.timing);
                self.lower_wake(due);
            }
        }
    }

    /// The shell could not queue a message for `peer` (outbox full or closed). A lost message
    /// would surface as a sequence gap on the other side anyway, so the peer is removed now
    /// (EXIT + Disconnect); its next sighting reconnects it.
    pub fn handle_send_failed(&mut self, _now: Instant, peer: Uuid) {
        if self.stopped || !self.peers.contains_key(&peer) {
            return;
        }
        self.stats.send_failures += 1;
        warn!(%peer, "send failed; removing peer");
        self.remove_peer(peer);
    }

    /// Runs the liveness timers (module documentation). Call when `now >= poll_timeout()`;
    /// calling it earlier is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        // Cheap early return for a wake-up before anything is due.
        if self.next_wake.is_none_or(|w| now < w) {
            return;
        }
        // Tick every peer (each tick touches only its own peer), then act on the few that need
        // something, in UUID order so the outputs are deterministic.
        let timing = self.timing;
        let mut due: Vec<(Uuid, TickActions)> = self
            .peers
            .values_mut()
            .filter_map(|p| {
                let a = p.tick(now, &timing);
                (a != TickActions::default()).then_some((p.uuid, a))
            })
            .collect();
        due.sort_unstable_by_key(|(uuid, _)| *uuid);
        for (uuid, a) in due {
            let Some(peer) = self.peers.get(&uuid) else {
                continue;
            };
            let name = peer.name.clone();
            if a.expire {
                self.stats.expired += 1;
                debug!(peer = %uuid, "peer expired");
                self.remove_peer(uuid);
                continue;
            }
            if a.ping {
                self.stats.pings_sent += 1;
                self.send_to(uuid, &ZreMessage::Ping);
            }
            if a.evasive {
                self.event(Event::Evasive {
                    peer: uuid,
                    name: name.clone(),
                });
            }
            if a.silent {
                self.event(Event::Silent { peer: uuid, name });
            }
        }
        self.next_wake = self.exact_wake();
    }

    /// When the shell should call [`Engine::handle_timeout`] next; `None` if there are no peers or
    /// the engine is stopped.
    ///
    /// O(1): the engine keeps a lower bound of the earliest peer deadline. Events that can only
    /// move a deadline later (a sighting, a removal) leave it alone, so the returned instant may
    /// be earlier than necessary — the wake-up then does nothing but recompute the bound
    /// exactly — but it is never later than a real deadline. The shell calls this after every
    /// input (thousands of beacons per second on an idle 100-node host), so it must not scan
    /// the peer table.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped || self.peers.is_empty() {
            return None;
        }
        let earliest = self.next_wake?;
        debug_assert!(
            self.exact_wake().is_none_or(|exact| earliest <= exact),
            "timer bound {earliest:?} later than a real deadline"
        );
        // Round up to the timer grid (a quarter of the reap interval since the engine started), so
        // a node with many peers wakes a few times per reap interval, not once per peer deadline.
        let grid = self.timing.grid.as_nanos().max(1);
        let since = earliest.saturating_duration_since(self.epoch).as_nanos();
        let ticks = since.div_ceil(grid);
        let at = ticks.saturating_mul(grid);
        Some(self.epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
    }

    // ------------------------------------------------------------------ application commands

    /// Joins `group`: returns false if already joined (or if the name is invalid — see
    /// [`Engine::try_join`]). On a real change our status is incremented and JOIN is sent to every
    /// connected peer. No local event.
    pub fn join(&mut self, group: &str) -> bool {
        self.try_join(group).unwrap_or(false)
    }

    /// Like [`Engine::join`], but reports an invalid group name or a stopped engine.
    pub fn try_join(&mut self, group: &str) -> Result<bool, EngineError> {
        self.check_command()?;
        check_string("group", group)?;
        let Some(status) = self.own.join(group) else {
            return Ok(false);
        };
        let msg = ZreMessage::Join {
            group: group.to_owned(),
            status,
        };
        self.send_to_all_connected(&msg);
        Ok(true)
    }

    /// Leaves `group`: returns false if not joined. On a real change our status is incremented and
    /// LEAVE is sent to every connected peer.
    pub fn leave(&mut self, group: &str) -> bool {
        self.try_leave(group).unwrap_or(false)
    }

    /// Like [`Engine::leave`], but reports a stopped engine.
    pub fn try_leave(&mut self, group: &str) -> Result<bool, EngineError> {
        self.check_command()?;
        let Some(status) = self.own.leave(group) else {
            return Ok(false);
        };
        let msg = ZreMessage::Leave {
            group: group.to_owned(),
            status,
        };
        self.send_to_all_connected(&msg);
        Ok(true)
    }

    /// Sends `content` to one peer. The peer must be known and connected (a not-yet-ready peer is
    /// allowed, as in C: it already has our HELLO).
    pub fn whisper(&mut self, peer: Uuid, content: Vec<Bytes>) -> Result<(), EngineError> {
        self.check_command()?;
        if content.is_empty() {
            return Err(EngineError::EmptyContent);
        }
        match self.peers.get(&peer) {
            Some(p) if p.connected => {}
            _ => return Err(EngineError::UnknownPeer(peer)),
        }
        self.send_to(peer, &ZreMessage::Whisper { content });
        Ok(())
    }

    /// Sends `content` to every ready peer known to be in `group` (we need not be in it). Returns
    /// how many peers it was sent to (0 if nobody is in the group).
    pub fn shout(&mut self, group: &str, content: Vec<Bytes>) -> Result<usize, EngineError> {
        self.check_command()?;
        if content.is_empty() {
            return Err(EngineError::EmptyContent);
        }
        check_string("group", group)?;
        let targets: Vec<Uuid> = self
            .peer_groups
            .members(group)
            .iter()
            .copied()
            .filter(|u| self.peers.get(u).is_some_and(|p| p.ready && p.connected))
            .collect();
        let msg = ZreMessage::Shout {
            group: group.to_owned(),
            content,
        };
        let mut sent = 0;
        for uuid in targets {
            if self.send_to(uuid, &msg) {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Polite stop (module documentation): GOODBYE to ready peers that accept it, Disconnect for
    /// every connected peer, then [`Event::Stop`]. Idempotent.
    pub fn stop(&mut self, _now: Instant) {
        if self.stopped {
            return;
        }
        let uuids = self.peers.uuids(|_| true);
        for uuid in uuids {
            let Some(peer) = self.peers.get(&uuid) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            if peer.ready && peer.accepts_extensions() {
                self.send_to(uuid, &ZreMessage::Goodbye);
            }
            self.outputs.push_back(Output::Disconnect { peer: uuid });
        }
        self.peers.clear();
        self.peer_groups.clear();
        self.stopped = true;
        self.event(Event::Stop {
            uuid: self.uuid,
            name: self.name.clone(),
        });
    }

    // ------------------------------------------------------------------ outputs and queries

    /// The next thing the shell must do, in order. Drain after every call into the engine.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Ready peers (HELLO accepted, ENTER emitted, no EXIT yet), sorted by UUID.
    pub fn peers(&self) -> Vec<Uuid> {
        self.peers.uuids(|p| p.ready && p.connected)
    }

    /// Ready peers known to be in `group`, in the order they joined it.
    pub fn peers_by_group(&self, group: &str) -> Vec<Uuid> {
        self.peer_groups
            .members(group)
            .iter()
            .copied()
            .filter(|u| self.peers.get(u).is_some_and(|p| p.ready && p.connected))
            .collect()
    }

    /// Groups we are in, in join order.
    pub fn own_groups(&self) -> Vec<String> {
        self.own.list().to_vec()
    }

    /// Groups that at least one known peer is in, sorted.
    pub fn peer_groups(&self) -> Vec<String> {
        self.peer_groups.names()
    }

    /// What we know about one peer (any state), or `None`.
    pub fn peer(&self, uuid: Uuid) -> Option<PeerInfo> {
        self.peers.get(&uuid).map(Peer::info)
    }

    /// Problem and traffic counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ------------------------------------------------------------------ internals

    /// The exact earliest deadline over all peers (O(peers)).
    fn exact_wake(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| p.next_deadline(&self.timing))
            .min()
    }

    /// A peer's deadline may have moved earlier: keep `next_wake` a lower bound.
    fn lower_wake(&mut self, due: Instant) {
        self.next_wake = Some(self.next_wake.map_or(due, |w| w.min(due)));
    }

    fn check_command(&self) -> Result<(), EngineError> {
        if self.stopped {
            Err(EngineError::Stopped)
        } else {
            Ok(())
        }
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn hello(&self) -> ZreMessage {
        ZreMessage::Hello {
            endpoint: self.endpoint.clone(),
            groups: self.own.list().to_vec(),
            status: self.own.status(),
            name: self.name.clone(),
            headers: self.headers.clone(),
        }
    }

    /// Encodes `msg` with the peer's next sequence number and queues it. The sequence number is
    /// consumed only if encoding succeeds. Returns false if nothing was sent.
    fn send_to(&mut self, uuid: Uuid, msg: &ZreMessage) -> bool {
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return false;
        };
        if !peer.connected {
            return false;
        }
        let sequence = peer.sent_sequence.wrapping_add(1);
        match msg.encode(sequence) {
            Ok(frames) => {
                peer.sent_sequence = sequence;
                self.stats.messages_sent += 1;
                trace!(peer = %uuid, msg = msg.name(), sequence, "send");
                self.outputs.push_back(Output::Send { peer: uuid, frames });
                true
            }
            Err(e) => {
                // Only reachable for values we validate up front; never consume a sequence.
                warn!(peer = %uuid, error = %e, msg = msg.name(), "cannot encode; not sent");
                false
            }
        }
    }

    fn send_to_all_connected(&mut self, msg: &ZreMessage) {
        let targets = self.peers.uuids(|p| p.connected);
        for uuid in targets {
            self.send_to(uuid, msg);
        }
    }

    /// `require_peer` for an unknown UUID (zre-spec §5.1): purge others at the same endpoint,
    /// create the peer, Connect, HELLO.
    fn create_peer(&mut self, now: Instant, uuid: Uuid, endpoint: &str) {
        let others = self
            .peers
            .uuids(|p| p.connected && p.endpoint == endpoint && p.uuid != uuid);
        for other in others {
            self.purge_peer(other);
        }
        let mut peer = Peer::new(uuid, endpoint, now);
        // Only one side of each pair needs to ping an idle link: the smaller UUID pings at
        // `ping_interval`, the other waits longer and is normally refreshed by that PING first.
        peer.defers_ping = self.uuid > uuid;
        self.lower_wake(peer.next_deadline(&self.timing));
        self.peers.insert(uuid, peer);
        self.outputs.push_back(Output::Connect {
            peer: uuid,
            endpoint: endpoint.to_owned(),
        });
        let hello = self.hello();
        self.send_to(uuid, &hello);
        debug!(peer = %uuid, endpoint, "new peer");
    }

    /// Disconnects a peer whose endpoint was taken over; it stays (ignored) until it expires.
    fn purge_peer(&mut self, uuid: Uuid) {
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return;
        };
        self.stats.purged += 1;
        debug!(peer = %uuid, endpoint = %peer.endpoint, "purging peer at reused endpoint");
        let was_ready = peer.ready;
        let name = peer.name.clone();
        let groups = std::mem::take(&mut peer.groups);
        peer.connected = false;
        peer.ready = false;
        // Its beacons no longer count, so its expiry may move earlier.
        let due = peer.next_deadline(&self.timing);
        self.lower_wake(due);
        self.peer_groups.remove_peer(uuid, &groups);
        if was_ready {
            self.event(Event::Exit { peer: uuid, name });
        }
        self.outputs.push_back(Output::Disconnect { peer: uuid });
    }

    /// Removes a peer entirely: EXIT (if it had entered), silent removal from its groups,
    /// Disconnect (if it was connected).
    fn remove_peer(&mut self, uuid: Uuid) {
        let Some(peer) = self.peers.remove(&uuid) else {
            return;
        };
        self.peer_groups.remove_peer(uuid, &peer.groups);
        if peer.ready {
            self.event(Event::Exit {
                peer: uuid,
                name: peer.name,
            });
        }
        if peer.connected {
            self.outputs.push_back(Output::Disconnect { peer: uuid });
        }
    }

    /// The HELLO part of the receiver rules, up to and including the sequence check. Returns true
    /// if the HELLO should be dispatched (the peer then exists and is ready).
    fn accept_hello(&mut self, now: Instant, uuid: Uuid, sequence: u16, endpoint: &str) -> bool {
        if sequence != 1 {
            self.stats.sequence_gaps += 1;
            warn!(peer = %uuid, sequence, "HELLO with sequence != 1");
            if self.peers.get(&uuid).is_some_and(|p| p.ready) {
                self.remove_peer(uuid);
            }
            return false;
        }
        match self.peers.get(&uuid) {
            Some(p) if p.ready => {
                // Restart: forget the old peer object, then treat as unknown.
                self.stats.restarts += 1;
                debug!(peer = %uuid, "HELLO from ready peer: restart");
                self.remove_peer(uuid);
            }
            Some(p) if !p.connected => {
                self.stats.from_disconnected += 1;
                debug!(peer = %uuid, "HELLO from purged peer dropped");
                return false;
            }
            Some(p) if !self.endpoint.is_empty() && p.endpoint == self.endpoint => {
                self.stats.self_connections += 1;
                debug!(peer = %uuid, "HELLO on a connection to ourselves dropped");
                return false;
            }
            Some(_) => {}
            None => {}
        }
        if !self.peers.contains_key(&uuid) {
            if endpoint.is_empty() {
                self.stats.bad_endpoint += 1;
                debug!(peer = %uuid, "HELLO without endpoint from unknown peer dropped");
                return false;
            }
            if endpoint == self.endpoint {
                self.stats.self_connections += 1;
                debug!(peer = %uuid, "HELLO claiming our own endpoint dropped");
                return false;
            }
            self.create_peer(now, uuid, endpoint);
        }
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return false;
        };
        peer.ready = true;
        peer.want_sequence = 1;
        true
    }

    /// Applies one accepted message. Returns false if the peer was removed by it.
    fn dispatch(&mut self, uuid: Uuid, msg: ZreMessage) -> bool {
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return false;
        };
        let name = peer.name.clone();
        match msg {
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                peer.name = name.clone();
                peer.zmesh = headers.iter().any(|(k, _)| k == ZMESH_HEADER);
                peer.headers = headers.clone();
                peer.hello_endpoint = Some(endpoint.clone());
                peer.status = status;
                self.event(Event::Enter {
                    peer: uuid,
                    name: name.clone(),
                    headers,
                    endpoint,
                });
                for group in groups {
                    if self.peer_groups.add(&group, uuid) {
                        if let Some(p) = self.peers.get_mut(&uuid) {
                            p.groups.push(group.clone());
                        }
                        self.event(Event::Join {
                            peer: uuid,
                            name: name.clone(),
                            group,
                        });
                    }
                }
            }
            ZreMessage::Whisper { content } => self.event(Event::Whisper {
                peer: uuid,
                name,
                content,
            }),
            ZreMessage::Shout { group, content } => self.event(Event::Shout {
                peer: uuid,
                name,
                group,
                content,
            }),
            ZreMessage::Join { group, status } => {
                let want = peer.status.wrapping_add(1);
                if status != want {
                    return self.status_mismatch(uuid, "JOIN", want, status);
                }
                peer.status = want;
                if self.peer_groups.add(&group, uuid) {
                    peer.groups.push(group.clone());
                    self.event(Event::Join {
                        peer: uuid,
                        name,
                        group,
                    });
                }
            }
            ZreMessage::Leave { group, status } => {
                let want = peer.status.wrapping_add(1);
                if status != want {
                    return self.status_mismatch(uuid, "LEAVE", want, status);
                }
                peer.status = want;
                if self.peer_groups.remove(&group, uuid) {
                    peer.groups.retain(|g| *g != group);
                    self.event(Event::Leave {
                        peer: uuid,
                        name,
                        group,
                    });
                }
            }
            ZreMessage::Ping => {
                self.stats.pings_received += 1;
                self.send_to(uuid, &ZreMessage::PingOk);
            }
            ZreMessage::PingOk => {}
            ZreMessage::Elect { .. } | ZreMessage::Leader { .. } => {
                self.stats.elections_ignored += 1;
                debug!(peer = %uuid, "election message ignored (not implemented)");
            }
            ZreMessage::Goodbye => {
                self.stats.goodbyes += 1;
                debug!(peer = %uuid, "GOODBYE");
                self.remove_peer(uuid);
                return false;
            }
        }
        true
    }

    fn status_mismatch(&mut self, uuid: Uuid, what: &str, want: u8, got: u8) -> bool {
        self.stats.status_mismatches += 1;
        warn!(peer = %uuid, msg = what, want, got, "status mismatch; removing peer");
        self.remove_peer(uuid);
        false
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
