//! Scenarios 4, 5 and 6: many nodes in this process on loopback — discovery, leave, idle cost.
//!
//! A [`Mesh`] starts `n` nodes on one beacon port and forwards every node's events, stamped with the
//! instant the application saw them, into one channel, so the driver can time "every node has seen
//! ENTER (or EXIT) from every other" without polling.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use zmesh::{Event, Node, NodeBuilder, Uuid};

use crate::{fmt_num, median, node_builder, Row};

/// Longest we wait for a mesh to form / a departure to be seen.
const MESH_TIMEOUT: Duration = Duration::from_secs(120);

/// Nodes of one mesh in this process, their events funnelled into one channel, plus (for meshes
/// too large for this process's file-descriptor limit) a second process holding the rest.
struct Mesh {
    nodes: Vec<Node>,
    /// Nodes in the whole mesh (this process + the remote part).
    total: usize,
    rx: mpsc::UnboundedReceiver<(usize, Instant, Event)>,
    /// When `start` began (monotonic and wall clock, the latter to compare with the remote part).
    t0: Instant,
    t0_sys: SystemTime,
    remote: Option<Remote>,
}

/// The part of a mesh held by a child process (`--peer mesh-part`).
struct Remote {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    nodes: usize,
    /// The child's RSS before it started its nodes.
    rss0: u64,
}

impl Remote {
    async fn line(&mut self, prefix: &str, deadline: tokio::time::Instant) -> Option<String> {
        loop {
            let l = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()??;
            if let Some(rest) = l.strip_prefix(prefix) {
                return Some(rest.trim().to_string());
            }
        }
    }
}

/// Sockets a fully meshed set of `n` nodes needs in one process: two ends of every TCP connection
/// (two per pair: the Harmony pattern), plus a listener and a beacon socket per node.
fn fds_needed(n: usize) -> u64 {
    (2 * n * (n - 1) + 2 * n + 64) as u64
}

fn fd_limit() -> u64 {
    // SAFETY: getrlimit fills the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

impl Mesh {
    /// Starts `n` nodes built by `build(i)`, all in this process.
    async fn start(n: usize, build: impl Fn(usize) -> NodeBuilder) -> Mesh {
        let (t0, t0_sys) = (Instant::now(), SystemTime::now());
        let (tx, rx) = mpsc::unbounded_channel();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let (node, mut events) = build(i).start().await.expect("start node");
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    if tx.send((i, Instant::now(), ev)).is_err() {
                        break;
                    }
                }
            });
            nodes.push(node);
        }
        Mesh {
            nodes,
            total: n,
            rx,
            t0,
            t0_sys,
            remote: None,
        }
    }

    /// Starts `n` default nodes on loopback; if this process cannot hold that many sockets, half of
    /// them run in a child process (announced on stderr).
    async fn start_lo(n: usize, port: u16, beacon: Duration, prefix: &str) -> Mesh {
        Mesh::start_split(n, port, beacon, prefix, None).await
    }

    /// [`Mesh::start_lo`] with `all_sources`: every discovery source on ([`all_sources`]), the
    /// gossip hub being node 0 on `tcp://127.0.0.1:<port>`.
    async fn start_sources(
        n: usize,
        port: u16,
        beacon: Duration,
        prefix: &str,
        all_sources: bool,
    ) -> Mesh {
        if !all_sources {
            return Mesh::start_lo(n, port, beacon, prefix).await;
        }
        let hub = format!("{ALL_SOURCES_TAG}tcp://127.0.0.1:{port}");
        Mesh::start_split(n, port, beacon, prefix, Some(hub.as_str())).await
    }

    /// [`Mesh::start_lo`], or with `gossip` = a hub's endpoint: node 0 of this process is that
    /// hub (`gossip_bind`) and every other node, here or in the second process, joins it; no
    /// beacons.
    async fn start_split(
        n: usize,
        port: u16,
        beacon: Duration,
        prefix: &str,
        gossip: Option<&str>,
    ) -> Mesh {
        let build = |i: usize| {
            sourced(
                node_builder(&format!("{prefix}{i}"), port, beacon),
                i,
                gossip,
            )
        };
        if fds_needed(n) <= fd_limit() {
            return Mesh::start(n, build).await;
        }
        let remote_n = n / 2;
        eprintln!(
            "  mesh of {n}: needs ~{} sockets, open-file limit is {}: {remote_n} nodes run in a second process",
            fds_needed(n),
            fd_limit()
        );
        let (t0, t0_sys) = (Instant::now(), SystemTime::now());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--peer", "mesh-part", "--beacon-port", &port.to_string()])
            .args(["--part-nodes", &remote_n.to_string()])
            .args(["--mesh-total", &n.to_string()])
            .args(["--beacon-ms", &beacon.as_millis().to_string()])
            .args(gossip.map(|hub| ["--connect", hub]).into_iter().flatten())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mesh part");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (ltx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if ltx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut mesh = Mesh::start(n - remote_n, build).await;
        mesh.total = n;
        mesh.t0 = t0;
        mesh.t0_sys = t0_sys;
        let mut remote = Remote {
            child,
            stdin,
            lines,
            nodes: remote_n,
            rss0: 0,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        remote.rss0 = remote
            .line("RSS0 ", deadline)
            .await
            .and_then(|s| s.parse().ok())
            .expect("mesh part did not start");
        mesh.remote = Some(remote);
        mesh
    }

    /// How long starting took and how long (seconds since the start) until the full mesh: NaN
    /// if it never formed.
    async fn time_to_full(&mut self) -> (Duration, f64) {
        let started = self.t0.elapsed();
        let secs = self
            .wait_full()
            .await
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::NAN);
        (started, secs)
    }

    /// Waits until every node has seen ENTER from every other; returns the time since `start`
    /// began when the last one did, or `None` on timeout (with how far it got on stderr).
    async fn wait_full(&mut self) -> Option<Duration> {
        let n = self.nodes.len();
        let want = self.total - 1;
        let mut seen: Vec<HashSet<Uuid>> = vec![HashSet::new(); n];
        let mut complete = 0usize;
        let mut last = self.t0;
        let deadline = tokio::time::Instant::now() + MESH_TIMEOUT;
        while complete < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((i, at, Event::Enter { peer, .. }))) => {
                    if seen[i].insert(peer) && seen[i].len() == want {
                        complete += 1;
                        last = at;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(_) => {
                    let enters: usize = seen.iter().map(|s| s.len()).sum();
                    eprintln!(
                        "  mesh of {}: only {enters} of {} ENTERs here after {MESH_TIMEOUT:?}",
                        self.total,
                        n * want
                    );
                    return None;
                }
            }
        }
        let mut elapsed = last - self.t0;
        if let Some(r) = self.remote.as_mut() {
            let at: u128 = r.line("FULL ", deadline).await?.parse().ok()?;
            let remote = Duration::from_nanos(at.saturating_sub(unix_ns(self.t0_sys)) as u64);
            elapsed = elapsed.max(remote);
        }
        Some(elapsed)
    }

    /// Waits until every node in `observers` has seen EXIT of `peer`; returns the last instant.
    async fn wait_exit(&mut self, peer: Uuid, observers: &[usize]) -> Option<Instant> {
        let mut pending: HashSet<usize> = observers.iter().copied().collect();
        let mut last = Instant::now();
        let deadline = tokio::time::Instant::now() + MESH_TIMEOUT;
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((i, at, Event::Exit { peer: p, .. }))) if p == peer => {
                    if pending.remove(&i) {
                        last = at;
                    }
                }
                Ok(Some(_)) => {}
                _ => {
                    eprintln!("  {} observers never saw EXIT", pending.len());
                    return None;
                }
            }
        }
        Some(last)
    }

    /// Engine counters summed over all nodes: (messages sent, PINGs sent, PINGs received).
    async fn counters(&mut self) -> (u64, u64, u64) {
        let mut acc = self.nodes.iter().fold((0u64, 0u64, 0u64), |acc, node| {
            let s = node.stats().engine;
            (
                acc.0 + s.messages_sent,
                acc.1 + s.pings_sent,
                acc.2 + s.pings_received,
            )
        });
        if let Some(r) = self.remote.as_mut() {
            writeln!(r.stdin, "stats").expect("mesh part stdin");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let l = r.line("STATS ", deadline).await.expect("mesh part stats");
            let v: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            acc = (acc.0 + v[0], acc.1 + v[1], acc.2 + v[2]);
        }
        acc
    }

    /// CPU time of this process plus the remote part.
    fn cpu_time(&self) -> Duration {
        let mut t = cpu_time();
        if let Some(r) = &self.remote {
            t += proc_cpu_time(r.child.id());
        }
        t
    }

    /// RSS growth of the remote part since before its nodes started (0 without one).
    fn remote_rss_growth(&self) -> u64 {
        self.remote
            .as_ref()
            .map(|r| proc_rss(&format!("/proc/{}/status", r.child.id())).saturating_sub(r.rss0))
            .unwrap_or(0)
    }

    /// Tears the mesh down like a crash (fast; nothing left to measure).
    async fn abort_all(self) {
        for n in &self.nodes {
            n.abort().await;
        }
        if let Some(mut r) = self.remote {
            drop(r.stdin);
            let _ = r.child.wait();
            let _ = r.nodes;
        }
    }
}

/// `--peer mesh-part`: `--part-nodes` nodes of a `--mesh-total` mesh; prints `RSS0 <bytes>`, then
/// `FULL <unix ns>` once each has seen ENTER from every other node; answers `stats` on stdin with
/// `STATS <messages sent> <pings sent> <pings received>`; exits on EOF.
/// Marks a hub endpoint handed to [`Mesh::start_split`] / the mesh part as "every source on"
/// rather than "gossip only".
const ALL_SOURCES_TAG: &str = "all:";

/// Multicast group of the every-source-on meshes.
const BENCH_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 90, 82);

/// Node `i` of a mesh with the given hub: none = beacons only; `tcp://...` = gossip only
/// (scenario 13: node 0 is the hub, beacons off); `all:tcp://...` = every source on
/// ([`all_sources`]).
fn sourced(b: NodeBuilder, i: usize, hub: Option<&str>) -> NodeBuilder {
    match hub {
        None => b,
        Some(h) => match h.strip_prefix(ALL_SOURCES_TAG) {
            Some(h) => all_sources(b, i, h),
            None if i == 0 => b.beacons(false).gossip_bind(h),
            None => b.beacons(false).gossip_connect(h),
        },
    }
}

/// Every discovery source at once (`--all-sources`, scenarios 4 and 6): IPv4 broadcast and
/// multicast beacons, IPv6 beacons, gossip (node 0 is the hub, every other node joins it) and
/// the same-host fast path.
fn all_sources(b: NodeBuilder, i: usize, hub: &str) -> NodeBuilder {
    let b = b.multicast(BENCH_GROUP).ipv6(true).same_host(true);
    if i == 0 {
        b.gossip_bind(hub)
    } else {
        b.gossip_connect(hub)
    }
}

pub async fn mesh_part(args: &crate::Args) {
    let port = args.beacon_port.expect("--beacon-port");
    let beacon = Duration::from_millis(args.beacon_ms);
    println!("RSS0 {}", rss_bytes());
    // `--connect`: the gossip hub every node joins (scenario 13), beacons off.
    // (`all:`-tagged: every source on, [`all_sources`].) Node 0 of the driver is the hub.
    let hub = args.connect.clone();
    let mut mesh = Mesh::start(args.part_nodes, |i| {
        sourced(
            node_builder(&format!("r{i}"), port, beacon),
            i + 1,
            hub.as_deref(),
        )
    })
    .await;
    mesh.total = args.mesh_total;
    let (tx, mut cmds) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    if mesh.wait_full().await.is_some() {
        println!("FULL {}", unix_ns(SystemTime::now()));
    }
    // Keep draining events (EXITs etc.) so nothing queues up, and answer stats requests.
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd.as_deref() {
                Some("stats") => {
                    let (m, p, r) = mesh.counters().await;
                    println!("STATS {m} {p} {r}");
                }
                Some(_) => {}
                None => break,
            },
            _ = mesh.rx.recv() => {}
        }
    }
    std::process::exit(0);
}

/// How the nodes of scenarios 4 and 6 discover each other, for the row labels.
fn sources_label(args: &crate::Args) -> &'static str {
    if args.all_sources {
        " (every source on)"
    } else {
        ""
    }
}

/// Scenario 4: discovery time for each mesh size, 1 s and 100 ms beacons.
pub async fn discovery(args: &crate::Args, next_port: &mut impl FnMut() -> u16) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &args.mesh_sizes {
        for beacon in [Duration::from_secs(1), Duration::from_millis(100)] {
            let port = next_port();
            let mut mesh = Mesh::start_sources(n, port, beacon, "d", args.all_sources).await;
            let (started, secs) = mesh.time_to_full().await;
            eprintln!(
                "  [4] {n} nodes, beacon {beacon:?}: full mesh after {secs:.3} s (starting took {:.3} s)",
                started.as_secs_f64()
            );
            let mut row = Row::new(
                4,
                format!(
                    "discovery {n} nodes, {} ms beacon{}: s to full mesh",
                    beacon.as_millis(),
                    sources_label(args)
                ),
                secs,
                "one beacon interval",
                Some(beacon.as_secs_f64()),
            );
            if n == 50 && beacon == Duration::from_secs(1) {
                row = row.target("<= 1.5 s", secs <= 1.5);
            }
            if n == 100 && beacon == Duration::from_secs(1) {
                row = row.target("< 1 s", secs < 1.0);
            }
            rows.push(row);
            mesh.abort_all().await;
        }
    }
    rows
}

/// Scenario 13: discovery by gossip: one hub and `n - 1` nodes joining it, no beacons (the
/// second process, if the mesh needs one, joins the same hub).
pub async fn gossip_discovery(args: &crate::Args, next_port: &mut impl FnMut() -> u16) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &args.mesh_sizes {
        let port = next_port();
        let hub_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for the hub");
        let hub = format!("tcp://127.0.0.1:{hub_port}");
        let mut mesh =
            Mesh::start_split(n, port, Duration::from_secs(1), "g", Some(hub.as_str())).await;
        let (started, secs) = mesh.time_to_full().await;
        eprintln!(
            "  [13] {n} nodes by gossip: full mesh after {secs:.3} s (starting took {:.3} s)",
            started.as_secs_f64()
        );
        let mut row = Row::new(
            13,
            format!("discovery {n} nodes by gossip (one hub): s to full mesh"),
            secs,
            "-",
            None,
        );
        if n == 100 {
            row = row.target("< 2 s", secs < 2.0);
        }
        rows.push(row);
        mesh.abort_all().await;
    }
    rows
}

/// Scenario 5: polite leave (port-0 beacon) and crash (expiry), 10-node meshes.
pub async fn leave(_args: &crate::Args, next_port: &mut impl FnMut() -> u16) -> Vec<Row> {
    const N: usize = 10;
    const TRIALS: usize = 5;
    let mut rows = Vec::new();

    // Polite leave: stop the nodes one by one, time until every remaining node saw EXIT.
    let port = next_port();
    let mut mesh = Mesh::start(N, |i| {
        node_builder(&format!("l{i}"), port, Duration::from_millis(100))
    })
    .await;
    mesh.wait_full().await.expect("leave mesh did not form");
    let mut polite = Vec::new();
    let mut udp = Vec::new();
    for k in 0..TRIALS {
        let victim = N - 1 - k;
        let node = mesh.nodes[victim].clone();
        let observers: Vec<usize> = (0..victim).collect();
        let t0 = Instant::now();
        let stopper = tokio::spawn(async move { node.stop().await });
        let last = mesh.wait_exit(mesh.nodes[victim].uuid(), &observers).await;
        let ms = last
            .map(|l| (l - t0).as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN);
        let _ = stopper.await;
        polite.push(ms);
        udp.push(udp_broadcast_ms(next_port(), observers.len()).await);
        eprintln!(
            "  [5] polite leave seen by {} peers after {ms:.2} ms (bare UDP broadcast to as many sockets: {:.3} ms)",
            observers.len(),
            udp.last().unwrap()
        );
    }
    let med = median(polite.clone());
    rows.push(
        Row::new(
            5,
            format!("polite leave: ms until all peers saw EXIT (median of {TRIALS})"),
            med,
            "bare UDP broadcast",
            Some(median(udp.clone())),
        )
        .target("<= 50 ms", med <= 50.0),
    );
    let worst = polite.iter().cloned().fold(f64::NAN, f64::max);
    rows.push(
        Row::new(
            5,
            format!("polite leave: ms, worst of {TRIALS}"),
            worst,
            "bare UDP broadcast",
            Some(udp.iter().cloned().fold(f64::NAN, f64::max)),
        )
        .target("<= 50 ms", worst <= 50.0),
    );
    mesh.abort_all().await;

    // Crash: abort a node; peers only notice by expiry.
    for (evasive, expired) in [(500u64, 1000u64), (1000, 3000)] {
        let port = next_port();
        let mut mesh = Mesh::start(N, |i| {
            node_builder(&format!("c{i}"), port, Duration::from_millis(100))
                .evasive_timeout(Duration::from_millis(evasive))
                .expired_timeout(Duration::from_millis(expired))
        })
        .await;
        mesh.wait_full().await.expect("crash mesh did not form");
        let mut times = Vec::new();
        for k in 0..3 {
            let victim = N - 1 - k;
            let observers: Vec<usize> = (0..victim).collect();
            let t0 = Instant::now();
            mesh.nodes[victim].abort().await;
            let last = mesh.wait_exit(mesh.nodes[victim].uuid(), &observers).await;
            times.push(
                last.map(|l| (l - t0).as_secs_f64() * 1e3)
                    .unwrap_or(f64::NAN),
            );
        }
        eprintln!(
            "  [5] crash, evasive {evasive} ms / expired {expired} ms: EXIT after {times:?} ms"
        );
        rows.push(Row::new(
            5,
            format!("crash (evasive {evasive} / expired {expired} ms): ms until all peers saw EXIT (median of 3)"),
            median(times),
            "configured expired timeout",
            Some(expired as f64),
        ));
        mesh.abort_all().await;
    }
    rows
}

/// A UDP socket sharing `port` with others (as beacon sockets do).
fn shared_udp(port: u16) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.set_nonblocking(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .unwrap();
    UdpSocket::from_std(s.into()).unwrap()
}

/// Baseline for a leave: one 22-byte broadcast on loopback until `receivers` sockets have it, in ms.
async fn udp_broadcast_ms(port: u16, receivers: usize) -> f64 {
    let socks: Vec<UdpSocket> = (0..receivers).map(|_| shared_udp(port)).collect();
    let sender = shared_udp(port);
    let t0 = Instant::now();
    sender
        .send_to(&[0x5a; 22], (Ipv4Addr::new(127, 255, 255, 255), port))
        .await
        .unwrap();
    let mut last = t0;
    let mut handles = Vec::new();
    for s in socks {
        handles.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .expect("broadcast not received")
                .unwrap();
            Instant::now()
        }));
    }
    for h in handles {
        last = last.max(h.await.unwrap());
    }
    (last - t0).as_secs_f64() * 1e3
}

/// CPU time of this process (user + system), from getrusage.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system) of another process of ours, from /proc/<pid>/stat.
fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line = indexes 11 and 12 after ')'.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Resident set size of this process in bytes (VmRSS).
fn rss_bytes() -> u64 {
    proc_rss("/proc/self/status")
}

/// VmRSS in bytes from a /proc status file.
fn proc_rss(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Bytes of one ZRE beacon (version 1, no key).
const BEACON_BYTES: f64 = 22.0;
/// Bytes of a PING or PING-OK on the wire: 6-byte ZRE frame + 2-byte ZMTP short-frame header.
const PING_WIRE_BYTES: f64 = 8.0;

/// Scenario 6: `--idle-nodes` idle nodes for `--idle-secs`.
pub async fn idle(args: &crate::Args, next_port: &mut impl FnMut() -> u16) -> Vec<Row> {
    let n = args.idle_nodes;
    let secs = args.idle_secs;
    let beacon = Duration::from_secs(1);

    // Baseline first: bare beacon sockets, the irreducible UDP part of ZRE discovery on one host.
    let port = next_port();
    let base_cpu = {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let s = shared_udp(port);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(beacon);
                let mut buf = [0u8; 256];
                let mut heard = 0u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let _ = s.send_to(&[0x5a; 22], (Ipv4Addr::new(127, 255, 255, 255), port)).await;
                        }
                        r = s.recv_from(&mut buf) => {
                            if let Ok((len, _)) = r {
                                heard += (len == 22 && buf[0] == 0x5a) as u64;
                            }
                        }
                    }
                    std::hint::black_box(heard);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let pct = (cpu_time() - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        for t in tasks {
            t.abort();
        }
        pct
    };
    eprintln!("  [6] baseline: {n} bare beacon sockets: {base_cpu:.2}% of one core");

    let port = next_port();
    let rss0 = rss_bytes();
    let mut mesh = Mesh::start_sources(n, port, beacon, "i", args.all_sources).await;
    mesh.wait_full().await.expect("idle mesh did not form");
    // Let the start-up burst pass and liveness pings settle into their steady rhythm.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (m0, p0, r0) = mesh.counters().await;
    let (c0, t0) = (mesh.cpu_time(), Instant::now());
    // Drain events while idle (there should be none: no EVASIVE on a healthy idle mesh).
    let mut unexpected = 0usize;
    let idle_until = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(_)) = tokio::time::timeout_at(idle_until, mesh.rx.recv()).await {
        unexpected += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (mesh.cpu_time() - c0).as_secs_f64() / wall * 100.0;
    let (m1, p1, r1) = mesh.counters().await;
    let rss_per_node =
        (rss_bytes().saturating_sub(rss0) + mesh.remote_rss_growth()) as f64 / n as f64;
    let per_node_s = |d: u64| d as f64 / wall / n as f64;
    let zre_msgs = per_node_s(m1 - m0);
    let beacon_bps = BEACON_BYTES / beacon.as_secs_f64();
    let zre_bps = zre_msgs * PING_WIRE_BYTES;
    eprintln!(
        "  [6] {n} idle nodes, {wall:.1} s: {cpu:.2}% of one core, {} B RSS/node, per node/s: {:.2} ZRE msgs ({:.2} PING sent, {:.2} PING received), {unexpected} events while idle",
        fmt_num(rss_per_node),
        zre_msgs,
        per_node_s(p1 - p0),
        per_node_s(r1 - r0),
    );
    let rows = vec![
        Row::new(
            6,
            format!("{n} idle nodes{}: CPU % of one core", sources_label(args)),
            cpu,
            format!("{n} bare beacon sockets"),
            Some(base_cpu),
        )
        .target("< 5%", cpu < 5.0),
        Row::new(
            6,
            "idle: resident memory per node, KiB",
            rss_per_node / 1024.0,
            "-",
            None,
        ),
        Row::new(
            6,
            "idle: bytes/s sent per node (beacon 22 B/s + PING/PING-OK 8 B each)",
            beacon_bps + zre_bps,
            "beacons alone",
            Some(beacon_bps),
        ),
        Row::new(
            6,
            "idle: ZRE messages/s sent per node (PING + PING-OK)",
            zre_msgs,
            "-",
            None,
        ),
    ];
    mesh.abort_all().await;
    rows
}
