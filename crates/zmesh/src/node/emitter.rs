//! The distributed event emitter on a [`Node`]: the async face of [`zmesh_core::events`].
//!
//! * [`Node::emit`] (and [`Node::emit_retained`], [`Node::emit_wait`]) sends an event to every
//!   peer with a matching subscription, straight from this node (no broker, no re-broadcast),
//!   and to this node's own matching subscriptions.
//! * [`Node::on`] / [`Node::on_with`] subscribe to a pattern (`*` one segment, `**` any
//!   number; nanomitter's catch-all `*` is `**`, NATS's `a.>` is `a.*.**`) and return an [`On`]
//!   stream; dropping it unsubscribes (`off`). [`Node::once`] waits for one event.
//!
//! **A slow subscriber is handled explicitly, never silently** ([`Overflow`]):
//!
//! * `DropOldest(n)` (the default, n = 1,024): the stream holds `n` events; when the application
//!   falls behind, the oldest are dropped and counted ([`On::dropped`],
//!   [`NodeStats::emitter_dropped`](super::NodeStats::emitter_dropped)). The publisher never
//!   waits.
//! * `BackPressure`: the publisher is held back. This node grants each publisher a credit
//!   window (the builder's `emitter_window`, default 1,024 events); an event counts as
//!   consumed once every back-pressured stream it went to has handed it to the application, and
//!   credit flows back as they are consumed. A publisher whose subscriber has no credit left
//!   gets [`Error::Backpressure`] from [`Node::emit`], and [`Node::emit_wait`] waits until the
//!   credit comes (or that subscriber leaves).
//!
//! Order: events of one publisher arrive in emit order. Retained values: a subscription made
//! with `retained: true` gets, from every publisher that keeps one (`emit_retained`), the last
//! value of each matching topic.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;
use zmesh_core::events::{self, EmitError, SubId};
use zmesh_core::pattern::Pattern;

use super::shared::Shared;
use super::Node;
use crate::error::Error;

/// Events a drop-oldest stream holds by default.
pub const DEFAULT_ON_CAPACITY: usize = 1024;

/// What a subscription does when its application falls behind (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Hold this many events; drop the oldest beyond, counted.
    DropOldest(usize),
    /// Hold the publishers back (credit-based flow control).
    BackPressure,
}

impl Default for Overflow {
    fn default() -> Overflow {
        Overflow::DropOldest(DEFAULT_ON_CAPACITY)
    }
}

/// How to subscribe ([`Node::on_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnOptions {
    /// What happens when the application falls behind.
    pub overflow: Overflow,
    /// Also receive the retained value of matching topics from publishers that keep one.
    pub retained: bool,
}

/// One event, as a subscription receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Emitted {
    /// The publisher (`None`: this node).
    pub publisher: Option<Uuid>,
    /// Topic.
    pub topic: String,
    /// Data.
    pub payload: Bytes,
    /// A retained value (an event emitted before we subscribed).
    pub retained: bool,
}

#[cfg(feature = "json")]
impl Emitted {
    /// The payload as JSON (feature `json`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A bounded queue that drops its oldest entry when full (counted).
#[derive(Debug)]
struct Ring {
    q: Mutex<(VecDeque<Emitted>, bool)>,
    waker: AtomicWaker,
    cap: usize,
    dropped: AtomicU64,
}

/// Counts the back-pressured copies of one event; the last one taken reports it consumed.
#[derive(Debug)]
struct Ticket {
    remaining: AtomicUsize,
    publisher: Uuid,
    node: Weak<Shared>,
}

/// One back-pressured copy of an event; dropping it (taken by the application, or dropped with
/// its stream) counts it.
#[derive(Debug)]
struct Copy(Arc<Ticket>);

impl Drop for Copy {
    fn drop(&mut self) {
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Some(shared) = self.0.node.upgrade() else {
            return;
        };
        let publisher = self.0.publisher;
        // Never take the node lock here: a copy may be dropped while it is held.
        let rt = shared.runtime.clone();
        rt.spawn(async move {
            let _ = shared.command(|d| d.events(|e, io| e.consumed(publisher, 1, io)));
        });
    }
}

#[derive(Debug)]
enum SubTx {
    Ring(Arc<Ring>),
    Flow(mpsc::UnboundedSender<(Emitted, Copy)>),
}

/// The shell's emitter state (behind the node lock).
#[derive(Debug, Default)]
pub(super) struct EmitterShell {
    subs: HashMap<SubId, SubTx>,
    next_id: SubId,
    /// Woken when a subscriber granted credit or left.
    credit: Arc<Notify>,
    dropped: Arc<AtomicU64>,
}

impl EmitterShell {
    /// Events dropped by drop-oldest streams.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A delivery of the emitter layer, to the subscriptions it names.
    pub(super) fn deliver(&mut self, d: events::Delivery, shared: &Arc<Shared>) {
        match d {
            events::Delivery::Event {
                subs,
                from,
                topic,
                payload,
                retained,
                flow,
                ..
            } => {
                let ev = Emitted {
                    publisher: from,
                    topic,
                    payload,
                    retained,
                };
                let flows = subs
                    .iter()
                    .filter(|s| matches!(self.subs.get(s), Some(SubTx::Flow(_))))
                    .count();
                // The layer expects a report when any flow subscription got it; one ticket
                // for all its back-pressured copies (if none exists any more, report at once).
                let ticket = match (flow, from) {
                    (true, Some(p)) => Some(Arc::new(Ticket {
                        remaining: AtomicUsize::new(flows.max(1)),
                        publisher: p,
                        node: Arc::downgrade(shared),
                    })),
                    _ => None,
                };
                let mut handed = 0;
                for s in subs {
                    match self.subs.get(&s) {
                        Some(SubTx::Ring(r)) => r.push(ev.clone(), &self.dropped),
                        Some(SubTx::Flow(tx)) => {
                            if let Some(t) = &ticket {
                                handed += 1;
                                // A closed stream drops the copy (counted, deferred).
                                let _ = tx.send((ev.clone(), Copy(t.clone())));
                            }
                        }
                        None => {}
                    }
                }
                if let (Some(t), 0) = (ticket, handed) {
                    drop(Copy(t));
                }
            }
            events::Delivery::Credit { .. } => self.credit.notify_waiters(),
            _ => {}
        }
    }

    /// The node stopped: every stream ends.
    pub(super) fn clear(&mut self) {
        for (_, tx) in self.subs.drain() {
            if let SubTx::Ring(r) = tx {
                r.close();
            }
        }
        self.credit.notify_waiters();
    }
}

impl Ring {
    fn push(&self, ev: Emitted, total: &AtomicU64) {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        if q.0.len() >= self.cap {
            q.0.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            total.fetch_add(1, Ordering::Relaxed);
        }
        q.0.push_back(ev);
        drop(q);
        self.waker.wake();
    }

    fn close(&self) {
        self.q.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.waker.wake();
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<Emitted>> {
        let take = |s: &Ring| {
            let mut q = s.q.lock().unwrap_or_else(|e| e.into_inner());
            match q.0.pop_front() {
                Some(ev) => Some(Some(ev)),
                None if q.1 => Some(None),
                None => None,
            }
        };
        if let Some(r) = take(self) {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        match take(self) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

#[derive(Debug)]
enum Rx {
    Ring(Arc<Ring>),
    Flow(mpsc::UnboundedReceiver<(Emitted, Copy)>),
}

/// The events of one subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct On {
    rx: Rx,
    node: Weak<Shared>,
    id: SubId,
}

impl On {
    /// The next event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Emitted> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Events this stream dropped because the application fell behind (drop-oldest only).
    pub fn dropped(&self) -> u64 {
        match &self.rx {
            Rx::Ring(r) => r.dropped.load(Ordering::Relaxed),
            Rx::Flow(_) => 0,
        }
    }
}

impl Stream for On {
    type Item = Emitted;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Emitted>> {
        match &mut self.rx {
            Rx::Ring(r) => r.poll(cx),
            // The copy is dropped here, outside any lock: the event counts as consumed.
            Rx::Flow(rx) => rx.poll_recv(cx).map(|o| o.map(|(ev, _copy)| ev)),
        }
    }
}

impl Drop for On {
    fn drop(&mut self) {
        if let Some(shared) = self.node.upgrade() {
            let id = self.id;
            let _ = shared.command_state(|state| {
                state.emitter.subs.remove(&id);
                state.driver.events(|e, io| e.unsubscribe(id, io));
            });
        }
    }
}

fn emit_error(e: EmitError) -> Error {
    match e {
        EmitError::Name(n) => Error::InvalidName(n),
        EmitError::Backpressure(peers) => Error::Backpressure(peers),
        other => Error::Emit(other),
    }
}

impl Node {
    fn emit_inner(&self, topic: &str, payload: Bytes, retain: bool) -> Result<usize, Error> {
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.events(|e, io| e.emit(topic, payload, retain, io)))?;
        r.map(|peers| peers.len()).map_err(emit_error)
    }

    /// Emits an event to every subscriber; returns how many peers it went to (this node's own
    /// subscriptions get it too). Fails with [`Error::Backpressure`] (nothing sent) if a
    /// back-pressured subscriber has no credit left.
    pub fn emit(&self, topic: &str, payload: impl Into<Bytes>) -> Result<usize, Error> {
        self.emit_inner(topic, payload.into(), false)
    }

    /// Like [`Node::emit`], and keeps the value as the topic's retained value, for subscribers
    /// that come later and ask for it.
    pub fn emit_retained(&self, topic: &str, payload: impl Into<Bytes>) -> Result<usize, Error> {
        self.emit_inner(topic, payload.into(), true)
    }

    /// Like [`Node::emit`], but waits while a subscriber holds it back (back-pressure).
    pub async fn emit_wait(&self, topic: &str, payload: impl Into<Bytes>) -> Result<usize, Error> {
        let payload = payload.into();
        let credit = self.inner.shared.lock().emitter.credit.clone();
        loop {
            let notified = credit.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.emit_inner(topic, payload.clone(), false) {
                Err(Error::Backpressure(_)) => notified.await,
                other => return other,
            }
        }
    }

    /// Emits `value` as JSON (feature `json`).
    #[cfg(feature = "json")]
    pub fn emit_json<T: serde::Serialize>(&self, topic: &str, value: &T) -> Result<usize, Error> {
        let payload = serde_json::to_vec(value).map_err(|e| Error::InvalidArgument {
            what: "payload",
            why: e.to_string(),
        })?;
        self.emit(topic, payload)
    }

    /// Subscribes to `pattern` (drop-oldest, 1,024 events, no retained values).
    pub fn on(&self, pattern: &str) -> Result<On, Error> {
        self.on_with(pattern, OnOptions::default())
    }

    /// Subscribes to `pattern` with explicit options.
    pub fn on_with(&self, pattern: &str, options: OnOptions) -> Result<On, Error> {
        let pattern = Pattern::parse(pattern)?;
        let shared = &self.inner.shared;
        let (tx, rx, flow) = match options.overflow {
            Overflow::DropOldest(cap) => {
                let ring = Arc::new(Ring {
                    q: Mutex::new((VecDeque::new(), false)),
                    waker: AtomicWaker::new(),
                    cap: cap.max(1),
                    dropped: AtomicU64::new(0),
                });
                (SubTx::Ring(ring.clone()), Rx::Ring(ring), false)
            }
            Overflow::BackPressure => {
                let (tx, rx) = mpsc::unbounded_channel();
                (SubTx::Flow(tx), Rx::Flow(rx), true)
            }
        };
        let (r, _) = shared.command_state(|state| {
            let id = state.emitter.next_id;
            state.emitter.next_id += 1;
            // Registered before the layer runs: retained values may be delivered at once.
            state.emitter.subs.insert(id, tx);
            let r = state
                .driver
                .events(|e, io| e.subscribe(id, pattern, options.retained, flow, io));
            if r.is_err() {
                state.emitter.subs.remove(&id);
            }
            r.map(|()| id)
        })?;
        let id = r.map_err(|e| Error::InvalidArgument {
            what: "subscription",
            why: e.to_string(),
        })?;
        Ok(On {
            rx,
            node: Arc::downgrade(shared),
            id,
        })
    }

    /// Waits for one event matching `pattern`, then unsubscribes.
    pub async fn once(&self, pattern: &str) -> Result<Emitted, Error> {
        let mut on = self.on(pattern)?;
        on.recv().await.ok_or(Error::Stopped)
    }

    /// The peers an event on `topic` would go to now (their subscriptions are known here).
    pub fn subscribers(&self, topic: &str) -> Vec<Uuid> {
        self.inner
            .shared
            .lock()
            .driver
            .events_ref()
            .subscribers(topic)
    }
}
