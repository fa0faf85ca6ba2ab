//! Beacon discovery on real (private) networks: IPv4 multicast beside broadcast, IPv6-only
//! hosts, a node on two segments, and an address change, with `zmesh agent` processes in the
//! namespaces `interop/netns-discovery.sh` creates (zdb-*, 10.80.0.0/24 + fd00:80::/64 on
//! segment A, 10.81.0.0/24 on segment B; see the script for the layout).
//!
//! Every test takes a process-wide lock, builds the namespaces from scratch and removes them
//! when done (also on failure), so the tests of this file run one after the other and never
//! share state. Nothing touches the machine's own interfaces.
//!
//! Run: `bash scripts/test.sh -p zmesh -- discovery_netns`, or as root with the `zmesh` binary
//! built: `cargo test -p zmesh --test discovery_netns -- --include-ignored`.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{workspace_root, zmesh_bin, Agent};

/// Beacon interval of every agent (ms); timeouts scale with it.
const INTERVAL_MS: u64 = 200;
/// Generous bound for discovery and message delivery.
const T: Duration = Duration::from_secs(15);
const GROUP: &str = "239.255.90.82";

static NETNS: Mutex<()> = Mutex::new(());

/// The namespaces of this file, removed on drop.
struct Net {
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Net {
    fn up() -> Net {
        let lock = NETNS.lock().unwrap_or_else(|e| e.into_inner());
        let ok = Command::new("bash")
            .arg(workspace_root().join("interop/netns-discovery.sh"))
            .arg("up")
            .status()
            .expect("run interop/netns-discovery.sh (needs root)")
            .success();
        assert!(ok, "interop/netns-discovery.sh up failed (root needed)");
        Net { _lock: lock }
    }

    /// Runs `ip -n NS ARGS...`.
    fn ip(&self, ns: &str, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip -n {ns} {args:?} failed");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("interop/netns-discovery.sh"))
            .arg("down")
            .status();
    }
}

/// A zmesh agent in `ns` on beacon port `port` with the given global flags.
fn agent(ns: &str, name: &str, port: u16, flags: &[&str]) -> Agent {
    let mut argv = vec![
        zmesh_bin().display().to_string(),
        "--json".into(),
        "--port".into(),
        port.to_string(),
    ];
    argv.extend(flags.iter().map(|s| s.to_string()));
    argv.extend(
        [
            "agent",
            "--name",
            name,
            "--interval",
            &INTERVAL_MS.to_string(),
            "--evasive",
            "2000",
            "--expired",
            "10000",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut a = Agent::spawn_argv(ns, name, &argv);
    a.ready();
    a
}

fn enter(a: &mut Agent, peer: &str) -> Value {
    a.wait_event(T, "ENTER", Some(peer))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn peers(a: &mut Agent) -> Vec<String> {
    a.send(json!({"cmd": "peers"}));
    let ev = a
        .wait_event(T, "PEERS", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut v: Vec<String> = ev["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn require_root() {
    assert!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "needs root (network namespaces): run through scripts/test.sh"
    );
}

/// Broadcast-only, multicast-only and broadcast+multicast nodes on one bridge form one mesh.
#[test]
#[ignore = "needs root + namespaces: run scripts/test.sh"]
fn multicast_and_broadcast_nodes_side_by_side() {
    require_root();
    let _net = Net::up();
    let port = 5711;
    let mut b = agent("zdb-h1", "bcast", port, &["--iface", "eth0"]);
    let mut m = agent(
        "zdb-h2",
        "mcast",
        port,
        &["--iface", "eth0", "--multicast", GROUP, "--no-broadcast"],
    );
    let mut m2 = agent(
        "zdb-h3",
        "mcast2",
        port,
        &["--iface", "eth0", "--multicast", GROUP, "--no-broadcast"],
    );
    let mut both = agent(
        "zdb-h2",
        "both",
        port,
        &["--iface", "eth0", "--multicast", GROUP],
    );
    let ids = [b.uuid(), m.uuid(), m2.uuid(), both.uuid()];
    for a in [&mut b, &mut m, &mut m2, &mut both] {
        let own = a.uuid();
        for id in ids.iter().filter(|i| **i != own) {
            let e = enter(a, id);
            // The two multicast-only nodes met by multicast alone (neither broadcasts).
            if own == ids[2] && *id == ids[1] {
                assert!(
                    e["endpoint"].as_str().unwrap().contains("10.80.0.12"),
                    "{e}"
                );
            }
        }
    }
}

/// IPv6-only hosts: full mesh, WHISPER, SHOUT and a polite leave; a dual-stack node heard over
/// IPv4 and IPv6 is one peer.
#[test]
#[ignore = "needs root + namespaces: run scripts/test.sh"]
fn ipv6_only_hosts_mesh_talk_and_leave() {
    require_root();
    let _net = Net::up();
    let port = 5712;
    let flags = ["--iface", "eth0", "--ipv6"];
    let mut a = agent("zdb-h5", "v6a", port, &flags);
    let mut b = agent("zdb-h6", "v6b", port, &flags);
    let mut d = agent("zdb-h2", "dual", port, &flags);
    let mut d2 = agent("zdb-h3", "dual2", port, &flags);
    let (ua, ub, ud, ud2) = (a.uuid(), b.uuid(), d.uuid(), d2.uuid());
    let e = enter(&mut a, &ub);
    assert!(
        e["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("tcp://[fd00:80::16]:"),
        "{e}"
    );
    enter(&mut a, &ud);
    enter(&mut a, &ud2);
    enter(&mut b, &ua);
    enter(&mut b, &ud);
    enter(&mut d, &ua);
    enter(&mut d, &ub);
    enter(&mut d, &ud2);
    enter(&mut d2, &ud);
    // WHISPER and SHOUT between the IPv6-only hosts.
    b.join("V6");
    a.wait_event(T, "JOIN", Some(&ub))
        .unwrap_or_else(|e| panic!("{e}"));
    a.whisper(&ub, &["hello over v6"]);
    let w = b
        .wait_event(T, "WHISPER", Some(&ua))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w["frames"][0], "hello over v6", "{w}");
    a.shout("V6", &["shout over v6"]);
    let s = b
        .wait_event(T, "SHOUT", Some(&ua))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s["frames"][0], "shout over v6", "{s}");
    // The dual-stack pair hears each other over IPv4 and IPv6: one peer, one ENTER, no EXIT.
    let extra = d.drain_for(Duration::from_millis(8 * INTERVAL_MS));
    assert!(
        !extra
            .iter()
            .any(|e| e["peer"] == ud2.as_str() && (e["event"] == "ENTER" || e["event"] == "EXIT")),
        "dual-stack peer seen twice: {extra:?}"
    );
    assert_eq!(peers(&mut d).iter().filter(|p| **p == ud2).count(), 1);
    // Polite leave: the others see EXIT at once (well before the 10 s expiry).
    let t = Instant::now();
    b.stop().unwrap();
    a.wait_event(T, "EXIT", Some(&ub))
        .unwrap_or_else(|e| panic!("{e}"));
    d.wait_event(T, "EXIT", Some(&ub))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A node on two segments (every interface, the default) is seen by peers on both.
#[test]
#[ignore = "needs root + namespaces: run scripts/test.sh"]
fn a_node_on_two_segments_is_seen_on_both() {
    require_root();
    let _net = Net::up();
    let port = 5713;
    let mut two = agent("zdb-h1", "two", port, &[]);
    let mut a = agent("zdb-h2", "onA", port, &["--iface", "eth0"]);
    let mut b = agent("zdb-h4", "onB", port, &["--iface", "eth0"]);
    let (u2, ua, ub) = (two.uuid(), a.uuid(), b.uuid());
    enter(&mut two, &ua);
    enter(&mut two, &ub);
    enter(&mut a, &u2);
    enter(&mut b, &u2);
    // Each side talks to it over its own segment.
    two.whisper(&ub, &["to B"]);
    let w = b
        .wait_event(T, "WHISPER", Some(&u2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w["frames"][0], "to B");
    b.whisper(&u2, &["from B"]);
    two.wait_event(T, "WHISPER", Some(&ub))
        .unwrap_or_else(|e| panic!("{e}"));
    a.whisper(&u2, &["from A"]);
    two.wait_event(T, "WHISPER", Some(&ua))
        .unwrap_or_else(|e| panic!("{e}"));
    // The segments stay apart: A and B never meet.
    assert!(!peers(&mut a).contains(&ub));
}

/// An address change: the peers see the node again at its new address within a few beacon
/// intervals (plus the 2 s interface re-scan) and keep no stale peer.
#[test]
#[ignore = "needs root + namespaces: run scripts/test.sh"]
fn an_address_change_is_followed() {
    require_root();
    let net = Net::up();
    let port = 5714;
    let mut a = agent("zdb-h2", "stay", port, &["--iface", "eth0"]);
    let mut m = agent("zdb-h3", "moving", port, &["--iface", "eth0"]);
    let (ua, um) = (a.uuid(), m.uuid());
    enter(&mut a, &um);
    enter(&mut m, &ua);
    let t = Instant::now();
    // (Deleting the old address first: deleting a subnet's primary address removes its
    // secondaries too, as a DHCP renumbering does.)
    net.ip("zdb-h3", &["addr", "del", "10.80.0.13/24", "dev", "eth0"]);
    net.ip("zdb-h3", &["addr", "add", "10.80.0.23/24", "dev", "eth0"]);
    let e = a
        .wait_for(T, |e| {
            e["event"] == "ENTER"
                && e["peer"] == um.as_str()
                && e["endpoint"].as_str().unwrap_or("").contains("10.80.0.23")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let took = t.elapsed();
    eprintln!("re-discovered at the new address after {took:?}: {e}");
    // Re-scan (2 s) + move after 3 intervals + slack, far below the 10 s expiry.
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(peers(&mut a), vec![um.clone()]);
    // And it talks over the new address, both ways.
    a.whisper(&um, &["after the move"]);
    let w = m
        .wait_event(T, "WHISPER", Some(&ua))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w["frames"][0], "after the move");
    m.whisper(&ua, &["back"]);
    a.wait_event(T, "WHISPER", Some(&um))
        .unwrap_or_else(|e| panic!("{e}"));
    // No stale peer later either.
    a.drain_for(Duration::from_millis(10 * INTERVAL_MS));
    assert_eq!(peers(&mut a), vec![um]);
}
