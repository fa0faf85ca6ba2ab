//! Named services: workers that offer them, calls with retries, de-duplication at the worker,
//! and brokers that relay calls (layer 4, capability `svc`), as a sans-IO [`Layer`].
//!
//! # Offers
//!
//! A node offers named services ([`Services::offer`]); several nodes may offer the same one and
//! a node can call and offer at once. The offered set travels whole in an OFFER message, to a
//! peer when it comes up and to every peer when it changes, so offers appear and disappear at
//! run time everywhere within one trip (the control layer's whole-state design: a lost or
//! reordered OFFER is repaired by the next; a version orders them). A node that leaves takes its
//! offers with it ([`Services::workers`] is the directory).
//!
//! # Calls
//!
//! [`Services::call`] sends one CALL to one **worker**: among the peers offering the service,
//! the one with the fewest of our calls outstanding, the next one in UUID order among equals
//! (round robin, as [`crate::routing`] does for requests). Every message carries its fields in
//! the envelope: sender (the ZRE peer, or `origin` when a broker relays it), receiver (the ZRE
//! peer, or `dest` when relayed), a **message id** unique per caller (the envelope id, the
//! same on every retry; the shell seeds the first at random so a restarted caller does not reuse
//! ids), the **possible-duplicate** flag (set on every retry), the **original message id** on
//! replies (`corr`), the **retry count** (`attempt`) and the time the caller still waits
//! (`ttl_ms`, relative: clocks need not agree).
//!
//! **Retries.** A try that gets no answer within its per-try timeout ([`CallSpec::per_try`]),
//! whose worker leaves, or that is answered "not here" (the worker no longer offers the
//! service, is overloaded, a broker lost the worker or is draining) is sent again — same message
//! id, possible-duplicate set, retry count + 1 — up to [`CallSpec::retries`] times, after a
//! backoff that doubles from [`Config::backoff`] up to [`Config::max_backoff`] with ±50 % jitter
//! (drawn from a generator seeded by the shell, [`Config::seed`], so the simulator replays
//! exactly). A retry goes to another worker when there is one (so a dead or partitioned worker is
//! not waited on twice), to the same one otherwise. The total deadline ([`CallSpec::timeout`])
//! bounds everything: the call ends then with [`CallError::Timeout`]. A reply to **any** try ends
//! the call (a slow first worker's late answer is as good as the retry's).
//!
//! Every call ends **exactly once** with [`Delivery::Done`] (reply, handler error, no worker at
//! all, timeout, stopped) and reports how many tries it took, the worker that answered and the
//! broker it came through ([`CallInfo`]).
//!
//! # De-duplication and the guarantee
//!
//! A worker keys every call by **(caller, message id)** — the caller being `origin` when a broker
//! relays it, so the same call through two brokers has one key. A call that arrives while the
//! same key is running is not handed to the application again: it joins the running one, and the
//! answer goes to every path it arrived on. A call whose key was answered within the last
//! [`Config::dedup_window`] gets the same answer again from the **reply cache** without running.
//! The cache is bounded ([`Config::max_cached`] entries, [`Config::max_cached_bytes`] of
//! payload); when full, the oldest answered entry is evicted early (counted in
//! [`Stats::evicted`]).
//!
//! The result, exactly:
//!
//! * **At-least-once delivery** of a call to *some* worker while the deadline allows and retries
//!   remain: the caller holds the payload until it has an answer, and nothing between caller and
//!   worker (a broker, a connection) holds anything vital.
//! * **At-most-once processing per worker within the window**: one worker hands a given
//!   (caller, message id) to its application at most once while its entry lives, i.e. from the
//!   first arrival until `dedup_window` after the answer (an unanswered call's entry lives until
//!   its deadline, then is kept as answered "expired" for the window).
//! * Where it ends: a worker that **restarts** loses its cache; a retry that goes to **another
//!   worker** is processed there too (the caller only does that after a try failed or timed out,
//!   so handlers that must run once overall must be idempotent, or callers use `retries = 0`);
//!   an entry **evicted** early or older than the window no longer absorbs a duplicate. A
//!   [`CallError::Timeout`] means "maybe processed". Brokers relay each call to the worker a
//!   rendezvous hash of (caller, message id) names among the workers they see, so a retry through
//!   another broker reaches the same worker while it lives, and is absorbed there.
//!
//! # Brokers
//!
//! A node configured as a broker ([`Config::broker`]) offers, in its OFFER (role "broker"), the
//! union of the services its peers offer; a CALL to it is relayed to a worker (rendezvous hash,
//! above) with `origin` = the caller; the worker answers the broker it came through with `dest` =
//! the caller, and the broker relays the answer with `origin` = the worker. A broker holds only
//! the relay table (who waits for what), bounded and ended by each call's deadline; when the
//! worker leaves it tells the caller at once (ERROR "worker lost", the caller retries); when it
//! dies, callers retry through another path. A broker never relays to another broker (no loops).
//! A stopping broker withdraws its offer, answers new calls "draining" and lets what it holds
//! finish ([`Services::drain`], [`Services::is_drained`]). Brokers also carry the list of broker
//! endpoints (BROKERS message) so a node configured with one learns the others.
//!
//! # Introspection
//!
//! Every node answers a STATS query (ping, info and stats at once, NATS micro's three verbs) with
//! its services' counters: requests, errors, processing time, duplicates absorbed, calls running,
//! last error ([`wire::StatsBody`]); [`Services::query_stats`] asks a peer.

mod client;
mod relay;
mod state;
pub mod wire;
mod worker;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use uuid::Uuid;

pub use state::Services;
pub use wire::{ErrorClass, ServiceStats, StatsBody, WireError};

#[allow(unused_imports)] // doc links
use crate::layer::Layer;

/// Default total time a call waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default reply-cache window (JetStream's duplicate window).
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// Names one call on the caller's side: its message id.
pub type CallId = u64;

/// Names one call on a worker: the caller and its message id (the de-duplication key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    /// The caller (the original sender, through brokers).
    pub caller: Uuid,
    /// Its message id.
    pub id: CallId,
}

/// Limits and defaults of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Total timeout of a call that names none.
    pub default_timeout: Duration,
    /// First retry backoff (doubles per retry).
    pub backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// How long an answered call's reply stays cached.
    pub dedup_window: Duration,
    /// Most entries in the reply cache (running and answered).
    pub max_cached: usize,
    /// Most payload bytes held by the reply cache.
    pub max_cached_bytes: usize,
    /// Calls pending on this node (caller side).
    pub max_in_flight: usize,
    /// Calls handed to the application and not answered (worker side).
    pub max_running: usize,
    /// Calls a broker relays at once.
    pub max_relays: usize,
    /// Largest call or reply payload.
    pub max_payload: usize,
    /// The first message id (the shell seeds it at random; the simulator from its RNG).
    pub first_id: u64,
    /// Seed of the backoff jitter.
    pub seed: u64,
    /// This node relays calls (a broker).
    pub broker: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_timeout: DEFAULT_TIMEOUT,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            dedup_window: DEFAULT_DEDUP_WINDOW,
            max_cached: 65_536,
            max_cached_bytes: 64 << 20,
            max_in_flight: 1 << 17,
            max_running: 1024,
            max_relays: 1 << 17,
            max_payload: 16 << 20,
            first_id: 1,
            seed: 0,
            broker: false,
        }
    }
}

impl Config {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.default_timeout.is_zero() {
            return Err("call timeout must be > 0");
        }
        if self.max_cached == 0 || self.max_in_flight == 0 || self.max_running == 0 {
            return Err("service limits must be > 0");
        }
        if self.backoff > self.max_backoff {
            return Err("backoff must not exceed max backoff");
        }
        Ok(())
    }
}

/// Which paths a call may take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Via {
    /// Workers and brokers alike.
    #[default]
    Any,
    /// Only workers directly (no broker).
    Direct,
    /// Only through brokers.
    Brokers,
}

/// One call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The service.
    pub service: String,
    /// The request.
    pub payload: Bytes,
    /// Total time to wait (`None`: [`Config::default_timeout`]).
    pub timeout: Option<Duration>,
    /// Time one try waits before the next (`None`: the total divided evenly among the tries).
    pub per_try: Option<Duration>,
    /// Retries after the first try.
    pub retries: u16,
    /// Which paths.
    pub via: Via,
}

impl CallSpec {
    /// A call of `service` with `payload`, default timeout, no retry.
    pub fn new(service: impl Into<String>, payload: impl Into<Bytes>) -> CallSpec {
        CallSpec {
            service: service.into(),
            payload: payload.into(),
            timeout: None,
            per_try: None,
            retries: 0,
            via: Via::Any,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The deadline passed (the call may have been processed).
    #[error("call timed out")]
    Timeout,
    /// Nobody offers the service (and no retry is left to wait for one).
    #[error("no worker offers the service")]
    NoService,
    /// The handler answered with an error.
    #[error("handler error {code}: {message}")]
    Handler {
        /// Application code.
        code: u16,
        /// Application message.
        message: String,
    },
    /// Every try was refused for load (ours or the workers').
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// The last try's worker (or broker) was lost, and no retry was left (maybe processed).
    #[error("worker lost before answering")]
    WorkerLost,
    /// The payload exceeds the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// This node stopped.
    #[error("node stopped")]
    Stopped,
    /// The service name is not valid (a caller's mistake).
    #[error("invalid service name: {0}")]
    InvalidName(String),
}

/// How a call went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// Tries sent (1 + retries).
    pub tries: u16,
    /// The worker that answered (or was last tried).
    pub worker: Option<Uuid>,
    /// The broker the answer came through (or the last try went through).
    pub broker: Option<Uuid>,
    /// From the call to its end.
    pub latency: Duration,
}

/// What the layer hands to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery<W> {
    /// A call of ours ended (exactly once per call).
    Done {
        /// As given to [`Services::call`].
        waiter: W,
        /// Its message id.
        id: CallId,
        /// The reply, or why there is none.
        result: Result<Bytes, CallError>,
        /// Tries, worker, broker, latency.
        info: CallInfo,
    },
    /// A call for a service we offer: answer with [`Services::reply`].
    Call {
        /// Names it in the answer.
        key: CallKey,
        /// The service.
        service: String,
        /// The request.
        payload: Bytes,
        /// Its retry count when it first arrived.
        attempt: u16,
        /// The caller stops waiting at this instant.
        deadline: Instant,
    },
    /// A call handed to the application will not be answered (its deadline passed, the node
    /// stopped, or the service was withdrawn).
    Ended {
        /// The call.
        key: CallKey,
    },
    /// A peer answered [`Services::query_stats`].
    Stats {
        /// As returned by the query.
        query: u64,
        /// The peer.
        peer: Uuid,
        /// Its counters.
        stats: StatsBody,
    },
    /// The brokers known changed (endpoints learned from BROKERS messages, with our own).
    Brokers {
        /// Every endpoint known, sorted.
        endpoints: Vec<String>,
    },
}

/// Counters of the layer (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls started.
    pub calls: u64,
    /// CALL messages sent (tries, retries included).
    pub tries_sent: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls that ended with a reply.
    pub replied: u64,
    /// Calls that ended with an error.
    pub failed: u64,
    /// Replies for calls that had ended (or from a peer not tried).
    pub late_replies: u64,
    /// CALLs received.
    pub calls_received: u64,
    /// Duplicates absorbed (joined a running call or answered from the cache).
    pub duplicates: u64,
    /// Cache entries evicted before their window ended (memory bound).
    pub evicted: u64,
    /// Answers given after the call's entry ended.
    pub replies_after_end: u64,
    /// Calls refused for load.
    pub refused: u64,
    /// Calls relayed (brokers).
    pub relayed: u64,
    /// Relayed calls whose worker left before answering.
    pub relays_lost: u64,
    /// Envelopes of this layer that were unusable.
    pub malformed: u64,
}
