//! Receiving: the node's inboxes, and the batch that carries what they hold into the driver. The
//! node task runs it, and so does the application's [`Events`](super::Events) stream itself when it
//! waits with nothing queued (the *inline receive*).
//!
//! # Why the application receives too
//!
//! Without it, every message crosses one task hop more than on the bare transport: the inbox wakes
//! the node task, which runs the driver and queues the event, which wakes the application's task.
//! On a current-thread runtime the second wake costs a scheduler turn (and a poll of the driver's
//! sockets) before the application runs; on a multi-thread one, often a thread wake-up. A round
//! trip pays it on both sides. With the inline receive, an application waiting on `Events` reads
//! the inbox itself, runs the very same batch ([`drain`]) and answers before the node task's turn.
//!
//! # Who receives, and why nothing is lost or reordered
//!
//! - The inboxes' consumer waker is a [`Fan`]: input wakes the application (if it waits on
//!   `Events`) and the node task. The node task is **always** woken, so an application that stops
//!   reading, or drops its stream, never delays PINGs, HELLOs or liveness: the node task drains as
//!   it did before. The application is woken first, so on a current-thread runtime it runs first.
//! - Whoever holds the [`Receivers`] lock drains; a batch is read and handed to the driver under
//!   that one lock (the node task polls the inbox and drains inside the same lock, never between
//!   two), so messages of one connection reach the driver in order whoever reads them. The
//!   application never blocks on the lock (`try_lock`): when the node task is at it, the
//!   application waits for the queue as before. Lock order: `Receivers`, then the state.
//! - The application reads with the inbox's `try_*` calls, which register no waker: the fan
//!   stays the inboxes' consumer waker. A batch that stopped at [`INBOX_BATCH`] with more ready
//!   wakes the node task to go on.
//! - Events reach the application through the same fair queue either way (the inline receive only
//!   moves who fills it), so the queue's rules — and [`crate::events`]'s fairness — hold as before.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use tracing::debug;
use zmesh_zmtp::{Frames, Inbox, InboxEvent, Received};

use super::shared::{app_event, Shared, State};
use super::INBOX_BATCH;

/// The node's inboxes, behind one lock shared by the node task and the inline receive.
#[derive(Default)]
pub(super) struct Receivers {
    /// The TCP inbox (re-bound when the interface changes).
    pub(super) tcp: Option<Inbox>,
    /// The Unix-socket inbox of the same-host fast path (`samehost.rs`), bound at start.
    pub(super) ipc: Option<Inbox>,
    /// A frame buffer reused from one message to the next.
    frames: Frames,
}

impl Receivers {
    /// The inbox `ipc` names.
    pub(super) fn get(&mut self, ipc: bool) -> &mut Option<Inbox> {
        if ipc {
            &mut self.ipc
        } else {
            &mut self.tcp
        }
    }
}

/// The inboxes' consumer waker: wakes the application waiting on `Events` (if any), then the node
/// task. Each registration is good for one wake.
#[derive(Default)]
pub(super) struct Fan {
    app: AtomicWaker,
    node: AtomicWaker,
}

impl Wake for Fan {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.app.wake();
        self.node.wake();
    }
}

/// What the node task's poll of one inbox found.
pub(super) enum Polled {
    /// A batch was carried into the driver.
    Drained,
    /// The inbox is closed.
    Closed,
}

/// The receiving half of [`Shared`]: the inboxes and the fan.
pub(super) struct Receive {
    receivers: Mutex<Receivers>,
    fan: Arc<Fan>,
    /// `fan` as a waker, built once (the inboxes compare it with `will_wake` on every poll).
    fan_waker: Waker,
}

impl Default for Receive {
    fn default() -> Receive {
        let fan = Arc::new(Fan::default());
        Receive {
            receivers: Mutex::new(Receivers::default()),
            fan_waker: Waker::from(fan.clone()),
            fan,
        }
    }
}

impl Receive {
    /// The inboxes, for the node task (it may wait for the lock; the application never does).
    pub(super) fn lock(&self) -> MutexGuard<'_, Receivers> {
        self.receivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node task's poll of inbox `ipc`: registers the task with the fan, and if the inbox has
    /// input, drains a batch of it into the driver (the first event and the rest under one lock).
    pub(super) fn poll_node(
        &self,
        shared: &Arc<Shared>,
        ipc: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Polled> {
        self.fan.node.register(cx.waker());
        let mut rx = self.lock();
        let Some(inbox) = rx.get(ipc).as_mut() else {
            return Poll::Pending;
        };
        let mut fan_cx = Context::from_waker(&self.fan_waker);
        match inbox.poll_recv(&mut fan_cx) {
            Poll::Ready(Some(first)) => {
                drain(shared, &mut rx, ipc, Some(first), false);
                Poll::Ready(Polled::Drained)
            }
            Poll::Ready(None) => {
                *rx.get(ipc) = None;
                Poll::Ready(Polled::Closed)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The application's side (module docs): registers `cx` with the fan, then, unless the node
    /// task holds the inboxes, drains what they have ready into the driver (and so into the
    /// event queue).
    pub(super) fn inline(&self, shared: &Arc<Shared>, cx: &Context<'_>) {
        self.fan.app.register(cx.waker());
        let Ok(mut rx) = self.receivers.try_lock() else {
            return;
        };
        for ipc in [false, true] {
            if rx.get(ipc).is_none() {
                continue;
            }
            let taken = drain(shared, &mut rx, ipc, None, true);
            if taken > 0 {
                shared.stats.inline_receives.fetch_add(1, Ordering::Relaxed);
            }
            if taken == INBOX_BATCH {
                // Stopped at the batch limit: the node task goes on (the fan is not woken again
                // for what is already ready).
                self.fan.node.wake();
            }
        }
    }
}

/// Carries `first` (if given), then what inbox `ipc` has ready — up to [`INBOX_BATCH`] messages
/// in all, read with the inbox's `try_*` calls into one reused frame buffer — into the driver,
/// under one state lock and one flush. Returns how many inbox events it took (`INBOX_BATCH`:
/// cut at the limit, more may be ready). `inline`: called by the application, which must not
/// touch a stopped node.
pub(super) fn drain(
    shared: &Arc<Shared>,
    rx: &mut Receivers,
    ipc: bool,
    first: Option<InboxEvent>,
    inline: bool,
) -> usize {
    let now = Instant::now();
    let mut state = shared.lock();
    if inline && state.stopped {
        return 0;
    }
    let mut taken = 0;
    if let Some(first) = first {
        on_event(shared, &mut state, rx, now, ipc, first);
        taken = 1;
    }
    // The common message (a short ZRE frame and one content frame) without a `Bytes` for the ZRE
    // frame; not in secure mode, whose messages come decrypted the ordinary way.
    let plain = shared.security.is_none();
    let Receivers {
        tcp,
        ipc: unix,
        frames,
    } = rx;
    while taken < INBOX_BATCH {
        let Some(inbox) = (if ipc { unix.as_mut() } else { tcp.as_mut() }) else {
            break;
        };
        if plain {
            let stats = &shared.stats;
            let State {
                driver,
                pending_events,
                group_subs,
                ..
            } = &mut *state;
            let took = inbox.try_recv_short_pair(|identity, first, body| {
                driver.handle_message_parts_with(now, identity, first, body, None, |e| {
                    app_event(pending_events, group_subs, stats, e)
                })
            });
            if took.is_some() {
                taken += 1;
                continue;
            }
        }
        match inbox.try_recv_into(frames) {
            Some(Received::Message(identity)) => {
                let key = peer_key(shared, inbox, &identity);
                let message = std::mem::take(frames);
                on_message(shared, &mut state, now, key, &identity, message);
            }
            Some(Received::Event(event)) => on_connection_event(shared, *event),
            None => break,
        }
        taken += 1;
    }
    shared.flush(&mut state, None);
    taken
}

/// One event of inbox `ipc`: a message into the driver, anything else logged and counted.
fn on_event(
    shared: &Arc<Shared>,
    state: &mut State,
    rx: &mut Receivers,
    now: Instant,
    ipc: bool,
    event: InboxEvent,
) {
    match event {
        InboxEvent::Message { identity, frames } => {
            let key = rx
                .get(ipc)
                .as_ref()
                .and_then(|inbox| peer_key(shared, inbox, &identity));
            on_message(shared, state, now, key, &identity, frames)
        }
        other => on_connection_event(shared, other),
    }
}

/// Secure mode: the key the inbox authenticated for this message's connection.
fn peer_key(shared: &Shared, inbox: &Inbox, identity: &[u8]) -> Option<[u8; 32]> {
    shared.security.as_ref()?;
    inbox.peer_key(identity).map(|k| *k.as_bytes())
}

/// One message from an inbox. Application data goes straight to the events of this batch
/// (handed to the queue at the flush that ends the batch); the rest waits for the flush.
fn on_message(
    shared: &Shared,
    state: &mut State,
    now: Instant,
    key: Option<[u8; 32]>,
    identity: &[u8],
    frames: Frames,
) {
    let State {
        driver,
        pending_events,
        group_subs,
        ..
    } = state;
    let stats = &shared.stats;
    driver.handle_message_with(now, identity, frames, key, |event| {
        app_event(pending_events, group_subs, stats, event)
    });
}

/// An inbox event other than a message: logged and counted.
fn on_connection_event(shared: &Shared, event: InboxEvent) {
    match event {
        InboxEvent::Message { .. } => {}
        InboxEvent::Accepted { peer, peer_key, .. } => {
            debug!(%peer, key = ?peer_key, "peer connected to inbox")
        }
        InboxEvent::HandshakeFailed { peer, reason } => {
            shared
                .stats
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, %reason, "inbox handshake failed");
        }
        InboxEvent::Disconnected { peer, reason, .. } => {
            debug!(%peer, %reason, "peer disconnected from inbox")
        }
    }
}
