//! Routing in the simulator: options that change at run time, requests to **any** and **all**
//! peers matching a filter, and the peer events — checked against what really happened.
//!
//! * **Options.** Every instance starts with `slot=<n>` and `tier=a|b`; its application
//!   changes `tier` and `load` at random moments. Every state an instance ever had is recorded
//!   (UUID, version → options), so a peer's directory entry can be checked against the truth.
//! * **any.** The chosen peer must, in the requester's directory, run zmesh, serve the event,
//!   match the filter and have the fewest of the requester's requests outstanding among the
//!   candidates; no candidate must mean `NoResponders(NoMatch)` at once. The request is then
//!   tracked like any other (exactly once, outcome as it happened: `reqrep` module).
//! * **all.** Each part is tracked like a request; every `Gathered` item is such an outcome,
//!   from a peer asked, once; the gather ends **exactly once**, for a true reason (all parts
//!   ended; exactly at its maximum wait; exactly `stall` after its last item; at `max_answers`
//!   answers; nobody to ask; cancelled; the node stopping), its unanswered peers are exactly
//!   its pending parts, and nothing comes after the end. No gather outlives its maximum wait.
//! * **Directory.** Every entry's options equal what that peer had at that version (every 2
//!   virtual seconds), peer events are coherent (joined once, changed and left only when
//!   joined, joined peers are entered peers), and at the end of the quiet phase every running
//!   instance knows every other one's current options and served patterns.

use rand::seq::SliceRandom;
use zmesh_core::control::{self, Options};
use zmesh_core::driver::Routed;
use zmesh_core::filter::{self, Filter};
use zmesh_core::reqrep::{GatherEnd, GatherId, GatherSpec, HandlerKind};

use super::reqrep::MAX_PER_PEER;
use super::*;

/// The filters the applications route with.
const FILTERS: [&str; 7] = [
    "*",
    "tier=a",
    "tier!=a",
    "load<50",
    "slot>=2,tier=a|b",
    "@RED",
    "tier=c;@GREEN",
];

/// One gather in progress or ended.
#[derive(Debug)]
pub(crate) struct GatherTrack {
    deadline: Duration,
    stall: Option<Duration>,
    max_answers: Option<usize>,
    answers: usize,
    last_item: Option<Duration>,
    waiters: Vec<Waiter>,
    ended: bool,
}

/// The routing model.
#[derive(Debug, Default)]
pub(crate) struct RouteModel {
    /// Every state announced: (uuid, version) -> options (several: an instance restarted with
    /// the same UUID starts its versions again; peers reset their entry on its new ENTER).
    history: BTreeMap<(Uuid, u64), Vec<Options>>,
    pub(crate) gathers: BTreeMap<(InstId, GatherId), GatherTrack>,
    /// Peers each instance has seen join (peer events).
    joined: BTreeMap<InstId, BTreeSet<Uuid>>,
}

impl RouteModel {
    /// Records an instance's current state (after every flush).
    pub(crate) fn record(&mut self, uuid: Uuid, version: u64, options: &Options) {
        let known = self.history.entry((uuid, version)).or_default();
        if !known.contains(options) {
            known.push(options.clone());
        }
    }
}

impl Sim {
    /// The options an instance of `slot` starts with.
    pub(crate) fn initial_options(&mut self, slot: usize) -> Options {
        let tier = if self.rr.rng.gen_bool(0.5) { "a" } else { "b" };
        Options::from([
            ("slot".to_owned(), slot.to_string()),
            ("tier".to_owned(), tier.to_owned()),
        ])
    }

    /// Changes one option of instance `id`.
    pub(crate) fn change_option(&mut self, id: InstId) -> Result<(), String> {
        let roll = self.rr.rng.gen_range(0..4);
        let tier = ["a", "b", "c"]
            .choose(&mut self.rr.rng)
            .unwrap()
            .to_string();
        let load = self.rr.rng.gen_range(0..100).to_string();
        let name = self.insts[&id].name.clone();
        let inst = self.insts.get_mut(&id).unwrap();
        let r = inst.driver_mut().control(|c, io| match roll {
            0 => c
                .set_option("tier", &tier, io)
                .map(|_| format!("tier={tier}")),
            1 | 2 => c
                .set_option("load", &load, io)
                .map(|_| format!("load={load}")),
            _ => Ok(format!("-load (was set: {})", c.remove_option("load", io))),
        });
        let what = r.map_err(|e| format!("{name}: set_option refused: {e}"))?;
        self.report.option_changes += 1;
        self.log(format!("{name} option {what}"));
        Ok(())
    }

    fn pick_filter(&mut self) -> Filter {
        filter::parse(FILTERS.choose(&mut self.rr.rng).unwrap()).unwrap()
    }

    /// A request to any matching peer.
    pub(crate) fn request_any(&mut self, id: InstId) -> Result<(), String> {
        let waiter = self.rr.next_waiter;
        self.rr.next_waiter += 1;
        let f = self.pick_filter();
        let event = self.pick_event();
        let timeout = Duration::from_millis(self.rr.rng.gen_range(100..=2000));
        let now = self.instant(self.now);
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        let driver = inst.driver_ref();
        let cands = driver.candidates(&f, &event, HandlerKind::Request);
        let loads: BTreeMap<Uuid, usize> = cands
            .iter()
            .map(|p| (*p, driver.reqrep_ref().pending_to(*p)))
            .collect();
        let routed = Routed {
            event: event.clone(),
            payload: Bytes::from(format!("q{waiter}")),
            timeout: Some(timeout),
        };
        let (rid, chosen) = self
            .insts
            .get_mut(&id)
            .unwrap()
            .driver_mut()
            .request_any(now, waiter, &f, routed)
            .map_err(|e| format!("{name}: request_any refused {event}: {e}"))?;
        let inst = &self.insts[&id];
        if let Some(p) = chosen {
            let rec = inst.driver_ref().control_ref().peer(p);
            let ok = rec.is_some_and(|r| {
                r.caps.has(zmesh_core::envelope::Layer::REQREP)
                    && r.serves(&event, false)
                    && f.matches(r)
            }) && inst.view.contains_key(&p);
            let least = loads.values().min().copied();
            if !ok || loads.get(&p).copied() != least {
                return Err(format!(
                    "{name}: any:{f} {event} chose {} which is not a least-loaded candidate \
                     (candidates and loads {loads:?})",
                    short(&p)
                ));
            }
        } else if !cands.is_empty() {
            return Err(format!(
                "{name}: any:{f} {event} found nobody among {cands:?}"
            ));
        }
        self.report.any_requests += 1;
        self.report.any_no_match += u64::from(chosen.is_none());
        let to = chosen.unwrap_or_else(Uuid::nil);
        let at_limit = chosen.is_some()
            && self.rr.open_of(id).filter(|(_, t)| t.to == to).count() >= MAX_PER_PEER;
        self.log(format!(
            "{name} request-any w{waiter} id {rid} {event} filter {f} -> {}",
            chosen.map_or("nobody".to_owned(), |p| short(&p))
        ));
        self.track(
            id,
            waiter,
            to,
            rid,
            event,
            chosen.is_some(),
            at_limit,
            timeout,
            None,
        );
        Ok(())
    }

    /// A request to all matching peers.
    pub(crate) fn request_all(&mut self, id: InstId) -> Result<(), String> {
        let f = self.pick_filter();
        let event = self.pick_event();
        let max_wait = Duration::from_millis(self.rr.rng.gen_range(100..=3000));
        let stall = self
            .rr
            .rng
            .gen_bool(0.3)
            .then(|| Duration::from_millis(self.rr.rng.gen_range(50..=800)));
        let max_answers = self
            .rr
            .rng
            .gen_bool(0.2)
            .then(|| self.rr.rng.gen_range(1..=3));
        let now = self.instant(self.now);
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        let at_limit: BTreeMap<Uuid, bool> = inst
            .view
            .keys()
            .map(|p| {
                (
                    *p,
                    self.rr.open_of(id).filter(|(_, t)| t.to == *p).count() >= MAX_PER_PEER,
                )
            })
            .collect();
        let want = inst
            .driver_ref()
            .candidates(&f, &event, HandlerKind::Request);
        let spec = GatherSpec {
            peers: vec![],
            event: event.clone(),
            payload: Bytes::from_static(b"all"),
            max_wait: Some(max_wait),
            stall,
            max_answers,
        };
        let (g, parts) = self
            .insts
            .get_mut(&id)
            .unwrap()
            .driver_mut()
            .request_all(now, &f, spec)
            .map_err(|e| format!("{name}: request_all refused {event}: {e}"))?;
        if parts.iter().map(|p| p.0).collect::<Vec<_>>() != want {
            return Err(format!(
                "{name}: all:{f} asked {parts:?}, the candidates are {want:?}"
            ));
        }
        self.log(format!(
            "{name} request-all g{g} {event} filter {f} to {} peers, wait {}{}{}",
            parts.len(),
            secs(max_wait),
            stall.map_or(String::new(), |s| format!(" stall {}", secs(s))),
            max_answers.map_or(String::new(), |m| format!(" max {m}"))
        ));
        let mut waiters = Vec::new();
        for (peer, rid) in parts {
            let waiter = self.rr.next_waiter;
            self.rr.next_waiter += 1;
            waiters.push(waiter);
            let limit = at_limit.get(&peer).copied().unwrap_or(false);
            self.track(
                id,
                waiter,
                peer,
                rid,
                event.clone(),
                true,
                limit,
                max_wait,
                Some(g),
            );
        }
        self.rt.gathers.insert(
            (id, g),
            GatherTrack {
                deadline: self.now + max_wait,
                stall,
                max_answers,
                answers: 0,
                last_item: None,
                waiters,
                ended: false,
            },
        );
        Ok(())
    }

    /// Cancels one of instance `id`'s open gathers, if any; true if it did.
    pub(crate) fn cancel_gather(&mut self, id: InstId) -> bool {
        let open: Vec<GatherId> = self
            .rt
            .gathers
            .iter()
            .filter(|((i, _), g)| *i == id && !g.ended)
            .map(|((_, g), _)| *g)
            .collect();
        let Some(&g) = open.choose(&mut self.rr.rng) else {
            return false;
        };
        let name = self.insts[&id].name.clone();
        self.log(format!("{name} cancels g{g}"));
        let inst = self.insts.get_mut(&id).unwrap();
        inst.driver_mut().reqrep(|rr, io| rr.cancel_gather(g, io));
        true
    }

    /// One gather item: an ordinary outcome of that part's request.
    pub(crate) fn gathered(
        &mut self,
        id: InstId,
        g: GatherId,
        rid: u64,
        peer: Uuid,
        result: Result<Bytes, zmesh_core::reqrep::RequestError>,
    ) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let from = self.insts[&id].uuid;
        let waiter = self.rr.by_id.get(&(from, rid)).copied();
        let track = self.rt.gathers.get(&(id, g));
        let ok = match (waiter, track) {
            (Some(w), Some(gt)) => {
                !gt.ended && gt.waiters.contains(&w) && self.rr.tracks[&w].to == peer
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{name}: item of g{g} from {} (id {rid}) is not a pending part of an open gather",
                short(&peer)
            ));
        }
        let answer = matches!(
            result,
            Ok(_) | Err(zmesh_core::reqrep::RequestError::Handler { .. })
        );
        self.done(id, waiter.unwrap(), rid, result)?;
        let now = self.now;
        let gt = self.rt.gathers.get_mut(&(id, g)).unwrap();
        gt.answers += usize::from(answer);
        gt.last_item = Some(now);
        Ok(())
    }

    /// A gather ended.
    pub(crate) fn gather_ended(
        &mut self,
        id: InstId,
        g: GatherId,
        reason: GatherEnd,
        unanswered: Vec<Uuid>,
    ) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let stopping = self.insts[&id].stopping;
        let Some(gt) = self.rt.gathers.get(&(id, g)) else {
            return Err(format!("{name}: end of unknown gather g{g}"));
        };
        let pending: Vec<Waiter> = gt
            .waiters
            .iter()
            .copied()
            .filter(|w| self.rr.tracks[w].end.is_none())
            .collect();
        let mut pending_peers: Vec<Uuid> = pending.iter().map(|w| self.rr.tracks[w].to).collect();
        pending_peers.sort();
        let mut un = unanswered.clone();
        un.sort();
        let why_ok = match reason {
            _ if gt.ended => false,
            _ if un != pending_peers => false,
            GatherEnd::AllDone => pending.is_empty() && !gt.waiters.is_empty(),
            GatherEnd::MaxWait => self.now == gt.deadline,
            GatherEnd::Stall => gt
                .stall
                .zip(gt.last_item)
                .is_some_and(|(s, l)| self.now == l + s),
            GatherEnd::MaxAnswers => gt.max_answers == Some(gt.answers),
            GatherEnd::NoResponders => gt.waiters.is_empty(),
            GatherEnd::Cancelled => true,
            GatherEnd::Stopped => stopping,
            _ => false,
        };
        if !why_ok {
            return Err(format!(
                "{name}: g{g} ended {reason:?} with unanswered {unanswered:?}, which is not what \
                 happened: {gt:?}, pending parts to {pending_peers:?}"
            ));
        }
        for w in pending {
            let t = self.rr.tracks.get_mut(&w).unwrap();
            t.end = Some("withdrawn with its gather".into());
            // The responder may see a CANCEL for it.
            t.cancelled = true;
            self.rr.open.remove(&(t.deadline, w));
        }
        self.rt.gathers.get_mut(&(id, g)).unwrap().ended = true;
        self.report.gathers += 1;
        self.log(format!(
            "{name} g{g} ended {reason:?}, unanswered {}",
            un.len()
        ));
        Ok(())
    }

    /// A peer event of the control layer.
    pub(crate) fn peer_event(&mut self, id: InstId, d: control::Delivery) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let entered = |p: &Uuid| self.insts[&id].view.contains_key(p);
        let joined = self.rt.joined.entry(id).or_default();
        let ok = match &d {
            control::Delivery::PeerJoined { peer, .. } => entered(peer) && joined.insert(*peer),
            control::Delivery::OptionsChanged { peer, .. } => joined.contains(peer),
            control::Delivery::PeerLeft { peer } => joined.remove(peer),
            _ => false,
        };
        if !ok {
            return Err(format!("{name}: peer event {d:?} is not what happened"));
        }
        self.report.peer_events += 1;
        Ok(())
    }

    /// Instance `id` is gone (crash or stop): its model state goes with it.
    pub(crate) fn routing_gone(&mut self, id: InstId) {
        self.rt.joined.remove(&id);
        self.rt.gathers.retain(|(i, _), g| *i != id || g.ended);
    }

    /// After every step: no gather outlives its maximum wait; the layer holds as many gathers
    /// as the model; joined peers are entered peers.
    pub(crate) fn check_routing(&self) -> Result<(), String> {
        let mut open: BTreeMap<InstId, usize> = BTreeMap::new();
        for ((i, g), gt) in &self.rt.gathers {
            if gt.ended {
                continue;
            }
            if gt.deadline < self.now {
                return Err(format!(
                    "gather g{g} of instance {i} outlived its maximum wait"
                ));
            }
            *open.entry(*i).or_default() += 1;
        }
        for (id, inst) in &self.insts {
            let Some(driver) = &inst.driver else { continue };
            let n = driver.reqrep_ref().gathers_open();
            if n != open.get(id).copied().unwrap_or(0) {
                return Err(format!(
                    "{}: layer has {n} gathers open, the model {open:?}",
                    inst.name
                ));
            }
            if let Some(p) = self
                .rt
                .joined
                .get(id)
                .and_then(|j| j.iter().find(|p| !inst.view.contains_key(p)))
            {
                return Err(format!(
                    "{}: {} joined but not entered",
                    inst.name,
                    short(p)
                ));
            }
        }
        Ok(())
    }

    /// Every 2 virtual seconds: every directory entry holds options that peer really had at
    /// that version.
    pub(crate) fn check_directories(&self) -> Result<(), String> {
        for inst in self.insts.values() {
            let Some(driver) = &inst.driver else { continue };
            for (peer, rec) in driver.control_ref().peers() {
                let Some(opts) = rec.options() else { continue };
                match self.rt.history.get(&(peer, rec.version())) {
                    Some(truth) if truth.contains(opts) => {}
                    other => {
                        return Err(format!(
                            "{}: directory says {} had {opts:?} at version {}, it had {other:?}",
                            inst.name,
                            short(&peer),
                            rec.version()
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// At the end of the quiet phase: every running instance knows every other one's current
    /// state (options and served patterns), and no gather is open.
    pub(crate) fn routing_converged(&self) -> Result<(), String> {
        if let Some(((i, g), _)) = self.rt.gathers.iter().find(|(_, g)| !g.ended) {
            return Err(format!("gather g{g} of instance {i} never ended"));
        }
        for a in self.insts.values() {
            for b in self.insts.values() {
                if a.uuid == b.uuid {
                    continue;
                }
                let own = b.driver_ref().control_ref().own();
                let rec = a.driver_ref().control_ref().peer(b.uuid);
                // One version is one state (the history check), so equal versions mean the
                // same options and served patterns.
                let ok = rec.is_some_and(|r| {
                    r.version() == own.version && r.options() == Some(&own.options)
                });
                if !ok {
                    return Err(format!(
                        "{} does not know {}'s state (version {}, {:?}): {:?}",
                        a.name,
                        b.name,
                        own.version,
                        own.options,
                        rec.map(|r| (r.version(), r.options()))
                    ));
                }
            }
        }
        Ok(())
    }
}
