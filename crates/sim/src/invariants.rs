//! The invariants checked after every step, every two virtual seconds and at the end.

use super::*;

impl Sim {
    pub(crate) fn check_step(&mut self) -> Result<(), String> {
        let touched: Vec<InstId> = self.touched.iter().copied().collect();
        for id in touched {
            if self.insts.contains_key(&id) {
                self.check_view(id)?;
            }
        }
        let pairs: Vec<((InstId, Uuid), ConnId)> = self
            .ready_via
            .iter()
            .filter(|(_, c)| self.touched_conns.contains(c))
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((i, u), c) in pairs {
            self.check_status(i, u, c)?;
        }
        Ok(())
    }

    pub(crate) fn check_all(&mut self) -> Result<(), String> {
        self.check_directories()?;
        let ids: Vec<InstId> = self.insts.keys().copied().collect();
        let bound = self.cfg.expired_timeout
            + self.cfg.max_stall
            + self.cfg.max_delay
            + Duration::from_secs(1);
        for &id in &ids {
            self.check_view(id)?;
            let inst = &self.insts[&id];
            for (u, life) in &self.lives {
                if *u == inst.uuid {
                    continue;
                }
                let info = inst.engine().peer(*u);
                let connected = info
                    .as_ref()
                    .is_some_and(|p| p.state != PeerState::Disconnected);
                if connected != inst.conns.contains_key(u) {
                    return Err(format!(
                        "{}: engine connected={connected} to {} but shell outbox={}",
                        inst.name,
                        short(u),
                        inst.conns.contains_key(u)
                    ));
                }
                if info.is_some() && !life.alive {
                    let died = life.last_death.unwrap_or_default();
                    if self.now.saturating_sub(died) > bound {
                        return Err(format!(
                            "{}: still has a record of {} which died at {} (leak)",
                            inst.name,
                            short(u),
                            secs(died)
                        ));
                    }
                }
            }
        }
        let pairs: Vec<((InstId, Uuid), ConnId)> =
            self.ready_via.iter().map(|(k, v)| (*k, *v)).collect();
        for ((i, u), c) in pairs {
            self.check_status(i, u, c)?;
        }
        Ok(())
    }

    /// The instance's query API agrees with its event stream.
    pub(crate) fn check_view(&self, id: InstId) -> Result<(), String> {
        let inst = &self.insts[&id];
        let e = inst.engine();
        let peers: BTreeSet<Uuid> = e.peers().into_iter().collect();
        let view: BTreeSet<Uuid> = inst.view.keys().copied().collect();
        if peers != view {
            return Err(format!(
                "{}: peers() {:?} != entered peers {:?}",
                inst.name,
                peers.iter().map(short).collect::<Vec<_>>(),
                view.iter().map(short).collect::<Vec<_>>()
            ));
        }
        let mut nonempty = Vec::new();
        for g in GROUPS {
            let got: BTreeSet<Uuid> = e.peers_by_group(g).into_iter().collect();
            let want: BTreeSet<Uuid> = inst
                .view
                .iter()
                .filter(|(_, gs)| gs.contains(g))
                .map(|(u, _)| *u)
                .collect();
            if got != want {
                return Err(format!(
                    "{}: peers_by_group({g}) {:?} != events {:?}",
                    inst.name,
                    got.iter().map(short).collect::<Vec<_>>(),
                    want.iter().map(short).collect::<Vec<_>>()
                ));
            }
            if !want.is_empty() {
                nonempty.push(g.to_owned());
            }
        }
        nonempty.sort();
        if e.peer_groups() != nonempty {
            return Err(format!(
                "{}: peer_groups() {:?} != groups with members {:?}",
                inst.name,
                e.peer_groups(),
                nonempty
            ));
        }
        Ok(())
    }

    /// If `observer` is ready for `peer` through a clean, open, empty connection, its record of
    /// the peer's status and groups must equal the truth.
    pub(crate) fn check_status(
        &mut self,
        observer: InstId,
        peer: Uuid,
        cid: ConnId,
    ) -> Result<(), String> {
        let Some(c) = self.conns.get(&cid) else {
            return Ok(());
        };
        if !c.open
            || c.tainted
            || !c.queue.is_empty()
            || self.interfered.contains(&(observer, peer))
        {
            return Ok(());
        }
        let Some(sender) = self.insts.get(&c.from_inst) else {
            return Ok(());
        };
        let Some(obs) = self.insts.get(&observer) else {
            return Ok(());
        };
        self.report.status_checked += 1;
        let Some(info) = obs.engine().peer(peer) else {
            return Err(format!(
                "{}: no record of ready peer {}",
                obs.name,
                short(&peer)
            ));
        };
        let want: BTreeSet<String> = sender.engine().own_groups().into_iter().collect();
        let got: BTreeSet<String> = info.groups.iter().cloned().collect();
        if info.status != sender.engine().status() || got != want {
            return Err(format!(
                "{}: record of {} says status {} groups {got:?}, truth is status {} groups {want:?} \
                 (conn {cid} clean and idle)",
                obs.name,
                sender.name,
                info.status,
                sender.engine().status()
            ));
        }
        Ok(())
    }

    pub(crate) fn converged(&self) -> Result<(), String> {
        let live: BTreeMap<Uuid, InstId> = self.insts.iter().map(|(&id, i)| (i.uuid, id)).collect();
        for inst in self.insts.values() {
            let e = inst.engine();
            let peers: BTreeSet<Uuid> = e.peers().into_iter().collect();
            let want: BTreeSet<Uuid> = live.keys().copied().filter(|u| *u != inst.uuid).collect();
            if peers != want {
                let missing: Vec<String> = want.difference(&peers).map(short).collect();
                let extra: Vec<String> = peers.difference(&want).map(short).collect();
                return Err(format!(
                    "{} sees peers missing {missing:?} extra {extra:?}",
                    inst.name
                ));
            }
            for g in GROUPS {
                let got: BTreeSet<Uuid> = e.peers_by_group(g).into_iter().collect();
                let want: BTreeSet<Uuid> = self
                    .insts
                    .values()
                    .filter(|o| {
                        o.uuid != inst.uuid && o.engine().own_groups().iter().any(|x| x == g)
                    })
                    .map(|o| o.uuid)
                    .collect();
                if got != want {
                    return Err(format!("{}: group {g} view != truth", inst.name));
                }
            }
            for (u, &oid) in &live {
                if *u == inst.uuid {
                    continue;
                }
                let info = e.peer(*u).ok_or("missing record")?;
                let other = &self.insts[&oid].engine();
                if info.status != other.status() {
                    return Err(format!(
                        "{}: status of {} is {} but truth is {}",
                        inst.name,
                        self.insts[&oid].name,
                        info.status,
                        other.status()
                    ));
                }
            }
            for (u, life) in &self.lives {
                if !life.alive && e.peer(*u).is_some() {
                    return Err(format!(
                        "{} still has a record of dead {}",
                        inst.name,
                        short(u)
                    ));
                }
            }
        }
        Ok(())
    }
}
