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
//! Every rule of docs/zre.md §5–§7 is applied here, so the engine is tested by feeding encoded
//! messages as a remote peer would and asserting on the outputs.
//!
//! The rules live beside the code that applies them: the receiver rules (docs/zre.md §5.2) in
//! `receive.rs`, the liveness policy and the timer grid in `liveness.rs`, the configuration, the
//! timer defaults, the validation rules and the routing id in `config.rs`; the sender rules, the
//! extensions capability rule and `stop()` are below, with the commands.
//!
//! # Sender rules (docs/zre.md §6)
//!
//! Every peer object numbers its messages from 1 (HELLO). A sequence number is consumed only when
//! the frames are actually produced, so an encoding error never creates a gap. After 65534 the
//! next number is what that peer expects where it can be known ([`crate::sequence`]). Our `u8` status
//! is incremented before each JOIN/LEAVE and only on a real change; JOIN/LEAVE go to every
//! connected peer (ready or not, like C — they have our HELLO already). SHOUT goes once to every
//! ready peer known to be in the group (we need not be in it ourselves); never to ourselves.
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
//! # Secure mode, and how it closes the impersonation hole
//!
//! With [`Config::public_key`] set the engine runs Zyre's secure mode (`zyre_set_zcert`), and more
//! (rules and reasons in `engine/keys.rs`):
//!
//! * **Like Zyre:** our HELLO carries `X-PUBLICKEY` (the Z85 text of our key); every peer must be
//!   announced with a key (a version-3 beacon, a keyed sighting, or the `X-PUBLICKEY` of its
//!   HELLO), and [`Output::Connect`] carries it, so the shell's outbox is a CURVE client that
//!   only completes its handshake with the holder of that key. Keyless sightings and HELLOs are
//!   ignored ([`Stats::mode_mismatches`], logged once): no silent downgrade.
//! * **Beyond Zyre (zyre#533):** in Zyre a ZRE message names its sender only by the routing id
//!   the sender chose (`0x01` + UUID), and nothing ties that id to the CURVE key the connection
//!   was authenticated with, so any peer admitted by the authenticator can send as any other
//!   UUID: join groups, shout, whisper in its name. Here the shell passes the connection's
//!   authenticated key with every message ([`Engine::handle_message_with_key`]), and the engine
//!   binds each UUID to the key it was announced with: a message is accepted only if its
//!   connection's key is the key of the UUID it claims, and a HELLO only if its `X-PUBLICKEY`
//!   equals both that connection key and the key already announced for the UUID. A peer that
//!   claims another's UUID is refused and counted ([`Stats::impersonations`]); a sighting that
//!   announces a known UUID with another key is ignored ([`Stats::key_conflicts`]). And a new
//!   UUID at a known peer's endpoint purges that peer only if both carry the same key (the same
//!   node restarted under a new UUID), so a HELLO cannot evict another peer either.
//!   Since the CURVE handshake proves possession of the secret key, speaking as UUID U now needs
//!   U's secret key, not just an admitted key of one's own.
//! * **What stays open:** the binding is made by the first announcement of a UUID (trust on
//!   first use): a node admitted by the authenticator can still claim a UUID *nobody here has
//!   seen yet*, which no ZRE-compatible scheme can prevent since UUIDs are not derived from
//!   keys; an allow-list bounds who can. Beacons are unauthenticated UDP, as in Zyre: a forged
//!   leave beacon or a beacon at a peer's endpoint can still make us drop a peer until its next
//!   beacon.
//!
//! # Other differences from C Zyre
//!
//! * [`Engine::peers`] lists ready peers only (C lists every peer object, including ones that
//!   never sent HELLO).
//! * [`Engine::handle_send_failed`] removes the peer at once (EXIT + Disconnect). In C the
//!   equivalent path is dead code and the lost message shows up as a gap on the other side.
//! * Bad user input (names/groups longer than 255 bytes, empty content) is an error, never
//!   silently truncated.

mod config;
mod error;
mod keys;
pub(crate) mod liveness;
mod output;
mod receive;
mod stats;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::content::Content;
use bytes::Bytes;
use tracing::{debug, trace, warn};
use uuid::Uuid;

use crate::group::{OwnGroups, PeerGroups};
use crate::msg::ZreMessage;
use crate::peer::{Peer, PeerInfo, PeerState, PeerTable, ZMESH_HEADER, ZMESH_HEADER_VALUE};

pub use config::{
    routing_id, Config, DEFAULT_ENDPOINT_MOVE_AFTER, DEFAULT_EVASIVE_TIMEOUT,
    DEFAULT_EXPIRED_TIMEOUT, DEFAULT_PING_INTERVAL, IDENTITY_LEN, MAX_REAP_INTERVAL,
};
pub use error::EngineError;
pub use keys::PUBLICKEY_HEADER;
pub use output::{Event, Output};
pub use stats::Stats;

use config::{check_endpoint, check_group};
use liveness::Timing;

/// The sans-IO ZRE node. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    uuid: Uuid,
    name: String,
    headers: Vec<(String, String)>,
    endpoint: String,
    timing: Timing,
    /// [`Config::endpoint_move_after`].
    endpoint_move_after: Duration,
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
    /// Our CURVE public key: `Some` = secure mode (module documentation).
    public_key: Option<[u8; 32]>,
    /// What secure mode has already said once in the log.
    notices: keys::Notices,
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
        let timing = Timing::new(&config);
        let mut headers = config.headers;
        if !headers.iter().any(|(k, _)| k == ZMESH_HEADER) {
            headers.push((ZMESH_HEADER.to_owned(), ZMESH_HEADER_VALUE.to_owned()));
        }
        if let Some(key) = &config.public_key {
            keys::set_header(&mut headers, key);
        }
        Ok(Engine {
            uuid: config.uuid,
            name: config.name,
            headers,
            endpoint: config.endpoint,
            timing,
            endpoint_move_after: config.endpoint_move_after,
            epoch: now,
            next_wake: None,
            peers: PeerTable::default(),
            peer_groups: PeerGroups::default(),
            own: OwnGroups::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            stopped: false,
            public_key: config.public_key,
            notices: keys::Notices::default(),
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
        check_endpoint(&endpoint)?;
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

    /// Our CURVE public key; `Some` in secure mode.
    pub fn public_key(&self) -> Option<&[u8; 32]> {
        self.public_key.as_ref()
    }

    /// True in secure mode ([`Config::public_key`] set).
    pub fn is_secure(&self) -> bool {
        self.public_key.is_some()
    }

    /// Our current status counter.
    pub fn status(&self) -> u8 {
        self.own.status()
    }

    /// True after [`Engine::stop`].
    pub fn is_stopped(&self) -> bool {
        self.stopped
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
        check_group(group)?;
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
    pub fn whisper(&mut self, peer: Uuid, content: impl Into<Content>) -> Result<(), EngineError> {
        let content = content.into();
        self.check_command()?;
        if content.is_empty() {
            return Err(EngineError::EmptyContent);
        }
        match self.peers.get(&peer) {
            Some(p) if p.is_connected() => {}
            _ => return Err(EngineError::UnknownPeer(peer)),
        }
        self.send_to(peer, &ZreMessage::Whisper { content });
        Ok(())
    }

    /// [`Engine::whisper`] for a shell that can hand a message to its transport at once: instead
    /// of queueing an [`Output::Send`], the engine calls `send` with the peer, the message's ZRE
    /// frame (6 bytes, carrying the peer's next sequence number) and the content frames; `send`
    /// returns whether the transport took the message. The bytes on the wire are those of
    /// `whisper`. If `send` refuses, the engine does what [`Engine::handle_send_failed`] does after
    /// a refused `Output::Send` (the peer is removed: EXIT and Disconnect are queued as outputs);
    /// a send to an outbox the shell no longer has counts as taken, as `Output::Send` would.
    ///
    /// Outputs already queued go first: while any is pending, the message is queued behind them
    /// as by `whisper` and `send` is not called, so order per peer is kept either way. Either
    /// way, flush the outputs afterwards if [`Engine::has_output`] says there are any.
    pub fn whisper_with(
        &mut self,
        peer: Uuid,
        content: &[Bytes],
        send: impl FnOnce(Uuid, &[u8; 6], &[Bytes]) -> bool,
    ) -> Result<(), EngineError> {
        self.check_command()?;
        if content.is_empty() {
            return Err(EngineError::EmptyContent);
        }
        if !self.outputs.is_empty() {
            return self.whisper(peer, content);
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(EngineError::UnknownPeer(peer));
        };
        if !p.is_connected() {
            return Err(EngineError::UnknownPeer(peer));
        }
        let sequence = p.wrap.next(p.sent_sequence);
        p.sent_sequence = sequence;
        self.stats.messages_sent += 1;
        trace!(peer = %peer, msg = "WHISPER", sequence, "send");
        let [sig_hi, sig_lo] = crate::msg::SIGNATURE.to_be_bytes();
        let [seq_hi, seq_lo] = sequence.to_be_bytes();
        let header = [
            sig_hi,
            sig_lo,
            crate::msg::ID_WHISPER,
            crate::msg::VERSION,
            seq_hi,
            seq_lo,
        ];
        if !send(peer, &header, content) {
            self.send_failed(peer);
        }
        Ok(())
    }

    /// Whether outputs are waiting for [`Engine::poll_output`].
    pub fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Sends `content` to every ready peer known to be in `group` (we need not be in it). Returns
    /// how many peers it was sent to (0 if nobody is in the group).
    pub fn shout(
        &mut self,
        group: &str,
        content: impl Into<Content>,
    ) -> Result<usize, EngineError> {
        self.shout_to(group, content, |_| true)
    }

    /// Like [`Engine::shout`], but only to the members `keep` accepts: a layer above ZRE shouts
    /// to the members that announced it, so plain ZRE members never receive its frames. The
    /// message is still a SHOUT (the receivers see the group).
    pub fn shout_to(
        &mut self,
        group: &str,
        content: impl Into<Content>,
        keep: impl Fn(&Uuid) -> bool,
    ) -> Result<usize, EngineError> {
        let content = content.into();
        self.check_command()?;
        if content.is_empty() {
            return Err(EngineError::EmptyContent);
        }
        check_group(group)?;
        let targets: Vec<Uuid> = self
            .peer_groups
            .members(group)
            .iter()
            .copied()
            .filter(|u| keep(u) && self.peers.get(u).is_some_and(|p| p.is_ready()))
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
            if !peer.is_connected() {
                continue;
            }
            if peer.is_ready() && peer.accepts_extensions() {
                self.send_to(uuid, &ZreMessage::Goodbye);
            }
            self.outputs.push_back(Output::Disconnect { peer: uuid });
        }
        self.peers.clear();
        self.peer_groups.clear();
        self.stopped = true;
        self.event(Event::Stop {
            uuid: self.uuid,
            name: self.name.as_str().into(),
        });
    }

    // ------------------------------------------------------------------ outputs and queries

    /// The next thing the shell must do, in order. Drain after every call into the engine.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Ready peers (HELLO accepted, ENTER emitted, no EXIT yet), sorted by UUID.
    pub fn peers(&self) -> Vec<Uuid> {
        self.peers.uuids(|p| p.is_ready())
    }

    /// Ready peers known to be in `group`, in the order they joined it.
    pub fn peers_by_group(&self, group: &str) -> Vec<Uuid> {
        self.peer_groups
            .members(group)
            .iter()
            .copied()
            .filter(|u| self.peers.get(u).is_some_and(|p| p.is_ready()))
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
        if !peer.is_connected() {
            return false;
        }
        let sequence = peer.wrap.next(peer.sent_sequence);
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
        let targets = self.peers.uuids(|p| p.is_connected());
        for uuid in targets {
            self.send_to(uuid, msg);
        }
    }

    /// Purges every other connected peer at `endpoint` (the same node restarted under a new
    /// UUID). In secure mode only those bound to the same key: a peer admitted with its own key
    /// cannot evict another by claiming its endpoint.
    fn purge_others_at(&mut self, uuid: Uuid, endpoint: &str, public_key: Option<[u8; 32]>) {
        let others = self.peers.uuids(|p| {
            p.is_connected()
                && p.endpoint == endpoint
                && p.uuid != uuid
                && (public_key.is_none() || p.public_key == public_key)
        });
        for other in others {
            self.purge_peer(other);
        }
    }

    /// `require_peer` for an unknown UUID (docs/zre.md §5.1): purge others at the same endpoint,
    /// create the peer (bound to `public_key` in secure mode), Connect, HELLO. In secure mode only
    /// peers bound to the same key are purged (the same node under a new UUID): a peer admitted
    /// with its own key cannot evict another by claiming its endpoint in a HELLO.
    fn create_peer(
        &mut self,
        now: Instant,
        uuid: Uuid,
        endpoint: &str,
        public_key: Option<[u8; 32]>,
    ) {
        self.purge_others_at(uuid, endpoint, public_key);
        let mut peer = Peer::new(uuid, endpoint, now);
        // Only one side of each pair needs to ping an idle link: the smaller UUID pings at
        // `ping_interval`, the other waits longer and is normally refreshed by that PING first.
        peer.defers_ping = self.uuid > uuid;
        peer.public_key = public_key;
        self.lower_wake(peer.next_deadline(&self.timing));
        self.peers.insert(uuid, peer);
        self.outputs.push_back(Output::Connect {
            peer: uuid,
            endpoint: endpoint.to_owned(),
            public_key,
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
        let was_ready = peer.is_ready();
        let name = peer.name.clone();
        let groups = std::mem::take(&mut peer.groups);
        peer.state = PeerState::Disconnected;
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
        let connected = peer.is_connected();
        if peer.is_ready() {
            self.event(Event::Exit {
                peer: uuid,
                name: peer.name,
            });
        }
        if connected {
            self.outputs.push_back(Output::Disconnect { peer: uuid });
        }
    }
}

#[cfg(test)]
mod tests;
