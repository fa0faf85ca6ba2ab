//! CURVE interoperability with real libzmq (pyzmq's bundled libzmq 4.3.x), through
//! `interop/libzmq/zmq_peer.py` under `interop/.venv` (created by `scripts/install-test-deps.sh`).
//!
//! Covered: a libzmq CURVE client -> zmesh inbox and a zmesh outbox -> libzmq CURVE server, with
//! multipart and 1 MiB messages in both directions (the libzmq ROUTER echoes what our outbox sends
//! through its DEALER to our inbox); libzmq's ZAP allow-list (pyzmq's `ThreadAuthenticator`) refusing
//! a zmesh key it does not know and admitting one whose certificate zmesh wrote; zmesh's allow-list
//! refusing a libzmq key; certificates made by `zmq.auth.create_certificates` loading in zmesh and
//! ours loading in pyzmq.
//!
//! `#[ignore]`d like the other libzmq tests (they need the venv); `scripts/test.sh` runs them with
//! `--include-ignored`. By hand: `cargo test -p zmesh-zmtp --test libzmq_curve -- --include-ignored`.

use bytes::Bytes;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use zmesh_zmtp::*;

const DEADLINE: Duration = Duration::from_secs(15);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let p = workspace().join("interop/.venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The secret key of a pair, as hex for the peer's command line (test-only: the key pair keeps its
/// secret in Z85 form behind `secret_z85`).
fn secret_hex(k: &CurveKeyPair) -> String {
    hex(CurvePublicKey::from_z85(&k.secret_z85())
        .unwrap()
        .as_bytes())
}

/// A running `zmq_peer.py`: JSON events from its stdout arrive on a channel; killed on drop.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    endpoints: Value,
}

impl Peer {
    fn start(socks: &[String], echo: &[&str]) -> Peer {
        let mut cmd = Command::new(python());
        cmd.arg("-u")
            .arg(workspace().join("interop/libzmq/zmq_peer.py"));
        for s in socks {
            cmd.arg("--sock").arg(s);
        }
        for e in echo {
            cmd.arg("--echo").arg(e);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut p = Peer {
            child,
            stdin,
            events,
            endpoints: Value::Null,
        };
        let ready = p.expect("ready", |e| e["event"] == "ready");
        p.endpoints = ready["socks"].clone();
        p
    }

    fn endpoint(&self, sock: &str) -> String {
        self.endpoints[sock].as_str().unwrap().to_string()
    }

    /// Wait (blocking, bounded) for the first event matching `pred`; other events are kept in `seen`.
    /// Blocks its thread: the tests run on a multi-thread runtime so our sockets' tasks keep going.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => seen.push(v),
                Err(_) => panic!("timed out waiting for {what}; peer said {seen:?}"),
            }
        }
    }

    fn send(&mut self, sock: &str, frames: &[Value]) {
        let cmd = serde_json::json!({"cmd": "send", "sock": sock, "frames": frames});
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a certificate helper of the peer script and parse its one line.
fn cert_helper(arg: &str, value: &str) -> Value {
    let out = Command::new(python())
        .arg(workspace().join("interop/libzmq/zmq_peer.py"))
        .arg(arg)
        .arg(value)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zmesh-curve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn next_event(inbox: &mut Inbox) -> InboxEvent {
    timeout(DEADLINE, inbox.recv())
        .await
        .expect("inbox event timed out")
        .expect("inbox closed")
}

fn big(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// zmesh outbox -> libzmq CURVE ROUTER, which echoes through a libzmq CURVE DEALER -> zmesh inbox.
/// Multipart and 1 MiB both ways; the inbox sees the libzmq client's key on Accepted and messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs interop/.venv (scripts/install-test-deps.sh)"]
async fn zmesh_and_libzmq_curve_both_directions() {
    let zmq_server = CurveKeyPair::generate();
    let zmq_client = CurveKeyPair::generate();
    let our_server = CurveKeyPair::generate();
    let our_client = CurveKeyPair::generate();
    let allow = AllowList::from_keys([zmq_client.public()]);
    let mut inbox = Inbox::bind(
        "tcp://127.0.0.1:*",
        InboxConfig {
            mechanism: MechanismConfig::Curve(
                CurveConfig::server(our_server.clone()).with_authenticator(allow),
            ),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let d_id = b"\x01libzmq-dealer";
    let mut peer = Peer::start(
        &[
            format!(
                "name=r,type=ROUTER,bind=tcp://127.0.0.1:*,mech=curve-server,curve_secret={}",
                secret_hex(&zmq_server)
            ),
            format!(
                "name=d,type=DEALER,connect={},identity={},mech=curve-client,curve_secret={},curve_serverkey={}",
                inbox.endpoint(),
                hex(d_id),
                secret_hex(&zmq_client),
                hex(our_server.public().as_bytes())
            ),
        ],
        &["r=d"],
    );
    match next_event(&mut inbox).await {
        InboxEvent::Accepted {
            identity,
            peer_key,
            socket_type,
            ..
        } => {
            assert_eq!(identity, &d_id[..]);
            assert_eq!(socket_type, "DEALER");
            assert_eq!(peer_key, Some(zmq_client.public()));
        }
        other => panic!("expected Accepted, got {other:?}"),
    }

    let out = Outbox::connect(
        &peer.endpoint("r"),
        Bytes::from_static(b"\x01zmesh-outbox"),
        OutboxConfig {
            mechanism: MechanismConfig::Curve(CurveConfig::client(
                our_client.clone(),
                zmq_server.public(),
            )),
            ..Default::default()
        },
    )
    .unwrap();
    let mib = Bytes::from(big(1 << 20, 5));
    let sent: Vec<Frames> = vec![
        frames![Bytes::from_static(b"hello")],
        vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from_static(b"ccc"),
        ]
        .into(),
        vec![Bytes::from_static(b"head"), mib.clone()].into(),
    ];
    for m in &sent {
        out.try_send(m.clone()).unwrap();
    }
    // libzmq's ROUTER got each message from our identity ...
    for m in &sent {
        let ev = peer.expect("recv on r", |e| e["event"] == "recv" && e["sock"] == "r");
        let got: Vec<Vec<u8>> = ev["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| unhex(f.as_str().unwrap()))
            .collect();
        assert_eq!(got[0], b"\x01zmesh-outbox");
        assert_eq!(got[1..].len(), m.len());
        for (g, w) in got[1..].iter().zip(m.iter()) {
            assert_eq!(&g[..], &w[..]);
        }
    }
    // ... and echoed it through its DEALER into our inbox, in order, with its key.
    for m in &sent {
        match next_event(&mut inbox).await {
            InboxEvent::Message { identity, frames } => {
                assert_eq!(identity, &d_id[..]);
                assert_eq!(&frames, m);
                assert_eq!(inbox.peer_key(&identity), Some(zmq_client.public()));
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
    // A 1 MiB multipart message that starts on the libzmq side.
    peer.send(
        "d",
        &[
            serde_json::json!({"len": 1 << 20, "byte": 7}),
            serde_json::json!("00"),
        ],
    );
    match next_event(&mut inbox).await {
        InboxEvent::Message { frames, .. } => {
            assert_eq!(frames.len(), 2);
            assert!(frames[0].len() == 1 << 20 && frames[0].iter().all(|&b| b == 7));
            assert_eq!(&frames[1][..], &[0]);
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

/// libzmq's ZAP handler with a certificate directory refuses a zmesh key it does not know, and
/// admits one whose public certificate zmesh wrote into that directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs interop/.venv (scripts/install-test-deps.sh)"]
async fn libzmq_zap_refuses_an_unknown_zmesh_key() {
    let dir = temp_dir("zap");
    let known = CurveKeyPair::generate();
    known.save_cert(dir.join("known.key")).unwrap();
    let zmq_server = CurveKeyPair::generate();
    let mut peer = Peer::start(
        &[format!(
            "name=r,type=ROUTER,bind=tcp://127.0.0.1:*,mech=curve-server,curve_secret={},zap_dir={}",
            secret_hex(&zmq_server),
            dir.display()
        )],
        &[],
    );
    let r_endpoint = peer.endpoint("r");
    let connect = |keys: &CurveKeyPair, id: &'static [u8]| {
        Outbox::connect(
            &r_endpoint,
            Bytes::from_static(id),
            OutboxConfig {
                mechanism: MechanismConfig::Curve(CurveConfig::client(
                    keys.clone(),
                    zmq_server.public(),
                )),
                reconnect_interval: Duration::from_millis(200),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let stranger = connect(&CurveKeyPair::generate(), b"\x01stranger");
    let mut st = stranger.state();
    let reason = timeout(
        DEADLINE,
        st.wait_for(|s| matches!(s, OutboxState::Disconnected { .. })),
    )
    .await
    .expect("stranger refused in time")
    .unwrap()
    .clone();
    let OutboxState::Disconnected { reason } = reason else {
        unreachable!()
    };
    assert!(
        reason.contains("400 (ZAP status: the server refused our key)"),
        "libzmq's ZAP refusal is reported as such: {reason}"
    );
    peer.expect("libzmq reports the failed authentication", |e| {
        e["event"] == "monitor" && e["type"] == "HANDSHAKE_FAILED_AUTH"
    });
    stranger
        .try_send(frames![Bytes::from_static(b"never")])
        .unwrap();

    let friend = connect(&known, b"\x01friend");
    friend
        .try_send(frames![Bytes::from_static(b"welcome")])
        .unwrap();
    let ev = peer.expect("recv from friend", |e| e["event"] == "recv");
    assert_eq!(
        ev["frames"][0],
        hex(b"\x01friend"),
        "only the known key gets through"
    );
    assert_eq!(ev["frames"][1], hex(b"welcome"));
    drop(stranger);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// zmesh's allow-list refuses a libzmq client whose key it does not know (counted), and keeps
/// serving: the same libzmq process's second DEALER, with a listed key, gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs interop/.venv (scripts/install-test-deps.sh)"]
async fn zmesh_refuses_an_unknown_libzmq_key() {
    let server = CurveKeyPair::generate();
    let listed = CurveKeyPair::generate();
    let cfg = CurveConfig::server(server.clone())
        .with_authenticator(AllowList::from_keys([listed.public()]));
    let stats = cfg.stats();
    let mut inbox = Inbox::bind(
        "tcp://127.0.0.1:*",
        InboxConfig {
            mechanism: MechanismConfig::Curve(cfg),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let spec = |name: &str, keys: &CurveKeyPair| {
        format!(
            "name={name},type=DEALER,connect={},identity={},mech=curve-client,curve_secret={},curve_serverkey={}",
            inbox.endpoint(),
            hex(name.as_bytes()),
            secret_hex(keys),
            hex(server.public().as_bytes())
        )
    };
    let stranger = CurveKeyPair::generate();
    let mut peer = Peer::start(&[spec("s", &stranger), spec("l", &listed)], &[]);
    // zmesh answers a refused key with ZAP's "400", so libzmq reports an authentication failure.
    peer.expect("HANDSHAKE_FAILED_AUTH on the refused DEALER", |e| {
        e["event"] == "monitor" && e["sock"] == "s" && e["type"] == "HANDSHAKE_FAILED_AUTH"
    });
    let mut refused = false;
    let mut accepted = false;
    while !(refused && accepted) {
        match next_event(&mut inbox).await {
            InboxEvent::HandshakeFailed { reason, .. } => {
                assert!(
                    format!("{reason}").contains("not in the allow-list"),
                    "{reason}"
                );
                refused = true;
            }
            InboxEvent::Accepted {
                identity, peer_key, ..
            } => {
                assert_eq!(identity, &b"l"[..], "only the listed key is accepted");
                assert_eq!(peer_key, Some(listed.public()));
                accepted = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(stats.refused() >= 1);
    peer.send("l", &[serde_json::json!(hex(b"hi"))]);
    loop {
        match next_event(&mut inbox).await {
            InboxEvent::Message { identity, frames } => {
                assert_eq!((&identity[..], &frames[0][..]), (&b"l"[..], &b"hi"[..]));
                break;
            }
            InboxEvent::HandshakeFailed { .. } => continue, // libzmq retries the stranger
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// `zmq.auth.create_certificates` output loads in zmesh, and certificates zmesh writes load in
/// pyzmq (`zmq.auth.load_certificate`) with the same keys.
#[test]
#[ignore = "needs interop/.venv (scripts/install-test-deps.sh)"]
fn certificates_load_both_ways() {
    let dir = temp_dir("certs");
    let made = cert_helper("--create-cert", &format!("{},alice", dir.display()));
    let kp = CurveKeyPair::load_cert(made["public_file"].as_str().unwrap()).unwrap();
    assert_eq!(kp.public().to_z85(), made["public"].as_str().unwrap());
    assert_eq!(kp.secret_z85().as_str(), made["secret"].as_str().unwrap());
    let public = Certificate::load(made["public_file"].as_str().unwrap()).unwrap();
    assert_eq!(public.public, kp.public());
    assert!(public.secret.is_none());
    assert_eq!(AllowList::from_dir(&dir).unwrap().len(), 1);

    let ours = CurveKeyPair::generate();
    let path = dir.join("bob.key");
    Certificate::new(ours.clone())
        .with_meta("name", "bob")
        .save(&path)
        .unwrap();
    let seen = cert_helper("--show-cert", path.to_str().unwrap());
    assert_eq!(seen["public"].as_str().unwrap(), ours.public().to_z85());
    assert!(seen["secret"].is_null());
    let seen = cert_helper("--show-cert", &format!("{}_secret", path.display()));
    assert_eq!(seen["public"].as_str().unwrap(), ours.public().to_z85());
    assert_eq!(seen["secret"].as_str().unwrap(), ours.secret_z85().as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}
