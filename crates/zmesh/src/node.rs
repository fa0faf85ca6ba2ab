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
//! All protocol decisions are made by [`zmesh_zre::Engine`]; this module only moves bytes and time in
//! and out of it. The engine lives behind a `std::sync::Mutex` shared by the node task (which feeds it
//! network input and timer ticks) and the [`Node`] handle (whose calls run the engine directly on the
//! caller's thread, like `quinn` does). A `whisper` therefore costs one lock, one encode and one
//! `try_send` on the peer's outbox — no hop through a command channel. The lock is never held across an
//! `.await`.
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
//! application that cannot afford to miss messages should size the queue for its bursts, or build
//! acknowledgements above ZRE (as the request/reply patterns do).
//!
//! # Interface
//!
//! At start the node picks its interface ([`crate::iface`]). If none is usable yet, `start` still
//! succeeds: the node retries every beacon interval and attaches when one appears, logging the choice.
//! Its inbox binds to the chosen address, and that address (or the advertised endpoint) goes in HELLO.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use uuid::Uuid;
use zmesh_zmtp::{Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig, SendError};
use zmesh_zre::{Config as EngineConfig, Engine, Event, Output};

use crate::discovery::{BeaconDropReason, BeaconSocket, Sighting};
use crate::error::Error;
use crate::events::{EventQueue, UuidMap, POP_BATCH};
use crate::iface::{self, InterfaceSpec, SelectedInterface};

/// The UDP port ZRE beacons use by default (IANA "ZRE-DISC").
pub const DEFAULT_BEACON_PORT: u16 = 5670;

/// How long a polite stop waits for queued messages (and GOODBYEs) to reach peers.
const STOP_LINGER: Duration = Duration::from_millis(500);

/// Most inbox messages handled under one lock acquisition.
const INBOX_BATCH: usize = 512;

/// Configures and starts a [`Node`].
///
/// ```no_run
/// # async fn demo() -> Result<(), zmesh::Error> {
/// let (node, mut events) = zmesh::Node::builder()
///     .name("sensor-1")
///     .header("X-ROLE", "sensor")
///     .interface("lo".parse().unwrap())
///     .start()
///     .await?;
/// node.join("CHAT")?;
/// while let Some(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: Option<String>,
    uuid: Option<Uuid>,
    headers: Vec<(String, String)>,
    beacon_port: u16,
    beacon_interval: Duration,
    evasive_timeout: Duration,
    expired_timeout: Duration,
    ping_interval: Option<Duration>,
    interface: InterfaceSpec,
    tcp_port: Option<u16>,
    advertised_endpoint: Option<String>,
    event_capacity: usize,
    outbox: OutboxConfig,
    inbox: InboxConfig,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            name: None,
            uuid: None,
            headers: Vec::new(),
            beacon_port: DEFAULT_BEACON_PORT,
            beacon_interval: Duration::from_secs(1),
            evasive_timeout: Duration::from_secs(5),
            expired_timeout: Duration::from_secs(30),
            ping_interval: None,
            interface: InterfaceSpec::Auto,
            tcp_port: None,
            advertised_endpoint: None,
            event_capacity: 10_000,
            outbox: OutboxConfig::default(),
            inbox: InboxConfig::default(),
        }
    }
}

fn check_str(what: &'static str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::InvalidArgument {
            what,
            why: "must not be empty".into(),
        });
    }
    if s.len() > 255 {
        return Err(Error::InvalidArgument {
            what,
            why: format!("{} bytes; ZRE strings are at most 255 bytes", s.len()),
        });
    }
    Ok(())
}

impl NodeBuilder {
    /// Public name sent in HELLO (default: the first 6 hex digits of the UUID, like Zyre).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Use this UUID instead of a random one (stable identities across restarts; peers then see a
    /// restart as EXIT + ENTER of the same UUID).
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }

    /// Adds a header sent in HELLO and delivered to peers in their ENTER event (service discovery).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.headers.retain(|(k, _)| *k != key);
        self.headers.push((key, value.into()));
        self
    }

    /// UDP port for beacons (default 5670). Nodes with different ports do not see each other.
    pub fn beacon_port(mut self, port: u16) -> Self {
        self.beacon_port = port;
        self
    }

    /// Time between beacons (default 1 s).
    pub fn beacon_interval(mut self, interval: Duration) -> Self {
        self.beacon_interval = interval;
        self
    }

    /// Silence after which a peer is reported EVASIVE (default 5 s).
    pub fn evasive_timeout(mut self, timeout: Duration) -> Self {
        self.evasive_timeout = timeout;
        self
    }

    /// Silence after which a peer is removed with EXIT (default 30 s).
    pub fn expired_timeout(mut self, timeout: Duration) -> Self {
        self.expired_timeout = timeout;
        self
    }

    /// How long a peer may be quiet before we PING it proactively (default: chosen by the engine,
    /// below the evasive timeout, so a healthy idle peer never becomes EVASIVE).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Which interface to beacon on (default: the first LAN interface). Tests and demos pin `lo`.
    pub fn interface(mut self, spec: InterfaceSpec) -> Self {
        self.interface = spec;
        self
    }

    /// Fixed TCP port for the inbox (default: an ephemeral port), for firewalls.
    pub fn tcp_port(mut self, port: u16) -> Self {
        self.tcp_port = Some(port);
        self
    }

    /// Endpoint to advertise in HELLO instead of the bound one (NAT, port forwarding).
    pub fn advertised_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.advertised_endpoint = Some(endpoint.into());
        self
    }

    /// Capacity of the event queue (default 10,000); see the module docs for what happens when full.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Limits and reconnect policy of the per-peer outboxes.
    pub fn outbox_config(mut self, config: OutboxConfig) -> Self {
        self.outbox = config;
        self
    }

    /// Limits of the inbox: largest frame, handshake timeout (slow-loris guard), connection cap.
    pub fn inbox_config(mut self, config: InboxConfig) -> Self {
        self.inbox = config;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if let Some(n) = &self.name {
            check_str("name", n)?;
        }
        for (k, v) in &self.headers {
            check_str("header key", k)?;
            if v.len() > u32::MAX as usize {
                return Err(Error::InvalidArgument {
                    what: "header value",
                    why: "too long".into(),
                });
            }
        }
        if self.beacon_interval.is_zero() {
            return Err(Error::Config("beacon interval must be > 0".into()));
        }
        if self.evasive_timeout.is_zero() || self.expired_timeout.is_zero() {
            return Err(Error::Config("timeouts must be > 0".into()));
        }
        if let Some(ep) = &self.advertised_endpoint {
            ep.parse::<zmesh_zmtp::Endpoint>()
                .map_err(|e| Error::Config(format!("advertised endpoint {ep:?}: {e}")))?;
        }
        Ok(())
    }

    /// Starts the node: it begins beaconing as soon as an interface is usable, and returns the handle
    /// plus the stream of events. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<(Node, Events), Error> {
        self.validate()?;
        let uuid = self.uuid.unwrap_or_else(Uuid::new_v4);
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| zmesh_zre::uuid_to_string(&uuid)[..6].to_string());
        let now = Instant::now();
        let mut config = EngineConfig::new(uuid, name.clone());
        config.headers = self.headers.clone();
        config.evasive_timeout = self.evasive_timeout;
        config.expired_timeout = self.expired_timeout;
        // Default: PING a quiet peer after half the evasive timeout (2.5 s of 5 s; the side of a
        // pair that defers waits 3.75 s), so a healthy peer answers long before it would be
        // reported EVASIVE, even with short custom timeouts.
        config.ping_interval = self
            .ping_interval
            .unwrap_or_else(|| (self.evasive_timeout / 2).min(config.ping_interval));
        let engine = Engine::new(config, now);
        let events = Arc::new(EventQueue::new(self.event_capacity));
        let mut identity = Vec::with_capacity(17);
        identity.push(1u8);
        identity.extend_from_slice(uuid.as_bytes());

        let shared = Arc::new(Shared {
            uuid,
            name,
            state: Mutex::new(State {
                engine,
                outboxes: UuidMap::default(),
                events: events.clone(),
                pending_events: Vec::new(),
                outbox_config: self.outbox.clone(),
                identity: Bytes::from(identity),
                endpoint: None,
                interface: None,
                stopped: false,
            }),
            stats: Stats::default(),
            runtime: tokio::runtime::Handle::current(),
        });
        let (stop_tx, stop_rx) = mpsc::channel(4);
        let task = NodeTask {
            shared: shared.clone(),
            config: self,
            inbox: None,
            beacon: None,
            tcp_port: 0,
        };
        tokio::spawn(task.run(stop_rx));
        let handle = Arc::new(HandleInner { shared, stop_tx });
        Ok((
            Node { inner: handle },
            Events {
                queue: events,
                ready: VecDeque::new(),
            },
        ))
    }
}

/// Counters of things that went wrong or were dropped; the node keeps running through all of them.
#[derive(Debug, Default)]
struct Stats {
    dropped_events: AtomicU64,
    bad_beacons: AtomicU64,
    handshake_failures: AtomicU64,
    send_failures: AtomicU64,
}

/// A snapshot of the node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Events dropped because the application's event queue was full.
    pub dropped_events: u64,
    /// UDP datagrams on the beacon port that were not usable beacons (garbage, other versions).
    pub bad_beacons: u64,
    /// TCP connections to the inbox that failed the ZMTP handshake (garbage, wrong socket type …).
    pub handshake_failures: u64,
    /// Messages that could not be queued for a peer (its outbox was full or closed).
    pub send_failures: u64,
    /// Protocol-level counters from the engine (malformed messages, sequence gaps, …).
    pub engine: zmesh_zre::Stats,
}

struct Shared {
    uuid: Uuid,
    name: String,
    state: Mutex<State>,
    stats: Stats,
    runtime: tokio::runtime::Handle,
}

struct State {
    engine: Engine,
    outboxes: UuidMap<Outbox>,
    /// The application's event queue; closed once the node has stopped.
    events: Arc<EventQueue>,
    /// Events of the current flush, handed to `events` together (one lock, one wake-up).
    pending_events: Vec<Event>,
    outbox_config: OutboxConfig,
    identity: Bytes,
    endpoint: Option<String>,
    interface: Option<SelectedInterface>,
    /// Set once the node has stopped or aborted: commands then fail with [`Error::Stopped`].
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in zmesh; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every pending engine output into the world: outboxes, events. Returns the peers whose
    /// outbox refused a message (they have been reported to the engine as failed).
    fn flush(&self, state: &mut State) -> Vec<Uuid> {
        let mut failed = Vec::new();
        loop {
            let mut new_failures = Vec::new();
            while let Some(output) = state.engine.poll_output() {
                match output {
                    Output::Connect { peer, endpoint } => {
                        // Outboxes spawn their task on the node's runtime, whatever thread we are on.
                        let _guard = self.runtime.enter();
                        match Outbox::connect(
                            &endpoint,
                            state.identity.clone(),
                            state.outbox_config.clone(),
                        ) {
                            Ok(outbox) => {
                                debug!(peer = %peer, %endpoint, "connecting to peer");
                                state.outboxes.insert(peer, outbox);
                            }
                            Err(e) => {
                                debug!(peer = %peer, %endpoint, error = %e, "cannot connect to peer");
                                new_failures.push(peer);
                            }
                        }
                    }
                    Output::Send { peer, frames } => {
                        let Some(outbox) = state.outboxes.get(&peer) else {
                            continue;
                        };
                        if let Err(e) = outbox.try_send(frames) {
                            let why = match e {
                                SendError::Full(_) => "queue full",
                                SendError::Closed(_) => "closed",
                            };
                            debug!(peer = %peer, why, "message to peer not queued; dropping peer");
                            self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                            new_failures.push(peer);
                        }
                    }
                    Output::Disconnect { peer } => {
                        state.outboxes.remove(&peer);
                    }
                    Output::Event(event) => state.pending_events.push(event),
                }
            }
            if new_failures.is_empty() {
                break;
            }
            let now = Instant::now();
            for peer in &new_failures {
                state.engine.handle_send_failed(now, *peer);
            }
            failed.extend(new_failures);
        }
        let dropped = state.events.push_all(&mut state.pending_events) as u64;
        if dropped > 0 {
            let before = self
                .stats
                .dropped_events
                .fetch_add(dropped, Ordering::Relaxed);
            // Warn at 1, 2, 4, 8, … drops in total.
            if (before + dropped).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
                warn!(
                    dropped = before + dropped,
                    "event queue full: application is not reading events; dropping"
                );
            }
        }
        failed
    }

    /// Runs an application command on the engine under one lock, then flushes its outputs;
    /// fails once the node has stopped. The node task is not woken: no command moves a liveness
    /// deadline earlier (they only send; a peer removed after a failed send only removes
    /// deadlines), and a wake-up per WHISPER would cost the node task a loop turn per message.
    fn command<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> Result<(R, Vec<Uuid>), Error> {
        let mut state = self.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let r = f(&mut state.engine);
        let failed = self.flush(&mut state);
        Ok((r, failed))
    }

    /// Runs network input or a timer tick on the engine and flushes its outputs, for the node
    /// task itself (it re-reads the engine's deadline on its next turn).
    fn in_task<R>(&self, f: impl FnOnce(&mut Engine, Instant) -> R) -> (R, Vec<Uuid>) {
        let now = Instant::now();
        let mut state = self.lock();
        let r = f(&mut state.engine, now);
        let failed = self.flush(&mut state);
        (r, failed)
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

/// What this node knows about one peer.
pub type PeerInfo = zmesh_zre::PeerInfo;

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    fn shared(&self) -> &Shared {
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

    /// The interface the node beacons on, once attached.
    pub fn interface(&self) -> Option<SelectedInterface> {
        self.shared().lock().interface.clone()
    }

    /// Joins a group: every peer is told (JOIN); SHOUTs to the group reach us from then on.
    /// Joining a group twice is harmless.
    pub fn join(&self, group: &str) -> Result<(), Error> {
        check_str("group", group)?;
        self.shared().command(|e| e.join(group))?;
        Ok(())
    }

    /// Leaves a group (LEAVE to every peer). Leaving a group we are not in is harmless.
    pub fn leave(&self, group: &str) -> Result<(), Error> {
        check_str("group", group)?;
        self.shared().command(|e| e.leave(group))?;
        Ok(())
    }

    /// Sends a multi-frame message to one peer.
    pub fn whisper(&self, peer: Uuid, content: Vec<Bytes>) -> Result<(), Error> {
        if content.is_empty() {
            return Err(Error::EmptyContent);
        }
        let (r, failed) = self.shared().command(|e| e.whisper(peer, content))?;
        r.map_err(|_| Error::UnknownPeer(peer))?;
        if failed.contains(&peer) {
            return Err(Error::PeerOverflow(peer));
        }
        Ok(())
    }

    /// Like [`Node::whisper`], but when the peer's outgoing queue is full it waits for room instead
    /// of dropping the peer: back-pressure for bulk senders. Returns once the message is queued;
    /// fails if the peer is unknown or leaves meanwhile, or the node stops.
    pub async fn whisper_wait(&self, peer: Uuid, content: Vec<Bytes>) -> Result<(), Error> {
        if content.is_empty() {
            return Err(Error::EmptyContent);
        }
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
                    let r = state.engine.whisper(peer, content);
                    let failed = shared.flush(&mut state);
                    drop(state);
                    r.map_err(|_| Error::UnknownPeer(peer))?;
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
    pub fn shout(&self, group: &str, content: Vec<Bytes>) -> Result<usize, Error> {
        check_str("group", group)?;
        if content.is_empty() {
            return Err(Error::EmptyContent);
        }
        let (r, failed) = self.shared().command(|e| e.shout(group, content))?;
        let n = r.map_err(|_| Error::EmptyContent)?;
        Ok(n.saturating_sub(failed.len()))
    }

    /// UUIDs of the peers we have a session with (HELLO received).
    pub fn peers(&self) -> Vec<Uuid> {
        self.shared().lock().engine.peers()
    }

    /// UUIDs of the peers known to be in `group`.
    pub fn peers_by_group(&self, group: &str) -> Vec<Uuid> {
        self.shared().lock().engine.peers_by_group(group)
    }

    /// Groups this node has joined, in join order.
    pub fn own_groups(&self) -> Vec<String> {
        self.shared().lock().engine.own_groups()
    }

    /// Groups known from peers.
    pub fn peer_groups(&self) -> Vec<String> {
        self.shared().lock().engine.peer_groups()
    }

    /// Everything known about one peer.
    pub fn peer_info(&self, peer: Uuid) -> Option<PeerInfo> {
        self.shared().lock().engine.peer(peer)
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

    /// Counters of dropped input and events.
    pub fn stats(&self) -> NodeStats {
        let s = &self.shared().stats;
        NodeStats {
            dropped_events: s.dropped_events.load(Ordering::Relaxed),
            bad_beacons: s.bad_beacons.load(Ordering::Relaxed),
            handshake_failures: s.handshake_failures.load(Ordering::Relaxed),
            send_failures: s.send_failures.load(Ordering::Relaxed),
            engine: self.shared().lock().engine.stats().clone(),
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
/// Events are taken from the node's shared queue in small batches (one lock per batch, not per
/// event) into a buffer owned by this handle; the batch is taken in the queue's fair order.
#[derive(Debug)]
pub struct Events {
    queue: Arc<EventQueue>,
    /// Events already taken from the shared queue, delivered before anything else.
    ready: VecDeque<Event>,
}

impl Events {
    /// Waits for the next event. Cancel-safe. Events of one peer come in order; different peers'
    /// events are interleaved fairly (see [`crate::events`]).
    pub async fn recv(&mut self) -> Option<Event> {
        if let Some(event) = self.ready.pop_front() {
            return Some(event);
        }
        // Cancel-safe: events are only moved into `ready`, which outlives this future.
        if self.queue.pop_into(&mut self.ready, POP_BATCH).await {
            self.ready.pop_front()
        } else {
            None
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

/// Asks the node task to stop.
struct StopRequest {
    /// Leave beacon, GOODBYEs, linger and a STOP event; or none of that (a simulated crash).
    polite: bool,
    done: oneshot::Sender<()>,
}

/// The background task that owns the sockets.
struct NodeTask {
    shared: Arc<Shared>,
    config: NodeBuilder,
    inbox: Option<Inbox>,
    beacon: Option<BeaconSocket>,
    /// The inbox's TCP port, announced in beacons.
    tcp_port: u16,
}

async fn recv_opt<T, F: std::future::Future<Output = T>>(f: Option<F>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl NodeTask {
    async fn run(mut self, mut stop_rx: mpsc::Receiver<StopRequest>) {
        let mut beacon_tick = tokio::time::interval(self.config.beacon_interval);
        beacon_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned_no_iface = false;
        // One timer for the engine's deadline, re-armed only when the deadline moves: a busy node
        // turns this loop once per inbox batch, and a fresh timer each turn would cost a timer
        // registration (and removal) each time.
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let done = loop {
            let deadline = self.shared.lock().engine.poll_timeout();
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(d.into());
                }
                armed = deadline;
            }
            tokio::select! {
                reply = stop_rx.recv() => break reply,
                event = recv_opt(self.inbox.as_mut().map(|i| i.recv())) => match event {
                    Some(event) => self.on_inbox(event),
                    None => {
                        warn!("inbox closed unexpectedly; rebinding");
                        self.detach();
                    }
                },
                datagram = recv_opt(self.beacon.as_ref().map(|b| b.recv())) => match datagram {
                    Ok(Ok(sighting)) => self.on_sighting(sighting),
                    // Our own beacons loop back to us; that is not bad input.
                    Ok(Err(BeaconDropReason::Own)) => {}
                    Ok(Err(reason)) => {
                        self.shared.stats.bad_beacons.fetch_add(1, Ordering::Relaxed);
                        debug!(%reason, "beacon dropped");
                    }
                    Err(e) => debug!(error = %e, "beacon receive error"),
                },
                _ = &mut sleep, if armed.is_some() => {
                    self.shared.in_task(|e, now| e.handle_timeout(now));
                    // Fire again only once the engine names a deadline (even the same one).
                    armed = None;
                }
                _ = beacon_tick.tick() => {
                    if self.beacon.is_none() {
                        match self.attach().await {
                            Ok(true) => warned_no_iface = false,
                            Ok(false) => {
                                if !warned_no_iface {
                                    warn!(interface = %self.config.interface, "no usable network interface yet; will retry");
                                    warned_no_iface = true;
                                }
                            }
                            Err(e) => warn!(error = %e, "cannot attach to interface; will retry"),
                        }
                    }
                    if let Some(beacon) = &self.beacon {
                        if let Err(e) = beacon.send(self.tcp_port).await {
                            warn!(error = %e, "beacon send failed; re-creating sockets next interval");
                            self.detach();
                        }
                    }
                }
            }
        };
        let polite = done.as_ref().map(|r| r.polite).unwrap_or(true);
        if polite {
            self.shutdown().await;
        } else {
            self.crash();
        }
        if let Some(reply) = done {
            let _ = reply.done.send(());
        }
        // Later stop() calls find the channel closed and return at once.
        stop_rx.close();
        while let Ok(reply) = stop_rx.try_recv() {
            let _ = reply.done.send(());
        }
    }

    /// Picks the interface, binds the inbox and the beacon socket. Ok(false) = nothing usable yet.
    async fn attach(&mut self) -> Result<bool, Error> {
        let addrs = iface::list()?;
        let Some(chosen) = iface::select(&self.config.interface, &addrs) else {
            return Ok(false);
        };
        if self.inbox.is_none() {
            let port = self
                .config
                .tcp_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "*".into());
            let inbox = Inbox::bind(
                &format!("tcp://{}:{port}", chosen.ip),
                self.config.inbox.clone(),
            )
            .await?;
            let bound = inbox.endpoint().to_string();
            self.tcp_port = bound
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::Config(format!("bound endpoint without port: {bound}")))?;
            let advertised = self.config.advertised_endpoint.clone().unwrap_or(bound);
            let mut state = self.shared.lock();
            state.engine.set_endpoint(advertised.clone());
            state.endpoint = Some(advertised);
            drop(state);
            self.inbox = Some(inbox);
        }
        let beacon =
            BeaconSocket::bind(self.config.beacon_port, chosen.broadcast, self.shared.uuid)?;
        info!(
            node = %self.shared.name,
            interface = %chosen,
            endpoint = %self.shared.lock().endpoint.clone().unwrap_or_default(),
            beacon_port = self.config.beacon_port,
            "zmesh node attached"
        );
        self.beacon = Some(beacon);
        self.shared.lock().interface = Some(chosen);
        Ok(true)
    }

    /// Drops the sockets so the next beacon tick re-attaches (interface went away, send failed).
    fn detach(&mut self) {
        self.beacon = None;
    }

    fn on_inbox(&mut self, first: InboxEvent) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(event) = next {
            match event {
                InboxEvent::Message { identity, frames } => {
                    state
                        .engine
                        .handle_message(now, &identity, frames.into_vec());
                }
                InboxEvent::Accepted { peer, .. } => debug!(%peer, "peer connected to inbox"),
                InboxEvent::HandshakeFailed { peer, reason } => {
                    self.shared
                        .stats
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, %reason, "inbox handshake failed");
                }
                InboxEvent::Disconnected { peer, reason, .. } => {
                    debug!(%peer, %reason, "peer disconnected from inbox")
                }
            }
            handled += 1;
            next = if handled < INBOX_BATCH {
                self.inbox.as_mut().and_then(|i| i.try_recv())
            } else {
                None
            };
        }
        self.shared.flush(&mut state);
    }

    fn on_sighting(&mut self, sighting: Sighting) {
        match sighting {
            Sighting::Seen { uuid, endpoint } => {
                self.shared
                    .in_task(|e, now| e.handle_sighting(now, uuid, &endpoint));
            }
            Sighting::Left { uuid } => {
                // The leave beacon (UDP) can overtake the peer's last messages (TCP): deliver what
                // the inbox already holds before removing the peer.
                while let Some(event) = self.inbox.as_mut().and_then(|i| i.try_recv()) {
                    self.on_inbox(event);
                }
                self.shared.in_task(|e, now| e.handle_departure(now, uuid));
            }
        }
    }

    /// Drops everything at once, telling nobody.
    fn crash(&mut self) {
        let mut state = self.shared.lock();
        state.outboxes.clear();
        state.events.close();
        state.stopped = true;
        drop(state);
        if let Some(inbox) = self.inbox.take() {
            inbox.close();
        }
        self.beacon = None;
        info!(node = %self.shared.name, "zmesh node aborted");
    }

    async fn shutdown(&mut self) {
        let now = Instant::now();
        let outboxes: Vec<Outbox> = {
            let mut state = self.shared.lock();
            state.stopped = true;
            state.engine.stop(now);
            // Keep the outboxes alive through the flush so GOODBYEs are queued, then take them all.
            let mut keep: Vec<Outbox> = Vec::new();
            let _guard = self.shared.runtime.enter();
            while let Some(output) = state.engine.poll_output() {
                match output {
                    Output::Send { peer, frames } => {
                        if let Some(o) = state.outboxes.get(&peer) {
                            let _ = o.try_send(frames);
                        }
                    }
                    Output::Disconnect { peer } => {
                        if let Some(o) = state.outboxes.remove(&peer) {
                            keep.push(o);
                        }
                    }
                    Output::Event(event) => state.pending_events.push(event),
                    Output::Connect { .. } => {}
                }
            }
            let State {
                events,
                pending_events,
                ..
            } = &mut *state;
            events.push_all(pending_events);
            keep.extend(state.outboxes.drain().map(|(_, o)| o));
            keep
        };
        // Linger on every outbox at once, so a stop takes at most STOP_LINGER however many peers.
        let closes: Vec<_> = outboxes
            .into_iter()
            .map(|o| tokio::spawn(o.close(Some(STOP_LINGER))))
            .collect();
        for close in closes {
            let _ = close.await;
        }
        if let Some(beacon) = &self.beacon {
            // Port 0 = "I am leaving": peers see EXIT at once. Sent twice in case one is lost, and
            // only after the outboxes have drained: the UDP beacon would otherwise overtake the
            // last messages (and GOODBYEs) still queued on TCP, and peers would drop them as
            // coming from a peer that already left.
            for _ in 0..2 {
                if let Err(e) = beacon.send(0).await {
                    debug!(error = %e, "leave beacon not sent");
                }
            }
        }
        if let Some(inbox) = self.inbox.take() {
            inbox.close();
        }
        self.beacon = None;
        // The application's event stream ends after the STOP event.
        self.shared.lock().events.close();
        info!(node = %self.shared.name, "zmesh node stopped");
    }
}

/// Parses `tcp://ip:port` into a socket address (for tests and tools).
pub fn endpoint_addr(endpoint: &str) -> Option<SocketAddr> {
    endpoint.strip_prefix("tcp://")?.parse().ok()
}
