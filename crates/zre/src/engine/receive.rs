//! Inputs from the network: sightings, departures, inbox messages and send failures.
//!
//! # Receiver rules (docs/zre.md §5.2)
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
//! * The sequence check is strict, except that after 65534 both 65535 (C Zyre, zmesh) and 0
//!   (Pyre, zyre.js) are accepted; which one came decides how we wrap toward that peer
//!   ([`crate::sequence`]). A gap removes the peer (EXIT + Disconnect); its next beacon brings it
//!   back. A HELLO must carry sequence 1.
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
//! * **Moves.** A known peer sighted at another endpoint is moved there only once no source has
//!   named its current endpoint for [`Config::endpoint_move_after`] (3 beacon intervals; the
//!   peer's creation counts as a naming, so a peer created from a HELLO whose endpoint we
//!   cannot reach moves to the first endpoint a beacon names once that grace is over). A move
//!   restarts our side of the session at the new endpoint (Disconnect, Connect, our HELLO with
//!   sequence 1) and keeps what we know of the peer; a peer that had our earlier HELLO takes the
//!   new one as a restart and answers with its own, so both sides see EXIT + ENTER once (an
//!   address change); one that never got it (we could not reach its HELLO's endpoint) just
//!   takes it. Zyre reaches the same state only after the old peer expires (30 s); here it takes
//!   a few beacon intervals, and no stale peer stays. A node seen at several live endpoints
//!   (several interfaces, IPv4 and IPv6) keeps the first.
//! * Secure mode (a key in [`Config::public_key`]) adds the key rules of `engine/keys.rs` before
//!   all of the above: keyless input is ignored, a message whose connection key is not its
//!   sender's bound key is refused ([`Stats::impersonations`]). C asserts on an empty
//!   `X-PUBLICKEY`; here it is refused like any bad key. Nothing a peer sends can make the engine
//!   panic.
//!
//! [`Config::public_key`]: super::Config::public_key
//! [`Config::endpoint_move_after`]: super::Config::endpoint_move_after
//! [`Stats::impersonations`]: super::Stats::impersonations
//!
//! [`Stats::bad_identity`]: super::Stats::bad_identity
//! [`Stats::malformed`]: super::Stats::malformed
//! [`Stats::not_hello_first`]: super::Stats::not_hello_first
//! [`Stats::status_mismatches`]: super::Stats::status_mismatches
//! [`Stats::elections_ignored`]: super::Stats::elections_ignored

use std::time::Instant;

use crate::content::Frames;
use crate::name::Name;
use bytes::Bytes;
use tracing::{debug, trace, warn};
use uuid::Uuid;

use super::config::uuid_from_routing_id;
use super::liveness::Liveness;
use super::{Engine, Event, Output};
use crate::msg::ZreMessage;
use crate::peer::{Peer, PeerState, ZMESH_HEADER};
use crate::sequence::{self, SeqWrap, Step};

impl Engine {
    /// A discovery sighting (beacon, gossip, seed): an unknown UUID becomes a new peer (Connect +
    /// HELLO). For a known UUID at the endpoint we talk to it on, the sighting is noted as a sign
    /// of life (zmesh peers only, and not while a PING to it is unanswered: liveness policy in
    /// `engine/liveness.rs`). Our own UUID, an empty endpoint, and our own endpoint are ignored.
    ///
    /// This is the hot path of an idle node (one call per peer per beacon interval): a known
    /// peer costs one map lookup, no allocation and no output.
    pub fn handle_sighting(&mut self, now: Instant, uuid: Uuid, endpoint: &str) {
        self.handle_sighting_with_key(now, uuid, endpoint, None)
    }

    /// [`Engine::handle_sighting`] with the CURVE key the source announced for the peer (a
    /// version-3 beacon's, gossip's `endpoint|key`). Secure mode needs it: an unknown UUID is
    /// bound to this key and connected to with it; a known one must come with the same key. A
    /// plain engine ignores keyed sightings (rules in `engine/keys.rs`).
    pub fn handle_sighting_with_key(
        &mut self,
        now: Instant,
        uuid: Uuid,
        endpoint: &str,
        public_key: Option<[u8; 32]>,
    ) {
        if self.stopped || uuid == self.uuid {
            return;
        }
        if !self.sighting_fits_mode(uuid, public_key.as_ref()) {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&uuid) {
            if peer.public_key != public_key {
                self.key_conflict(uuid);
                return;
            }
            if peer.endpoint != endpoint {
                // Another endpoint of the same node (another interface, IPv4 and IPv6) or
                // its new address. The current endpoint stands while sources keep naming it.
                let stale = peer
                    .endpoint_seen
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.endpoint_move_after);
                if stale && !endpoint.is_empty() && endpoint != self.endpoint {
                    self.move_peer(now, uuid, endpoint, public_key);
                }
                return;
            }
            peer.endpoint_seen = Some(now);
            // Beacons heard while a PING is unanswered do not count: the TCP path is in
            // question. A sighting only ever moves this peer's deadlines later, so `next_wake`
            // stays a valid lower bound without being touched.
            if peer.probe_at.is_none() {
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
        self.create_peer(now, uuid, endpoint, public_key);
        if let Some(peer) = self.peers.get_mut(&uuid) {
            peer.endpoint_seen = Some(now);
        }
    }

    /// Moves a known peer to `endpoint` (module documentation, "Moves"): our side of the
    /// session restarts there (a new outbox, our HELLO with sequence 1); what we know of the
    /// peer (ready, its sequence, groups) stays, so a peer that never got our first HELLO (it
    /// went to an endpoint we could not reach) simply takes this one. A peer that had it sees a
    /// restart and answers with a new HELLO of its own. A peer that is not ready is re-created.
    fn move_peer(
        &mut self,
        now: Instant,
        uuid: Uuid,
        endpoint: &str,
        public_key: Option<[u8; 32]>,
    ) {
        self.stats.moved += 1;
        debug!(peer = %uuid, endpoint, "peer moved to a new endpoint; new session there");
        if !self.peers.get(&uuid).is_some_and(|p| p.is_ready()) {
            self.remove_peer(uuid);
            self.create_peer(now, uuid, endpoint, public_key);
            return;
        }
        self.purge_others_at(uuid, endpoint, public_key);
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return;
        };
        peer.endpoint = endpoint.to_owned();
        peer.endpoint_seen = Some(now);
        peer.moved_at = Some(now);
        peer.sent_sequence = 0;
        let key = peer.public_key;
        self.outputs.push_back(Output::Disconnect { peer: uuid });
        self.outputs.push_back(Output::Connect {
            peer: uuid,
            endpoint: endpoint.to_owned(),
            public_key: key,
        });
        let hello = self.hello();
        self.send_to(uuid, &hello);
    }

    /// A moved peer answered our new session with its HELLO: what we knew of it goes (EXIT, its
    /// groups), the session we opened at the move stays (same outbox, our sequence goes on),
    /// and the HELLO being accepted makes it enter again.
    fn renew_moved_peer(&mut self, now: Instant, uuid: Uuid) {
        let Some(old) = self.peers.remove(&uuid) else {
            return;
        };
        self.peer_groups.remove_peer(uuid, &old.groups);
        self.event(Event::Exit {
            peer: uuid,
            name: old.name,
        });
        let mut peer = Peer::new(uuid, &old.endpoint, now);
        peer.defers_ping = old.defers_ping;
        peer.public_key = old.public_key;
        peer.sent_sequence = old.sent_sequence;
        peer.wrap = old.wrap;
        peer.endpoint_seen = old.endpoint_seen;
        self.lower_wake(peer.next_deadline(&self.timing));
        self.peers.insert(uuid, peer);
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
    /// Applies all receiver rules (`engine/receive.rs`); never panics. A secure engine refuses
    /// it: use [`Engine::handle_message_with_key`].
    pub fn handle_message(&mut self, now: Instant, identity: &[u8], frames: Frames) {
        self.handle_message_with_key(now, identity, frames, None)
    }

    /// [`Engine::handle_message`] with the CURVE key the inbox authenticated for the connection
    /// the message came over (`None` for a plaintext connection). In secure mode the message is
    /// accepted only if that key is the key its sender's UUID was announced with (the binding of
    /// the module documentation); a plain engine ignores the key.
    pub fn handle_message_with_key(
        &mut self,
        now: Instant,
        identity: &[u8],
        frames: Frames,
        conn_key: Option<[u8; 32]>,
    ) {
        self.handle_message_with(now, identity, frames, conn_key, Err);
    }

    /// [`Engine::handle_message_with_key`] for a shell that can take application data at once:
    /// a WHISPER or SHOUT event is offered to `deliver` instead of being queued as an
    /// [`Output::Event`], but only while no output is pending (so events keep their order with
    /// every other output). `deliver` hands back (`Err`) an event it does not take, which is then
    /// queued as usual. Everything else (state, statistics, the outputs of other messages) is
    /// exactly as with `handle_message_with_key`.
    pub fn handle_message_with(
        &mut self,
        now: Instant,
        identity: &[u8],
        frames: Frames,
        conn_key: Option<[u8; 32]>,
        deliver: impl FnOnce(Event) -> Result<(), Event>,
    ) {
        let Some(uuid) = self.sender(identity) else {
            return;
        };
        let decoded = ZreMessage::decode_owned(frames);
        self.receive(now, uuid, decoded, conn_key, deliver);
    }

    /// [`Engine::handle_message_with`] for a message of two frames given as its first frame
    /// (borrowed: the ZRE frame) and its second (the content), for a shell whose transport can
    /// hand a short first frame over without making a `Bytes` of it. Same rules, same result as
    /// `handle_message_with` on the two frames.
    pub fn handle_message_parts_with(
        &mut self,
        now: Instant,
        identity: &[u8],
        first: &[u8],
        body: Bytes,
        conn_key: Option<[u8; 32]>,
        deliver: impl FnOnce(Event) -> Result<(), Event>,
    ) {
        let Some(uuid) = self.sender(identity) else {
            return;
        };
        let decoded = ZreMessage::decode_first_and(first, body);
        self.receive(now, uuid, decoded, conn_key, deliver);
    }

    /// The sender's UUID from the ROUTER identity frame; `None` (counted) if malformed, and
    /// `None` (nothing counted) once the engine has stopped: the message is then ignored.
    fn sender(&mut self, identity: &[u8]) -> Option<Uuid> {
        if self.stopped {
            return None;
        }
        let uuid = uuid_from_routing_id(identity);
        if uuid.is_none() {
            self.stats.bad_identity += 1;
            debug!(
                len = identity.len(),
                "message with bad identity length dropped"
            );
        }
        uuid
    }

    /// The receiver rules for a decoded message from `uuid` (module docs).
    #[inline]
    fn receive(
        &mut self,
        now: Instant,
        uuid: Uuid,
        decoded: Result<(u16, ZreMessage), crate::msg::WireError>,
        conn_key: Option<[u8; 32]>,
        deliver: impl FnOnce(Event) -> Result<(), Event>,
    ) {
        let (sequence, msg) = match decoded {
            Ok(x) => x,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(error = %e, "malformed message dropped");
                return;
            }
        };
        if uuid == self.uuid {
            self.stats.self_connections += 1;
            debug!("message carrying our own uuid dropped");
            return;
        }
        trace!(peer = %uuid, msg = msg.name(), sequence, "received");

        if let ZreMessage::Hello {
            endpoint, headers, ..
        } = &msg
        {
            let Ok(key) = self.check_hello_key(uuid, headers, conn_key.as_ref()) else {
                return;
            };
            if !self.accept_hello(now, uuid, sequence, endpoint, key) {
                return;
            }
        } else {
            let Some(peer) = self.peers.get_mut(&uuid) else {
                self.stats.not_hello_first += 1;
                debug!(peer = %uuid, msg = msg.name(), "message from unknown peer dropped");
                return;
            };
            // Secure mode: the connection must be authenticated as the sender's bound key.
            if self.public_key.is_some() && peer.public_key != conn_key {
                if conn_key.is_none() {
                    self.unauthenticated(uuid);
                } else {
                    self.impersonation(uuid, "connection key is not the sender's");
                }
                return;
            }
            if !peer.is_connected() {
                self.stats.from_disconnected += 1;
                debug!(peer = %uuid, "message from purged peer dropped");
                return;
            }
            if !peer.is_ready() {
                self.stats.not_hello_first += 1;
                debug!(peer = %uuid, msg = msg.name(), "message before HELLO dropped");
                // Lost-HELLO recovery (liveness policy): the peer is still talking on an old
                // session long after our HELLO should have reached it, so that HELLO was lost.
                // Forget the record; the next sighting sends a fresh HELLO, which the peer treats
                // as a restart.
                if now.saturating_duration_since(peer.last_heard) >= self.timing.evasive {
                    self.stats.stale_sessions += 1;
                    debug!(peer = %uuid, "peer talks on a stale session; forgetting it");
                    self.remove_peer(uuid);
                }
                return;
            }
            match sequence::step(peer.want_sequence, sequence) {
                Step::Next => {}
                Step::Shows(wrap) => {
                    debug!(peer = %uuid, ?wrap, "peer's sequence wrapped; following its rule");
                    peer.wrap = wrap;
                }
                Step::Gap => {
                    self.stats.sequence_gaps += 1;
                    let want = peer.want_sequence.wrapping_add(1);
                    warn!(peer = %uuid, want, got = sequence, "messages lost; removing peer");
                    self.remove_peer(uuid);
                    return;
                }
            }
            peer.want_sequence = sequence;
            // Hot path: a WHISPER/SHOUT only becomes an event, so deliver it with the peer at hand
            // (one map lookup per message instead of three). When no PING is outstanding and the
            // peer is not evasive, `refresh` only moves `last_heard` later, which moves none of
            // its deadlines earlier: `next_wake` stays a valid lower bound without recomputing.
            if let ZreMessage::Whisper { .. } | ZreMessage::Shout { .. } = &msg {
                let calm = peer.ping_sent_at.is_none()
                    && peer.probe_at.is_none()
                    && peer.liveness == Liveness::Alive;
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
                if !self.outputs.is_empty() {
                    self.event(event);
                } else if let Err(event) = deliver(event) {
                    self.event(event);
                }
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
        self.send_failed(peer);
    }

    /// [`Engine::handle_send_failed`] (it needs no clock).
    pub(super) fn send_failed(&mut self, peer: Uuid) {
        if self.stopped || !self.peers.contains_key(&peer) {
            return;
        }
        self.stats.send_failures += 1;
        warn!(%peer, "send failed; removing peer");
        self.remove_peer(peer);
    }

    /// The HELLO part of the receiver rules, up to and including the sequence check. Returns true
    /// if the HELLO should be dispatched (the peer then exists and is ready).
    fn accept_hello(
        &mut self,
        now: Instant,
        uuid: Uuid,
        sequence: u16,
        endpoint: &str,
        public_key: Option<[u8; 32]>,
    ) -> bool {
        if sequence != 1 {
            self.stats.sequence_gaps += 1;
            warn!(peer = %uuid, sequence, "HELLO with sequence != 1");
            if self.peers.get(&uuid).is_some_and(|p| p.is_ready()) {
                self.remove_peer(uuid);
            }
            return false;
        }
        // A restart whose HELLO names the endpoint we had moved the peer away from (a node on
        // several segments names its primary one, which we may not reach) keeps the endpoint
        // the sources name: otherwise each side's restart would move the other back and forth.
        let mut endpoint = endpoint;
        let mut kept = None;
        match self.peers.get(&uuid) {
            Some(p)
                if p.is_ready()
                    && p.moved_at.is_some_and(|at| {
                        now.saturating_duration_since(at) < self.timing.evasive
                    }) =>
            {
                // The answer to the HELLO our move sent: the peer restarted its side of the
                // session; ours is already new, so no HELLO of ours goes back.
                self.stats.restarts += 1;
                debug!(peer = %uuid, "HELLO answering our move: session renewed");
                self.renew_moved_peer(now, uuid);
            }
            Some(p) if p.is_ready() => {
                if p.hello_endpoint.as_deref() == Some(endpoint) && p.endpoint != endpoint {
                    kept = Some((p.endpoint.clone(), p.endpoint_seen));
                }
                // Restart: forget the old peer object, then treat as unknown.
                self.stats.restarts += 1;
                debug!(peer = %uuid, "HELLO from ready peer: restart");
                self.remove_peer(uuid);
            }
            Some(p) if !p.is_connected() => {
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
            if let Some((e, _)) = &kept {
                endpoint = e;
            }
            self.create_peer(now, uuid, endpoint, public_key);
        }
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return false;
        };
        if let Some((_, seen)) = kept {
            peer.endpoint_seen = seen;
        }
        peer.state = PeerState::Ready;
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
                let name: Name = name.into();
                peer.name = name.clone();
                peer.zmesh = headers.iter().any(|(k, _)| k == ZMESH_HEADER);
                if peer.zmesh {
                    // zmesh wraps like C (and accepts both): the one plain peer we can identify.
                    peer.wrap = SeqWrap::U16;
                }
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
