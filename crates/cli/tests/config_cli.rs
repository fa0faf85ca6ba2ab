//! Node settings from flags, `ZMESH_*` variables and `--config FILE`, as black boxes: what
//! `zmesh config` reports (precedence flags > environment > file > defaults, Zyre's
//! `ZSYS_INTERFACE`), bad values from each origin (a message naming it, exit status 2), and two
//! agents configured by environment only meeting through a gossip hub on loopback, beacons off.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// Every variable the command reads, removed so the caller's environment cannot leak in.
const VARS: &[&str] = &[
    "ZMESH_NAME",
    "ZMESH_IFACE",
    "ZSYS_INTERFACE",
    "ZMESH_PORT",
    "ZMESH_HEADERS",
    "ZMESH_OPTIONS",
    "ZMESH_INTERVAL",
    "ZMESH_EVASIVE",
    "ZMESH_EXPIRED",
    "ZMESH_TCP_PORT",
    "ZMESH_ADVERTISE",
    "ZMESH_GOSSIP_BIND",
    "ZMESH_GOSSIP_CONNECT",
    "ZMESH_PEERS",
    "ZMESH_DNS_SERVER",
    "ZMESH_DNS_INTERVAL",
    "ZMESH_NO_BEACONS",
    "ZMESH_CURVE_SECRET",
    "ZMESH_ALLOW",
    "ZMESH_LOG",
    "ZMESH_CONFIG",
];

fn zmesh(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    for v in VARS {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.args(args);
    c
}

fn env_of(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zmesh-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn zmesh_config_shows_the_precedence() {
    let f = tmp(
        "a.toml",
        "name = \"from-file\"\nport = 7000\ninterval = 300\nno_beacons = true\n\
         gossip-connect = [\"tcp://10.9.0.1:5671\", \"tcp://10.9.0.2:5671\"]\n[header]\nX-A = \"1\"\n",
    );
    let out = zmesh(
        &[("ZMESH_PORT", "7001"), ("ZSYS_INTERFACE", "lo")],
        &[
            "--config",
            f.to_str().unwrap(),
            "config",
            "--interval",
            "250",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let has = |line: &str| text.lines().any(|l| l.starts_with(line));
    assert!(has("name = \"from-file\"  # config file"), "{text}");
    assert!(has("port = \"7001\"  # environment ZMESH_PORT"), "{text}");
    assert!(
        has("iface = \"lo\"  # environment ZSYS_INTERFACE"),
        "{text}"
    );
    assert!(has("interval = \"250\""), "flag wins: {text}");
    assert!(has("header = \"X-A=1\""), "{text}");
    assert!(has("gossip-connect = \"tcp://10.9.0.2:5671\""), "{text}");
    assert!(has("beacons = \"false\""), "{text}");
    // ZMESH_IFACE comes before ZSYS_INTERFACE.
    let out = zmesh(
        &[("ZMESH_IFACE", "127.0.0.1"), ("ZSYS_INTERFACE", "lo")],
        &["config"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# environment ZMESH_IFACE"), "{text}");
}

/// Environment, arguments, and what the error message must contain.
type Case = (Vec<(&'static str, &'static str)>, Vec<String>, &'static str);

#[test]
fn bad_values_exit_2_naming_their_origin() {
    let cases: Vec<Case> = vec![
        (
            vec![("ZMESH_PORT", "0")],
            vec!["config".into()],
            "ZMESH_PORT",
        ),
        (
            vec![("ZMESH_PEERS", "udp://x:1")],
            vec!["config".into()],
            "ZMESH_PEERS",
        ),
        (
            vec![("ZMESH_NO_BEACONS", "perhaps")],
            vec!["config".into()],
            "ZMESH_NO_BEACONS",
        ),
        (
            vec![],
            vec![
                "--config".into(),
                tmp("bad.toml", "colour = 1\n").display().to_string(),
                "config".into(),
            ],
            "unknown key \"colour\"",
        ),
        (
            vec![],
            vec![
                "--config".into(),
                tmp("bad2.toml", "expired = \"soon\"\n")
                    .display()
                    .to_string(),
                "config".into(),
            ],
            "expired",
        ),
        (
            vec![],
            vec![
                "--config".into(),
                "/nonexistent/zmesh.toml".into(),
                "config".into(),
            ],
            "/nonexistent/zmesh.toml",
        ),
        (
            vec![("ZMESH_GOSSIP_BIND", "nonsense")],
            vec![
                "--iface".into(),
                "lo".into(),
                "peers".into(),
                "--wait".into(),
                "0.1".into(),
            ],
            "gossip bind endpoint",
        ),
    ];
    for (env, args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = zmesh(&env, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert!(err.contains(want), "{env:?} {args:?}: {err}");
    }
}

/// A `zmesh --json agent` with events on a channel; killed on drop.
struct Agent {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Agent {
    fn start(env: &[(&str, &str)]) -> Agent {
        let mut child = zmesh(env, &["--json", "agent"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Agent { child, events }
    }

    fn wait(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if f(&v) => return v,
                Ok(_) => continue,
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agents_configured_by_environment_meet_through_a_gossip_hub() {
    let hub_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub_ep = format!("tcp://127.0.0.1:{hub_port}");
    let common = [
        ("ZMESH_IFACE", "lo"),
        ("ZMESH_NO_BEACONS", "yes"),
        ("ZMESH_INTERVAL", "100"),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        common
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let hub_env = with(&[
        ("ZMESH_NAME", "hub"),
        ("ZMESH_GOSSIP_BIND", hub_ep.as_str()),
    ]);
    let hub = Agent::start(&env_of(&hub_env));
    let hub_uuid = hub.wait("hub READY", |v| v["event"] == "READY")["uuid"].clone();
    let w1_env = with(&[
        ("ZMESH_NAME", "w1"),
        ("ZMESH_GOSSIP_CONNECT", hub_ep.as_str()),
    ]);
    let w2_env = with(&[
        ("ZMESH_NAME", "w2"),
        ("ZMESH_PEERS", hub_ep.as_str()),
        ("ZMESH_HEADERS", "X-ROLE=worker"),
    ]);
    let w1 = Agent::start(&env_of(&w1_env));
    let w2 = Agent::start(&env_of(&w2_env));
    let u2 = w2.wait("w2 READY", |v| v["event"] == "READY")["uuid"].clone();
    let enter = w1.wait("w1 enters w2", |v| v["event"] == "ENTER" && v["peer"] == u2);
    assert_eq!(enter["name"], "w2", "{enter}");
    assert!(
        enter.to_string().contains("X-ROLE"),
        "headers from ZMESH_HEADERS: {enter}"
    );
    w2.wait("w2 enters hub", |v| {
        v["event"] == "ENTER" && v["peer"] == hub_uuid
    });
}
