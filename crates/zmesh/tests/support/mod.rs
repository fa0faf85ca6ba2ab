//! Test support: drive real ZRE nodes (pyre-gevent, zyre.js, the `zmesh` CLI)
//! inside the interop network namespaces.
//!
//! Integration tests include this with `mod support;`. Every node is an
//! *agent* process speaking the JSON-lines protocol of `interop/README.md`:
//! commands go to its stdin, events come back on its stdout, one JSON object per
//! line. An [`Agent`] owns such a process, started as
//! `ip netns exec <ns> <argv>` so all of its traffic stays on the private
//! 10.77.0.0/24 bridge created by `interop/netns.sh up`.
//!
//! Design:
//!
//! * A reader thread parses stdout lines and pushes them into a channel; the
//!   test thread pulls from it in [`Agent::wait_for`]. Events that do not match
//!   the current predicate are kept in a buffer, so a later wait still sees them
//!   (tests can wait for events in any order without losing any).
//! * The agent's stderr goes to a log file under `target/interop-logs/`; its
//!   tail is included in every timeout error, which is usually enough to see
//!   why a peer misbehaved.
//! * Dropping an `Agent` SIGKILLs its process (our own child, by pid), so a
//!   failing test never leaves nodes behind.
//!
//! Tests that need the namespaces are `#[ignore = "needs root + interop peers:
//! run scripts/test.sh"]` and start with [`require_netns`]; `scripts/test.sh`
//! sets everything up and runs them with `--include-ignored`.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub mod zre_interop;

/// Namespaces created by `interop/netns.sh up`: hosts h1..h4 (10.77.0.11..14).
pub const HOST_NAMESPACES: [&str; 4] = ["zmesh-h1", "zmesh-h2", "zmesh-h3", "zmesh-h4"];

/// Default time to wait for an agent's READY (pyre's Python start-up is ~1-2 s).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which ZRE implementation an agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// pyre-gevent 1.0.0 (`interop/pyre_agent.py` in `interop/.venv`).
    Pyre,
    /// zyre.js 1.3.0 (`interop/zyrejs_agent.js`). Single-frame content only.
    ZyreJs,
    /// Our own `zmesh` CLI in `agent` mode.
    Zmesh,
}

impl AgentKind {
    /// Short lower-case label used in log file names and error messages.
    pub fn label(self) -> &'static str {
        match self {
            AgentKind::Pyre => "pyre",
            AgentKind::ZyreJs => "zyrejs",
            AgentKind::Zmesh => "zmesh",
        }
    }
}

/// What an agent reports in its READY event.
#[derive(Clone, Debug)]
pub struct Ready {
    /// The node's UUID, 32 upper-case hex digits.
    pub uuid: String,
    /// The node's name.
    pub name: String,
    /// The node's ROUTER endpoint, e.g. `tcp://10.77.0.11:49152`.
    pub endpoint: String,
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .expect("crates/zmesh has a workspace two levels up")
        .to_path_buf()
}

/// Path of the `zmesh` binary: `$ZMESH_BIN`, else `$CARGO_TARGET_DIR/debug/zmesh` (the target
/// directory this very test build uses, so never a stale binary from another one), else
/// `<workspace>/target/debug/zmesh`.
pub fn zmesh_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ZMESH_BIN") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = Path::new(&dir).join("debug/zmesh");
        if p.exists() {
            return p;
        }
    }
    let default = workspace_root().join("target/debug/zmesh");
    if default.exists() {
        return default;
    }
    default
}

/// Directory for agent stderr logs: `<workspace>/target/interop-logs`.
pub fn log_dir() -> PathBuf {
    workspace_root().join("target/interop-logs")
}

/// Effective user id of this process (from /proc, std only).
fn euid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Everything missing for namespace tests, as human-readable items (empty = ok).
fn netns_missing() -> Vec<String> {
    let mut missing = Vec::new();
    if euid() != Some(0) {
        missing.push("root privileges".to_string());
    }
    for ns in ["zmesh-br"].iter().chain(HOST_NAMESPACES.iter()) {
        if !Path::new("/run/netns").join(ns).exists() {
            missing.push(format!("network namespace {ns} (interop/netns.sh up)"));
        }
    }
    let root = workspace_root();
    if !root.join("interop/.venv/bin/python").exists() {
        missing.push("interop/.venv (scripts/install-test-deps.sh)".to_string());
    }
    if !root.join("interop/node_modules/zyre.js").exists() {
        missing.push("interop/node_modules/zyre.js (scripts/install-test-deps.sh)".to_string());
    }
    missing
}

/// True when we are root, the interop namespaces exist and the peers are installed.
pub fn netns_available() -> bool {
    netns_missing().is_empty()
}

/// Panic with a clear message unless [`netns_available`].
pub fn require_netns() {
    let missing = netns_missing();
    if !missing.is_empty() {
        panic!(
            "this test needs root + the interop namespaces and peers; missing: {}. \
             Run it through `bash scripts/test.sh` (installs peers, runs `interop/netns.sh up`, \
             then `cargo test --workspace -- --include-ignored`).",
            missing.join(", ")
        );
    }
}

/// One agent process in a network namespace, with its event stream.
pub struct Agent {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Received but not yet consumed by a `wait_for`, in arrival order.
    buffered: VecDeque<Value>,
    /// Every event received so far (for error messages).
    history: Vec<Value>,
    log_path: PathBuf,
    ready: Option<Ready>,
}

impl Agent {
    /// Start a ZRE node of `kind` named `name` in namespace `netns` (e.g.
    /// `"zmesh-h1"`) on beacon port `port`, interface `eth0`, with `headers`.
    /// `extra_args` are appended to the argv (e.g. `["--evasive", "1000"]`).
    ///
    /// Panics if the process cannot be started (missing peers are a setup error).
    pub fn spawn(
        netns: &str,
        kind: AgentKind,
        name: &str,
        port: u16,
        headers: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Agent {
        let root = workspace_root();
        let port = port.to_string();
        // The program, then the options every agent takes (`--name` is the zmesh subcommand's).
        let mut argv: Vec<String> = match kind {
            AgentKind::Pyre => vec![
                root.join("interop/.venv/bin/python").display().to_string(),
                root.join("interop/pyre_agent.py").display().to_string(),
                "--name".into(),
                name.into(),
            ],
            AgentKind::ZyreJs => vec![
                "node".into(),
                root.join("interop/zyrejs_agent.js").display().to_string(),
                "--name".into(),
                name.into(),
            ],
            AgentKind::Zmesh => vec![zmesh_bin().display().to_string(), "--json".into()],
        };
        argv.extend(["--iface".into(), "eth0".into(), "--port".into(), port]);
        for (k, v) in headers {
            argv.push("--header".into());
            argv.push(format!("{k}={v}"));
        }
        if kind == AgentKind::Zmesh {
            argv.extend(["agent".into(), "--name".into(), name.into()]);
        }
        argv.extend(extra_args.iter().map(|s| s.to_string()));
        let label = format!("{}-{}", kind.label(), name);
        if kind != AgentKind::ZyreJs {
            return Agent::spawn_argv(netns, &label, &argv);
        }
        // zyre.js probes for a free inbox port, releases it and binds later, ignoring a failed
        // bind: two zyre.js nodes starting together in one namespace can both advertise the same
        // port. Start them one at a time per namespace (until READY = inbox bound), holding an
        // advisory flock that is released when the file closes, also if the test panics.
        let path = std::env::temp_dir().join(format!("zmesh-interop-zyrejs-{netns}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        lock.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        let mut agent = Agent::spawn_argv(netns, &label, &argv);
        agent.ready();
        drop(lock);
        agent
    }

    /// Start an arbitrary JSON-lines agent: `ip netns exec <netns> <argv>`, with
    /// the workspace root as working directory. `label` names the log file.
    pub fn spawn_argv(netns: &str, label: &str, argv: &[String]) -> Agent {
        let dir = log_dir();
        fs::create_dir_all(&dir).expect("create target/interop-logs");
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", ".")
            .replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_",
            );
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let log_path = dir.join(format!("{test}-{label}-{netns}-{stamp}.log"));
        let mut log = File::create(&log_path).expect("create agent log file");
        let _ = writeln!(log, "# ip netns exec {netns} {}", argv.join(" "));

        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(argv)
            .current_dir(workspace_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start agent {label} in {netns}: {e}"));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let thread_label = label.to_string();
        std::thread::Builder::new()
            .name(format!("agent-{label}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let ev = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
                        // A protocol violation: surface it as an event tests can see.
                        eprintln!("[{thread_label}] non-JSON stdout line ({e}): {line}");
                        json!({"event": "INVALID", "line": line})
                    });
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn agent reader thread");

        Agent {
            label: format!("{label}@{netns}"),
            stdin: child.stdin.take(),
            child,
            events: rx,
            buffered: VecDeque::new(),
            history: Vec::new(),
            log_path,
            ready: None,
        }
    }

    /// `kind-name@netns`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// OS process id of the agent (the `ip netns exec` process execs the agent).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of this agent's stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every event received so far, in order (consumed or not).
    pub fn history(&self) -> &[Value] {
        &self.history
    }

    /// Send one command (a JSON object) as a line on the agent's stdin.
    /// Panics if the agent's stdin is closed (it exited or was stopped).
    pub fn send(&mut self, cmd: Value) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("[{}] stdin already closed", self.label));
        let line = format!("{cmd}\n");
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
            panic!(
                "[{}] cannot send {cmd}: {e}\n{}",
                self.label,
                self.diagnostics()
            );
        }
    }

    /// `{"cmd":"join","group":group}`.
    pub fn join(&mut self, group: &str) {
        self.send(json!({"cmd": "join", "group": group}));
    }

    /// `{"cmd":"leave","group":group}`.
    pub fn leave(&mut self, group: &str) {
        self.send(json!({"cmd": "leave", "group": group}));
    }

    /// `{"cmd":"whisper","peer":peer,"frames":frames}`.
    pub fn whisper(&mut self, peer: &str, frames: &[&str]) {
        self.send(json!({"cmd": "whisper", "peer": peer, "frames": frames}));
    }

    /// `{"cmd":"shout","group":group,"frames":frames}`.
    pub fn shout(&mut self, group: &str, frames: &[&str]) {
        self.send(json!({"cmd": "shout", "group": group, "frames": frames}));
    }

    /// Pull one event from the reader thread into the buffer, waiting at most
    /// until `deadline`. `Ok(false)` on timeout, `Err` if the agent's stdout closed.
    fn pull(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(ev) => {
                self.history.push(ev.clone());
                self.buffered.push_back(ev);
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => Err("agent's stdout closed (exited)".into()),
        }
    }

    /// Return the first event (buffered or new) for which `pred` is true, waiting
    /// at most `timeout`. Non-matching events stay buffered for later waits.
    /// The error names the agent and shows pending events and its stderr tail.
    pub fn wait_for<F>(&mut self, timeout: Duration, mut pred: F) -> Result<Value, String>
    where
        F: FnMut(&Value) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            while checked < self.buffered.len() {
                if pred(&self.buffered[checked]) {
                    return Ok(self.buffered.remove(checked).expect("index checked"));
                }
                checked += 1;
            }
            match self.pull(deadline) {
                Ok(true) => continue,
                Ok(false) => {
                    return Err(format!(
                        "[{}] no matching event within {:?}\n{}",
                        self.label,
                        timeout,
                        self.diagnostics()
                    ))
                }
                Err(why) => {
                    return Err(format!(
                        "[{}] {why} before a matching event arrived\n{}",
                        self.label,
                        self.diagnostics()
                    ))
                }
            }
        }
    }

    /// Wait for an event of type `event` (e.g. `"ENTER"`) from `peer` (any peer
    /// if `None`).
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        event: &str,
        peer: Option<&str>,
    ) -> Result<Value, String> {
        self.wait_for(timeout, |ev| {
            ev["event"] == event
                && match peer {
                    Some(p) => ev["peer"] == p,
                    None => true,
                }
        })
    }

    /// Collect every event arriving during `window` (buffered ones included)
    /// and consume them. For asserting that something does *not* happen.
    pub fn drain_for(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        while let Ok(true) = self.pull(deadline) {}
        self.buffered.drain(..).collect()
    }

    /// Wait for READY (at most [`READY_TIMEOUT`]) and return what it announced.
    /// Idempotent. Panics with diagnostics if the agent never gets ready.
    pub fn ready(&mut self) -> Ready {
        if let Some(r) = &self.ready {
            return r.clone();
        }
        let ev = self
            .wait_for(READY_TIMEOUT, |ev| ev["event"] == "READY")
            .unwrap_or_else(|e| panic!("agent never became READY: {e}"));
        let field = |k: &str| ev[k].as_str().unwrap_or_default().to_string();
        let r = Ready {
            uuid: field("uuid"),
            name: field("name"),
            endpoint: field("endpoint"),
        };
        assert!(
            r.uuid.len() == 32
                && r.uuid
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
            "[{}] READY uuid is not 32 upper-case hex digits: {ev}",
            self.label
        );
        self.ready = Some(r.clone());
        r
    }

    /// The agent's UUID (waits for READY if needed).
    pub fn uuid(&mut self) -> String {
        self.ready().uuid
    }

    /// Polite stop: send `{"cmd":"stop"}`, close stdin and wait (at most 10 s)
    /// for the process to exit; SIGKILL it if it does not. Events printed before
    /// exiting (e.g. STOP) stay available to [`Agent::wait_for`].
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"stop\"}\n");
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    self.kill();
                    return Err(format!(
                        "[{}] did not exit within 10 s of stop; killed\n{}",
                        self.label,
                        self.diagnostics()
                    ));
                }
                Err(e) => return Err(format!("[{}] wait failed: {e}", self.label)),
            }
        }
    }

    /// SIGKILL the agent (our own child, by pid) and reap it. No port-0 beacon
    /// goes out: peers notice only by expiry.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }

    /// Send a signal to our own child by pid using `kill(1)` (std only).
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "[{}] kill {sig} failed", self.label);
    }

    /// Freeze the agent (SIGSTOP): it stops beaconing and answering, like a
    /// hung host. Use [`Agent::resume`] to continue.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resume an agent frozen by [`Agent::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Pending events plus the last lines of the stderr log, for error messages.
    pub fn diagnostics(&self) -> String {
        let pending: Vec<String> = self.buffered.iter().map(|v| v.to_string()).collect();
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        format!(
            "  unconsumed events ({}): [{}]\n  stderr tail ({}):\n{}",
            pending.len(),
            pending.join(", "),
            self.log_path.display(),
            tail
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) agent.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
