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
    Config as ReqRepConfig, HandlerId, HandlerKind, InboundKey, NoResponders, RequestError,
    RequestId, RequestSpec, TickError,
};

use super::*;

mod checks;

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
pub(crate) const MAX_PER_PEER: usize = 6;
/// Requests running in one node's handlers at once (small, so that bursts hit it).
const MAX_RUNNING: usize = 5;
/// Requests stop this long before the end, so every one has ended when the quiet phase ends.
const REQUESTS_STOP: Duration = Duration::from_secs(10);

/// One request the simulator made, from its start to its outcome.
#[derive(Debug)]
pub(crate) struct Track {
    inst: InstId,
    from: Uuid,
    pub(crate) to: Uuid,
    id: RequestId,
    event: String,
    payload: Bytes,
    sent: Duration,
    pub(crate) deadline: Duration,
    /// The target was an entered peer when the request was made.
    known: bool,
    /// Our requests to the target were at the per-peer limit when it was made.
    at_limit: bool,
    /// The requester's count of the target's EXITs when it was made.
    exits_at_send: u64,
    pub(crate) cancelled: bool,
    /// `None` while pending; the outcome (for the trace) once ended or lost with its requester.
    pub(crate) end: Option<String>,
    /// A part of this gather (its outcome comes as a gather item).
    gather: Option<u64>,
    /// A request to any matching peer that found none (`NoMatch` at once).
    no_match: bool,
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
    pub(crate) rng: ChaCha8Rng,
    enabled: bool,
    /// Per slot: (handler id, pattern, kind), in registration order.
    handlers: Vec<Vec<(HandlerId, Pattern, HandlerKind)>>,
    pub(crate) next_waiter: Waiter,
    pub(crate) tracks: BTreeMap<Waiter, Track>,
    pub(crate) by_id: BTreeMap<(Uuid, RequestId), Waiter>,
    /// Pending tracks by deadline.
    pub(crate) open: BTreeSet<(Duration, Waiter)>,
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
                // Half the slots with handlers end with a catch-all (registered last, so the
                // specific ones still win): most requests to them are handled.
                if n > 0 && rng.gen_bool(0.5) {
                    hs.push((9, Pattern::parse("**").unwrap(), HandlerKind::Request));
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

    pub(crate) fn open_of(&self, inst: InstId) -> impl Iterator<Item = (&Waiter, &Track)> {
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
        if roll < 48 {
            let to = self.pick_target(id);
            self.request(id, to)?;
        } else if roll < 53 {
            let to = self.pick_target(id);
            for _ in 0..self.rr.rng.gen_range(3..=MAX_PER_PEER + 3) {
                self.request(id, to)?;
            }
        } else if roll < 62 {
            self.request_any(id)?;
        } else if roll < 70 {
            self.request_all(id)?;
        } else if roll < 80 {
            if self.rr.rng.gen_bool(0.8) || !self.cancel_gather(id) {
                self.cancel(id)?;
            }
        } else if roll < 86 {
            self.change_option(id)?;
        } else if roll < 93 {
            // In bursts, so that credit windows fill up.
            for _ in 0..self.rr.rng.gen_range(1..=8) {
                self.emit_event(id)?;
            }
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

    pub(crate) fn pick_event(&mut self) -> String {
        EVENTS[self.rr.rng.gen_range(0..EVENTS.len())].to_owned()
    }

    /// Starts tracking a request the application made.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn track(
        &mut self,
        id: InstId,
        waiter: Waiter,
        to: Uuid,
        rid: RequestId,
        event: String,
        known: bool,
        at_limit: bool,
        timeout: Duration,
        gather: Option<u64>,
    ) {
        let from = self.insts[&id].uuid;
        let deadline = self.now + timeout;
        let exits_at_send = self.rr.exits(id, to);
        let payload = if gather.is_some() {
            Bytes::from_static(b"all")
        } else {
            Bytes::from(format!("q{waiter}"))
        };
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
                gather,
                no_match: !known && to.is_nil(),
            },
        );
        self.rr.by_id.insert((from, rid), waiter);
        self.rr.open.insert((deadline, waiter));
        self.report.requests += 1;
    }

    fn request(&mut self, id: InstId, to: Uuid) -> Result<(), String> {
        let waiter = self.rr.next_waiter;
        self.rr.next_waiter += 1;
        let event = self.pick_event();
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
        let _ = (from, payload);
        self.track(
            id,
            waiter,
            to,
            rid,
            event,
            known,
            at_limit,
            timeout.unwrap_or(DEFAULT_TIMEOUT),
            None,
        );
        Ok(())
    }

    fn cancel(&mut self, id: InstId) -> Result<(), String> {
        // Parts of gathers end with their gather (`cancel_gather`), not one by one.
        let mine: Vec<Waiter> = if self.rr.rng.gen_bool(0.9) {
            self.rr
                .open_of(id)
                .filter(|(_, t)| t.gather.is_none())
                .map(|(w, _)| *w)
                .collect()
        } else {
            // One that may have ended already: cancelling it must do nothing.
            self.rr
                .tracks
                .iter()
                .filter(|(_, t)| t.inst == id && t.gather.is_none())
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
}
