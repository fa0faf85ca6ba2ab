//! The request/reply state machine (see the parent module for the contract).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;

use super::gather::Gathers;
use super::wire::{self, ErrorBody, ErrorClass};
use super::{
    Command, Config, Delivery, EndReason, GatherId, HandlerId, HandlerKind, InboundKey,
    NoResponders, RequestError, RequestId, RequestSpec, Stats,
};
use crate::caps::Caps;
use crate::envelope::{self, Envelope};
use crate::layer::{Input, Io, Layer};
use crate::pattern::{self, NameError, Pattern};

/// Who is waiting for a request's outcome.
#[derive(Debug)]
pub(super) enum Waiting<W> {
    /// The application, through its waiter.
    App(W),
    /// A scatter/gather of the application's ([`super::gather`]).
    Part(GatherId),
}

/// A request of ours, waiting for its outcome.
#[derive(Debug)]
pub(super) struct Pending<W> {
    pub(super) waiting: Waiting<W>,
    pub(super) peer: Uuid,
    pub(super) deadline: Instant,
}

/// A request handed to one of our handlers.
#[derive(Debug)]
struct Inbound {
    handler: HandlerId,
    deadline: Instant,
}

/// What we know of a peer that is up.
#[derive(Debug, Default)]
struct PeerEntry {
    caps: Caps,
    /// Our requests pending to it.
    pending: HashSet<RequestId>,
    /// Its requests running in our handlers.
    inbound: HashSet<RequestId>,
}

/// The request/reply layer. `W` is whatever the shell wants back when a request ends (a oneshot
/// sender in the node, an id in the simulator).
#[derive(Debug)]
pub struct ReqRep<W> {
    pub(super) config: Config,
    next_id: u64,
    peers: HashMap<Uuid, PeerEntry>,
    pub(super) pending: HashMap<RequestId, Pending<W>>,
    deadlines: BTreeSet<(Instant, RequestId)>,
    inbound: HashMap<InboundKey, Inbound>,
    inbound_deadlines: BTreeSet<(Instant, InboundKey)>,
    handlers: Vec<(HandlerId, Pattern, HandlerKind)>,
    /// Bumped on every handler change (the control layer advertises the patterns).
    handlers_generation: u64,
    pub(super) gathers: Gathers,
    pub(super) stats: Stats,
}

impl<W> ReqRep<W> {
    /// A layer with no peers, no handlers and nothing pending.
    pub fn new(config: Config) -> ReqRep<W> {
        ReqRep {
            next_id: config.first_id,
            config,
            peers: HashMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            inbound: HashMap::new(),
            inbound_deadlines: BTreeSet::new(),
            handlers: Vec::new(),
            handlers_generation: 0,
            gathers: Gathers::default(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Requests of ours pending.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Requests handed to our handlers and not answered yet.
    pub fn running(&self) -> usize {
        self.inbound.len()
    }

    /// True if the peer is up and announced the request layer.
    pub fn is_capable(&self, peer: Uuid) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.caps.has(envelope::Layer::REQREP))
    }

    /// The peers a request is pending to (for invariant checks).
    pub fn pending_peers(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.pending.values().map(|p| p.peer)
    }

    /// The requesters of requests running in our handlers (for invariant checks).
    pub fn inbound_peers(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.inbound.keys().map(|k| k.peer)
    }

    /// The latest deadline of anything pending or running (for invariant checks).
    pub fn latest_deadline(&self) -> Option<Instant> {
        let a = self.deadlines.last().map(|d| d.0);
        let b = self.inbound_deadlines.last().map(|d| d.0);
        a.max(b)
    }

    /// Our requests pending to `peer` (what `any` balances on).
    pub fn pending_to(&self, peer: Uuid) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.pending.len())
    }

    /// The patterns of the registered handlers of `kind`, in registration order (what the
    /// control layer advertises).
    pub fn handler_patterns(&self, kind: HandlerKind) -> Vec<Pattern> {
        self.handlers
            .iter()
            .filter(|(_, _, k)| *k == kind)
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    /// Changes on every registration and removal.
    pub fn handlers_generation(&self) -> u64 {
        self.handlers_generation
    }

    pub(super) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    // ------------------------------------------------------------------ requester side

    /// Sends a request to `peer` and returns its id; its outcome comes later as exactly one
    /// [`Delivery::Done`] carrying `waiter` (at once for the failures that can be known at once).
    /// Fails only for an invalid event name (a caller's mistake, not an outcome).
    pub fn request(
        &mut self,
        now: Instant,
        waiter: W,
        spec: RequestSpec,
        io: &mut impl Io<Delivery<W>>,
    ) -> Result<RequestId, NameError> {
        pattern::validate_name(&spec.event)?;
        self.gathers.clock = Some(now);
        Ok(self.send_request(now, Waiting::App(waiter), spec, io))
    }

    /// Ends a request at once with `error`, without sending anything (a routing decision found
    /// nobody); its [`Delivery::Done`] is delivered now. Returns its id.
    pub fn refuse(
        &mut self,
        waiter: W,
        error: RequestError,
        io: &mut impl Io<Delivery<W>>,
    ) -> RequestId {
        let id = self.fresh_id();
        self.finish(id, Waiting::App(waiter), Uuid::nil(), Err(error), io);
        id
    }

    /// Sends a request whose name is valid; immediate failures end it at once.
    pub(super) fn send_request(
        &mut self,
        now: Instant,
        waiting: Waiting<W>,
        spec: RequestSpec,
        io: &mut impl Io<Delivery<W>>,
    ) -> RequestId {
        let RequestSpec {
            peer,
            event,
            payload,
            timeout,
        } = spec;
        let id = self.fresh_id();
        let refusal = match self.peers.get(&peer) {
            _ if payload.len() > self.config.max_payload => Some(RequestError::PayloadTooLarge),
            None => Some(RequestError::NoResponders(NoResponders::UnknownPeer)),
            Some(e) if !e.caps.has(envelope::Layer::REQREP) => {
                Some(RequestError::NoResponders(NoResponders::NotCapable))
            }
            _ if self.pending.len() >= self.config.max_in_flight => {
                Some(RequestError::Overloaded("requests in flight on this node"))
            }
            Some(e) if e.pending.len() >= self.config.max_in_flight_per_peer => {
                Some(RequestError::Overloaded("requests in flight to this peer"))
            }
            Some(_) => None,
        };
        // At most what `ttl_ms` can tell the responder (~49.7 days): `Duration::MAX` ("no timeout")
        // must not overflow `now + timeout`.
        let timeout = timeout
            .unwrap_or(self.config.default_timeout)
            .min(Duration::from_millis(u32::MAX.into()));
        let mut env = Envelope::new(envelope::Layer::REQREP, wire::REQUEST, id);
        env.subject = Some(event);
        env.ttl_ms = Some(ttl_ms(timeout));
        let frame = match refusal {
            Some(e) => Err(e),
            None => {
                env.payload = payload;
                // A validated name is at most 255 bytes, so encoding cannot fail.
                env.encode()
                    .map_err(|_| RequestError::NoResponders(NoResponders::NoHandler))
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                self.finish(id, waiting, peer, Err(e), io);
                return id;
            }
        };
        let deadline = now + timeout;
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.pending.insert(id);
        }
        self.pending.insert(
            id,
            Pending {
                waiting,
                peer,
                deadline,
            },
        );
        self.deadlines.insert((deadline, id));
        self.stats.requests_sent += 1;
        io.send(peer, frame);
        id
    }

    /// The one place a request of ours ends: its waiter gets the outcome (exactly once, since
    /// the caller took it out of `pending`).
    pub(super) fn finish(
        &mut self,
        id: RequestId,
        waiting: Waiting<W>,
        peer: Uuid,
        result: Result<Bytes, RequestError>,
        io: &mut impl Io<Delivery<W>>,
    ) {
        match waiting {
            Waiting::App(waiter) => io.deliver(Delivery::Done { waiter, id, result }),
            Waiting::Part(g) => self.part_done(g, id, peer, result, io),
        }
    }

    /// Sends a tick (nobody answers). Fails at once if nobody can receive it.
    pub fn tick(
        &mut self,
        peer: Uuid,
        event: &str,
        payload: Bytes,
        io: &mut impl Io<Delivery<W>>,
    ) -> Result<(), TickError> {
        pattern::validate_name(event).map_err(TickError::Name)?;
        if payload.len() > self.config.max_payload {
            return Err(TickError::Request(RequestError::PayloadTooLarge));
        }
        match self.peers.get(&peer) {
            None => {
                return Err(TickError::Request(RequestError::NoResponders(
                    NoResponders::UnknownPeer,
                )))
            }
            Some(e) if !e.caps.has(envelope::Layer::REQREP) => {
                return Err(TickError::Request(RequestError::NoResponders(
                    NoResponders::NotCapable,
                )))
            }
            Some(_) => {}
        }
        let mut env = Envelope::new(envelope::Layer::REQREP, wire::TICK, self.fresh_id());
        env.subject = Some(event.to_owned());
        env.payload = payload;
        if let Ok(frame) = env.encode() {
            self.stats.ticks_sent += 1;
            io.send(peer, frame);
        }
        Ok(())
    }

    /// Gives up on a request: it ends with [`RequestError::Cancelled`] and the responder is told.
    /// Unknown (already ended) ids are ignored.
    pub fn cancel(&mut self, id: RequestId, io: &mut impl Io<Delivery<W>>) {
        if matches!(self.pending.get(&id), Some(p) if matches!(p.waiting, Waiting::Part(_))) {
            // A part of a gather ends with its gather.
            return;
        }
        let Some(p) = self.withdraw(id, io) else {
            return;
        };
        self.finish(id, p.waiting, p.peer, Err(RequestError::Cancelled), io);
    }

    /// Takes a pending request out and tells its peer (CANCEL, best effort).
    pub(super) fn withdraw(
        &mut self,
        id: RequestId,
        io: &mut impl Io<Delivery<W>>,
    ) -> Option<Pending<W>> {
        let p = self.take_pending(id)?;
        if self.peers.contains_key(&p.peer) {
            let mut env = Envelope::new(envelope::Layer::REQREP, wire::CANCEL, self.fresh_id());
            env.corr = Some(id);
            if let Ok(frame) = env.encode() {
                io.send(p.peer, frame);
            }
        }
        Some(p)
    }

    pub(super) fn take_pending(&mut self, id: RequestId) -> Option<Pending<W>> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        if let Some(e) = self.peers.get_mut(&p.peer) {
            e.pending.remove(&id);
        }
        Some(p)
    }

    fn on_answer(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        let Some(id) = env.corr else {
            self.malformed(from, "answer without corr");
            return;
        };
        let result = if env.kind == wire::REPLY {
            Ok(env.payload)
        } else {
            match ErrorBody::decode(&env.payload) {
                Ok(body) => Err(match body.class {
                    ErrorClass::Handler => RequestError::Handler {
                        code: body.code,
                        message: body.message,
                    },
                    ErrorClass::NoHandler => RequestError::NoResponders(NoResponders::NoHandler),
                    ErrorClass::Overloaded => RequestError::Overloaded("responder's handlers"),
                    ErrorClass::PayloadTooLarge => RequestError::PayloadTooLarge,
                }),
                Err(e) => {
                    self.malformed(from, &format!("bad ERROR body: {e}"));
                    return;
                }
            }
        };
        match self.pending.get(&id) {
            None => {
                self.stats.late_replies += 1;
                debug!(peer = %from, id, "reply for a request that already ended; dropped");
            }
            Some(p) if p.peer != from => {
                self.stats.foreign_replies += 1;
                debug!(peer = %from, id, "reply from a peer the request was not sent to; dropped");
            }
            Some(_) => {
                if let Some(p) = self.take_pending(id) {
                    self.stats.replies_received += 1;
                    self.finish(id, p.waiting, from, result, io);
                }
            }
        }
    }

    // ------------------------------------------------------------------ responder side

    /// Registers a handler (for peers present and future). Re-using an id replaces it.
    pub fn register(&mut self, id: HandlerId, pattern: Pattern, kind: HandlerKind) {
        self.handlers.retain(|(h, _, _)| *h != id);
        self.handlers.push((id, pattern, kind));
        self.handlers_generation += 1;
    }

    /// Removes a handler. Requests already handed to it stay its to answer.
    pub fn unregister(&mut self, id: HandlerId) {
        self.handlers.retain(|(h, _, _)| *h != id);
        self.handlers_generation += 1;
    }

    /// Answers a request handed to a handler: a payload, or an application error. An answer
    /// for a request that already ended is counted and dropped.
    pub fn reply(
        &mut self,
        key: InboundKey,
        result: Result<Bytes, (u16, String)>,
        io: &mut impl Io<Delivery<W>>,
    ) {
        if !self.take_inbound(key) {
            self.stats.replies_after_end += 1;
            debug!(peer = %key.peer, id = key.id, "answer after the request ended; dropped");
            return;
        }
        let env = match result {
            Ok(payload) if payload.len() <= self.config.max_payload => {
                let mut env = Envelope::new(envelope::Layer::REQREP, wire::REPLY, 0);
                env.payload = payload;
                env
            }
            Ok(_) => error_envelope(ErrorClass::PayloadTooLarge, 0, "reply payload too large"),
            Err((code, message)) => error_envelope(ErrorClass::Handler, code, &message),
        };
        self.send_answer(key, env, io);
    }

    /// Drops a request handed to a handler without answering (the requester times out).
    pub fn abandon(&mut self, key: InboundKey) {
        self.take_inbound(key);
    }

    fn take_inbound(&mut self, key: InboundKey) -> bool {
        let Some(ib) = self.inbound.remove(&key) else {
            return false;
        };
        self.inbound_deadlines.remove(&(ib.deadline, key));
        if let Some(e) = self.peers.get_mut(&key.peer) {
            e.inbound.remove(&key.id);
        }
        true
    }

    fn send_answer(&mut self, key: InboundKey, mut env: Envelope, io: &mut impl Io<Delivery<W>>) {
        env.id = self.fresh_id();
        env.corr = Some(key.id);
        if let Ok(frame) = env.encode() {
            io.send(key.peer, frame);
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: Uuid,
        env: Envelope,
        io: &mut impl Io<Delivery<W>>,
    ) {
        self.stats.requests_received += 1;
        let (Some(event), Some(ttl)) = (env.subject.as_deref(), env.ttl_ms) else {
            self.malformed(from, "REQUEST without subject or ttl");
            return;
        };
        if pattern::validate_name(event).is_err() {
            self.malformed(from, "REQUEST with an invalid event name");
            return;
        }
        let key = InboundKey {
            peer: from,
            id: env.id,
        };
        if self.inbound.contains_key(&key) {
            self.stats.duplicate_requests += 1;
            debug!(peer = %from, id = env.id, "duplicate REQUEST ignored");
            return;
        }
        let refuse = |this: &mut Self, class, why: &str, io: &mut _| {
            this.send_answer(key, error_envelope(class, 0, why), io)
        };
        if env.payload.len() > self.config.max_payload {
            self.stats.refused_too_large += 1;
            refuse(self, ErrorClass::PayloadTooLarge, "payload too large", io);
            return;
        }
        let Some(handler) = self
            .handlers
            .iter()
            .find(|(_, p, k)| *k == HandlerKind::Request && p.matches(event))
            .map(|(h, _, _)| *h)
        else {
            self.stats.no_handler += 1;
            refuse(self, ErrorClass::NoHandler, "no handler", io);
            return;
        };
        if self.inbound.len() >= self.config.max_running {
            self.stats.refused_overloaded += 1;
            refuse(self, ErrorClass::Overloaded, "handlers busy", io);
            return;
        }
        let deadline = now + Duration::from_millis(u64::from(ttl));
        self.inbound.insert(key, Inbound { handler, deadline });
        self.inbound_deadlines.insert((deadline, key));
        if let Some(e) = self.peers.get_mut(&from) {
            e.inbound.insert(key.id);
        }
        io.deliver(Delivery::Request {
            handler,
            key,
            event: event.to_owned(),
            payload: env.payload,
            deadline,
        });
    }

    fn on_tick(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        self.stats.ticks_received += 1;
        let Some(event) = env.subject.as_deref() else {
            self.malformed(from, "TICK without subject");
            return;
        };
        if pattern::validate_name(event).is_err() || env.payload.len() > self.config.max_payload {
            self.malformed(from, "TICK with an invalid event or too large");
            return;
        }
        let mut handled = false;
        for (h, p, k) in &self.handlers {
            if *k == HandlerKind::Tick && p.matches(event) {
                handled = true;
                io.deliver(Delivery::Tick {
                    handler: *h,
                    peer: from,
                    event: event.to_owned(),
                    payload: env.payload.clone(),
                });
            }
        }
        if !handled {
            self.stats.ticks_unhandled += 1;
        }
    }

    fn on_cancel(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        let Some(id) = env.corr else {
            self.malformed(from, "CANCEL without corr");
            return;
        };
        let key = InboundKey { peer: from, id };
        if let Some(handler) = self.inbound.get(&key).map(|i| i.handler) {
            self.take_inbound(key);
            io.deliver(Delivery::Ended {
                handler,
                key,
                reason: EndReason::Cancelled,
            });
        }
    }

    fn malformed(&mut self, from: Uuid, why: &str) {
        self.stats.malformed += 1;
        debug!(peer = %from, why, "malformed request/reply envelope dropped");
    }

    // ------------------------------------------------------------------ peers, time, stop

    fn peer_down(&mut self, peer: Uuid, io: &mut impl Io<Delivery<W>>) {
        let Some(entry) = self.peers.remove(&peer) else {
            return;
        };
        let mut ids: Vec<_> = entry.pending.into_iter().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                self.deadlines.remove(&(p.deadline, id));
                self.finish(id, p.waiting, peer, Err(RequestError::PeerLeft), io);
            }
        }
        let mut ids: Vec<_> = entry.inbound.into_iter().collect();
        ids.sort_unstable();
        for id in ids {
            let key = InboundKey { peer, id };
            if let Some(ib) = self.inbound.remove(&key) {
                self.inbound_deadlines.remove(&(ib.deadline, key));
                io.deliver(Delivery::Ended {
                    handler: ib.handler,
                    key,
                    reason: EndReason::PeerLeft,
                });
            }
        }
    }

    fn on_timeout(&mut self, now: Instant, io: &mut impl Io<Delivery<W>>) {
        // Gathers first: a part whose deadline is its gather's ends with the gather.
        self.gathers_timeout(now, io);
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            if let Some(p) = self.take_pending(id) {
                self.stats.timeouts += 1;
                self.finish(id, p.waiting, p.peer, Err(RequestError::Timeout), io);
            } else {
                self.deadlines.pop_first();
            }
        }
        while let Some(&(at, key)) = self.inbound_deadlines.first() {
            if at > now {
                break;
            }
            let handler = self.inbound.get(&key).map(|i| i.handler);
            if !self.take_inbound(key) {
                self.inbound_deadlines.pop_first();
            }
            if let Some(handler) = handler {
                io.deliver(Delivery::Ended {
                    handler,
                    key,
                    reason: EndReason::Expired,
                });
            }
        }
    }

    /// Ends everything: pending requests with [`RequestError::Stopped`], running ones with
    /// [`EndReason::Stopped`]. Nothing is sent.
    pub fn stop(&mut self, io: &mut impl Io<Delivery<W>>) {
        self.gathers_stop(io);
        let mut ids: Vec<_> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(p) = self.take_pending(id) {
                self.finish(id, p.waiting, p.peer, Err(RequestError::Stopped), io);
            }
        }
        let mut keys: Vec<_> = self.inbound.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let handler = self.inbound.get(&key).map(|i| i.handler);
            self.take_inbound(key);
            if let Some(handler) = handler {
                io.deliver(Delivery::Ended {
                    handler,
                    key,
                    reason: EndReason::Stopped,
                });
            }
        }
        self.peers.clear();
    }
}

/// Why a tick could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickError {
    /// The event name is invalid.
    #[error(transparent)]
    Name(NameError),
    /// Nobody can receive it, or it is too large.
    #[error(transparent)]
    Request(RequestError),
}

fn ttl_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn error_envelope(class: ErrorClass, code: u16, message: &str) -> Envelope {
    let mut env = Envelope::new(envelope::Layer::REQREP, wire::ERROR, 0);
    env.payload = ErrorBody {
        class,
        code,
        message: message.to_owned(),
    }
    .encode();
    env
}

impl<W> Layer for ReqRep<W> {
    const ID: envelope::Layer = envelope::Layer::REQREP;
    type Command = Command<W>;
    type Delivery = Delivery<W>;

    fn handle(
        &mut self,
        input: Input<'_, Command<W>>,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        self.gathers.clock = Some(now);
        match input {
            Input::PeerUp(view) => {
                let entry = self.peers.entry(view.peer).or_default();
                entry.caps = view.caps;
            }
            Input::PeerDown { peer } => self.peer_down(peer, io),
            Input::Joined { .. } | Input::Left { .. } => {}
            Input::Envelope { from, envelope, .. } => {
                if !self.peers.contains_key(&from) {
                    self.malformed(from, "envelope from a peer that is not up");
                    return;
                }
                match envelope.kind {
                    wire::REQUEST => self.on_request(now, from, envelope, io),
                    wire::TICK => self.on_tick(from, envelope, io),
                    wire::REPLY | wire::ERROR => self.on_answer(from, envelope, io),
                    wire::CANCEL => self.on_cancel(from, envelope, io),
                    _ => self.malformed(from, "unknown kind"),
                }
            }
            Input::Timeout => self.on_timeout(now, io),
            Input::Command(c) => match c {
                Command::Request { waiter, spec } => {
                    // An invalid name is a caller's mistake; through `handle` it is dropped.
                    let _ = self.request(now, waiter, spec, io);
                }
                Command::Tick {
                    peer,
                    event,
                    payload,
                } => {
                    let _ = self.tick(peer, &event, payload, io);
                }
                Command::Cancel(id) => self.cancel(id, io),
                Command::Register { id, pattern, kind } => self.register(id, pattern, kind),
                Command::Unregister(id) => self.unregister(id),
                Command::Reply { key, result } => self.reply(key, result, io),
                Command::Abandon(key) => self.abandon(key),
            },
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.first().map(|d| d.0),
            self.inbound_deadlines.first().map(|d| d.0),
            self.gathers.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
