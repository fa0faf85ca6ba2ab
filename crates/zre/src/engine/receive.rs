//! Inputs from the network: sightings, departures, inbox messages and send failures.
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
//! [`Stats::bad_identity`]: super::Stats::bad_identity
//! [`Stats::malformed`]: super::Stats::malformed
//! [`Stats::not_hello_first`]: super::Stats::not_hello_first
//! [`Stats::status_mismatches`]: super::Stats::status_mismatches
//! [`Stats::elections_ignored`]: super::Stats::elections_ignored

use std::time::Instant;

use crate::content::Frames;
use crate::name::Name;
use tracing::{debug, trace, warn};
use uuid::Uuid;

use super::config::uuid_from_routing_id;
use super::liveness::Liveness;
use super::{Engine, Event};
use crate::msg::ZreMessage;
use crate::peer::{PeerState, ZMESH_HEADER};

impl Engine {
    /// A discovery sighting (beacon, gossip, seed): an unknown UUID becomes a new peer (Connect +
    /// HELLO). For a known UUID at the endpoint we talk to it on, the sighting is noted as a sign
    /// of life (zmesh peers only, and not while a PING to it is unanswered: liveness policy in
    /// `engine/liveness.rs`). Our own UUID, an empty endpoint, and our own endpoint are ignored.
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
    /// Applies all receiver rules (`engine/receive.rs`); never panics.
    pub fn handle_message(&mut self, now: Instant, identity: &[u8], frames: Frames) {
        if self.stopped {
            return;
        }
        let Some(uuid) = uuid_from_routing_id(identity) else {
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

    /// The HELLO part of the receiver rules, up to and including the sequence check. Returns true
    /// if the HELLO should be dispatched (the peer then exists and is ready).
    fn accept_hello(&mut self, now: Instant, uuid: Uuid, sequence: u16, endpoint: &str) -> bool {
        if sequence != 1 {
            self.stats.sequence_gaps += 1;
            warn!(peer = %uuid, sequence, "HELLO with sequence != 1");
            if self.peers.get(&uuid).is_some_and(|p| p.is_ready()) {
                self.remove_peer(uuid);
            }
            return false;
        }
        match self.peers.get(&uuid) {
            Some(p) if p.is_ready() => {
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
            self.create_peer(now, uuid, endpoint);
        }
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return false;
        };
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
