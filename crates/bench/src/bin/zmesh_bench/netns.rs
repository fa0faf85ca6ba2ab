//! Scenario 7: zmesh next to pyre-gevent and zyre.js, each talking to itself between two network
//! namespaces (`zmesh-h1` = 10.77.0.11 and `zmesh-h2` = 10.77.0.12, created by `interop/netns.sh up`).
//!
//! Every implementation runs the same two-role program (Rust here, `interop/bench_pyre.py`,
//! `interop/bench_zyrejs.js`), speaking the same tiny protocol in WHISPER content:
//!
//! * `T…` throughput message (size 64 or 4096); B counts and whispers `A<count>` every `ack_every`;
//! * `F` end of a throughput run; B answers `D<count>` and resets its count;
//! * `R…` (64 B) round trip; B whispers the same bytes back;
//! * `Q` quit.
//!
//! A keeps at most `window` messages un-acknowledged (the same window for every implementation),
//! then prints one line `RESULT {json}` with msgs/s for 64 B and 4 KiB and the round-trip
//! percentiles, which the driver collects. B is killed (it is our child, by pid) once A is done.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use zmesh::{Event, Node};

use crate::{Args, Percentiles, Row};

/// Most un-acknowledged messages (all implementations).
pub const WINDOW: usize = 2_000;
/// B acknowledges every this many messages.
pub const ACK_EVERY: usize = 200;
/// Untimed round trips first.
const WARMUP: usize = 200;
/// Whole-run guard per implementation.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
        .to_path_buf()
}

/// What is missing to run scenario 7 (empty = ready).
fn missing() -> Vec<String> {
    let mut m = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        m.push("root".to_string());
    }
    for ns in ["zmesh-br", "zmesh-h1", "zmesh-h2"] {
        if !Path::new("/run/netns").join(ns).exists() {
            m.push(format!("namespace {ns} (bash interop/netns.sh up)"));
        }
    }
    let root = workspace_root();
    for p in ["interop/.venv/bin/python", "interop/node_modules/zyre.js"] {
        if !root.join(p).exists() {
            m.push(format!("{p} (bash scripts/install-test-deps.sh)"));
        }
    }
    m
}

/// Argv of one role for one implementation.
fn argv(which: &str, role: &str, port: u16, count: usize, rtt: usize) -> Vec<String> {
    let root = workspace_root();
    let common = |v: &mut Vec<String>| {
        v.extend([
            "--role".to_string(),
            role.into(),
            "--iface".into(),
            "eth0".into(),
            "--port".into(),
            port.to_string(),
            "--count".into(),
            count.to_string(),
            "--rtt".into(),
            rtt.to_string(),
            "--window".into(),
            WINDOW.to_string(),
            "--ack-every".into(),
            ACK_EVERY.to_string(),
        ])
    };
    match which {
        "zmesh" => vec![
            std::env::current_exe().unwrap().display().to_string(),
            "--peer".into(),
            "netns-zmesh".into(),
            "--role".into(),
            role.into(),
            "--iface".into(),
            "eth0".into(),
            "--beacon-port".into(),
            port.to_string(),
            "--count64".into(),
            count.to_string(),
            "--rtt-count".into(),
            rtt.to_string(),
        ],
        "pyre-gevent" => {
            let mut v = vec![
                root.join("interop/.venv/bin/python").display().to_string(),
                root.join("interop/bench_pyre.py").display().to_string(),
            ];
            common(&mut v);
            v
        }
        _ => {
            let mut v = vec![
                "node".to_string(),
                root.join("interop/bench_zyrejs.js").display().to_string(),
            ];
            common(&mut v);
            v
        }
    }
}

fn spawn_in(ns: &str, argv: &[String]) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ip netns exec")
}

/// Runs A and B of one implementation; returns A's RESULT object.
fn run_pair(which: &str, port: u16, count: usize, rtt: usize) -> Option<Value> {
    let mut b = spawn_in("zmesh-h2", &argv(which, "b", port, count, rtt));
    let mut a = spawn_in("zmesh-h1", &argv(which, "a", port, count, rtt));
    let out = a.stdout.take().unwrap();
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(j) = line.strip_prefix("RESULT ") {
                let _ = tx.send(serde_json::from_str::<Value>(j).ok());
                return;
            }
        }
        let _ = tx.send(None);
    });
    let result = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("  [7] {which}: no result within {RUN_TIMEOUT:?}");
            None
        }
    };
    for c in [&mut a, &mut b] {
        // Give a clean exit a moment, then kill our own child by pid.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

/// Driver: the three implementations, one after another.
pub fn run(args: &Args, port: u16) -> Vec<Row> {
    let m = missing();
    if !m.is_empty() {
        eprintln!("  [7] skipped: missing {}", m.join(", "));
        return Vec::new();
    }
    let mut results = Vec::new();
    for (k, which) in ["zmesh", "pyre-gevent", "zyre.js"].iter().enumerate() {
        let count = if *which == "zmesh" {
            args.netns_count
        } else {
            args.netns_slow_count
        };
        let r = run_pair(which, port + k as u16 * 7, count, args.netns_rtt);
        eprintln!("  [7] {which}: {r:?}");
        results.push((which.to_string(), r));
    }
    let get = |which: &str, key: &str| {
        results
            .iter()
            .find(|(w, _)| w == which)
            .and_then(|(_, r)| r.as_ref())
            .and_then(|r| r.get(key))
            .and_then(Value::as_f64)
    };
    let mut rows = Vec::new();
    let metrics = [
        ("tput64", "netns WHISPER 64 B msg/s"),
        ("tput4k", "netns WHISPER 4 KiB msg/s"),
        ("rtt_p50", "netns round trip median us"),
        ("rtt_p99", "netns round trip p99 us"),
        ("rtt_p999", "netns round trip p99.9 us"),
    ];
    for (key, label) in metrics {
        let Some(z) = get("zmesh", key) else {
            continue;
        };
        for other in ["pyre-gevent", "zyre.js"] {
            rows.push(Row::new(
                7,
                label,
                z,
                format!("{other} <-> {other}"),
                get(other, key),
            ));
        }
    }
    rows
}

// ------------------------------------------------------------------------------------------------
// The zmesh role, run inside a namespace.

async fn next_whisper(events: &mut zmesh::Events) -> Bytes {
    loop {
        match events.recv().await.expect("events ended") {
            Event::Whisper { mut content, .. } => return content.swap_remove(0),
            Event::Exit { name, .. } => panic!("peer {name} left"),
            _ => {}
        }
    }
}

fn whisper(node: &Node, peer: zmesh::Uuid, b: Bytes) {
    node.whisper(peer, vec![b]).expect("whisper");
}

/// `--peer netns-zmesh --role a|b`: one zmesh node on `--iface` in a namespace.
pub async fn zmesh_role(args: &Args) {
    let port = args.beacon_port.expect("--beacon-port");
    let iface = args.iface.clone().unwrap_or_else(|| "eth0".into());
    let role = args.role.clone().expect("--role");
    let (node, mut events) = Node::builder()
        .name(format!("bench-{role}"))
        .interface(iface.parse().expect("interface"))
        .beacon_port(port)
        .event_capacity(100_000)
        .start()
        .await
        .expect("start node");
    let peer = loop {
        match events.recv().await.expect("events ended") {
            Event::Enter { peer, .. } => break peer,
            _ => continue,
        }
    };
    if role == "b" {
        let mut n = 0usize;
        loop {
            let m = next_whisper(&mut events).await;
            match m.first() {
                Some(b'R') => whisper(&node, peer, m),
                Some(b'T') => {
                    n += 1;
                    if n.is_multiple_of(ACK_EVERY) {
                        whisper(&node, peer, format!("A{n}").into());
                    }
                }
                Some(b'F') => {
                    whisper(&node, peer, format!("D{n}").into());
                    n = 0;
                }
                Some(b'Q') => break,
                _ => {}
            }
        }
        node.stop().await;
        return;
    }
    let count = args.count64;
    let ping = Bytes::from({
        let mut v = vec![b'x'; 64];
        v[0] = b'R';
        v
    });
    for _ in 0..WARMUP {
        whisper(&node, peer, ping.clone());
        next_whisper(&mut events).await;
    }
    let mut rates = Vec::new();
    for size in [64usize, 4096] {
        let mut v = vec![b'x'; size];
        v[0] = b'T';
        let msg = Bytes::from(v);
        let t0 = Instant::now();
        let (mut sent, mut acked, mut flushed) = (0usize, 0usize, false);
        loop {
            while sent < count && sent - acked < WINDOW {
                whisper(&node, peer, msg.clone());
                sent += 1;
            }
            if sent == count && !flushed {
                whisper(&node, peer, Bytes::from_static(b"F"));
                flushed = true;
            }
            let m = next_whisper(&mut events).await;
            let n: usize = std::str::from_utf8(&m[1..]).unwrap().parse().unwrap();
            match m[0] {
                b'A' => acked = n,
                b'D' => {
                    assert_eq!(n, count, "peer counted a different number");
                    break;
                }
                _ => {}
            }
        }
        rates.push(count as f64 / t0.elapsed().as_secs_f64());
    }
    let mut rtts = Vec::with_capacity(args.rtt_count);
    for _ in 0..args.rtt_count {
        let t0 = Instant::now();
        whisper(&node, peer, ping.clone());
        let m = next_whisper(&mut events).await;
        rtts.push(t0.elapsed().as_nanos() as u64);
        assert_eq!(m.len(), 64);
    }
    let p = Percentiles::of_nanos(rtts);
    whisper(&node, peer, Bytes::from_static(b"Q"));
    println!(
        "RESULT {}",
        json!({"impl": "zmesh", "tput64": rates[0], "tput4k": rates[1], "rtt_p50": p.p50,
               "rtt_p99": p.p99, "rtt_p999": p.p999, "rtt_n": p.n, "count": count})
    );
    node.stop().await;
}
