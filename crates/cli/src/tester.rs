//! `zmesh tester`: churn a whole mesh inside one process and prove that it never breaks.
//!
//! This is the Zyre tester from the ZeroMQ guide ("Testing and Simulation"), with the assertions
//! turned into checks that are counted and reported instead of aborting:
//!
//! * **Churn.** `--nodes N` slots; every 500–1000 ms one random slot is toggled: a stopped slot
//!   starts a fresh node (new UUID), a running one is stopped — politely ([`Node::stop`]: GOODBYE +
//!   leave beacon) or, with probability `--kill-ratio`, like a crash ([`Node::abort`]: nothing is
//!   said, peers notice by expiry). Every node runs the chapter's reactions (see [`node`]).
//! * **Continuous checks** (per event, in [`node`]): nothing about a peer before its ENTER, group
//!   events consistent, nothing after STOP, only our own nodes on the port, loopback endpoints, no
//!   EXIT for a peer that is still running, whispers intact and in order.
//! * **Protocol counters** (each node's [`zmesh::NodeStats`], read when it stops and at the end):
//!   see [`must_be_zero`] for which counters must be 0 and why.
//! * **Convergence.** When the churn phase ends the group activity stops, and within
//!   `expired + 2 × beacon interval + slack` every running node must know exactly the other
//!   running nodes, each group's members must equal the truth, each peer's status counter must
//!   equal the one that peer computed for itself, and the event-derived view must agree with
//!   the node's query API.
//! * **No lost whisper** between two nodes that both stayed up to the end and never saw each other
//!   EXIT: the receiver's count must equal the sender's and arrive without gaps.
//! * **The API after stop**: once `stop()`/`abort()` has returned, join/leave/shout/whisper must
//!   fail with `Error::Stopped`.
//! * **No panic** (a panic hook counts them) and **bounded memory**: RSS is sampled every second;
//!   after the warm-up it must stay below `2 × warm-up maximum + --rss-slack-mib`.
//!
//! The run prints progress on stderr and a summary on stdout (one JSON line with `--json`), and
//! exits 1 if anything was violated. Loopback is pinned unless `--iface` is given, and the beacon
//! port is random unless `--port` is given, so concurrent runs never see each other.

mod node;
mod report;
mod rng;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use zmesh::{InterfaceSpec, Node, NodeStats, Uuid};

use crate::output::print_json;
use node::{lock, NodeApp, NodeRecord};
use report::{add_stats, stats_json, RssLog};
use rng::Rng;

/// `zmesh tester` options.
#[derive(Args, Debug, Clone)]
pub struct TesterArgs {
    /// Number of node slots (about half of them run at any time).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// How long to churn: 90s, 10m, 1h, 500ms (a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed for every random choice (default: random; printed in the summary to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Slots running at the start (default: half of --nodes).
    #[arg(long)]
    initial: Option<usize>,
    /// Groups the nodes join and leave.
    #[arg(long, default_value_t = 10)]
    groups: usize,
    /// Fraction of stops that are crashes (abort, no goodbye) rather than polite stops.
    #[arg(long, default_value_t = 0.5)]
    kill_ratio: f64,
    /// Shortest pause between two churn steps, in milliseconds.
    #[arg(long, default_value_t = 500)]
    churn_min: u64,
    /// Longest pause between two churn steps, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    churn_max: u64,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval: u64,
    /// Evasive timeout in milliseconds (short, so crashed nodes are noticed quickly).
    #[arg(long, default_value_t = 1000)]
    evasive: u64,
    /// Expired timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    expired: u64,
    /// Extra time allowed for convergence beyond expired + 2 beacon intervals, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    settle_slack: u64,
    /// Memory bound after warm-up: 2 × the warm-up maximum plus this many MiB.
    #[arg(long, default_value_t = 64)]
    rss_slack_mib: u64,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 10)]
    progress: u64,
}

/// Parses `500ms`, `90s`, `10m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 90s, 10m, 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit {unit:?} in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Event and message counters, summed over all nodes.
#[derive(Debug, Default)]
pub struct Counters {
    enter: AtomicU64,
    exit: AtomicU64,
    join: AtomicU64,
    leave: AtomicU64,
    whisper: AtomicU64,
    shout: AtomicU64,
    evasive: AtomicU64,
    silent: AtomicU64,
    stop: AtomicU64,
    whispers_sent: AtomicU64,
    whisper_errors: AtomicU64,
    whisper_to_exited_ok: AtomicU64,
    exit_probes_received: AtomicU64,
    shouts_sent: AtomicU64,
    shout_copies: AtomicU64,
    exit_of_live: AtomicU64,
    evasive_of_live: AtomicU64,
}

/// Violations by kind, with the first examples as evidence.
#[derive(Debug, Default)]
struct ViolationLog {
    by_kind: BTreeMap<&'static str, u64>,
    examples: Vec<String>,
}

/// State shared by the orchestrator and every node task.
pub struct Shared {
    started: Instant,
    /// Stop spontaneous activity (joins, leaves, original shouts): the settle phase.
    quiet: AtomicBool,
    /// Stop answering messages too: whisper counts are about to be compared.
    frozen: AtomicBool,
    groups: usize,
    loopback_only: bool,
    /// Every UUID the tester ever started → its name.
    names: Mutex<HashMap<Uuid, String>>,
    /// Nodes running and not yet asked to stop.
    running: Mutex<HashSet<Uuid>>,
    counters: Counters,
    violations: Mutex<ViolationLog>,
}

/// How many violation examples are kept (and printed as they happen).
const MAX_EXAMPLES: usize = 40;

impl Shared {
    /// Records a violation of `kind`.
    fn violation(&self, kind: &'static str, detail: String) {
        let mut v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        *v.by_kind.entry(kind).or_default() += 1;
        if v.examples.len() < MAX_EXAMPLES {
            let line = format!(
                "[{:8.3}s] {kind}: {detail}",
                self.started.elapsed().as_secs_f64()
            );
            eprintln!("tester: VIOLATION {line}");
            v.examples.push(line);
        }
    }

    fn violation_count(&self) -> u64 {
        let v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        v.by_kind.values().sum()
    }

    fn name_of(&self, uuid: Uuid) -> Option<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uuid)
            .cloned()
    }

    fn is_running(&self, uuid: Uuid) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&uuid)
    }

    fn set_running(&self, uuid: Uuid, on: bool) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            r.insert(uuid);
        } else {
            r.remove(&uuid);
        }
    }
}

/// Panics anywhere in the process (zmesh tasks included), counted by a hook.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn install_panic_counter() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// One running node as the orchestrator holds it.
struct Running {
    node: Node,
    record: Arc<Mutex<NodeRecord>>,
    task: JoinHandle<()>,
}

/// Totals folded in from nodes that have stopped (their records are dropped, so the tester's own
/// memory does not grow with the number of incarnations).
#[derive(Default)]
struct Retired {
    stats: NodeStats,
    whispers_received: u64,
    polite_without_stop_event: u64,
}

/// The orchestrator's state.
struct Tester {
    args: TesterArgs,
    shared: Arc<Shared>,
    iface: InterfaceSpec,
    port: u16,
    seed: u64,
    rng: Rng,
    slots: Vec<Option<Running>>,
    incarnations: Vec<u32>,
    retiring: Vec<JoinHandle<()>>,
    retired: Arc<Mutex<Retired>>,
    started: u64,
    stopped: u64,
    killed: u64,
    max_running: usize,
    rss: RssLog,
}

/// Runs the tester; returns the exit code (0 = no violation).
pub async fn run(
    iface: Option<InterfaceSpec>,
    port: Option<u16>,
    json: bool,
    args: &TesterArgs,
) -> Result<i32, zmesh::Error> {
    let bad = |why: String| Err(zmesh::Error::Config(why));
    if args.nodes < 2 {
        return bad("tester needs --nodes >= 2".into());
    }
    if !(0.0..=1.0).contains(&args.kill_ratio) {
        return bad("--kill-ratio must be between 0 and 1".into());
    }
    if args.churn_min > args.churn_max || args.churn_max == 0 {
        return bad("need 0 < --churn-min <= --churn-max".into());
    }
    if args.groups == 0 || args.interval == 0 || args.evasive == 0 || args.expired == 0 {
        return bad("--groups, --interval, --evasive and --expired must be > 0".into());
    }
    if args.initial.is_some_and(|i| i > args.nodes) {
        return bad("--initial cannot exceed --nodes".into());
    }
    install_panic_counter();
    let seed = args.seed.unwrap_or_else(|| {
        let b = Uuid::new_v4();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([7; 8]))
    });
    let rng = Rng::new(seed, u64::MAX);
    // The port is random even for a fixed seed, so two runs with the same seed never mix.
    let port = port.unwrap_or_else(|| {
        let b = Uuid::new_v4();
        20000 + u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]]) % 20000
    });
    let loopback_only = iface.is_none();
    let iface = iface.unwrap_or(InterfaceSpec::Name("lo".into()));
    let shared = Arc::new(Shared {
        started: Instant::now(),
        quiet: AtomicBool::new(false),
        frozen: AtomicBool::new(false),
        groups: args.groups,
        loopback_only,
        names: Mutex::new(HashMap::new()),
        running: Mutex::new(HashSet::new()),
        counters: Counters::default(),
        violations: Mutex::new(ViolationLog::default()),
    });
    let mut t = Tester {
        args: args.clone(),
        shared,
        iface,
        port,
        seed,
        rng,
        slots: (0..args.nodes).map(|_| None).collect(),
        incarnations: vec![0; args.nodes],
        retiring: Vec::new(),
        retired: Arc::new(Mutex::new(Retired::default())),
        started: 0,
        stopped: 0,
        killed: 0,
        max_running: 0,
        rss: RssLog::default(),
    };
    eprintln!(
        "tester: {} slots, {:?} of churn, seed {seed}, {} beacon port {port}, timeouts {}/{} ms",
        args.nodes, args.duration, t.iface, args.evasive, args.expired
    );
    let summary = t.run_all().await?;
    let ok = summary["ok"].as_bool().unwrap_or(false);
    if json {
        print_json(&summary);
    } else {
        print_human(&summary);
    }
    Ok(if ok { 0 } else { 1 })
}

impl Tester {
    fn running_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    async fn start_slot(&mut self, slot: usize) -> Result<(), zmesh::Error> {
        self.incarnations[slot] += 1;
        let name = format!("t{slot}.{}", self.incarnations[slot]);
        let a = &self.args;
        let (node, events) = Node::builder()
            .name(name.clone())
            .header("X-TESTER-SLOT", slot.to_string())
            .interface(self.iface.clone())
            .beacon_port(self.port)
            .beacon_interval(Duration::from_millis(a.interval))
            .evasive_timeout(Duration::from_millis(a.evasive))
            .expired_timeout(Duration::from_millis(a.expired))
            .event_capacity(100_000)
            .start()
            .await?;
        let uuid = node.uuid();
        self.shared
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uuid, name.clone());
        self.shared.set_running(uuid, true);
        let rng = Rng::new(
            self.seed,
            ((slot as u64) << 32) | self.incarnations[slot] as u64,
        );
        let app = NodeApp::new(self.shared.clone(), node.clone(), name, rng);
        let record = app.record();
        let task = tokio::spawn(app.run(events));
        self.slots[slot] = Some(Running { node, record, task });
        self.started += 1;
        self.max_running = self.max_running.max(self.running_count());
        Ok(())
    }

    /// Stops a slot in the background (a polite stop lingers up to 500 ms); its counters are folded
    /// into the totals when it is done.
    fn stop_slot(&mut self, slot: usize, kill: bool, count_stats: bool) {
        let Some(r) = self.slots[slot].take() else {
            return;
        };
        let uuid = r.node.uuid();
        // Not "running" any more from now on: an EXIT seen after this point is legitimate.
        self.shared.set_running(uuid, false);
        if kill {
            self.killed += 1;
        } else {
            self.stopped += 1;
        }
        let shared = self.shared.clone();
        let retired = self.retired.clone();
        self.retiring.push(tokio::spawn(async move {
            retire(shared, retired, r, kill, count_stats).await;
        }));
        self.retiring.retain(|h| !h.is_finished());
    }

    async fn run_all(&mut self) -> Result<Value, zmesh::Error> {
        let args = self.args.clone();
        let t0 = Instant::now();
        // Initial population: a random subset of slots.
        let initial = args.initial.unwrap_or(args.nodes / 2);
        let mut order: Vec<usize> = (0..args.nodes).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        for &slot in order.iter().take(initial) {
            self.start_slot(slot).await?;
        }

        // ---- churn phase
        let churn_end = t0 + args.duration;
        let (cmin, cmax) = (
            Duration::from_millis(args.churn_min),
            Duration::from_millis(args.churn_max),
        );
        let mut next_toggle = Instant::now() + self.rng.between(cmin, cmax);
        let mut next_sample = Instant::now();
        let mut next_progress = t0 + Duration::from_secs(args.progress.max(1));
        while Instant::now() < churn_end {
            let wake = next_toggle.min(next_sample).min(churn_end);
            tokio::time::sleep_until(wake.into()).await;
            let now = Instant::now();
            if now >= next_sample {
                self.rss.sample(t0.elapsed());
                next_sample += Duration::from_secs(1);
            }
            if args.progress > 0 && now >= next_progress {
                self.progress(t0);
                next_progress += Duration::from_secs(args.progress);
            }
            if now >= next_toggle && now < churn_end {
                let slot = self.rng.below(args.nodes as u64) as usize;
                if self.slots[slot].is_some() {
                    let kill = self.rng.chance_f(args.kill_ratio);
                    self.stop_slot(slot, kill, true);
                } else {
                    self.start_slot(slot).await?;
                }
                next_toggle = Instant::now() + self.rng.between(cmin, cmax);
            }
        }
        let churn_secs = t0.elapsed().as_secs_f64();

        // ---- settle phase: no more joins/leaves/original shouts; the mesh must converge.
        self.shared.quiet.store(true, Ordering::SeqCst);
        let quiet_at = Instant::now();
        for h in std::mem::take(&mut self.retiring) {
            let _ = h.await;
        }
        let bound = Duration::from_millis(args.expired + 2 * args.interval + args.settle_slack);
        let deadline = quiet_at + bound;
        let mut converged_after = None;
        let mut last_mismatches = Vec::new();
        loop {
            let mismatches = self.check_convergence();
            if mismatches.is_empty() {
                converged_after = Some(quiet_at.elapsed());
                break;
            }
            last_mismatches = mismatches;
            if Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= next_sample {
                self.rss.sample(t0.elapsed());
                next_sample += Duration::from_secs(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if converged_after.is_none() {
            let n = last_mismatches.len();
            for m in last_mismatches.into_iter().take(10) {
                self.shared.violation("not_converged", m);
            }
            self.shared.violation(
                "not_converged",
                format!("{n} mismatch(es) left {bound:?} after the churn stopped"),
            );
        }

        // ---- freeze: no more replies; let in-flight whispers land, then compare counts.
        self.shared.frozen.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let ledger = self.check_ledger();
        self.rss.sample(t0.elapsed());

        // ---- teardown: stop every survivor politely. Their protocol counters are taken *before*
        // (the teardown's own departures and late GOODBYEs are not part of the experiment).
        let survivors = self.running_count();
        {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            for r in self.slots.iter().flatten() {
                add_stats(&mut retired.stats, &r.node.stats());
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.stop_slot(slot, false, false);
                self.stopped -= 1; // the final teardown is not churn
            }
        }
        for h in std::mem::take(&mut self.retiring) {
            let _ = h.await;
        }
        Ok(self.summary(churn_secs, survivors, bound, converged_after, ledger))
    }

    fn progress(&self, t0: Instant) {
        let c = &self.shared.counters;
        eprintln!(
            "tester: {:6.0}s running {:3} started {} stopped {} killed {} | enter {} exit {} whisper {}/{} shout {} | violations {} | rss {} MiB tasks {} fds {}",
            t0.elapsed().as_secs_f64(),
            self.running_count(),
            self.started,
            self.stopped,
            self.killed,
            c.enter.load(Ordering::Relaxed),
            c.exit.load(Ordering::Relaxed),
            c.whisper.load(Ordering::Relaxed),
            c.whispers_sent.load(Ordering::Relaxed),
            c.shout.load(Ordering::Relaxed),
            self.shared.violation_count(),
            self.rss.samples.last().map(|s| s.1 / 1024).unwrap_or(0),
            // Live tokio tasks and open fds: both must follow the number of running nodes (about
            // two connections per ordered pair), so a task or socket leak shows up here at once.
            tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        );
    }

    /// Every running node's view against the truth; returns the differences (empty = converged).
    fn check_convergence(&self) -> Vec<String> {
        struct Truth {
            uuid: Uuid,
            name: String,
            groups: BTreeSet<String>,
            status: u8,
        }
        let live: Vec<&Running> = self.slots.iter().flatten().collect();
        let mut out = Vec::new();
        let mut truth = Vec::new();
        for r in &live {
            let (name, groups, status) = {
                let rec = lock(&r.record);
                (rec.name.clone(), rec.own_groups.clone(), rec.status)
            };
            let actual: BTreeSet<String> = r.node.own_groups().into_iter().collect();
            if actual != groups {
                out.push(format!(
                    "{name}: own_groups() {actual:?} but it joined {groups:?}"
                ));
            }
            truth.push(Truth {
                uuid: r.node.uuid(),
                name,
                groups,
                status,
            });
        }
        for (i, r) in live.iter().enumerate() {
            let me = &truth[i].name;
            let want: BTreeSet<Uuid> = truth
                .iter()
                .filter(|t| t.uuid != truth[i].uuid)
                .map(|t| t.uuid)
                .collect();
            let have: BTreeSet<Uuid> = r.node.peers().into_iter().collect();
            if have != want {
                out.push(format!(
                    "{me}: knows {} peers, {} running; missing {:?}, extra {:?}",
                    have.len(),
                    want.len(),
                    names(&self.shared, want.difference(&have)),
                    names(&self.shared, have.difference(&want)),
                ));
                continue;
            }
            for g in 0..self.args.groups {
                let g = format!("G{g}");
                let want: BTreeSet<Uuid> = truth
                    .iter()
                    .filter(|t| t.uuid != truth[i].uuid && t.groups.contains(&g))
                    .map(|t| t.uuid)
                    .collect();
                let have: BTreeSet<Uuid> = r.node.peers_by_group(&g).into_iter().collect();
                if have != want {
                    out.push(format!(
                        "{me}: group {g} members missing {:?}, extra {:?}",
                        names(&self.shared, want.difference(&have)),
                        names(&self.shared, have.difference(&want)),
                    ));
                }
            }
            let view = lock(&r.record).view.clone();
            for t in truth.iter().filter(|t| t.uuid != truth[i].uuid) {
                match r.node.peer_info(t.uuid) {
                    Some(info) if info.status != t.status => out.push(format!(
                        "{me}: status of {} is {} but it counts {}",
                        t.name, info.status, t.status
                    )),
                    None => out.push(format!("{me}: no peer_info for {}", t.name)),
                    _ => {}
                }
                match view.get(&t.uuid) {
                    Some(gs) if *gs != t.groups => out.push(format!(
                        "{me}: its events say {} is in {gs:?}, truth {:?}",
                        t.name, t.groups
                    )),
                    None => out.push(format!("{me}: never got (or lost) ENTER for {}", t.name)),
                    _ => {}
                }
            }
        }
        out
    }

    /// Compares whisper counts for every pair of survivors that never saw each other EXIT.
    fn check_ledger(&self) -> Ledger {
        let live: Vec<(Uuid, NodeRecordSnapshot)> = self
            .slots
            .iter()
            .flatten()
            .map(|r| {
                let rec = lock(&r.record);
                (
                    rec.uuid,
                    NodeRecordSnapshot {
                        name: rec.name.clone(),
                        exited: rec.exited.clone(),
                        sent: rec.sent.clone(),
                        recv: rec
                            .recv
                            .iter()
                            .map(|(k, v)| (*k, (v.count, v.anomalies)))
                            .collect(),
                    },
                )
            })
            .collect();
        let mut l = Ledger::default();
        for (a, ra) in &live {
            for (b, rb) in &live {
                if a == b {
                    continue;
                }
                if ra.exited.contains(b) || rb.exited.contains(a) {
                    l.excluded_pairs += 1;
                    continue;
                }
                let sent = ra.sent.get(b).copied().unwrap_or(0);
                let (got, anomalies) = rb.recv.get(a).copied().unwrap_or((0, 0));
                l.checked_pairs += 1;
                l.checked_sent += sent;
                l.checked_received += got;
                if sent == 0 {
                    l.pairs_without_whisper += 1;
                }
                if got < sent {
                    l.lost += sent - got;
                    self.shared.violation(
                        "whisper_lost",
                        format!("{} -> {}: sent {sent}, received {got}", ra.name, rb.name),
                    );
                } else if got > sent {
                    self.shared.violation(
                        "whisper_duplicated",
                        format!("{} -> {}: sent {sent}, received {got}", ra.name, rb.name),
                    );
                }
                if anomalies > 0 {
                    l.out_of_order += anomalies;
                    self.shared.violation(
                        "whisper_out_of_order",
                        format!(
                            "{} -> {}: {anomalies} whisper(s) not in sequence",
                            ra.name, rb.name
                        ),
                    );
                }
            }
        }
        l
    }

    fn summary(
        &self,
        churn_secs: f64,
        survivors: usize,
        bound: Duration,
        converged_after: Option<Duration>,
        ledger: Ledger,
    ) -> Value {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let stats = &retired.stats;
        for (name, value) in must_be_zero(stats) {
            if value > 0 {
                self.shared.violation(
                    "protocol_counter",
                    format!("{name} = {value} summed over all nodes (must be 0)"),
                );
            }
        }
        // Kills alone never produce not_hello_first (a dead node sends nothing); its legitimate
        // sources are polite stops and one-sided removals, which show up in these counters.
        let c = &self.shared.counters;
        let explained = self.stopped > 0
            || c.exit_of_live.load(Ordering::Relaxed) > 0
            || stats.send_failures > 0
            || stats.engine.send_failures > 0;
        if stats.engine.not_hello_first > 0 && !explained {
            self.shared.violation(
                "protocol_counter",
                format!(
                    "not_hello_first = {} without any polite stop or one-sided removal",
                    stats.engine.not_hello_first
                ),
            );
        }
        if retired.polite_without_stop_event > 0 {
            self.shared.violation(
                "missing_stop_event",
                format!(
                    "{} polite stop(s) ended without a STOP event",
                    retired.polite_without_stop_event
                ),
            );
        }
        let panics = PANICS.load(Ordering::SeqCst);
        if panics > 0 {
            self.shared
                .violation("panic", format!("{panics} panic(s) in the process"));
        }
        let warmup = Duration::from_secs_f64((churn_secs / 4.0).max(10.0).min(churn_secs));
        let rss = self.rss.verdict(warmup, self.args.rss_slack_mib * 1024);
        if !rss.ok {
            self.shared.violation(
                "memory",
                format!(
                    "RSS reached {} KiB after warm-up, bound {} KiB",
                    rss.after_warmup_max, rss.bound
                ),
            );
        }
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let v = self
            .shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let total_violations: u64 = v.by_kind.values().sum();
        json!({
            "summary": "zmesh-tester",
            "ok": total_violations == 0,
            "seed": self.seed,
            "port": self.port,
            "iface": self.iface.to_string(),
            "slots": self.args.nodes,
            "churn_seconds": churn_secs,
            "timeouts_ms": {"beacon": self.args.interval, "evasive": self.args.evasive, "expired": self.args.expired},
            "nodes": {
                "started": self.started, "stopped_polite": self.stopped, "killed": self.killed,
                "max_running": self.max_running, "running_at_end": survivors,
            },
            "events": {
                "enter": ld(&c.enter), "exit": ld(&c.exit), "join": ld(&c.join), "leave": ld(&c.leave),
                "whisper": ld(&c.whisper), "shout": ld(&c.shout), "evasive": ld(&c.evasive),
                "silent": ld(&c.silent), "stop": ld(&c.stop),
                "exit_of_live_peer": ld(&c.exit_of_live), "evasive_or_silent_of_live_peer": ld(&c.evasive_of_live),
            },
            "whispers": {
                "sent": ld(&c.whispers_sent), "received": retired.whispers_received,
                "refused": ld(&c.whisper_errors), "to_exited_peer_accepted": ld(&c.whisper_to_exited_ok),
                "exit_probes_received": ld(&c.exit_probes_received),
                "checked_pairs": ledger.checked_pairs, "excluded_pairs": ledger.excluded_pairs,
                "pairs_without_whisper": ledger.pairs_without_whisper,
                "checked_sent": ledger.checked_sent, "checked_received": ledger.checked_received,
                "lost": ledger.lost, "out_of_order": ledger.out_of_order,
            },
            "shouts": {"sent": ld(&c.shouts_sent), "copies_queued": ld(&c.shout_copies)},
            "convergence": {
                "bound_ms": bound.as_millis() as u64,
                "converged_after_ms": converged_after.map(|d| d.as_millis() as u64),
            },
            "counters": stats_json(stats),
            "rss": rss.json(),
            "panics": panics,
            "violations": total_violations,
            "violations_by_kind": v.by_kind.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "violation_examples": v.examples,
        })
    }
}

/// Per-node data the whisper ledger needs.
struct NodeRecordSnapshot {
    name: String,
    exited: HashSet<Uuid>,
    sent: HashMap<Uuid, u64>,
    recv: HashMap<Uuid, (u64, u64)>,
}

/// The result of the whisper-loss check.
#[derive(Debug, Default)]
struct Ledger {
    checked_pairs: u64,
    excluded_pairs: u64,
    pairs_without_whisper: u64,
    checked_sent: u64,
    checked_received: u64,
    lost: u64,
    out_of_order: u64,
}

fn names<'a>(shared: &Shared, it: impl Iterator<Item = &'a Uuid>) -> Vec<String> {
    it.map(|u| shared.name_of(*u).unwrap_or_else(|| u.to_string()))
        .collect()
}

/// Stops one node, waits for its task, checks how it ended and folds its counters in.
async fn retire(
    shared: Arc<Shared>,
    retired: Arc<Mutex<Retired>>,
    r: Running,
    kill: bool,
    count_stats: bool,
) {
    if kill {
        r.node.abort().await;
    } else {
        r.node.stop().await;
    }
    let name = lock(&r.record).name.clone();
    match tokio::time::timeout(Duration::from_secs(10), r.task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.violation("panic", format!("{name}: node task failed: {e}")),
        Err(_) => shared.violation(
            "stop_hang",
            format!("{name}: event stream still open 10 s after stop"),
        ),
    }
    let known_peer = lock(&r.record).view.keys().next().copied();
    let bad = probe_stopped(&r.node, known_peer);
    if !bad.is_empty() {
        let how = if kill { "abort" } else { "stop" };
        let bad = bad.join("; ");
        shared.violation("api_after_stop", format!("{name} after {how}(): {bad}"));
    }
    let stats = r.node.stats();
    let rec = lock(&r.record);
    let received: u64 = rec.recv.values().map(|p| p.count).sum();
    let mut t = retired.lock().unwrap_or_else(|e| e.into_inner());
    if count_stats {
        add_stats(&mut t.stats, &stats);
    }
    t.whispers_received += received;
    if !kill && !rec.got_stop {
        t.polite_without_stop_event += 1;
    }
}

/// Once `stop()` or `abort()` has returned, the node is gone: every command must fail with
/// [`zmesh::Error::Stopped`] (the variant documented as "the node has been stopped"), not succeed
/// silently or report an unrelated error. Returns what did not.
fn probe_stopped(node: &Node, known_peer: Option<Uuid>) -> Vec<String> {
    let frames = || vec![zmesh::Bytes::from_static(b"probe")];
    let peer = known_peer.unwrap_or_else(Uuid::new_v4);
    let results = [
        ("join", node.join("PROBE").map(|_| ())),
        ("leave", node.leave("G0").map(|_| ())),
        ("shout", node.shout("G0", frames()).map(|_| ())),
        ("whisper", node.whisper(peer, frames())),
    ];
    results
        .into_iter()
        .filter(|(_, r)| !matches!(r, Err(zmesh::Error::Stopped)))
        .map(|(what, r)| format!("{what} returned {r:?}, expected Err(Stopped)"))
        .collect()
}

/// The counters that must be 0 when only zmesh nodes talk to each other, whatever the churn.
///
/// * `sequence_gaps`, `status_mismatches`: a session is one ZMTP connection over TCP, which neither
///   loses nor reorders; a crash (abort) or a polite stop *ends* the session, and the next one
///   starts with a HELLO carrying sequence 1 and the sender's current status. So kills cannot
///   create gaps: a gap needs a later message after a lost one on the same session, and a dead
///   node sends nothing later. A gap or mismatch is therefore always a bug.
/// * `malformed`, `bad_identity`: zmesh encodes correctly; anything else is a codec bug.
/// * `dropped_events`: the tester drains events promptly; a drop would invalidate the API checks.
/// * `self_connections`, `bad_endpoint`: every node has its own endpoint and announces it.
///
/// `not_hello_first` is *not* in this list: it counts any non-HELLO from a UUID the receiver has no
/// ready session with, and two legitimate races produce it: (1) a polite stop sends GOODBYE over
/// TCP and then the port-0 beacon over UDP; the receiver usually handles the beacon first (EXIT),
/// so the GOODBYE (and any message still in flight) arrives from an "unknown" peer; (2) after a
/// peer was removed on one side only (expiry under load, send failure) its messages keep arriving
/// until the re-handshake. Killed nodes send nothing, so kills alone never produce it: the summary
/// flags it when there was no polite stop and no one-sided removal. At the API level the
/// HELLO-first rule is checked strictly (no event for a peer before its ENTER).
fn must_be_zero(s: &NodeStats) -> Vec<(&'static str, u64)> {
    vec![
        ("sequence_gaps", s.engine.sequence_gaps),
        ("status_mismatches", s.engine.status_mismatches),
        ("malformed", s.engine.malformed),
        ("bad_identity", s.engine.bad_identity),
        ("dropped_events", s.dropped_events),
        ("self_connections", s.engine.self_connections),
        ("bad_endpoint", s.engine.bad_endpoint),
    ]
}

fn print_human(s: &Value) {
    let g = |p: &str| s.pointer(p).cloned().unwrap_or(Value::Null);
    println!(
        "zmesh tester: seed {} on {} port {}, {} slots, {:.0} s of churn",
        g("/seed"),
        g("/iface").as_str().unwrap_or("?"),
        g("/port"),
        g("/slots"),
        g("/churn_seconds").as_f64().unwrap_or(0.0)
    );
    println!("  nodes      {}", g("/nodes"));
    println!("  events     {}", g("/events"));
    println!("  whispers   {}", g("/whispers"));
    println!("  shouts     {}", g("/shouts"));
    println!("  converge   {}", g("/convergence"));
    println!("  counters   {}", g("/counters"));
    println!("  rss        {}", g("/rss"));
    println!(
        "  violations {} {}",
        g("/violations"),
        g("/violations_by_kind")
    );
    if let Some(ex) = s["violation_examples"].as_array() {
        for e in ex {
            println!("    {}", e.as_str().unwrap_or(""));
        }
    }
    println!(
        "  result     {}",
        if s["ok"].as_bool() == Some(true) {
            "OK"
        } else {
            "FAILED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
