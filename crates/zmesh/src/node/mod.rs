//! The zmesh node: the async shell around the sans-IO ZRE engine.
//!
//! # Shape
//!
//! ```text
//!            application
//!     Node (handle, Clone) ──────────┐        Events (bounded queue) ◀──┐
//!        │ join/leave/whisper/shout  │                                   │
//!        ▼                           ▼                                   │
//!   ┌──────────── Mutex<State> ─────────────────────────────────────┐   │
//!   │  Engine (zmesh-zre, sans-IO)  ──outputs──▶ Connect/Send/Disconnect │
//!   │  outboxes: uuid → Outbox (DEALER, zmesh-zmtp)   Event ─────────────┘
//!   └───────────────────────────────────────────────────────────────┘
//!        ▲ messages                ▲ sightings          ▲ timers
//!     Inbox (ROUTER)          BeaconSocket (UDP)     node task
//! ```
//!
//! All protocol decisions are made by the sans-IO [`Driver`](zmesh_core::driver::Driver) (the ZRE
//! engine and the layers above it, such as request/reply); this module only moves bytes and time
//! in and out of it. The driver lives behind a `std::sync::Mutex` shared by the node task (which feeds it
//! network input and timer ticks) and the [`Node`] handle (whose calls run the engine directly on the
//! caller's thread, like `quinn` does). A `whisper` therefore costs one lock, one encode and one
//! `try_send` on the peer's outbox — no hop through a command channel. The lock is never held across an
//! `.await`.
//!
//! Receiving is symmetric: an application waiting on [`Events`] with nothing queued reads the
//! inboxes itself and runs the same batch the node task would (`receive.rs`), so a message reaches
//! it without a hop through the node task; the node task is woken by every input all the same, and
//! reads whatever the application does not (an application that stops reading never delays PINGs).
//!
//! # Events and a slow application
//!
//! Events go to a bounded queue ([`NodeBuilder::event_capacity`], default 10,000) that is fair
//! between peers (see [`crate::events`]). The node task never waits for the application: when the
//! queue is full, the newest messages of the peers holding more than their fair share are
//! **dropped** and counted in [`NodeStats::dropped_events`] (a warning is logged); ENTER and EXIT
//! are never dropped. The node keeps answering PINGs, so peers do not see it as evasive because its
//! application is slow — the opposite of Zyre, whose node thread blocks on a full pipe and is
//! eventually expired by everybody — and one flooding peer cannot crowd out the others. An
//! application that cannot afford to miss messages should size the queue for its bursts, or use
//! requests ([`Node::request`]), whose traffic never passes through this queue.
//!
//! # Files
//!
//! `builder.rs` (settings and validation), `shared.rs` (the state behind the lock and the shell's
//! transport and sink for the driver), `task.rs` (the node task: sockets, timers, stop),
//! `receive.rs` (the inboxes and the batch that carries their input into the driver, run by the
//! node task and by a waiting [`Events`] itself: the inline receive),
//! `requests.rs` (request/reply and ticks), `routing.rs` (any/all/group targets, options, peer
//! events), `emitter.rs` (the distributed event emitter), `services.rs` (named services, calls, brokers), `groups.rs` (per-group event streams),
//! `secure.rs` (secure mode: the key pair and allow-list as CURVE settings of the inbox and
//! outboxes).
//!
//! # Interface
//!
//! At start the node picks its interface ([`crate::iface`]). If none is usable yet, `start` still
//! succeeds: the node retries every beacon interval and attaches when one appears, logging the choice.
//! Its inbox binds to the chosen address, and that address (or the advertised endpoint) goes in HELLO.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use zmesh_core::envelope;
use zmesh_zre::Content;

use crate::error::Error;
use crate::event::Event;
use crate::events::{EventQueue, POP_BATCH};
use crate::iface::SelectedInterface;
use shared::Shared;
use zmesh_zmtp::curve::CurvePublicKey;

mod brokers;
mod builder;
mod discovery;
mod emitter;
mod groups;
mod receive;
mod requests;
mod routing;
mod samehost;
mod secure;
mod services;
mod shared;
mod task;

pub use brokers::{broker_uuid, parse_broker, BrokerAddr};
use builder::check_str;
pub use builder::{NodeBuilder, DEFAULT_BEACON_INTERVAL, DEFAULT_EVENT_CAPACITY};
pub use emitter::{Emitted, On, OnOptions, Overflow, DEFAULT_ON_CAPACITY};
pub use groups::GroupEvents;
pub use requests::{
    IncomingRequest, IncomingTick, ReplyFuture, Request, Requests, Ticks, TICK_QUEUE,
};
pub use routing::{AllReplies, AllRequest, AnyRequest, Options, PeerEvent, PeerEvents};
pub use samehost::{HOST_HEADER, IPC_HEADER};
pub use services::{
    Call, CallFailed, CallFuture, IncomingCall, NodeServiceStats, Offered, Reply, ServiceEntry,
};

/// The UDP port ZRE beacons use by default (IANA "ZRE-DISC").
pub const DEFAULT_BEACON_PORT: u16 = 5670;

/// How long a polite stop waits for queued messages (and GOODBYEs) to reach peers.
pub(super) const STOP_LINGER: Duration = Duration::from_millis(500);

/// Most inbox messages handled under one lock acquisition.
pub(super) const INBOX_BATCH: usize = 512;

/// A snapshot of the node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Events dropped because the application's event queue was full.
    pub dropped_events: u64,
    /// Ticks dropped because a tick handler's stream was full.
    pub dropped_ticks: u64,
    /// Discovery input that was not usable: datagrams on the beacon port that were not usable
    /// beacons (garbage, other versions), bad zgossip messages and gossip tuples that are not
    /// `UUID` = `endpoint[|key]`.
    pub bad_beacons: u64,
    /// TCP connections to the inbox that failed the ZMTP handshake (garbage, wrong socket type …).
    pub handshake_failures: u64,
    /// Messages that could not be queued for a peer (its outbox was full or closed).
    pub send_failures: u64,
    /// Connections to peers opened over a Unix socket (same host: the fast path).
    pub ipc_connects: u64,
    /// Connections to peers opened over TCP.
    pub tcp_connects: u64,
    /// Secure mode: CURVE clients the allow-list refused at the inbox.
    pub curve_refused: u64,
    /// Secure mode: sightings of keys the allow-list does not hold (ignored).
    pub unlisted_sightings: u64,
    /// Beacons not sent because the system refused them for a while (a firewall rule, no
    /// buffer space): the node keeps its sockets and tries again at the next interval.
    pub beacon_send_failures: u64,
    /// Inbox batches the application's [`Events`] stream read itself while it waited (the
    /// inline receive: one task hop fewer between the socket and the application); the node
    /// task reads the rest.
    pub inline_receives: u64,
    /// Protocol-level counters from the ZRE engine (malformed messages, sequence gaps, …).
    pub engine: crate::stats::EngineStats,
    /// Envelope counters (undecodable, unknown layer).
    pub envelopes: crate::stats::EnvelopeStats,
    /// Request/reply counters (timeouts, late replies, refusals, …).
    pub requests: crate::stats::RequestStats,
    /// Requests of this node waiting for their outcome.
    pub requests_in_flight: usize,
    /// Requests handed to this node's handlers and not answered yet.
    pub requests_running: usize,
    /// Control-layer counters (states sent and received, stale, malformed).
    pub control: crate::stats::ControlStats,
    /// Requests to all (gathers) in progress.
    pub gathers_open: usize,
    /// Event-emitter counters (sent, received, back-pressured, credits, ...).
    pub emitter: crate::stats::EmitterStats,
    /// Events dropped by drop-oldest subscriptions whose application fell behind.
    pub emitter_dropped: u64,
}

/// Rejects empty content and content that would be taken for a layer message.
fn check_content(content: &[Bytes]) -> Result<(), Error> {
    match content.first() {
        None => Err(Error::EmptyContent),
        Some(f) if envelope::is_envelope(f) => Err(Error::ReservedPrefix),
        Some(_) => Ok(()),
    }
}

struct HandleInner {
    shared: Arc<Shared>,
    stop_tx: mpsc::Sender<StopRequest>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        // The last handle is gone: stop politely in the background.
        let (tx, _rx) = oneshot::channel();
        let _ = self.stop_tx.try_send(StopRequest {
            polite: true,
            done: tx,
        });
    }
}

/// Asks the node task to stop.
struct StopRequest {
    /// Leave beacon, GOODBYEs, linger and a STOP event; or none of that (a simulated crash).
    polite: bool,
    done: oneshot::Sender<()>,
}

/// Parses `tcp://ip:port` into a socket address (for tests and tools).
pub fn endpoint_addr(endpoint: &str) -> Option<SocketAddr> {
    endpoint.strip_prefix("tcp://")?.parse().ok()
}

/// A running zmesh node. Cheap to clone; the node stops politely when the last clone is dropped or
/// [`Node::stop`] is called.
#[derive(Clone)]
pub struct Node {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("uuid", &self.uuid())
            .field("name", &self.name())
            .finish()
    }
}

/// What this node knows about one peer (a snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Peer UUID.
    pub uuid: Uuid,
    /// Public name from its HELLO (empty before HELLO).
    pub name: String,
    /// The endpoint we connect to.
    pub endpoint: String,
    /// Headers from its HELLO.
    pub headers: Vec<(String, String)>,
    /// Groups it is in, in the order we learned them.
    pub groups: Vec<String>,
    /// True once its HELLO was accepted (ENTER emitted).
    pub ready: bool,
    /// True while it is evasive.
    pub evasive: bool,
    /// Its ZRE status counter as we track it (changes with each JOIN/LEAVE).
    pub status: u8,
    /// True if it runs zmesh's request/reply layer (requests to it can succeed).
    pub speaks_requests: bool,
    /// Secure mode: the CURVE key its UUID is bound to; every message from it was authenticated
    /// with this key. `None` for a plain node.
    pub public_key: Option<CurvePublicKey>,
}

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// This node's UUID.
    pub fn uuid(&self) -> Uuid {
        self.shared().uuid
    }

    /// This node's UUID as Zyre prints it: 32 upper-case hex digits.
    pub fn uuid_string(&self) -> String {
        zmesh_zre::uuid_to_string(&self.shared().uuid)
    }

    /// This node's public name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The endpoint peers connect to (the one in our HELLO), once an interface has been attached.
    pub fn endpoint(&self) -> Option<String> {
        self.shared().lock().endpoint.clone()
    }

    /// The endpoint our zgossip hub listens on (with the real port), if the node is a hub
    /// ([`NodeBuilder::gossip_bind`]).
    pub fn gossip_endpoint(&self) -> Option<String> {
        self.shared().gossip_endpoint.clone()
    }

    /// The interface the node beacons on, once attached.
    pub fn interface(&self) -> Option<SelectedInterface> {
        self.shared().lock().interface.clone()
    }

    /// Joins a group: every peer is told (JOIN); SHOUTs to the group reach us from then on.
    /// Joining a group twice is harmless.
    pub fn join(&self, group: &str) -> Result<(), Error> {
        check_str("group", group)?;
        self.shared().command(|d| d.engine().join(group))?;
        Ok(())
    }

    /// Leaves a group (LEAVE to every peer). Leaving a group we are not in is harmless.
    pub fn leave(&self, group: &str) -> Result<(), Error> {
        check_str("group", group)?;
        self.shared().command(|d| d.engine().leave(group))?;
        Ok(())
    }

    /// Sends a multi-frame message to one peer.
    pub fn whisper(&self, peer: Uuid, content: impl Into<Content>) -> Result<(), Error> {
        let content = content.into();
        check_content(&content)?;
        let (r, overflow) = self.shared().whisper(peer, &content)?;
        r?;
        if overflow {
            return Err(Error::PeerOverflow(peer));
        }
        Ok(())
    }

    /// Like [`Node::whisper`], but when the peer's outgoing queue is full it waits for room instead
    /// of dropping the peer: back-pressure for bulk senders. Returns once the message is queued;
    /// fails if the peer is unknown or leaves meanwhile, or the node stops.
    pub async fn whisper_wait(&self, peer: Uuid, content: impl Into<Content>) -> Result<(), Error> {
        let content = content.into();
        check_content(&content)?;
        // Queue accounting counts payload bytes: the content plus the 6-byte WHISPER frame.
        let size = content.iter().map(Bytes::len).sum::<usize>() + 6;
        let shared = self.shared();
        loop {
            let room = {
                let mut state = shared.lock();
                if state.stopped {
                    return Err(Error::Stopped);
                }
                let Some(outbox) = state.outboxes.get(&peer) else {
                    return Err(Error::UnknownPeer(peer));
                };
                let room = outbox.room();
                if room.available(size) {
                    // Every sender goes through this lock, so the room cannot vanish before the
                    // message is queued.
                    let r = state.driver.engine().whisper(peer, content);
                    let failed = shared.flush(&mut state, None);
                    drop(state);
                    r?;
                    if failed.contains(&peer) {
                        return Err(Error::PeerOverflow(peer));
                    }
                    return Ok(());
                }
                room
            };
            room.wait(size).await;
        }
    }

    /// Sends a multi-frame message to every peer known to be in `group` (not to ourselves). Returns
    /// how many peers it was queued for; 0 when nobody is in the group (not an error, as in Zyre).
    pub fn shout(&self, group: &str, content: impl Into<Content>) -> Result<usize, Error> {
        let content = content.into();
        check_str("group", group)?;
        check_content(&content)?;
        let (r, failed) = self
            .shared()
            .command(|d| d.engine().shout(group, content))?;
        let n = r?;
        Ok(n.saturating_sub(failed.len()))
    }

    /// UUIDs of the peers we have a session with (HELLO received).
    pub fn peers(&self) -> Vec<Uuid> {
        self.shared().lock().driver.engine_ref().peers()
    }

    /// UUIDs of the peers known to be in `group`.
    pub fn peers_by_group(&self, group: &str) -> Vec<Uuid> {
        self.shared()
            .lock()
            .driver
            .engine_ref()
            .peers_by_group(group)
    }

    /// Groups this node has joined, in join order.
    pub fn own_groups(&self) -> Vec<String> {
        self.shared().lock().driver.engine_ref().own_groups()
    }

    /// Groups known from peers.
    pub fn peer_groups(&self) -> Vec<String> {
        self.shared().lock().driver.engine_ref().peer_groups()
    }

    /// Everything known about one peer.
    pub fn peer_info(&self, peer: Uuid) -> Option<PeerInfo> {
        let state = self.shared().lock();
        let p = state.driver.engine_ref().peer(peer)?;
        Some(PeerInfo {
            uuid: p.uuid,
            name: p.name,
            endpoint: p.endpoint,
            headers: p.headers,
            groups: p.groups,
            ready: p.ready,
            evasive: p.evasive,
            status: p.status,
            speaks_requests: state.driver.reqrep_ref().is_capable(peer),
            public_key: p.public_key.map(CurvePublicKey::from_bytes),
        })
    }

    /// Secure mode: this node's CURVE public key (what peers must allow); `None` for a plain node.
    pub fn public_key(&self) -> Option<CurvePublicKey> {
        self.shared().security.as_ref().map(|s| s.public_key())
    }

    /// Secure mode: the CURVE key a peer's UUID is bound to (every message from it came over a
    /// connection authenticated with this key).
    pub fn peer_key(&self, peer: Uuid) -> Option<CurvePublicKey> {
        let state = self.shared().lock();
        let key = state.driver.engine_ref().peer(peer)?.public_key?;
        Some(CurvePublicKey::from_bytes(key))
    }

    /// The ready peers whose name is `name` (names are not unique).
    pub fn peers_named(&self, name: &str) -> Vec<Uuid> {
        let state = self.shared().lock();
        let engine = state.driver.engine_ref();
        engine
            .peers()
            .into_iter()
            .filter(|u| engine.peer(*u).is_some_and(|p| p.name == name))
            .collect()
    }

    /// A peer's public name.
    pub fn peer_name(&self, peer: Uuid) -> Option<String> {
        self.peer_info(peer).map(|p| p.name)
    }

    /// The endpoint we are connected to for this peer.
    pub fn peer_endpoint(&self, peer: Uuid) -> Option<String> {
        self.peer_info(peer).map(|p| p.endpoint)
    }

    /// One header from the peer's HELLO.
    pub fn peer_header(&self, peer: Uuid, key: &str) -> Option<String> {
        self.peer_info(peer)?
            .headers
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Counters of dropped input and events, and of every layer.
    pub fn stats(&self) -> NodeStats {
        let s = &self.shared().stats;
        let state = self.shared().lock();
        let rr = state.driver.reqrep_ref();
        NodeStats {
            dropped_events: s.dropped_events.load(Ordering::Relaxed),
            dropped_ticks: s.dropped_ticks.load(Ordering::Relaxed),
            bad_beacons: s.bad_beacons.load(Ordering::Relaxed),
            handshake_failures: s.handshake_failures.load(Ordering::Relaxed),
            send_failures: s.send_failures.load(Ordering::Relaxed),
            ipc_connects: s.ipc_connects.load(Ordering::Relaxed),
            tcp_connects: s.tcp_connects.load(Ordering::Relaxed),
            curve_refused: self
                .shared()
                .security
                .as_ref()
                .map_or(0, |sec| sec.stats().refused()),
            unlisted_sightings: s.unlisted_sightings.load(Ordering::Relaxed),
            beacon_send_failures: s.beacon_send_failures.load(Ordering::Relaxed),
            inline_receives: s.inline_receives.load(Ordering::Relaxed),
            engine: state.driver.engine_ref().stats().clone(),
            envelopes: state.driver.stats().clone(),
            requests: rr.stats().clone(),
            requests_in_flight: rr.in_flight(),
            requests_running: rr.running(),
            control: state.driver.control_ref().stats().clone(),
            gathers_open: rr.gathers_open(),
            emitter: state.driver.events_ref().stats().clone(),
            emitter_dropped: state.emitter.dropped(),
        }
    }

    /// Stops politely: a port-0 beacon tells every peer we left (they see EXIT at once), queued
    /// messages get a short linger, a STOP event ends the event stream. Idempotent.
    pub async fn stop(&self) {
        self.request_stop(true).await
    }

    /// Stops like a crash would: no leave beacon, no linger, no STOP event — peers only notice when
    /// the node expires. Meant for tests and simulations of failures (Zyre's destroy-without-stop).
    pub async fn abort(&self) {
        self.request_stop(false).await
    }

    async fn request_stop(&self, polite: bool) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .stop_tx
            .send(StopRequest { polite, done: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// The node's events, in order. Ends (returns `None`) after the STOP event.
///
/// Events are taken from the node's shared queue in batches (one lock per batch of up to 4,096,
/// not per event) into a buffer owned by this handle; the batch is taken in the queue's fair
/// order.
#[derive(Debug)]
pub struct Events {
    queue: Arc<EventQueue>,
    /// Events already taken from the shared queue, delivered before anything else.
    ready: VecDeque<Event>,
    /// The node, for the inline receive (`receive.rs`); weak, so a kept stream does not keep a
    /// dropped node's state alive.
    node: std::sync::Weak<Shared>,
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Events {
    fn new(queue: Arc<EventQueue>, node: std::sync::Weak<Shared>) -> Events {
        Events {
            queue,
            ready: VecDeque::new(),
            node,
        }
    }

    /// Waits for the next event. Cancel-safe. Events of one peer come in order; different peers'
    /// events are interleaved fairly (round-robin across peers, see the `Node` docs).
    ///
    /// (A plain future over [`Events::poll_recv`] rather than an `async fn`: an event already
    /// taken from the queue costs one `pop_front`, with no nested future state per call.)
    pub fn recv(&mut self) -> impl std::future::Future<Output = Option<Event>> + '_ {
        std::future::poll_fn(move |cx| self.poll_recv(cx))
    }

    /// The next event if one is ready; otherwise registers `cx` to be woken when one comes.
    /// Cancel-safe: events are only moved into `ready`, which belongs to this handle.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if let Some(event) = self.ready.pop_front() {
            return Poll::Ready(Some(event));
        }
        match self.queue.try_pop_into(&mut self.ready, POP_BATCH) {
            Ok(0) => {}
            Ok(_) => return Poll::Ready(self.ready.pop_front()),
            Err(()) => return Poll::Ready(None),
        }
        // Nothing queued: read what the inboxes hold ourselves (`receive.rs`), then wait.
        if let Some(node) = self.node.upgrade() {
            node.receive.inline(&node, cx);
        }
        match self.queue.poll_pop_into(cx, &mut self.ready, POP_BATCH) {
            Poll::Ready(true) => Poll::Ready(self.ready.pop_front()),
            Poll::Ready(false) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Returns an event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        if self.ready.is_empty() {
            let _ = self.queue.try_pop_into(&mut self.ready, POP_BATCH);
        }
        self.ready.pop_front()
    }
}
