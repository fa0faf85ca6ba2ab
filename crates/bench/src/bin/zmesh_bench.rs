//! `zmesh-bench`: where a zmesh mesh stands — messaging, discovery, leave, idle cost and other ZRE
//! implementations — each figure next to a baseline measured in the same invocation, and their ratio.
//!
//! ```text
//! cargo run --release -p zmesh-bench --bin zmesh-bench -- [--scenario 1,2,...] [--quick]
//! ```
//!
//! Scenarios (see `BENCHMARKS.md`, section "Node benchmarks"):
//!
//! 1. WHISPER throughput, two processes on loopback, 64 B and 4 KiB (baselines: the zmesh ZMTP
//!    transport alone, plain tokio TCP).
//! 2. WHISPER round trip: median, p99, p99.9 (same baselines).
//! 3. SHOUT fan-out to 20 nodes in another process (baseline: the ZMTP transport fanning out to 20
//!    inboxes).
//! 4. Discovery of 10/50/100 nodes in one process, 1 s and 100 ms beacons (baseline: one beacon
//!    interval, the time every node needs to be heard once).
//! 5. Polite leave and crash (baselines: one UDP broadcast reaching the same sockets; the configured
//!    expiry timeout).
//! 6. Idle cost of 100 nodes (baseline: 100 bare beacon sockets doing only the UDP part).
//! 7. pyre-gevent and zyre.js next to zmesh inside the interop network namespaces (root only).
//! 8. Request/reply between the two nodes of scenarios 1-2: round trip against the same round's
//!    WHISPER round trip, and pipelined requests/s (64 in flight).
//! 9. Request to **any** (routed: filter, candidates, least outstanding) between the same two
//!    nodes: round trip and pipelined requests/s against the same round's plain request/reply.
//! 10. NATS baselines of 8 and 9 in the same rounds: request/reply and queue-group requests
//!     through a local `nats-server` (started and stopped here, loopback) with `async-nats`.
//! 11. Event-emitter fan-out, 1 publisher to 20 subscribers in another process, deliveries/s,
//!     against SHOUT to a group of 20 and NATS pub/sub (local `nats-server`), same rounds.
//! 12. Named-service calls in the mesh and through one broker (round trip, pipelined calls/s)
//!     against NATS queue-group requests through a local `nats-server`, same rounds.
//! 13. Discovery of 10/50/100 nodes by gossip (one zgossip hub, beacons off): time to full mesh.
//! 14. Same-host fast path: WHISPER round trip and 64 B msg/s between two processes over Unix
//!     sockets (`ipc://`, chosen automatically) against the same pair over TCP loopback, rounds
//!     interleaved. Every other scenario turns the fast path off (`same_host(false)`), so their
//!     figures stay TCP figures next to their TCP baselines.
//!
//! Every node is pinned to interface `lo` (scenarios 1–6) or to `eth0` inside the private namespaces
//! created by `interop/netns.sh up` (scenario 7), each scenario on its own beacon port. Peer processes
//! are this binary re-executed with hidden flags.

#[path = "zmesh_bench/emit_fanout.rs"]
mod emit_fanout;
#[path = "zmesh_bench/fanout.rs"]
mod fanout;
#[path = "zmesh_bench/link.rs"]
mod link;
#[path = "zmesh_bench/mesh.rs"]
mod mesh;
#[path = "zmesh_bench/nats.rs"]
mod nats;
#[path = "zmesh_bench/netns.rs"]
mod netns;
#[path = "zmesh_bench/private_netns.rs"]
mod private_netns;
#[path = "zmesh_bench/same_host.rs"]
mod same_host;
#[path = "zmesh_bench/services.rs"]
mod services;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use zmesh::{Node, NodeBuilder};
pub use zmesh_bench::read_announce;
pub use zmesh_bench::stats::{median, Percentiles};

/// Per-scenario guard so a lost message fails loudly instead of hanging the run.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// Command-line options (shared by the driver and the hidden peer modes).
#[derive(Parser, Debug, Clone)]
#[command(about = "zmesh node benchmarks with same-run baselines")]
pub struct Args {
    /// Scenarios to run (comma-separated, 1-14); default all.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<u32>,
    /// Fast smoke run: small counts, 1 round, 10 s idle (overrides the counts).
    #[arg(long)]
    pub quick: bool,
    /// Interleaved rounds for scenarios 1-3 (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Scenario 1: messages of 64 B.
    #[arg(long, default_value_t = 1_000_000)]
    pub count64: usize,
    /// Scenario 1: messages of 4 KiB.
    #[arg(long, default_value_t = 200_000)]
    pub count4k: usize,
    /// Scenario 2: timed round trips.
    #[arg(long, default_value_t = 100_000)]
    pub rtt_count: usize,
    /// Scenario 3: SHOUTs (each delivered to every receiver).
    #[arg(long, default_value_t = 100_000)]
    pub fan_count: usize,
    /// Scenario 3: receiving nodes.
    #[arg(long, default_value_t = 20)]
    pub fan_nodes: usize,
    /// Scenario 4: mesh sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub mesh_sizes: Vec<usize>,
    /// Scenario 6: idle nodes.
    #[arg(long, default_value_t = 100)]
    pub idle_nodes: usize,
    /// Scenario 6: measured idle seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Scenario 7: 64 B / 4 KiB messages per throughput run for zmesh (pyre and zyre.js use
    /// `--netns-slow-count`).
    #[arg(long, default_value_t = 200_000)]
    pub netns_count: usize,
    /// Scenario 7: messages per throughput run for pyre-gevent and zyre.js.
    #[arg(long, default_value_t = 10_000)]
    pub netns_slow_count: usize,
    /// Scenario 7: timed round trips per implementation.
    #[arg(long, default_value_t = 5_000)]
    pub netns_rtt: usize,
    /// Scenarios 1-2: run only these implementations (node, zmtp, tcp; comma-separated), e.g. to
    /// profile one of them.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// First UDP beacon port; each scenario takes the next one (loopback / namespaces only).
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Hidden: run as a peer process (node, zmtp, tcp, fan-node, fan-zmtp, netns-zmesh).
    #[arg(long, hide = true)]
    pub peer: Option<String>,
    /// Hidden: what the peer connects to (endpoint, or the driver node's UUID).
    #[arg(long, hide = true)]
    pub connect: Option<String>,
    /// Hidden: beacon port of a peer process.
    #[arg(long, hide = true)]
    pub beacon_port: Option<u16>,
    /// Hidden (scenario 7 peer): role a (driver) or b (echo), and its parameters.
    #[arg(long, hide = true)]
    pub role: Option<String>,
    /// Hidden (mesh part): nodes in this process.
    #[arg(long, hide = true, default_value_t = 0)]
    pub part_nodes: usize,
    /// Hidden (mesh part): nodes in the whole mesh.
    #[arg(long, hide = true, default_value_t = 0)]
    pub mesh_total: usize,
    /// Hidden (mesh part): beacon interval in ms.
    #[arg(long, hide = true, default_value_t = 1000)]
    pub beacon_ms: u64,
    /// Hidden (scenario 7 peer): interface.
    #[arg(long, hide = true)]
    pub iface: Option<String>,
    /// Scenarios 4 and 6: every discovery source on (IPv4 broadcast + multicast beacons, IPv6
    /// beacons, gossip with node 0 as hub, same-host fast path) instead of broadcast beacons only.
    /// Runs in a private network namespace of its own (root only).
    #[arg(long)]
    pub all_sources: bool,
    /// Hidden (node peer): same-host fast path on (scenario 14).
    #[arg(long, hide = true)]
    pub ipc: bool,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.rounds = 1;
            self.count64 = 100_000;
            self.count4k = 20_000;
            self.rtt_count = 5_000;
            self.fan_count = 10_000;
            self.idle_secs = 10;
            self.netns_count = 20_000;
            self.netns_slow_count = 5_000;
            self.netns_rtt = 2_000;
        }
    }

    fn wants(&self, n: u32) -> bool {
        self.scenario.is_empty() || self.scenario.contains(&n)
    }
}

/// A node pinned to loopback with its own beacon port, over TCP (the same-host fast path off:
/// scenario 14 turns it on where it compares the two).
pub fn node_builder(name: &str, port: u16, beacon: Duration) -> NodeBuilder {
    Node::builder()
        .name(name)
        .interface("lo".parse().unwrap())
        .beacon_port(port)
        .beacon_interval(beacon)
        .same_host(false)
}

/// Re-executes this binary as a peer process with the counts of `args` plus `extra`.
pub fn spawn_self(args: &Args, extra: &[&str]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    for (flag, v) in [
        ("--count64", args.count64),
        ("--count4k", args.count4k),
        ("--rtt-count", args.rtt_count),
        ("--fan-count", args.fan_count),
        ("--fan-nodes", args.fan_nodes),
    ] {
        cmd.arg(flag).arg(v.to_string());
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer process")
}

/// Waits for a peer process and insists it succeeded.
pub fn reap(mut child: Child) {
    let status = child.wait().expect("wait for peer");
    assert!(status.success(), "peer process failed: {status}");
}

/// One line of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario number.
    pub scenario: u32,
    /// What is measured (with its unit).
    pub metric: String,
    /// The zmesh figure.
    pub value: f64,
    /// The baseline's name.
    pub baseline_name: String,
    /// The baseline figure (measured in this run), if there is one.
    pub baseline: Option<f64>,
    /// Target as text plus whether it is met, if the issue sets one.
    pub target: Option<(String, bool)>,
}

impl Row {
    /// A row without target.
    pub fn new(
        scenario: u32,
        metric: impl Into<String>,
        value: f64,
        baseline_name: impl Into<String>,
        baseline: Option<f64>,
    ) -> Row {
        Row {
            scenario,
            metric: metric.into(),
            value,
            baseline_name: baseline_name.into(),
            baseline,
            target: None,
        }
    }

    /// Attaches a target.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Row {
        self.target = Some((text.into(), met));
        self
    }
}

/// Human formatting: 3 significant digits, k/M suffixes for large numbers.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| # | metric | zmesh | baseline | baseline value | zmesh / baseline | target |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let (b, ratio) = match r.baseline {
            Some(b) => (fmt_num(b), format!("{:.2}x", r.value / b)),
            None => ("-".into(), "-".into()),
        };
        let target = match &r.target {
            Some((t, true)) => format!("{t}: met"),
            Some((t, false)) => format!("{t}: **MISSED**"),
            None => String::new(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            fmt_num(r.value),
            r.baseline_name,
            b,
            ratio,
            target
        );
    }
}

/// Raises the open-file limit: 100 fully meshed nodes in one process hold ~20,000 sockets.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = 200_000.max(lim.rlim_cur);
            let try_lim = libc::rlimit {
                rlim_cur: want,
                rlim_max: want.max(lim.rlim_max),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &try_lim) != 0 {
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
                // Large meshes are split across two processes instead (scenarios 4 and 6).
            }
        }
    }
}

/// Single-threaded runtime (the default for nodes and peers: two processes share two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    // Logs (off unless RUST_LOG is set) go to stderr, for diagnosing a failed run.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    args.apply_quick();
    private_netns::reexec_if_needed(args.all_sources && args.peer.is_none());
    raise_fd_limit();
    let rt = runtime();

    if let Some(kind) = args.peer.clone() {
        rt.block_on(async {
            match kind.as_str() {
                "node" => link::serve_node(link::node_peer(&args).await, &args).await,
                "zmtp" => link::serve(link::zmtp_peer(&args).await, &args).await,
                "tcp" => link::serve(link::tcp_peer(&args).await, &args).await,
                "fan-node" => fanout::node_receivers(&args).await,
                "fan-zmtp" => fanout::zmtp_receivers(&args).await,
                "netns-zmesh" => netns::zmesh_role(&args).await,
                "mesh-part" => mesh::mesh_part(&args).await,
                "nats-echo" => nats::echo_peer(&args).await,
                "emit-fan" => emit_fanout::emit_receivers(&args).await,
                "nats-fan" => emit_fanout::nats_receivers(&args).await,
                "svc-worker" => services::worker_peer(&args).await,
                other => panic!("unknown peer kind {other}"),
            }
        });
        // Skip runtime teardown (nodes linger in the background); everything was flushed.
        std::process::exit(0);
    }

    let mut port = args
        .port_base
        .unwrap_or(40_000 + (std::process::id() % 2000) as u16 * 10);
    let mut next_port = move || {
        port += 1;
        port
    };
    eprintln!(
        "zmesh-bench: scenarios {:?}{}; rounds {}",
        if args.scenario.is_empty() {
            vec![1, 2, 3, 4, 5, 6, 7]
        } else {
            args.scenario.clone()
        },
        if args.quick { " (quick)" } else { "" },
        args.rounds
    );

    let mut rows = Vec::new();
    if [1, 2, 8, 9, 10].iter().any(|n| args.wants(*n)) {
        rows.extend(rt.block_on(scenarios_1_2(&args, next_port())));
    }
    if args.wants(11) {
        rows.extend(rt.block_on(emit_fanout::run(&args, next_port())));
    }
    if args.wants(12) {
        rows.extend(rt.block_on(services::run(&args, next_port())));
    }
    if args.wants(3) {
        rows.extend(rt.block_on(fanout::run(&args, next_port())));
    }
    if args.wants(4) {
        rows.extend(rt.block_on(mesh::discovery(&args, &mut next_port)));
    }
    if args.wants(13) {
        rows.extend(rt.block_on(mesh::gossip_discovery(&args, &mut next_port)));
    }
    if args.wants(5) {
        rows.extend(rt.block_on(mesh::leave(&args, &mut next_port)));
    }
    if args.wants(6) {
        rows.extend(rt.block_on(mesh::idle(&args, &mut next_port)));
    }
    if args.wants(7) {
        rows.extend(netns::run(&args, next_port()));
    }
    if args.wants(14) {
        rows.extend(rt.block_on(same_host::run(&args, next_port())));
    }
    print_table(&rows);
    println!();
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    std::process::exit(0);
}

/// Scenarios 1 and 2: node, ZMTP transport and plain TCP, rounds interleaved.
async fn scenarios_1_2(args: &Args, port: u16) -> Vec<Row> {
    let mut node = Vec::new();
    let mut zmtp = Vec::new();
    let mut tcp = Vec::new();
    let mut nats_rounds: Vec<nats::NatsResult> = Vec::new();
    let runs = |which: &str| args.only.is_empty() || args.only.iter().any(|o| o == which);
    for round in 0..args.rounds {
        if runs("node") {
            let (l, c) = link::node_driver(args, port, false).await;
            let any = args.wants(9) || args.wants(10);
            let r = link::drive_node(l, args, args.wants(8), any).await;
            reap(c);
            report_round(round, "node", &r);
            node.push(r);
        }
        if args.wants(10) && runs("nats") {
            let r = nats::round(args).await;
            eprintln!(
                "  [10]  round {} nats: request rtt p50 {:.1} us, pipelined {} req/s | queue group rtt p50 {:.1} us, pipelined {} req/s",
                round + 1,
                r.req_rtt.p50,
                fmt_num(r.req_per_s),
                r.queue_rtt.p50,
                fmt_num(r.queue_per_s)
            );
            nats_rounds.push(r);
        }
        if runs("zmtp") {
            let (l, c) = link::zmtp_driver(args).await;
            let r = link::drive(l, args).await;
            reap(c);
            report_round(round, "zmtp", &r);
            zmtp.push(r);
        }
        if runs("tcp") {
            let (l, c) = link::tcp_driver(args).await;
            let r = link::drive(l, args).await;
            reap(c);
            report_round(round, "tcp", &r);
            tcp.push(r);
        }
    }
    let mut rows = nats_rows(&node, &nats_rounds);
    if node.is_empty() || zmtp.is_empty() || tcp.is_empty() {
        eprintln!("  [1-2] --only given: no table rows for 1, 2, 8, 9 (they need node, zmtp, tcp)");
        return rows;
    }
    let rate =
        |v: &[link::LinkResult], i: usize| median(v.iter().map(|r| r.msgs_per_s[i]).collect());
    let lat = |v: &[link::LinkResult], f: fn(&Percentiles) -> f64| {
        median(v.iter().map(|r| f(&r.rtt)).collect())
    };
    // The ratio of the same round (node and transport ran back to back under the same load), as
    // zmtp-bench does: round trips on this kind of VM are bimodal by round, so medians of each side
    // can come from different modes.
    let per_round = |f: &dyn Fn(&link::LinkResult) -> f64| {
        median(node.iter().zip(&zmtp).map(|(a, b)| f(a) / f(b)).collect())
    };
    let sizes = link::windows(args);
    if args.wants(1) {
        for (i, w) in sizes.iter().enumerate() {
            let label = if w.size == 64 { "64 B" } else { "4 KiB" };
            let (n, z, t) = (rate(&node, i), rate(&zmtp, i), rate(&tcp, i));
            let mut row = Row::new(
                1,
                format!("WHISPER {label} msg/s"),
                n,
                "ZMTP transport",
                Some(z),
            );
            let ratio = per_round(&|r| r.msgs_per_s[i]);
            if w.size == 64 {
                row = row.target(
                    ">= 1.5 M msg/s and >= 0.5x transport (per-round ratio)",
                    n >= 1.5e6 && ratio >= 0.5,
                );
            }
            rows.push(row);
            rows.push(Row::new(
                1,
                format!("WHISPER {label}: node/transport ratio of each round, median"),
                ratio,
                "-",
                None,
            ));
            rows.push(Row::new(
                1,
                format!("WHISPER {label} msg/s"),
                n,
                "tokio TCP",
                Some(t),
            ));
            let mb = |x: f64| x * w.size as f64 / 1e6;
            rows.push(Row::new(
                1,
                format!("WHISPER {label} MB/s (content)"),
                mb(n),
                "ZMTP transport",
                Some(mb(z)),
            ));
            rows.push(Row::new(
                1,
                format!("WHISPER {label} MB/s (content)"),
                mb(n),
                "tokio TCP",
                Some(mb(t)),
            ));
        }
    }
    if args.wants(2) {
        type Pick = fn(&Percentiles) -> f64;
        let picks: [(&str, Pick); 3] = [
            ("median", |p| p.p50),
            ("p99", |p| p.p99),
            ("p99.9", |p| p.p999),
        ];
        for (name, f) in picks {
            let (n, z, t) = (lat(&node, f), lat(&zmtp, f), lat(&tcp, f));
            let mut row = Row::new(
                2,
                format!("round trip {name} us (64 B, {} trips)", args.rtt_count),
                n,
                "ZMTP transport",
                Some(z),
            );
            let ratio = per_round(&|r| f(&r.rtt));
            if name == "median" {
                row = row.target("<= 1.1x transport (per-round ratio)", ratio <= 1.1);
            }
            rows.push(row);
            rows.push(Row::new(
                2,
                format!("round trip {name}: node/transport ratio of each round, median"),
                ratio,
                "-",
                None,
            ));
            rows.push(Row::new(
                2,
                format!("round trip {name} us (64 B)"),
                n,
                "tokio TCP",
                Some(t),
            ));
        }
    }
    if args.wants(8) {
        let req_lat = median(
            node.iter()
                .filter_map(|r| r.req_rtt.map(|p| p.p50))
                .collect(),
        );
        let whisper_lat = lat(&node, |p| p.p50);
        let ratio = median(
            node.iter()
                .filter_map(|r| r.req_rtt.map(|q| q.p50 / r.rtt.p50))
                .collect(),
        );
        rows.push(
            Row::new(
                8,
                "request/reply round trip median us (64 B)",
                req_lat,
                "node WHISPER round trip",
                Some(whisper_lat),
            )
            .target("<= 1.2x WHISPER round trip (per-round ratio)", ratio <= 1.2),
        );
        rows.push(Row::new(
            8,
            "request/WHISPER round trip ratio of each round, median",
            ratio,
            "-",
            None,
        ));
        let p99 = median(
            node.iter()
                .filter_map(|r| r.req_rtt.map(|p| p.p99))
                .collect(),
        );
        rows.push(Row::new(
            8,
            "request/reply round trip p99 us (64 B)",
            p99,
            "node WHISPER round trip p99",
            Some(lat(&node, |p| p.p99)),
        ));
        let rate = median(node.iter().filter_map(|r| r.req_per_s).collect());
        rows.push(Row::new(
            8,
            format!("pipelined requests/s ({} in flight, 64 B)", link::PIPELINE),
            rate,
            "node WHISPER 64 B msg/s (one way)",
            Some(median(node.iter().map(|r| r.msgs_per_s[0]).collect())),
        ));
    }
    if args.wants(9) {
        let med = |f: &dyn Fn(&link::LinkResult) -> Option<f64>| {
            median(node.iter().filter_map(f).collect())
        };
        let any = med(&|r| r.any_rtt.map(|p| p.p50));
        let plain = med(&|r| r.req_rtt.map(|p| p.p50));
        let ratio = med(&|r| Some(r.any_rtt?.p50 / r.req_rtt?.p50));
        rows.push(Row::new(
            9,
            "request any round trip median us (64 B)",
            any,
            "request/reply round trip",
            Some(plain),
        ));
        rows.push(Row::new(
            9,
            "request any / request round trip ratio of each round, median",
            ratio,
            "-",
            None,
        ));
        rows.push(Row::new(
            9,
            format!(
                "pipelined request any/s ({} in flight, 64 B)",
                link::PIPELINE
            ),
            med(&|r| r.any_per_s),
            "pipelined requests/s",
            Some(med(&|r| r.req_per_s)),
        ));
    }
    rows
}

/// Scenario 10's rows: zmesh (scenarios 8 and 9 of the same rounds) against NATS.
fn nats_rows(node: &[link::LinkResult], nats: &[nats::NatsResult]) -> Vec<Row> {
    if node.is_empty() || nats.is_empty() {
        return Vec::new();
    }
    let zm =
        |f: &dyn Fn(&link::LinkResult) -> Option<f64>| median(node.iter().filter_map(f).collect());
    let nt = |f: &dyn Fn(&nats::NatsResult) -> f64| median(nats.iter().map(f).collect());
    let (req, nreq) = (zm(&|r| r.req_rtt.map(|p| p.p50)), nt(&|r| r.req_rtt.p50));
    let (rate, nrate) = (zm(&|r| r.req_per_s), nt(&|r| r.req_per_s));
    let (any, nq) = (zm(&|r| r.any_rtt.map(|p| p.p50)), nt(&|r| r.queue_rtt.p50));
    let (any_rate, nq_rate) = (zm(&|r| r.any_per_s), nt(&|r| r.queue_per_s));
    vec![
        Row::new(
            10,
            "request/reply round trip median us (64 B)",
            req,
            "NATS request/reply",
            Some(nreq),
        )
        .target("<= 0.5x NATS", req <= 0.5 * nreq),
        Row::new(
            10,
            format!("pipelined requests/s ({} in flight)", link::PIPELINE),
            rate,
            "NATS request/reply",
            Some(nrate),
        )
        .target(">= NATS", rate >= nrate),
        Row::new(
            10,
            "request any round trip median us (64 B)",
            any,
            "NATS queue group",
            Some(nq),
        )
        .target("<= 0.5x NATS", any <= 0.5 * nq),
        Row::new(
            10,
            format!("pipelined request any/s ({} in flight)", link::PIPELINE),
            any_rate,
            "NATS queue group",
            Some(nq_rate),
        )
        .target(">= NATS", any_rate >= nq_rate),
    ]
}

fn report_round(round: usize, which: &str, r: &link::LinkResult) {
    report_round_as("1-2", round, which, r);
}

/// [`report_round`] under another scenario tag.
pub fn report_round_as(tag: &str, round: usize, which: &str, r: &link::LinkResult) {
    eprintln!(
        "  [{tag}] round {} {:>4}: 64B {:>10} msg/s | 4KiB {:>9} msg/s | rtt p50 {:.1} p99 {:.1} p99.9 {:.1} us",
        round + 1,
        which,
        fmt_num(r.msgs_per_s[0]),
        fmt_num(r.msgs_per_s[1]),
        r.rtt.p50,
        r.rtt.p99,
        r.rtt.p999
    );
    if let (Some(q), Some(rate)) = (r.any_rtt, r.any_per_s) {
        eprintln!(
            "  [9]   round {} {:>4}: request-any rtt p50 {:.1} p99 {:.1} us | pipelined {:>9} req/s",
            round + 1,
            which,
            q.p50,
            q.p99,
            fmt_num(rate)
        );
    }
    if let (Some(q), Some(rate)) = (r.req_rtt, r.req_per_s) {
        eprintln!(
            "  [8]   round {} {:>4}: request rtt p50 {:.1} p99 {:.1} us | pipelined {:>9} req/s",
            round + 1,
            which,
            q.p50,
            q.p99,
            fmt_num(rate)
        );
    }
}
