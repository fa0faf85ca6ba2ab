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
//!   see [`checks::must_be_zero`] for which counters must be 0 and why.
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
//! port is random unless `--port` is given, so concurrent runs never see each other. SIGINT or
//! SIGTERM stops every running node politely and exits 130 without a verdict.
//!
//! `--services` runs the chaos test of named services instead (`services`: broker and worker
//! processes killed and restarted while clients call, and a ledger of every call).
//!
//! The code is split by concept: `args` (options), `churn` (the orchestrator: starting and
//! stopping slots, the phases of a run), `checks` (convergence and the whisper ledger), `summary`
//! (the verdict and its output), `node` (one application and its per-event checks), `report`
//! (memory and counters), `rng` (the seeded generator). The state they share is defined here.

mod args;
mod checks;
mod churn;
mod node;
mod report;
mod rng;
mod services;
mod summary;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;
use zmesh::{InterfaceSpec, Node, NodeStats, Uuid};

use crate::output::print_json;
use crate::signal::StopSignal;
use node::NodeRecord;
use report::RssLog;
use rng::Rng;
use summary::print_human;

pub use args::TesterArgs;

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
    if args.services {
        return services::run(json, args).await;
    }
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
    let seed = args.seed.unwrap_or_else(rand::random);
    let rng = Rng::new(seed, u64::MAX);
    // The port is random even for a fixed seed, so two runs with the same seed never mix.
    let port = port.unwrap_or_else(crate::demo::random_port);
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
    let mut stop = StopSignal::new()?;
    let summary = tokio::select! {
        biased;
        _ = stop.recv() => {
            eprintln!("tester: interrupted; stopping every node politely");
            let nodes = t.slots.iter().flatten().map(|r| r.node.clone());
            crate::demo::stop_all(nodes).await;
            return Ok(130);
        }
        s = t.run_all() => s?,
    };
    let ok = summary["ok"].as_bool().unwrap_or(false);
    if json {
        print_json(&summary);
    } else {
        print_human(&summary);
    }
    Ok(if ok { 0 } else { 1 })
}
