//! The queue of events between the node and the application: bounded, and fair between peers.
//!
//! A plain bounded channel has a flaw that a hostile or merely chatty peer exposes at once: when the
//! application reads slower than one peer sends, that peer fills the queue and every *other* peer's
//! messages are dropped with its own. zmesh instead keeps **one FIFO per peer** and hands events to
//! the application **round-robin across peers**, with these rules:
//!
//! * Events of one peer are delivered in the order they happened. Events of different peers are
//!   interleaved fairly, not in strict arrival order (the network gives no ordering across peers
//!   either).
//! * The queue holds `capacity` events in total. When it is full, a WHISPER/SHOUT/JOIN/LEAVE/
//!   EVASIVE/SILENT event is dropped (and counted) only if its peer already holds at least its fair
//!   share (`capacity / peers with queued events`). So a flooding peer loses its own excess while a
//!   quiet peer's messages still get in — and, thanks to round-robin, get out quickly.
//! * ENTER and EXIT are never dropped (there are at most two per peer session), so the
//!   application's view of who is present stays right even when it falls behind.
//! * STOP is always delivered last; after it the stream ends.
//!
//! The node never waits for the application: pushing never blocks, so a slow application cannot
//! stop the node from answering PINGs (unlike Zyre, whose node thread blocks on a full pipe).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use std::task::{Context, Poll};

use crate::event::Event;
use atomic_waker::AtomicWaker;
use uuid::Uuid;

/// Most events the consumer takes out of the shared queue under one lock (see [`EventQueue::pop_into`]).
pub(crate) const POP_BATCH: usize = 4096;

/// Every this many delivered events, per-peer queues that stayed empty since the previous sweep
/// are freed, so one burst does not pin its memory for the rest of the session. A queue in use
/// keeps its buffer: freeing it each time it drains would make a steady stream re-grow it (and
/// fault its pages in again) over and over.
const SWEEP_EVERY: usize = 1 << 16;

/// A hasher for UUID keys. Version-4 UUIDs are random, so the first 8 of their 16 bytes already
/// are a good hash; SipHash (the `HashMap` default, which guards against chosen keys) costs more
/// than the rest of an event's trip through the queue. A peer choosing colliding UUIDs can only
/// slow down lookups in its own node's queue, and the queue holds at most one entry per peer
/// with pending events.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `Uuid` hashes as its 16 bytes (after a length prefix, which `write_usize` ignores).
        if let Ok(b) = <[u8; 16]>::try_from(bytes) {
            let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = b;
            let lo = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
            let hi = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
            self.0 = self.0.rotate_left(29) ^ lo ^ hi.rotate_left(32);
            return;
        }
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap` keyed by peer UUID with [`UuidHasher`].
pub(crate) type UuidMap<V> = HashMap<Uuid, V, BuildHasherDefault<UuidHasher>>;

/// Shared between the node (producer) and [`crate::Events`] (the single consumer).
#[derive(Debug)]
pub(crate) struct EventQueue {
    inner: Mutex<Inner>,
    /// The single consumer's waker (one registration per wait, not per event).
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pending events per peer. A peer's queue stays here after it was drained, so a steady
    /// stream does not allocate and free a queue per event; it goes with the peer's EXIT, or at
    /// a sweep (see [`SWEEP_EVERY`]) when it stayed unused.
    per_peer: UuidMap<PeerQueue>,
    /// Peers with pending events, in round-robin order.
    ring: VecDeque<Uuid>,
    /// Total pending events (excluding `last`).
    len: usize,
    /// STOP, delivered once everything else has been.
    last: Option<Event>,
    /// No more events will come.
    closed: bool,
    /// Events delivered since the last sweep.
    since_sweep: usize,
}

/// One peer's pending events.
#[derive(Debug, Default)]
struct PeerQueue {
    events: VecDeque<Event>,
    /// An event was queued since the last sweep.
    used: bool,
}

/// ENTER and EXIT are never dropped (module docs).
fn is_essential(event: &Event) -> bool {
    matches!(event, Event::Enter { .. } | Event::Exit { .. })
}

impl Inner {
    /// The peer whose events `events` all are, if [`Inner::append_run`] can queue them: they
    /// fit, so event-by-event pushes would queue every one of them in order (no drop, no STOP)
    /// — the usual case of a stream from one peer that the application keeps up with.
    fn single_run(&self, capacity: usize, events: &VecDeque<Event>) -> Option<Uuid> {
        if self.len + events.len() > capacity {
            return None;
        }
        let peer = events.front()?.peer()?;
        events
            .iter()
            .all(|e| e.peer() == Some(peer))
            .then_some(peer)
    }

    /// Queues all of `events` (see [`Inner::single_run`]) in one go: an empty peer queue swaps
    /// buffers with `events`, a non-empty one takes them with one block copy; nothing is
    /// handled event by event.
    fn append_run(&mut self, peer: Uuid, events: &mut VecDeque<Event>) {
        let queue = self.per_peer.entry(peer).or_default();
        queue.used = true;
        self.len += events.len();
        if queue.events.is_empty() {
            self.ring.push_back(peer);
            std::mem::swap(&mut queue.events, events);
        } else {
            queue.events.append(events);
        }
    }

    /// Queues every event of `events` in order (emptying it), each as [`Inner::push`] would;
    /// returns how many were dropped. A run of one peer's droppable events (a stream of
    /// WHISPERs) finds the peer's queue once instead of once per event.
    fn push_runs(&mut self, capacity: usize, events: &mut VecDeque<Event>) -> usize {
        let mut dropped = 0;
        let mut it = events.drain(..).peekable();
        while let Some(event) = it.next() {
            let peer = match event.peer() {
                Some(peer) if !is_essential(&event) => peer,
                _ => {
                    dropped += usize::from(!self.push(capacity, event));
                    continue;
                }
            };
            let Inner {
                per_peer,
                ring,
                len,
                ..
            } = self;
            let queue = per_peer.entry(peer).or_default();
            queue.used = true;
            let queue = &mut queue.events;
            let mut next = Some(event);
            while let Some(event) = next {
                let held = queue.len();
                if !over_fair_share(*len, capacity, ring.len(), held) {
                    if held == 0 {
                        ring.push_back(peer);
                    }
                    queue.push_back(event);
                    *len += 1;
                } else {
                    dropped += 1;
                }
                next = it.next_if(|e| e.peer() == Some(peer) && !is_essential(e));
            }
        }
        dropped
    }

    /// Queues one event unless the fairness rule drops it (module docs); false when dropped.
    fn push(&mut self, capacity: usize, event: Event) -> bool {
        if let Event::Stop { .. } = event {
            self.last = Some(event);
            return true;
        }
        let Some(peer) = event.peer() else {
            return false; // only STOP has no peer, and it was handled above
        };
        let essential = is_essential(&event);
        let Inner {
            per_peer,
            ring,
            len,
            ..
        } = self;
        let queue = per_peer.entry(peer).or_default();
        queue.used = true;
        let queue = &mut queue.events;
        let held = queue.len();
        if !essential && over_fair_share(*len, capacity, ring.len(), held) {
            return false;
        }
        if held == 0 {
            ring.push_back(peer);
        }
        queue.push_back(event);
        *len += 1;
        true
    }

    /// The next event in round-robin order, if any (STOP not included).
    fn pop(&mut self) -> Option<Event> {
        let peer = self.ring.pop_front()?;
        let queue = &mut self.per_peer.get_mut(&peer)?.events;
        let event = queue.pop_front()?;
        self.len -= 1;
        if !queue.is_empty() {
            self.ring.push_back(peer);
        } else if matches!(event, Event::Exit { .. }) {
            // The session is over; a later ENTER of the same UUID starts a new queue.
            self.per_peer.remove(&peer);
        }
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep();
        }
        Some(event)
    }

    /// With exactly one peer in the ring: moves up to `max` of its events to `out` at once — the
    /// same events in the same order as that many [`Inner::pop`]s. Returns how many.
    fn pop_run(&mut self, out: &mut VecDeque<Event>, max: usize) -> usize {
        let Some(&peer) = self.ring.front() else {
            return 0;
        };
        let Some(queue) = self.per_peer.get_mut(&peer) else {
            self.ring.pop_front();
            return 0;
        };
        let k = max.min(queue.events.len());
        // Whether the run taken ends with an EXIT (it is the last of the session's events).
        let last_was_exit = matches!(
            queue.events.get(k.wrapping_sub(1)),
            Some(Event::Exit { .. })
        );
        if k == queue.events.len() && out.is_empty() {
            // All of it into an empty `out`: swap the buffers instead of moving each event
            // (the peer's queue keeps `out`'s empty allocation for the next events).
            std::mem::swap(&mut queue.events, out);
        } else if k == queue.events.len() {
            // All of it behind what `out` holds: one block copy.
            out.append(&mut queue.events);
        } else {
            out.extend(queue.events.drain(..k));
        }
        let emptied = queue.events.is_empty();
        self.len -= k;
        if emptied {
            self.ring.pop_front();
            if last_was_exit {
                // The session is over; a later ENTER of the same UUID starts a new queue.
                self.per_peer.remove(&peer);
            }
        }
        self.since_sweep += k;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep();
        }
        k
    }

    /// Frees the queues that stayed empty since the last sweep.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        self.per_peer.retain(|_, q| {
            let keep = q.used || !q.events.is_empty();
            q.used = false;
            keep
        });
    }
}

impl EventQueue {
    /// A queue holding about `capacity` events (at least 1).
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(Inner::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event; returns `false` if it was dropped by the fairness rule (or after close).
    #[cfg(test)]
    pub(crate) fn push(&self, event: Event) -> bool {
        let mut one = VecDeque::from([event]);
        self.push_all(&mut one) == 0
    }

    /// Queues every event of `events` in order (emptying it) under one lock, with one wake-up of
    /// the consumer. Returns how many were dropped by the fairness rule (all of them after close).
    pub(crate) fn push_all(&self, events: &mut VecDeque<Event>) -> usize {
        if events.is_empty() {
            return 0;
        }
        let mut inner = self.lock();
        if inner.closed {
            let n = events.len();
            events.clear();
            return n;
        }
        let dropped = if let Some(peer) = inner.single_run(self.capacity, events) {
            inner.append_run(peer, events);
            0
        } else {
            inner.push_runs(self.capacity, events)
        };
        drop(inner);
        self.waker.wake();
        dropped
    }

    /// Ends the stream: the consumer gets what is queued (STOP last), then `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.waker.wake();
    }

    /// Moves up to `max` ready events (in delivery order) to the back of `out`. `Err(())` means
    /// the stream has ended and `out` got nothing; `Ok(0)` that nothing is ready yet.
    pub(crate) fn try_pop_into(&self, out: &mut VecDeque<Event>, max: usize) -> Result<usize, ()> {
        let mut inner = self.lock();
        let mut n = 0;
        while n < max {
            // One peer alone has events (a stream): take a run of them without turning the ring.
            if inner.ring.len() == 1 {
                match inner.pop_run(out, max - n) {
                    0 => break,
                    k => n += k,
                }
                continue;
            }
            match inner.pop() {
                Some(event) => out.push_back(event),
                None => break,
            }
            n += 1;
        }
        if n < max && inner.len == 0 {
            if let Some(stop) = inner.last.take() {
                out.push_back(stop);
                n += 1;
            }
        }
        if n == 0 && inner.closed {
            return Err(());
        }
        Ok(n)
    }

    /// Next event if one is ready. `Err(())` means the stream has ended.
    #[cfg(test)]
    pub(crate) fn try_pop(&self) -> Result<Option<Event>, ()> {
        let mut out = VecDeque::new();
        self.try_pop_into(&mut out, 1)?;
        Ok(out.pop_front())
    }

    /// Moves up to `max` ready events to `out` (`Ready(true)`), or registers the consumer's
    /// waker (`Pending`); `Ready(false)` (nothing moved) once the stream has ended. Single consumer.
    pub(crate) fn poll_pop_into(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Event>,
        max: usize,
    ) -> Poll<bool> {
        for attempt in 0..2 {
            match self.try_pop_into(out, max) {
                Ok(0) => {}
                Ok(_) => return Poll::Ready(true),
                Err(()) => return Poll::Ready(false),
            }
            // Register, then look again: a push between the first look and the registration
            // would otherwise be missed.
            if attempt == 0 {
                self.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }

    /// Waits until at least one event is ready and moves up to `max` of them to `out`; returns
    /// false (and moves nothing) once the stream has ended. Single consumer.
    #[cfg(test)]
    pub(crate) async fn pop_into(&self, out: &mut VecDeque<Event>, max: usize) -> bool {
        std::future::poll_fn(|cx| self.poll_pop_into(cx, out, max)).await
    }

    /// Waits for the next event; `None` once the stream has ended. Single consumer.
    #[cfg(test)]
    pub(crate) async fn pop(&self) -> Option<Event> {
        let mut out = VecDeque::new();
        if self.pop_into(&mut out, 1).await {
            out.pop_front()
        } else {
            None
        }
    }

    /// Events currently queued.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

/// The fairness rule (module docs): with `len` events queued of `capacity`, `ring` peers holding
/// some and this peer holding `held`, its next event is dropped when the queue is full and the
/// peer already holds its fair share of it.
fn over_fair_share(len: usize, capacity: usize, ring: usize, held: usize) -> bool {
    let active = ring + usize::from(held == 0);
    len >= capacity && held >= (capacity / active.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn whisper(peer: Uuid, i: u32) -> Event {
        Event::Whisper {
            peer,
            name: "p".into(),
            content: vec![Bytes::from(i.to_string())].into(),
        }
    }

    fn text(e: &Event) -> String {
        match e {
            Event::Whisper { content, .. } => String::from_utf8_lossy(&content[0]).into_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn one_peer_in_order_until_capacity() {
        let q = EventQueue::new(3);
        let a = Uuid::from_u128(1);
        assert!(q.push(whisper(a, 1)) && q.push(whisper(a, 2)) && q.push(whisper(a, 3)));
        assert!(!q.push(whisper(a, 4)), "over capacity");
        let got: Vec<String> = (0..3)
            .map(|_| text(&q.try_pop().unwrap().unwrap()))
            .collect();
        assert_eq!(got, ["1", "2", "3"]);
        assert_eq!(q.try_pop(), Ok(None));
    }

    #[test]
    fn a_flooder_cannot_crowd_out_a_quiet_peer() {
        let q = EventQueue::new(100);
        let (flooder, quiet) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut dropped = 0;
        for i in 0..1000 {
            if !q.push(whisper(flooder, i)) {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 900);
        // The queue is full, but the quiet peer holds nothing: its messages get in…
        assert!(q.push(whisper(quiet, 7)));
        assert!(q.push(whisper(quiet, 8)));
        // …while the flooder, far above its fair share (100 / 2 peers), is refused.
        assert!(!q.push(whisper(flooder, 5000)));
        // Round robin: the quiet peer's first message comes out second, not after the flooder's 100.
        let first = q.try_pop().unwrap().unwrap();
        let second = q.try_pop().unwrap().unwrap();
        assert!(matches!(first, Event::Whisper { peer, .. } if peer == flooder));
        assert!(matches!(second, Event::Whisper { peer, .. } if peer == quiet));
    }

    #[test]
    fn enter_and_exit_are_never_dropped_and_stop_is_last() {
        let q = EventQueue::new(1);
        let (a, b, me) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(9));
        assert!(q.push(whisper(a, 1)));
        assert!(q.push(Event::Enter {
            peer: b,
            name: "b".into(),
            headers: vec![],
            endpoint: "tcp://x:1".into()
        }));
        assert!(q.push(Event::Stop {
            uuid: me,
            name: "me".into()
        }));
        assert!(q.push(Event::Exit {
            peer: a,
            name: "a".into()
        }));
        q.close();
        assert!(!q.push(whisper(b, 2)), "closed");
        let mut kinds = Vec::new();
        while let Ok(Some(e)) = q.try_pop() {
            kinds.push(match e {
                Event::Whisper { .. } => "whisper",
                Event::Enter { .. } => "enter",
                Event::Exit { .. } => "exit",
                Event::Stop { .. } => "stop",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["whisper", "enter", "exit", "stop"]);
        assert_eq!(q.try_pop(), Err(()));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn drained_queues_stay_while_used_and_go_when_idle_or_exited() {
        let q = EventQueue::new(10);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(q.push(whisper(b, 0)));
        assert!(q.try_pop().unwrap().is_some());
        assert!(q.push(Event::Exit {
            peer: c,
            name: "c".into()
        }));
        assert!(q.try_pop().unwrap().is_some());
        assert!(!q.lock().per_peer.contains_key(&c), "EXIT ends the queue");
        // `a` streams for two sweep periods while `b` stays quiet.
        for i in 0..2 * SWEEP_EVERY {
            assert!(q.push(whisper(a, i as u32)));
            assert_eq!(text(&q.try_pop().unwrap().unwrap()), i.to_string());
        }
        let inner = q.lock();
        assert!(
            inner.per_peer.contains_key(&a),
            "a busy queue keeps its buffer"
        );
        assert!(
            !inner.per_peer.contains_key(&b),
            "an idle empty queue is freed"
        );
    }

    #[test]
    fn uuid_hasher_spreads_random_uuids() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<UuidHasher>::default();
        let hashes: std::collections::HashSet<u64> = (0..1000)
            .map(|_| build.hash_one(Uuid::new_v4()) >> 57)
            .collect();
        // The top 7 bits pick hashbrown's control byte: all 128 values should occur.
        assert!(
            hashes.len() > 100,
            "only {} distinct top bits",
            hashes.len()
        );
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(EventQueue::new(10));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.pop().await });
        tokio::task::yield_now().await;
        q.push(whisper(Uuid::from_u128(1), 42));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(text(&got.unwrap()), "42");
        q.close();
        assert!(q.pop().await.is_none());
    }

    /// The single-peer fast path delivers exactly what per-event pops would, across an EXIT and
    /// a new ENTER of the same UUID, and frees the ended session's queue.
    #[test]
    fn a_single_peer_run_matches_event_by_event_order() {
        let q = EventQueue::new(100);
        let p = Uuid::from_u128(7);
        let name = || "p".to_string();
        let mut pushed = vec![Event::Enter {
            peer: p,
            name: name().into(),
            headers: vec![],
            endpoint: "e".into(),
        }];
        pushed.extend((0..5).map(|i| whisper(p, i)));
        pushed.push(Event::Exit {
            peer: p,
            name: name().into(),
        });
        pushed.push(Event::Enter {
            peer: p,
            name: name().into(),
            headers: vec![],
            endpoint: "e".into(),
        });
        pushed.push(whisper(p, 9));
        for e in &pushed {
            assert!(q.push(e.clone()));
        }
        let mut got = VecDeque::new();
        while let Ok(n) = q.try_pop_into(&mut got, 3) {
            if n == 0 {
                break;
            }
        }
        assert_eq!(Vec::from(got), pushed);
        assert_eq!(q.len(), 0);
        let mut out = VecDeque::new();
        for e in [
            whisper(p, 1),
            Event::Exit {
                peer: p,
                name: name().into(),
            },
        ] {
            q.push(e);
        }
        assert_eq!(q.try_pop_into(&mut out, 10), Ok(2));
        assert!(q.lock().per_peer.is_empty(), "ended session's queue kept");
    }

    /// Batches pushed together (runs of one peer's events share one queue lookup) give exactly
    /// what event-by-event pushes give: the same drops and the same events out, in order, with
    /// the queue full or not, and across the whole-buffer hand-over of a single peer's run.
    #[test]
    fn batched_pushes_match_event_by_event_pushes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        for _ in 0..200 {
            let capacity = rng.gen_range(1..12);
            let (batched, single) = (EventQueue::new(capacity), EventQueue::new(capacity));
            let (mut out_b, mut out_s) = (VecDeque::new(), VecDeque::new());
            for i in 0..rng.gen_range(1..40) {
                let batch: VecDeque<Event> = (0..rng.gen_range(0..20))
                    .map(|k| {
                        let p = Uuid::from_u128(rng.gen_range(1..4));
                        match rng.gen_range(0..10) {
                            0 => Event::Enter {
                                peer: p,
                                name: "p".into(),
                                headers: vec![],
                                endpoint: "e".into(),
                            },
                            1 => Event::Exit {
                                peer: p,
                                name: "p".into(),
                            },
                            _ => whisper(p, i * 100 + k),
                        }
                    })
                    .collect();
                let dropped_single = batch
                    .iter()
                    .filter(|e| !single.lock().push(capacity, (*e).clone()))
                    .count();
                assert_eq!(batched.push_all(&mut batch.clone()), dropped_single);
                let max = rng.gen_range(1..6);
                assert_eq!(
                    batched.try_pop_into(&mut out_b, max),
                    single.try_pop_into(&mut out_s, max)
                );
            }
            while let (Ok(a), Ok(b)) = (
                batched.try_pop_into(&mut out_b, 1000),
                single.try_pop_into(&mut out_s, 1000),
            ) {
                assert_eq!(a, b);
                if a == 0 {
                    break;
                }
            }
            assert_eq!(out_b, out_s);
        }
    }
}
