//! The event emitter in the simulator: every slot subscribes to a fixed set of patterns (some
//! asking for retained values, some flow-controlled), every instance emits events (some
//! retained) — checked against what really happened:
//!
//! * a publisher sends an event only to peers whose slot really subscribes to a matching
//!   pattern (interest-based: no flooding);
//! * **no subscriber receives an event it did not subscribe to**: every delivered event names
//!   subscriptions of that slot whose patterns match its topic (a retained value only to one
//!   that asked for retained values);
//! * per publisher, events arrive in emit order (sequence numbers strictly increase over one
//!   session);
//! * flow control: the application reports what it consumed; back-pressure refusals are
//!   counted;
//! * at the end of the quiet phase (after every partition healed), every running instance knows
//!   every other one's current subscriptions.

use rand::seq::SliceRandom;
use zmesh_core::events::{Delivery, EmitError};

use super::*;

/// Patterns the slots subscribe with (`nomatch.*` never matches a topic).
const PATTERNS: [&str; 6] = ["s.*", "s.**", "**", "t.a", "nomatch.*", "*.x"];
/// Topics the applications emit on.
const TOPICS: [&str; 5] = ["s.a", "s.b.c", "t.a", "u.x", "v"];

/// The emitter model.
#[derive(Debug)]
pub(crate) struct EmitModel {
    rng: ChaCha8Rng,
    /// Per slot: (sub id, pattern, wants retained, flow-controlled).
    subs: Vec<Vec<(u64, zmesh_core::pattern::Pattern, bool, bool)>>,
    /// Last sequence number delivered per (observer, publisher) session.
    last_seq: BTreeMap<(InstId, Uuid), u64>,
    /// Flow-controlled events the application took and has to report.
    to_consume: Vec<(InstId, Uuid)>,
}

impl EmitModel {
    pub(crate) fn new(seed: u64, slots: usize) -> EmitModel {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe417_7e40_0000_0003);
        let subs = (0..slots)
            .map(|_| {
                (0..rng.gen_range(0..=2))
                    .map(|i| {
                        let p = PATTERNS.choose(&mut rng).unwrap();
                        let pattern = zmesh_core::pattern::Pattern::parse(p).unwrap();
                        (i + 1, pattern, rng.gen_bool(0.4), rng.gen_bool(0.5))
                    })
                    .collect()
            })
            .collect();
        EmitModel {
            rng,
            subs,
            last_seq: BTreeMap::new(),
            to_consume: Vec::new(),
        }
    }

    /// A new session between observer and publisher: sequence numbers start again.
    pub(crate) fn session_reset(&mut self, observer: InstId, publisher: Uuid) {
        self.last_seq.remove(&(observer, publisher));
    }

    fn slot_wants(&self, slot: usize, topic: &str) -> bool {
        self.subs[slot].iter().any(|(_, p, _, _)| p.matches(topic))
    }
}

impl Sim {
    /// Subscribes a new instance to its slot's patterns.
    pub(crate) fn emitter_start(&mut self, id: InstId) -> Result<(), String> {
        let slot = self.insts[&id].slot;
        let subs = self.em.subs[slot].clone();
        let inst = self.insts.get_mut(&id).unwrap();
        for (sid, p, retained, flow) in subs {
            inst.driver_mut()
                .events(|e, io| e.subscribe(sid, p, retained, flow, io))
                .map_err(|e| format!("subscribe refused: {e}"))?;
        }
        Ok(())
    }

    /// One emit of instance `id` (and the consumption reports its application owes).
    pub(crate) fn emit_event(&mut self, id: InstId) -> Result<(), String> {
        let owed: Vec<Uuid> = {
            let (mine, rest): (Vec<_>, Vec<_>) =
                self.em.to_consume.drain(..).partition(|(i, _)| *i == id);
            self.em.to_consume = rest;
            mine.into_iter().map(|(_, p)| p).collect()
        };
        let topic = TOPICS.choose(&mut self.em.rng).unwrap().to_string();
        let retain = self.em.rng.gen_bool(0.2);
        let payload = Bytes::from(format!("e{}", self.report.events_emitted));
        let name = self.insts[&id].name.clone();
        let inst = self.insts.get_mut(&id).unwrap();
        let r = inst.driver_mut().events(|e, io| {
            for p in owed {
                e.consumed(p, 1, io);
            }
            e.emit(&topic, payload, retain, io)
        });
        match r {
            Ok(targets) => {
                for t in &targets {
                    let wants = self
                        .lives
                        .get(t)
                        .is_some_and(|l| self.em.slot_wants(l.slot, &topic));
                    if !wants || !self.insts[&id].view.contains_key(t) {
                        return Err(format!(
                            "{name}: event {topic} sent to {}, which does not subscribe to it",
                            short(t)
                        ));
                    }
                }
                self.report.events_emitted += 1;
                self.log(format!("{name} emit {topic} to {} peers", targets.len()));
            }
            Err(EmitError::Backpressure(peers)) => {
                self.report.emits_backpressured += 1;
                self.log(format!(
                    "{name} emit {topic}: back-pressure from {}",
                    peers.len()
                ));
            }
            Err(e) => return Err(format!("{name}: emit {topic} failed: {e}")),
        }
        self.touched.insert(id);
        self.drain(id, None)?;
        Ok(())
    }

    /// An emitter delivery to instance `id`'s application.
    pub(crate) fn emitted(&mut self, id: InstId, d: Delivery) -> Result<(), String> {
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        let slot = inst.slot;
        match d {
            Delivery::Event {
                subs,
                from,
                seq,
                topic,
                retained,
                flow,
                ..
            } => {
                let mine = &self.em.subs[slot];
                let ok = !subs.is_empty()
                    && subs.iter().all(|s| {
                        mine.iter().any(|(sid, p, wants_retained, _)| {
                            sid == s && p.matches(&topic) && (!retained || *wants_retained)
                        })
                    })
                    // Our own events need no consumption report.
                    && flow
                        == (from.is_some()
                            && !retained
                            && subs.iter().any(|s| mine.iter().any(|m| m.0 == *s && m.3)));
                if !ok {
                    return Err(format!(
                        "{name}: event {topic} (retained {retained}) for subscriptions {subs:?}, \
                         the slot subscribes {mine:?}"
                    ));
                }
                if let Some(p) = from {
                    if !inst.view.contains_key(&p) {
                        return Err(format!(
                            "{name}: event from {} which has not entered",
                            short(&p)
                        ));
                    }
                    let last = self.em.last_seq.insert((id, p), seq).unwrap_or(0);
                    if seq <= last {
                        return Err(format!(
                            "{name}: event {topic} from {} with seq {seq} after {last}: out of order",
                            short(&p)
                        ));
                    }
                    if flow {
                        self.em.to_consume.push((id, p));
                    }
                }
                self.report.events_delivered += 1;
                self.report.retained_delivered += u64::from(retained);
                Ok(())
            }
            Delivery::Credit { .. } => Ok(()),
            other => Err(format!("{name}: unknown emitter delivery {other:?}")),
        }
    }

    /// At the end of the quiet phase: every running instance knows every other one's
    /// subscriptions (as they are now).
    pub(crate) fn emitter_converged(&self) -> Result<(), String> {
        for a in self.insts.values() {
            for b in self.insts.values() {
                if a.uuid == b.uuid {
                    continue;
                }
                let own = b.driver_ref().events_ref().own();
                let known = a.driver_ref().events_ref().peer_subs(b.uuid);
                if known != Some(&own) {
                    return Err(format!(
                        "{} does not know {}'s subscriptions {own:?}: {known:?}",
                        a.name, b.name
                    ));
                }
            }
        }
        Ok(())
    }
}
