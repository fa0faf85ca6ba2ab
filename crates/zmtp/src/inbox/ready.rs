//! The ready queue: which established connections were woken, and the per-connection waker that
//! puts them there.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// Which established connections have something to do, and who to wake when one does.
///
/// Every connection is polled with its own waker ([`ConnWaker`]); when the socket becomes readable
/// or writable, or a heartbeat timer fires, that waker puts the connection's slot on the queue and
/// wakes whichever task is waiting in [`Inbox::recv`]. So the consumer only ever polls connections
/// that were woken (an idle mesh of hundreds of peers costs nothing per message), in the order they
/// were woken.
#[derive(Default)]
pub(super) struct ReadyQueue {
    inner: Mutex<ReadyInner>,
}

#[derive(Default)]
pub(super) struct ReadyInner {
    pub(super) queue: VecDeque<usize>,
    /// `queued[slot]`: the slot is in `queue` (a slot is queued at most once).
    pub(super) queued: Vec<bool>,
    /// The task waiting in `recv`.
    pub(super) waker: Option<Waker>,
}

impl ReadyInner {
    pub(super) fn push(&mut self, slot: usize) {
        if self.queued.len() <= slot {
            self.queued.resize(slot + 1, false);
        }
        if !self.queued[slot] {
            self.queued[slot] = true;
            self.queue.push_back(slot);
        }
    }
}

impl ReadyQueue {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ReadyInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark `slot` ready and wake the consumer.
    fn wake(&self, slot: usize) {
        let waker = {
            let mut r = self.lock();
            r.push(slot);
            r.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The waker a connection is polled with: readiness of its socket or timers marks its slot ready.
pub(super) struct ConnWaker {
    pub(super) slot: usize,
    pub(super) ready: Arc<ReadyQueue>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.ready.wake(self.slot);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.wake(self.slot);
    }
}
