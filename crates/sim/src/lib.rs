//! # zmesh-sim: a seeded, deterministic simulator for the ZRE engine
//!
//! This crate drives many sans-IO [`zmesh_zre::Engine`]s on a **virtual clock** and a **virtual,
//! faulty network**, and checks protocol invariants after **every step**. A run is a pure function
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
//! * **Timers.** `handle_timeout(now)` whenever `now >= poll_timeout()`.
//! * **Scenario.** A *churn* phase with random faults, then a *quiet* phase (no faults, no
//!   partition, no joins/leaves; whispers and shouts continue almost to the end) long enough
//!   for every stale state to expire (default `2 × expired_timeout + 15 s`, see
//!   [`SimConfig::quiet`]), then a convergence check.
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;
use zmesh_zre::{routing_id, Config, Engine, Event, Output, PeerState, Stats, ZreMessage};

/// The groups the simulated applications join, leave and shout to.
pub const GROUPS: [&str; 3] = ["RED", "GREEN", "BLUE"];

/// Scenario parameters. Ranges are inclusive `(min, max)` and sampled per seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of node slots.
    pub nodes: (usize, usize),
    /// Length of the churn phase (faults, joins/leaves).
    pub churn: (Duration, Duration),
    /// Length of the quiet phase after the churn (no faults). Must exceed `expired_timeout`
    /// plus a few beacon intervals for the convergence check to be meaningful; the default is
    /// `expired_timeout + 15 s` (the bound the engine promises since its lost-HELLO recovery;
    /// see `tests/regressions.rs`, seed 419).
    pub quiet: Duration,
    /// Beacon interval.
    pub beacon_interval: Duration,
    /// Beacon jitter (± this much).
    pub beacon_jitter: Duration,
    /// Maximum per-seed beacon loss probability (each seed picks one in `[0, max]`).
    pub max_beacon_loss: f64,
    /// Maximum one-way message delay.
    pub max_delay: Duration,
    /// Time between two faults during the churn phase.
    pub fault_gap: (Duration, Duration),
    /// Time between two application actions of one node.
    pub app_gap: (Duration, Duration),
    /// Longest connection stall.
    pub max_stall: Duration,
    /// Longest partition.
    pub max_partition: Duration,
    /// Longest downtime before a restart.
    pub max_downtime: Duration,
    /// Probability that one `Send` fails during the churn phase (reported with
    /// `handle_send_failed`).
    pub send_fail_prob: f64,
    /// Engine evasive timeout.
    pub evasive_timeout: Duration,
    /// Engine expired timeout.
    pub expired_timeout: Duration,
    /// Engine proactive ping interval.
    pub ping_interval: Duration,
    /// Print every trace line to stderr as it happens.
    pub verbose: bool,
    /// How many recent trace lines a failure report shows.
    pub trace_len: usize,
}

impl Default for SimConfig {
    /// 5–8 nodes, 20–50 s of churn, then a 45 s quiet phase; Zyre's default timers (5 s / 30 s)
    /// and the engine's 2 s ping interval; 1 s beacons, up to 20 % beacon loss, up to 150 ms
    /// message delay.
    fn default() -> SimConfig {
        let expired = zmesh_zre::DEFAULT_EXPIRED_TIMEOUT;
        SimConfig {
            nodes: (5, 8),
            churn: (Duration::from_secs(20), Duration::from_secs(50)),
            quiet: expired + Duration::from_secs(15),
            beacon_interval: Duration::from_secs(1),
            beacon_jitter: Duration::from_millis(200),
            max_beacon_loss: 0.2,
            max_delay: Duration::from_millis(150),
            fault_gap: (Duration::from_millis(500), Duration::from_secs(6)),
            app_gap: (Duration::from_millis(300), Duration::from_secs(3)),
            max_stall: Duration::from_secs(8),
            max_partition: Duration::from_secs(25),
            max_downtime: Duration::from_secs(15),
            send_fail_prob: 0.002,
            evasive_timeout: zmesh_zre::DEFAULT_EVASIVE_TIMEOUT,
            expired_timeout: expired,
            ping_interval: zmesh_zre::DEFAULT_PING_INTERVAL,
            verbose: false,
            trace_len: 80,
        }
    }
}

impl SimConfig {
    /// Like the default, but with short engine timers (evasive 2 s, expired 6 s, ping 0.8 s) and
    /// shorter stalls, partitions and downtimes: many more expiries, evasive episodes and
    /// rediscoveries per virtual second.
    pub fn short_timers() -> SimConfig {
        let expired = Duration::from_secs(6);
        SimConfig {
            evasive_timeout: Duration::from_secs(2),
            expired_timeout: expired,
            ping_interval: Duration::from_millis(800),
            quiet: expired + Duration::from_secs(15),
            max_stall: Duration::from_secs(4),
            max_partition: Duration::from_secs(10),
            max_downtime: Duration::from_secs(8),
            ..SimConfig::default()
        }
    }
}

/// Counters describing what a run exercised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Steps executed.
    pub steps: u64,
    /// Instances started (including restarts).
    pub instances: u64,
    /// Crashes, polite stops, partitions, resets, stalls, injected send failures.
    pub crashes: u64,
    /// Polite stops.
    pub stops: u64,
    /// Partitions.
    pub partitions: u64,
    /// Connection resets (that lost at least one message).
    pub resets: u64,
    /// Stalls.
    pub stalls: u64,
    /// Injected send failures.
    pub send_failures: u64,
    /// Messages delivered to an engine.
    pub delivered: u64,
    /// Messages lost by the network model.
    pub dropped: u64,
    /// ENTER events.
    pub enters: u64,
    /// EXIT events.
    pub exits: u64,
    /// WHISPER/SHOUT events checked against a clean connection.
    pub clean_checked: u64,
    /// Status-record comparisons performed.
    pub status_checked: u64,
    /// Sum over engines (running at the end) of sequence gaps counted.
    pub sequence_gaps: u64,
    /// Messages delivered on a connection addressed to another UUID (the DEALER was created for
    /// a node whose endpoint a new node now listens on).
    pub stale_deliveries: u64,
    /// Whispers delivered to a node other than the one they were addressed to, through such a
    /// stale connection.
    pub misdelivered_whispers: u64,
}

type InstId = usize;
type ConnId = usize;

/// What the checks need to know about a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello,
    Whisper(u64),
    Shout(u64),
    Goodbye,
    Other(&'static str),
}

#[derive(Debug)]
struct Msg {
    deliver_at: Duration,
    seq: u16,
    kind: Kind,
    frames: Vec<Bytes>,
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
    engine: Engine,
    /// Open outboxes by peer UUID.
    conns: BTreeMap<Uuid, ConnId>,
    /// What the event stream says: entered peers and their groups.
    view: BTreeMap<Uuid, BTreeSet<String>>,
    next_beacon: Duration,
    next_app: Duration,
    stopping: bool,
    /// `engine.poll_timeout()` as of the last call into the engine (refreshed by `drain`).
    deadline: Option<Duration>,
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
        self.check_converged();
        let mut r = self.report.clone();
        r.sequence_gaps += self
            .insts
            .values()
            .map(|i| i.engine.stats().sequence_gaps)
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
        if let Err(e) = self.check_step() {
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

    fn instant(&self, d: Duration) -> Instant {
        self.base + d
    }

    fn next_action(&self) -> (Duration, Action) {
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
        }
        best
    }

    /// When the head of `c` can be delivered or dropped; `None` if it is held (no listener).
    fn conn_due(&self, c: &Conn) -> Option<Duration> {
        let head = c.queue.front()?;
        let t = head.deliver_at.max(c.stalled_until);
        if self.cut(c.from_slot, c.to_slot) || !c.open || self.listener(&c.to_endpoint).is_some() {
            Some(t)
        } else {
            None
        }
    }

    fn cut(&self, a: usize, b: Option<usize>) -> bool {
        match (&self.partition, b) {
            (Some(p), Some(b)) => p.side.contains(&a) != p.side.contains(&b),
            _ => false,
        }
    }

    fn listener(&self, endpoint: &str) -> Option<InstId> {
        let slot = parse_slot(endpoint)?;
        let id = self.slots.get(slot)?.inst?;
        (self.insts[&id].endpoint == endpoint).then_some(id)
    }

    fn gap(&mut self, range: (Duration, Duration)) -> Duration {
        self.rng.gen_range(range.0..=range.1)
    }

    // ------------------------------------------------------------------ actions

    fn execute(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::EndChurn => {
                self.churn_over = true;
                if self.partition.take().is_some() {
                    self.log("end of churn: partition healed".into());
                }
                for i in 0..self.slots.len() {
                    if self.slots[i].inst.is_none()
                        && self.slots[i].start_at.is_none()
                        && self.rng.gen_bool(0.5)
                    {
                        let t =
                            self.now + self.rng.gen_range(Duration::ZERO..=Duration::from_secs(3));
                        self.slots[i].start_at = Some(t);
                    }
                }
                self.log("end of churn".into());
                Ok(())
            }
            Action::Heal => {
                self.partition = None;
                self.log("partition healed".into());
                Ok(())
            }
            Action::Start(slot) => self.start(slot),
            Action::Deliver(c) => self.deliver(c),
            Action::Timer(id) => {
                let now = self.instant(self.now);
                self.insts.get_mut(&id).unwrap().engine.handle_timeout(now);
                self.drain(id, None)?;
                let inst = &self.insts[&id];
                if let Some(t) = inst.engine.poll_timeout() {
                    if t <= now {
                        return Err(format!(
                            "{}: handle_timeout made no progress (poll_timeout still <= now)",
                            inst.name
                        ));
                    }
                }
                Ok(())
            }
            Action::Beacon(id) => self.beacon(id),
            Action::App(id) => self.app(id),
            Action::Fault => {
                self.fault()?;
                self.next_fault = self.now + self.gap(self.cfg.fault_gap);
                Ok(())
            }
        }
    }

    fn start(&mut self, slot: usize) -> Result<(), String> {
        let s = &mut self.slots[slot];
        s.start_at = None;
        if s.inst.is_some() {
            return Ok(());
        }
        let restart = s.incarnations > 0;
        s.incarnations += 1;
        let inc = s.incarnations;
        let last = s.last_uuid;
        let uuid = match last {
            Some(u) if restart && self.rng.gen_bool(0.3) => u,
            _ => Uuid::from_bytes(self.rng.gen()),
        };
        let endpoint = if !restart || self.rng.gen_bool(0.7) {
            format!("tcp://sim/{slot}/0")
        } else {
            format!("tcp://sim/{slot}/{inc}")
        };
        let name = format!("n{slot}.{inc}");
        let mut config = Config::new(uuid, name.clone());
        config.endpoint = endpoint.clone();
        config.headers = vec![("X-SIM-SLOT".into(), slot.to_string())];
        config.evasive_timeout = self.cfg.evasive_timeout;
        config.expired_timeout = self.cfg.expired_timeout;
        config.ping_interval = self.cfg.ping_interval;
        let engine = Engine::new(config, self.instant(self.now));
        let id = self.next_inst;
        self.next_inst += 1;
        let next_beacon = self.now
            + self
                .rng
                .gen_range(Duration::ZERO..=self.cfg.beacon_interval);
        let next_app = self.now + self.gap(self.cfg.app_gap);
        self.log(format!(
            "start {name} uuid {} at {endpoint}{}",
            short(&uuid),
            if Some(uuid) == last {
                " (same uuid)"
            } else {
                ""
            }
        ));
        self.insts.insert(
            id,
            Inst {
                slot,
                name,
                uuid,
                endpoint,
                engine,
                conns: BTreeMap::new(),
                view: BTreeMap::new(),
                next_beacon,
                next_app,
                stopping: false,
                deadline: None,
            },
        );
        let s = &mut self.slots[slot];
        s.inst = Some(id);
        s.last_uuid = Some(uuid);
        let life = self.lives.entry(uuid).or_default();
        if life.alive {
            return Err(format!("simulator bug: uuid {uuid} started twice"));
        }
        life.alive = true;
        self.report.instances += 1;
        self.touched.insert(id);
        Ok(())
    }

    fn beacon(&mut self, id: InstId) -> Result<(), String> {
        let jitter = self.cfg.beacon_jitter;
        let interval = self.cfg.beacon_interval;
        let d = interval + self.rng.gen_range(Duration::ZERO..=jitter * 2) - jitter;
        let (uuid, endpoint, slot) = {
            let inst = self.insts.get_mut(&id).unwrap();
            inst.next_beacon = self.now + d;
            (inst.uuid, inst.endpoint.clone(), inst.slot)
        };
        let others: Vec<InstId> = self.insts.keys().copied().filter(|&o| o != id).collect();
        let now = self.instant(self.now);
        for o in others {
            if self.cut(slot, Some(self.insts[&o].slot)) || self.rng.gen_bool(self.beacon_loss) {
                continue;
            }
            self.insts
                .get_mut(&o)
                .unwrap()
                .engine
                .handle_sighting(now, uuid, &endpoint);
            self.drain(o, None)?;
        }
        Ok(())
    }

    fn new_content(&mut self) -> (u64, Vec<Bytes>) {
        let id = self.next_content;
        self.next_content += 1;
        let mut content = vec![Bytes::copy_from_slice(&id.to_be_bytes())];
        if self.rng.gen_bool(0.3) {
            content.push(Bytes::from_static(b"more"));
        }
        (id, content)
    }

    fn app(&mut self, id: InstId) -> Result<(), String> {
        let app_end = self.end.saturating_sub(Duration::from_secs(3));
        let next = self.now + self.gap(self.cfg.app_gap);
        self.insts.get_mut(&id).unwrap().next_app =
            if next < app_end { next } else { Duration::MAX };
        let roll = self.rng.gen_range(0..100);
        let group = GROUPS[self.rng.gen_range(0..GROUPS.len())];
        let name = self.insts[&id].name.clone();
        if roll < 32 && !self.churn_over {
            let inst = self.insts.get_mut(&id).unwrap();
            let joined = inst.engine.own_groups().iter().any(|g| g == group);
            let changed = if roll < 20 {
                inst.engine.join(group)
            } else {
                inst.engine.leave(group)
            };
            let what = if roll < 20 { "join" } else { "leave" };
            if changed != ((roll < 20) != joined) {
                return Err(format!("{name}: {what}({group}) returned {changed}"));
            }
            self.log(format!(
                "{name} {what} {group} -> {changed} (status {})",
                self.insts[&id].engine.status()
            ));
        } else if roll < 66 {
            let peers = self.insts[&id].engine.peers();
            let (target, known) = if peers.is_empty() || self.rng.gen_bool(0.05) {
                (Uuid::from_bytes(self.rng.gen()), false)
            } else {
                (peers[self.rng.gen_range(0..peers.len())], true)
            };
            let (cid, content) = self.new_content();
            let from = self.insts[&id].uuid;
            self.whispers.insert(cid, (from, target));
            let r = self
                .insts
                .get_mut(&id)
                .unwrap()
                .engine
                .whisper(target, content);
            if r.is_ok() != known {
                return Err(format!(
                    "{name}: whisper to {} returned {r:?}",
                    short(&target)
                ));
            }
            self.log(format!("{name} whisper #{cid} to {}", short(&target)));
        } else {
            let (cid, content) = self.new_content();
            let from = self.insts[&id].uuid;
            self.shouts.insert(cid, (from, group.to_owned()));
            let inst = self.insts.get_mut(&id).unwrap();
            let expected = inst.engine.peers_by_group(group).len();
            let r = inst.engine.shout(group, content);
            if r != Ok(expected) {
                return Err(format!(
                    "{name}: shout to {group} returned {r:?}, expected Ok({expected})"
                ));
            }
            self.log(format!("{name} shout #{cid} to {group} ({expected} peers)"));
        }
        self.touched.insert(id);
        self.drain(id, None)?;
        Ok(())
    }

    fn fault(&mut self) -> Result<(), String> {
        let live: Vec<InstId> = self.insts.keys().copied().collect();
        let roll = self.rng.gen_range(0..100);
        if roll < 12 && live.len() > 2 {
            let id = live[self.rng.gen_range(0..live.len())];
            self.report.crashes += 1;
            self.kill(id, false)
        } else if roll < 22 && live.len() > 2 {
            let id = live[self.rng.gen_range(0..live.len())];
            self.report.stops += 1;
            self.kill(id, true)
        } else if roll < 37 && self.partition.is_none() {
            let n = self.slots.len();
            let mut side = BTreeSet::new();
            while side.is_empty() || side.len() == n {
                side = (0..n).filter(|_| self.rng.gen_bool(0.5)).collect();
            }
            let heal_at = self.now
                + self
                    .rng
                    .gen_range(Duration::from_secs(1)..=self.cfg.max_partition);
            self.log(format!("partition {side:?} | rest until {}", secs(heal_at)));
            self.partition = Some(Partition { side, heal_at });
            self.report.partitions += 1;
            Ok(())
        } else if roll < 85 {
            let open: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.open)
                .map(|(&i, _)| i)
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            let cid = open[self.rng.gen_range(0..open.len())];
            if roll < 70 {
                let len = self.conns[&cid].queue.len();
                if len == 0 {
                    return Ok(());
                }
                let k = self.rng.gen_range(1..=len);
                self.drop_prefix(cid, k, "reset");
                self.report.resets += 1;
            } else {
                let until = self.now
                    + self
                        .rng
                        .gen_range(Duration::from_millis(500)..=self.cfg.max_stall);
                self.conns.get_mut(&cid).unwrap().stalled_until = until;
                self.log(format!("stall conn {cid} until {}", secs(until)));
                self.report.stalls += 1;
            }
            Ok(())
        } else {
            // A burst of app activity on one node instead of a fault.
            if let Some(&id) = live.get(self.rng.gen_range(0..live.len().max(1))) {
                for _ in 0..3 {
                    self.app(id)?;
                }
                if self.insts[&id].next_app == Duration::MAX {
                    self.insts.get_mut(&id).unwrap().next_app = self.now + Duration::from_secs(1);
                }
            }
            Ok(())
        }
    }

    /// Drops the first `k` queued messages of `cid` (lost on the wire).
    fn drop_prefix(&mut self, cid: ConnId, k: usize, why: &str) {
        let c = self.conns.get_mut(&cid).unwrap();
        let k = k.min(c.queue.len());
        if k == 0 {
            return;
        }
        let seqs: Vec<u16> = c.queue.drain(..k).map(|m| m.seq).collect();
        c.tainted = true;
        self.report.dropped += k as u64;
        self.log(format!(
            "{why}: conn {cid} lost {k} message(s), seq {seqs:?}"
        ));
    }

    /// Crash (`graceful = false`) or polite stop of an instance.
    fn kill(&mut self, id: InstId, graceful: bool) -> Result<(), String> {
        let name = self.insts[&id].name.clone();
        let (uuid, endpoint, slot) = {
            let i = &self.insts[&id];
            (i.uuid, i.endpoint.clone(), i.slot)
        };
        if graceful {
            self.log(format!("stop {name}"));
            let now = self.instant(self.now);
            let inst = self.insts.get_mut(&id).unwrap();
            inst.stopping = true;
            inst.engine.stop(now);
            self.drain(id, None)?;
            if !self.insts[&id].conns.is_empty() {
                return Err(format!("{name}: stop() left open outboxes"));
            }
            let others: Vec<InstId> = self.insts.keys().copied().filter(|&o| o != id).collect();
            for o in others {
                if self.cut(slot, Some(self.insts[&o].slot)) || self.rng.gen_bool(self.beacon_loss)
                {
                    continue;
                }
                self.insts
                    .get_mut(&o)
                    .unwrap()
                    .engine
                    .handle_departure(now, uuid);
                self.drain(o, None)?;
            }
        } else {
            self.log(format!("crash {name}"));
            let outs: Vec<ConnId> = self.insts[&id].conns.values().copied().collect();
            for cid in outs {
                self.close(cid, false);
            }
        }
        self.insts.remove(&id);
        self.touched.remove(&id);
        self.slots[slot].inst = None;
        let life = self.lives.get_mut(&uuid).unwrap();
        life.alive = false;
        life.last_death = Some(self.now);
        self.ready_via.retain(|(i, _), _| *i != id);
        self.interfered.retain(|(i, _)| *i != id);
        // Messages in flight to the dead instance: a random prefix was on the wire and is lost;
        // open connections keep the rest queued (the DEALER reconnects later), closed ones lose all.
        let inbound: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.to_endpoint == endpoint)
            .map(|(&i, _)| i)
            .collect();
        for cid in inbound {
            let c = &self.conns[&cid];
            let k = if c.open {
                self.rng.gen_range(0..=c.queue.len())
            } else {
                c.queue.len()
            };
            self.drop_prefix(cid, k, "peer died");
            self.gc_conn(cid);
        }
        if !self.churn_over && self.rng.gen_bool(0.75) {
            let t = self.now
                + self
                    .rng
                    .gen_range(Duration::from_millis(200)..=self.cfg.max_downtime);
            self.slots[slot].start_at = Some(t);
        }
        Ok(())
    }

    /// Closes an outbox: a graceful close keeps everything in flight; otherwise a random prefix
    /// is still delivered (already on the wire) if someone listens, the rest is dropped.
    fn close(&mut self, cid: ConnId, graceful: bool) {
        let listening = self.listener(&self.conns[&cid].to_endpoint).is_some();
        let len = self.conns[&cid].queue.len();
        self.conns.get_mut(&cid).unwrap().open = false;
        let keep = if graceful && listening {
            len
        } else if listening {
            self.rng.gen_range(0..=len)
        } else {
            0
        };
        let c = self.conns.get_mut(&cid).unwrap();
        if keep < len {
            let lost = c.queue.split_off(keep);
            c.tainted = true;
            self.report.dropped += lost.len() as u64;
            self.log(format!(
                "close conn {cid}: {} in-flight message(s) dropped",
                lost.len()
            ));
        }
        self.gc_conn(cid);
    }

    fn gc_conn(&mut self, cid: ConnId) {
        if self
            .conns
            .get(&cid)
            .is_some_and(|c| !c.open && c.queue.is_empty())
        {
            self.conns.remove(&cid);
        }
    }

    fn deliver(&mut self, cid: ConnId) -> Result<(), String> {
        let c = &self.conns[&cid];
        if self.cut(c.from_slot, c.to_slot) {
            self.drop_prefix(cid, 1, "partition");
            self.gc_conn(cid);
            return Ok(());
        }
        let Some(to) = self.listener(&c.to_endpoint) else {
            // Closed and nobody listening: lost.
            let n = c.queue.len();
            self.drop_prefix(cid, n, "no listener");
            self.gc_conn(cid);
            return Ok(());
        };
        let c = self.conns.get_mut(&cid).unwrap();
        let msg = c.queue.pop_front().unwrap();
        let from_uuid = c.from_uuid;
        let tainted = c.tainted;
        let from_inst = c.from_inst;
        self.touched_conns.insert(cid);
        self.report.delivered += 1;
        match self.ready_via.get(&(to, from_uuid)) {
            Some(&c0) if c0 != cid => {
                self.interfered.insert((to, from_uuid));
            }
            _ => {}
        }
        let clean = !tainted
            && self.ready_via.get(&(to, from_uuid)) == Some(&cid)
            && !self.interfered.contains(&(to, from_uuid));
        self.stale_delivery = self.conns[&cid].peer != self.insts[&to].uuid;
        if self.stale_delivery {
            self.report.stale_deliveries += 1;
        }
        let before: Stats = self.insts[&to].engine.stats().clone();
        let to_name = self.insts[&to].name.clone();
        if self.cfg.verbose {
            let from_name = self
                .insts
                .get(&from_inst)
                .map_or_else(|| format!("dead {}", short(&from_uuid)), |i| i.name.clone());
            self.log(format!(
                "deliver conn {cid} {from_name} -> {to_name}: {:?} seq {}{}",
                msg.kind,
                msg.seq,
                if clean { " (clean)" } else { "" }
            ));
        }
        let now = self.instant(self.now);
        self.insts.get_mut(&to).unwrap().engine.handle_message(
            now,
            &routing_id(&from_uuid),
            msg.frames,
        );
        let d = self.drain(to, Some(cid));
        self.stale_delivery = false;
        let d = d?;
        self.gc_conn(cid);
        let Some(inst) = self.insts.get(&to) else {
            return Ok(());
        };
        let after = inst.engine.stats();
        if after.malformed != 0 || after.bad_identity != 0 {
            return Err(format!(
                "{to_name}: malformed/bad identity counted: {after:?}"
            ));
        }
        if clean {
            self.report.clean_checked += 1;
            let bad = [
                ("sequence_gaps", before.sequence_gaps, after.sequence_gaps),
                (
                    "status_mismatches",
                    before.status_mismatches,
                    after.status_mismatches,
                ),
                (
                    "not_hello_first",
                    before.not_hello_first,
                    after.not_hello_first,
                ),
                (
                    "from_disconnected",
                    before.from_disconnected,
                    after.from_disconnected,
                ),
            ];
            for (what, b, a) in bad {
                if a != b {
                    return Err(format!(
                        "{to_name}: {what} counted for {:?} seq {} on clean conn {cid} from {}",
                        msg.kind,
                        msg.seq,
                        short(&from_uuid)
                    ));
                }
            }
            if msg.kind != Kind::Goodbye
                && !d.send_failed
                && self.ready_via.get(&(to, from_uuid)) != Some(&cid)
            {
                return Err(format!(
                    "{to_name}: lost peer {} after {:?} seq {} on clean conn {cid}",
                    short(&from_uuid),
                    msg.kind,
                    msg.seq
                ));
            }
            match msg.kind {
                Kind::Whisper(w) if !d.whispers.contains(&w) => {
                    return Err(format!(
                        "{to_name}: whisper #{w} on clean conn {cid} not delivered"
                    ));
                }
                Kind::Shout(s) if !d.shouts.contains(&s) => {
                    return Err(format!(
                        "{to_name}: shout #{s} on clean conn {cid} not delivered"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ outputs

    /// Drains and checks every output of instance `id`. `via` is the connection whose message is
    /// being processed (ENTER is only legal then).
    fn drain(&mut self, id: InstId, via: Option<ConnId>) -> Result<Drained, String> {
        let mut d = Drained::default();
        loop {
            let mut failed = Vec::new();
            while let Some(out) = self.insts.get_mut(&id).unwrap().engine.poll_output() {
                if !matches!(out, Output::Send { .. }) {
                    self.touched.insert(id);
                }
                self.output(id, via, out, &mut d, &mut failed)?;
            }
            if failed.is_empty() {
                let inst = self.insts.get_mut(&id).unwrap();
                inst.deadline = inst
                    .engine
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.base));
                return Ok(d);
            }
            d.send_failed = true;
            let now = self.instant(self.now);
            for peer in failed {
                self.insts
                    .get_mut(&id)
                    .unwrap()
                    .engine
                    .handle_send_failed(now, peer);
            }
        }
    }

    fn output(
        &mut self,
        id: InstId,
        via: Option<ConnId>,
        out: Output,
        d: &mut Drained,
        failed: &mut Vec<Uuid>,
    ) -> Result<(), String> {
        let inst = &self.insts[&id];
        let name = inst.name.clone();
        match out {
            Output::Connect { peer, endpoint } => {
                if inst.conns.contains_key(&peer) {
                    return Err(format!(
                        "{name}: Connect to {} which has an open outbox",
                        short(&peer)
                    ));
                }
                if peer == inst.uuid || endpoint == inst.endpoint {
                    return Err(format!("{name}: Connect to itself ({endpoint})"));
                }
                let cid = self.next_conn;
                self.next_conn += 1;
                let conn = Conn {
                    from_inst: id,
                    from_uuid: inst.uuid,
                    from_slot: inst.slot,
                    peer,
                    to_slot: parse_slot(&endpoint),
                    to_endpoint: endpoint.clone(),
                    queue: VecDeque::new(),
                    open: true,
                    tainted: false,
                    sent_any: false,
                    last_seq: 0,
                    status: 0,
                    tail_at: Duration::ZERO,
                    stalled_until: Duration::ZERO,
                };
                self.conns.insert(cid, conn);
                self.insts.get_mut(&id).unwrap().conns.insert(peer, cid);
                self.log(format!(
                    "{name} connect conn {cid} to {} at {endpoint}",
                    short(&peer)
                ));
            }
            Output::Send { peer, frames } => {
                let Some(&cid) = inst.conns.get(&peer) else {
                    return Err(format!(
                        "{name}: Send to {} without an open outbox",
                        short(&peer)
                    ));
                };
                let (seq, msg) = ZreMessage::decode(&frames)
                    .map_err(|e| format!("{name}: Send frames do not decode: {e}"))?;
                let status = inst.engine.status();
                let own_groups = inst.engine.own_groups();
                let stopping = inst.stopping;
                let own_endpoint = inst.endpoint.clone();
                let own_uuid = inst.uuid;
                let c = self.conns.get_mut(&cid).unwrap();
                let first = !c.sent_any;
                let is_hello = matches!(msg, ZreMessage::Hello { .. });
                if first && !(is_hello && seq == 1) {
                    return Err(format!(
                        "{name}: first message on conn {cid} is {} seq {seq}, not HELLO seq 1",
                        msg.name()
                    ));
                }
                if !first && (is_hello || seq != c.last_seq.wrapping_add(1)) {
                    return Err(format!(
                        "{name}: {} seq {seq} on conn {cid} after seq {}",
                        msg.name(),
                        c.last_seq
                    ));
                }
                c.sent_any = true;
                c.last_seq = seq;
                let kind = match &msg {
                    ZreMessage::Hello {
                        endpoint,
                        groups,
                        status: s,
                        ..
                    } => {
                        if *endpoint != own_endpoint || *s != status || *groups != own_groups {
                            return Err(format!(
                                "{name}: HELLO ({endpoint}, {groups:?}, {s}) does not match the \
                                 node ({own_endpoint}, {own_groups:?}, {status})"
                            ));
                        }
                        c.status = *s;
                        Kind::Hello
                    }
                    ZreMessage::Join { group, status: s }
                    | ZreMessage::Leave { group, status: s } => {
                        let join = matches!(msg, ZreMessage::Join { .. });
                        if *s != c.status.wrapping_add(1) || *s != status {
                            return Err(format!(
                                "{name}: {} {group} status {s} on conn {cid}, previous {}, node {status}",
                                msg.name(),
                                c.status
                            ));
                        }
                        if own_groups.iter().any(|g| g == group) != join {
                            return Err(format!(
                                "{name}: {} {group} disagrees with own groups",
                                msg.name()
                            ));
                        }
                        c.status = *s;
                        Kind::Other(msg.name())
                    }
                    ZreMessage::Whisper { content } => {
                        let w = content_id(content)
                            .ok_or_else(|| format!("{name}: whisper without id"))?;
                        if self.whispers.get(&w) != Some(&(own_uuid, peer)) {
                            return Err(format!(
                                "{name}: whisper #{w} sent to the wrong peer {}",
                                short(&peer)
                            ));
                        }
                        Kind::Whisper(w)
                    }
                    ZreMessage::Shout { group, content } => {
                        let s = content_id(content)
                            .ok_or_else(|| format!("{name}: shout without id"))?;
                        if self.shouts.get(&s) != Some(&(own_uuid, group.clone())) {
                            return Err(format!("{name}: shout #{s} is not ours for {group}"));
                        }
                        Kind::Shout(s)
                    }
                    ZreMessage::Goodbye => {
                        if !stopping {
                            return Err(format!("{name}: GOODBYE outside stop()"));
                        }
                        Kind::Goodbye
                    }
                    ZreMessage::Elect { .. } | ZreMessage::Leader { .. } => {
                        return Err(format!("{name}: sent {}", msg.name()));
                    }
                    ZreMessage::Ping | ZreMessage::PingOk => Kind::Other(msg.name()),
                };
                if !self.churn_over && !stopping && self.rng.gen_bool(self.cfg.send_fail_prob) {
                    let c = self.conns.get_mut(&cid).unwrap();
                    c.tainted = true;
                    failed.push(peer);
                    self.report.send_failures += 1;
                    self.report.dropped += 1;
                    self.log(format!(
                        "{name}: send of {kind:?} seq {seq} on conn {cid} fails"
                    ));
                    return Ok(());
                }
                let delay = self.rng.gen_range(Duration::ZERO..=self.cfg.max_delay);
                let c = self.conns.get_mut(&cid).unwrap();
                let at = c.tail_at.max(self.now + delay);
                c.tail_at = at;
                c.queue.push_back(Msg {
                    deliver_at: at,
                    seq,
                    kind,
                    frames,
                });
            }
            Output::Disconnect { peer } => {
                let Some(cid) = self.insts.get_mut(&id).unwrap().conns.remove(&peer) else {
                    return Err(format!(
                        "{name}: Disconnect of {} without an open outbox",
                        short(&peer)
                    ));
                };
                self.log(format!("{name} disconnect conn {cid} ({})", short(&peer)));
                let graceful = self.insts[&id].stopping;
                self.close(cid, graceful);
            }
            Output::Event(ev) => self.event(id, via, ev, d)?,
        }
        Ok(())
    }

    fn event(
        &mut self,
        id: InstId,
        via: Option<ConnId>,
        ev: Event,
        d: &mut Drained,
    ) -> Result<(), String> {
        let inst = self.insts.get_mut(&id).unwrap();
        let name = inst.name.clone();
        let my_uuid = inst.uuid;
        let need = |inst: &Inst, peer: &Uuid, what: &str| -> Result<(), String> {
            if inst.view.contains_key(peer) {
                Ok(())
            } else {
                Err(format!(
                    "{}: {what} from {} which has not entered",
                    inst.name,
                    short(peer)
                ))
            }
        };
        let line = match &ev {
            Event::Enter { peer, endpoint, .. } => {
                if inst.view.contains_key(peer) {
                    return Err(format!(
                        "{name}: second ENTER of {} without EXIT",
                        short(peer)
                    ));
                }
                let Some(cid) = via else {
                    return Err(format!(
                        "{name}: ENTER of {} outside HELLO processing",
                        short(peer)
                    ));
                };
                if self.conns.get(&cid).map(|c| c.from_uuid) != Some(*peer) {
                    return Err(format!(
                        "{name}: ENTER of {} on a connection from someone else",
                        short(peer)
                    ));
                }
                inst.view.insert(*peer, BTreeSet::new());
                self.ready_via.insert((id, *peer), cid);
                self.interfered.remove(&(id, *peer));
                self.report.enters += 1;
                format!(
                    "{name} EVENT ENTER {} ({endpoint}) via conn {cid}",
                    short(peer)
                )
            }
            Event::Exit { peer, .. } => {
                if inst.view.remove(peer).is_none() {
                    return Err(format!(
                        "{name}: EXIT of {} which has not entered",
                        short(peer)
                    ));
                }
                self.ready_via.remove(&(id, *peer));
                self.interfered.remove(&(id, *peer));
                self.report.exits += 1;
                format!("{name} EVENT EXIT {}", short(peer))
            }
            Event::Join { peer, group, .. } => {
                need(inst, peer, "JOIN")?;
                if !inst.view.get_mut(peer).unwrap().insert(group.clone()) {
                    return Err(format!(
                        "{name}: JOIN {group} of {} already in it",
                        short(peer)
                    ));
                }
                format!("{name} EVENT JOIN {} {group}", short(peer))
            }
            Event::Leave { peer, group, .. } => {
                need(inst, peer, "LEAVE")?;
                if !inst.view.get_mut(peer).unwrap().remove(group) {
                    return Err(format!(
                        "{name}: LEAVE {group} of {} not in it",
                        short(peer)
                    ));
                }
                format!("{name} EVENT LEAVE {} {group}", short(peer))
            }
            Event::Whisper { peer, content, .. } => {
                need(inst, peer, "WHISPER")?;
                let w = content_id(content)
                    .ok_or_else(|| format!("{name}: whisper event without id"))?;
                match self.whispers.get(&w) {
                    Some(&(from, to)) if from == *peer && to == my_uuid => {}
                    Some(&(from, to)) if from == *peer && self.stale_delivery => {
                        // Queued for `to`, whose endpoint we took over: a ZRE property.
                        self.report.misdelivered_whispers += 1;
                        self.log(format!(
                            "{name}: whisper #{w} meant for {} delivered here (endpoint reuse)",
                            short(&to)
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name}: WHISPER #{w} from {} was not sent to us by it",
                            short(peer)
                        ))
                    }
                }
                if !self.delivered.insert((w, id)) {
                    return Err(format!("{name}: WHISPER #{w} delivered twice"));
                }
                d.whispers.push(w);
                format!("{name} EVENT WHISPER {} #{w}", short(peer))
            }
            Event::Shout {
                peer,
                group,
                content,
                ..
            } => {
                need(inst, peer, "SHOUT")?;
                let s =
                    content_id(content).ok_or_else(|| format!("{name}: shout event without id"))?;
                if self.shouts.get(&s) != Some(&(*peer, group.clone())) {
                    return Err(format!(
                        "{name}: SHOUT #{s} from {} to {group} was not sent by it",
                        short(peer)
                    ));
                }
                if !self.delivered.insert((s, id)) {
                    return Err(format!("{name}: SHOUT #{s} delivered twice"));
                }
                d.shouts.push(s);
                format!("{name} EVENT SHOUT {} {group} #{s}", short(peer))
            }
            Event::Evasive { peer, .. } => {
                need(inst, peer, "EVASIVE")?;
                format!("{name} EVENT EVASIVE {}", short(peer))
            }
            Event::Silent { peer, .. } => {
                need(inst, peer, "SILENT")?;
                format!("{name} EVENT SILENT {}", short(peer))
            }
            Event::Stop { uuid, .. } => {
                if !inst.stopping || *uuid != my_uuid {
                    return Err(format!("{name}: unexpected STOP event"));
                }
                format!("{name} EVENT STOP")
            }
        };
        self.log(line);
        Ok(())
    }

    // ------------------------------------------------------------------ invariants

    fn check_step(&mut self) -> Result<(), String> {
        let touched: Vec<InstId> = self.touched.iter().copied().collect();
        for id in touched {
            if self.insts.contains_key(&id) {
                self.check_view(id)?;
            }
        }
        let pairs: Vec<((InstId, Uuid), ConnId)> = self
            .ready_via
            .iter()
            .filter(|(_, c)| self.touched_conns.contains(c))
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((i, u), c) in pairs {
            self.check_status(i, u, c)?;
        }
        Ok(())
    }

    fn check_all(&mut self) -> Result<(), String> {
        let ids: Vec<InstId> = self.insts.keys().copied().collect();
        let bound = self.cfg.expired_timeout
            + self.cfg.max_stall
            + self.cfg.max_delay
            + Duration::from_secs(1);
        for &id in &ids {
            self.check_view(id)?;
            let inst = &self.insts[&id];
            for (u, life) in &self.lives {
                if *u == inst.uuid {
                    continue;
                }
                let info = inst.engine.peer(*u);
                let connected = info
                    .as_ref()
                    .is_some_and(|p| p.state != PeerState::Disconnected);
                if connected != inst.conns.contains_key(u) {
                    return Err(format!(
                        "{}: engine connected={connected} to {} but shell outbox={}",
                        inst.name,
                        short(u),
                        inst.conns.contains_key(u)
                    ));
                }
                if info.is_some() && !life.alive {
                    let died = life.last_death.unwrap_or_default();
                    if self.now.saturating_sub(died) > bound {
                        return Err(format!(
                            "{}: still has a record of {} which died at {} (leak)",
                            inst.name,
                            short(u),
                            secs(died)
                        ));
                    }
                }
            }
        }
        let pairs: Vec<((InstId, Uuid), ConnId)> =
            self.ready_via.iter().map(|(k, v)| (*k, *v)).collect();
        for ((i, u), c) in pairs {
            self.check_status(i, u, c)?;
        }
        Ok(())
    }

    /// The instance's query API agrees with its event stream.
    fn check_view(&self, id: InstId) -> Result<(), String> {
        let inst = &self.insts[&id];
        let e = &inst.engine;
        let peers: BTreeSet<Uuid> = e.peers().into_iter().collect();
        let view: BTreeSet<Uuid> = inst.view.keys().copied().collect();
        if peers != view {
            return Err(format!(
                "{}: peers() {:?} != entered peers {:?}",
                inst.name,
                peers.iter().map(short).collect::<Vec<_>>(),
                view.iter().map(short).collect::<Vec<_>>()
            ));
        }
        let mut nonempty = Vec::new();
        for g in GROUPS {
            let got: BTreeSet<Uuid> = e.peers_by_group(g).into_iter().collect();
            let want: BTreeSet<Uuid> = inst
                .view
                .iter()
                .filter(|(_, gs)| gs.contains(g))
                .map(|(u, _)| *u)
                .collect();
            if got != want {
                return Err(format!(
                    "{}: peers_by_group({g}) {:?} != events {:?}",
                    inst.name,
                    got.iter().map(short).collect::<Vec<_>>(),
                    want.iter().map(short).collect::<Vec<_>>()
                ));
            }
            if !want.is_empty() {
                nonempty.push(g.to_owned());
            }
        }
        nonempty.sort();
        if e.peer_groups() != nonempty {
            return Err(format!(
                "{}: peer_groups() {:?} != groups with members {:?}",
                inst.name,
                e.peer_groups(),
                nonempty
            ));
        }
        Ok(())
    }

    /// If `observer` is ready for `peer` through a clean, open, empty connection, its record of
    /// the peer's status and groups must equal the truth.
    fn check_status(&mut self, observer: InstId, peer: Uuid, cid: ConnId) -> Result<(), String> {
        let Some(c) = self.conns.get(&cid) else {
            return Ok(());
        };
        if !c.open
            || c.tainted
            || !c.queue.is_empty()
            || self.interfered.contains(&(observer, peer))
        {
            return Ok(());
        }
        let Some(sender) = self.insts.get(&c.from_inst) else {
            return Ok(());
        };
        let Some(obs) = self.insts.get(&observer) else {
            return Ok(());
        };
        self.report.status_checked += 1;
        let Some(info) = obs.engine.peer(peer) else {
            return Err(format!(
                "{}: no record of ready peer {}",
                obs.name,
                short(&peer)
            ));
        };
        let want: BTreeSet<String> = sender.engine.own_groups().into_iter().collect();
        let got: BTreeSet<String> = info.groups.iter().cloned().collect();
        if info.status != sender.engine.status() || got != want {
            return Err(format!(
                "{}: record of {} says status {} groups {got:?}, truth is status {} groups {want:?} \
                 (conn {cid} clean and idle)",
                obs.name,
                sender.name,
                info.status,
                sender.engine.status()
            ));
        }
        Ok(())
    }

    fn converged(&self) -> Result<(), String> {
        let live: BTreeMap<Uuid, InstId> = self.insts.iter().map(|(&id, i)| (i.uuid, id)).collect();
        for inst in self.insts.values() {
            let e = &inst.engine;
            let peers: BTreeSet<Uuid> = e.peers().into_iter().collect();
            let want: BTreeSet<Uuid> = live.keys().copied().filter(|u| *u != inst.uuid).collect();
            if peers != want {
                let missing: Vec<String> = want.difference(&peers).map(short).collect();
                let extra: Vec<String> = peers.difference(&want).map(short).collect();
                return Err(format!(
                    "{} sees peers missing {missing:?} extra {extra:?}",
                    inst.name
                ));
            }
            for g in GROUPS {
                let got: BTreeSet<Uuid> = e.peers_by_group(g).into_iter().collect();
                let want: BTreeSet<Uuid> = self
                    .insts
                    .values()
                    .filter(|o| o.uuid != inst.uuid && o.engine.own_groups().iter().any(|x| x == g))
                    .map(|o| o.uuid)
                    .collect();
                if got != want {
                    return Err(format!("{}: group {g} view != truth", inst.name));
                }
            }
            for (u, &oid) in &live {
                if *u == inst.uuid {
                    continue;
                }
                let info = e.peer(*u).ok_or("missing record")?;
                let other = &self.insts[&oid].engine;
                if info.status != other.status() {
                    return Err(format!(
                        "{}: status of {} is {} but truth is {}",
                        inst.name,
                        self.insts[&oid].name,
                        info.status,
                        other.status()
                    ));
                }
            }
            for (u, life) in &self.lives {
                if !life.alive && e.peer(*u).is_some() {
                    return Err(format!(
                        "{} still has a record of dead {}",
                        inst.name,
                        short(u)
                    ));
                }
            }
        }
        Ok(())
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
