//! The broker's side: relaying calls to workers and answers back, the relay table, draining.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::state::{encode, Services, Timer};
use super::wire::{self, ErrorBody, ErrorClass};
use super::{CallKey, Delivery};
use crate::envelope::{self, Envelope};
use crate::layer::Io;

/// One relayed call: who waits for it (the peer it came from) and where it went.
#[derive(Debug, Clone)]
pub(super) struct Relay {
    client: Uuid,
    worker: Uuid,
    deadline: Instant,
}

/// The rendezvous score of `worker` for call `key`: every broker computes the same, so the same
/// call reaches the same worker through any broker (and is de-duplicated there).
pub fn rendezvous(key: CallKey, worker: Uuid) -> u64 {
    let (c, w) = (key.caller.as_u64_pair(), worker.as_u64_pair());
    mix(mix(mix(key.id ^ c.0) ^ c.1) ^ mix(w.0 ^ mix(w.1)))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<W> Services<W> {
    /// Calls a broker is relaying now.
    pub fn relaying(&self) -> usize {
        self.relays.len()
    }

    /// Starts draining (a broker stopping politely): the offer is withdrawn, new calls are
    /// answered "draining", relayed ones finish. See [`Services::is_drained`].
    pub fn drain(&mut self, io: &mut impl Io<Delivery<W>>) {
        if !self.draining {
            self.draining = true;
            self.offer_changed(io);
        }
    }

    /// True once a draining broker holds no call.
    pub fn is_drained(&self) -> bool {
        self.relays.is_empty()
    }

    fn refuse(
        &mut self,
        to: Uuid,
        id: u64,
        class: ErrorClass,
        why: &str,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let mut env = Envelope::new(envelope::Layer::SERVICES, wire::ERROR, self.fresh_id());
        env.corr = Some(id);
        env.payload = ErrorBody {
            class,
            code: 0,
            message: why.into(),
        }
        .encode();
        io.send(to, encode(&env));
    }

    /// A CALL at a broker: relay it to the worker the rendezvous hash names.
    pub(super) fn relay_call(
        &mut self,
        from: Uuid,
        mut env: Envelope,
        service: String,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        if self.draining {
            return self.refuse(from, env.id, ErrorClass::Draining, "broker draining", io);
        }
        if env.origin.is_some() {
            // Brokers do not relay to brokers: only a spoofing caller would name an origin.
            return self.malformed(from, "CALL naming an origin at a broker");
        }
        let key = CallKey {
            caller: from,
            id: env.id,
        };
        if !self.relays.contains_key(&key) && self.relays.len() >= self.config.max_relays {
            self.stats.refused += 1;
            return self.refuse(
                from,
                env.id,
                ErrorClass::Overloaded,
                "broker relay table full",
                io,
            );
        }
        // Workers only (never another broker: no loops), never the caller itself. A retry that
        // finds its previous relay here unanswered goes to another worker when there is one
        // (the first may be dead or stuck); through another broker it meets the same worker.
        let previous = self.relays.get(&key).map(|r| r.worker);
        let mut ranked: Vec<(u64, Uuid)> = self
            .peers
            .iter()
            .filter(|(u, r)| {
                !r.offer.broker
                    && **u != from
                    && **u != key.caller
                    && r.offer.services.binary_search(&service).is_ok()
            })
            .map(|(u, _)| (rendezvous(key, *u), *u))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let worker = ranked
            .iter()
            .find(|(_, u)| Some(*u) != previous)
            .or(ranked.first())
            .map(|(_, u)| *u);
        let Some(worker) = worker else {
            return self.refuse(
                from,
                env.id,
                ErrorClass::NoService,
                "no worker behind this broker",
                io,
            );
        };
        let ttl = Duration::from_millis(u64::from(
            env.ttl_ms
                .unwrap_or(self.config.default_timeout.as_millis() as u32),
        ));
        let deadline = now + ttl;
        env.origin = Some(key.caller);
        env.dest = None;
        self.stats.relayed += 1;
        io.send(worker, encode(&env));
        self.relays.insert(
            key,
            Relay {
                client: from,
                worker,
                deadline,
            },
        );
        self.arm(deadline, Timer::Relay(key));
    }

    /// A REPLY or ERROR: to relay (it names its caller in `dest`), or for one of our calls.
    pub(super) fn on_answer(
        &mut self,
        from: Uuid,
        mut env: Envelope,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(dest) = env.dest else {
            return self.caller_answer(from, env, now, io);
        };
        if !self.config.broker {
            return self.malformed(from, "answer to relay at a node that is not a broker");
        }
        let Some(id) = env.corr else {
            return self.malformed(from, "answer without corr");
        };
        let key = CallKey { caller: dest, id };
        // Only the worker the call was relayed to answers it (anyone else could inject answers
        // into other callers' calls); a late answer (the relay ended with its deadline) is
        // dropped: its caller stopped waiting too.
        let client = match self.relays.get(&key) {
            Some(r) if r.worker == from => r.client,
            _ => {
                self.stats.late_replies += 1;
                return;
            }
        };
        self.relays.remove(&key);
        if !self.peers.contains_key(&client) {
            return;
        }
        env.dest = None;
        env.origin = Some(from);
        io.send(client, encode(&env));
    }

    /// A relayed call's deadline passed: forget it.
    pub(super) fn relay_timer(&mut self, key: CallKey, at: Instant) {
        if self.relays.get(&key).is_some_and(|r| r.deadline == at) {
            self.relays.remove(&key);
        }
    }

    /// `peer` left: calls relayed to it are answered "worker lost" (the caller retries at once);
    /// calls relayed for it are forgotten.
    pub(super) fn relays_peer_gone(&mut self, peer: Uuid, io: &mut impl Io<Delivery<W>>) {
        let mut lost: Vec<(CallKey, Uuid)> = Vec::new();
        self.relays.retain(|k, r| {
            if r.worker == peer {
                lost.push((*k, r.client));
                false
            } else {
                r.client != peer
            }
        });
        lost.sort_unstable();
        for (key, client) in lost {
            self.stats.relays_lost += 1;
            if self.peers.contains_key(&client) {
                self.refuse(client, key.id, ErrorClass::WorkerLost, "worker lost", io);
            }
        }
    }
}
