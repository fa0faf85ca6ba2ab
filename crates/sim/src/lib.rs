//! # zmesh-sim: a seeded, deterministic simulator for the zmesh node
//!
//! This crate drives many sans-IO nodes — each a [`zmesh_core::driver::Driver`], the ZRE
//! [`zmesh_zre::Engine`] plus the layers above it, exactly what the production node runs — on a
//! **virtual clock** and a **virtual, faulty network**, and checks protocol invariants after
//! **every step**. The simulator does not re-model how a node applies its outputs: every call
//! into a node is followed by [`Driver::flush`] (or [`Driver::stop`]), whose `Transport` is the
//! simulator's connections (module `transport`, where each Connect/Send/Disconnect is checked as
//! it is applied) and whose `Sink` records the events and request/reply deliveries, checked in
//! order right after. A run is a pure function
//! of its seed: all randomness comes from one `ChaCha8Rng` (stable across platforms and Rust
//! versions), all collections are ordered (`BTreeMap`), and time is a virtual `Duration` added to
//! one base `Instant`. A failing seed therefore replays exactly, step by step
//! (`ZMESH_SIM_SEED=<seed>` in the tests prints the whole trace).
//!
//! ## The model
//!
//! * **Nodes.** A fixed number of *slots* (5–8 by default). A slot runs at most one engine
//!   *instance* at a time. Instances start (staggered), crash (engine dropped without `stop`),
//!   stop politely ([`Engine::stop`] + a port-0 beacon, i.e. `handle_departure` at the others),
//!   and restart — usually with a new UUID, sometimes with the *same* UUID (exercising the
//!   "HELLO from a ready peer = restart" rule), usually at the *same* endpoint (exercising the
//!   purge rule), sometimes at a new one. Endpoints are fake strings `tcp://sim/<slot>/<port>`.
//! * **Connections (DEALER → ROUTER).** Every [`Output::Connect`] creates one connection object
//!   from the instance to an *endpoint* (not to a node: like a real DEALER, it is whoever listens
//!   at that endpoint that receives). Every [`Output::Send`] is queued on it and delivered to the
//!   listener's `handle_message` with identity `0x01 + sender uuid`, after a random delay, in FIFO
//!   order per connection (TCP); different connections reorder freely. [`Output::Disconnect`]
//!   closes it: like `LINGER = 0`, a random prefix of the in-flight messages (those already "on
//!   the wire") is still delivered, the rest is dropped — except during `stop()`, where the shell
//!   drains the GOODBYEs, so nothing is dropped. While no instance listens at the endpoint (the
//!   target is down), an open connection *holds* its messages (ZeroMQ queues while reconnecting)
//!   and delivers them to whatever instance listens there next; a closed one drops them.
//! * **Connection resets.** A reset loses a random prefix of a connection's in-flight messages
//!   and the connection then carries on with the later ones (what a DEALER does when its TCP
//!   connection breaks and it reconnects). The receiver sees a sequence gap. A *stall* delays a
//!   connection for up to a few seconds without losing anything (TCP retransmissions). A node
//!   crash loses a random prefix of the messages in flight to it. An injected *send failure*
//!   drops one `Send` and reports it with [`Engine::handle_send_failed`].
//! * **Beacons (UDP).** Every running instance "beacons" every interval ± jitter: each other
//!   instance on the same side of a partition gets `handle_sighting(uuid, endpoint)` unless the
//!   beacon is lost (per-seed loss probability 0–20 %). Beacons are instantaneous.
//! * **Partitions.** At most one at a time: the slots are split in two sides; beacons across the
//!   cut are not delivered and every message whose delivery falls while the cut is in place is
//!   dropped (the connection is reset); after the heal the connection carries on.
//! * **Application.** Random joins/leaves of three groups, whispers to ready peers (sometimes to
//!   unknown UUIDs), shouts. Every content carries a unique 8-byte id.
//! * **Request/reply** (module `reqrep`, [`SimConfig::requests`]): per slot a fixed set of request
//!   and tick handlers (some matching the events, some not, some slots none); every instance
//!   sends requests (to ready peers, to UUIDs it does not know, to peers about to crash, in bursts
//!   past the per-peer limit; random or default timeouts), cancels some, sends ticks; handlers
//!   answer after a random virtual delay with a payload or an error, abandon, answer after the
//!   deadline or never. Its randomness has its own RNG, so `requests: false` replays a seed's
//!   original ZRE-level scenario bit for bit.
//! * **Timers.** `Driver::handle_timeout(now)` whenever `now >= Driver::poll_timeout()` (engine
//!   and layers).
//! * **Scenario.** A *churn* phase with random faults, then a *quiet* phase (no faults, no
//!   partition, no joins/leaves; whispers and shouts continue almost to the end) long enough
//!   for every stale state to expire (default `2 × expired_timeout + 15 s`, see
//!   [`SimConfig::quiet`]; requests stop 10 s before the end), then a convergence check.
//!
//! ## Invariants
//!
//! Checked when an output is drained or after every step (a violation panics with the seed, the
//! step, the virtual time and the last trace lines):
//!
//! * no panic; every [`Output`] well-formed: Connect only for a peer without an open connection,
//!   Send/Disconnect only on an open one; frames decode; the first message on each connection is
//!   HELLO with sequence 1 (and the node's current endpoint, status and groups), sequences are
//!   consecutive, JOIN/LEAVE carry exactly `previous status + 1` on that connection, GOODBYE only
//!   during `stop()`, no ELECT/LEADER; `handle_timeout` moves `poll_timeout` past `now`;
//! * events per (observer, peer): ENTER first, no double ENTER, nothing after EXIT until a new
//!   ENTER; JOIN only for a group the peer is not in, LEAVE only for one it is in; every WHISPER /
//!   SHOUT event matches a message really sent by that peer (to us / to that group) and is
//!   delivered at most once; ENTER only while processing a HELLO from that peer. (A whisper
//!   queued for a dead node and delivered, through that stale DEALER, to the new node at the
//!   same endpoint is a ZRE property, not an engine bug: it is allowed and counted in
//!   [`SimReport::misdelivered_whispers`].)
//! * the observer's `peers()`, `peers_by_group()` and `peer_groups()` equal what its event
//!   stream implies (every step for the instances that produced an event, Connect or
//!   Disconnect; every 2 virtual seconds for all);
//! * a *clean* connection never loses anything: when the receiver is ready for the sender
//!   through connection `c`, nothing was ever dropped on `c` and no other connection of the same
//!   sender (a stale DEALER) delivered to that receiver since (it sees one stream per
//!   identity), delivering the next message on `c` must not count a gap/mismatch/not-HELLO-
//!   first, must keep the peer (unless GOODBYE), and a WHISPER/SHOUT must produce its event — so a whisper between two nodes that stayed up and
//!   connected is never lost or duplicated;
//! * status counters: when the receiver is ready for the sender through a clean, open
//!   connection with nothing in flight, its record of the sender's status and groups equals the
//!   sender's actual status and groups;
//! * the shell's outboxes equal the engine's connected peers; no malformed message or bad
//!   identity is ever counted (the simulator never produces them);
//! * memory: a peer record of a UUID that is no longer running exists at most
//!   `expired + max_stall + max_delay + 1 s` after that UUID died (checked every 2 virtual
//!   seconds);
//! * convergence at the end: every running instance sees every other running instance as ready
//!   exactly once, its group views equal the truth, its status records equal the truth, and it
//!   has no record of any UUID that is not running.
//!
//! Request/reply (after every delivery and every step):
//!
//! * every request ends **exactly once** (`Done` for a known, pending waiter, on the instance that
//!   made it, with its id), unless its requester crashed; at a polite stop all end `Stopped`;
//! * the outcome is what happened: a reply payload / handler error equals what the handler of that
//!   request on that responder produced; `UnknownPeer` exactly when the target was not an entered
//!   peer, and at once; our `Overloaded` exactly at the per-peer limit, at once; `NoHandler` only if
//!   the responder's slot has no matching handler, the responder's `Overloaded` only if it has
//!   one; `PeerLeft` only after the requester saw that peer's EXIT; `Timeout` exactly at the
//!   deadline (never before, never late); `Cancelled` only if cancelled; `Stopped` only while stopping; never `NotCapable` or
//!   `PayloadTooLarge`;
//! * responder side: a request is handed to the slot's first matching request handler, once, from
//!   an entered peer, with the event and payload its requester sent and a deadline not before the
//!   requester's (or, through a stale DEALER to the node that took over the endpoint, counted in
//!   [`SimReport::misdelivered_requests`]); `Ended` only for a running request and a true reason;
//!   ticks only to matching tick handlers; an answer is counted as after-the-end exactly when the
//!   request is no longer running;
//! * **no pending state outlives its peer or its deadline**: each instance's `in_flight()` and
//!   `running()` equal the simulator's count, `pending_peers()`/`inbound_peers()` are entered
//!   peers, `poll_timeout()` is not before now and `latest_deadline()` not after now + the longest
//!   timeout; no envelope is ever malformed, for an unknown layer or undecodable;
//! * at the end of the quiet phase nothing is pending or running anywhere.
//!
//! ## What is NOT modelled
//!
//! * Byte-level transport: ZMTP handshakes, partial frames, HWM/back-pressure (outboxes are
//!   unbounded except for the injected send failures), CURVE.
//! * Beacon delay and duplicate delivery, IP-level details (the endpoint in a sighting is always
//!   the instance's real endpoint), malformed or hostile input (covered by the fuzzers and the
//!   engine unit tests), foreign implementations (Zyre without `X-ZMESH`), elections, gossip.
//! * Two instances listening at the same endpoint at once, or one instance restarting while its
//!   previous incarnation is still alive.
//! * A real kernel's ordering between two connections of the same pair: an old, closed
//!   connection's last messages may be delivered after a new connection's first ones.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod actions;
mod config;
mod emitter;
mod invariants;
mod reqrep;
mod routing;
pub mod services;
mod transport;

pub use config::{SimConfig, SimReport};
pub use services::{ServicesReport, ServicesSim, ServicesSimConfig};

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;
use zmesh_core::driver::Driver;
use zmesh_zre::{routing_id, Config, Engine, Event, Output, PeerState, Stats, ZreMessage};

/// The groups the simulated applications join, leave and shout to.
pub const GROUPS: [&str; 3] = ["RED", "GREEN", "BLUE"];

type InstId = usize;
type ConnId = usize;
/// What a request's `Delivery::Done` carries back: the simulator's id for the request.
type Waiter = u64;

/// What the checks need to know about a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello,
    Whisper(u64),
    Shout(u64),
    Goodbye,
    /// A WHISPER whose single frame is a layer envelope.
    Layer,
    Other(&'static str),
}

#[derive(Debug)]
struct Msg {
    deliver_at: Duration,
    seq: u16,
    kind: Kind,
    frames: zmesh_zre::Frames,
}

/// One DEALER outbox: from an instance to an endpoint.
#[derive(Debug)]
struct Conn {
    from_inst: InstId,
    from_uuid: Uuid,
    from_slot: usize,
    /// The UUID the sending engine believes it talks to.
    peer: Uuid,
    to_endpoint: String,
    to_slot: Option<usize>,
    queue: VecDeque<Msg>,
    open: bool,
    /// Something sent on this connection was lost.
    tainted: bool,
    sent_any: bool,
    last_seq: u16,
    /// Last status announced on this connection (HELLO, JOIN, LEAVE).
    status: u8,
    tail_at: Duration,
    stalled_until: Duration,
}

#[derive(Debug)]
struct Inst {
    slot: usize,
    name: String,
    uuid: Uuid,
    endpoint: String,
    /// The node: ZRE engine and layers (taken out only while [`Driver::flush`] runs).
    driver: Option<Driver<Waiter>>,
    /// The shared output contract (`zmesh_core::testing`), checked on every flush beside the
    /// simulator's own end-to-end checks (taken out with the driver).
    checker: Option<zmesh_core::testing::Checker>,
    /// Open outboxes by peer UUID.
    conns: BTreeMap<Uuid, ConnId>,
    /// What the event stream says: entered peers and their groups.
    view: BTreeMap<Uuid, BTreeSet<String>>,
    next_beacon: Duration,
    next_app: Duration,
    /// Its next request/reply action.
    next_req: Duration,
    stopping: bool,
    /// `engine.poll_timeout()` as of the last call into the engine (refreshed by `drain`).
    deadline: Option<Duration>,
}

impl Inst {
    fn driver_ref(&self) -> &Driver<Waiter> {
        self.driver.as_ref().expect("driver is being flushed")
    }

    fn driver_mut(&mut self) -> &mut Driver<Waiter> {
        self.driver.as_mut().expect("driver is being flushed")
    }

    fn engine(&self) -> &Engine {
        self.driver_ref().engine_ref()
    }
}

#[derive(Debug, Default)]
struct Slot {
    inst: Option<InstId>,
    start_at: Option<Duration>,
    incarnations: u32,
    last_uuid: Option<Uuid>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Life {
    alive: bool,
    /// The slot it runs (ran) in.
    slot: usize,
    last_death: Option<Duration>,
}

#[derive(Debug)]
struct Partition {
    side: BTreeSet<usize>,
    heal_at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    EndChurn,
    Heal,
    Start(usize),
    Deliver(ConnId),
    Timer(InstId),
    Beacon(InstId),
    App(InstId),
    Request(InstId),
    Answer(InstId),
    Fault,
}

/// Events seen while draining one call's outputs.
#[derive(Debug, Default)]
struct Drained {
    whispers: Vec<u64>,
    shouts: Vec<u64>,
    /// An injected send failure removed a peer during this drain.
    send_failed: bool,
}

/// The simulator. See the crate documentation for the model and the invariants.
pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    rng: ChaCha8Rng,
    base: Instant,
    now: Duration,
    steps: u64,
    steps_at_now: u64,
    churn_end: Duration,
    end: Duration,
    churn_over: bool,
    beacon_loss: f64,
    slots: Vec<Slot>,
    insts: BTreeMap<InstId, Inst>,
    next_inst: InstId,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    ready_via: BTreeMap<(InstId, Uuid), ConnId>,
    /// (receiver, sender) pairs where another connection of the same sender delivered a message
    /// after the receiver became ready through `ready_via`: the receiver sees one stream per
    /// identity, so that stream is no longer clean.
    interfered: BTreeSet<(InstId, Uuid)>,
    /// The message being delivered travels on a connection addressed to another UUID (an old
    /// DEALER whose endpoint was taken over by a new node).
    stale_delivery: bool,
    lives: BTreeMap<Uuid, Life>,
    whispers: BTreeMap<u64, (Uuid, Uuid)>,
    shouts: BTreeMap<u64, (Uuid, String)>,
    delivered: BTreeSet<(u64, InstId)>,
    next_content: u64,
    partition: Option<Partition>,
    next_fault: Duration,
    next_full_check: Duration,
    trace: VecDeque<String>,
    report: SimReport,
    touched: BTreeSet<InstId>,
    touched_conns: BTreeSet<ConnId>,
    rr: reqrep::ReqModel,
    rt: routing::RouteModel,
    em: emitter::EmitModel,
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn short(u: &Uuid) -> String {
    u.simple().to_string()[..6].to_owned()
}

fn content_id(content: &[Bytes]) -> Option<u64> {
    let first = content.first()?;
    let raw: [u8; 8] = first.as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

fn parse_slot(endpoint: &str) -> Option<usize> {
    endpoint
        .strip_prefix("tcp://sim/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

impl Sim {
    /// A new scenario for `seed`. Nothing runs until [`Sim::step`] / [`Sim::run_until`].
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = rng.gen_range(cfg.nodes.0..=cfg.nodes.1);
        let churn = rng.gen_range(cfg.churn.0..=cfg.churn.1);
        let beacon_loss = rng.gen_range(0.0..=cfg.max_beacon_loss);
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::default()).collect();
        for (i, s) in slots.iter_mut().enumerate() {
            s.start_at = Some(if i < 2 {
                Duration::ZERO
            } else {
                rng.gen_range(Duration::ZERO..=Duration::from_secs(10))
            });
        }
        let first_fault = rng.gen_range(cfg.fault_gap.0..=cfg.fault_gap.1) + Duration::from_secs(2);
        let mut sim = Sim {
            seed,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            steps: 0,
            steps_at_now: 0,
            churn_end: churn,
            end: churn + cfg.quiet,
            churn_over: false,
            beacon_loss,
            slots,
            insts: BTreeMap::new(),
            next_inst: 0,
            conns: BTreeMap::new(),
            next_conn: 0,
            ready_via: BTreeMap::new(),
            interfered: BTreeSet::new(),
            stale_delivery: false,
            lives: BTreeMap::new(),
            whispers: BTreeMap::new(),
            shouts: BTreeMap::new(),
            delivered: BTreeSet::new(),
            next_content: 1,
            partition: None,
            next_fault: first_fault,
            next_full_check: Duration::from_secs(1),
            trace: VecDeque::new(),
            report: SimReport::default(),
            touched: BTreeSet::new(),
            touched_conns: BTreeSet::new(),
            rr: reqrep::ReqModel::new(seed, n, cfg.requests),
            rt: routing::RouteModel::default(),
            em: emitter::EmitModel::new(seed, n),
            cfg,
        };
        sim.log(format!(
            "seed {seed}: {n} slots, churn {}s, end {}s, beacon loss {:.3}",
            secs(sim.churn_end),
            secs(sim.end),
            sim.beacon_loss
        ));
        sim
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Virtual time at which the scenario ends (churn + quiet).
    pub fn end(&self) -> Duration {
        self.end
    }

    /// The counters so far.
    pub fn report(&self) -> &SimReport {
        &self.report
    }

    /// Runs the whole scenario, then the final convergence check. Returns the counters.
    pub fn run(&mut self) -> SimReport {
        self.run_until(self.end);
        if let Err(e) = self
            .check_requests_drained()
            .and_then(|()| self.routing_converged())
            .and_then(|()| self.emitter_converged())
        {
            self.fail(format!("end of the quiet phase: {e}"));
        }
        self.check_converged();
        let mut r = self.report.clone();
        r.sequence_gaps += self
            .insts
            .values()
            .map(|i| i.engine().stats().sequence_gaps)
            .sum::<u64>();
        r
    }

    /// Executes every step due at or before `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Duration) {
        while self.next_action().0 <= t {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Executes the earliest due action (advancing the virtual clock to it) and checks the
    /// invariants. Panics with the seed and step on any violation.
    pub fn step(&mut self) {
        let (t, action) = self.next_action();
        if t > self.now {
            self.now = t;
            self.steps_at_now = 0;
        }
        self.steps += 1;
        self.steps_at_now += 1;
        self.report.steps = self.steps;
        if self.steps_at_now > 100_000 {
            self.fail("livelock: 100000 steps without time advancing".into());
        }
        self.touched.clear();
        self.touched_conns.clear();
        if let Err(e) = self.execute(action) {
            self.fail(e);
        }
        if let Err(e) = self
            .check_step()
            .and_then(|()| self.check_requests())
            .and_then(|()| self.check_routing())
        {
            self.fail(e);
        }
        if self.now >= self.next_full_check {
            self.next_full_check = self.now + Duration::from_secs(2);
            self.check_invariants();
        }
    }

    /// Checks every invariant over the whole system (the per-step checks only look at what the
    /// step touched). Panics on a violation.
    pub fn check_invariants(&mut self) {
        if let Err(e) = self.check_all() {
            self.fail(e);
        }
    }

    /// The final check (after a quiet phase): every running instance sees every other one as
    /// ready, group views and status records equal the truth, nobody remembers a dead UUID.
    pub fn check_converged(&mut self) {
        self.check_invariants();
        if let Err(e) = self.converged() {
            self.fail(format!("not converged: {e}"));
        }
    }

    // ------------------------------------------------------------------ scheduling

    pub(crate) fn instant(&self, d: Duration) -> Instant {
        self.base + d
    }

    pub(crate) fn next_action(&self) -> (Duration, Action) {
        let mut best = (Duration::MAX, Action::Fault);
        let mut consider = |t: Duration, a: Action| {
            if (t, a) < best {
                best = (t, a);
            }
        };
        if !self.churn_over {
            consider(self.churn_end, Action::EndChurn);
            consider(self.next_fault, Action::Fault);
        }
        if let Some(p) = &self.partition {
            consider(p.heal_at, Action::Heal);
        }
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(t) = s.start_at {
                consider(t, Action::Start(i));
            }
        }
        for (&id, c) in &self.conns {
            if let Some(t) = self.conn_due(c) {
                consider(t, Action::Deliver(id));
            }
        }
        for (&id, inst) in &self.insts {
            if let Some(t) = inst.deadline {
                consider(t.max(self.now), Action::Timer(id));
            }
            consider(inst.next_beacon, Action::Beacon(id));
            consider(inst.next_app, Action::App(id));
            consider(inst.next_req, Action::Request(id));
        }
        if let Some((t, id)) = self.rr.next_answer() {
            consider(t, Action::Answer(id));
        }
        best
    }

    /// When the head of `c` can be delivered or dropped; `None` if it is held (no listener).
    pub(crate) fn conn_due(&self, c: &Conn) -> Option<Duration> {
        let head = c.queue.front()?;
        let t = head.deliver_at.max(c.stalled_until);
        if self.cut(c.from_slot, c.to_slot) || !c.open || self.listener(&c.to_endpoint).is_some() {
            Some(t)
        } else {
            None
        }
    }

    pub(crate) fn cut(&self, a: usize, b: Option<usize>) -> bool {
        match (&self.partition, b) {
            (Some(p), Some(b)) => p.side.contains(&a) != p.side.contains(&b),
            _ => false,
        }
    }

    pub(crate) fn listener(&self, endpoint: &str) -> Option<InstId> {
        let slot = parse_slot(endpoint)?;
        let id = self.slots.get(slot)?.inst?;
        (self.insts[&id].endpoint == endpoint).then_some(id)
    }

    pub(crate) fn gap(&mut self, range: (Duration, Duration)) -> Duration {
        self.rng.gen_range(range.0..=range.1)
    }

    // ------------------------------------------------------------------ trace and failure

    fn log(&mut self, line: String) {
        let line = format!("[{:>8} #{}] {line}", secs(self.now), self.steps);
        if self.cfg.verbose {
            eprintln!("{line}");
        }
        if self.trace.len() >= self.cfg.trace_len {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn fail(&self, msg: String) -> ! {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        panic!(
            "zmesh-sim invariant violated: seed {} step {} t={}s: {msg}\n\
             replay: ZMESH_SIM_SEED={} cargo test -p zmesh-sim --test seeds -- --nocapture\n\
             last {} trace lines:\n{}",
            self.seed,
            self.steps,
            secs(self.now),
            self.seed,
            trace.len(),
            trace.join("\n")
        );
    }
}
