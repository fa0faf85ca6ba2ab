//! Conformance of zmesh-zmtp against real libzmq (pyzmq's bundled libzmq 4.3.x).
//!
//! Every test starts `interop/libzmq/zmq_peer.py` under `<workspace>/interop/.venv/bin/python` (created
//! by `scripts/install-test-deps.sh`), declares the libzmq sockets it needs on the command line, and then
//! talks to it: JSON commands on its stdin ("send these frames on socket d"), JSON events on its stdout
//! ("socket r received these frames", monitor events such as HANDSHAKE_SUCCEEDED / DISCONNECTED).
//! Everything runs on 127.0.0.1. Waits are always "until this event or a deadline"; the only fixed-length
//! waits are the heartbeat windows, whose whole point is that *nothing* bad happens during them, and even
//! there the test watches every event source and fails on the first disconnect.
//!
//! The tests are `#[ignore]`d because they need the venv; `scripts/test.sh` runs them with
//! `--include-ignored`. By hand: `cargo test -p zmesh-zmtp --test libzmq_conformance -- --include-ignored`.
//!
//! What is covered:
//! * zmesh Outbox -> libzmq ROUTER: the 17-byte identity, multipart (incl. empty frames), 1 MiB frames;
//! * libzmq DEALER -> zmesh Inbox: identity (explicit and generated), multipart, 1 MiB frames;
//! * the Harmony reply path: zmesh Outbox -> libzmq ROUTER, which answers through a libzmq DEALER
//!   connected to the zmesh Inbox;
//! * libzmq restarts on the same port: messages queued in our Outbox while it is down are delivered;
//! * ZMTP 3.1 heartbeats (PING/PONG) initiated by libzmq, and by zmesh, on idle links in both directions;
//! * refusal of incompatible socket types (PUB, REP) and mechanisms (PLAIN, CURVE) in both directions,
//!   with the inbox still serving a good peer afterwards.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use zmesh_zmtp::{
    HandshakeError, Heartbeat, Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig, OutboxState,
};

/// Generous deadline for anything that should happen "soon" (process start-up included).
const DEADLINE: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------------
// A minimal JSON reader (the zmtp crate has no serde dependency; the peer's output is simple).

mod json {
    /// A parsed JSON value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Json {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl Json {
        /// Member of an object.
        pub fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        /// The string value of member `key`, or "".
        pub fn str(&self, key: &str) -> &str {
            match self.get(key) {
                Some(Json::Str(s)) => s,
                _ => "",
            }
        }
        /// Elements of an array member.
        pub fn arr(&self, key: &str) -> &[Json] {
            match self.get(key) {
                Some(Json::Arr(a)) => a,
                _ => &[],
            }
        }
        /// This value as a string.
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Json::Str(s) => Some(s),
                _ => None,
            }
        }
    }

    /// Parse one JSON document.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.s.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }
        fn value(&mut self) -> Result<Json, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Json::Obj(members));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        members.push((k, self.value()?));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Json::Obj(members));
                            }
                            _ => return Err(format!("bad object at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Json::Arr(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Json::Arr(items));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Json::Str(self.string()?)),
                Some(b't') if self.s[self.i..].starts_with(b"true") => {
                    self.i += 4;
                    Ok(Json::Bool(true))
                }
                Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                    self.i += 5;
                    Ok(Json::Bool(false))
                }
                Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                    self.i += 4;
                    Ok(Json::Null)
                }
                Some(_) => {
                    let start = self.i;
                    while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map(Json::Num)
                        .ok_or_else(|| format!("bad value at {start}"))
                }
                None => Err("unexpected end".into()),
            }
        }
        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = String::new();
            loop {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                    self.i += 1;
                }
                out.push_str(
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?,
                );
                match self.s.get(self.i) {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        let c = *self.s.get(self.i + 1).ok_or("bad escape")?;
                        self.i += 2;
                        match c {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).ok_or("bad \\u")?;
                                let code = u32::from_str_radix(
                                    std::str::from_utf8(hex).map_err(|e| e.to_string())?,
                                    16,
                                )
                                .map_err(|e| e.to_string())?;
                                self.i += 4;
                                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            }
                            other => out.push(other as char),
                        }
                    }
                    _ => return Err("unterminated string".into()),
                }
            }
        }
    }
}

use json::Json;

// ------------------------------------------------------------------------------------------------
// Harness: one running libzmq peer process.

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A ZRE-style identity: 0x01 followed by 16 bytes.
fn zre_identity(tag: u8) -> Bytes {
    let mut id = vec![0x01];
    id.extend((0..16u8).map(|i| tag ^ (i * 17)));
    Bytes::from(id)
}

/// A 1 MiB frame with a position-dependent pattern (so truncation or reordering shows).
fn big_frame(seed: u8) -> Bytes {
    Bytes::from(
        (0..(1usize << 20))
            .map(|i| (i as u8).wrapping_mul(7) ^ seed ^ (i >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A running `zmq_peer.py`.
struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Json>,
    /// Every event read so far (for failure messages and "did X ever happen" checks).
    history: Vec<Json>,
    /// Socket name -> endpoint (bound endpoints resolved).
    endpoints: HashMap<String, String>,
}

impl PyPeer {
    /// Start a peer with these `--sock` specs and `--echo` pairs; wait until it is ready.
    async fn start(socks: &[String], echo: &[&str]) -> PyPeer {
        let python = workspace().join("interop/.venv/bin/python");
        assert!(
            python.exists(),
            "{} missing: run scripts/install-test-deps.sh (or python3 -m venv interop/.venv && \
             interop/.venv/bin/pip install pyzmq)",
            python.display()
        );
        let mut cmd = Command::new(python);
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
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start zmq_peer.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ev = json::parse(&line)
                    .unwrap_or_else(|e| panic!("peer printed non-JSON ({e}): {line:.200}"));
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        let mut peer = PyPeer {
            child,
            stdin,
            events,
            history: Vec::new(),
            endpoints: HashMap::new(),
        };
        let ready = peer.expect("ready", |e| e.str("event") == "ready").await;
        if let Some(Json::Obj(m)) = ready.get("socks") {
            for (k, v) in m {
                peer.endpoints
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        peer
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn endpoint(&self, sock: &str) -> String {
        self.endpoints[sock].clone()
    }

    /// Ask the peer to send a multipart message on socket `sock`.
    fn send(&mut self, sock: &str, frames: &[&[u8]]) {
        let frames: Vec<String> = frames.iter().map(|f| format!("\"{}\"", hex(f))).collect();
        let line = format!(
            "{{\"cmd\": \"send\", \"sock\": \"{sock}\", \"frames\": [{}]}}\n",
            frames.join(", ")
        );
        self.stdin
            .write_all(line.as_bytes())
            .expect("write to peer");
        self.stdin.flush().unwrap();
    }

    /// Next event within `wait`, or None.
    async fn next_within(&mut self, wait: Duration) -> Option<Json> {
        match timeout(wait, self.events.recv()).await {
            Ok(Some(ev)) => {
                self.history.push(ev.clone());
                Some(ev)
            }
            Ok(None) => {
                // The process ended; do not spin.
                tokio::time::sleep(wait).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Wait (up to DEADLINE) for the first event matching `pred`.
    async fn expect(&mut self, what: &str, mut pred: impl FnMut(&Json) -> bool) -> Json {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => {}
                None => panic!(
                    "libzmq peer: timed out waiting for {what}; events so far:\n{}",
                    self.history_text()
                ),
            }
        }
    }

    /// Like `expect`, but also satisfied by an event already seen (order-independent waits).
    async fn expect_seen(&mut self, what: &str, mut pred: impl FnMut(&Json) -> bool) -> Json {
        if let Some(ev) = self.history.iter().find(|e| pred(e)) {
            return ev.clone();
        }
        self.expect(what, pred).await
    }

    /// Wait for a message on `sock` and return its frames.
    async fn expect_recv(&mut self, sock: &str) -> Vec<Vec<u8>> {
        let ev = self
            .expect(&format!("a message on {sock}"), |e| {
                e.str("event") == "recv" && e.str("sock") == sock
            })
            .await;
        ev.arr("frames")
            .iter()
            .map(|f| unhex(f.as_str().unwrap()))
            .collect()
    }

    /// Monitor events seen so far on `sock` of this type.
    fn monitor_count(&self, sock: &str, kind: &str) -> usize {
        self.history
            .iter()
            .filter(|e| {
                e.str("event") == "monitor" && e.str("sock") == sock && e.str("type") == kind
            })
            .count()
    }

    fn history_text(&self) -> String {
        self.history
            .iter()
            .map(|e| {
                let s = format!("{e:?}");
                if s.len() > 300 {
                    format!("  {}...", &s[..300])
                } else {
                    format!("  {s}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kill the process (SIGKILL to its pid) and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------------
// zmesh-side helpers.

async fn bind_inbox(config: InboxConfig) -> Inbox {
    Inbox::bind("tcp://127.0.0.1:*", config)
        .await
        .expect("bind inbox")
}

/// Wait for the first inbox event matching `pred`, collecting the others into `seen`.
async fn inbox_expect(
    inbox: &mut Inbox,
    what: &str,
    seen: &mut Vec<String>,
    mut pred: impl FnMut(&InboxEvent) -> bool,
) -> InboxEvent {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match timeout(left, inbox.recv()).await {
            Ok(Some(ev)) => {
                if pred(&ev) {
                    return ev;
                }
                seen.push(describe(&ev));
            }
            Ok(None) => panic!("inbox closed while waiting for {what}; seen: {seen:#?}"),
            Err(_) => panic!("timed out waiting for {what} on the inbox; seen: {seen:#?}"),
        }
    }
}

/// Wait for the next `Message` on the inbox.
async fn inbox_message(inbox: &mut Inbox, seen: &mut Vec<String>) -> (Bytes, Vec<Bytes>) {
    match inbox_expect(inbox, "a message", seen, |e| {
        matches!(e, InboxEvent::Message { .. })
    })
    .await
    {
        InboxEvent::Message { identity, frames } => (identity.into(), frames.into_vec()),
        _ => unreachable!(),
    }
}

fn describe(ev: &InboxEvent) -> String {
    match ev {
        InboxEvent::Message { identity, frames } => format!(
            "Message from {} ({} frames, {} bytes)",
            hex(identity),
            frames.len(),
            frames.iter().map(|f| f.len()).sum::<usize>()
        ),
        InboxEvent::Accepted {
            peer,
            identity,
            socket_type,
            ..
        } => format!("Accepted {peer} id {} type {socket_type}", hex(identity)),
        InboxEvent::HandshakeFailed { peer, reason } => {
            format!("HandshakeFailed {peer}: {reason:?}")
        }
        InboxEvent::Disconnected {
            peer,
            identity,
            reason,
        } => format!("Disconnected {peer} id {}: {reason}", hex(identity)),
    }
}

/// Wait until the outbox state satisfies `pred`.
async fn outbox_state(
    outbox: &Outbox,
    what: &str,
    mut pred: impl FnMut(&OutboxState) -> bool,
) -> OutboxState {
    let mut rx = outbox.state();
    let res = timeout(DEADLINE, async {
        loop {
            {
                let s = rx.borrow_and_update();
                if pred(&s) {
                    return s.clone();
                }
            }
            if rx.changed().await.is_err() {
                panic!("outbox state channel closed while waiting for {what}");
            }
        }
    })
    .await;
    match res {
        Ok(s) => s,
        Err(_) => panic!(
            "timed out waiting for outbox state {what}; last state {:?}",
            *outbox.state().borrow()
        ),
    }
}

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn router_spec(extra: &str) -> String {
    format!("name=r,type=ROUTER,bind=tcp://127.0.0.1:*{extra}")
}

fn dealer_spec(connect: &str, identity: Option<&[u8]>, extra: &str) -> String {
    let id = identity
        .map(|i| format!(",identity={}", hex(i)))
        .unwrap_or_default();
    format!("name=d,type=DEALER,connect={connect}{id}{extra}")
}

// ------------------------------------------------------------------------------------------------
// Tests.

/// zmesh Outbox -> libzmq ROUTER: the ROUTER sees our 17-byte identity as the routing frame; multipart
/// messages (with an empty frame) and 1 MiB frames arrive intact and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn outbox_to_libzmq_router_identity_multipart_large() {
    let mut py = PyPeer::start(&[router_spec("")], &[]).await;
    let id = zre_identity(0x21);
    assert_eq!(id.len(), 17);
    let outbox = Outbox::connect(&py.endpoint("r"), id.clone(), OutboxConfig::default()).unwrap();

    let big = big_frame(3);
    let messages: Vec<Vec<Bytes>> = vec![
        frames(&[b"hello"]),
        frames(&[b"part one", b"", b"part three"]),
        vec![big.clone()],
        vec![
            Bytes::from_static(b"head"),
            big.clone(),
            Bytes::from_static(b"tail"),
        ],
        frames(&[b"last"]),
    ];
    for m in &messages {
        outbox.send(m.clone()).await.expect("send");
    }
    for m in &messages {
        let got = py.expect_recv("r").await;
        assert_eq!(
            got[0],
            id.to_vec(),
            "ROUTER must see our identity as routing id"
        );
        assert_eq!(got.len(), m.len() + 1, "frame count");
        for (g, w) in got[1..].iter().zip(m) {
            assert_eq!(g.len(), w.len());
            assert!(g[..] == w[..], "frame content differs");
        }
    }
    assert!(outbox.is_connected());
    assert_eq!(
        py.monitor_count("r", "HANDSHAKE_SUCCEEDED"),
        1,
        "{}",
        py.history_text()
    );
    outbox.close(Some(Duration::from_secs(1))).await;
}

/// libzmq DEALER -> zmesh Inbox: identity from the DEALER's ZMQ_ROUTING_ID, socket type, multipart,
/// 1 MiB frames; a DEALER without an identity gets a generated one (0x00 + u32, like libzmq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn libzmq_dealer_to_inbox_identity_multipart_large() {
    let mut inbox = bind_inbox(InboxConfig::default()).await;
    let ep = inbox.endpoint().to_string();
    let id = zre_identity(0x42);
    let mut py = PyPeer::start(&[dealer_spec(&ep, Some(&id), "")], &[]).await;
    let mut seen = Vec::new();

    let ev = inbox_expect(&mut inbox, "Accepted", &mut seen, |e| {
        matches!(e, InboxEvent::Accepted { .. })
    })
    .await;
    let InboxEvent::Accepted {
        identity,
        socket_type,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(identity, id);
    assert_eq!(socket_type, "DEALER");

    let big = big_frame(9);
    py.send("d", &[b"hello"]);
    py.send("d", &[b"a", b"", b"c"]);
    py.send("d", &[&big]);
    py.send("d", &[b"x", &big, b"y"]);
    let expected: Vec<Vec<&[u8]>> = vec![
        vec![b"hello"],
        vec![b"a", b"", b"c"],
        vec![&big],
        vec![b"x", &big, b"y"],
    ];
    for want in expected {
        let (identity, got) = inbox_message(&mut inbox, &mut seen).await;
        assert_eq!(identity, id);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g[..] == w[..],
                "frame content differs ({} vs {} bytes)",
                g.len(),
                w.len()
            );
        }
    }

    // A second DEALER without a routing id: the inbox generates one.
    let mut anon = PyPeer::start(&[dealer_spec(&ep, None, "")], &[]).await;
    anon.send("d", &[b"anonymous"]);
    let (gen_id, got) = inbox_message(&mut inbox, &mut seen).await;
    assert_eq!(got, frames(&[b"anonymous"]));
    assert_eq!(
        gen_id.len(),
        5,
        "generated identity is 0x00 + u32: {}",
        hex(&gen_id)
    );
    assert_eq!(gen_id[0], 0);
    // And the first peer still works.
    py.send("d", &[b"still here"]);
    let (identity, got) = inbox_message(&mut inbox, &mut seen).await;
    assert_eq!((identity, got), (id, frames(&[b"still here"])));
}

/// The Harmony reply path: zmesh Outbox -> libzmq ROUTER; libzmq answers through its DEALER connected to
/// the zmesh Inbox, and the replies arrive with the DEALER's identity, multipart and 1 MiB intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn harmony_replies_routed_back_to_inbox() {
    let mut inbox = bind_inbox(InboxConfig::default()).await;
    let their_id = zre_identity(0x77);
    let py = PyPeer::start(
        &[
            router_spec(""),
            dealer_spec(&inbox.endpoint().to_string(), Some(&their_id), ""),
        ],
        &["r=d"],
    )
    .await;
    let our_id = zre_identity(0x11);
    let outbox =
        Outbox::connect(&py.endpoint("r"), our_id.clone(), OutboxConfig::default()).unwrap();
    let mut seen = Vec::new();

    let big = big_frame(1);
    let messages: Vec<Vec<Bytes>> = (0..50u32)
        .map(|i| {
            vec![
                Bytes::from(format!("ping {i}")),
                Bytes::from(i.to_be_bytes().to_vec()),
            ]
        })
        .chain([
            vec![big.clone()],
            vec![Bytes::new(), big.clone(), Bytes::new()],
        ])
        .collect();
    for m in &messages {
        outbox.send(m.clone()).await.expect("send");
    }
    for m in &messages {
        let (identity, got) = inbox_message(&mut inbox, &mut seen).await;
        assert_eq!(
            identity, their_id,
            "reply must come from libzmq's DEALER identity"
        );
        assert_eq!(&got, m, "echoed message differs");
    }
    // The ROUTER saw our identity on every message.
    for ev in py.history.iter().filter(|e| e.str("event") == "recv") {
        assert_eq!(ev.arr("frames")[0].as_str().unwrap(), hex(&our_id));
    }
    outbox.close(Some(Duration::from_secs(1))).await;
}

/// libzmq is killed (by pid) and restarted on the same port: messages sent to our Outbox while it is
/// down are queued and delivered after the reconnect, in order; delivery keeps working afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn outbox_delivers_queued_messages_after_libzmq_restart() {
    let mut py = PyPeer::start(&[router_spec("")], &[]).await;
    let ep = py.endpoint("r");
    let id = zre_identity(0x05);
    let config = OutboxConfig {
        reconnect_interval: Duration::from_millis(50),
        reconnect_interval_max: Duration::from_millis(200),
        ..OutboxConfig::default()
    };
    let outbox = Outbox::connect(&ep, id.clone(), config).unwrap();

    for i in 0..20u32 {
        outbox
            .send(vec![Bytes::from(format!("before {i}"))])
            .await
            .unwrap();
    }
    for i in 0..20u32 {
        let got = py.expect_recv("r").await;
        assert_eq!(got, vec![id.to_vec(), format!("before {i}").into_bytes()]);
    }

    let old_pid = py.pid();
    py.kill();
    outbox_state(&outbox, "Disconnected after the peer died", |s| {
        matches!(
            s,
            OutboxState::Disconnected { .. } | OutboxState::Connecting
        )
    })
    .await;
    assert!(!outbox.is_connected());

    for i in 0..100u32 {
        outbox
            .try_send(vec![Bytes::from(format!("while down {i}"))])
            .expect("queue has room while disconnected");
    }
    assert_eq!(
        outbox.queued().0,
        100,
        "messages are queued while the peer is down"
    );

    let port_spec = format!("name=r,type=ROUTER,bind={ep}");
    let mut py = PyPeer::start(&[port_spec], &[]).await;
    assert_ne!(py.pid(), old_pid);
    for i in 0..100u32 {
        let got = py.expect_recv("r").await;
        assert_eq!(
            got,
            vec![id.to_vec(), format!("while down {i}").into_bytes()],
            "queued message {i} after restart"
        );
    }
    outbox
        .send(vec![Bytes::from_static(b"after")])
        .await
        .unwrap();
    assert_eq!(
        py.expect_recv("r").await,
        vec![id.to_vec(), b"after".to_vec()]
    );
    assert!(outbox.is_connected());
    assert_eq!(outbox.queued().0, 0);
    outbox.close(Some(Duration::from_secs(1))).await;
}

/// Idle window for heartbeat tests: 15 intervals of 100 ms.
const HB_WINDOW: Duration = Duration::from_millis(1500);

/// Watch every event source for `HB_WINDOW` and fail on the first sign of a dropped link.
async fn watch_link_stays_up(inbox: &mut Inbox, outbox: &Outbox, py: &mut PyPeer) {
    let mut state = outbox.state();
    state.borrow_and_update();
    let end = Instant::now() + HB_WINDOW;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            ev = inbox.recv() => {
                let ev = ev.expect("inbox closed");
                panic!("inbox event during idle heartbeat window: {}", describe(&ev));
            }
            changed = state.changed() => {
                changed.expect("outbox state channel closed");
                let s = state.borrow_and_update().clone();
                assert!(matches!(s, OutboxState::Connected), "outbox left Connected: {s:?}");
            }
            ev = py.next_within(left) => {
                if let Some(ev) = ev {
                    assert!(
                        !(ev.str("event") == "monitor"
                            && matches!(ev.str("type"), "DISCONNECTED" | "CLOSED" | "ACCEPTED" | "CONNECTED")),
                        "libzmq saw the link drop or reconnect during the idle window: {ev:?}\n{}",
                        py.history_text()
                    );
                }
            }
        }
    }
}

/// Harmony pair with libzmq, used by the heartbeat tests. Returns after one message each way.
async fn heartbeat_pair(
    py_hb: &str,
    ours: Option<Heartbeat>,
) -> (Inbox, Outbox, PyPeer, Bytes, Bytes) {
    let mut inbox = bind_inbox(InboxConfig {
        heartbeat: ours,
        ..InboxConfig::default()
    })
    .await;
    let their_id = zre_identity(0x99);
    let mut py = PyPeer::start(
        &[
            router_spec(py_hb),
            dealer_spec(&inbox.endpoint().to_string(), Some(&their_id), py_hb),
        ],
        &["r=d"],
    )
    .await;
    let our_id = zre_identity(0x33);
    let outbox = Outbox::connect(
        &py.endpoint("r"),
        our_id.clone(),
        OutboxConfig {
            heartbeat: ours,
            ..OutboxConfig::default()
        },
    )
    .unwrap();
    let mut seen = Vec::new();
    outbox.send(frames(&[b"warm-up"])).await.unwrap();
    let (identity, got) = inbox_message(&mut inbox, &mut seen).await;
    assert_eq!((identity, got), (their_id.clone(), frames(&[b"warm-up"])));
    // Drain the Accepted event (and fail on anything else) so the idle window starts clean.
    assert!(
        seen.iter().all(|s| s.starts_with("Accepted")),
        "unexpected inbox events: {seen:?}"
    );
    py.expect_seen("libzmq ROUTER handshake", |e| {
        e.str("sock") == "r" && e.str("type") == "HANDSHAKE_SUCCEEDED"
    })
    .await;
    py.expect_seen("libzmq DEALER handshake", |e| {
        e.str("sock") == "d" && e.str("type") == "HANDSHAKE_SUCCEEDED"
    })
    .await;
    (inbox, outbox, py, our_id, their_id)
}

/// After the idle window, traffic still flows both ways on the same connections.
async fn heartbeat_traffic_after(
    inbox: &mut Inbox,
    outbox: &Outbox,
    py: &mut PyPeer,
    their_id: &Bytes,
) {
    let mut seen = Vec::new();
    for i in 0..10u32 {
        outbox
            .send(vec![Bytes::from(format!("after idle {i}"))])
            .await
            .unwrap();
    }
    for i in 0..10u32 {
        let (identity, got) = inbox_message(inbox, &mut seen).await;
        assert_eq!(identity, *their_id);
        assert_eq!(got, vec![Bytes::from(format!("after idle {i}"))]);
    }
    assert!(seen.is_empty(), "unexpected inbox events: {seen:?}");
    assert_eq!(
        py.monitor_count("r", "HANDSHAKE_SUCCEEDED"),
        1,
        "{}",
        py.history_text()
    );
    assert_eq!(
        py.monitor_count("d", "HANDSHAKE_SUCCEEDED"),
        1,
        "{}",
        py.history_text()
    );
    assert_eq!(py.monitor_count("r", "DISCONNECTED"), 0);
    assert_eq!(py.monitor_count("d", "DISCONNECTED"), 0);
}

/// libzmq heartbeats (ZMQ_HEARTBEAT_IVL 100 ms, TTL 1 s, TIMEOUT 300 ms) on both its ROUTER (pinging our
/// Outbox) and its DEALER (pinging our Inbox); zmesh sends no PINGs of its own, so on the idle link only
/// our PONGs keep libzmq from timing the connections out. They must survive 15 intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn libzmq_heartbeats_are_answered_both_directions() {
    let hb = ",hb_ivl=100,hb_ttl=1000,hb_timeout=300";
    let (mut inbox, outbox, mut py, _our, their) = heartbeat_pair(hb, None).await;
    watch_link_stays_up(&mut inbox, &outbox, &mut py).await;
    heartbeat_traffic_after(&mut inbox, &outbox, &mut py, &their).await;
    outbox.close(Some(Duration::from_secs(1))).await;
}

/// zmesh heartbeats (interval 100 ms, timeout 300 ms) on both its Inbox connection and its Outbox towards
/// libzmq peers with heartbeats on as well; on the idle link only libzmq's PONGs keep our side from
/// timing out. Both sides ping; the links must survive 15 intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn zmesh_heartbeats_are_answered_by_libzmq() {
    let ours = Heartbeat {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        ttl: Duration::from_secs(1),
    };
    // First with libzmq not pinging (only our PINGs, its PONGs), then with both sides pinging.
    for py_hb in ["", ",hb_ivl=100,hb_ttl=1000,hb_timeout=300"] {
        let (mut inbox, outbox, mut py, _our, their) = heartbeat_pair(py_hb, Some(ours)).await;
        watch_link_stays_up(&mut inbox, &outbox, &mut py).await;
        heartbeat_traffic_after(&mut inbox, &outbox, &mut py, &their).await;
        outbox.close(Some(Duration::from_secs(1))).await;
    }
}

/// After a refused peer, the inbox still accepts and serves a good libzmq DEALER.
async fn inbox_still_serves(inbox: &mut Inbox, seen: &mut Vec<String>) {
    let id = zre_identity(0xee);
    let mut good = PyPeer::start(
        &[dealer_spec(&inbox.endpoint().to_string(), Some(&id), "")],
        &[],
    )
    .await;
    good.send("d", &[b"good peer"]);
    let (identity, got) = inbox_message(inbox, seen).await;
    assert_eq!((identity, got), (id, frames(&[b"good peer"])));
}

/// libzmq sockets of a type a ROUTER cannot talk to (PUB, REP) connecting to our Inbox are refused with
/// `IncompatibleSocketType`; no message from them is delivered; the inbox keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn inbox_refuses_incompatible_libzmq_socket_types() {
    let mut inbox = bind_inbox(InboxConfig::default()).await;
    let ep = inbox.endpoint().to_string();
    let mut seen = Vec::new();
    for ty in ["PUB", "REP"] {
        let mut bad = PyPeer::start(&[format!("name=x,type={ty},connect={ep}")], &[]).await;
        if ty == "PUB" {
            bad.send("x", &[b"should never arrive"]);
        }
        let ev = inbox_expect(
            &mut inbox,
            &format!("HandshakeFailed for {ty}"),
            &mut seen,
            |e| matches!(e, InboxEvent::HandshakeFailed { .. }),
        )
        .await;
        let InboxEvent::HandshakeFailed { reason, .. } = ev else {
            unreachable!()
        };
        match &reason {
            HandshakeError::IncompatibleSocketType { ours, theirs } => {
                assert_eq!(ours, "ROUTER");
                assert_eq!(theirs, ty);
            }
            other => panic!("{ty}: expected IncompatibleSocketType, got {other:?}"),
        }
        bad.kill();
        assert!(
            !seen
                .iter()
                .any(|s| s.starts_with("Message") || s.starts_with("Accepted")),
            "{ty} must never be accepted: {seen:?}"
        );
    }
    inbox_still_serves(&mut inbox, &mut seen).await;
}

/// libzmq peers using another security mechanism (PLAIN client, CURVE client) are refused by our NULL
/// Inbox: a `HandshakeFailed` event, never `Accepted` or a message, and the inbox keeps serving others.
/// The reason must be `MechanismMismatch { ours: "NULL", theirs }`.
///
/// Note: libzmq sends its greeting in parts (10-byte signature; then the major version once it has our
/// signature; then the rest once it has our major version) and, if it receives our whole 64-byte
/// greeting in one read, detects the mismatch and closes *before* flushing its own mechanism name. A
/// peer that sends all 64 bytes at once therefore only ever sees the 10-byte signature and then EOF.
/// To report the mismatch, the transport must send its greeting staged like libzmq (signature + major
/// version, wait for the peer's first 11 bytes, then the rest): then libzmq sends its full greeting
/// before it closes (verified with a raw socket against pyzmq 26.2 / libzmq 4.3.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn inbox_refuses_other_mechanisms() {
    let mut inbox = bind_inbox(InboxConfig::default()).await;
    let ep = inbox.endpoint().to_string();
    let mut seen = Vec::new();
    let mut reasons = Vec::new();
    for (mech, name) in [("plain-client", "PLAIN"), ("curve-client", "CURVE")] {
        let bad = PyPeer::start(
            &[dealer_spec(
                &ep,
                Some(&zre_identity(1)),
                &format!(",mech={mech}"),
            )],
            &[],
        )
        .await;
        let ev = inbox_expect(
            &mut inbox,
            &format!("HandshakeFailed for {mech}"),
            &mut seen,
            |e| matches!(e, InboxEvent::HandshakeFailed { .. }),
        )
        .await;
        let InboxEvent::HandshakeFailed { reason, .. } = ev else {
            unreachable!()
        };
        reasons.push((mech, name, reason));
        drop(bad);
        assert!(
            !seen
                .iter()
                .any(|s| s.starts_with("Message") || s.starts_with("Accepted")),
            "{mech} must never be accepted: {seen:?}"
        );
    }
    inbox_still_serves(&mut inbox, &mut seen).await;
    for (mech, name, reason) in reasons {
        match &reason {
            HandshakeError::MechanismMismatch { ours, theirs } => {
                assert_eq!(ours, "NULL");
                assert_eq!(theirs, name);
            }
            other => panic!(
                "{mech}: refused, but the reason should be MechanismMismatch {{ ours: NULL, theirs: \
                 {name} }}, got {other:?} (see the note on this test: send the greeting staged)"
            ),
        }
    }
}

/// Our Outbox (DEALER, NULL) connecting to a libzmq PUB, to a PLAIN-server ROUTER and to a CURVE-server
/// ROUTER never becomes Connected, keeps its message queued (never delivered), libzmq never completes a
/// handshake with it, and its Disconnected state says why ("incompatible socket type" / "mechanism";
/// see the note on `inbox_refuses_other_mechanisms` for the latter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pyzmq: run scripts/test.sh"]
async fn outbox_refuses_incompatible_libzmq_servers() {
    let cases = [
        (
            "name=x,type=PUB,bind=tcp://127.0.0.1:*",
            "incompatible socket type",
        ),
        (
            "name=x,type=ROUTER,bind=tcp://127.0.0.1:*,mech=plain-server",
            "mechanism",
        ),
        (
            "name=x,type=ROUTER,bind=tcp://127.0.0.1:*,mech=curve-server",
            "mechanism",
        ),
    ];
    let mut wrong_reasons = Vec::new();
    for (spec, want) in cases {
        let mut py = PyPeer::start(&[spec.to_string()], &[]).await;
        let outbox = Outbox::connect(
            &py.endpoint("x"),
            zre_identity(2),
            OutboxConfig {
                reconnect_interval: Duration::from_millis(50),
                reconnect_interval_max: Duration::from_millis(200),
                ..OutboxConfig::default()
            },
        )
        .unwrap();
        outbox.try_send(frames(&[b"never delivered"])).unwrap();
        // Attempts repeat; watch them for a while, recording every reason. Stop early at the first
        // attempt that failed for the expected reason.
        let mut rx = outbox.state();
        let mut reasons: Vec<String> = Vec::new();
        let mut saw_connected = false;
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            let s = rx.borrow_and_update().clone();
            match &s {
                OutboxState::Connected => saw_connected = true,
                OutboxState::Disconnected { reason } if reasons.last() != Some(reason) => {
                    reasons.push(reason.clone());
                }
                _ => {}
            }
            if reasons.iter().any(|r| r.to_lowercase().contains(want)) {
                break;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || timeout(left, rx.changed()).await.is_err() {
                break;
            }
        }
        assert!(!saw_connected, "{spec}: outbox must not report Connected");
        assert!(
            !reasons.is_empty(),
            "{spec}: outbox never reported a failed attempt"
        );
        assert!(!outbox.is_connected());
        assert_eq!(
            outbox.queued().0,
            1,
            "the message stays queued, not lost or delivered"
        );
        py.expect_seen("libzmq to see the failed handshake", |e| {
            e.str("event") == "monitor"
                && (e.str("type").starts_with("HANDSHAKE_FAILED")
                    || e.str("type") == "DISCONNECTED")
        })
        .await;
        assert_eq!(
            py.monitor_count("x", "HANDSHAKE_SUCCEEDED"),
            0,
            "{}",
            py.history_text()
        );
        assert!(!py.history.iter().any(|e| e.str("event") == "recv"));
        if !reasons.iter().any(|r| r.to_lowercase().contains(want)) {
            wrong_reasons.push(format!("{spec}: wanted {want:?}, got {reasons:?}"));
        }
        drop(outbox);
    }
    assert!(
        wrong_reasons.is_empty(),
        "refused, but without the right reason:\n{}",
        wrong_reasons.join("\n")
    );
}
