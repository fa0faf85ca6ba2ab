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
use std::sync::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;
use zmesh_zre::Event;

/// Shared between the node (producer) and [`crate::Events`] (the single consumer).
#[derive(Debug)]
pub(crate) struct EventQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pending events per peer.
    per_peer: HashMap<Uuid, VecDeque<Event>>,
    /// Peers with pending events, in round-robin order.
    ring: VecDeque<Uuid>,
    /// Total pending events (excluding `last`).
    len: usize,
    /// STOP, delivered once everything else has been.
    last: Option<Event>,
    /// No more events will come.
    closed: bool,
}

impl EventQueue {
    /// A queue holding about `capacity` events (at least 1).
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event; returns `false` if it was dropped by the fairness rule (or after close).
    pub(crate) fn push(&self, event: Event) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        if let Event::Stop { .. } = event {
            inner.last = Some(event);
            drop(inner);
            self.notify.notify_one();
            return true;
        }
        let Some(peer) = event.peer() else {
            return false; // only STOP has no peer, and it was handled above
        };
        let essential = matches!(event, Event::Enter { .. } | Event::Exit { .. });
        let held = inner.per_peer.get(&peer).map_or(0, VecDeque::len);
        if !essential && inner.len >= self.capacity {
            let active = inner.ring.len() + usize::from(held == 0);
            let fair_share = (self.capacity / active.max(1)).max(1);
            if held >= fair_share {
                return false;
            }
        }
        if held == 0 {
            inner.ring.push_back(peer);
        }
        inner.per_peer.entry(peer).or_default().push_back(event);
        inner.len += 1;
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Ends the stream: the consumer gets what is queued (STOP last), then `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Next event if one is ready. `Err(())` means the stream has ended.
    pub(crate) fn try_pop(&self) -> Result<Option<Event>, ()> {
        let mut inner = self.lock();
        if let Some(peer) = inner.ring.pop_front() {
            let Some(queue) = inner.per_peer.get_mut(&peer) else {
                return Ok(None);
            };
            let event = queue.pop_front();
            if queue.is_empty() {
                inner.per_peer.remove(&peer);
            } else {
                inner.ring.push_back(peer);
            }
            inner.len -= 1;
            return Ok(event);
        }
        if let Some(stop) = inner.last.take() {
            return Ok(Some(stop));
        }
        if inner.closed {
            Err(())
        } else {
            Ok(None)
        }
    }

    /// Waits for the next event; `None` once the stream has ended. Single consumer.
    pub(crate) async fn pop(&self) -> Option<Event> {
        loop {
            match self.try_pop() {
                Ok(Some(event)) => return Some(event),
                Err(()) => return None,
                // `notify_one` stores a permit when nobody waits, so no wake-up is lost.
                Ok(None) => self.notify.notified().await,
            }
        }
    }

    /// Events currently queued.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn whisper(peer: Uuid, i: u32) -> Event {
        Event::Whisper {
            peer,
            name: "p".into(),
            content: vec![Bytes::from(i.to_string())],
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
}
