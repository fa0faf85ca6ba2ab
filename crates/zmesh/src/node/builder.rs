//! [`NodeBuilder`]: every setting of a node, its defaults and its validation, in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;
use zmesh_core::driver::{Driver, LayerConfig};
use zmesh_core::reqrep;
use zmesh_zmtp::curve::{AllowList, CurveKeyPair, CurvePublicKey};
use zmesh_zmtp::{InboxConfig, OutboxConfig};
use zmesh_zre::Config as EngineConfig;

use super::secure::Security;
use super::shared::{Shared, State, Stats};
use super::task::NodeTask;
use super::{HandleInner, Node, DEFAULT_BEACON_PORT};
use crate::discovery::plan::{BeaconOptions, DEFAULT_IPV6_GROUP, DEFAULT_MULTICAST_TTL};
use crate::discovery::Source;
use crate::error::Error;
use crate::events::{EventQueue, UuidMap};
use crate::iface::InterfaceSpec;
use crate::Events;
#[allow(unused_imports)] // doc links
use crate::RequestError;

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
    pub(super) name: Option<String>,
    pub(super) uuid: Option<Uuid>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) beacon_port: u16,
    pub(super) beacon_interval: Duration,
    pub(super) evasive_timeout: Duration,
    pub(super) expired_timeout: Duration,
    pub(super) ping_interval: Option<Duration>,
    pub(super) interface: InterfaceSpec,
    /// Every interface spec (`interface` is the first, kept for logs).
    pub(super) interfaces: Vec<InterfaceSpec>,
    pub(super) beacon_opts: BeaconOptions,
    pub(super) tcp_port: Option<u16>,
    pub(super) advertised_endpoint: Option<String>,
    pub(super) event_capacity: usize,
    pub(super) outbox: OutboxConfig,
    pub(super) inbox: InboxConfig,
    pub(super) requests: reqrep::Config,
    pub(super) options: zmesh_core::control::Options,
    pub(super) emitter_window: u32,
    pub(super) beacons: bool,
    pub(super) discovery: super::discovery::DiscoveryConfig,
    sources: Vec<SourceSlot>,
    curve_keys: Option<CurveKeyPair>,
    allow_list: Option<AllowList>,
    services: zmesh_core::services::Config,
    /// Broker endpoints to reach with no beacon (`brokers.rs`).
    brokers: Vec<super::brokers::BrokerAddr>,
    /// A broker's own endpoint, as it announces it to others.
    broker_self: Option<String>,
    /// The same-host fast path (`samehost.rs`): on, its directory, its host identity.
    pub(super) same_host: bool,
    same_host_dir: Option<std::path::PathBuf>,
    same_host_id: Option<String>,
}

/// Time between beacons (Zyre and czmq's `zbeacon`: 1 s).
pub const DEFAULT_BEACON_INTERVAL: Duration = Duration::from_secs(1);

/// Capacity of the application's event queue.
pub const DEFAULT_EVENT_CAPACITY: usize = 10_000;

/// A discovery source waiting for the node that will run it (the builder is `Clone`; a source
/// runs in the first node started from it).
#[derive(Debug, Clone, Default)]
struct SourceSlot(Arc<Mutex<Option<Box<dyn Source>>>>);

impl SourceSlot {
    fn take(&self) -> Option<Box<dyn Source>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            name: None,
            uuid: None,
            headers: Vec::new(),
            beacon_port: DEFAULT_BEACON_PORT,
            beacon_interval: DEFAULT_BEACON_INTERVAL,
            evasive_timeout: zmesh_zre::DEFAULT_EVASIVE_TIMEOUT,
            expired_timeout: zmesh_zre::DEFAULT_EXPIRED_TIMEOUT,
            ping_interval: None,
            interface: InterfaceSpec::Auto,
            interfaces: Vec::new(),
            beacon_opts: BeaconOptions {
                broadcast: true,
                multicast: None,
                ipv6: None,
            },
            tcp_port: None,
            advertised_endpoint: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            outbox: OutboxConfig::default(),
            inbox: InboxConfig::default(),
            requests: reqrep::Config::default(),
            options: Default::default(),
            emitter_window: zmesh_core::events::Config::default().window,
            beacons: true,
            discovery: Default::default(),
            sources: Vec::new(),
            curve_keys: None,
            allow_list: None,
            services: zmesh_core::services::Config::default(),
            brokers: Vec::new(),
            broker_self: None,
            same_host: true,
            same_host_dir: None,
            same_host_id: None,
        }
    }
}

/// A name, group or header key: not empty (zmesh's rule), and within ZRE's string limit (the
/// engine's rule, applied by the engine's own check).
pub(super) fn check_str(what: &'static str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::InvalidArgument {
            what,
            why: "must not be empty".into(),
        });
    }
    zmesh_zre::msg::check_string(what, s).map_err(|e| Error::InvalidArgument {
        what,
        why: e.to_string(),
    })
}

impl NodeBuilder {
    /// The services layer's limits, backoff and reply-cache window
    /// ([`zmesh_core::services::Config`]; its ids and seed are chosen at start).
    pub fn services_config(mut self, config: zmesh_core::services::Config) -> Self {
        self.services = config;
        self
    }

    /// Makes this node a broker: it relays calls between callers and workers it is connected
    /// to ([`zmesh_core::services`]).
    pub fn broker(mut self, on: bool) -> Self {
        self.services.broker = on;
        self
    }

    /// Brokers to reach at fixed endpoints (`tcp://IP:PORT`, in secure mode
    /// `tcp://IP:PORT|Z85KEY`), with no beacon: the node connects to each (and to the brokers
    /// it learns from them) and keeps trying while they are away.
    pub fn brokers<S: AsRef<str>>(mut self, endpoints: &[S]) -> Result<Self, Error> {
        for e in endpoints {
            let b = super::brokers::parse_broker(e.as_ref()).map_err(Error::Config)?;
            self.brokers.push(b);
        }
        Ok(self)
    }

    /// Makes this node the broker at `endpoint` (as others are configured with it; in secure
    /// mode with `|Z85KEY`): its UUID is derived from the endpoint ([`broker_uuid`]), it binds
    /// and advertises that endpoint, relays calls and tells its peers about the brokers it knows.
    ///
    /// [`broker_uuid`]: crate::broker_uuid
    pub fn broker_at(mut self, endpoint: &str) -> Result<Self, Error> {
        let b = super::brokers::parse_broker(endpoint).map_err(Error::Config)?;
        self.uuid = Some(super::brokers::broker_uuid(&b.endpoint));
        self.tcp_port = Some(b.addr.port());
        self.advertised_endpoint = Some(b.endpoint.clone());
        self.services.broker = true;
        self.broker_self = Some(endpoint.to_owned());
        Ok(self)
    }

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

    /// Which interface to beacon on (default: every LAN interface, see
    /// [`NodeBuilder::interfaces`]). Tests and demos pin `lo`.
    pub fn interface(mut self, spec: InterfaceSpec) -> Self {
        self.interfaces = vec![spec.clone()];
        self.interface = spec;
        self
    }

    /// Beacon on every address these specs select (names, addresses, networks, `all`), each
    /// beacon leaving through its own interface; followed while the node runs (interfaces that
    /// appear, change or go). Empty (the default) = [`InterfaceSpec::Auto`]: every interface
    /// that is up and not loopback.
    pub fn interfaces(mut self, specs: impl IntoIterator<Item = InterfaceSpec>) -> Self {
        self.interfaces = specs.into_iter().collect();
        self.interface = self.interfaces.first().cloned().unwrap_or_default();
        self
    }

    /// IPv4 directed-broadcast beacons, Zyre's way (default on). Off, a node beacons only by
    /// multicast (and IPv6) and is found by broadcast nodes through its HELLO.
    pub fn broadcast(mut self, on: bool) -> Self {
        self.beacon_opts.broadcast = on;
        self
    }

    /// IPv4 multicast beacons to `group` (e.g. `239.255.90.82`) on every interface, besides
    /// broadcast ([`NodeBuilder::broadcast`] turns that off); TTL 1 unless
    /// [`NodeBuilder::multicast_ttl`] says otherwise.
    pub fn multicast(mut self, group: std::net::Ipv4Addr) -> Self {
        let ttl = self
            .beacon_opts
            .multicast
            .map_or(DEFAULT_MULTICAST_TTL, |m| m.1);
        self.beacon_opts.multicast = Some((group, ttl));
        self
    }

    /// TTL of IPv4 multicast beacons (default 1: they stay on the link).
    pub fn multicast_ttl(mut self, ttl: u32) -> Self {
        if let Some(m) = &mut self.beacon_opts.multicast {
            m.1 = ttl;
        }
        self
    }

    /// IPv6 beacons: link-local multicast to `ff02::1` on every interface, IPv6 addresses
    /// selected, inbox dual-stack. On by itself when only IPv6 addresses are selected.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.beacon_opts.ipv6 = on.then_some(DEFAULT_IPV6_GROUP);
        self
    }

    /// IPv6 beacons to this multicast group instead of `ff02::1` (turns IPv6 beacons on).
    pub fn ipv6_group(mut self, group: std::net::Ipv6Addr) -> Self {
        self.beacon_opts.ipv6 = Some(group);
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

    /// Whether to discover peers with UDP beacons (default true). Without them a node is found
    /// only through the sources added with [`NodeBuilder::discovery_source`].
    pub fn beacons(mut self, on: bool) -> Self {
        self.beacons = on;
        self
    }

    /// The same-host fast path (default on): the node also listens on a Unix socket and talks
    /// to peers on the same host (same boot, machine and network namespace) over theirs instead
    /// of TCP, falling back to TCP whenever a peer's socket is missing or not listening. Its
    /// HELLO says so in `X-ZMESH-IPC` and `X-ZMESH-HOST` (docs/protocol.md).
    pub fn same_host(mut self, on: bool) -> Self {
        self.same_host = on;
        self
    }

    /// Directory of the same-host sockets (default `$XDG_RUNTIME_DIR/zmesh`, else
    /// `/tmp/zmesh-<euid>`); created with mode 0700, and it must not be open to others.
    pub fn same_host_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.same_host_dir = Some(dir.into());
        self
    }

    /// Overrides the host identity of the same-host fast path (default: a hash of the boot id,
    /// the machine id and the network namespace). Nodes with different identities never use
    /// each other's sockets; tests use it to stand for another host.
    pub fn same_host_id(mut self, id: impl Into<String>) -> Self {
        self.same_host_id = Some(id.into());
        self
    }

    /// Adds a discovery source (static peers, DNS, gossip, ...) that runs beside the beacons.
    pub fn discovery_source(mut self, source: impl Source) -> Self {
        self.sources
            .push(SourceSlot(Arc::new(Mutex::new(Some(Box::new(source))))));
        self
    }

    /// **Secure mode**, wire-compatible with Zyre's `zyre_set_zcert`: the node's CURVE key pair
    /// (e.g. `CurveKeyPair::load_cert("node.key")`, a czmq/pyzmq certificate). The inbox becomes a
    /// CURVE server and every outbox a CURVE client of its peer's key; beacons are version 3
    /// (with the key) and HELLO carries `X-PUBLICKEY`; plain ZRE nodes are ignored (and ignore
    /// us). Every message must come over a connection authenticated with the key its sender's
    /// UUID was announced with (see `docs/curve.md`). Without [`NodeBuilder::allow_list`] any
    /// CURVE peer is accepted, and the traffic is still encrypted.
    pub fn secure(mut self, keys: CurveKeyPair) -> Self {
        self.curve_keys = Some(keys);
        self
    }

    /// Secure mode only: the public keys allowed to connect (`AllowList::from_dir(dir)` for a
    /// directory of public certificates). Keep a clone to change it at run time
    /// ([`AllowList::reload`] rereads the directory). Peers announced with other keys are
    /// ignored, so an unlisted node meets this one on neither side.
    pub fn allow_list(mut self, list: AllowList) -> Self {
        self.allow_list = Some(list);
        self
    }

    /// How long a request waits for its reply when it names no timeout (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.requests.default_timeout = timeout;
        self
    }

    /// Most requests of this node pending at once, and to one peer (defaults 131,072 and
    /// 65,536); more fail at once with [`RequestError::Overloaded`].
    pub fn max_requests_in_flight(mut self, per_node: usize, per_peer: usize) -> Self {
        self.requests.max_in_flight = per_node;
        self.requests.max_in_flight_per_peer = per_peer;
        self
    }

    /// Most requests handed to this node's handlers and not answered yet (default 1,024); more
    /// are refused with [`RequestError::Overloaded`] without running a handler.
    pub fn max_running_requests(mut self, n: usize) -> Self {
        self.requests.max_running = n;
        self
    }

    /// Sets one of the node's routable options at start (peers filter on them; change them at
    /// run time with [`Node::set_option`]). Unlike headers, options reach every zmesh peer
    /// again whenever they change.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Credit window this node grants each publisher for its back-pressured subscriptions
    /// (default 1,024 events; see [`Overflow::BackPressure`](crate::Overflow)).
    pub fn emitter_window(mut self, events: u32) -> Self {
        self.emitter_window = events.max(1);
        self
    }

    /// Largest request or reply payload sent or accepted (default 16 MiB).
    pub fn max_request_payload(mut self, bytes: usize) -> Self {
        self.requests.max_payload = bytes;
        self
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
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
        for (k, v) in &self.options {
            let bad = |e: zmesh_core::control::OptionError| Error::InvalidArgument {
                what: "option",
                why: e.to_string(),
            };
            zmesh_core::control::wire::validate_key(k).map_err(bad)?;
            zmesh_core::control::wire::validate_value(v).map_err(bad)?;
        }
        if self.options.len() > zmesh_core::control::wire::MAX_OPTIONS {
            return Err(Error::Config(format!(
                "more than {} options",
                zmesh_core::control::wire::MAX_OPTIONS
            )));
        }
        if let Some((g, ttl)) = self.beacon_opts.multicast {
            if !g.is_multicast() {
                return Err(Error::Config(format!("{g} is not an IPv4 multicast group")));
            }
            if ttl == 0 || ttl > 255 {
                return Err(Error::Config("multicast TTL must be 1-255".into()));
            }
        }
        if let Some(g) = self.beacon_opts.ipv6 {
            if !g.is_multicast() {
                return Err(Error::Config(format!("{g} is not an IPv6 multicast group")));
            }
        }
        if self.beacon_interval.is_zero() {
            return Err(Error::Config("beacon interval must be > 0".into()));
        }
        // The timeouts are the engine's to validate (when it is created in `start`).
        self.requests
            .validate()
            .map_err(|why| Error::Config(why.into()))?;
        if self.allow_list.is_some() && self.curve_keys.is_none() {
            return Err(Error::Config(
                "an allow-list needs a key pair (secure mode: NodeBuilder::secure)".into(),
            ));
        }
        if let Some(ep) = &self.advertised_endpoint {
            ep.parse::<zmesh_zmtp::Endpoint>()
                .map_err(|e| Error::Config(format!("advertised endpoint {ep:?}: {e}")))?;
        }
        self.discovery.validate()
    }

    /// Starts the node: it begins beaconing as soon as an interface is usable, and returns the handle
    /// plus the stream of events. Must be called inside a tokio runtime.
    pub async fn start(mut self) -> Result<(Node, Events), Error> {
        self.validate()?;
        if let Some(keys) = &self.curve_keys {
            // A secure node connects only with the peer's key: a broker must be named with it.
            if let Some(b) = self.brokers.iter().find(|b| b.key.is_none()) {
                return Err(Error::Config(format!(
                    "secure mode: broker {} needs its public key (tcp://IP:PORT|Z85KEY)",
                    b.endpoint
                )));
            }
            // A secure broker announces itself with its key.
            if let Some(own) = &self.broker_self {
                if !own.contains('|') {
                    self.broker_self = Some(format!("{own}|{}", keys.public().to_z85()));
                }
            }
        }
        let uuid = self.uuid.unwrap_or_else(Uuid::new_v4);
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| zmesh_zre::uuid_to_string(&uuid)[..6].to_string());
        let now = Instant::now();
        let mut config = EngineConfig::new(uuid, name.clone());
        config.headers = self.headers.clone();
        let same_host = if self.same_host {
            super::samehost::SameHost::new(self.same_host_id.clone(), self.same_host_dir.clone())
        } else {
            None
        };
        if let Some(s) = &same_host {
            config.headers.push((
                super::samehost::IPC_HEADER.to_owned(),
                format!("ipc://{}", s.path_of(uuid).display()),
            ));
            config
                .headers
                .push((super::samehost::HOST_HEADER.to_owned(), s.host().to_owned()));
        }
        config.evasive_timeout = self.evasive_timeout;
        // An address change is followed within three beacon intervals.
        config.endpoint_move_after = self.beacon_interval.saturating_mul(3);
        config.expired_timeout = self.expired_timeout;
        // Default: PING a quiet peer after half the evasive timeout (2.5 s of 5 s; the side of a
        // pair that defers waits 3.75 s), so a healthy peer answers long before it would be
        // reported EVASIVE, even with short custom timeouts.
        config.ping_interval = self
            .ping_interval
            .unwrap_or_else(|| (self.evasive_timeout / 2).min(config.ping_interval));
        let security = self
            .curve_keys
            .clone()
            .map(|keys| Security::new(keys, self.allow_list.clone()));
        config.public_key = security.as_ref().map(|s| *s.public_key().as_bytes());
        let requests = reqrep::Config {
            // Random, so a restart with the same UUID does not reuse ids peers may still hold.
            first_id: Uuid::new_v4().as_u64_pair().0,
            ..self.requests.clone()
        };
        let layers = LayerConfig {
            reqrep: requests,
            options: self.options.clone(),
            events: zmesh_core::events::Config {
                window: self.emitter_window,
                ..Default::default()
            },
            services: zmesh_core::services::Config {
                // Random, so a restarted caller does not reuse message ids workers still cache.
                first_id: Uuid::new_v4().as_u64_pair().0,
                seed: Uuid::new_v4().as_u64_pair().1,
                ..self.services.clone()
            },
        };
        let driver = Driver::new(config, layers, now)?;
        let started = self
            .discovery
            .start(
                self.curve_keys
                    .clone()
                    .zip(security.as_ref().map(|s| s.inbox_mechanism())),
            )
            .await?;
        let events = Arc::new(EventQueue::new(self.event_capacity));
        let mut identity = Vec::with_capacity(17);
        identity.push(1u8);
        identity.extend_from_slice(uuid.as_bytes());

        let shared = Arc::new(Shared {
            uuid,
            name,
            state: Mutex::new(State {
                driver,
                outboxes: UuidMap::default(),
                events: events.clone(),
                pending_events: std::collections::VecDeque::new(),
                group_subs: Vec::new(),
                event_capacity: self.event_capacity,
                handlers: HashMap::new(),
                running: HashMap::new(),
                next_handler: 1,
                routing: Default::default(),
                emitter: Default::default(),
                services: Default::default(),
                outbox_config: self.outbox.clone(),
                identity: Bytes::from(identity),
                endpoint: None,
                interface: None,
                stopped: false,
                armed: None,
            }),
            stats: Stats::default(),
            runtime: tokio::runtime::Handle::current(),
            wake: Notify::new(),
            security,
            gossip_endpoint: started.gossip_endpoint,
            same_host,
            receive: Default::default(),
        });
        let (stop_tx, stop_rx) = mpsc::channel(4);
        let mut sources: Vec<Box<dyn Source>> =
            self.sources.iter().filter_map(|s| s.take()).collect();
        sources.extend(started.sources);
        if !self.brokers.is_empty() || self.broker_self.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            let own = self
                .broker_self
                .as_deref()
                .and_then(|e| super::brokers::parse_broker(e).ok())
                .map(|b| b.endpoint);
            sources.push(Box::new(super::brokers::BrokerSource::new(
                self.brokers.clone(),
                own,
                rx,
                self.beacon_interval,
            )));
            let mut known: Vec<String> = self
                .brokers
                .iter()
                .map(|b| match b.key {
                    Some(k) => format!("{}|{}", b.endpoint, CurvePublicKey::from_bytes(k).to_z85()),
                    None => b.endpoint.clone(),
                })
                .collect();
            known.extend(self.broker_self.clone());
            let mut state = shared.lock();
            state.services.brokers_tx = Some(tx);
            state.driver.services(|s, io| s.add_brokers(known, io));
        }
        let mut config = self;
        if let Some(s) = &shared.security {
            config.inbox.mechanism = s.inbox_mechanism();
        }
        let task = NodeTask {
            beacon_refused_warned: None,
            shared: shared.clone(),
            config,
            beacon: None,
            sources,
            attached: false,
            next_source: 0,
            departures: Vec::new(),
            tcp_port: 0,
            bound: None,
            next_rescan: std::time::Instant::now(),
        };
        tokio::spawn(task.run(stop_rx));
        let handle = Arc::new(HandleInner { shared, stop_tx });
        let events = Events::new(events, Arc::downgrade(&handle.shared));
        Ok((Node { inner: handle }, events))
    }
}
