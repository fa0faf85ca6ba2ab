//! The distributed event emitter (nanomitter's idea without its leader): `emit(topic, payload)`
//! on any node, `subscribe(pattern)` on any node, as a sans-IO [`Layer`] (layer 3, `ev`).
//!
//! * **Topics** are event names (`sensor.temp.eu`), **patterns** are [`crate::pattern`]s: `*`
//!   one segment, `**` any number. nanomitter's catch-all `*` is `**` here; NATS's `a.>` is
//!   `a.*.**` (one or more segments) and `a.*` is the same in both.
//! * **Interest-based delivery, no master.** Every node sends its subscriptions whole (SUBS) to
//!   every zmesh peer that runs the layer when they meet and whenever they change; a publisher
//!   sends an EVENT straight to each peer with a matching subscription, and to nobody else —
//!   no broker, no re-broadcast hop, no flooding. A plain ZRE peer never receives one.
//! * **Order**: per publisher, events arrive in emit order (one ZRE session, FIFO); each EVENT
//!   carries the publisher's sequence number. At most once, like every WHISPER.
//! * **Local delivery**: a node's own subscriptions receive its own events too (an event
//!   emitter's listeners hear the emitter), delivered at once.
//! * **Retained values** (opt-in, per topic): `emit(.., retain = true)` keeps the topic's last
//!   value; a subscription that asks for retained values gets, from every publisher that keeps
//!   one for a matching topic, that value (RETAINED) as soon as the publisher learns of it.
//! * **Slow subscribers — explicit, never silent.** Each subscription is either plain (the
//!   publisher sends freely; the subscriber's shell drops what its application does not take,
//!   oldest first, counted) or **flow-controlled** (SUBS flag): the subscriber announces a
//!   credit *window* W, and an event on a topic one of its flow-controlled patterns matches is
//!   sent as FLOW_EVENT and counted; the publisher may have at most W counted events
//!   unconsumed there, and the subscriber grants more (CREDIT) as its application consumes
//!   ([`Emitter::consumed`]). An emit that would exceed a subscriber's credit sends nothing and
//!   fails with [`EmitError::Backpressure`] naming the peers; the shell waits for
//!   [`Delivery::Credit`] before trying again: back-pressure reaches the publisher, per
//!   subscriber. A counted event that no flow-controlled subscription of the receiver takes
//!   any more counts as consumed when it arrives.
//!
//! Bounded: subscriptions and retained topics are capped ([`Config`], [`wire::MAX_SUBSCRIPTIONS`]);
//! the per-peer state is a few counters and the peer's patterns.

pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;
use tracing::debug;
use uuid::Uuid;

use crate::envelope::{self, Envelope};
use crate::layer::{Input, Io, Layer};
use crate::pattern::{self, NameError, Pattern};
pub use wire::{Sub, Subs};

/// Names one subscription; chosen by the caller of [`Emitter::subscribe`].
pub type SubId = u64;

/// Limits of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Credit window announced to publishers (0: no flow control). Default 1,024.
    pub window: u32,
    /// Most retained topics this node keeps (default 1,024).
    pub max_retained: usize,
    /// Largest payload emitted or accepted (default 16 MiB).
    pub max_payload: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window: 1024,
            max_retained: 1024,
            max_payload: 16 << 20,
        }
    }
}

/// What the layer hands to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// An event for some of our subscriptions.
    Event {
        /// The subscriptions it matches.
        subs: Vec<SubId>,
        /// The publisher (`None`: this node).
        from: Option<Uuid>,
        /// The publisher's sequence number of the event (0 for our own).
        seq: u64,
        /// Topic.
        topic: String,
        /// Data.
        payload: Bytes,
        /// A retained value replayed to a new subscription.
        retained: bool,
        /// True if a flow-controlled subscription got it: report it with
        /// [`Emitter::consumed`] once the application has taken it.
        flow: bool,
    },
    /// A subscriber granted credit, or left: an emit that was refused may go through now.
    Credit {
        /// The peer.
        peer: Uuid,
    },
}

/// Why an emit did not go out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The topic is not a valid name.
    #[error("invalid topic: {0}")]
    Name(#[from] NameError),
    /// The payload exceeds the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// These subscribers have no credit left: nothing was sent; retry after [`Delivery::Credit`].
    #[error("back-pressure from {} subscriber(s)", .0.len())]
    Backpressure(Vec<Uuid>),
    /// The retained-topic limit is reached.
    #[error("too many retained topics")]
    TooManyRetained,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The pattern is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// [`wire::MAX_SUBSCRIPTIONS`] reached.
    #[error("too many subscriptions")]
    TooMany,
}

/// Counters (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// EVENT and RETAINED messages sent.
    pub events_sent: u64,
    /// EVENT and RETAINED messages received.
    pub events_received: u64,
    /// Received events no subscription of ours matched (we unsubscribed meanwhile).
    pub unwanted: u64,
    /// Emits refused for back-pressure.
    pub backpressured: u64,
    /// CREDIT messages sent.
    pub credits_sent: u64,
    /// SUBS older than the one held (ignored).
    pub stale_subs: u64,
    /// Unusable envelopes of this layer.
    pub malformed: u64,
}

/// What we know of a peer that runs the layer.
#[derive(Debug, Default)]
struct Remote {
    subs: Option<Subs>,
    /// Events we sent it, and how many it accepts in total (flow control).
    sent: u64,
    allowed: u64,
    /// Events it sent us, we consumed, and the credit we granted.
    received: u64,
    consumed: u64,
    granted: u64,
}

impl Remote {
    fn wants(&self, topic: &str) -> bool {
        self.subs
            .as_ref()
            .is_some_and(|s| s.patterns.iter().any(|x| x.pattern.matches(topic)))
    }

    /// An event on `topic` counts against its credit.
    fn counts(&self, topic: &str) -> bool {
        self.subs.as_ref().is_some_and(|s| {
            s.patterns
                .iter()
                .any(|x| x.flow && x.pattern.matches(topic))
        })
    }

    fn blocked(&self, topic: &str) -> bool {
        self.counts(topic) && self.sent >= self.allowed
    }
}

/// The event emitter layer (module docs).
#[derive(Debug)]
pub struct Emitter {
    config: Config,
    subs: BTreeMap<SubId, (Pattern, bool, bool)>,
    version: u64,
    seq: u64,
    peers: BTreeMap<Uuid, Remote>,
    retained: BTreeMap<String, Bytes>,
    stats: Stats,
}

impl Emitter {
    /// A layer with no subscription and no peer.
    pub fn new(config: Config) -> Emitter {
        Emitter {
            config,
            subs: BTreeMap::new(),
            version: 1,
            seq: 0,
            peers: BTreeMap::new(),
            retained: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Our subscriptions as peers see them.
    pub fn own(&self) -> Subs {
        let mut patterns: Vec<Sub> = Vec::new();
        for (p, r, f) in self.subs.values() {
            match patterns.iter_mut().find(|s| s.pattern == *p) {
                Some(e) => {
                    e.retained |= *r;
                    e.flow |= *f;
                }
                None => patterns.push(Sub {
                    pattern: p.clone(),
                    retained: *r,
                    flow: *f,
                }),
            }
        }
        Subs {
            version: self.version,
            window: self.config.window,
            patterns,
        }
    }

    /// A peer's subscriptions as we know them.
    pub fn peer_subs(&self, peer: Uuid) -> Option<&Subs> {
        self.peers.get(&peer)?.subs.as_ref()
    }

    /// The peers an event on `topic` would go to now, in UUID order.
    pub fn subscribers(&self, topic: &str) -> Vec<Uuid> {
        self.peers
            .iter()
            .filter(|(_, r)| r.wants(topic))
            .map(|(u, _)| *u)
            .collect()
    }

    /// Subscribes to `pattern`; `retained`: also get the retained values of matching topics;
    /// `flow`: the application reports what it consumed ([`Emitter::consumed`]), and
    /// publishers are held to the credit window. Tells every peer. Re-using an id replaces it.
    pub fn subscribe(
        &mut self,
        id: SubId,
        pattern: Pattern,
        retained: bool,
        flow: bool,
        io: &mut impl Io<Delivery>,
    ) -> Result<(), SubscribeError> {
        if !self.subs.contains_key(&id) && self.subs.len() >= wire::MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        if retained {
            // Our own retained values, for a local late subscriber.
            for (topic, payload) in &self.retained {
                if pattern.matches(topic) {
                    io.deliver(Delivery::Event {
                        subs: vec![id],
                        from: None,
                        seq: 0,
                        topic: topic.clone(),
                        payload: payload.clone(),
                        retained: true,
                        flow: false,
                    });
                }
            }
        }
        self.subs.insert(id, (pattern, retained, flow));
        self.changed(io);
        Ok(())
    }

    /// Removes a subscription and tells every peer (unknown ids are ignored).
    pub fn unsubscribe(&mut self, id: SubId, io: &mut impl Io<Delivery>) {
        if self.subs.remove(&id).is_some() {
            self.changed(io);
        }
    }

    fn changed(&mut self, io: &mut impl Io<Delivery>) {
        self.version += 1;
        let frame = self.subs_frame();
        for peer in self.peers.keys() {
            io.send(*peer, frame.clone());
        }
    }

    fn subs_frame(&self) -> Bytes {
        let mut env = Envelope::new(envelope::Layer::EVENTS, wire::SUBS, self.version);
        env.payload = self.own().encode();
        env.encode().expect("no subject")
    }

    fn event_frame(&self, kind: u8, seq: u64, topic: &str, payload: &Bytes) -> Bytes {
        let mut env = Envelope::new(envelope::Layer::EVENTS, kind, seq);
        env.subject = Some(topic.to_owned());
        env.payload = payload.clone();
        env.encode().expect("a valid name fits the subject")
    }

    /// Emits an event to every subscriber (module docs); returns the peers it went to.
    pub fn emit(
        &mut self,
        topic: &str,
        payload: Bytes,
        retain: bool,
        io: &mut impl Io<Delivery>,
    ) -> Result<Vec<Uuid>, EmitError> {
        pattern::validate_name(topic)?;
        if payload.len() > self.config.max_payload {
            return Err(EmitError::PayloadTooLarge);
        }
        if retain
            && !self.retained.contains_key(topic)
            && self.retained.len() >= self.config.max_retained
        {
            return Err(EmitError::TooManyRetained);
        }
        let targets = self.subscribers(topic);
        let blocked: Vec<Uuid> = targets
            .iter()
            .filter(|p| self.peers[p].blocked(topic))
            .copied()
            .collect();
        if !blocked.is_empty() {
            self.stats.backpressured += 1;
            return Err(EmitError::Backpressure(blocked));
        }
        if !targets.is_empty() {
            self.seq += 1;
            let plain = self.event_frame(wire::EVENT, self.seq, topic, &payload);
            let counted = self.event_frame(wire::FLOW_EVENT, self.seq, topic, &payload);
            for p in &targets {
                let Some(r) = self.peers.get_mut(p) else {
                    continue;
                };
                let frame = if r.counts(topic) {
                    r.sent += 1;
                    &counted
                } else {
                    &plain
                };
                self.stats.events_sent += 1;
                io.send(*p, frame.clone());
            }
        }
        let local: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, (p, _, _))| p.matches(topic))
            .map(|(id, _)| *id)
            .collect();
        if retain {
            self.retained.insert(topic.to_owned(), payload.clone());
        }
        if !local.is_empty() {
            io.deliver(Delivery::Event {
                subs: local,
                from: None,
                seq: 0,
                topic: topic.to_owned(),
                payload,
                retained: false,
                flow: false,
            });
        }
        Ok(targets)
    }

    /// Forgets the retained value of `topic`; false if there was none.
    pub fn forget_retained(&mut self, topic: &str) -> bool {
        self.retained.remove(topic).is_some()
    }

    /// The application consumed `n` flow-controlled events of `publisher`: credit goes back to
    /// it once half a window is used up.
    pub fn consumed(&mut self, publisher: Uuid, n: u64, io: &mut impl Io<Delivery>) {
        let window = u64::from(self.config.window);
        let Some(r) = self.peers.get_mut(&publisher) else {
            return;
        };
        r.consumed = (r.consumed + n).min(r.received);
        if window == 0 {
            return;
        }
        let grant = r.consumed + window;
        if grant >= r.granted + window.div_ceil(2) {
            r.granted = grant;
            self.stats.credits_sent += 1;
            let mut env = Envelope::new(envelope::Layer::EVENTS, wire::CREDIT, grant);
            env.payload = wire::encode_credit(grant);
            io.send(publisher, env.encode().expect("no subject"));
        }
    }

    fn on_subs(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery>) {
        let subs = match Subs::decode(&env.payload) {
            Ok(s) => s,
            Err(e) => return self.malformed(from, format!("bad SUBS: {e}")),
        };
        let Some(r) = self.peers.get_mut(&from) else {
            return self.malformed(from, "SUBS from a peer that is not up".into());
        };
        if r.subs.as_ref().is_some_and(|s| s.version >= subs.version) {
            self.stats.stale_subs += 1;
            return;
        }
        let first = r.subs.is_none();
        if first {
            // The window is the credit before any CREDIT.
            r.allowed = r.allowed.max(u64::from(subs.window));
        }
        // Retained values for the patterns that newly ask for them.
        let before: Vec<Pattern> = r
            .subs
            .as_ref()
            .map(|s| {
                s.patterns
                    .iter()
                    .filter(|x| x.retained)
                    .map(|x| x.pattern.clone())
                    .collect()
            })
            .unwrap_or_default();
        let fresh: Vec<Pattern> = subs
            .patterns
            .iter()
            .filter(|x| x.retained && !before.contains(&x.pattern))
            .map(|x| x.pattern.clone())
            .collect();
        r.subs = Some(subs);
        let replay: Vec<(String, Bytes)> = self
            .retained
            .iter()
            .filter(|(t, _)| fresh.iter().any(|p| p.matches(t)))
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect();
        for (topic, payload) in replay {
            self.seq += 1;
            // Replays are not counted against credit (at most one per retained topic).
            let frame = self.event_frame(wire::RETAINED, self.seq, &topic, &payload);
            self.stats.events_sent += 1;
            io.send(from, frame);
        }
        if first {
            io.deliver(Delivery::Credit { peer: from });
        }
    }

    fn on_event(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery>) {
        let Some(topic) = env.subject.filter(|t| pattern::validate_name(t).is_ok()) else {
            return self.malformed(from, "EVENT without a valid topic".into());
        };
        if env.payload.len() > self.config.max_payload {
            return self.malformed(from, "EVENT payload too large".into());
        }
        let Some(r) = self.peers.get_mut(&from) else {
            return self.malformed(from, "EVENT from a peer that is not up".into());
        };
        let counted = env.kind == wire::FLOW_EVENT;
        if counted {
            r.received += 1;
        }
        self.stats.events_received += 1;
        let retained = env.kind == wire::RETAINED;
        let matching: Vec<(SubId, bool)> = self
            .subs
            .iter()
            .filter(|(_, (p, wants_retained, _))| {
                p.matches(&topic) && (!retained || *wants_retained)
            })
            .map(|(id, (_, _, flow))| (*id, *flow))
            .collect();
        // Reported by the application only if counted and a flow subscription takes it.
        let flow = counted && matching.iter().any(|(_, f)| *f);
        if matching.is_empty() {
            self.stats.unwanted += 1;
            debug!(peer = %from, topic, "event for no subscription of ours; dropped");
        }
        if counted && !flow {
            self.consumed(from, 1, io);
        }
        if matching.is_empty() {
            return;
        }
        io.deliver(Delivery::Event {
            subs: matching.into_iter().map(|(id, _)| id).collect(),
            from: Some(from),
            seq: env.id,
            topic,
            payload: env.payload,
            retained,
            flow,
        });
    }

    fn on_credit(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery>) {
        let allowed = match wire::decode_credit(&env.payload) {
            Ok(a) => a,
            Err(e) => return self.malformed(from, format!("bad CREDIT: {e}")),
        };
        let Some(r) = self.peers.get_mut(&from) else {
            return self.malformed(from, "CREDIT from a peer that is not up".into());
        };
        if allowed > r.allowed {
            r.allowed = allowed;
            io.deliver(Delivery::Credit { peer: from });
        }
    }

    fn malformed(&mut self, from: Uuid, why: String) {
        self.stats.malformed += 1;
        debug!(peer = %from, why, "malformed event-emitter envelope dropped");
    }

    /// Forgets every peer (the node stops).
    pub fn stop(&mut self) {
        self.peers.clear();
    }
}

impl Layer for Emitter {
    const ID: envelope::Layer = envelope::Layer::EVENTS;
    type Command = std::convert::Infallible;
    type Delivery = Delivery;

    fn handle(
        &mut self,
        input: Input<'_, Self::Command>,
        _now: Instant,
        io: &mut impl Io<Delivery>,
    ) {
        match input {
            Input::PeerUp(view) => {
                if view.caps.has(envelope::Layer::EVENTS) {
                    // Our SUBS grants the window: the credit before any CREDIT.
                    let granted = u64::from(self.config.window);
                    self.peers.insert(
                        view.peer,
                        Remote {
                            granted,
                            ..Remote::default()
                        },
                    );
                    io.send(view.peer, self.subs_frame());
                }
            }
            Input::PeerDown { peer } => {
                if self.peers.remove(&peer).is_some() {
                    // Whoever waited for its credit need not any more.
                    io.deliver(Delivery::Credit { peer });
                }
            }
            Input::Envelope { from, envelope, .. } => match envelope.kind {
                wire::SUBS => self.on_subs(from, envelope, io),
                wire::EVENT | wire::RETAINED | wire::FLOW_EVENT => {
                    self.on_event(from, envelope, io)
                }
                wire::CREDIT => self.on_credit(from, envelope, io),
                k => self.malformed(from, format!("unknown kind {k}")),
            },
            Input::Joined { .. } | Input::Left { .. } | Input::Timeout => {}
            Input::Command(never) => match never {},
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
