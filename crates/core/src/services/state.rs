//! The layer's state: the directory of offers, our own offers, the timers, and the [`Layer`]
//! impl that dispatches to the caller (`client.rs`), worker (`worker.rs`) and broker
//! (`relay.rs`) sides.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;

use super::client::Call;
use super::relay::Relay;
use super::wire::{self, BrokerList, Offer, ServiceStats, StatsBody, WireError};
use super::worker::Entry;
use super::{CallKey, Config, Delivery, Stats};
use crate::envelope::{self, Envelope};
use crate::layer::{Input, Io, Layer};

/// What is known about one peer that runs the layer.
#[derive(Debug, Clone, Default)]
pub(super) struct Remote {
    pub(super) offer: Offer,
}

/// A timer: what it is for (lazily cancelled: each owner keeps its own due instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A call's try timeout, backoff or deadline.
    Call(u64),
    /// A running call's deadline (worker).
    Running(CallKey),
    /// A relayed call's deadline (broker).
    Relay(CallKey),
    /// The broker's periodic gossip.
    Gossip,
}

/// How often a broker re-sends its broker list to the brokers it is connected to.
pub const GOSSIP_INTERVAL: Duration = Duration::from_secs(10);

/// The services layer (module docs).
#[derive(Debug)]
pub struct Services<W> {
    pub(super) config: Config,
    pub(super) started: Option<Instant>,
    pub(super) next_id: u64,
    rng: u64,
    /// Peers that announced the layer.
    pub(super) peers: BTreeMap<Uuid, Remote>,
    /// Our offered services and their counters.
    pub(super) offered: BTreeMap<String, ServiceStats>,
    pub(super) offer_version: u64,
    pub(super) draining: bool,
    // Caller side.
    pub(super) calls: HashMap<u64, Call<W>>,
    pub(super) pending_to: HashMap<Uuid, usize>,
    pub(super) last_pick: Option<Uuid>,
    // Worker side.
    pub(super) cache: HashMap<CallKey, Entry>,
    /// Answered entries in answer order, with their expiry.
    pub(super) answered: VecDeque<(Instant, CallKey)>,
    pub(super) running: usize,
    pub(super) cached_bytes: usize,
    // Broker side.
    pub(super) relays: HashMap<CallKey, Relay>,
    pub(super) brokers: BTreeSet<String>,
    pub(super) timers: BTreeSet<(Instant, Timer)>,
    pub(super) gossip_due: Option<Instant>,
    pub(super) stats: Stats,
}

impl<W> Services<W> {
    /// A layer with `config` (call [`Config::validate`] first; invalid limits are clamped).
    pub fn new(config: Config) -> Services<W> {
        let mut config = config;
        config.max_cached = config.max_cached.max(1);
        config.max_in_flight = config.max_in_flight.max(1);
        config.max_running = config.max_running.max(1);
        config.max_backoff = config.max_backoff.max(config.backoff);
        Services {
            next_id: config.first_id,
            rng: config.seed ^ 0x9E37_79B9_7F4A_7C15,
            config,
            started: None,
            peers: BTreeMap::new(),
            offered: BTreeMap::new(),
            offer_version: 1,
            draining: false,
            calls: HashMap::new(),
            pending_to: HashMap::new(),
            last_pick: None,
            cache: HashMap::new(),
            answered: VecDeque::new(),
            running: 0,
            cached_bytes: 0,
            relays: HashMap::new(),
            brokers: BTreeSet::new(),
            timers: BTreeSet::new(),
            gossip_due: None,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True if this node is a broker.
    pub fn is_broker(&self) -> bool {
        self.config.broker
    }

    /// The services we offer, sorted.
    pub fn offered(&self) -> impl Iterator<Item = &str> {
        self.offered.keys().map(String::as_str)
    }

    /// Our counters per service, and our role, as a STATS answer carries them.
    pub fn own_stats(&self, now: Instant) -> StatsBody {
        StatsBody {
            broker: self.config.broker,
            uptime_ms: self
                .started
                .map_or(0, |s| now.saturating_duration_since(s).as_millis() as u64),
            relayed: self.stats.relayed,
            services: self.offered.values().cloned().collect(),
        }
    }

    /// The peers offering `service` (brokers flagged `true`), in UUID order.
    pub fn workers(&self, service: &str) -> impl Iterator<Item = (Uuid, bool)> + '_ {
        let service = service.to_owned();
        self.peers.iter().filter_map(move |(u, r)| {
            r.offer
                .services
                .binary_search(&service)
                .is_ok()
                .then_some((*u, r.offer.broker))
        })
    }

    /// Every peer's offer: (peer, broker?, services), in UUID order.
    pub fn directory(&self) -> impl Iterator<Item = (Uuid, bool, &[String])> {
        self.peers
            .iter()
            .map(|(u, r)| (*u, r.offer.broker, r.offer.services.as_slice()))
    }

    /// The broker endpoints known (our own if we are one, and those learned).
    pub fn brokers(&self) -> impl Iterator<Item = &str> {
        self.brokers.iter().map(String::as_str)
    }

    /// Offers `service` and tells every peer. Fails for an invalid name or too many services.
    pub fn offer(&mut self, service: &str, io: &mut impl Io<Delivery<W>>) -> Result<(), WireError> {
        wire::validate_service(service)?;
        if self.offered.contains_key(service) {
            return Ok(());
        }
        if self.offered.len() >= wire::MAX_SERVICES {
            return Err(WireError::TooMany("services"));
        }
        self.offered.insert(
            service.to_owned(),
            ServiceStats {
                name: service.to_owned(),
                ..ServiceStats::default()
            },
        );
        self.offer_changed(io);
        Ok(())
    }

    /// Withdraws `service` and tells every peer; its running calls end ([`Delivery::Ended`]).
    /// False if it was not offered.
    pub fn withdraw(&mut self, service: &str, now: Instant, io: &mut impl Io<Delivery<W>>) -> bool {
        if !self.offered.contains_key(service) {
            return false;
        }
        self.end_running_of(service, now, io);
        self.offered.remove(service);
        self.offer_changed(io);
        true
    }

    /// Adds broker endpoints (configured, or our own when we are a broker); a broker tells the
    /// brokers it knows. Returns true if something was new.
    pub fn add_brokers<S: AsRef<str>>(
        &mut self,
        endpoints: impl IntoIterator<Item = S>,
        io: &mut impl Io<Delivery<W>>,
    ) -> bool {
        let mut added = false;
        for e in endpoints {
            let e = e.as_ref();
            if e.is_empty()
                || e.len() > wire::MAX_ENDPOINT
                || self.brokers.len() >= wire::MAX_BROKERS
            {
                continue;
            }
            added |= self.brokers.insert(e.to_owned());
        }
        if added {
            io.deliver(Delivery::Brokers {
                endpoints: self.brokers.iter().cloned().collect(),
            });
            if self.config.broker {
                self.gossip(io);
            }
        }
        added
    }

    /// Asks `peer` for its stats; the answer is [`Delivery::Stats`] with the returned query id
    /// (no answer if the peer is gone: the caller decides how long to wait).
    pub fn query_stats(&mut self, peer: Uuid, io: &mut impl Io<Delivery<W>>) -> Option<u64> {
        if !self.peers.contains_key(&peer) {
            return None;
        }
        let id = self.fresh_id();
        let env = Envelope::new(envelope::Layer::SERVICES, wire::STATS_QUERY, id);
        io.send(peer, encode(&env));
        Some(id)
    }

    pub(super) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// A uniform number in [0, 1) from the seeded generator (splitmix64: a few lines, seedable,
    /// deterministic across platforms; the layer needs nothing stronger for jitter).
    pub(super) fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The OFFER we send: our own services, or (a broker) our workers' union — empty while
    /// draining.
    fn own_offer(&self) -> Offer {
        let services: Vec<String> = if self.draining {
            Vec::new()
        } else if self.config.broker {
            let all: BTreeSet<&String> = self
                .peers
                .values()
                .filter(|r| !r.offer.broker)
                .flat_map(|r| r.offer.services.iter())
                .collect();
            all.into_iter().take(wire::MAX_SERVICES).cloned().collect()
        } else {
            self.offered.keys().cloned().collect()
        };
        Offer {
            version: self.offer_version,
            broker: self.config.broker,
            services,
        }
    }

    fn offer_frame(&self) -> Bytes {
        let mut env = Envelope::new(envelope::Layer::SERVICES, wire::OFFER, self.offer_version);
        env.payload = self.own_offer().encode();
        encode(&env)
    }

    pub(super) fn offer_changed(&mut self, io: &mut impl Io<Delivery<W>>) {
        self.offer_version += 1;
        let frame = self.offer_frame();
        for peer in self.peers.keys() {
            io.send(*peer, frame.clone());
        }
    }

    fn gossip_frame(&mut self) -> Bytes {
        let id = self.fresh_id();
        let mut env = Envelope::new(envelope::Layer::SERVICES, wire::BROKERS, id);
        env.payload = BrokerList {
            endpoints: self.brokers.iter().cloned().collect(),
        }
        .encode();
        encode(&env)
    }

    /// A broker sends its list to every peer.
    fn gossip(&mut self, io: &mut impl Io<Delivery<W>>) {
        if self.brokers.is_empty() {
            return;
        }
        let frame = self.gossip_frame();
        for peer in self.peers.keys() {
            io.send(*peer, frame.clone());
        }
    }

    pub(super) fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.insert((at, timer));
    }

    pub(super) fn malformed(&mut self, from: Uuid, why: impl std::fmt::Display) {
        self.stats.malformed += 1;
        debug!(peer = %from, %why, "malformed services envelope dropped");
    }

    fn on_offer(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        let offer = match Offer::decode(&env.payload) {
            Ok(o) => o,
            Err(e) => return self.malformed(from, format!("bad OFFER: {e}")),
        };
        let Some(remote) = self.peers.get_mut(&from) else {
            return self.malformed(from, "OFFER from a peer that is not up");
        };
        if remote.offer.version >= offer.version && remote.offer.version != 0 {
            return;
        }
        let before = std::mem::replace(&mut remote.offer, offer);
        // A broker's offer is its workers' union: re-advertise when a worker's changed.
        if self.config.broker && !self.peers[&from].offer.broker {
            let after = &self.peers[&from].offer.services;
            if *after != before.services {
                self.offer_changed(io);
            }
        }
    }

    fn on_brokers(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        match BrokerList::decode(&env.payload) {
            Ok(list) => {
                self.add_brokers(list.endpoints, io);
            }
            Err(e) => self.malformed(from, format!("bad BROKERS: {e}")),
        }
    }

    fn is_broker_peer(&self, peer: Uuid) -> bool {
        self.peers.get(&peer).is_some_and(|r| r.offer.broker)
    }

    /// A STATS query: answered with our counters; a broker also passes it on to its workers
    /// (naming the asker in `origin`), whose answers it relays back, so a node that reaches
    /// only brokers still sees every worker's stats.
    fn on_stats_query(
        &mut self,
        from: Uuid,
        env: Envelope,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        if env.origin.is_some() && !self.is_broker_peer(from) {
            return self.malformed(from, "STATS_QUERY naming an origin from a non-broker");
        }
        let id = self.fresh_id();
        let mut out = Envelope::new(envelope::Layer::SERVICES, wire::STATS, id);
        out.corr = Some(env.id);
        out.dest = env.origin;
        out.payload = self.own_stats(now).encode();
        io.send(from, encode(&out));
        if self.config.broker && env.origin.is_none() {
            let mut fwd = Envelope::new(envelope::Layer::SERVICES, wire::STATS_QUERY, env.id);
            fwd.origin = Some(from);
            let frame = encode(&fwd);
            for (peer, r) in &self.peers {
                if *peer != from && !r.offer.broker && !r.offer.services.is_empty() {
                    io.send(*peer, frame.clone());
                }
            }
        }
    }

    fn on_stats(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery<W>>) {
        let Some(query) = env.corr else {
            return self.malformed(from, "STATS without corr");
        };
        if let Some(dest) = env.dest {
            // A worker's answer to a query we passed on: relay it, naming the worker.
            if !self.config.broker || !self.peers.contains_key(&dest) {
                return;
            }
            let mut out = env;
            out.dest = None;
            out.origin = Some(from);
            io.send(dest, encode(&out));
            return;
        }
        // `origin` names the worker only when a broker relays.
        let peer = match env.origin {
            Some(o) if self.is_broker_peer(from) => o,
            Some(_) => return self.malformed(from, "STATS naming an origin from a non-broker"),
            None => from,
        };
        match StatsBody::decode(&env.payload) {
            Ok(stats) => io.deliver(Delivery::Stats { query, peer, stats }),
            Err(e) => self.malformed(from, format!("bad STATS: {e}")),
        }
    }

    fn on_timeout(&mut self, now: Instant, io: &mut impl Io<Delivery<W>>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Call(id) => self.call_timer(id, at, now, io),
                Timer::Running(key) => self.running_timer(key, at, now, io),
                Timer::Relay(key) => self.relay_timer(key, at),
                Timer::Gossip => {
                    self.gossip_due = None;
                    if self.config.broker && !self.draining {
                        self.gossip(io);
                        self.gossip_due = Some(now + GOSSIP_INTERVAL);
                        self.arm(now + GOSSIP_INTERVAL, Timer::Gossip);
                    }
                }
            }
        }
        self.expire_answered(now);
    }

    /// Ends everything (the node stops): our calls end `Stopped`, running calls `Ended`.
    pub fn stop(&mut self, now: Instant, io: &mut impl Io<Delivery<W>>) {
        self.stop_calls(now, io);
        let mut keys: Vec<CallKey> = self
            .cache
            .iter()
            .filter(|(_, e)| e.is_running())
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        for key in keys {
            io.deliver(Delivery::Ended { key });
        }
        self.cache.clear();
        self.answered.clear();
        self.running = 0;
        self.cached_bytes = 0;
        self.relays.clear();
        self.peers.clear();
        self.timers.clear();
        self.gossip_due = None;
    }

    /// The earliest instant anything is due.
    fn next_due(&self) -> Option<Instant> {
        [
            self.timers.first().map(|t| t.0),
            self.answered.front().map(|a| a.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

pub(super) fn encode(env: &Envelope) -> Bytes {
    // Subjects are validated service names (at most 64 bytes).
    env.encode().expect("service envelopes have short subjects")
}

impl<W> Layer for Services<W> {
    const ID: envelope::Layer = envelope::Layer::SERVICES;
    type Command = std::convert::Infallible;
    type Delivery = Delivery<W>;

    fn handle(
        &mut self,
        input: Input<'_, Self::Command>,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        if self.started.is_none() {
            self.started = Some(now);
            if self.config.broker {
                self.gossip_due = Some(now + GOSSIP_INTERVAL);
                self.arm(now + GOSSIP_INTERVAL, Timer::Gossip);
            }
        }
        match input {
            Input::PeerUp(view) => {
                if view.caps.has(envelope::Layer::SERVICES) {
                    self.peers.insert(view.peer, Remote::default());
                    io.send(view.peer, self.offer_frame());
                    if self.config.broker && !self.brokers.is_empty() {
                        let f = self.gossip_frame();
                        io.send(view.peer, f);
                    }
                }
            }
            Input::PeerDown { peer } => {
                if let Some(r) = self.peers.remove(&peer) {
                    if self.config.broker && !r.offer.broker && !r.offer.services.is_empty() {
                        self.offer_changed(io);
                    }
                    self.peer_gone(peer, now, io);
                }
            }
            Input::Envelope { from, envelope, .. } => {
                if !self.peers.contains_key(&from) {
                    return self.malformed(from, "envelope from a peer that is not up");
                }
                match envelope.kind {
                    wire::OFFER => self.on_offer(from, envelope, io),
                    wire::CALL => self.on_call(from, envelope, now, io),
                    wire::REPLY | wire::ERROR => self.on_answer(from, envelope, now, io),
                    wire::STATS_QUERY => self.on_stats_query(from, envelope, now, io),
                    wire::STATS => self.on_stats(from, envelope, io),
                    wire::BROKERS => self.on_brokers(from, envelope, io),
                    k => self.malformed(from, format!("unknown kind {k}")),
                }
            }
            Input::Timeout => self.on_timeout(now, io),
            Input::Joined { .. } | Input::Left { .. } => {}
            Input::Command(never) => match never {},
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_due()
    }
}

impl<W> Services<W> {
    /// A peer left: our calls to it retry, its running calls stay (the answer may still reach
    /// it through another path), relays through it end.
    fn peer_gone(&mut self, peer: Uuid, now: Instant, io: &mut impl Io<Delivery<W>>) {
        self.calls_peer_gone(peer, now, io);
        self.relays_peer_gone(peer, io);
        debug_assert!(
            !self.pending_to.contains_key(&peer),
            "tries left at a gone peer"
        );
    }
}
