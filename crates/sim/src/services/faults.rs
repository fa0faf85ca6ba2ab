//! The virtual network of the services simulation: who sees whom (topology and partition),
//! sessions coming up and going down, crashes, partitions and message loss.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use uuid::Uuid;
use zmesh_core::caps::Caps;
use zmesh_core::envelope;
use zmesh_core::layer::{Input, PeerView};

use super::{InstId, Role, ServicesSim, DETECT};

impl ServicesSim {
    /// Whether two slots' instances should see each other (topology and partition).
    pub(super) fn may_see(&self, a: usize, b: usize) -> bool {
        if a == b {
            return false;
        }
        if self.brokered {
            let (ra, rb) = (self.roles[a], self.roles[b]);
            if ra != Role::Broker && rb != Role::Broker {
                return false;
            }
        }
        match &self.cut {
            Some((side, _)) => side.contains(&a) == side.contains(&b),
            None => true,
        }
    }

    pub(super) fn crash(&mut self, slot: usize) {
        let Some(id) = self.slot_inst[slot].take() else {
            return;
        };
        let inst = self.insts.remove(&id).expect("running");
        self.dead.insert(id, inst.uuid);
        self.report.crashes += 1;
        self.report.lost_with_caller += inst.pending.len() as u64;
        self.log(format!(
            "crash slot {slot} #{id} (pending {}, holding {}, relaying {})",
            inst.pending.len(),
            inst.holding.len(),
            inst.layer.relaying()
        ));
        // Nothing it sent arrives any more; nothing arrives to it.
        self.wire.retain(|(f, t), _| *f != id && *t != id);
        self.links.retain(|(_, a, b, _)| *a != id && *b != id);
        for other in inst.sees {
            let at = self.now + Duration::from_millis(self.rng.gen_range(DETECT.0..DETECT.1));
            self.links.push((at, other, id, false));
        }
        let back = self.now + Duration::from_millis(self.rng.gen_range(200..3000));
        self.down.insert(slot, back);
    }

    pub(super) fn partition(&mut self) {
        let n = self.roles.len();
        let side: BTreeSet<usize> = (0..n).filter(|_| self.rng.gen_bool(0.5)).collect();
        let until = self.now + Duration::from_millis(self.rng.gen_range(500..4000));
        self.report.partitions += 1;
        self.log(format!("partition {side:?} until {until:?}"));
        self.cut = Some((side, until));
        self.apply_topology();
    }

    /// Schedules session changes so that who-sees-whom follows `may_see`.
    pub(super) fn apply_topology(&mut self) {
        let ids: Vec<(InstId, usize)> = self.insts.iter().map(|(i, x)| (*i, x.slot)).collect();
        for &(a, sa) in &ids {
            for &(b, sb) in &ids {
                if a >= b {
                    continue;
                }
                let want = self.may_see(sa, sb);
                let have = self.insts[&a].sees.contains(&b);
                let scheduled = self
                    .links
                    .iter()
                    .rev()
                    .find(|(_, x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
                    .map(|l| l.3);
                if scheduled.unwrap_or(have) == want {
                    continue;
                }
                if !want {
                    // The cut loses what is in flight both ways at once, and what is sent
                    // until both sides notice.
                    self.broken.insert((a.min(b), a.max(b)));
                    self.wire.remove(&(a, b));
                    self.wire.remove(&(b, a));
                }
                let delay = if want {
                    self.rng.gen_range(5..300)
                } else {
                    self.rng.gen_range(DETECT.0..DETECT.1)
                };
                let at = self.now + Duration::from_millis(delay);
                self.links.push((at, a, b, want));
            }
        }
    }

    pub(super) fn see(&mut self, a: InstId, b: InstId, up: bool) {
        let Some(inst) = self.insts.get_mut(&a) else {
            return;
        };
        if up {
            if !inst.sees.insert(b) {
                return;
            }
            let peer = self.insts[&b].uuid;
            let caps = Caps::NONE.with(envelope::Layer::SERVICES);
            self.log(format!("#{a} sees #{b}"));
            self.input(
                a,
                Input::PeerUp(PeerView {
                    peer,
                    name: "sim",
                    headers: &[],
                    caps,
                }),
            );
        } else {
            if !inst.sees.remove(&b) {
                return;
            }
            // The session is gone: nothing more flows either way on it; a new one starts
            // clean.
            self.wire.remove(&(a, b));
            self.wire.remove(&(b, a));
            self.broken.remove(&(a.min(b), a.max(b)));
            let peer = self.uuid_of_any(b);
            self.log(format!("#{a} loses #{b}"));
            if let Some(peer) = peer {
                self.input(a, Input::PeerDown { peer });
            }
        }
    }

    /// The UUID of an instance, living or (recently) dead: dead ones are remembered by the
    /// survivors' layers only by UUID, which we derive back from their sessions.
    pub(super) fn uuid_of_any(&self, id: InstId) -> Option<Uuid> {
        self.insts
            .get(&id)
            .map(|i| i.uuid)
            .or_else(|| self.dead.get(&id).copied())
    }

    pub(super) fn fault(&mut self) {
        let n = self.roles.len();
        match self.rng.gen_range(0..10) {
            0..=5 => {
                let slot = self.rng.gen_range(0..n);
                self.crash(slot);
            }
            6..=7 => {
                if self.cut.is_none() {
                    self.partition();
                }
            }
            _ => {
                // A reset: a message in flight is lost, and with it the session (ZRE sees the
                // sequence gap and drops the peer; both sides meet again later).
                let keys: Vec<_> = self
                    .wire
                    .iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(k, _)| *k)
                    .collect();
                if !keys.is_empty() {
                    let k = keys[self.rng.gen_range(0..keys.len())];
                    self.break_session(k.0, k.1);
                    self.log(format!("reset: session {k:?} broken"));
                }
            }
        }
    }

    /// Breaks the session between `a` and `b`: what is in flight is lost, nothing more is
    /// carried, and both sides lose each other after the detection delay.
    pub(super) fn break_session(&mut self, a: InstId, b: InstId) {
        self.broken.insert((a.min(b), a.max(b)));
        self.wire.remove(&(a, b));
        self.wire.remove(&(b, a));
        let at = self.now + Duration::from_millis(self.rng.gen_range(DETECT.0..DETECT.1));
        self.links.push((at, a, b, false));
    }
}
