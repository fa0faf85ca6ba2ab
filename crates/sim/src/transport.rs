//! Carrying an instance's outputs out: the simulated shell.

use super::*;

impl Sim {
    /// Drains and checks every output of instance `id`. `via` is the connection whose message is
    /// being processed (ENTER is only legal then).
    pub(crate) fn drain(&mut self, id: InstId, via: Option<ConnId>) -> Result<Drained, String> {
        let mut d = Drained::default();
        loop {
            let mut failed = Vec::new();
            while let Some(out) = self.insts.get_mut(&id).unwrap().engine.poll_output() {
                if !matches!(out, Output::Send { .. }) {
                    self.touched.insert(id);
                }
                self.output(id, via, out, &mut d, &mut failed)?;
            }
            if failed.is_empty() {
                let inst = self.insts.get_mut(&id).unwrap();
                inst.deadline = inst
                    .engine
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.base));
                return Ok(d);
            }
            d.send_failed = true;
            let now = self.instant(self.now);
            for peer in failed {
                self.insts
                    .get_mut(&id)
                    .unwrap()
                    .engine
                    .handle_send_failed(now, peer);
            }
        }
    }

    pub(crate) fn output(
        &mut self,
        id: InstId,
        via: Option<ConnId>,
        out: Output,
        d: &mut Drained,
        failed: &mut Vec<Uuid>,
    ) -> Result<(), String> {
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        match out {
            Output::Connect { peer, endpoint } => {
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
                let status = inst.engine.status();
                let own_groups = inst.engine.own_groups();
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
                    failed.push(peer);
                    self.report.send_failures += 1;
                    self.report.dropped += 1;
                    self.log(format!(
                        "{name}: send of {kind:?} seq {seq} on conn {cid} fails"
                    ));
                    return Ok(());
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
            Output::Event(ev) => self.event(id, via, ev, d)?,
        }
        Ok(())
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
