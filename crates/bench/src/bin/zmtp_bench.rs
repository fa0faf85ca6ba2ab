//! `zmtp-bench`: the zmesh ZMTP transport against a plain tokio TCP baseline.
//!
//! Run with `cargo run --release -p zmesh-bench --bin zmtp-bench -- [--rounds 5] [--quick]`.
//!
//! # Pattern
//!
//! Same as the transport spike described in BENCHMARKS.md: two processes on tcp://127.0.0.1 in
//! the "Harmony" pattern. Each process binds one inbox and connects one outbox (identity 0x01 + 16 bytes)
//! to the other process's inbox, so traffic A -> B flows over A's outbox and replies B -> A over B's
//! outbox. The binary re-executes itself with the hidden `--peer` flag to become process B.
//!
//! The baseline does the same with plain tokio: each process binds a `TcpListener` and connects one
//! `TcpStream` to the other; messages are length-prefixed (`u32` big-endian + payload), written through a
//! 64 KiB write buffer flushed when full (or after each message when latency matters), and read with
//! one big `read_buf` followed by zero-copy splitting of every complete frame in the buffer — as a
//! competent engineer would write it by hand. It is the ceiling zmesh is measured against.
//!
//! # Scenarios (in this order, in one process pair per implementation and round)
//!
//! 1. one-way throughput of `--count64` 64-byte messages: A sends them all, B counts them and acks; A
//!    measures from the first send to the ack.
//! 2. the same with `--count4k` 4 KiB messages.
//! 3. `--rtt-count` 64-byte round trips (A outbox -> B inbox -> B outbox -> A inbox) after a warm-up;
//!    every round trip is timed separately, the round reports median and p99.
//!
//! Implementations: `zmesh` (NULL mechanism, an `OutboxWriter` per link), `zmesh-send` (NULL,
//! `Outbox::send` per message), `zmesh-curve` (CURVE, RFC 25/26: every message sealed and opened,
//! writer API like `zmesh`) and `tcp`. A second table gives CURVE against NULL (`zmesh-curve` /
//! `zmesh`) per round, against the goals of issue 13 (64 B >= 0.6x, round trip <= 1.2x,
//! 4 KiB >= 0.8x).
//!
//! With `--libzmq`, every round also runs Debian's libzmq (C, `interop/libzmq/curve_bench.c`) with
//! NULL and with CURVE, and a third table compares zmesh with it mechanism for mechanism. libzmq's
//! pattern there is one DEALER -> ROUTER connection whose ROUTER echoes the round trips (libzmq's
//! own I/O threads do the work), so it is a reference point, not the Harmony pattern.
//!
//! Rounds alternate the implementations (interleaved, so machine noise hits all alike); the table
//! shows medians over rounds. Next to throughput it shows the CPU time each process spent per 64 B
//! message (sender, receiver): steadier than throughput on a noisy machine, and it shows which side
//! limits the pipeline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use zmesh_bench::rtt::{echo, hello_driver, hello_peer, round_trips};
use zmesh_bench::stats::{median, process_cpu_ns, Percentiles};
use zmesh_bench::tcp_baseline::{self, TcpLink};
use zmesh_bench::zmtp_link::{self, Api, ZmtpLink};
use zmesh_bench::{read_announce, Link};
use zmesh_zmtp::{CurveConfig, CurveKeyPair, InboxConfig, MechanismConfig, OutboxConfig};

/// Command-line options (shared by the driver and the hidden peer mode).
#[derive(Parser, Debug, Clone)]
#[command(about = "zmesh ZMTP transport vs plain tokio TCP: throughput and round trip")]
struct Args {
    /// Interleaved rounds (each round runs every scenario for zmesh and for the baseline).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Messages in the 64 B one-way throughput scenario.
    #[arg(long, default_value_t = 1_000_000)]
    count64: usize,
    /// Messages in the 4 KiB one-way throughput scenario.
    #[arg(long, default_value_t = 200_000)]
    count4k: usize,
    /// Timed round trips in the 64 B ping-pong scenario.
    #[arg(long, default_value_t = 100_000)]
    rtt_count: usize,
    /// Fast smoke run: 1 round, 50k / 10k messages, 5k round trips (overrides the counts).
    #[arg(long)]
    quick: bool,
    /// Use tokio's multi-thread runtime (2 workers) instead of current_thread, for both sides.
    #[arg(long)]
    multi_thread: bool,
    /// Also run libzmq (Debian's libzmq, NULL and CURVE) in every round, through the small C program
    /// `interop/libzmq/curve_bench.c` (compiled with `cc ... -lzmq` on first use; needs
    /// libzmq3-dev, which `scripts/install-test-deps.sh` installs).
    #[arg(long)]
    libzmq: bool,
    /// Run only this implementation (zmesh or tcp); default both.
    #[arg(long)]
    only: Option<String>,
    /// Hidden: run as the peer process (B) for this implementation.
    #[arg(long, hide = true)]
    peer: Option<String>,
    /// Hidden: the driver's inbox endpoint / listener address the peer connects to.
    #[arg(long, hide = true)]
    connect: Option<String>,
}

const SIZE_SMALL: usize = 64;
const SIZE_4K: usize = 4096;
/// Untimed round trips before the timed ones.
const RTT_WARMUP: usize = 2_000;
/// Per-scenario guard so a lost message fails loudly instead of hanging the run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------------
// The two implementations (shared with zmesh-bench, see the `zmesh_bench` library): plain tokio TCP
// with a u32 length prefix, and the zmesh Inbox + Outbox.

/// Baseline setup, driver side: bind, start the peer, connect to its listener, accept its connection.
async fn tcp_driver(args: &Args) -> (TcpLink, std::process::Child) {
    let (listener, ours) = tcp_baseline::listen().await;
    let (child, theirs) = spawn_peer(args, "tcp", &ours);
    (TcpLink::join(listener, &theirs).await, child)
}

/// Baseline setup, peer side.
async fn tcp_peer(connect: &str) -> TcpLink {
    let (listener, ours) = tcp_baseline::listen().await;
    announce(&ours);
    TcpLink::join(listener, connect).await
}

/// zmesh setup, driver side (`which`: `zmesh`, `zmesh-send` or `zmesh-curve`).
async fn zmesh_driver(args: &Args, which: &str) -> (ZmtpLink, std::process::Child) {
    let inbox = zmtp_link::bind_with(inbox_config(which, 1)).await;
    let ours = inbox.endpoint().to_string();
    let (child, theirs) = spawn_peer(args, which, &ours);
    let link = ZmtpLink::join_with(inbox, &theirs, 1, api(which), outbox_config(which, 1));
    (link, child)
}

/// zmesh setup, peer side.
async fn zmesh_peer(connect: &str, which: &str) -> ZmtpLink {
    let inbox = zmtp_link::bind_with(inbox_config(which, 2)).await;
    announce(&inbox.endpoint().to_string());
    ZmtpLink::join_with(inbox, connect, 2, api(which), outbox_config(which, 2))
}

/// The CURVE key pair of process `tag` (1 = driver, 2 = peer). Derived from a fixed secret so
/// each process knows the other's public key without an exchange (a benchmark, not a secret).
fn bench_keys(tag: u8) -> CurveKeyPair {
    CurveKeyPair::from_secret_bytes([0xA0 + tag; 32])
}

/// Inbox configuration: NULL, or a CURVE server with this process's key pair.
fn inbox_config(which: &str, tag: u8) -> InboxConfig {
    let mut c = InboxConfig::default();
    if which == "zmesh-curve" {
        c.mechanism = MechanismConfig::Curve(CurveConfig::server(bench_keys(tag)));
    }
    c
}

/// Outbox configuration: NULL, or a CURVE client of the other process's inbox.
fn outbox_config(which: &str, tag: u8) -> OutboxConfig {
    let mut c = OutboxConfig::default();
    if which == "zmesh-curve" {
        let other = bench_keys(3 - tag).public();
        c.mechanism = MechanismConfig::Curve(CurveConfig::client(bench_keys(tag), other));
    }
    c
}

/// How an implementation name sends (see `zmesh_bench::zmtp_link`).
fn api(which: &str) -> Api {
    match which {
        "zmesh-send" => Api::TrySend,
        _ => Api::Writer,
    }
}

// ------------------------------------------------------------------------------------------------
// Process plumbing.

/// Peer side: tell the driver where we listen (first stdout line).
fn announce(endpoint: &str) {
    println!("ENDPOINT {endpoint}");
}

/// Start the peer process (this binary with `--peer`) and read the endpoint it announces.
fn spawn_peer(args: &Args, which: &str, ours: &str) -> (std::process::Child, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.arg("--peer")
        .arg(which)
        .arg("--connect")
        .arg(ours)
        .arg("--count64")
        .arg(args.count64.to_string())
        .arg("--count4k")
        .arg(args.count4k.to_string())
        .arg("--rtt-count")
        .arg(args.rtt_count.to_string());
    if args.multi_thread {
        cmd.arg("--multi-thread");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer");
    let theirs = read_announce(&mut child, "ENDPOINT");
    (child, theirs)
}

// ------------------------------------------------------------------------------------------------
// Scenarios.

/// Results of one implementation in one round (NaN where an implementation does not measure it).
#[derive(Debug, Clone, Copy, Default)]
struct RoundResult {
    msgs64: f64,
    /// CPU ns per message in the 64 B one-way scenario: sending process, receiving process.
    cpu_send64: f64,
    cpu_recv64: f64,
    msgs4k: f64,
    rtt_median_us: f64,
    rtt_p99_us: f64,
}

/// Driver (process A): run every scenario over `link`.
async fn drive<L: Link>(mut link: L, args: &Args) -> RoundResult {
    // Hello: proves both directions are connected before anything is timed.
    hello_driver(&mut link).await;

    let (msgs64, cpu_send64, cpu_recv64) =
        timed(throughput(&mut link, SIZE_SMALL, args.count64)).await;
    let (msgs4k, _, _) = timed(throughput(&mut link, SIZE_4K, args.count4k)).await;

    let fut = round_trips(&mut link, SIZE_SMALL, RTT_WARMUP, args.rtt_count);
    let rtts = tokio::time::timeout(SCENARIO_TIMEOUT, fut)
        .await
        .expect("round-trip scenario timed out");
    let rtt = Percentiles::of_nanos(rtts);
    let result = RoundResult {
        msgs64,
        cpu_send64,
        cpu_recv64,
        msgs4k,
        rtt_median_us: rtt.p50,
        rtt_p99_us: rtt.p99,
    };
    link.shutdown().await;
    result
}

/// Run a throughput scenario under the timeout.
async fn timed<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(SCENARIO_TIMEOUT, fut)
        .await
        .expect("throughput scenario timed out")
}

/// One-way throughput, driver side: send `count` messages of `size` bytes, wait for the ack.
/// Returns msg/s and the CPU ns per message of this (sending) process and of the receiving one.
async fn throughput<L: Link>(link: &mut L, size: usize, count: usize) -> (f64, f64, f64) {
    let msg = Bytes::from(vec![0xab; size]);
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    for _ in 0..count {
        link.send(msg.clone()).await;
    }
    link.flush().await;
    let ack = link.recv().await;
    let dt = t0.elapsed();
    let cpu = process_cpu_ns() - cpu0;
    let received = u64::from_be_bytes(ack[..8].try_into().unwrap());
    let peer_cpu = u64::from_be_bytes(ack[8..16].try_into().unwrap());
    assert_eq!(
        received,
        (count * size) as u64,
        "peer received a different number of bytes"
    );
    (
        count as f64 / dt.as_secs_f64(),
        cpu as f64 / count as f64,
        peer_cpu as f64 / count as f64,
    )
}

/// Peer (process B): mirror of `drive`.
async fn serve<L: Link>(mut link: L, args: &Args) {
    hello_peer(&mut link).await;
    for count in [args.count64, args.count4k] {
        let mut bytes = 0u64;
        // CPU from the first message on (waiting for it costs none).
        if count > 0 {
            bytes += link.recv().await.len() as u64;
        }
        let cpu0 = process_cpu_ns();
        for _ in 1..count {
            bytes += link.recv().await.len() as u64;
        }
        let cpu = process_cpu_ns() - cpu0;
        let mut ack = bytes.to_be_bytes().to_vec();
        ack.extend_from_slice(&cpu.to_be_bytes());
        link.send(Bytes::from(ack)).await;
        link.flush().await;
    }
    echo(&mut link, RTT_WARMUP + args.rtt_count).await;
    link.shutdown().await;
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Every implementation, in the order each round runs them.
const IMPLS: [&str; 4] = ["zmesh", "zmesh-send", "zmesh-curve", "tcp"];

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 1;
        args.count64 = 50_000;
        args.count4k = 10_000;
        args.rtt_count = 5_000;
    }
    let rt = runtime(args.multi_thread);

    if let Some(which) = args.peer.clone() {
        let connect = args.connect.clone().expect("--peer needs --connect");
        rt.block_on(async {
            match which.as_str() {
                "tcp" => serve(tcp_peer(&connect).await, &args).await,
                "zmesh" | "zmesh-send" | "zmesh-curve" => {
                    serve(zmesh_peer(&connect, &which).await, &args).await
                }
                other => panic!("unknown peer kind {other}"),
            }
        });
        return;
    }

    let impls: Vec<&str> = match args.only.as_deref() {
        None => IMPLS.to_vec(),
        Some(x) if IMPLS.contains(&x) => vec![x],
        Some(other) => {
            eprintln!("--only must be one of {}, not {other}", IMPLS.join(", "));
            std::process::exit(2);
        }
    };
    eprintln!(
        "zmtp-bench: {} rounds, {} x 64 B, {} x 4 KiB, {} round trips, runtime {}",
        args.rounds,
        args.count64,
        args.count4k,
        args.rtt_count,
        if args.multi_thread {
            "multi-thread(2)"
        } else {
            "current_thread"
        }
    );
    let mut results: Vec<(String, Vec<RoundResult>)> =
        impls.iter().map(|s| (s.to_string(), Vec::new())).collect();
    let libzmq_exe = args.libzmq.then(libzmq_bench_exe);
    let mut libzmq: Vec<(String, Vec<RoundResult>)> = ["libzmq", "libzmq-curve"]
        .iter()
        .map(|s| (s.to_string(), Vec::new()))
        .collect();
    for round in 0..args.rounds {
        if let Some(exe) = &libzmq_exe {
            for (name, res) in libzmq.iter_mut() {
                let mech = if name == "libzmq" { "null" } else { "curve" };
                let r = libzmq_round(exe, mech, &args);
                eprintln!(
                    "round {} {:>10}: 64B {:>10.0} msg/s | 4KiB {:>9.0} msg/s | rtt median {:>7.1} us",
                    round + 1,
                    name,
                    r.msgs64,
                    r.msgs4k,
                    r.rtt_median_us
                );
                res.push(r);
            }
        }
        for (which, res) in results.iter_mut() {
            let r = rt.block_on(async {
                let (r, mut child) = match which.as_str() {
                    "tcp" => {
                        let (link, child) = tcp_driver(&args).await;
                        (drive(link, &args).await, child)
                    }
                    _ => {
                        let (link, child) = zmesh_driver(&args, which).await;
                        (drive(link, &args).await, child)
                    }
                };
                let status = child.wait().expect("wait for peer");
                assert!(status.success(), "peer process failed: {status}");
                r
            });
            eprintln!(
                "round {} {:>10}: 64B {:>10.0} msg/s (cpu ns/msg send {:>5.1} recv {:>5.1}) | 4KiB {:>9.0} msg/s | rtt median {:>7.1} us p99 {:>7.1} us",
                round + 1,
                which,
                r.msgs64,
                r.cpu_send64,
                r.cpu_recv64,
                r.msgs4k,
                r.rtt_median_us,
                r.rtt_p99_us
            );
            res.push(r);
        }
    }

    let med = |rs: &[RoundResult], f: fn(&RoundResult) -> f64| median(rs.iter().map(f).collect());
    let fields: [fn(&RoundResult) -> f64; 6] = [
        |r| r.msgs64,
        |r| r.msgs4k,
        |r| r.rtt_median_us,
        |r| r.rtt_p99_us,
        |r| r.cpu_send64,
        |r| r.cpu_recv64,
    ];
    let rows: [(&str, usize, &str); 6] = [
        ("64 B one-way, msg/s", 0, "msg"),
        ("4 KiB one-way, msg/s", 1, "msg"),
        ("64 B round trip median, us", 2, "us"),
        ("64 B round trip p99, us", 3, "us"),
        ("64 B one-way, sender CPU ns/msg", 4, "ns"),
        ("64 B one-way, receiver CPU ns/msg", 5, "ns"),
    ];
    curve_vs_null(&results);
    if libzmq_exe.is_some() {
        against_libzmq(&results, &libzmq);
    }
    let baseline = results.iter().find(|(n, _)| n == "tcp");
    println!();
    println!(
        "medians of {} round(s) (throughput: higher is better; round trip: lower is better)",
        args.rounds
    );
    println!(
        "| scenario | implementation | msg/s or us | baseline (tokio TCP) | ratio of medians | per-round ratio, median |"
    );
    println!("|---|---|---|---|---|---|");
    // The ratio that counts is the median of the per-round ratios: an implementation and the
    // baseline of the same round ran back to back under the same machine load, while the medians of
    // each side can come from rounds in different load (round trips on this kind of VM are bimodal,
    // ~12 us or ~30 us, whole rounds at a time).
    let mut verdicts = Vec::new();
    for (label, i, unit) in rows {
        let fmt = |v: f64| {
            if unit == "msg" {
                format_rate(v)
            } else {
                format!("{v:.1}")
            }
        };
        let base = baseline.map(|(_, tr)| med(tr, fields[i]));
        for (name, rs) in results.iter().filter(|(n, _)| n != "tcp") {
            let ours = med(rs, fields[i]);
            let per_round = baseline.map(|(_, tr)| {
                median(
                    rs.iter()
                        .zip(tr)
                        .map(|(a, b)| fields[i](a) / fields[i](b))
                        .collect(),
                )
            });
            println!(
                "| {label} | {name} | {} | {} | {} | {} |",
                fmt(ours),
                base.map_or("-".into(), fmt),
                base.map_or("-".into(), |b| format!("{:.2}x", ours / b)),
                per_round.map_or("-".into(), |p| format!("{p:.2}x")),
            );
            if let Some(p) = per_round {
                match i {
                    0 => verdicts.push(format!(
                        "{name}: 64 B msg/s >= 0.70x baseline: {p:.2}x {}",
                        if p >= 0.7 { "MET" } else { "MISSED" }
                    )),
                    2 => verdicts.push(format!(
                        "{name}: median round trip <= 1.15x baseline: {p:.2}x {}",
                        if p <= 1.15 { "MET" } else { "MISSED" }
                    )),
                    _ => {}
                }
            }
        }
        if let Some(b) = base {
            println!("| {label} | tcp | {} | | | |", fmt(b));
        }
    }
    if !verdicts.is_empty() {
        println!();
        println!("targets (per-round ratios):");
        for v in verdicts {
            println!("  {v}");
        }
    }
}

/// In-process cost of the CURVE MESSAGE codec alone (seal, then open, of `size`-byte frames), in ns
/// per frame: the floor under the CURVE rows of the socket scenarios.
fn curve_codec_cost(size: usize, count: usize) -> (f64, f64) {
    use zmesh_zmtp::curve::handshake::public_of;
    use zmesh_zmtp::curve::{MessageCodec, SecretKey};
    let a = SecretKey::from_bytes([11; 32]);
    let b = SecretKey::from_bytes([12; 32]);
    let mut tx = MessageCodec::new(&public_of(&b), &a, false, 3, 1);
    let mut rx = MessageCodec::new(&public_of(&a), &b, true, 2, 2);
    let body = vec![0xab; size];
    let header = if size + 33 <= 255 { 2 } else { 9 };
    let mut wire = bytes::BytesMut::with_capacity((size + 64) * 1024);
    let (mut seal_ns, mut open_ns) = (0u128, 0u128);
    for _ in 0..count.div_ceil(1024) {
        let t = Instant::now();
        for _ in 0..1024 {
            tx.seal_into(false, false, &body, &mut wire).unwrap();
        }
        seal_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        let mut at = 0;
        while at < wire.len() {
            let len = size + 33;
            let f = rx.open(&wire[at + header..at + header + len]).unwrap();
            std::hint::black_box(f);
            at += header + len;
        }
        open_ns += t.elapsed().as_nanos();
        wire.clear();
    }
    let n = (count.div_ceil(1024) * 1024) as f64;
    (seal_ns as f64 / n, open_ns as f64 / n)
}

/// Builds `interop/libzmq/curve_bench.c` next to this executable (once) and returns its path.
fn libzmq_bench_exe() -> std::path::PathBuf {
    let src =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/libzmq/curve_bench.c");
    let exe = std::env::current_exe()
        .expect("current_exe")
        .with_file_name("libzmq-curve-bench");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lzmq", "-lpthread"])
        .status()
        .expect("run cc (install build-essential and libzmq3-dev)");
    assert!(status.success(), "compiling {} failed", src.display());
    exe
}

/// One libzmq round (`mech`: `null` or `curve`): 64 B msg/s, 4 KiB msg/s, median round trip (us).
fn libzmq_round(exe: &std::path::Path, mech: &str, args: &Args) -> RoundResult {
    let out = Command::new(exe)
        .arg(mech)
        .arg(args.count64.to_string())
        .arg(args.count4k.to_string())
        .arg(args.rtt_count.to_string())
        .output()
        .expect("run the libzmq bench");
    assert!(
        out.status.success(),
        "libzmq bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    RoundResult {
        msgs64: v[0],
        msgs4k: v[1],
        rtt_median_us: v[2],
        cpu_send64: f64::NAN,
        cpu_recv64: f64::NAN,
        rtt_p99_us: f64::NAN,
    }
}

/// zmesh against libzmq, same run: NULL against NULL, CURVE against CURVE (per-round ratios).
fn against_libzmq(results: &[(String, Vec<RoundResult>)], libzmq: &[(String, Vec<RoundResult>)]) {
    let get = |set: &[(String, Vec<RoundResult>)], n: &str| {
        set.iter().find(|(x, _)| x == n).map(|(_, r)| r.clone())
    };
    println!();
    println!("zmesh vs libzmq (Debian libzmq, C, same machine, same run; ratio = median of per-round zmesh / libzmq)");
    println!("| scenario | mechanism | zmesh | libzmq | ratio |");
    println!("|---|---|---|---|---|");
    for (ours, theirs, mech) in [
        ("zmesh", "libzmq", "NULL"),
        ("zmesh-curve", "libzmq-curve", "CURVE"),
    ] {
        let (Some(a), Some(b)) = (get(results, ours), get(libzmq, theirs)) else {
            continue;
        };
        type Field = (&'static str, fn(&RoundResult) -> f64, bool);
        let rows: [Field; 3] = [
            ("64 B one-way, msg/s", |r| r.msgs64, true),
            ("4 KiB one-way, msg/s", |r| r.msgs4k, true),
            ("64 B round trip median, us", |r| r.rtt_median_us, false),
        ];
        for (label, f, rate) in rows {
            let fmt = |v: f64| {
                if rate {
                    format_rate(v)
                } else {
                    format!("{v:.1}")
                }
            };
            let ratio = median(a.iter().zip(&b).map(|(x, y)| f(x) / f(y)).collect());
            println!(
                "| {label} | {mech} | {} | {} | {ratio:.2}x |",
                fmt(median(a.iter().map(f).collect())),
                fmt(median(b.iter().map(f).collect()))
            );
        }
    }
}

/// CURVE against NULL, measured in the same run: per-round ratios `zmesh-curve` / `zmesh` (the two
/// ran back to back in every round), with the goals of issue 13.
fn curve_vs_null(results: &[(String, Vec<RoundResult>)]) {
    let get = |n: &str| results.iter().find(|(x, _)| x == n).map(|(_, r)| r);
    let (Some(null), Some(curve)) = (get("zmesh"), get("zmesh-curve")) else {
        return;
    };
    let ratio = |f: fn(&RoundResult) -> f64| {
        median(curve.iter().zip(null).map(|(c, n)| f(c) / f(n)).collect())
    };
    let med = |rs: &[RoundResult], f: fn(&RoundResult) -> f64| median(rs.iter().map(f).collect());
    println!();
    let (s64, o64) = curve_codec_cost(64, 100_000);
    let (s4k, o4k) = curve_codec_cost(4096, 20_000);
    println!(
        "CURVE MESSAGE codec alone, in process: 64 B seal {s64:.0} ns + open {o64:.0} ns; \
         4 KiB seal {s4k:.0} ns + open {o4k:.0} ns"
    );
    println!("CURVE vs NULL, same run (medians; ratio = median of per-round zmesh-curve / zmesh)");
    println!("| scenario | NULL | CURVE | ratio | goal |");
    println!("|---|---|---|---|---|");
    // (label, field, higher is better, goal)
    type Row = (&'static str, fn(&RoundResult) -> f64, bool, f64);
    let rows: [Row; 3] = [
        ("64 B one-way, msg/s", |r| r.msgs64, true, 0.6),
        ("4 KiB one-way, msg/s", |r| r.msgs4k, true, 0.8),
        (
            "64 B round trip median, us",
            |r| r.rtt_median_us,
            false,
            1.2,
        ),
    ];
    for (label, f, higher_better, goal) in rows {
        let (n, c, r) = (med(null, f), med(curve, f), ratio(f));
        let fmt = |v: f64| {
            if higher_better {
                format_rate(v)
            } else {
                format!("{v:.1}")
            }
        };
        let met = if higher_better { r >= goal } else { r <= goal };
        println!(
            "| {label} | {} | {} | {r:.2}x | {} {goal}x: {} |",
            fmt(n),
            fmt(c),
            if higher_better { ">=" } else { "<=" },
            if met { "MET" } else { "MISSED" }
        );
    }
}

fn format_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}
