//! The request/reply checks: every delivery against what happened, the layer state after
//! every step, and nothing left at the end.

use zmesh_core::layer::Layer;
use zmesh_core::reqrep::{
    Delivery, EndReason, HandlerId, HandlerKind, InboundKey, NoResponders, RequestError, RequestId,
};

use super::*;

impl Sim {
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
                        EndReason::Expired => self.now == run.deadline,
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
            Delivery::Gathered {
                gather,
                id: rid,
                peer,
                result,
            } => self.gathered(id, gather, rid, peer, result),
            Delivery::GatherEnded {
                gather,
                reason,
                unanswered,
            } => self.gather_ended(id, gather, reason, unanswered),
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
    pub(crate) fn done(
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
                _ if t.no_match => {
                    result == Err(RequestError::NoResponders(NoResponders::NoMatch)) && immediate
                }
                _ if !t.known => {
                    result == Err(RequestError::NoResponders(NoResponders::UnknownPeer))
                        && immediate
                }
                _ if t.at_limit => {
                    result == Err(RequestError::Overloaded("requests in flight to this peer"))
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

                Err(RequestError::PeerLeft) => self.rr.exits(id, t.to) > t.exits_at_send,
                // Never before the deadline, and not late either: the timer fires at it.
                Err(RequestError::Timeout) => self.now == t.deadline,
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
