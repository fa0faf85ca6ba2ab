//! Carrying an instance's outputs out: the simulated shell.

use zmesh_core::driver::{Driver, Sink, Transport};
use zmesh_core::envelope::{self, Envelope};
use zmesh_core::reqrep::Delivery;
use zmesh_core::testing::{CheckedSink, CheckedTransport};

use super::*;

/// What the transport checks a Send against: the node's state when the flush began (a flush
/// only whispers layer frames, so status, groups and endpoint cannot change during it).
#[derive(Debug)]
pub(crate) struct Snap {
    pub(crate) status: u8,
    pub(crate) own_groups: Vec<String>,
}

/// The simulated shell of one instance during one [`Driver::flush`]: its `Transport` is the
/// simulator's connections (every output is checked as it is applied, see `Sim::output`).
struct Shell<'a> {
    sim: &'a mut Sim,
    id: InstId,
    snap: Snap,
    /// The first invariant violation (the rest of the flush is then ignored).
    err: Option<String>,
}

impl Shell<'_> {
    fn apply(&mut self, out: Output) -> bool {
        if self.err.is_some() {
            return true;
        }
        if !matches!(out, Output::Send { .. }) {
            self.sim.touched.insert(self.id);
        }
        match self.sim.output(self.id, out, &self.snap) {
            Ok(accepted) => accepted,
            Err(e) => {
                self.err = Some(e);
                true
            }
        }
    }
}

impl Transport for Shell<'_> {
    fn connect(&mut self, peer: Uuid, endpoint: &str, public_key: Option<&[u8; 32]>) -> bool {
        self.apply(Output::Connect {
            peer,
            endpoint: endpoint.to_owned(),
            public_key: public_key.copied(),
        })
    }
    fn send(&mut self, peer: Uuid, frames: zmesh_zre::Frames) -> bool {
        self.apply(Output::Send { peer, frames })
    }
    fn disconnect(&mut self, peer: Uuid) {
        self.apply(Output::Disconnect { peer });
    }
}

/// What the driver hands to the application during one flush, in order; checked after it.
#[derive(Debug)]
pub(crate) enum Handed {
    /// A ZRE event.
    Event(Event),
    /// A request/reply delivery.
    ReqRep(Delivery<Waiter>),
    /// A peer event of the control layer.
    Control(zmesh_core::control::Delivery),
    /// An event-emitter delivery.
    Events(zmesh_core::events::Delivery),
    /// A services delivery.
    Services(zmesh_core::services::Delivery<u64>),
}

#[derive(Default)]
struct Recorder(Vec<Handed>);

impl Sink<Waiter> for Recorder {
    fn event(&mut self, event: Event) {
        self.0.push(Handed::Event(event));
    }
    fn reqrep(&mut self, delivery: Delivery<Waiter>) {
        self.0.push(Handed::ReqRep(delivery));
    }
    fn control(&mut self, delivery: zmesh_core::control::Delivery) {
        self.0.push(Handed::Control(delivery));
    }
    fn events(&mut self, delivery: zmesh_core::events::Delivery) {
        self.0.push(Handed::Events(delivery));
    }
    fn services(&mut self, delivery: zmesh_core::services::Delivery<u64>) {
        self.0.push(Handed::Services(delivery));
    }
}

impl Sim {
    /// Carries every pending output of instance `id` out with [`Driver::flush`] and checks it.
    /// `via` is the connection whose message is being processed (ENTER is only legal then).
    pub(crate) fn drain(&mut self, id: InstId, via: Option<ConnId>) -> Result<Drained, String> {
        self.with_driver(id, via, false, |driver, now, shell, sink| {
            driver.flush(now, shell, sink)
        })
    }

    /// Stops instance `id` politely with [`Driver::stop`] and checks what it carries out.
    pub(crate) fn stop_driver(&mut self, id: InstId) -> Result<Drained, String> {
        self.with_driver(id, None, true, |driver, now, shell, sink| {
            driver.stop(now, shell, sink);
            Vec::new()
        })
    }

    fn with_driver(
        &mut self,
        id: InstId,
        via: Option<ConnId>,
        stopping: bool,
        f: impl FnOnce(
            &mut Driver<Waiter>,
            Instant,
            &mut CheckedTransport<'_, Shell<'_>>,
            &mut CheckedSink<'_, Recorder>,
        ) -> Vec<Uuid>,
    ) -> Result<Drained, String> {
        let now = self.instant(self.now);
        let mut driver = self
            .insts
            .get_mut(&id)
            .unwrap()
            .driver
            .take()
            .expect("driver taken twice");
        let checker = self
            .insts
            .get_mut(&id)
            .unwrap()
            .checker
            .take()
            .expect("checker taken twice");
        checker.sync(driver.engine_ref());
        if stopping {
            checker.stopping();
        }
        let snap = Snap {
            status: driver.engine_ref().status(),
            own_groups: driver.engine_ref().own_groups(),
        };
        let mut shell = Shell {
            sim: self,
            id,
            snap,
            err: None,
        };
        let mut sink = Recorder::default();
        let failed = f(
            &mut driver,
            now,
            &mut checker.transport(&mut shell),
            &mut checker.sink(&mut sink),
        );
        let err = shell.err.take().or_else(|| {
            let name = &self.insts[&id].name;
            checker
                .check_queries(driver.engine_ref())
                .err()
                .map(|v| format!("{name}: shared output contract: {v}"))
        });
        let inst = self.insts.get_mut(&id).unwrap();
        inst.checker = Some(checker);
        let own = driver.control_ref().own();
        self.rt.record(inst.uuid, own.version, &own.options);
        inst.deadline = driver
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base));
        inst.driver = Some(driver);
        if let Some(e) = err {
            return Err(e);
        }
        let mut d = Drained {
            send_failed: !failed.is_empty(),
            ..Drained::default()
        };
        for handed in sink.0 {
            match handed {
                Handed::Event(ev) => {
                    self.touched.insert(id);
                    self.event(id, via, ev, &mut d)?;
                }
                Handed::ReqRep(delivery) => self.delivery(id, delivery)?,
                Handed::Control(delivery) => self.peer_event(id, delivery)?,
                Handed::Events(delivery) => self.emitted(id, delivery)?,
                // This simulation offers and calls no service (module `services` has its own).
                Handed::Services(delivery) => {
                    return Err(format!("services delivery nobody asked for: {delivery:?}"))
                }
            }
        }
        Ok(d)
    }

    /// Applies and checks one engine output (Connect, Send, Disconnect) of instance `id`;
    /// `false`: the send was refused (an injected failure).
    pub(crate) fn output(&mut self, id: InstId, out: Output, snap: &Snap) -> Result<bool, String> {
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        match out {
            Output::Connect { peer, endpoint, .. } => {
                if inst.conns.contains_key(&peer) {
                    return Err(format!(
                        "{name}: Connect to {} which has an open outbox",
                        short(&peer)
                    ));
                }
                if peer == inst.uuid || endpoint == inst.endpoint {
                    return Err(format!("{name}: Connect to itself ({endpoint})"));
                }
                let cid = self.next_conn;
                self.next_conn += 1;
                let conn = Conn {
                    from_inst: id,
                    from_uuid: inst.uuid,
                    from_slot: inst.slot,
                    peer,
                    to_slot: parse_slot(&endpoint),
                    to_endpoint: endpoint.clone(),
                    queue: VecDeque::new(),
                    open: true,
                    tainted: false,
                    sent_any: false,
                    last_seq: 0,
                    status: 0,
                    tail_at: Duration::ZERO,
                    stalled_until: Duration::ZERO,
                };
                self.conns.insert(cid, conn);
                self.insts.get_mut(&id).unwrap().conns.insert(peer, cid);
                self.log(format!(
                    "{name} connect conn {cid} to {} at {endpoint}",
                    short(&peer)
                ));
            }
            Output::Send { peer, frames } => {
                let Some(&cid) = inst.conns.get(&peer) else {
                    return Err(format!(
                        "{name}: Send to {} without an open outbox",
                        short(&peer)
                    ));
                };
                let (seq, msg) = ZreMessage::decode(&frames)
                    .map_err(|e| format!("{name}: Send frames do not decode: {e}"))?;
                let status = snap.status;
                let own_groups = snap.own_groups.clone();
                let stopping = inst.stopping;
                let own_endpoint = inst.endpoint.clone();
                let own_uuid = inst.uuid;
                let c = self.conns.get_mut(&cid).unwrap();
                let first = !c.sent_any;
                let is_hello = matches!(msg, ZreMessage::Hello { .. });
                if first && !(is_hello && seq == 1) {
                    return Err(format!(
                        "{name}: first message on conn {cid} is {} seq {seq}, not HELLO seq 1",
                        msg.name()
                    ));
                }
                if !first && (is_hello || seq != c.last_seq.wrapping_add(1)) {
                    return Err(format!(
                        "{name}: {} seq {seq} on conn {cid} after seq {}",
                        msg.name(),
                        c.last_seq
                    ));
                }
                c.sent_any = true;
                c.last_seq = seq;
                let kind = match &msg {
                    ZreMessage::Hello {
                        endpoint,
                        groups,
                        status: s,
                        ..
                    } => {
                        if *endpoint != own_endpoint || *s != status || *groups != own_groups {
                            return Err(format!(
                                "{name}: HELLO ({endpoint}, {groups:?}, {s}) does not match the \
                                 node ({own_endpoint}, {own_groups:?}, {status})"
                            ));
                        }
                        c.status = *s;
                        Kind::Hello
                    }
                    ZreMessage::Join { group, status: s }
                    | ZreMessage::Leave { group, status: s } => {
                        let join = matches!(msg, ZreMessage::Join { .. });
                        if *s != c.status.wrapping_add(1) || *s != status {
                            return Err(format!(
                                "{name}: {} {group} status {s} on conn {cid}, previous {}, node {status}",
                                msg.name(),
                                c.status
                            ));
                        }
                        if own_groups.iter().any(|g| g == group) != join {
                            return Err(format!(
                                "{name}: {} {group} disagrees with own groups",
                                msg.name()
                            ));
                        }
                        c.status = *s;
                        Kind::Other(msg.name())
                    }
                    ZreMessage::Whisper { content }
                        if content.len() == 1 && envelope::is_envelope(&content[0]) =>
                    {
                        // A layer frame (the driver whispered it): it must be a whole envelope.
                        Envelope::decode(&content[0])
                            .map_err(|e| format!("{name}: layer frame does not decode: {e}"))?;
                        Kind::Layer
                    }
                    ZreMessage::Whisper { content } => {
                        let w = content_id(content)
                            .ok_or_else(|| format!("{name}: whisper without id"))?;
                        if self.whispers.get(&w) != Some(&(own_uuid, peer)) {
                            return Err(format!(
                                "{name}: whisper #{w} sent to the wrong peer {}",
                                short(&peer)
                            ));
                        }
                        Kind::Whisper(w)
                    }
                    ZreMessage::Shout { group, content } => {
                        let s = content_id(content)
                            .ok_or_else(|| format!("{name}: shout without id"))?;
                        if self.shouts.get(&s) != Some(&(own_uuid, group.clone())) {
                            return Err(format!("{name}: shout #{s} is not ours for {group}"));
                        }
                        Kind::Shout(s)
                    }
                    ZreMessage::Goodbye => {
                        if !stopping {
                            return Err(format!("{name}: GOODBYE outside stop()"));
                        }
                        Kind::Goodbye
                    }
                    ZreMessage::Elect { .. } | ZreMessage::Leader { .. } => {
                        return Err(format!("{name}: sent {}", msg.name()));
                    }
                    ZreMessage::Ping | ZreMessage::PingOk => Kind::Other(msg.name()),
                };
                if !self.churn_over && !stopping && self.rng.gen_bool(self.cfg.send_fail_prob) {
                    let c = self.conns.get_mut(&cid).unwrap();
                    c.tainted = true;

                    self.report.send_failures += 1;
                    self.report.dropped += 1;
                    self.log(format!(
                        "{name}: send of {kind:?} seq {seq} on conn {cid} fails"
                    ));
                    return Ok(false);
                }
                let delay = self.rng.gen_range(Duration::ZERO..=self.cfg.max_delay);
                let c = self.conns.get_mut(&cid).unwrap();
                let at = c.tail_at.max(self.now + delay);
                c.tail_at = at;
                c.queue.push_back(Msg {
                    deliver_at: at,
                    seq,
                    kind,
                    frames,
                });
            }
            Output::Disconnect { peer } => {
                let Some(cid) = self.insts.get_mut(&id).unwrap().conns.remove(&peer) else {
                    return Err(format!(
                        "{name}: Disconnect of {} without an open outbox",
                        short(&peer)
                    ));
                };
                self.log(format!("{name} disconnect conn {cid} ({})", short(&peer)));
                let graceful = self.insts[&id].stopping;
                self.close(cid, graceful);
            }
            Output::Event(_) => {
                return Err(format!(
                    "{name}: simulator bug: an event reached the transport"
                ))
            }
        }
        Ok(true)
    }

    pub(crate) fn event(
        &mut self,
        id: InstId,
        via: Option<ConnId>,
        ev: Event,
        d: &mut Drained,
    ) -> Result<(), String> {
        let inst = self.insts.get_mut(&id).unwrap();
        let name = inst.name.clone();
        let my_uuid = inst.uuid;
        let need = |inst: &Inst, peer: &Uuid, what: &str| -> Result<(), String> {
            if inst.view.contains_key(peer) {
                Ok(())
            } else {
                Err(format!(
                    "{}: {what} from {} which has not entered",
                    inst.name,
                    short(peer)
                ))
            }
        };
        let line = match &ev {
            Event::Enter { peer, endpoint, .. } => {
                if inst.view.contains_key(peer) {
                    return Err(format!(
                        "{name}: second ENTER of {} without EXIT",
                        short(peer)
                    ));
                }
                let Some(cid) = via else {
                    return Err(format!(
                        "{name}: ENTER of {} outside HELLO processing",
                        short(peer)
                    ));
                };
                if self.conns.get(&cid).map(|c| c.from_uuid) != Some(*peer) {
                    return Err(format!(
                        "{name}: ENTER of {} on a connection from someone else",
                        short(peer)
                    ));
                }
                inst.view.insert(*peer, BTreeSet::new());
                self.em.session_reset(id, *peer);
                self.ready_via.insert((id, *peer), cid);
                self.interfered.remove(&(id, *peer));
                self.report.enters += 1;
                format!(
                    "{name} EVENT ENTER {} ({endpoint}) via conn {cid}",
                    short(peer)
                )
            }
            Event::Exit { peer, .. } => {
                if inst.view.remove(peer).is_none() {
                    return Err(format!(
                        "{name}: EXIT of {} which has not entered",
                        short(peer)
                    ));
                }
                self.ready_via.remove(&(id, *peer));
                self.rr.exit_seen(id, *peer);
                self.em.session_reset(id, *peer);
                self.interfered.remove(&(id, *peer));
                self.report.exits += 1;
                format!("{name} EVENT EXIT {}", short(peer))
            }
            Event::Join { peer, group, .. } => {
                need(inst, peer, "JOIN")?;
                if !inst.view.get_mut(peer).unwrap().insert(group.clone()) {
                    return Err(format!(
                        "{name}: JOIN {group} of {} already in it",
                        short(peer)
                    ));
                }
                format!("{name} EVENT JOIN {} {group}", short(peer))
            }
            Event::Leave { peer, group, .. } => {
                need(inst, peer, "LEAVE")?;
                if !inst.view.get_mut(peer).unwrap().remove(group) {
                    return Err(format!(
                        "{name}: LEAVE {group} of {} not in it",
                        short(peer)
                    ));
                }
                format!("{name} EVENT LEAVE {} {group}", short(peer))
            }
            Event::Whisper { peer, content, .. } => {
                need(inst, peer, "WHISPER")?;
                let w = content_id(content)
                    .ok_or_else(|| format!("{name}: whisper event without id"))?;
                match self.whispers.get(&w) {
                    Some(&(from, to)) if from == *peer && to == my_uuid => {}
                    Some(&(from, to)) if from == *peer && self.stale_delivery => {
                        // Queued for `to`, whose endpoint we took over: a ZRE property.
                        self.report.misdelivered_whispers += 1;
                        self.log(format!(
                            "{name}: whisper #{w} meant for {} delivered here (endpoint reuse)",
                            short(&to)
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name}: WHISPER #{w} from {} was not sent to us by it",
                            short(peer)
                        ))
                    }
                }
                if !self.delivered.insert((w, id)) {
                    return Err(format!("{name}: WHISPER #{w} delivered twice"));
                }
                d.whispers.push(w);
                format!("{name} EVENT WHISPER {} #{w}", short(peer))
            }
            Event::Shout {
                peer,
                group,
                content,
                ..
            } => {
                need(inst, peer, "SHOUT")?;
                let s =
                    content_id(content).ok_or_else(|| format!("{name}: shout event without id"))?;
                if self.shouts.get(&s) != Some(&(*peer, group.clone())) {
                    return Err(format!(
                        "{name}: SHOUT #{s} from {} to {group} was not sent by it",
                        short(peer)
                    ));
                }
                if !self.delivered.insert((s, id)) {
                    return Err(format!("{name}: SHOUT #{s} delivered twice"));
                }
                d.shouts.push(s);
                format!("{name} EVENT SHOUT {} {group} #{s}", short(peer))
            }
            Event::Evasive { peer, .. } => {
                need(inst, peer, "EVASIVE")?;
                format!("{name} EVENT EVASIVE {}", short(peer))
            }
            Event::Silent { peer, .. } => {
                need(inst, peer, "SILENT")?;
                format!("{name} EVENT SILENT {}", short(peer))
            }
            Event::Stop { uuid, .. } => {
                if !inst.stopping || *uuid != my_uuid {
                    return Err(format!("{name}: unexpected STOP event"));
                }
                format!("{name} EVENT STOP")
            }
        };
        self.log(line);
        Ok(())
    }
}
