//! Routing on a [`Node`]: requests and ticks to **any** peer matching a [`Filter`], to **all**
//! of them, or to a group's members; the node's **options** and the peers' (changeable at run
//! time, seen by every peer within one trip); **peer events** (joined, left, options changed).
//! The async face of [`zmesh_core::routing`] and [`zmesh_core::control`].
//!
//! * [`Node::request_any`] goes to the candidate with the fewest of our requests outstanding,
//!   round robin among equals (deterministic, not random); only peers that run zmesh and
//!   advertised a handler for the event are candidates, so a plain Zyre/Pyre/zyre.js peer is
//!   never picked; with none, it fails at once with `NoResponders(NoMatch)`.
//! * [`Node::request_all`] / [`Node::request_group`] return an [`AllReplies`] stream of
//!   `(peer, outcome)` that always ends: all answered, [`AllRequest::max_wait`] (default: the
//!   request timeout), [`AllRequest::stall`], [`AllRequest::max_answers`]; a peer that leaves
//!   yields `PeerLeft` at once. [`AllReplies::end`] tells which. Dropping it cancels what is
//!   pending.
//! * [`Node::tick_any`], [`Node::tick_all`], [`Node::tick_to`] (any [`Target`]).
//! * [`Node::set_option`] / [`Node::remove_option`] change this node's options;
//!   [`Node::peer_options`], [`Node::peers_matching`], [`Node::responders`] read the directory.
//! * [`Node::peer_events`]: a stream of [`PeerEvent`]s with the contract of group streams
//!   (bounded by the event capacity; overflow dropped and counted in `dropped_events`).
//!
//! Delivery contract: gather items travel on a per-gather channel holding at most one item per
//! peer asked, never through the lossy event queue.

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use zmesh_core::control;
use zmesh_core::driver::Routed;
use zmesh_core::filter::Filter;
use zmesh_core::reqrep::{self, GatherEnd, GatherId, GatherSpec, HandlerKind};
use zmesh_core::routing::Target;

use super::requests::ReplyFuture;
use super::shared::{Shared, Stats};
use super::Node;
use crate::error::Error;
use crate::{NoResponders, RequestError};

/// Options: key to value.
pub type Options = BTreeMap<String, String>;

/// A peer event, as Zeronode users know them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A zmesh peer told us its state: it is routable.
    Joined {
        /// The peer.
        peer: Uuid,
        /// Its options.
        options: Options,
    },
    /// A routable peer changed its options.
    OptionsChanged {
        /// The peer.
        peer: Uuid,
        /// Its options now.
        options: Options,
    },
    /// A routable peer left.
    Left {
        /// The peer.
        peer: Uuid,
    },
}

enum GatherMsg {
    Item(Uuid, Result<Bytes, RequestError>),
    End(GatherEnd, Vec<Uuid>),
}

/// The shell's routing state (behind the node lock).
#[derive(Default)]
pub(super) struct RoutingShell {
    gathers: HashMap<GatherId, mpsc::UnboundedSender<GatherMsg>>,
    peer_subs: Vec<mpsc::Sender<PeerEvent>>,
}

impl RoutingShell {
    /// A peer event from the control layer, to every subscriber.
    pub(super) fn control(&mut self, d: control::Delivery, stats: &Stats) {
        let event = match d {
            control::Delivery::PeerJoined { peer, options } => PeerEvent::Joined { peer, options },
            control::Delivery::OptionsChanged { peer, options } => {
                PeerEvent::OptionsChanged { peer, options }
            }
            control::Delivery::PeerLeft { peer } => PeerEvent::Left { peer },
            _ => return,
        };
        self.peer_subs
            .retain(|tx| match tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.dropped_events.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// A gather delivery of the request layer.
    pub(super) fn gather(&mut self, d: reqrep::Delivery<super::requests::Waiter>) {
        match d {
            reqrep::Delivery::Gathered {
                gather,
                peer,
                result,
                ..
            } => {
                if let Some(tx) = self.gathers.get(&gather) {
                    let _ = tx.send(GatherMsg::Item(peer, result));
                }
            }
            reqrep::Delivery::GatherEnded {
                gather,
                reason,
                unanswered,
            } => {
                if let Some(tx) = self.gathers.remove(&gather) {
                    let _ = tx.send(GatherMsg::End(reason, unanswered));
                }
            }
            _ => {}
        }
    }

    /// The node stopped or crashed: every stream ends.
    pub(super) fn clear(&mut self) {
        self.gathers.clear();
        self.peer_subs.clear();
    }
}

/// A request to any matching peer, being prepared: set options, then `.await` it.
#[must_use = "a request is sent when it is awaited"]
#[derive(Debug)]
pub struct AnyRequest {
    node: Node,
    filter: Filter,
    routed: Routed,
}

impl AnyRequest {
    /// How long to wait for the reply (default: the node's request timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.routed.timeout = Some(timeout);
        self
    }

    /// Sends it now; [`ReplyFuture::peer`] tells which peer was chosen.
    pub fn send(self) -> ReplyFuture {
        self.into_future()
    }
}

impl IntoFuture for AnyRequest {
    type Output = Result<Bytes, RequestError>;
    type IntoFuture = ReplyFuture;

    fn into_future(self) -> ReplyFuture {
        let (tx, rx) = oneshot::channel();
        let shared = self.node.inner.shared.clone();
        let sent = shared.command(|d| d.request_any(Instant::now(), tx, &self.filter, self.routed));
        let (id, peer, immediate) = match sent {
            Ok((Ok((id, peer)), _)) => (Some(id), peer, None),
            Ok((Err(e), _)) => (None, None, Some(RequestError::InvalidName(e))),
            Err(_) => (None, None, Some(RequestError::Stopped)),
        };
        ReplyFuture::new(Arc::downgrade(&shared), id, rx, immediate, peer)
    }
}

/// A request to every matching peer, being prepared: set its limits, then [`AllRequest::send`].
#[must_use = "a request is sent by send()"]
#[derive(Debug)]
pub struct AllRequest {
    node: Node,
    filter: Filter,
    spec: GatherSpec,
}

impl AllRequest {
    /// The longest the whole gather lasts, and each request's timeout (default: the node's
    /// request timeout).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.spec.max_wait = Some(d);
        self
    }

    /// End when this long passed since the last outcome (measured from the first one).
    pub fn stall(mut self, d: Duration) -> Self {
        self.spec.stall = Some(d);
        self
    }

    /// End after this many answers (replies and handler errors).
    pub fn max_answers(mut self, n: usize) -> Self {
        self.spec.max_answers = Some(n);
        self
    }

    /// Sends one request to every matching peer that serves the event; the outcomes come on
    /// the returned stream.
    pub fn send(self) -> AllReplies {
        let shared = self.node.inner.shared.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let sent = shared.command_state(|state| {
            let r = state
                .driver
                .request_all(Instant::now(), &self.filter, self.spec);
            if let Ok((g, _)) = &r {
                state.routing.gathers.insert(*g, tx.clone());
            }
            r
        });
        let mut replies = AllReplies {
            shared: Arc::downgrade(&shared),
            gather: None,
            peers: Vec::new(),
            rx,
            end: None,
            unanswered: Vec::new(),
        };
        match sent {
            Ok((Ok((g, parts)), _)) => {
                replies.gather = Some(g);
                replies.peers = parts.into_iter().map(|(p, _)| p).collect();
            }
            Ok((Err(e), _)) => {
                let _ = tx.send(GatherMsg::Item(
                    Uuid::nil(),
                    Err(RequestError::InvalidName(e)),
                ));
                let _ = tx.send(GatherMsg::End(GatherEnd::NoResponders, Vec::new()));
            }
            Err(_) => {
                let _ = tx.send(GatherMsg::End(GatherEnd::Stopped, Vec::new()));
            }
        }
        replies
    }
}

/// The outcomes of a request to all: `(peer, outcome)` as they arrive, then the end
/// ([`AllReplies::end`]). Dropping it before the end cancels the requests still pending.
#[derive(Debug)]
pub struct AllReplies {
    shared: Weak<Shared>,
    gather: Option<GatherId>,
    peers: Vec<Uuid>,
    rx: mpsc::UnboundedReceiver<GatherMsg>,
    end: Option<GatherEnd>,
    unanswered: Vec<Uuid>,
}

impl std::fmt::Debug for GatherMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatherMsg::Item(p, r) => write!(f, "Item({p}, {r:?})"),
            GatherMsg::End(e, u) => write!(f, "End({e:?}, {u:?})"),
        }
    }
}

impl AllReplies {
    /// The peers asked (the candidates when it was sent).
    pub fn peers(&self) -> &[Uuid] {
        &self.peers
    }

    /// Why it ended, once the stream has returned `None` (`Stopped` if the node went away).
    pub fn end(&self) -> Option<GatherEnd> {
        self.end
    }

    /// The peers still pending when it ended (their requests were withdrawn).
    pub fn unanswered(&self) -> &[Uuid] {
        &self.unanswered
    }

    /// The next outcome; `None` at the end.
    pub async fn recv(&mut self) -> Option<(Uuid, Result<Bytes, RequestError>)> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for AllReplies {
    type Item = (Uuid, Result<Bytes, RequestError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(GatherMsg::Item(p, r))) => Poll::Ready(Some((p, r))),
            Poll::Ready(Some(GatherMsg::End(e, u))) => {
                self.end = Some(e);
                self.unanswered = u;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.end = Some(GatherEnd::Stopped);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for AllReplies {
    fn drop(&mut self) {
        if self.end.is_some() {
            return;
        }
        if let (Some(g), Some(shared)) = (self.gather, self.shared.upgrade()) {
            let _ = shared.command_state(|state| {
                state.routing.gathers.remove(&g);
                state.driver.reqrep(|rr, io| rr.cancel_gather(g, io));
            });
        }
    }
}

/// The node's peer events ([`Node::peer_events`]).
#[derive(Debug)]
pub struct PeerEvents {
    rx: mpsc::Receiver<PeerEvent>,
}

impl PeerEvents {
    /// The next peer event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        self.rx.recv().await
    }
}

impl Stream for PeerEvents {
    type Item = PeerEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.rx.poll_recv(cx)
    }
}

fn option_error(e: control::OptionError) -> Error {
    Error::InvalidArgument {
        what: "option",
        why: e.to_string(),
    }
}

impl Node {
    /// Prepares a request to **any** peer that matches `filter` and serves `event`; `.await` it.
    ///
    /// ```no_run
    /// # async fn demo(node: zmesh::Node) {
    /// let filter = "role=sensor,zone~^eu-".parse().unwrap();
    /// match node.request_any(filter, "sensor.read", "temp").await {
    ///     Ok(reply) => println!("{reply:?}"),
    ///     Err(e) => eprintln!("no reading: {e}"),
    /// }
    /// # }
    /// ```
    pub fn request_any(
        &self,
        filter: Filter,
        event: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> AnyRequest {
        AnyRequest {
            node: self.clone(),
            filter,
            routed: Routed {
                event: event.into(),
                payload: payload.into(),
                timeout: None,
            },
        }
    }

    /// Prepares a request to **all** peers that match `filter` and serve `event`; call
    /// [`AllRequest::send`] for the stream of their outcomes.
    pub fn request_all(
        &self,
        filter: Filter,
        event: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> AllRequest {
        AllRequest {
            node: self.clone(),
            filter,
            spec: GatherSpec {
                peers: Vec::new(),
                event: event.into(),
                payload: payload.into(),
                max_wait: None,
                stall: None,
                max_answers: None,
            },
        }
    }

    /// [`Node::request_all`] to the members of `group` that serve `event`.
    pub fn request_group(
        &self,
        group: &str,
        event: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> AllRequest {
        self.request_all(Filter::group(group), event, payload)
    }

    /// Sends a tick to **any** matching peer with a tick handler for `event` (rotating);
    /// returns the peer.
    pub fn tick_any(
        &self,
        filter: &Filter,
        event: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Uuid, Error> {
        let payload = payload.into();
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.tick_any(filter, event, payload))?;
        r.map_err(Error::from)
    }

    /// Sends a tick to **all** matching peers with a tick handler for `event`; returns them.
    pub fn tick_all(
        &self,
        filter: &Filter,
        event: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Vec<Uuid>, Error> {
        let payload = payload.into();
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.tick_all(filter, event, payload))?;
        r.map_err(Error::from)
    }

    /// Sends a tick to any [`Target`]; returns the peers it went to.
    pub fn tick_to(
        &self,
        target: &Target,
        event: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Vec<Uuid>, Error> {
        let peer =
            match target {
                Target::Any(f) => return self.tick_any(f, event, payload).map(|p| vec![p]),
                Target::All(f) => return self.tick_all(f, event, payload),
                Target::Peer(p) => *p,
                Target::Name(n) => *self.peers_named(n).first().ok_or(Error::Request(
                    RequestError::NoResponders(NoResponders::UnknownPeer),
                ))?,
                _ => {
                    return Err(Error::Request(RequestError::NoResponders(
                        NoResponders::NoMatch,
                    )))
                }
            };
        self.tick(peer, event, payload)?;
        Ok(vec![peer])
    }

    /// Sets one of this node's options; every zmesh peer sees it within one trip.
    pub fn set_option(&self, key: &str, value: &str) -> Result<(), Error> {
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.control(|c, io| c.set_option(key, value, io)))?;
        r.map_err(option_error)
    }

    /// Removes one of this node's options; false if it was not set.
    pub fn remove_option(&self, key: &str) -> Result<bool, Error> {
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.control(|c, io| c.remove_option(key, io)))?;
        Ok(r)
    }

    /// This node's options.
    pub fn options(&self) -> Options {
        self.inner
            .shared
            .lock()
            .driver
            .control_ref()
            .options()
            .clone()
    }

    /// A peer's options (`None` until it joined: its first state arrived; never for a plain
    /// ZRE peer).
    pub fn peer_options(&self, peer: Uuid) -> Option<Options> {
        let state = self.inner.shared.lock();
        state.driver.control_ref().peer(peer)?.options().cloned()
    }

    /// The peers (plain ZRE peers included: their HELLO headers are matched) that match
    /// `filter`, in UUID order.
    pub fn peers_matching(&self, filter: &Filter) -> Vec<Uuid> {
        let state = self.inner.shared.lock();
        state
            .driver
            .control_ref()
            .peers()
            .filter(|(_, r)| filter.matches(*r))
            .map(|(u, _)| u)
            .collect()
    }

    /// The peers a request for `event` to `any:filter` / `all:filter` would consider.
    pub fn responders(&self, filter: &Filter, event: &str) -> Vec<Uuid> {
        let state = self.inner.shared.lock();
        state.driver.candidates(filter, event, HandlerKind::Request)
    }

    /// The peers a tick for `event` to `any:filter` / `all:filter` would go to.
    pub fn tick_responders(&self, filter: &Filter, event: &str) -> Vec<Uuid> {
        let state = self.inner.shared.lock();
        state.driver.candidates(filter, event, HandlerKind::Tick)
    }

    /// A stream of peer events (joined, options changed, left).
    pub fn peer_events(&self) -> Result<PeerEvents, Error> {
        let mut state = self.inner.shared.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let (tx, rx) = mpsc::channel(state.event_capacity);
        state.routing.peer_subs.push(tx);
        Ok(PeerEvents { rx })
    }
}
