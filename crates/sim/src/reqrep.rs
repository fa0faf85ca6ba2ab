//! Request/reply in the simulator: every instance's application sends requests and ticks through
//! its driver's [`ReqRep`](zmesh_core::reqrep::ReqRep) layer and answers the requests handed to
//! its handlers; every outcome is checked against what really happened.
//!
//! * **Handlers.** Each slot registers a fixed list of request and tick handlers (chosen per
//!   seed: some slots none, some catch-alls, some only patterns that the events below do not
//!   match), so a restart with the same UUID keeps them and "did the responder have a handler"
//!   has one answer per UUID.
//! * **Requesters.** Every instance sends requests to random ready peers, to UUIDs it does not
//!   know (random ones, and instances that are dead, not yet discovered or about to crash), with
//!   random or default timeouts, sometimes in bursts past the per-peer limit; it cancels some of
//!   its own requests (and sometimes one that already ended) and sends ticks.
//! * **Handlers' behaviour.** A handed request is answered after a random virtual delay (a reply
//!   payload unique to that request, or a handler error), abandoned, answered after its deadline,
//!   or never answered.
//!
//! Checked on every delivery and after every step (see the crate docs for the list), and at the
//! end of the quiet phase: nothing is pending or running anywhere.
//!
//! All request/reply randomness comes from a second RNG seeded from the seed, so the ZRE-level
//! scenario of a seed with requests disabled ([`SimConfig::requests`]) is the one it always was.

use rand::seq::SliceRandom;
use zmesh_core::layer::Layer;
use zmesh_core::pattern::Pattern;
use zmesh_core::reqrep::{
    Config as ReqRepConfig, Delivery, EndReason, HandlerId, HandlerKind, InboundKey, NoResponders,
    RequestError, RequestId, RequestSpec, TickError,
};

use super::*;

/// Event names the applications request and tick (repeats weigh the draw).
const EVENTS: [&str; 9] = [
    "svc.echo",
    "svc.echo",
    "svc.echo",
    "svc.slow.read",
    "svc.slow.read",
    "misc.ping",
    "other",
    "tick.a",
    "deep.a.b.c",
];
/// Patterns the slots pick their handlers from (`nomatch.*` never matches an event).
const PATTERNS: [&str; 7] = [
    "svc.echo",
    "svc.*",
    "svc.**",
    "misc.*",
    "**",
    "nomatch.*",
    "deep.*.b.*",
];
/// Longest explicit request timeout (the layer's default is set to 3 s).
const MAX_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of the simulated nodes' request layer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests to one peer at once (small, so that bursts hit it).
const MAX_PER_PEER: usize = 6;
/// Requests running in one node's handlers at once (small, so that bursts hit it).
const MAX_RUNNING: usize = 5;
/// Requests stop this long before the end, so every one has ended when the quiet phase ends.
const REQUESTS_STOP: Duration = Duration::from_secs(10);

/// One request the simulator made, from its start to its outcome.
#[derive(Debug)]
struct Track {
    inst: InstId,
    from: Uuid,
    to: Uuid,
    id: RequestId,
    event: String,
    payload: Bytes,
    sent: Duration,
    deadline: Duration,
    /// The target was an entered peer when the request was made.
    known: bool,
    /// Our requests to the target were at the per-peer limit when it was made.
    at_limit: bool,
    /// The requester's count of the target's EXITs when it was made.
    exits_at_send: u64,
    cancelled: bool,
    /// `None` while pending; the outcome (for the trace) once ended or lost with its requester.
    end: Option<String>,
}

/// A request handed to one of an instance's handlers, not answered yet.
#[derive(Debug)]
struct Running {
    handler: HandlerId,
    deadline: Duration,
    plan: Plan,
    /// The responder's count of the requester's EXITs when it was handed over.
    exits_at_start: u64,
}

/// What a handler does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Reply,
    Error,
    Abandon,
    Never,
}

/// The request/reply model: the truth the outcomes are checked against.
pub(crate) struct ReqModel {
    rng: ChaCha8Rng,
    enabled: bool,
    /// Per slot: (handler id, pattern, kind), in registration order.
    handlers: Vec<Vec<(HandlerId, Pattern, HandlerKind)>>,
    next_waiter: Waiter,
    tracks: BTreeMap<Waiter, Track>,
    by_id: BTreeMap<(Uuid, RequestId), Waiter>,
    /// Pending tracks by deadline.
    open: BTreeSet<(Duration, Waiter)>,
    running: BTreeMap<(InstId, InboundKey), Running>,
    /// Handler answers due: (when, responder, request).
    scheduled: BTreeSet<(Duration, InstId, InboundKey)>,
    /// What each handler answered: (responder, request) -> answer.
    answers: BTreeMap<(Uuid, InboundKey), Result<Bytes, (u16, String)>>,
    /// EXIT events seen by (observer, peer).
    exits: BTreeMap<(InstId, Uuid), u64>,
}

impl ReqModel {
    /// The model of a run with `slots` slots; `enabled = false` sends nothing.
    pub(crate) fn new(seed: u64, slots: usize, enabled: bool) -> ReqModel {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_4e51_7e91_0001);
        let handlers = (0..slots)
            .map(|_| {
                let mut hs = Vec::new();
                let n = if rng.gen_bool(0.15) {
                    0
                } else {
                    rng.gen_range(1..=3)
                };
                for h in 0..n {
                    let p = PATTERNS.choose(&mut rng).unwrap();
                    hs.push((h + 1, Pattern::parse(p).unwrap(), HandlerKind::Request));
                }
                if rng.gen_bool(0.6) {
                    let p = if rng.gen_bool(0.5) { "tick.*" } else { "**" };
                    hs.push((100, Pattern::parse(p).unwrap(), HandlerKind::Tick));
                }
                hs
            })
            .collect();
        ReqModel {
            rng,
            enabled,
            handlers,
            next_waiter: 1,
            tracks: BTreeMap::new(),
            by_id: BTreeMap::new(),
            open: BTreeSet::new(),
            running: BTreeMap::new(),
            scheduled: BTreeSet::new(),
            answers: BTreeMap::new(),
            exits: BTreeMap::new(),
        }
    }

    /// When the next handler answer is due.
    pub(crate) fn next_answer(&self) -> Option<(Duration, InstId)> {
        self.scheduled.first().map(|&(t, i, _)| (t, i))
    }

    /// The observer saw the peer's EXIT.
    pub(crate) fn exit_seen(&mut self, observer: InstId, peer: Uuid) {
        *self.exits.entry((observer, peer)).or_default() += 1;
    }

    fn exits(&self, observer: InstId, peer: Uuid) -> u64 {
        self.exits.get(&(observer, peer)).copied().unwrap_or(0)
    }

    /// The handler of `slot` a request for `event` goes to (the first matching one).
    fn request_handler(&self, slot: usize, event: &str) -> Option<HandlerId> {
        self.handlers[slot]
            .iter()
            .find(|(_, p, k)| *k == HandlerKind::Request && p.matches(event))
            .map(|(h, _, _)| *h)
    }

    fn open_of(&self, inst: InstId) -> impl Iterator<Item = (&Waiter, &Track)> {
        self.tracks
            .iter()
            .filter(move |(_, t)| t.inst == inst && t.end.is_none())
    }
}

impl Sim {
    /// The request/reply configuration of a new instance.
    pub(crate) fn reqrep_config(&mut self) -> ReqRepConfig {
        ReqRepConfig {
            default_timeout: DEFAULT_TIMEOUT,
            max_in_flight_per_peer: MAX_PER_PEER,
            max_running: MAX_RUNNING,
            first_id: self.rr.rng.gen(),
            ..ReqRepConfig::default()
        }
    }

    /// Registers the slot's handlers on a new instance; returns when it first acts.
    pub(crate) fn reqrep_start(&mut self, id: InstId) -> Duration {
        let slot = self.insts[&id].slot;
        let handlers = self.rr.handlers[slot].clone();
        let now = self.instant(self.now);
        let inst = self.insts.get_mut(&id).unwrap();
        inst.driver_mut().reqrep(|rr, io| {
            for (h, pattern, kind) in handlers {
                // Half through the Layer seam, half through the inherent method.
                if h % 2 == 0 {
                    let command = zmesh_core::reqrep::Command::Register {
                        id: h,
                        pattern,
                        kind,
                    };
                    rr.handle(zmesh_core::layer::Input::Command(command), now, io);
                } else {
                    rr.register(h, pattern, kind);
                }
            }
        });
        if self.rr.enabled {
            self.now
                + self
                    .rr
                    .rng
                    .gen_range(Duration::ZERO..=Duration::from_secs(2))
        } else {
            Duration::MAX
        }
    }

    /// One application action of instance `id` on the request/reply layer.
    pub(crate) fn reqrep_act(&mut self, id: InstId) -> Result<(), String> {
        let stop = self.end.saturating_sub(REQUESTS_STOP);
        let next = self.now
            + self
                .rr
                .rng
                .gen_range(Duration::from_millis(50)..=Duration::from_secs(1));
        self.insts.get_mut(&id).unwrap().next_req = if next < stop { next } else { Duration::MAX };
        let roll = self.rr.rng.gen_range(0..100);
        if roll < 64 {
            let to = self.pick_target(id);
            self.request(id, to)?;
        } else if roll < 70 {
            let to = self.pick_target(id);
            for _ in 0..self.rr.rng.gen_range(3..=MAX_PER_PEER + 3) {
                self.request(id, to)?;
            }
        } else if roll < 82 {
            self.cancel(id)?;
        } else {
            self.tick(id)?;
        }
        self.touched.insert(id);
        self.drain(id, None)?;
        Ok(())
    }

    /// A ready peer mostly; sometimes any UUID that ever ran, or a random one.
    fn pick_target(&mut self, id: InstId) -> Uuid {
        let roll = self.rr.rng.gen_range(0..100);
        let peers = self.insts[&id].engine().peers();
        if roll < 4 {
            Uuid::from_bytes(self.rr.rng.gen())
        } else if roll < 12 || peers.is_empty() {
            let all: Vec<Uuid> = self.lives.keys().copied().collect();
            *all.choose(&mut self.rr.rng).unwrap()
        } else {
            *peers.choose(&mut self.rr.rng).unwrap()
        }
    }

    fn request(&mut self, id: InstId, to: Uuid) -> Result<(), String> {
        let waiter = self.rr.next_waiter;
        self.rr.next_waiter += 1;
        let event = EVENTS[self.rr.rng.gen_range(0..EVENTS.len())].to_owned();
        // Whole milliseconds: the responder learns the deadline as `ttl_ms`.
        let max_ms = MAX_TIMEOUT.as_millis() as u64;
        let timeout = self
            .rr
            .rng
            .gen_bool(0.8)
            .then(|| Duration::from_millis(self.rr.rng.gen_range(100..=max_ms)));
        let payload = Bytes::from(format!("q{waiter}"));
        let now = self.instant(self.now);
        let inst = &self.insts[&id];
        let (from, name) = (inst.uuid, inst.name.clone());
        let known = inst.view.contains_key(&to);
        let at_limit = self.rr.open_of(id).filter(|(_, t)| t.to == to).count() >= MAX_PER_PEER;
        let spec = RequestSpec {
            peer: to,
            event: event.clone(),
            payload: payload.clone(),
            timeout,
        };
        let r = self
            .insts
            .get_mut(&id)
            .unwrap()
            .driver_mut()
            .reqrep(|rr, io| rr.request(now, waiter, spec, io));
        let rid = r.map_err(|e| format!("{name}: request({event}) refused the name: {e}"))?;
        let deadline = self.now + timeout.unwrap_or(DEFAULT_TIMEOUT);
        self.log(format!(
            "{name} request w{waiter} id {rid} {event} to {}{} until {}",
            short(&to),
            if known { "" } else { " (unknown)" },
            secs(deadline)
        ));
        let exits_at_send = self.rr.exits(id, to);
        self.rr.tracks.insert(
            waiter,
            Track {
                inst: id,
                from,
                to,
                id: rid,
                event,
                payload,
                sent: self.now,
                deadline,
                known,
                at_limit,
                exits_at_send,
                cancelled: false,
                end: None,
            },
        );
        self.rr.by_id.insert((from, rid), waiter);
        self.rr.open.insert((deadline, waiter));
        self.report.requests += 1;
        Ok(())
    }

    fn cancel(&mut self, id: InstId) -> Result<(), String> {
        let mine: Vec<Waiter> = if self.rr.rng.gen_bool(0.9) {
            self.rr.open_of(id).map(|(w, _)| *w).collect()
        } else {
            // One that may have ended already: cancelling it must do nothing.
            self.rr
                .tracks
                .iter()
                .filter(|(_, t)| t.inst == id)
                .map(|(w, _)| *w)
                .collect()
        };
        let Some(&w) = mine.choose(&mut self.rr.rng) else {
            return Ok(());
        };
        let track = self.rr.tracks.get_mut(&w).unwrap();
        let rid = track.id;
        if track.end.is_none() {
            track.cancelled = true;
        }
        let name = self.insts[&id].name.clone();
        self.log(format!("{name} cancel w{w} id {rid}"));
        let inst = self.insts.get_mut(&id).unwrap();
        inst.driver_mut().reqrep(|rr, io| rr.cancel(rid, io));
        Ok(())
    }

    fn tick(&mut self, id: InstId) -> Result<(), String> {
        let to = self.pick_target(id);
        let event = EVENTS[self.rr.rng.gen_range(0..EVENTS.len())];
        let known = self.insts[&id].view.contains_key(&to);
        let name = self.insts[&id].name.clone();
        let inst = self.insts.get_mut(&id).unwrap();
        let r = inst
            .driver_mut()
            .reqrep(|rr, io| rr.tick(to, event, Bytes::from_static(b"t"), io));
        let unknown = TickError::Request(RequestError::NoResponders(NoResponders::UnknownPeer));
        if known != r.is_ok() || r.as_ref().is_err_and(|e| *e != unknown) {
            return Err(format!(
                "{name}: tick {event} to {} (known {known}) returned {r:?}",
                short(&to)
            ));
        }
        Ok(())
    }

    /// A handler's answer (or abandonment) is due on instance `id`.
    pub(crate) fn answer_due(&mut self, id: InstId) -> Result<(), String> {
        let (_, _, key) = self.rr.scheduled.pop_first().unwrap();
        let Some(inst) = self.insts.get(&id) else {
            return Ok(());
        };
        let (me, name, slot) = (inst.uuid, inst.name.clone(), inst.slot);
        let running = self.rr.running.remove(&(id, key));
        let plan = running.as_ref().map_or(Plan::Reply, |r| r.plan);
        let result = match plan {
            Plan::Error => Err((500 + slot as u16, format!("e{}:{}", slot, key.id))),
            _ => Ok(Bytes::from(format!(
                "r{slot}:{}:{}",
                short(&key.peer),
                key.id
            ))),
        };
        let before = inst.driver_ref().reqrep_ref().stats().replies_after_end;
        if plan == Plan::Abandon {
            self.log(format!(
                "{name} abandons {} id {}",
                short(&key.peer),
                key.id
            ));
            let inst = self.insts.get_mut(&id).unwrap();
            inst.driver_mut().reqrep(|rr, _| rr.abandon(key));
        } else {
            let r = result.clone();
            let inst = self.insts.get_mut(&id).unwrap();
            inst.driver_mut().reqrep(|rr, io| rr.reply(key, r, io));
            let after = self.insts[&id]
                .driver_ref()
                .reqrep_ref()
                .stats()
                .replies_after_end;
            if (after != before) != running.is_none() {
                return Err(format!(
                    "{name}: answer to {} id {}: running={} but replies_after_end {before} -> {after}",
                    short(&key.peer),
                    key.id,
                    running.is_some()
                ));
            }
            let late = if running.is_none() {
                " (after its end)"
            } else {
                ""
            };
            self.log(format!(
                "{name} answers {} id {} {result:?}{late}",
                short(&key.peer),
                key.id
            ));
            if running.is_some() {
                self.rr.answers.insert((me, key), result);
            }
        }
        self.touched.insert(id);
        self.drain(id, None)?;
        Ok(())
    }

    /// Checks one request/reply delivery to instance `id`'s application.
    pub(crate) fn delivery(&mut self, id: InstId, d: Delivery<Waiter>) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        match d {
            Delivery::Done {
                waiter,
                id: rid,
                result,
            } => self.done(id, waiter, rid, result),
            Delivery::Request {
                handler,
                key,
                event,
                payload,
                deadline,
            } => {
                let deadline = deadline.saturating_duration_since(self.base);
                self.handed(id, handler, key, &event, &payload, deadline)
            }
            Delivery::Ended {
                handler,
                key,
                reason,
            } => {
                let Some(run) = self.rr.running.remove(&(id, key)) else {
                    return Err(format!(
                        "{name}: Ended({reason:?}) for {} id {} which is not running",
                        short(&key.peer),
                        key.id
                    ));
                };
                let ok = run.handler == handler
                    && match reason {
                        EndReason::PeerLeft => self.rr.exits(id, key.peer) > run.exits_at_start,
                        EndReason::Expired => self.now >= run.deadline,
                        EndReason::Cancelled => self
                            .rr
                            .by_id
                            .get(&(key.peer, key.id))
                            .is_some_and(|w| self.rr.tracks[w].cancelled),
                        EndReason::Stopped => self.insts[&id].stopping,
                        _ => false,
                    };
                if !ok {
                    return Err(format!(
                        "{name}: Ended({reason:?}) of {} id {} (handler {handler}) is not what \
                         happened: {run:?}",
                        short(&key.peer),
                        key.id
                    ));
                }
                self.report.handler_ends += 1;
                self.log(format!(
                    "{name} handler {handler}: {} id {} ended {reason:?}",
                    short(&key.peer),
                    key.id
                ));
                Ok(())
            }
            Delivery::Tick {
                handler,
                peer,
                event,
                ..
            } => {
                let slot = self.insts[&id].slot;
                let ok = self.insts[&id].view.contains_key(&peer)
                    && self.rr.handlers[slot].iter().any(|(h, p, k)| {
                        *h == handler && *k == HandlerKind::Tick && p.matches(&event)
                    });
                if !ok {
                    return Err(format!(
                        "{name}: tick {event} from {} to handler {handler} is wrong",
                        short(&peer)
                    ));
                }
                self.report.ticks_delivered += 1;
                Ok(())
            }
            other => Err(format!("{name}: unknown delivery {other:?}")),
        }
    }

    /// A request handed to a handler of instance `id`.
    fn handed(
        &mut self,
        id: InstId,
        handler: HandlerId,
        key: InboundKey,
        event: &str,
        payload: &Bytes,
        deadline: Duration,
    ) -> Result<(), String> {
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        let want = self.rr.request_handler(inst.slot, event);
        let track = self
            .rr
            .by_id
            .get(&(key.peer, key.id))
            .map(|w| &self.rr.tracks[w]);
        let why = if !inst.view.contains_key(&key.peer) {
            "from a peer that has not entered".to_owned()
        } else if want != Some(handler) {
            format!("to handler {handler}, the first match is {want:?}")
        } else if self.rr.running.contains_key(&(id, key)) {
            "twice".to_owned()
        } else if let Some(t) = track {
            if t.to != inst.uuid && self.stale_delivery && t.event == event && t.payload == *payload
            {
                // Queued for the node whose endpoint we took over (a ZRE property, see
                // `misdelivered_whispers`): our handler runs; its answer is a foreign reply there.
                self.report.misdelivered_requests += 1;
                String::new()
            } else if t.to != inst.uuid || t.event != event || t.payload != *payload {
                format!(
                    "but the requester sent {} {:?} to {}",
                    t.event,
                    t.payload,
                    short(&t.to)
                )
            } else if deadline < t.deadline {
                format!(
                    "with deadline {} before the requester's {}",
                    secs(deadline),
                    secs(t.deadline)
                )
            } else {
                String::new()
            }
        } else {
            "but nobody sent it".to_owned()
        };
        if !why.is_empty() {
            return Err(format!(
                "{name}: request {event} from {} id {} handed {why}",
                short(&key.peer),
                key.id
            ));
        }
        let plan = match self.rr.rng.gen_range(0..100) {
            0..=54 => Plan::Reply,
            55..=69 => Plan::Error,
            70..=79 => Plan::Abandon,
            _ => Plan::Never,
        };
        if plan != Plan::Never {
            let late = self.rr.rng.gen_bool(0.1);
            let delay = if late {
                self.rr
                    .rng
                    .gen_range(Duration::from_secs(2)..=Duration::from_secs(6))
            } else {
                self.rr
                    .rng
                    .gen_range(Duration::ZERO..=Duration::from_millis(1500))
            };
            self.rr.scheduled.insert((self.now + delay, id, key));
        }
        let exits_at_start = self.rr.exits(id, key.peer);
        self.rr.running.insert(
            (id, key),
            Running {
                handler,
                deadline,
                plan,
                exits_at_start,
            },
        );
        self.report.requests_handled += 1;
        self.log(format!(
            "{name} handler {handler} got {event} from {} id {} ({plan:?})",
            short(&key.peer),
            key.id
        ));
        Ok(())
    }

    /// A request of instance `id` ended.
    fn done(
        &mut self,
        id: InstId,
        waiter: Waiter,
        rid: RequestId,
        result: Result<Bytes, RequestError>,
    ) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let Some(t) = self.rr.tracks.get(&waiter) else {
            return Err(format!("{name}: Done for unknown waiter w{waiter}"));
        };
        if let Some(end) = &t.end {
            return Err(format!(
                "{name}: request w{waiter} ended twice: {end}, now {result:?}"
            ));
        }
        let responder_slot = self.lives.get(&t.to).map(|l| l.slot);
        let has_handler =
            responder_slot.is_some_and(|s| self.rr.request_handler(s, &t.event).is_some());
        let immediate = self.now == t.sent;
        let ok = t.inst == id
            && t.id == rid
            && match &result {
                _ if !t.known => {
                    result == Err(RequestError::NoResponders(NoResponders::UnknownPeer))
                        && immediate
                }
                Ok(p) => {
                    self.rr.answers.get(&(
                        t.to,
                        InboundKey {
                            peer: t.from,
                            id: rid,
                        },
                    )) == Some(&Ok(p.clone()))
                }
                Err(RequestError::Handler { code, message }) => {
                    self.rr.answers.get(&(
                        t.to,
                        InboundKey {
                            peer: t.from,
                            id: rid,
                        },
                    )) == Some(&Err((*code, message.clone())))
                }
                Err(RequestError::NoResponders(NoResponders::NoHandler)) => !has_handler,
                Err(RequestError::Overloaded(why)) if *why == "responder's handlers" => has_handler,
                Err(RequestError::Overloaded(_)) => t.at_limit && immediate,
                Err(RequestError::PeerLeft) => self.rr.exits(id, t.to) > t.exits_at_send,
                Err(RequestError::Timeout) => self.now >= t.deadline,
                Err(RequestError::Cancelled) => t.cancelled,
                Err(RequestError::Stopped) => self.insts[&id].stopping,
                Err(_) => false,
            };
        if !ok {
            return Err(format!(
                "{name}: request w{waiter} id {rid} ({} to {}, sent {}) ended with {result:?}, \
                 which is not what happened: {t:?} (responder has a handler: {has_handler})",
                t.event,
                short(&t.to),
                secs(t.sent)
            ));
        }
        let outcome = match &result {
            Ok(_) => "reply".to_owned(),
            Err(e) => format!("{e:?}"),
        };
        let r = &mut self.report;
        match &result {
            Ok(_) => r.replies += 1,
            Err(RequestError::Handler { .. }) => r.handler_errors += 1,
            Err(RequestError::Timeout) => r.timeouts += 1,
            Err(RequestError::PeerLeft) => r.peer_left += 1,
            Err(RequestError::Cancelled) => r.cancelled += 1,
            Err(RequestError::NoResponders(NoResponders::UnknownPeer)) => r.unknown_peer += 1,
            Err(RequestError::NoResponders(_)) => r.no_handler += 1,
            Err(RequestError::Overloaded(_)) => r.overloaded += 1,
            Err(_) => r.stopped += 1,
        }
        let deadline = t.deadline;
        self.log(format!(
            "{name} request w{waiter} id {rid} ended: {outcome}"
        ));
        self.rr.open.remove(&(deadline, waiter));
        self.rr.tracks.get_mut(&waiter).unwrap().end = Some(outcome);
        Ok(())
    }

    /// Instance `victim` is about to crash: sometimes a peer of it sends it requests first, so
    /// that some are in flight or running when it dies.
    pub(crate) fn reqrep_before_crash(&mut self, victim: InstId) -> Result<(), String> {
        let target = self.insts[&victim].uuid;
        let askers: Vec<InstId> = self
            .insts
            .iter()
            .filter(|(_, i)| i.view.contains_key(&target))
            .map(|(&i, _)| i)
            .collect();
        if !self.rr.enabled || !self.rr.rng.gen_bool(0.7) {
            return Ok(());
        }
        let Some(&asker) = askers.choose(&mut self.rr.rng) else {
            return Ok(());
        };
        for _ in 0..self.rr.rng.gen_range(1..=3) {
            self.request(asker, target)?;
        }
        self.touched.insert(asker);
        self.drain(asker, None)?;
        // Some of them reach the victim's handlers before it dies.
        let queued: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.from_inst == asker && c.peer == target && c.open)
            .map(|(&c, _)| c)
            .collect();
        for cid in queued {
            while self.rr.rng.gen_bool(0.5) && self.conn_due(&self.conns[&cid]).is_some() {
                self.deliver(cid)?;
                if !self.conns.contains_key(&cid) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Instance `id` crashed: its requests end with it (nobody is owed an outcome) and its
    /// handlers' work is gone.
    pub(crate) fn reqrep_crashed(&mut self, id: InstId) {
        let mine: Vec<Waiter> = self.rr.open_of(id).map(|(w, _)| *w).collect();
        for w in mine {
            let t = self.rr.tracks.get_mut(&w).unwrap();
            t.end = Some("lost with its requester".into());
            self.rr.open.remove(&(t.deadline, w));
            self.report.lost_with_requester += 1;
        }
        self.rr.running.retain(|(i, _), _| *i != id);
        self.rr.scheduled.retain(|(_, i, _)| *i != id);
    }

    /// Instance `id` stopped politely: every request of its ended (`Stopped`) and every request
    /// in its handlers was ended.
    pub(crate) fn reqrep_stopped(&mut self, id: InstId) -> Result<(), String> {
        let name = &self.insts[&id].name;
        if let Some((w, t)) = self.rr.open_of(id).next() {
            return Err(format!(
                "{name}: stopped with request w{w} still pending: {t:?}"
            ));
        }
        if let Some((k, r)) = self.rr.running.iter().find(|((i, _), _)| *i == id) {
            return Err(format!("{name}: stopped with {k:?} still running: {r:?}"));
        }
        self.rr.scheduled.retain(|(_, i, _)| *i != id);
        Ok(())
    }

    /// After every step: every instance's layer holds exactly the requests the simulator knows
    /// are pending and running, nothing for a peer that is not up, nothing past its deadline.
    pub(crate) fn check_requests(&self) -> Result<(), String> {
        if let Some(&(deadline, w)) = self.rr.open.first() {
            if deadline < self.now {
                return Err(format!(
                    "request w{w} still pending after its deadline {}: {:?}",
                    secs(deadline),
                    self.rr.tracks[&w]
                ));
            }
        }
        let mut open: BTreeMap<InstId, usize> = BTreeMap::new();
        for &(_, w) in &self.rr.open {
            *open.entry(self.rr.tracks[&w].inst).or_default() += 1;
        }
        let mut running: BTreeMap<InstId, usize> = BTreeMap::new();
        for (i, _) in self.rr.running.keys() {
            *running.entry(*i).or_default() += 1;
        }
        for (id, inst) in &self.insts {
            let Some(driver) = &inst.driver else { continue };
            let rr = driver.reqrep_ref();
            let (want_open, want_running) = (
                open.get(id).copied().unwrap_or(0),
                running.get(id).copied().unwrap_or(0),
            );
            if rr.in_flight() != want_open || rr.running() != want_running {
                return Err(format!(
                    "{}: layer has {} in flight and {} running, the simulator {want_open} and \
                     {want_running}",
                    inst.name,
                    rr.in_flight(),
                    rr.running()
                ));
            }
            if let Some(p) = rr
                .pending_peers()
                .chain(rr.inbound_peers())
                .find(|p| !inst.view.contains_key(p))
            {
                return Err(format!(
                    "{}: request state for {} which is not up",
                    inst.name,
                    short(&p)
                ));
            }
            let first = rr
                .poll_timeout()
                .map(|t| t.saturating_duration_since(self.base));
            let last = rr
                .latest_deadline()
                .map(|t| t.saturating_duration_since(self.base));
            if first.is_some_and(|t| t < self.now)
                || last.is_some_and(|t| t > self.now + MAX_TIMEOUT)
            {
                return Err(format!(
                    "{}: request deadlines {first:?}..{last:?} outside [now, now + max timeout]",
                    inst.name
                ));
            }
        }
        Ok(())
    }

    /// At the end of the quiet phase: nothing pending or running anywhere.
    pub(crate) fn check_requests_drained(&self) -> Result<(), String> {
        if let Some(&(_, w)) = self.rr.open.first() {
            return Err(format!(
                "request w{w} never ended: {:?}",
                self.rr.tracks[&w]
            ));
        }
        for inst in self.insts.values() {
            let rr = inst.driver_ref().reqrep_ref();
            if rr.in_flight() + rr.running() != 0 || rr.latest_deadline().is_some() {
                return Err(format!(
                    "{}: {} requests in flight and {} running at the end",
                    inst.name,
                    rr.in_flight(),
                    rr.running()
                ));
            }
        }
        Ok(())
    }
}
