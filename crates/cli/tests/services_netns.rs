//! Named services across network segments that no beacon crosses, through brokers reachable
//! from both, in network namespaces of this test's own (`zsvc-*`, 10.79.0.0/16 — created here and
//! deleted on drop; nothing is created in the root namespace and no packet leaves the
//! namespaces).
//!
//! Layout: a router namespace `zsvc-rt` holds three bridges, one per segment, and forwards
//! between them: segment A 10.79.1.0/24 (clients: `zsvc-a1`, `zsvc-a2`), segment B 10.79.2.0/24
//! (the worker: `zsvc-b1`), segment C 10.79.3.0/24 (brokers: `zsvc-c1`, `zsvc-c2`). Beacons are
//! broadcasts and stay in their segment; TCP is routed.
//!
//! What is proved:
//! * a client in A configured with one broker calls a worker in B configured with the other:
//!   they never meet, the call goes through a broker, the brokers found each other and the
//!   client learned both;
//! * a broker SIGKILLed: the next calls still succeed through the other;
//! * registered only: with CURVE, brokers admit the keys on their allow-list; a client whose
//!   key is not on it gets no service (exit 4) and the broker counts its refused handshakes.
//!
//! Run: `bash scripts/test.sh -p zmesh-cli -- services_netns` (root).

use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

const PREFIX: &str = "zsvc";

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// The namespaces, removed on drop; one test at a time holds them.
struct Net(#[allow(dead_code)] MutexGuard<'static, ()>);

static LAYOUT: Mutex<()> = Mutex::new(());

impl Net {
    fn up() -> Net {
        let guard = LAYOUT.lock().unwrap_or_else(|e| e.into_inner());
        Net::remove();
        let rt = format!("{PREFIX}-rt");
        ip(&["netns", "add", &rt]);
        ip(&["-n", &rt, "link", "set", "lo", "up"]);
        // Forwarding on, in the router namespace only (its own /proc/sys/net).
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &rt,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ])
            .status()
            .unwrap();
        assert!(fwd.success());
        for (seg, hosts) in [
            (1, &["a1", "a2"][..]),
            (2, &["b1"][..]),
            (3, &["c1", "c2"][..]),
        ] {
            let br = format!("br{seg}");
            ip(&["-n", &rt, "link", "add", &br, "type", "bridge"]);
            ip(&[
                "-n",
                &rt,
                "addr",
                "add",
                &format!("10.79.{seg}.1/24"),
                "dev",
                &br,
            ]);
            ip(&["-n", &rt, "link", "set", &br, "up"]);
            for (k, h) in hosts.iter().enumerate() {
                let ns = format!("{PREFIX}-{h}");
                let veth = format!("v{h}");
                ip(&["netns", "add", &ns]);
                ip(&["-n", &ns, "link", "set", "lo", "up"]);
                ip(&[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &veth,
                    "netns", &rt,
                ]);
                ip(&["-n", &rt, "link", "set", &veth, "master", &br]);
                ip(&["-n", &rt, "link", "set", &veth, "up"]);
                let addr = format!("10.79.{seg}.{}/24", 11 + k);
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &addr,
                    "brd",
                    &format!("10.79.{seg}.255"),
                    "dev",
                    "eth0",
                ]);
                ip(&["-n", &ns, "link", "set", "eth0", "up"]);
                ip(&[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.79.{seg}.1"),
                ]);
            }
        }
        Net(guard)
    }

    fn remove() {
        for h in ["rt", "a1", "a2", "b1", "c1", "c2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{PREFIX}-{h}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Net::remove();
    }
}

fn zmesh(host: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &format!("{PREFIX}-{host}")]);
    c.arg(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "eth0", "--port", "5790"]);
    c.args(args);
    c
}

/// A background process, SIGKILLed on drop.
struct Proc(Child);

impl Proc {
    fn start(host: &str, args: &[&str]) -> Proc {
        Proc(
            zmesh(host, args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn zmesh"),
        )
    }

    /// SIGTERM, then the JSON lines it printed.
    fn stop(mut self) -> Vec<Value> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        let out = child.wait_with_output().unwrap();
        lines(&out.stdout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn call(host: &str, broker: &str, payload: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "--json",
        "call",
        "--interval",
        "200",
        "--discover",
        "20s",
        "--timeout",
        "10s",
        "--retries",
        "3",
        "--broker",
        broker,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["echo", payload]);
    zmesh(host, &args).output().unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

const B1: &str = "tcp://10.79.3.11:7100";
const B2: &str = "tcp://10.79.3.12:7100";

#[test]
#[ignore = "needs root (network namespaces): run scripts/test.sh"]
fn segments_talk_through_brokers_and_survive_one() {
    assert!(is_root(), "needs root");
    let _net = Net::up();
    let node = [
        "--interval",
        "200",
        "--evasive",
        "1000",
        "--expired",
        "3000",
    ];
    let mut b1a = vec!["--json", "broker", "--bind", B1, "--peer-broker", B2];
    b1a.extend_from_slice(&node);
    let b1 = Proc::start("c1", &b1a);
    let mut b2a = vec!["--json", "broker", "--bind", B2, "--peer-broker", B1];
    b2a.extend_from_slice(&node);
    let b2 = Proc::start("c2", &b2a);
    let mut wa = vec!["--json", "worker", "--broker", B2, "echo", "--echo"];
    wa.extend_from_slice(&node);
    let w = Proc::start("b1", &wa);

    // The client knows only b1; the worker only b2.
    let out = call("a1", B1, "across", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = &lines(&out.stdout)[0];
    assert_eq!(v["payload"], "across");
    assert!(v["broker"].is_string() && v["worker"].is_string(), "{v}");

    // b1 dies: a client configured with both brokers still gets its answer, through b2.
    let mut b1 = b1;
    let _ = b1.0.kill();
    let out = call("a1", B1, "after", &["--broker", B2]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(lines(&out.stdout)[0]["payload"], "after");
    drop(w);
    drop(b2);
}

/// `zmesh keygen` into `dir`; returns the public key (Z85).
fn keygen(dir: &std::path::Path, name: &str) -> String {
    let p = dir.join(name);
    let st = Command::new(env!("CARGO_BIN_EXE_zmesh"))
        .args(["keygen", p.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&p).unwrap();
    let line = text.lines().find(|l| l.contains("public-key")).unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
#[ignore = "needs root (network namespaces): run scripts/test.sh"]
fn registered_only_through_secure_brokers() {
    assert!(is_root(), "needs root");
    let _net = Net::up();
    let dir = std::env::temp_dir().join(format!("zsvc-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let allow = dir.join("allow");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&allow).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    // Registered: the brokers, the client, the worker (public certificates in allow/).
    let bkey = keygen(&keys, "broker");
    keygen(&keys, "client");
    keygen(&keys, "worker");
    keygen(&keys, "stranger");
    for n in ["broker", "client", "worker"] {
        std::fs::copy(keys.join(n), allow.join(n)).unwrap();
    }
    let secret = |n: &str| keys.join(format!("{n}_secret")).display().to_string();
    let allow_s = allow.display().to_string();
    let bsec = secret("broker");
    let node = [
        "--interval",
        "200",
        "--evasive",
        "1000",
        "--expired",
        "3000",
    ];
    let mut ba = vec![
        "--json",
        "--curve-secret",
        &bsec,
        "--allow",
        &allow_s,
        "broker",
        "--bind",
        B1,
    ];
    ba.extend_from_slice(&node);
    let broker = Proc::start("c1", &ba);
    let with_key = format!("{B1}|{bkey}");
    let wsec = secret("worker");
    let mut wa = vec![
        "--json",
        "--curve-secret",
        &wsec,
        "worker",
        "--broker",
        &with_key,
        "echo",
        "--echo",
    ];
    wa.extend_from_slice(&node);
    let _w = Proc::start("b1", &wa);

    let csec = secret("client");
    let out = call("a1", &with_key, "registered", &["--curve-secret", &csec]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(lines(&out.stdout)[0]["payload"], "registered");

    // A client whose key is not on the broker's list: refused at the handshake, no service.
    let ssec = secret("stranger");
    let args = [
        "--json",
        "--curve-secret",
        &ssec,
        "call",
        "--interval",
        "200",
        "--discover",
        "3s",
        "--timeout",
        "3s",
        "--broker",
        &with_key,
        "echo",
        "x",
    ];
    let out = zmesh("a2", &args).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let report = broker.stop();
    let last = report.last().expect("broker reports on stop");
    assert!(
        last["handshake_failures"].as_u64().unwrap() > 0,
        "refusals counted: {last}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
