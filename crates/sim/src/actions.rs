//! What happens in a scenario: starts, beacons, application actions, faults, kills, deliveries.

use super::*;

impl Sim {
    pub(crate) fn execute(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::EndChurn => {
                self.churn_over = true;
                if self.partition.take().is_some() {
                    self.log("end of churn: partition healed".into());
                }
                for i in 0..self.slots.len() {
                    if self.slots[i].inst.is_none()
                        && self.slots[i].start_at.is_none()
                        && self.rng.gen_bool(0.5)
                    {
                        let t =
                            self.now + self.rng.gen_range(Duration::ZERO..=Duration::from_secs(3));
                        self.slots[i].start_at = Some(t);
                    }
                }
                self.log("end of churn".into());
                Ok(())
            }
            Action::Heal => {
                self.partition = None;
                self.log("partition healed".into());
                Ok(())
            }
            Action::Start(slot) => self.start(slot),
            Action::Deliver(c) => self.deliver(c),
            Action::Timer(id) => {
                let now = self.instant(self.now);
                self.insts
                    .get_mut(&id)
                    .unwrap()
                    .driver_mut()
                    .handle_timeout(now);
                self.drain(id, None)?;
                let inst = &self.insts[&id];
                if let Some(t) = inst.driver_ref().poll_timeout() {
                    if t <= now {
                        return Err(format!(
                            "{}: handle_timeout made no progress (poll_timeout still <= now)",
                            inst.name
                        ));
                    }
                }
                Ok(())
            }
            Action::Beacon(id) => self.beacon(id),
            Action::App(id) => self.app(id),
            Action::Request(id) => self.reqrep_act(id),
            Action::Answer(id) => self.answer_due(id),
            Action::Fault => {
                self.fault()?;
                self.next_fault = self.now + self.gap(self.cfg.fault_gap);
                Ok(())
            }
        }
    }

    pub(crate) fn start(&mut self, slot: usize) -> Result<(), String> {
        let s = &mut self.slots[slot];
        s.start_at = None;
        if s.inst.is_some() {
            return Ok(());
        }
        let restart = s.incarnations > 0;
        s.incarnations += 1;
        let inc = s.incarnations;
        let last = s.last_uuid;
        let uuid = match last {
            Some(u) if restart && self.rng.gen_bool(0.3) => u,
            _ => Uuid::from_bytes(self.rng.gen()),
        };
        let endpoint = if !restart || self.rng.gen_bool(0.7) {
            format!("tcp://sim/{slot}/0")
        } else {
            format!("tcp://sim/{slot}/{inc}")
        };
        let name = format!("n{slot}.{inc}");
        let mut config = Config::new(uuid, name.clone());
        config.endpoint = endpoint.clone();
        config.headers = vec![("X-SIM-SLOT".into(), slot.to_string())];
        config.evasive_timeout = self.cfg.evasive_timeout;
        config.expired_timeout = self.cfg.expired_timeout;
        config.ping_interval = self.cfg.ping_interval;
        let layers = zmesh_core::driver::LayerConfig {
            reqrep: self.reqrep_config(),
            options: self.initial_options(slot),
            // A small credit window, so that flow control and back-pressure happen.
            events: zmesh_core::events::Config {
                window: 4,
                ..Default::default()
            },
            // This simulation offers and calls no service (module `services` has its own).
            services: Default::default(),
        };
        let driver = Driver::new(config, layers, self.instant(self.now))
            .map_err(|e| format!("{name}: Driver::new failed: {e}"))?;
        let checker = zmesh_core::testing::Checker::new(driver.engine_ref());
        let id = self.next_inst;
        self.next_inst += 1;
        let next_beacon = self.now
            + self
                .rng
                .gen_range(Duration::ZERO..=self.cfg.beacon_interval);
        let next_app = self.now + self.gap(self.cfg.app_gap);
        self.log(format!(
            "start {name} uuid {} at {endpoint}{}",
            short(&uuid),
            if Some(uuid) == last {
                " (same uuid)"
            } else {
                ""
            }
        ));
        self.insts.insert(
            id,
            Inst {
                slot,
                name,
                uuid,
                endpoint,
                driver: Some(driver),
                checker: Some(checker),
                conns: BTreeMap::new(),
                view: BTreeMap::new(),
                next_beacon,
                next_app,
                next_req: Duration::MAX,
                stopping: false,
                deadline: None,
            },
        );
        let s = &mut self.slots[slot];
        s.inst = Some(id);
        s.last_uuid = Some(uuid);
        let life = self.lives.entry(uuid).or_default();
        if life.alive {
            return Err(format!("simulator bug: uuid {uuid} started twice"));
        }
        life.alive = true;
        life.slot = slot;
        self.report.instances += 1;
        self.touched.insert(id);
        self.emitter_start(id)?;
        let next_req = self.reqrep_start(id);
        self.insts.get_mut(&id).unwrap().next_req = next_req;
        Ok(())
    }

    pub(crate) fn beacon(&mut self, id: InstId) -> Result<(), String> {
        let jitter = self.cfg.beacon_jitter;
        let interval = self.cfg.beacon_interval;
        let d = interval + self.rng.gen_range(Duration::ZERO..=jitter * 2) - jitter;
        let (uuid, endpoint, slot) = {
            let inst = self.insts.get_mut(&id).unwrap();
            inst.next_beacon = self.now + d;
            (inst.uuid, inst.endpoint.clone(), inst.slot)
        };
        let others: Vec<InstId> = self.insts.keys().copied().filter(|&o| o != id).collect();
        let now = self.instant(self.now);
        for o in others {
            if self.cut(slot, Some(self.insts[&o].slot)) || self.rng.gen_bool(self.beacon_loss) {
                continue;
            }
            self.insts
                .get_mut(&o)
                .unwrap()
                .driver_mut()
                .engine()
                .handle_sighting(now, uuid, &endpoint);
            self.drain(o, None)?;
        }
        Ok(())
    }

    pub(crate) fn new_content(&mut self) -> (u64, Vec<Bytes>) {
        let id = self.next_content;
        self.next_content += 1;
        let mut content = vec![Bytes::copy_from_slice(&id.to_be_bytes())];
        if self.rng.gen_bool(0.3) {
            content.push(Bytes::from_static(b"more"));
        }
        (id, content)
    }

    pub(crate) fn app(&mut self, id: InstId) -> Result<(), String> {
        let app_end = self.end.saturating_sub(Duration::from_secs(3));
        let next = self.now + self.gap(self.cfg.app_gap);
        self.insts.get_mut(&id).unwrap().next_app =
            if next < app_end { next } else { Duration::MAX };
        let roll = self.rng.gen_range(0..100);
        let group = GROUPS[self.rng.gen_range(0..GROUPS.len())];
        let name = self.insts[&id].name.clone();
        if roll < 32 && !self.churn_over {
            let inst = self.insts.get_mut(&id).unwrap();
            let joined = inst.engine().own_groups().iter().any(|g| g == group);
            let changed = if roll < 20 {
                inst.driver_mut().engine().join(group)
            } else {
                inst.driver_mut().engine().leave(group)
            };
            let what = if roll < 20 { "join" } else { "leave" };
            if changed != ((roll < 20) != joined) {
                return Err(format!("{name}: {what}({group}) returned {changed}"));
            }
            self.log(format!(
                "{name} {what} {group} -> {changed} (status {})",
                self.insts[&id].engine().status()
            ));
        } else if roll < 66 {
            let peers = self.insts[&id].engine().peers();
            let (target, known) = if peers.is_empty() || self.rng.gen_bool(0.05) {
                (Uuid::from_bytes(self.rng.gen()), false)
            } else {
                (peers[self.rng.gen_range(0..peers.len())], true)
            };
            let (cid, content) = self.new_content();
            let from = self.insts[&id].uuid;
            self.whispers.insert(cid, (from, target));
            let r = self
                .insts
                .get_mut(&id)
                .unwrap()
                .driver_mut()
                .engine()
                .whisper(target, content);
            if r.is_ok() != known {
                return Err(format!(
                    "{name}: whisper to {} returned {r:?}",
                    short(&target)
                ));
            }
            self.log(format!("{name} whisper #{cid} to {}", short(&target)));
        } else {
            let (cid, content) = self.new_content();
            let from = self.insts[&id].uuid;
            self.shouts.insert(cid, (from, group.to_owned()));
            let inst = self.insts.get_mut(&id).unwrap();
            let expected = inst.engine().peers_by_group(group).len();
            let r = inst.driver_mut().engine().shout(group, content);
            if r != Ok(expected) {
                return Err(format!(
                    "{name}: shout to {group} returned {r:?}, expected Ok({expected})"
                ));
            }
            self.log(format!("{name} shout #{cid} to {group} ({expected} peers)"));
        }
        self.touched.insert(id);
        self.drain(id, None)?;
        Ok(())
    }

    pub(crate) fn fault(&mut self) -> Result<(), String> {
        let live: Vec<InstId> = self.insts.keys().copied().collect();
        let roll = self.rng.gen_range(0..100);
        if roll < 12 && live.len() > 2 {
            let id = live[self.rng.gen_range(0..live.len())];
            self.report.crashes += 1;
            self.kill(id, false)
        } else if roll < 22 && live.len() > 2 {
            let id = live[self.rng.gen_range(0..live.len())];
            self.report.stops += 1;
            self.kill(id, true)
        } else if roll < 37 && self.partition.is_none() {
            let n = self.slots.len();
            let mut side = BTreeSet::new();
            while side.is_empty() || side.len() == n {
                side = (0..n).filter(|_| self.rng.gen_bool(0.5)).collect();
            }
            let heal_at = self.now
                + self
                    .rng
                    .gen_range(Duration::from_secs(1)..=self.cfg.max_partition);
            self.log(format!("partition {side:?} | rest until {}", secs(heal_at)));
            self.partition = Some(Partition { side, heal_at });
            self.report.partitions += 1;
            Ok(())
        } else if roll < 85 {
            let open: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.open)
                .map(|(&i, _)| i)
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            let cid = open[self.rng.gen_range(0..open.len())];
            if roll < 70 {
                let len = self.conns[&cid].queue.len();
                if len == 0 {
                    return Ok(());
                }
                let k = self.rng.gen_range(1..=len);
                self.drop_prefix(cid, k, "reset");
                self.report.resets += 1;
            } else {
                let until = self.now
                    + self
                        .rng
                        .gen_range(Duration::from_millis(500)..=self.cfg.max_stall);
                self.conns.get_mut(&cid).unwrap().stalled_until = until;
                self.log(format!("stall conn {cid} until {}", secs(until)));
                self.report.stalls += 1;
            }
            Ok(())
        } else {
            // A burst of app activity on one node instead of a fault.
            if let Some(&id) = live.get(self.rng.gen_range(0..live.len().max(1))) {
                for _ in 0..3 {
                    self.app(id)?;
                }
                if self.insts[&id].next_app == Duration::MAX {
                    self.insts.get_mut(&id).unwrap().next_app = self.now + Duration::from_secs(1);
                }
            }
            Ok(())
        }
    }

    /// Drops the first `k` queued messages of `cid` (lost on the wire).
    pub(crate) fn drop_prefix(&mut self, cid: ConnId, k: usize, why: &str) {
        let c = self.conns.get_mut(&cid).unwrap();
        let k = k.min(c.queue.len());
        if k == 0 {
            return;
        }
        let seqs: Vec<u16> = c.queue.drain(..k).map(|m| m.seq).collect();
        c.tainted = true;
        self.report.dropped += k as u64;
        self.log(format!(
            "{why}: conn {cid} lost {k} message(s), seq {seqs:?}"
        ));
    }

    /// Crash (`graceful = false`) or polite stop of an instance.
    pub(crate) fn kill(&mut self, id: InstId, graceful: bool) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let (uuid, endpoint, slot) = {
            let i = &self.insts[&id];
            (i.uuid, i.endpoint.clone(), i.slot)
        };
        if graceful {
            self.log(format!("stop {name}"));
            let now = self.instant(self.now);
            self.insts.get_mut(&id).unwrap().stopping = true;
            self.stop_driver(id)?;
            if !self.insts[&id].conns.is_empty() {
                return Err(format!("{name}: stop() left open outboxes"));
            }
            self.reqrep_stopped(id)?;
            self.routing_gone(id);
            let others: Vec<InstId> = self.insts.keys().copied().filter(|&o| o != id).collect();
            for o in others {
                if self.cut(slot, Some(self.insts[&o].slot)) || self.rng.gen_bool(self.beacon_loss)
                {
                    continue;
                }
                self.insts
                    .get_mut(&o)
                    .unwrap()
                    .driver_mut()
                    .engine()
                    .handle_departure(now, uuid);
                self.drain(o, None)?;
            }
        } else {
            self.reqrep_before_crash(id)?;
            self.log(format!("crash {name}"));
            self.reqrep_crashed(id);
            self.routing_gone(id);
            let outs: Vec<ConnId> = self.insts[&id].conns.values().copied().collect();
            for cid in outs {
                self.close(cid, false);
            }
        }
        self.insts.remove(&id);
        self.touched.remove(&id);
        self.slots[slot].inst = None;
        let life = self.lives.get_mut(&uuid).unwrap();
        life.alive = false;
        life.last_death = Some(self.now);
        self.ready_via.retain(|(i, _), _| *i != id);
        self.interfered.retain(|(i, _)| *i != id);
        // Messages in flight to the dead instance: a random prefix was on the wire and is lost;
        // open connections keep the rest queued (the DEALER reconnects later), closed ones lose all.
        let inbound: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.to_endpoint == endpoint)
            .map(|(&i, _)| i)
            .collect();
        for cid in inbound {
            let c = &self.conns[&cid];
            let k = if c.open {
                self.rng.gen_range(0..=c.queue.len())
            } else {
                c.queue.len()
            };
            self.drop_prefix(cid, k, "peer died");
            self.gc_conn(cid);
        }
        if !self.churn_over && self.rng.gen_bool(0.75) {
            let t = self.now
                + self
                    .rng
                    .gen_range(Duration::from_millis(200)..=self.cfg.max_downtime);
            self.slots[slot].start_at = Some(t);
        }
        Ok(())
    }

    /// Closes an outbox: a graceful close keeps everything in flight; otherwise a random prefix
    /// is still delivered (already on the wire) if someone listens, the rest is dropped.
    pub(crate) fn close(&mut self, cid: ConnId, graceful: bool) {
        let listening = self.listener(&self.conns[&cid].to_endpoint).is_some();
        let len = self.conns[&cid].queue.len();
        self.conns.get_mut(&cid).unwrap().open = false;
        let keep = if graceful && listening {
            len
        } else if listening {
            self.rng.gen_range(0..=len)
        } else {
            0
        };
        let c = self.conns.get_mut(&cid).unwrap();
        if keep < len {
            let lost = c.queue.split_off(keep);
            c.tainted = true;
            self.report.dropped += lost.len() as u64;
            self.log(format!(
                "close conn {cid}: {} in-flight message(s) dropped",
                lost.len()
            ));
        }
        self.gc_conn(cid);
    }

    pub(crate) fn gc_conn(&mut self, cid: ConnId) {
        if self
            .conns
            .get(&cid)
            .is_some_and(|c| !c.open && c.queue.is_empty())
        {
            self.conns.remove(&cid);
        }
    }

    pub(crate) fn deliver(&mut self, cid: ConnId) -> Result<(), String> {
        let c = &self.conns[&cid];
        if self.cut(c.from_slot, c.to_slot) {
            self.drop_prefix(cid, 1, "partition");
            self.gc_conn(cid);
            return Ok(());
        }
        let Some(to) = self.listener(&c.to_endpoint) else {
            // Closed and nobody listening: lost.
            let n = c.queue.len();
            self.drop_prefix(cid, n, "no listener");
            self.gc_conn(cid);
            return Ok(());
        };
        let c = self.conns.get_mut(&cid).unwrap();
        let msg = c.queue.pop_front().unwrap();
        let from_uuid = c.from_uuid;
        let tainted = c.tainted;
        let from_inst = c.from_inst;
        self.touched_conns.insert(cid);
        self.report.delivered += 1;
        match self.ready_via.get(&(to, from_uuid)) {
            Some(&c0) if c0 != cid => {
                self.interfered.insert((to, from_uuid));
            }
            _ => {}
        }
        let clean = !tainted
            && self.ready_via.get(&(to, from_uuid)) == Some(&cid)
            && !self.interfered.contains(&(to, from_uuid));
        self.stale_delivery = self.conns[&cid].peer != self.insts[&to].uuid;
        if self.stale_delivery {
            self.report.stale_deliveries += 1;
        }
        let before: Stats = self.insts[&to].engine().stats().clone();
        let to_name = self.insts[&to].name.clone();
        if self.cfg.verbose {
            let from_name = self
                .insts
                .get(&from_inst)
                .map_or_else(|| format!("dead {}", short(&from_uuid)), |i| i.name.clone());
            self.log(format!(
                "deliver conn {cid} {from_name} -> {to_name}: {:?} seq {}{}",
                msg.kind,
                msg.seq,
                if clean { " (clean)" } else { "" }
            ));
        }
        let now = self.instant(self.now);
        self.insts
            .get_mut(&to)
            .unwrap()
            .driver_mut()
            .engine()
            .handle_message(now, &routing_id(&from_uuid), msg.frames);
        let d = self.drain(to, Some(cid));
        self.stale_delivery = false;
        let d = d?;
        self.gc_conn(cid);
        let Some(inst) = self.insts.get(&to) else {
            return Ok(());
        };
        let after = inst.engine().stats();
        if after.malformed != 0 || after.bad_identity != 0 {
            return Err(format!(
                "{to_name}: malformed/bad identity counted: {after:?}"
            ));
        }
        let layer = inst.driver_ref().stats();
        let rr = inst.driver_ref().reqrep_ref().stats();
        if layer.bad_envelopes != 0 || layer.unknown_layer != 0 || rr.malformed != 0 {
            return Err(format!(
                "{to_name}: bad envelope counted (the simulator sends none): {layer:?} {rr:?}"
            ));
        }
        if clean {
            self.report.clean_checked += 1;
            let bad = [
                ("sequence_gaps", before.sequence_gaps, after.sequence_gaps),
                (
                    "status_mismatches",
                    before.status_mismatches,
                    after.status_mismatches,
                ),
                (
                    "not_hello_first",
                    before.not_hello_first,
                    after.not_hello_first,
                ),
                (
                    "from_disconnected",
                    before.from_disconnected,
                    after.from_disconnected,
                ),
            ];
            for (what, b, a) in bad {
                if a != b {
                    return Err(format!(
                        "{to_name}: {what} counted for {:?} seq {} on clean conn {cid} from {}",
                        msg.kind,
                        msg.seq,
                        short(&from_uuid)
                    ));
                }
            }
            if msg.kind != Kind::Goodbye
                && !d.send_failed
                && self.ready_via.get(&(to, from_uuid)) != Some(&cid)
            {
                return Err(format!(
                    "{to_name}: lost peer {} after {:?} seq {} on clean conn {cid}",
                    short(&from_uuid),
                    msg.kind,
                    msg.seq
                ));
            }
            match msg.kind {
                Kind::Whisper(w) if !d.whispers.contains(&w) => {
                    return Err(format!(
                        "{to_name}: whisper #{w} on clean conn {cid} not delivered"
                    ));
                }
                Kind::Shout(s) if !d.shouts.contains(&s) => {
                    return Err(format!(
                        "{to_name}: shout #{s} on clean conn {cid} not delivered"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
