//! Discovery where UDP does not pass: zmesh agents in private namespaces with **every UDP packet
//! dropped** (nftables), wired only by `ZMESH_*` environment variables — nanomitter's overlay
//! scenario (the `docker/` compose file runs the same set-up in containers).
//!
//! Layout (`interop/gossip-netns.sh`): segment A = zdg-a1..a3 (10.82.0.11..13), segment B =
//! zdg-b1..b2 (10.83.0.11..12), joined by the router namespace zdg-hub (10.82.0.1 / 10.83.0.1),
//! which also runs the gossip hub and `dnsmasq`.
//!
//! What is proved, one scenario after the other:
//! * **gossip**: a hub node in zdg-hub (`ZMESH_GOSSIP_BIND`) and workers on both segments
//!   (`ZMESH_GOSSIP_CONNECT`): every worker sees every other (across the two segments: one hub
//!   joins them) and a WHISPER goes from segment B to segment A;
//! * **static peers**: every node is a gossip endpoint of its own and lists the others in
//!   `ZMESH_PEERS`: full mesh, no hub;
//! * **DNS**: `dnsmasq` (queried over TCP, UDP being dropped) serves SRV `_zre._tcp.zdg.test` →
//!   a1..a3 and a name with two A records; nodes given only `srv:zdg.test` or that name mesh;
//! * **re-resolution**: a name that gains an address while a node runs (hosts file rewritten,
//!   dnsmasq reloaded): the node dials the new hub and meets its node.
//!
//! The control that the network really drops UDP: a pair of plain beacon-only nodes on segment A
//! never meet.
//!
//! Run: `bash scripts/test.sh -p zmesh -- gossip_netns` (root; installs nftables, dnsmasq), or as
//! root with the binaries built: `cargo test -p zmesh --test gossip_netns -- --include-ignored`.
//! The test creates the namespaces and removes them at the end (also on failure).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{zmesh_bin, Agent};

/// Generous bound for discovery and delivery.
const T: Duration = Duration::from_secs(20);

/// The namespaces, removed on drop.
struct Net;

impl Net {
    fn up() -> Net {
        let root = support::workspace_root();
        let script = root.join("interop/gossip-netns.sh");
        let _ = Command::new("bash").arg(&script).arg("down").status();
        let ok = Command::new("bash")
            .arg(&script)
            .arg("up")
            .status()
            .expect("run gossip-netns.sh");
        assert!(ok.success(), "gossip-netns.sh up failed");
        Net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let script = support::workspace_root().join("interop/gossip-netns.sh");
        let _ = Command::new("bash").arg(&script).arg("down").status();
    }
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_tools() {
    let root = unsafe_free_is_root();
    let missing: Vec<&str> = ["nft", "dnsmasq", "ip"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t} || test -x /usr/sbin/{t}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .collect();
    assert!(
        root && missing.is_empty(),
        "this test needs root, nftables and dnsmasq (missing: {missing:?}, root: {root}); run it \
         through `bash scripts/test.sh`"
    );
}

fn unsafe_free_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A `zmesh agent` in `ns` configured only by environment variables (plus `--json agent`).
fn agent(ns: &str, name: &str, env: &[(&str, &str)]) -> Agent {
    let mut argv: Vec<String> = vec!["env".into(), format!("ZMESH_NAME={name}")];
    argv.push("ZMESH_IFACE=eth0".into());
    argv.push("ZMESH_INTERVAL=200".into());
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend([
        zmesh_bin().display().to_string(),
        "--json".into(),
        "agent".into(),
    ]);
    let mut a = Agent::spawn_argv(ns, name, &argv);
    a.ready();
    a
}

/// Every agent sees every other one enter.
fn full_mesh(agents: &mut [Agent]) {
    let uuids: Vec<String> = agents.iter_mut().map(|a| a.uuid()).collect();
    for (i, a) in agents.iter_mut().enumerate() {
        for (j, u) in uuids.iter().enumerate() {
            if i != j {
                a.wait_event(T, "ENTER", Some(u))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

fn stop_all(agents: &mut [Agent]) {
    for a in agents {
        let _ = a.stop();
    }
}

#[test]
#[ignore = "needs root, nftables and dnsmasq: run through scripts/test.sh"]
fn meshes_form_without_udp_by_gossip_static_peers_and_dns() {
    require_tools();
    let _net = Net::up();

    // Control: beacons alone find nothing (UDP is dropped).
    let mut c1 = agent("zdg-a1", "c1", &[("ZMESH_PORT", "5690")]);
    let mut c2 = agent("zdg-a2", "c2", &[("ZMESH_PORT", "5690")]);
    let u2 = c2.uuid();
    let seen: Vec<_> = c1
        .drain_for(Duration::from_secs(2))
        .into_iter()
        .filter(|e| e["event"] == "ENTER" && e["peer"] == u2.as_str())
        .collect();
    assert!(seen.is_empty(), "beacons crossed a network that drops UDP");
    stop_all(&mut [c1, c2]);

    // 1. Gossip: one hub joins both segments.
    //    The hub listens on every address (as in docker/compose.yml); each segment reaches it at
    //    its own side's address.
    let no_udp = ("ZMESH_NO_BEACONS", "1");
    let mut hub = agent(
        "zdg-hub",
        "hub",
        &[("ZMESH_GOSSIP_BIND", "tcp://0.0.0.0:5671"), no_udp],
    );
    let mut workers: Vec<Agent> = ["zdg-a1", "zdg-a2", "zdg-a3", "zdg-b1", "zdg-b2"]
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let hub_ep = if ns.starts_with("zdg-a") {
                "tcp://10.82.0.1:5671"
            } else {
                "tcp://10.83.0.1:5671"
            };
            agent(
                ns,
                &format!("w{i}"),
                &[("ZMESH_GOSSIP_CONNECT", hub_ep), no_udp],
            )
        })
        .collect();
    full_mesh(&mut workers);
    let ua = workers[0].uuid();
    let ub = workers[3].uuid();
    workers[3].whisper(&ua, &["across-segments"]);
    let w = workers[0]
        .wait_event(T, "WHISPER", Some(&ub))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(w.to_string().contains("across-segments"), "{w}");
    stop_all(&mut workers);
    let _ = hub.stop();

    // 2. Static peers: every node a gossip endpoint, listing the others.
    let ips = ["10.82.0.11", "10.82.0.12", "10.82.0.13", "10.83.0.11"];
    let nss = ["zdg-a1", "zdg-a2", "zdg-a3", "zdg-b1"];
    let mut nodes: Vec<Agent> = (0..ips.len())
        .map(|i| {
            let others: Vec<String> = (0..ips.len())
                .filter(|j| *j != i)
                .map(|j| format!("tcp://{}:5672", ips[j]))
                .collect();
            let bind = format!("tcp://{}:5672", ips[i]);
            agent(
                nss[i],
                &format!("s{i}"),
                &[
                    ("ZMESH_GOSSIP_BIND", bind.as_str()),
                    ("ZMESH_PEERS", others.join(",").as_str()),
                    no_udp,
                ],
            )
        })
        .collect();
    full_mesh(&mut nodes);
    stop_all(&mut nodes);

    // 3. DNS: SRV records for segment A, a name with two A records for segment B.
    let mut dns = Guard(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                "zdg-hub",
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=10.82.0.1",
                "--port=53",
                "--user=root",
                "--pid-file=",
            ])
            .args([
                "--host-record=a1.zdg.test,10.82.0.11",
                "--host-record=a2.zdg.test,10.82.0.12",
                "--host-record=a3.zdg.test,10.82.0.13",
                "--srv-host=_zre._tcp.zdg.test,a1.zdg.test,5673",
                "--srv-host=_zre._tcp.zdg.test,a2.zdg.test,5673",
                "--srv-host=_zre._tcp.zdg.test,a3.zdg.test,5673",
                "--host-record=hubs.zdg.test,10.82.0.11",
                "--host-record=hubs.zdg.test,10.82.0.12",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start dnsmasq"),
    );
    let dns_env = ("ZMESH_DNS_SERVER", "10.82.0.1");
    let mut nodes: Vec<Agent> = (0..3)
        .map(|i| {
            let bind = format!("tcp://{}:5673", ips[i]);
            agent(
                nss[i],
                &format!("d{i}"),
                &[
                    ("ZMESH_GOSSIP_BIND", bind.as_str()),
                    ("ZMESH_PEERS", "srv:zdg.test"),
                    dns_env,
                    no_udp,
                ],
            )
        })
        .collect();
    nodes.push(agent(
        "zdg-b2",
        "d3",
        &[("ZMESH_PEERS", "tcp://hubs.zdg.test:5673"), dns_env, no_udp],
    ));
    full_mesh(&mut nodes);
    stop_all(&mut nodes);
    assert!(
        dns.0.try_wait().unwrap().is_none(),
        "dnsmasq ended early (see its output)"
    );
    drop(dns);

    // 4. Re-resolution: a name whose answer changes while the node runs. `late.zdg.test` first
    //    names only x's hub; then (hosts file rewritten, dnsmasq told by SIGHUP) also y's. y and
    //    x know nothing of each other; z, which only has the name, must come to meet y.
    let dir = std::env::temp_dir().join(format!("zmesh-gossip-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "10.82.0.11 late.zdg.test\n").unwrap();
    let dns = Guard(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                "zdg-hub",
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=10.82.0.1",
                "--port=53",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(Stdio::null())
            .spawn()
            .expect("start dnsmasq"),
    );
    let mut x = agent(
        "zdg-a1",
        "x",
        &[("ZMESH_GOSSIP_BIND", "tcp://10.82.0.11:5674"), no_udp],
    );
    let mut y = agent(
        "zdg-a2",
        "y",
        &[("ZMESH_GOSSIP_BIND", "tcp://10.82.0.12:5674"), no_udp],
    );
    let mut z = agent(
        "zdg-b1",
        "z",
        &[
            ("ZMESH_PEERS", "tcp://late.zdg.test:5674"),
            ("ZMESH_DNS_INTERVAL", "200ms"),
            dns_env,
            no_udp,
        ],
    );
    let (ux, uy) = (x.uuid(), y.uuid());
    z.wait_event(T, "ENTER", Some(&ux))
        .unwrap_or_else(|e| panic!("{e}"));
    let early: Vec<_> = z
        .drain_for(Duration::from_secs(1))
        .into_iter()
        .filter(|e| e["event"] == "ENTER" && e["peer"] == uy.as_str())
        .collect();
    assert!(early.is_empty(), "z met y before the name listed y");
    std::fs::write(
        &hosts,
        "10.82.0.11 late.zdg.test\n10.82.0.12 late.zdg.test\n",
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &dns.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    z.wait_event(T, "ENTER", Some(&uy))
        .unwrap_or_else(|e| panic!("{e}"));
    // z is a client of both hubs, so it forwards between them (zgossip): x and y meet too.
    x.wait_event(T, "ENTER", Some(&uy))
        .unwrap_or_else(|e| panic!("{e}"));
    stop_all(&mut [x, y, z]);
    drop(dns);
    let _ = std::fs::remove_dir_all(&dir);
}
