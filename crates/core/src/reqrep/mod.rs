//! Request/reply and ticks between zmesh peers (Zeronode's core), as a sans-IO [`Layer`].
//!
//! A requester sends REQUEST(event, payload, ttl) to one peer and waits for exactly one outcome;
//! the responder hands the request to the first handler whose [`Pattern`] matches the event, and
//! sends back REPLY or ERROR. A TICK is the same envelope with nobody answering.
//!
//! # Outcomes, each as early as the truth is known
//!
//! Every request started with [`ReqRep::request`] ends **exactly once** with a
//! [`Delivery::Done`]. What each outcome says about the handler:
//!
//! | outcome | when | did a handler run? |
//! |---|---|---|
//! | reply | REPLY arrived | yes, and it answered |
//! | [`RequestError::Handler`] | ERROR from the handler | yes, and it failed |
//! | [`RequestError::NoResponders`] | at once: unknown peer, peer without the `req` capability (plain ZRE), or the responder has no handler for the event (its ERROR, one round trip) | no |
//! | [`RequestError::Overloaded`] | at once: our in-flight limits; or the responder's handler limit (ERROR) | no |
//! | [`RequestError::PayloadTooLarge`] | at once (ours), or the responder's limit (ERROR) | no |
//! | [`RequestError::PeerLeft`] | the peer's EXIT while waiting | **unknown**: it may have run |
//! | [`RequestError::Timeout`] | the deadline passed | **unknown**: it may have run, or still be running |
//! | [`RequestError::Cancelled`] | the application cancelled (the responder is told with CANCEL) | **unknown** |
//! | [`RequestError::Stopped`] | this node stopped | **unknown** |
//!
//! A reply that arrives after its request ended (late, or from a peer it was not sent to) is
//! counted ([`Stats::late_replies`], [`Stats::foreign_replies`]) and dropped.
//!
//! # Delivery and back-pressure contract
//!
//! * At most once: a request is sent once; this layer never retries (the services layer adds
//!   retries with de-duplication). Per peer, requests are sent in call order over one ZRE session.
//! * Bounded everywhere: at most [`Config::max_in_flight`] requests pending on this node and
//!   [`Config::max_in_flight_per_peer`] to one peer (more fail at once with `Overloaded`); at
//!   most [`Config::max_running`] requests handed to handlers and not yet answered (more are
//!   answered `Overloaded` by the responder, without running a handler). Every pending entry
//!   ends at its deadline or when its peer leaves, so no state outlives either.
//! * The responder learns the requester's deadline (`ttl_ms`, relative, so clocks need not
//!   agree) and forgets the request when it passes; a reply given after that is counted
//!   ([`Stats::replies_after_end`]) and not sent.
//! * Ticks are at-most-once and go to **every** matching tick handler; a tick nobody handles is
//!   counted ([`Stats::ticks_unhandled`]) and dropped. A handler that keeps up is the
//!   application's business (the shell bounds its tick queues).
//!
//! Handlers are registered by pattern ([`crate::pattern`]); for a request the first registered
//! matching handler wins (register specific patterns before catch-alls). Registration applies to
//! peers present and future.

mod gather;
mod state;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use uuid::Uuid;

pub use state::{ReqRep, TickError};

#[allow(unused_imports)] // doc links
use crate::{layer::Layer, pattern::Pattern};

/// Default time a request waits for its reply (Zeronode: 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Names one request on the requester's side (it is the REQUEST envelope's id).
pub type RequestId = u64;

/// Names one scatter/gather ([`ReqRep::gather`]).
pub type GatherId = u64;

/// One request to many peers ([`ReqRep::gather`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherSpec {
    /// The peers to ask (duplicates are asked once).
    pub peers: Vec<Uuid>,
    /// Event name.
    pub event: String,
    /// Argument (the same for every peer).
    pub payload: Bytes,
    /// The longest the gather lasts, and each request's timeout (`None`:
    /// [`Config::default_timeout`]).
    pub max_wait: Option<Duration>,
    /// End when this long passed since the last outcome (`None`: never).
    pub stall: Option<Duration>,
    /// End after this many answers (replies and handler errors; `None`: no limit).
    pub max_answers: Option<usize>,
}

/// Why a gather ended (exactly one [`Delivery::GatherEnded`] per gather).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GatherEnd {
    /// Every peer asked has an outcome.
    AllDone,
    /// The maximum wait passed.
    MaxWait,
    /// The stall period passed without a new outcome.
    Stall,
    /// The maximum number of answers arrived.
    MaxAnswers,
    /// Nobody to ask: no peer matched.
    NoResponders,
    /// The application cancelled it.
    Cancelled,
    /// This node stopped.
    Stopped,
}

/// Names one registered handler; chosen by the caller of [`Command::Register`].
pub type HandlerId = u64;

/// Names one request on the responder's side: the requester and its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundKey {
    /// The requester.
    pub peer: Uuid,
    /// Its request id.
    pub id: RequestId,
}

/// Limits and defaults of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Timeout of a request that names none (default [`DEFAULT_TIMEOUT`]).
    pub default_timeout: Duration,
    /// Requests pending on this node at once (default 131,072).
    pub max_in_flight: usize,
    /// Requests pending to one peer at once (default 65,536).
    pub max_in_flight_per_peer: usize,
    /// Requests handed to handlers and not yet answered (default 1,024).
    pub max_running: usize,
    /// Largest request or reply payload sent or accepted (default 16 MiB).
    pub max_payload: usize,
    /// The first request id (the shell seeds it at random, so a restarted node with the same UUID
    /// does not reuse ids its peers may still hold; the simulator seeds it from its RNG).
    pub first_id: u64,
}

impl Config {
    /// Checks the limits: every one must be above zero.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.default_timeout.is_zero() {
            return Err("request timeout must be > 0");
        }
        if self.max_in_flight == 0 || self.max_in_flight_per_peer == 0 || self.max_running == 0 {
            return Err("request limits must be > 0");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_timeout: DEFAULT_TIMEOUT,
            max_in_flight: 1 << 17,
            max_in_flight_per_peer: 1 << 16,
            max_running: 1024,
            max_payload: 16 << 20,
            first_id: 1,
        }
    }
}

/// Why a request failed. See the module docs for what each says about the handler.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply before the deadline.
    #[error("request timed out")]
    Timeout,
    /// Nobody can answer: answered at once, not by timeout.
    #[error("no responders: {0}")]
    NoResponders(NoResponders),
    /// The peer left while the request was pending.
    #[error("peer left before replying")]
    PeerLeft,
    /// The handler answered with an error.
    #[error("handler error {code}: {message}")]
    Handler {
        /// Application error code.
        code: u16,
        /// Application message.
        message: String,
    },
    /// The request was cancelled by this node's application.
    #[error("request cancelled")]
    Cancelled,
    /// A limit on requests in flight (ours) or running handlers (the responder's) is reached.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// The payload exceeds our or the responder's limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// This node stopped.
    #[error("node stopped")]
    Stopped,
    /// The event name is not valid (a caller's mistake: never the outcome of a sent request).
    #[error("invalid event name: {0}")]
    InvalidName(crate::pattern::NameError),
}

/// Why nobody can answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NoResponders {
    /// No such peer is present.
    #[error("unknown peer")]
    UnknownPeer,
    /// No peer matches the routing filter and serves the event (a routed request, `any`).
    #[error("no peer matches the filter and serves the event")]
    NoMatch,
    /// The peer does not run the request layer (a plain Zyre, Pyre or zyre.js peer).
    #[error("peer does not speak zmesh requests")]
    NotCapable,
    /// The peer has no handler for the event.
    #[error("no handler for the event")]
    NoHandler,
}

/// Which handlers a registration receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// Requests (the first matching handler answers).
    Request,
    /// Ticks (every matching handler gets a copy).
    Tick,
}

/// Why a request handed to a handler ended without its answer being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The requester cancelled.
    Cancelled,
    /// The requester left.
    PeerLeft,
    /// The requester's deadline passed.
    Expired,
    /// This node stopped.
    Stopped,
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Target peer.
    pub peer: Uuid,
    /// Event name.
    pub event: String,
    /// Argument.
    pub payload: Bytes,
    /// `None`: [`Config::default_timeout`].
    pub timeout: Option<Duration>,
}

/// Application commands (the node calls the inherent methods directly; the simulator and the
/// fuzz harness go through [`Layer::handle`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Command<W> {
    /// See [`ReqRep::request`].
    Request {
        /// Returned in the request's [`Delivery::Done`].
        waiter: W,
        /// What to send where.
        spec: RequestSpec,
    },
    /// See [`ReqRep::tick`].
    Tick {
        /// Target peer.
        peer: Uuid,
        /// Event name.
        event: String,
        /// Argument.
        payload: Bytes,
    },
    /// See [`ReqRep::cancel`].
    Cancel(RequestId),
    /// See [`ReqRep::register`].
    Register {
        /// Caller-chosen id.
        id: HandlerId,
        /// What it matches.
        pattern: Pattern,
        /// Requests or ticks.
        kind: HandlerKind,
    },
    /// See [`ReqRep::unregister`].
    Unregister(HandlerId),
    /// See [`ReqRep::reply`].
    Reply {
        /// The request answered.
        key: InboundKey,
        /// The answer: a payload, or an application error code and message.
        result: Result<Bytes, (u16, String)>,
    },
    /// See [`ReqRep::abandon`].
    Abandon(InboundKey),
}

/// What the layer hands to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery<W> {
    /// A request of ours ended (exactly once per request).
    Done {
        /// As given to [`ReqRep::request`].
        waiter: W,
        /// The request.
        id: RequestId,
        /// The reply payload, or why there is none.
        result: Result<Bytes, RequestError>,
    },
    /// A request for one of our handlers: answer with [`ReqRep::reply`] or [`ReqRep::abandon`].
    Request {
        /// The handler that matched.
        handler: HandlerId,
        /// Names the request in the answer.
        key: InboundKey,
        /// Event name.
        event: String,
        /// Argument.
        payload: Bytes,
        /// The requester stops waiting at this instant.
        deadline: Instant,
    },
    /// A tick for one of our handlers.
    Tick {
        /// The handler that matched.
        handler: HandlerId,
        /// Sender.
        peer: Uuid,
        /// Event name.
        event: String,
        /// Argument.
        payload: Bytes,
    },
    /// One peer's outcome in a gather ([`ReqRep::gather`]).
    Gathered {
        /// The gather.
        gather: GatherId,
        /// The request sent to this peer.
        id: RequestId,
        /// The peer.
        peer: Uuid,
        /// Its reply, or why there is none.
        result: Result<Bytes, RequestError>,
    },
    /// A gather ended (exactly once, after its last [`Delivery::Gathered`]).
    GatherEnded {
        /// The gather.
        gather: GatherId,
        /// Why.
        reason: GatherEnd,
        /// Peers still pending when it ended (their requests were withdrawn).
        unanswered: Vec<Uuid>,
    },
    /// A request handed to a handler will not be answered (its answer would go nowhere).
    Ended {
        /// The handler it was handed to.
        handler: HandlerId,
        /// The request.
        key: InboundKey,
        /// Why.
        reason: EndReason,
    },
}

/// Counters of the layer (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// REQUESTs sent.
    pub requests_sent: u64,
    /// TICKs sent.
    pub ticks_sent: u64,
    /// Replies (REPLY or ERROR) that completed a request.
    pub replies_received: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Replies for requests that had already ended.
    pub late_replies: u64,
    /// Replies from a peer the request was not sent to.
    pub foreign_replies: u64,
    /// REQUESTs received.
    pub requests_received: u64,
    /// REQUESTs answered "no handler".
    pub no_handler: u64,
    /// REQUESTs refused because `max_running` was reached.
    pub refused_overloaded: u64,
    /// REQUESTs refused for their payload size.
    pub refused_too_large: u64,
    /// REQUESTs with an id already running (a duplicate; ignored).
    pub duplicate_requests: u64,
    /// TICKs received.
    pub ticks_received: u64,
    /// TICKs no handler matched.
    pub ticks_unhandled: u64,
    /// Answers given after the request ended (expired, cancelled, requester gone).
    pub replies_after_end: u64,
    /// Envelopes of this layer that were unusable (unknown kind, missing field, bad ERROR body).
    pub malformed: u64,
    /// Gathers started.
    pub gathers: u64,
}
