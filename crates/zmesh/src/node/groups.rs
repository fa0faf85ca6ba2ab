//! Per-group event streams: [`Node::group_events`] hands out a [`GroupEvents`] stream of one
//! group's JOIN, LEAVE and SHOUT events, beside the node's main [`Events`](super::Events) stream
//! (which still gets them too).
//!
//! Contract: like the main stream, a group stream never makes the node wait. It holds up to the
//! node's event capacity; when it is full, further events for it are dropped and counted in
//! [`NodeStats::dropped_events`](super::NodeStats::dropped_events). It ends when the node stops;
//! dropping it unsubscribes.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use super::{check_str, Node};
use crate::error::Error;
use crate::event::Event;

/// One subscription: the group and where its events go.
pub(super) type GroupSub = (String, mpsc::Sender<Event>);

/// Events of one group (JOIN, LEAVE, SHOUT), in order.
#[derive(Debug)]
pub struct GroupEvents {
    rx: mpsc::Receiver<Event>,
}

impl GroupEvents {
    /// The next event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for GroupEvents {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Copies `event` to every subscription of its group; returns how many copies were dropped
/// (full streams). Subscriptions whose stream is gone are removed.
pub(super) fn fan_out(subs: &mut Vec<GroupSub>, event: &Event) -> u64 {
    let Some(group) = event.group() else {
        return 0;
    };
    let mut dropped = 0;
    subs.retain(|(g, tx)| {
        if g != group {
            return !tx.is_closed();
        }
        match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
    dropped
}

impl Node {
    /// A stream of one group's JOIN, LEAVE and SHOUT events (we need not have joined it: JOIN
    /// and LEAVE of peers are reported either way; SHOUTs arrive only once we joined).
    pub fn group_events(&self, group: &str) -> Result<GroupEvents, Error> {
        check_str("group", group)?;
        let mut state = self.inner.shared.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let (tx, rx) = mpsc::channel(state.event_capacity);
        state.group_subs.push((group.to_owned(), tx));
        Ok(GroupEvents { rx })
    }
}
