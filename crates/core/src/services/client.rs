//! The caller's side: calls, tries, retries with backoff, and their exactly-once end.

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::state::{encode, Services, Timer};
use super::wire::{self, ErrorBody, ErrorClass};
use super::{CallError, CallId, CallInfo, CallSpec, Delivery, Via};
use crate::envelope::{self, Envelope};
use crate::layer::Io;

/// One call in progress.
#[derive(Debug)]
pub(super) struct Call<W> {
    waiter: W,
    service: String,
    payload: Bytes,
    started: Instant,
    deadline: Instant,
    per_try: Duration,
    retries_left: u16,
    via: Via,
    /// CALLs sent so far (the next one's retry count).
    tries: u16,
    /// Where the current try waits (`None`: backing off, or waiting for a worker).
    pub(super) at: Option<Uuid>,
    /// Every peer a try went to (a reply from any of them ends the call).
    tried: Vec<Uuid>,
    /// The instant its timer is armed for.
    due: Instant,
    /// Why the last try failed (the outcome if no retry is left).
    last_error: Option<CallError>,
}

impl<W> Services<W> {
    /// Calls `spec.service`: picks a worker (module docs) and sends the first try. Every call
    /// that returns `Ok` ends with exactly one [`Delivery::Done`]; `Err` (invalid name, payload
    /// too large, our in-flight limit) means nothing was sent and nothing will be delivered.
    pub fn call(
        &mut self,
        now: Instant,
        waiter: W,
        spec: CallSpec,
        io: &mut impl Io<Delivery<W>>,
    ) -> Result<CallId, CallError> {
        wire::validate_service(&spec.service)
            .map_err(|_| CallError::InvalidName(spec.service.clone()))?;
        if spec.payload.len() > self.config.max_payload {
            return Err(CallError::PayloadTooLarge);
        }
        if self.calls.len() >= self.config.max_in_flight {
            return Err(CallError::Overloaded("calls in flight on this node"));
        }
        let timeout = spec
            .timeout
            .unwrap_or(self.config.default_timeout)
            .max(Duration::from_millis(1));
        let per_try = spec
            .per_try
            .unwrap_or_else(|| timeout / (u32::from(spec.retries) + 1))
            .clamp(Duration::from_millis(1), timeout);
        let id = self.fresh_id();
        self.stats.calls += 1;
        let deadline = now + timeout;
        self.calls.insert(
            id,
            Call {
                waiter,
                service: spec.service,
                payload: spec.payload,
                started: now,
                deadline,
                per_try,
                retries_left: spec.retries,
                via: spec.via,
                tries: 0,
                at: None,
                tried: Vec::new(),
                due: deadline,
                last_error: None,
            },
        );
        self.try_next(id, now, io);
        Ok(id)
    }

    /// Calls pending on this node.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Our calls whose current try waits at `peer`.
    pub fn pending_to(&self, peer: Uuid) -> usize {
        self.pending_to.get(&peer).copied().unwrap_or(0)
    }

    /// The latest deadline of our calls (`None`: none pending).
    pub fn latest_deadline(&self) -> Option<Instant> {
        self.calls.values().map(|c| c.deadline).max()
    }

    /// Picks a peer for a try of `service`: least outstanding, round robin among equals,
    /// preferring peers not in `avoid` while there are any.
    fn pick(&mut self, service: &str, via: Via, avoid: &[Uuid]) -> Option<Uuid> {
        let cands: Vec<(Uuid, usize, bool)> = self
            .workers(service)
            .filter(|(_, broker)| match via {
                Via::Any => true,
                Via::Direct => !broker,
                Via::Brokers => *broker,
            })
            .map(|(u, _)| (u, self.pending_to(u), avoid.contains(&u)))
            .collect();
        let fresh = cands.iter().any(|c| !c.2);
        let last = self.last_pick;
        let mut best: Option<(usize, bool, Uuid)> = None;
        for (uuid, load, avoided) in cands {
            if fresh && avoided {
                continue;
            }
            let after = last.is_some_and(|l| uuid > l);
            let better = match best {
                None => true,
                Some((bl, ba, _)) => load < bl || (load == bl && after && !ba),
            };
            if better {
                best = Some((load, after, uuid));
            }
        }
        let pick = best.map(|b| b.2);
        if pick.is_some() {
            self.last_pick = pick;
        }
        pick
    }

    /// Sends the next try of call `id`, or backs off again if no worker is there.
    fn try_next(&mut self, id: CallId, now: Instant, io: &mut impl Io<Delivery<W>>) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let (service, via) = (call.service.clone(), call.via);
        // Avoid the previous try's peer (a retry goes elsewhere when it can).
        let avoid: Vec<Uuid> = call.tried.last().copied().into_iter().collect();
        let Some(peer) = self.pick(&service, via, &avoid) else {
            let call = self.calls.get_mut(&id).expect("present");
            if call.retries_left == 0 && call.tries == 0 {
                return self.finish(id, Err(CallError::NoService), None, now, io);
            }
            // Nobody offers it right now: wait (a worker may be restarting) without using up
            // a retry; the deadline bounds the wait (it ends `Timeout` if a try was sent, as
            // that try may have been processed).
            return self.back_off(id, now);
        };
        let call = self.calls.get_mut(&id).expect("present");
        let ttl = call.deadline.saturating_duration_since(now);
        let ttl_ms = ttl.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
        let mut env = Envelope::new(envelope::Layer::SERVICES, wire::CALL, id);
        env.attempt = Some(call.tries);
        env.ttl_ms = Some(ttl_ms);
        env.subject = Some(call.service.clone());
        env.possible_duplicate = call.tries > 0;
        env.payload = call.payload.clone();
        let retry = call.tries > 0;
        call.tries = call.tries.saturating_add(1);
        call.at = Some(peer);
        if !call.tried.contains(&peer) {
            call.tried.push(peer);
        } else {
            // Keep the last peer tried last (the next retry avoids it).
            call.tried.retain(|p| *p != peer);
            call.tried.push(peer);
        }
        // The last try waits for the whole deadline: nothing would come after it.
        call.due = if call.retries_left == 0 {
            call.deadline
        } else {
            (now + call.per_try).min(call.deadline)
        };
        let due = call.due;
        *self.pending_to.entry(peer).or_insert(0) += 1;
        self.stats.tries_sent += 1;
        if retry {
            self.stats.retries += 1;
        }
        io.send(peer, encode(&env));
        self.arm(due, Timer::Call(id));
    }

    /// The current try failed (`last_error` says why): retry after a backoff, or end the call.
    fn retry_or_fail(&mut self, id: CallId, now: Instant, io: &mut impl Io<Delivery<W>>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.retries_left == 0 || now >= call.deadline {
            let err = if now >= call.deadline {
                CallError::Timeout
            } else {
                call.last_error.clone().unwrap_or(CallError::Timeout)
            };
            return self.finish(id, Err(err), None, now, io);
        }
        call.retries_left -= 1;
        self.back_off(id, now);
    }

    /// Arms call `id`'s backoff timer: doubling per try, capped, with ±50 % jitter.
    fn back_off(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let n = u32::from(call.tries.saturating_sub(1)).min(16);
        let base = self
            .config
            .backoff
            .saturating_mul(1 << n)
            .min(self.config.max_backoff);
        let jitter = 0.5 + self.random();
        let call = self.calls.get_mut(&id).expect("present");
        call.due = (now + base.mul_f64(jitter)).min(call.deadline);
        let due = call.due;
        self.arm(due, Timer::Call(id));
    }

    /// Releases the current try's outstanding count.
    fn release(&mut self, id: CallId) {
        let Some(peer) = self.calls.get_mut(&id).and_then(|c| c.at.take()) else {
            return;
        };
        if let Some(n) = self.pending_to.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.pending_to.remove(&peer);
            }
        }
    }

    /// Ends call `id` with `result` (exactly once: the call is removed).
    fn finish(
        &mut self,
        id: CallId,
        result: Result<Bytes, CallError>,
        answered_by: Option<(Uuid, Option<Uuid>)>,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        self.release(id);
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let (worker, broker) = match answered_by {
            Some(w) => (Some(w.0), w.1),
            None => match call.tried.last() {
                Some(p) => {
                    let broker = self.peers.get(p).is_some_and(|r| r.offer.broker);
                    if broker {
                        (None, Some(*p))
                    } else {
                        (Some(*p), None)
                    }
                }
                None => (None, None),
            },
        };
        if result.is_ok() {
            self.stats.replied += 1;
        } else {
            self.stats.failed += 1;
        }
        io.deliver(Delivery::Done {
            waiter: call.waiter,
            id,
            result,
            info: CallInfo {
                tries: call.tries,
                worker,
                broker,
                latency: now.saturating_duration_since(call.started),
            },
        });
    }

    /// A call's timer fired at `at` (ignored unless it is the call's current one).
    pub(super) fn call_timer(
        &mut self,
        id: CallId,
        at: Instant,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.due != at {
            return;
        }
        if now >= call.deadline {
            let err = if call.tries == 0 {
                CallError::NoService
            } else {
                CallError::Timeout
            };
            return self.finish(id, Err(err), None, now, io);
        }
        if call.at.is_some() {
            // The try timed out.
            call.last_error = Some(CallError::Timeout);
            self.release(id);
            self.retry_or_fail(id, now, io);
        } else {
            // The backoff is over.
            self.try_next(id, now, io);
        }
    }

    /// A REPLY or ERROR for one of our calls.
    pub(super) fn caller_answer(
        &mut self,
        from: Uuid,
        env: Envelope,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(id) = env.corr else {
            return self.malformed(from, "answer without corr");
        };
        let Some(call) = self.calls.get(&id) else {
            self.stats.late_replies += 1;
            return;
        };
        if !call.tried.contains(&from) {
            self.stats.late_replies += 1;
            return;
        }
        let current = call.at == Some(from);
        let from_broker = self.peers.get(&from).is_some_and(|r| r.offer.broker);
        let by = if from_broker || env.origin.is_some() {
            (env.origin.unwrap_or(from), Some(from))
        } else {
            (from, None)
        };
        if env.kind == wire::REPLY {
            return self.finish(id, Ok(env.payload), Some(by), now, io);
        }
        let body = match ErrorBody::decode(&env.payload) {
            Ok(b) => b,
            Err(e) => return self.malformed(from, format!("bad ERROR: {e}")),
        };
        let err = match body.class {
            ErrorClass::Handler => {
                let e = CallError::Handler {
                    code: body.code,
                    message: body.message,
                };
                return self.finish(id, Err(e), Some(by), now, io);
            }
            ErrorClass::NoService => CallError::NoService,
            ErrorClass::Overloaded => CallError::Overloaded("worker or broker limits"),
            ErrorClass::WorkerLost | ErrorClass::Draining => CallError::WorkerLost,
        };
        // A refusal from an earlier try's peer says nothing about the current one.
        if current {
            let call = self.calls.get_mut(&id).expect("present");
            call.last_error = Some(err);
            self.release(id);
            self.retry_or_fail(id, now, io);
        }
    }

    /// `peer` left: calls whose current try waits there retry at once (or end `WorkerLost`).
    pub(super) fn calls_peer_gone(
        &mut self,
        peer: Uuid,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let mut ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.at == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                c.last_error = Some(CallError::WorkerLost);
            }
            self.release(id);
            self.retry_or_fail(id, now, io);
        }
    }

    /// Ends every call with `Stopped`.
    pub(super) fn stop_calls(&mut self, now: Instant, io: &mut impl Io<Delivery<W>>) {
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.finish(id, Err(CallError::Stopped), None, now, io);
        }
        self.pending_to.clear();
    }
}
