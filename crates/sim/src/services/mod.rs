//! The services layer in a simulator of its own: callers, workers and brokers that crash,
//! restart, are partitioned and heal while callers call — with the invariants checked after
//! every step.
//!
//! This simulation drives [`Services`] values directly through [`Layer::handle`] (the exact
//! code the node runs above the driver), over a virtual network of its own: a *session* between
//! two instances that see each other is reliable and FIFO (one ZRE session over TCP) with a
//! random delay per message; a crash loses what was in flight to and from the instance, and the
//! survivors notice (`PeerDown`) after a random detection delay (ZRE's expiry or a closed
//! connection); a partition cuts every session across it (in-flight messages lost, `PeerDown`
//! on both sides after the detection delay) and the sessions come back (`PeerUp`) after the
//! heal; occasional resets lose one message in flight (a dropped WHISPER). The ZRE layer below
//! is modelled rather than run here: the big simulator (crate docs) checks the engine and the
//! driver, this one the services protocol, with many more calls per virtual second.
//!
//! Two topologies: **mesh** (everyone sees everyone) and **brokered** (callers and workers see
//! only the 2–3 brokers; brokers see everyone), chosen per seed.
//!
//! Invariants, after every step:
//!
//! * **every call ends exactly once** at its caller: a `Done` only for a call that is pending on
//!   that instance, with its id; a reply payload that some worker instance produced for that very
//!   (caller, message id); a handler error only if one was produced for it; `Timeout` never
//!   before the deadline, and no call outlives its deadline (by more than one step); at the end,
//!   after a quiet phase, no call is pending on a living instance;
//! * **no call is processed twice by a worker instance** within the de-dup window (the window
//!   is longer than the run): a `Call` delivery for a (caller, id) that instance already handed
//!   to its application is a violation;
//! * **no broker holds a call after it dies**: a crashed broker's state is gone and nothing it
//!   sent before crashing arrives after; every living broker's relay table is empty at the end,
//!   and holds at most the calls in flight in the meantime;
//! * the layer's own books: a caller's `in_flight()` equals the calls the model has pending
//!   there; a worker's `running()` equals the calls its application holds; no malformed
//!   envelope is ever counted (the network only carries what the layer sent).
//!
//! Mutation check (done by hand when this was written, 200 seeds each): skipping the worker's
//! cache lookup fails with "processed twice by one worker"; a broker that never forgets an
//! expired relay fails with "a broker still holds calls at the end"; a last try that does not
//! wait for the whole deadline fails with "timeout before the deadline". Accepting answers from
//! peers never tried survives: this network never produces such an answer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;
use zmesh_core::envelope::Envelope;
use zmesh_core::layer::{Input, Layer, Recorded};
use zmesh_core::services::{CallError, CallKey, CallSpec, Config, Delivery, Services};

mod faults;

// The network model (sessions, crashes, partitions, loss) is in `faults.rs`.

/// What a slot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Caller,
    Worker,
    Broker,
}

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct ServicesSimConfig {
    /// Virtual length of the churn phase.
    pub churn: Duration,
    /// Quiet phase after it (no faults, no new calls).
    pub quiet: Duration,
    /// Print every step.
    pub verbose: bool,
}

impl Default for ServicesSimConfig {
    fn default() -> Self {
        ServicesSimConfig {
            churn: Duration::from_secs(30),
            quiet: Duration::from_secs(20),
            verbose: false,
        }
    }
}

/// Counts of what happened in one run.
#[derive(Debug, Default, Clone)]
pub struct ServicesReport {
    /// Calls made.
    pub calls: u64,
    /// Calls answered with a reply.
    pub replied: u64,
    /// Calls that ended with an error (any).
    pub failed: u64,
    /// Calls lost with their caller (it crashed).
    pub lost_with_caller: u64,
    /// Tries beyond the first.
    pub retries: u64,
    /// Duplicates the workers absorbed.
    pub duplicates: u64,
    /// Calls processed by some worker.
    pub processed: u64,
    /// Calls processed by more than one worker instance (allowed: cross-worker retries).
    pub processed_on_two_workers: u64,
    /// Crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Calls relayed by brokers.
    pub relayed: u64,
}

type InstId = u64;

struct Inst {
    slot: usize,
    uuid: Uuid,
    layer: Services<u64>,
    out: Recorded<Delivery<u64>>,
    /// Calls of ours pending: waiter -> (id, deadline).
    pending: BTreeMap<u64, (u64, Duration)>,
    /// Calls our application holds (worker): key -> answer at.
    holding: BTreeMap<CallKey, Duration>,
    /// Every key handed to our application.
    processed: BTreeSet<CallKey>,
    /// Peers we see (a session is up).
    sees: BTreeSet<InstId>,
}

/// One message in flight on a session.
struct Msg {
    at: Duration,
    from: InstId,
    to: InstId,
    frame: Bytes,
}

/// The simulator.
pub struct ServicesSim {
    seed: u64,
    cfg: ServicesSimConfig,
    rng: ChaCha8Rng,
    t0: Instant,
    now: Duration,
    roles: Vec<Role>,
    brokered: bool,
    insts: BTreeMap<InstId, Inst>,
    /// The instance running in each slot.
    slot_inst: Vec<Option<InstId>>,
    next_inst: InstId,
    /// Per session (from, to): FIFO of messages.
    wire: BTreeMap<(InstId, InstId), VecDeque<Msg>>,
    /// Scheduled session changes: (at, a, b, up).
    links: Vec<(Duration, InstId, InstId, bool)>,
    /// Slots down until: slot -> restart at.
    down: BTreeMap<usize, Duration>,
    /// Partition: the set of slots on side A, until.
    cut: Option<(BTreeSet<usize>, Duration)>,
    next_waiter: u64,
    /// What workers produced: (caller, id) -> payloads / handler errors.
    produced: BTreeMap<CallKey, Vec<Result<Bytes, u16>>>,
    /// Which worker instances processed each key.
    processors: BTreeMap<CallKey, BTreeSet<InstId>>,
    /// UUIDs of crashed instances (their survivors' layers know them by UUID).
    dead: BTreeMap<InstId, Uuid>,
    /// Sessions broken (reset or cut) and not yet noticed: nothing is carried on them.
    broken: BTreeSet<(InstId, InstId)>,
    trace: VecDeque<String>,
    report: ServicesReport,
}

const SERVICES: [&str; 2] = ["echo", "math.add"];
const DETECT: (u64, u64) = (50, 1500);

impl ServicesSim {
    /// A run of `seed`.
    pub fn new(seed: u64, cfg: ServicesSimConfig) -> ServicesSim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e41_1ce5);
        let brokered = rng.gen_bool(0.5);
        let mut roles = vec![Role::Caller; rng.gen_range(2..=3)];
        roles.extend(vec![Role::Worker; rng.gen_range(2..=4)]);
        if brokered {
            roles.extend(vec![Role::Broker; rng.gen_range(2..=3)]);
        }
        let n = roles.len();
        let mut sim = ServicesSim {
            seed,
            cfg,
            rng,
            t0: Instant::now(),
            now: Duration::ZERO,
            roles,
            brokered,
            insts: BTreeMap::new(),
            slot_inst: vec![None; n],
            next_inst: 1,
            wire: BTreeMap::new(),
            links: Vec::new(),
            down: BTreeMap::new(),
            cut: None,
            next_waiter: 1,
            produced: BTreeMap::new(),
            processors: BTreeMap::new(),
            dead: BTreeMap::new(),
            broken: BTreeSet::new(),
            trace: VecDeque::new(),
            report: ServicesReport::default(),
        };
        for slot in 0..n {
            sim.start(slot);
        }
        sim
    }

    fn at(&self) -> Instant {
        self.t0 + self.now
    }

    fn log(&mut self, line: String) {
        let line = format!("[{:>9.3}s] {line}", self.now.as_secs_f64());
        if self.cfg.verbose {
            eprintln!("{line}");
        }
        self.trace.push_back(line);
        if self.trace.len() > 60 {
            self.trace.pop_front();
        }
    }

    fn fail(&self, msg: String) -> ! {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        panic!(
            "services sim seed {} at {:?}: {msg}\nlast steps:\n{}",
            self.seed,
            self.now,
            trace.join("\n")
        );
    }

    fn start(&mut self, slot: usize) {
        let id = self.next_inst;
        self.next_inst += 1;
        let uuid = Uuid::from_u64_pair(self.rng.gen(), self.rng.gen());
        let role = self.roles[slot];
        let config = Config {
            broker: role == Role::Broker,
            first_id: self.rng.gen(),
            seed: self.rng.gen(),
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(400),
            ..Config::default()
        };
        let mut inst = Inst {
            slot,
            uuid,
            layer: Services::new(config),
            out: Recorded::default(),
            pending: BTreeMap::new(),
            holding: BTreeMap::new(),
            processed: BTreeSet::new(),
            sees: BTreeSet::new(),
        };
        if role == Role::Worker {
            // Each worker offers one or both services.
            let k = self.rng.gen_range(0..3);
            for (i, s) in SERVICES.iter().enumerate() {
                if k == 2 || k == i {
                    inst.layer.offer(s, &mut inst.out).expect("valid");
                }
            }
        }
        self.insts.insert(id, inst);
        self.slot_inst[slot] = Some(id);
        self.log(format!("start slot {slot} ({role:?}) as #{id}"));
        // Sessions come up with every instance it may see, after a short delay.
        for other in 0..self.roles.len() {
            if let Some(o) = self.slot_inst[other] {
                if self.may_see(slot, other) {
                    let at = self.now + Duration::from_millis(self.rng.gen_range(5..200));
                    self.links.push((at, id, o, true));
                }
            }
        }
        self.flush(id);
    }

    fn input(&mut self, id: InstId, input: Input<'_, std::convert::Infallible>) {
        let now = self.at();
        let inst = self.insts.get_mut(&id).expect("running");
        inst.layer.handle(input, now, &mut inst.out);
        self.flush(id);
    }

    /// Puts an instance's frames on the wire and checks its deliveries.
    fn flush(&mut self, id: InstId) {
        let (sent, delivered) = {
            let inst = self.insts.get_mut(&id).expect("running");
            (
                std::mem::take(&mut inst.out.sent),
                std::mem::take(&mut inst.out.delivered),
            )
        };
        for (to, frame) in sent {
            let Some(to_id) = self.inst_of(to) else {
                continue;
            };
            if !self.insts[&id].sees.contains(&to_id)
                || self.broken.contains(&(id.min(to_id), id.max(to_id)))
            {
                // Sent to a peer whose session is gone: ZRE would refuse it.
                continue;
            }
            let at = self.now + Duration::from_millis(self.rng.gen_range(1..40));
            let q = self.wire.entry((id, to_id)).or_default();
            // FIFO per session.
            let at = q.back().map_or(at, |m| m.at.max(at));
            q.push_back(Msg {
                at,
                from: id,
                to: to_id,
                frame,
            });
        }
        for d in delivered {
            self.delivered(id, d);
        }
    }

    fn inst_of(&self, uuid: Uuid) -> Option<InstId> {
        self.insts
            .iter()
            .find(|(_, i)| i.uuid == uuid)
            .map(|(id, _)| *id)
    }

    fn delivered(&mut self, id: InstId, d: Delivery<u64>) {
        let now = self.now;
        match d {
            Delivery::Done {
                waiter,
                id: call_id,
                result,
                info,
            } => {
                let inst = self.insts.get_mut(&id).expect("running");
                let Some((want_id, deadline)) = inst.pending.remove(&waiter) else {
                    self.fail(format!(
                        "#{id}: Done for waiter {waiter}, not pending (twice?)"
                    ));
                };
                if want_id != call_id {
                    self.fail(format!(
                        "#{id}: Done for waiter {waiter} with id {call_id}, sent {want_id}"
                    ));
                }
                let key = CallKey {
                    caller: self.insts[&id].uuid,
                    id: call_id,
                };
                let produced = self.produced.get(&key);
                match &result {
                    Ok(p) => {
                        if !produced.is_some_and(|v| v.contains(&Ok(p.clone()))) {
                            self.fail(format!("#{id}: reply {p:?} for {key:?} no worker produced"));
                        }
                        self.report.replied += 1;
                    }
                    Err(CallError::Handler { code, .. }) => {
                        if !produced.is_some_and(|v| v.contains(&Err(*code))) {
                            self.fail(format!(
                                "#{id}: handler error {code} for {key:?} nobody produced"
                            ));
                        }
                        self.report.failed += 1;
                    }
                    Err(CallError::Timeout) => {
                        if now < deadline {
                            self.fail(format!("#{id}: timeout before the deadline {deadline:?}"));
                        }
                        self.report.failed += 1;
                    }
                    Err(
                        CallError::NoService | CallError::WorkerLost | CallError::Overloaded(_),
                    ) => {
                        self.report.failed += 1;
                    }
                    Err(e) => self.fail(format!("#{id}: unexpected outcome {e}")),
                }
                if now > deadline {
                    self.fail(format!("#{id}: call {call_id} ended after its deadline"));
                }
                self.report.retries += u64::from(info.tries.saturating_sub(1));
                self.log(format!(
                    "#{id} done {call_id}: {:?} tries {}",
                    result.as_ref().map(|_| "ok"),
                    info.tries
                ));
            }
            Delivery::Call { key, service, .. } => {
                let inst = self.insts.get_mut(&id).expect("running");
                if !inst.processed.insert(key) {
                    self.fail(format!(
                        "#{id}: {key:?} processed twice by one worker within the window"
                    ));
                }
                if !inst.layer.offered().any(|s| s == service) {
                    self.fail(format!(
                        "#{id}: call for {service}, which it does not offer"
                    ));
                }
                let answer = now + Duration::from_millis(self.rng.gen_range(1..1200));
                self.insts.get_mut(&id).unwrap().holding.insert(key, answer);
                self.report.processed += 1;
                let procs = self.processors.entry(key).or_default();
                procs.insert(id);
                if procs.len() == 2 {
                    self.report.processed_on_two_workers += 1;
                }
                self.log(format!("#{id} processes {key:?}"));
            }
            Delivery::Ended { key } => {
                let inst = self.insts.get_mut(&id).expect("running");
                if inst.holding.remove(&key).is_none() {
                    self.fail(format!("#{id}: Ended for {key:?}, which it does not hold"));
                }
            }
            other => self.fail(format!("#{id}: unexpected delivery {other:?}")),
        }
    }

    /// The next instant something happens.
    fn next_event(&self) -> Option<Duration> {
        let wire = self.wire.values().filter_map(|q| q.front().map(|m| m.at));
        let links = self.links.iter().map(|l| l.0);
        let timers = self
            .insts
            .values()
            .filter_map(|i| i.layer.poll_timeout())
            .map(|t| t.saturating_duration_since(self.t0));
        let answers = self
            .insts
            .values()
            .flat_map(|i| i.holding.values().copied());
        let downs = self.down.values().copied();
        let cut = self.cut.as_ref().map(|c| c.1);
        wire.chain(links)
            .chain(timers)
            .chain(answers)
            .chain(downs)
            .chain(cut)
            .min()
    }

    /// Runs the whole scenario; returns the report.
    pub fn run(mut self) -> ServicesReport {
        let end_churn = self.cfg.churn;
        let end = self.cfg.churn + self.cfg.quiet;
        let mut next_app = Duration::from_millis(300);
        let mut next_fault = Duration::from_millis(self.rng.gen_range(500..3000));
        loop {
            let t = [self.next_event(), Some(next_app), Some(next_fault)]
                .into_iter()
                .flatten()
                .min()
                .expect("always something");
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            if self.now >= next_fault {
                if self.now < end_churn {
                    self.fault();
                }
                next_fault = self.now + Duration::from_millis(self.rng.gen_range(300..2500));
            } else if self.now >= next_app {
                if self.now < end_churn {
                    self.app();
                }
                next_app = self.now + Duration::from_millis(self.rng.gen_range(5..120));
            } else {
                self.step();
            }
            self.check();
        }
        self.check_end();
        self.report
    }

    /// Applies everything due now.
    fn step(&mut self) {
        let now = self.now;
        // Restarts and the heal.
        let due: Vec<usize> = self
            .down
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(s, _)| *s)
            .collect();
        for slot in due {
            self.down.remove(&slot);
            self.start(slot);
        }
        if self.cut.as_ref().is_some_and(|c| c.1 <= now) {
            self.cut = None;
            self.log("heal".into());
            self.apply_topology();
        }
        // Session changes.
        let (due, later): (Vec<_>, Vec<_>) = self.links.drain(..).partition(|l| l.0 <= now);
        self.links = later;
        let mut lost_sessions = false;
        for (_, a, b, up) in due {
            lost_sessions |= !up;
            if !(self.insts.contains_key(&a) && self.insts.contains_key(&b)) {
                // A crashed instance's survivors still learn it is gone.
                if !up && self.insts.contains_key(&a) && self.insts[&a].sees.contains(&b) {
                    self.see(a, b, false);
                }
                continue;
            }
            let (sa, sb) = (self.insts[&a].slot, self.insts[&b].slot);
            if up && !self.may_see(sa, sb) {
                continue;
            }
            self.see(a, b, up);
            self.see(b, a, up);
        }
        if lost_sessions {
            // Peers that still may see each other meet again (ZRE: expired, then rediscovered).
            self.apply_topology();
        }
        // Messages.
        let keys: Vec<(InstId, InstId)> = self
            .wire
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|m| m.at <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            while let Some(m) = self.wire.get_mut(&k).and_then(|q| {
                if q.front().is_some_and(|m| m.at <= now) {
                    q.pop_front()
                } else {
                    None
                }
            }) {
                if !self.insts.contains_key(&m.to) || !self.insts[&m.to].sees.contains(&m.from) {
                    continue;
                }
                if !self.insts.contains_key(&m.from) {
                    self.fail(format!("a message of dead #{} delivered", m.from));
                }
                let from = self.insts[&m.from].uuid;
                let envelope = Envelope::decode(&m.frame)
                    .unwrap_or_else(|e| self.fail(format!("undecodable frame: {e}")));
                self.input(
                    m.to,
                    Input::Envelope {
                        from,
                        group: None,
                        envelope,
                    },
                );
            }
        }
        // Timers.
        let ids: Vec<InstId> = self.insts.keys().copied().collect();
        let at = self.at();
        for id in ids {
            if self
                .insts
                .get(&id)
                .and_then(|i| i.layer.poll_timeout())
                .is_some_and(|t| t <= at)
            {
                self.input(id, Input::Timeout);
                if self.insts[&id]
                    .layer
                    .poll_timeout()
                    .is_some_and(|t| t <= at)
                {
                    self.fail(format!("#{id}: a timeout left its deadline behind"));
                }
            }
        }
        // Workers' applications answer.
        let ids: Vec<InstId> = self.insts.keys().copied().collect();
        for id in ids {
            let due: Vec<CallKey> = self.insts[&id]
                .holding
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                self.insts.get_mut(&id).unwrap().holding.remove(&key);
                let roll = self.rng.gen_range(0..20);
                let worker = self.insts[&id].uuid;
                let result = if roll == 0 {
                    Err((7u16, "boom".to_owned()))
                } else {
                    Ok(Bytes::from(format!(
                        "r:{}:{}",
                        key.id,
                        worker.as_u64_pair().0
                    )))
                };
                let produced = match &result {
                    Ok(p) => Ok(p.clone()),
                    Err((c, _)) => Err(*c),
                };
                let at = self.at();
                let inst = self.insts.get_mut(&id).unwrap();
                let sent = inst.layer.reply(key, result, at, &mut inst.out);
                if !sent {
                    self.fail(format!("#{id}: reply to held {key:?} refused"));
                }
                self.produced.entry(key).or_default().push(produced);
                self.flush(id);
            }
        }
    }

    /// The callers' applications make calls.
    fn app(&mut self) {
        let callers: Vec<InstId> = self
            .insts
            .iter()
            .filter(|(_, i)| self.roles[i.slot] == Role::Caller)
            .map(|(id, _)| *id)
            .collect();
        if callers.is_empty() {
            return;
        }
        let id = callers[self.rng.gen_range(0..callers.len())];
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let service = SERVICES[self.rng.gen_range(0..SERVICES.len())];
        let timeout = Duration::from_millis(self.rng.gen_range(500..6000));
        let spec = CallSpec {
            timeout: Some(timeout),
            per_try: Some(Duration::from_millis(self.rng.gen_range(100..1500))),
            retries: self.rng.gen_range(0..5),
            ..CallSpec::new(service, Bytes::from(format!("q{waiter}")))
        };
        let at = self.at();
        let inst = self.insts.get_mut(&id).unwrap();
        match inst.layer.call(at, waiter, spec, &mut inst.out) {
            Ok(cid) => {
                inst.pending.insert(waiter, (cid, self.now + timeout));
                self.report.calls += 1;
                self.log(format!("#{id} calls {service} as {cid}"));
            }
            Err(e) => self.fail(format!("#{id}: call refused: {e}")),
        }
        self.flush(id);
    }

    fn check(&mut self) {
        for (id, inst) in &self.insts {
            if inst.layer.in_flight() != inst.pending.len() {
                self.fail(format!(
                    "#{id}: in_flight {} but {} pending",
                    inst.layer.in_flight(),
                    inst.pending.len()
                ));
            }
            if inst.layer.running() != inst.holding.len() {
                self.fail(format!(
                    "#{id}: running {} but the application holds {}",
                    inst.layer.running(),
                    inst.holding.len()
                ));
            }
            if let Some((w, (_, deadline))) = inst.pending.iter().find(|(_, (_, d))| *d < self.now)
            {
                self.fail(format!(
                    "#{id}: call {w} outlived its deadline {deadline:?}"
                ));
            }
            if inst.layer.stats().malformed != 0 {
                self.fail(format!("#{id}: malformed envelopes counted"));
            }
        }
    }

    fn check_end(&mut self) {
        for (id, inst) in &self.insts {
            if !inst.pending.is_empty() {
                self.fail(format!("#{id}: calls still pending at the end"));
            }
            if inst.layer.relaying() != 0 {
                self.fail(format!("#{id}: a broker still holds calls at the end"));
            }
        }
        for inst in self.insts.values() {
            self.report.duplicates += inst.layer.stats().duplicates;
            self.report.relayed += inst.layer.stats().relayed;
        }
    }
}
