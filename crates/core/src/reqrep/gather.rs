//! Scatter/gather: one request to many peers, their outcomes as they come, and an end that is
//! always reached (`request_all`; NATS "request many", ADR-40).
//!
//! [`ReqRep::gather`] sends one request per peer (each an ordinary request of this layer, with
//! the gather's maximum wait as its timeout, counted in the same limits) and delivers:
//!
//! * one [`Delivery::Gathered`] per peer whose request ended — a reply, a handler error,
//!   `NoResponders`, `Overloaded`, `PeerLeft` (the peer left: an outcome at once, never a hang);
//! * then exactly one [`Delivery::GatherEnded`] with the [`GatherEnd`] reason that came first:
//!   every peer has an outcome (`AllDone`), the maximum wait passed (`MaxWait`), `stall` passed
//!   since the last outcome with some still pending (`Stall`; the stall timer starts at the
//!   first outcome, so a slow first answer is bounded by the maximum wait only), `max_answers`
//!   answers arrived (`MaxAnswers`; an *answer* is a reply or a handler error), the application
//!   cancelled (`Cancelled`), or the node stopped (`Stopped`). Peers still pending then are
//!   listed in `unanswered`, their requests are withdrawn (CANCEL sent, except at a stop) and
//!   yield no item. A gather of no peers ends at once with `NoResponders`.
//!
//! Time: outcomes arrive through [`ReqRep`]'s inputs, some of which carry no instant (an
//! answer is handled inside `handle(input, now, ..)`, which records `now`); the stall timer is
//! measured from the latest instant the layer was given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::state::Waiting;
use super::{
    Delivery, GatherEnd, GatherId, GatherSpec, ReqRep, RequestError, RequestId, RequestSpec,
};
use crate::layer::Io;
use crate::pattern::{self, NameError};

/// One gather in progress.
#[derive(Debug)]
struct Gather {
    /// Parts still pending: request id to peer.
    parts: BTreeMap<RequestId, Uuid>,
    answers: usize,
    max_answers: Option<usize>,
    deadline: Instant,
    stall: Option<Duration>,
    stall_at: Option<Instant>,
    /// Parts are still being sent (an immediate outcome must not end it as `AllDone`).
    opening: bool,
}

/// The gathers of a layer and their timers.
#[derive(Debug, Default)]
pub(super) struct Gathers {
    ops: HashMap<GatherId, Gather>,
    /// Max-wait and stall instants; stale entries are skipped when they come due.
    deadlines: BTreeSet<(Instant, GatherId)>,
    /// The latest instant the layer was given (see the module docs).
    pub(super) clock: Option<Instant>,
}

impl Gathers {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|d| d.0)
    }
}

impl<W> ReqRep<W> {
    /// Sends `spec.event` to every peer of `spec.peers` and gathers the outcomes (module docs).
    /// Returns the gather's id and each peer's request id (in UUID order, duplicates removed).
    /// Fails only for an invalid event name.
    pub fn gather(
        &mut self,
        now: Instant,
        spec: GatherSpec,
        io: &mut impl Io<Delivery<W>>,
    ) -> Result<(GatherId, Vec<(Uuid, RequestId)>), NameError> {
        pattern::validate_name(&spec.event)?;
        self.gathers.clock = Some(now);
        let g = self.fresh_id();
        let max_wait = spec
            .max_wait
            .unwrap_or(self.config.default_timeout)
            .min(Duration::from_millis(u32::MAX.into()));
        let deadline = now + max_wait;
        self.gathers.ops.insert(
            g,
            Gather {
                parts: BTreeMap::new(),
                answers: 0,
                max_answers: spec.max_answers,
                deadline,
                stall: spec.stall,
                stall_at: None,
                opening: true,
            },
        );
        self.gathers.deadlines.insert((deadline, g));
        self.stats.gathers += 1;
        let mut peers = spec.peers;
        peers.sort_unstable();
        peers.dedup();
        let none = peers.is_empty();
        let mut ids = Vec::with_capacity(peers.len());
        for peer in peers {
            if !self.gathers.ops.contains_key(&g) {
                break; // ended early (max answers)
            }
            let part = RequestSpec {
                peer,
                event: spec.event.clone(),
                payload: spec.payload.clone(),
                timeout: Some(max_wait),
            };
            let id = self.send_request(now, Waiting::Part(g), part, io);
            ids.push((peer, id));
            if self.pending.contains_key(&id) {
                if let Some(op) = self.gathers.ops.get_mut(&g) {
                    op.parts.insert(id, peer);
                }
            }
        }
        if let Some(op) = self.gathers.ops.get_mut(&g) {
            op.opening = false;
            if op.parts.is_empty() {
                let reason = if none {
                    GatherEnd::NoResponders
                } else {
                    GatherEnd::AllDone
                };
                self.end_gather(g, reason, true, io);
            }
        }
        Ok((g, ids))
    }

    /// Ends a gather now (`Cancelled`), withdrawing its pending requests. Unknown (ended) ids
    /// are ignored.
    pub fn cancel_gather(&mut self, gather: GatherId, io: &mut impl Io<Delivery<W>>) {
        self.end_gather(gather, GatherEnd::Cancelled, true, io);
    }

    /// Gathers in progress.
    pub fn gathers_open(&self) -> usize {
        self.gathers.ops.len()
    }

    /// One part of gather `g` ended.
    pub(super) fn part_done(
        &mut self,
        g: GatherId,
        id: RequestId,
        peer: Uuid,
        result: Result<Bytes, RequestError>,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(op) = self.gathers.ops.get_mut(&g) else {
            return;
        };
        op.parts.remove(&id);
        if matches!(result, Ok(_) | Err(RequestError::Handler { .. })) {
            op.answers += 1;
        }
        io.deliver(Delivery::Gathered {
            gather: g,
            id,
            peer,
            result,
        });
        let reason = if op.max_answers.is_some_and(|m| op.answers >= m) {
            Some(GatherEnd::MaxAnswers)
        } else if op.parts.is_empty() && !op.opening {
            Some(GatherEnd::AllDone)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.end_gather(g, reason, true, io);
            return;
        }
        if let (Some(stall), Some(now)) = (op.stall, self.gathers.clock) {
            if let Some(old) = op.stall_at.take() {
                self.gathers.deadlines.remove(&(old, g));
            }
            let at = now + stall;
            op.stall_at = Some(at);
            self.gathers.deadlines.insert((at, g));
        }
    }

    fn end_gather(
        &mut self,
        g: GatherId,
        reason: GatherEnd,
        tell: bool,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(op) = self.gathers.ops.remove(&g) else {
            return;
        };
        self.gathers.deadlines.remove(&(op.deadline, g));
        if let Some(at) = op.stall_at {
            self.gathers.deadlines.remove(&(at, g));
        }
        let mut unanswered = Vec::with_capacity(op.parts.len());
        for (id, peer) in op.parts {
            if tell {
                self.withdraw(id, io);
            } else {
                self.take_pending(id);
            }
            unanswered.push(peer);
        }
        io.deliver(Delivery::GatherEnded {
            gather: g,
            reason,
            unanswered,
        });
    }

    /// Ends the gathers whose maximum wait or stall instant has come.
    pub(super) fn gathers_timeout(&mut self, now: Instant, io: &mut impl Io<Delivery<W>>) {
        self.gathers.clock = Some(now);
        while let Some(&(at, g)) = self.gathers.deadlines.first() {
            if at > now {
                break;
            }
            self.gathers.deadlines.pop_first();
            let Some(op) = self.gathers.ops.get(&g) else {
                continue;
            };
            let reason = if op.deadline <= now {
                GatherEnd::MaxWait
            } else if op.stall_at.is_some_and(|s| s <= now) {
                GatherEnd::Stall
            } else {
                continue;
            };
            self.end_gather(g, reason, true, io);
        }
    }

    /// Ends every gather with `Stopped`; nothing is sent.
    pub(super) fn gathers_stop(&mut self, io: &mut impl Io<Delivery<W>>) {
        let mut ids: Vec<GatherId> = self.gathers.ops.keys().copied().collect();
        ids.sort_unstable();
        for g in ids {
            self.end_gather(g, GatherEnd::Stopped, false, io);
        }
    }
}
