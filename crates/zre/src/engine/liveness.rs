//! Liveness: when a peer is pinged, reported EVASIVE or SILENT, and expired.
//!
//! # Liveness policy
//!
//! C Zyre ignores beacons for liveness and pings a peer only after `evasive_timeout` (5 s) of TCP
//! silence, emitting EVASIVE first — so on an idle network every healthy peer flaps EVASIVE every
//! 5 s. Pyre does the opposite: beacons refresh a peer completely, so a broken TCP path under live
//! beacons is never noticed. We take the middle road:
//!
//! * **Signs of life.** Every accepted TCP message (any type, including PING and PING-OK) is
//!   one. For zmesh peers, so are beacons — but only until a PING goes unanswered (below).
//!   EVASIVE and EXIT count from the last sign of life, so a crashed peer (beacons and TCP stop
//!   together) is reported EXIT the expired timeout after the crash, within a beacon interval.
//! * **Proactive ping.** When there was no sign of life from a ready peer for `ping_interval`
//!   (default 2.5 s, half the 5 s evasive timeout) we send one PING. A healthy peer — Zyre,
//!   Pyre or zmesh — answers PING-OK well before `evasive_timeout`, so it never becomes EVASIVE.
//!   The PING also refreshes *their* view of us, so only one side of a pair needs to ping: the
//!   node with the smaller UUID pings at `ping_interval`, the other waits until halfway between
//!   `ping_interval` and `evasive_timeout` (3.75 s) and is normally refreshed first.
//!   `ping_interval = 0` disables this and everything below about beacons (exact Zyre behaviour).
//! * **Beacons as a sign of life, for zmesh peers only.** For a ready peer whose HELLO carries
//!   `X-ZMESH` (it runs this same policy, so it does not report us EVASIVE while it hears our
//!   beacons), a beacon from it at the endpoint we talk to counts as a sign of life, as Zyre's
//!   pre-2017 `zyre_peer_refresh` (and Pyre) does. While its beacons keep arriving, such a peer is
//!   pinged only after `expired_timeout / 3` (10 s; the deferring side 1.25 s later) of TCP
//!   silence instead of 2.5 s: an idle 100-node host then carries ~10 instead of ~36 ZRE messages
//!   per node per second. Beacons heard while a PING is unanswered are not recorded (the TCP path
//!   is in question), so a **broken TCP path under live beacons** still ends in EXIT: PING at
//!   ~11 s of TCP silence, EVASIVE `evasive_timeout` after the last beacon before that PING
//!   (~16 s), SILENT a reap interval later, EXIT `expired_timeout` after that beacon (~41 s).
//!   When its beacons stop (crash, UDP blocked, gossip-only discovery) the fast rhythm above
//!   applies, counted from the last beacon. Foreign peers (Zyre, zyre.js, Pyre) keep the fast
//!   rhythm and TCP-only liveness: Zyre and zyre.js would otherwise report us EVASIVE every 5 s.
//! * **Timer grid.** [`Engine::poll_timeout`] rounds deadlines up to a grid of a quarter of the
//!   reap interval (250 ms by default), so a node with a hundred peers wakes a few times per second
//!   instead of once per peer deadline; timers fire at most one grid step late.
//! * **EVASIVE** when there was no sign of life for `evasive_timeout`; from then on we PING every
//!   reap interval (`min(evasive, expired, 1 s)`, as Zyre). **SILENT** once it has been evasive
//!   for one more reap interval (the PING sent when it became evasive went unanswered), **EXIT**
//!   at `expired_timeout` (default 30 s) after the last sign of life. *Difference*: EVASIVE and
//!   SILENT are edge-triggered — emitted once per episode, not on every reap tick as in C. Any
//!   message from the peer ends the episode.
//! * **Lost-HELLO recovery.** If a peer we created (and sent our HELLO to) is still not ready an
//!   `evasive_timeout` later, yet keeps sending non-HELLO messages, it is talking to us on an older
//!   session: it still holds us as ready, and our new HELLO was lost (a reset or partition right
//!   after we re-created it). Zyre stays split like that until the peer expires us, then until we
//!   expire it — about two expiry periods. We forget the record silently instead; the next sighting
//!   re-creates it with a fresh HELLO, which the peer takes as a restart and answers with its own
//!   HELLO ([`Stats::stale_sessions`]). The grace period keeps messages still in flight from the
//!   old session (the normal case right after a re-creation) from triggering it.
//! * Peers that are not ready (no HELLO yet) or purged are neither pinged nor reported; they are
//!   removed silently when `expired_timeout` has passed since their creation (C also emits EXIT for
//!   them, without ENTER ever having been emitted; we emit EXIT only for peers that entered).
//!
//! [`Engine::poll_timeout`] returns, in O(1), a lower bound of the earliest deadline over all peers
//! (no fixed tick; exact after each [`Engine::handle_timeout`], never later than a real deadline),
//! or `None` when there are no peers or the engine is stopped.
//!
//! [`Stats::stale_sessions`]: super::Stats::stale_sessions

use std::time::{Duration, Instant};

use tracing::debug;
use uuid::Uuid;

use super::{Config, Engine, Event, MAX_REAP_INTERVAL};
use crate::msg::ZreMessage;
use crate::peer::Peer;

/// Deadlines are rounded up to `reap interval / TIMER_GRID_DIVISOR` (see [`Engine::poll_timeout`]).
const TIMER_GRID_DIVISOR: u32 = 4;

/// A zmesh peer whose beacons keep arriving is probed after `expired_timeout / QUIET_PING_DIVISOR`
/// of TCP silence (10 s by default; see the liveness policy).
const QUIET_PING_DIVISOR: u32 = 3;

/// Liveness parameters shared by all peers, derived once from the [`Config`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) evasive: Duration,
    pub(crate) expired: Duration,
    /// Zero = no proactive ping (pure Zyre behaviour).
    pub(crate) ping_interval: Duration,
    pub(crate) reap: Duration,
    /// Deadlines are rounded up to this grid (see `Engine::poll_timeout`).
    pub(crate) grid: Duration,
    /// How long a zmesh peer whose beacons keep arriving may stay TCP-quiet before we probe it
    /// (`max(expired / 3, ping_interval)`; see the liveness policy above).
    pub(crate) quiet_ping: Duration,
}

impl Timing {
    /// The timers of a (validated) configuration: the reap interval is
    /// `min(evasive, expired, MAX_REAP_INTERVAL)`, as in Zyre.
    pub(crate) fn new(config: &Config) -> Timing {
        let reap = config
            .evasive_timeout
            .min(config.expired_timeout)
            .min(MAX_REAP_INTERVAL);
        Timing {
            evasive: config.evasive_timeout,
            expired: config.expired_timeout,
            ping_interval: config.ping_interval,
            reap,
            grid: (reap / TIMER_GRID_DIVISOR).max(Duration::from_millis(1)),
            quiet_ping: (config.expired_timeout / QUIET_PING_DIVISOR).max(config.ping_interval),
        }
    }

    /// When an idle ready peer gets its proactive PING: `ping_interval`, or — for the side of the
    /// pair that defers — halfway between `ping_interval` and the evasive timeout.
    pub(crate) fn ping_after(&self, defers: bool) -> Duration {
        self.ping_interval + self.defer_gap(defers)
    }

    /// When a TCP-quiet zmesh peer whose beacons keep arriving gets its probe PING: `quiet_ping`,
    /// or, for the side that defers, the same gap later as [`Timing::ping_after`] adds.
    pub(crate) fn quiet_ping_after(&self, defers: bool) -> Duration {
        self.quiet_ping + self.defer_gap(defers)
    }

    /// How much later the deferring side of a pair pings: half the way from `ping_interval` to
    /// the evasive timeout (1.25 s by default), so the other side's PING normally arrives first.
    fn defer_gap(&self, defers: bool) -> Duration {
        if defers {
            self.evasive.saturating_sub(self.ping_interval) / 2
        } else {
            Duration::ZERO
        }
    }
}

/// Where a peer stands in the current liveness episode. The episode starts when nothing was
/// heard for the evasive timeout and ends with any message from the peer; each step is reported
/// once per episode (edge-triggered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// A sign of life within the evasive timeout (no episode).
    Alive,
    /// Nothing heard for the evasive timeout: EVASIVE emitted, PINGs every reap interval.
    Evasive,
    /// Evasive for one more reap interval: SILENT emitted too (still pinged until it expires).
    Silent,
}

/// What a timer tick asks the engine to do for one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TickActions {
    pub(crate) expire: bool,
    pub(crate) ping: bool,
    pub(crate) evasive: bool,
    pub(crate) silent: bool,
}

/// The per-peer half of the policy: signs of life, when to ping, when to report.
impl Peer {
    /// Something valid arrived from the peer: it is alive.
    pub(crate) fn refresh(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_sent_at = None;
        self.probe_at = None;
        self.liveness = Liveness::Alive;
    }

    /// True if this peer's beacons count as a sign of life: a ready, connected zmesh peer, with
    /// proactive pinging on (with `ping_interval = 0` the engine behaves exactly like Zyre).
    fn beacon_aware(&self, t: &Timing) -> bool {
        self.zmesh && self.is_ready() && !t.ping_interval.is_zero()
    }

    /// The last sign of life: the last TCP message, or — for a beacon-aware peer — a later
    /// beacon (the engine stops recording beacons while a PING is unanswered, so this value
    /// never moves during an EVASIVE episode).
    pub(crate) fn seen(&self, t: &Timing) -> Instant {
        match self.last_beacon {
            Some(b) if self.beacon_aware(t) => self.last_heard.max(b),
            _ => self.last_heard,
        }
    }

    /// When the next proactive PING is due (if none is outstanding): `ping_after` past the last
    /// sign of life, but for a beacon-aware peer no later than `quiet_ping_after` past its last
    /// TCP message, so a broken TCP path under live beacons is still probed.
    fn ping_due(&self, t: &Timing) -> Option<Instant> {
        if t.ping_interval.is_zero() || self.ping_sent_at.is_some() {
            return None;
        }
        let due = self.seen(t) + t.ping_after(self.defers_ping);
        if self.beacon_aware(t) {
            Some(due.min(self.last_heard + t.quiet_ping_after(self.defers_ping)))
        } else {
            Some(due)
        }
    }

    /// Applies the liveness policy at `now` and reports what the engine must do. Updates the
    /// peer's own state as if the requested PING is sent.
    pub(crate) fn tick(&mut self, now: Instant, t: &Timing) -> TickActions {
        let mut a = TickActions::default();
        let seen = self.seen(t);
        if now >= seen + t.expired {
            a.expire = true;
            return a;
        }
        // Only a ready, connected peer can answer a PING (their PING-OK before HELLO would be
        // dropped), so only those are probed and reported.
        if !self.is_ready() {
            return a;
        }
        let evasive_at = seen + t.evasive;
        if now >= evasive_at {
            if self.liveness == Liveness::Alive {
                self.liveness = Liveness::Evasive;
                a.evasive = true;
                a.ping = true;
            } else if match self.ping_sent_at {
                None => true,
                Some(p) => now >= p + t.reap,
            } {
                a.ping = true;
            }
            if self.liveness == Liveness::Evasive && now >= evasive_at + t.reap {
                self.liveness = Liveness::Silent;
                a.silent = true;
            }
        } else if self.ping_due(t).is_some_and(|due| now >= due) {
            a.ping = true;
        }
        if a.ping {
            self.ping_sent_at = Some(now);
            self.probe_at.get_or_insert(now);
        }
        a
    }

    /// The earliest instant at which [`Peer::tick`] would do something.
    pub(crate) fn next_deadline(&self, t: &Timing) -> Instant {
        let seen = self.seen(t);
        let mut d = seen + t.expired;
        if !self.is_ready() {
            return d;
        }
        let evasive_at = seen + t.evasive;
        match self.liveness {
            Liveness::Alive => {
                d = d.min(evasive_at);
                if let Some(due) = self.ping_due(t) {
                    d = d.min(due);
                }
            }
            Liveness::Evasive | Liveness::Silent => {
                if let Some(p) = self.ping_sent_at {
                    d = d.min(p + t.reap);
                }
                if self.liveness == Liveness::Evasive {
                    d = d.min(evasive_at + t.reap);
                }
            }
        }
        d
    }
}

impl Engine {
    /// Runs the liveness timers (liveness policy, `engine/liveness.rs`). Call when
    /// `now >= poll_timeout()`; calling it earlier is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        // Cheap early return for a wake-up before anything is due.
        if self.next_wake.is_none_or(|w| now < w) {
            return;
        }
        // Tick every peer (each tick touches only its own peer), then act on the few that need
        // something, in UUID order so the outputs are deterministic.
        let timing = self.timing;
        let mut due: Vec<(Uuid, TickActions)> = self
            .peers
            .values_mut()
            .filter_map(|p| {
                let a = p.tick(now, &timing);
                (a != TickActions::default()).then_some((p.uuid, a))
            })
            .collect();
        due.sort_unstable_by_key(|(uuid, _)| *uuid);
        for (uuid, a) in due {
            let Some(peer) = self.peers.get(&uuid) else {
                continue;
            };
            let name = peer.name.clone();
            if a.expire {
                self.stats.expired += 1;
                debug!(peer = %uuid, "peer expired");
                self.remove_peer(uuid);
                continue;
            }
            if a.ping {
                self.stats.pings_sent += 1;
                self.send_to(uuid, &ZreMessage::Ping);
            }
            if a.evasive {
                self.event(Event::Evasive {
                    peer: uuid,
                    name: name.clone(),
                });
            }
            if a.silent {
                self.event(Event::Silent { peer: uuid, name });
            }
        }
        self.next_wake = self.exact_wake();
    }

    /// When the shell should call [`Engine::handle_timeout`] next; `None` if there are no peers or
    /// the engine is stopped.
    ///
    /// O(1): the engine keeps a lower bound of the earliest peer deadline. Events that can only
    /// move a deadline later (a sighting, a removal) leave it alone, so the returned instant may
    /// be earlier than necessary — the wake-up then does nothing but recompute the bound
    /// exactly — but it is never later than a real deadline. The shell calls this after every
    /// input (thousands of beacons per second on an idle 100-node host), so it must not scan
    /// the peer table.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped || self.peers.is_empty() {
            return None;
        }
        let earliest = self.next_wake?;
        debug_assert!(
            self.exact_wake().is_none_or(|exact| earliest <= exact),
            "timer bound {earliest:?} later than a real deadline"
        );
        // Round up to the timer grid (a quarter of the reap interval since the engine started), so
        // a node with many peers wakes a few times per reap interval, not once per peer deadline.
        let grid = self.timing.grid.as_nanos().max(1);
        let since = earliest.saturating_duration_since(self.epoch).as_nanos();
        let ticks = since.div_ceil(grid);
        let at = ticks.saturating_mul(grid);
        Some(self.epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
    }

    /// The exact earliest deadline over all peers (O(peers)).
    pub(super) fn exact_wake(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| p.next_deadline(&self.timing))
            .min()
    }

    /// A peer's deadline may have moved earlier: keep `next_wake` a lower bound.
    pub(super) fn lower_wake(&mut self, due: Instant) {
        self.next_wake = Some(self.next_wake.map_or(due, |w| w.min(due)));
    }
}
