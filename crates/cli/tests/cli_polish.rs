//! The `zmesh` command as a new user meets it, as black boxes on loopback (issue 15, items 1-9):
//! polite stops on SIGINT and SIGTERM under a flood, input and output that are not plain text,
//! interfaces that do not exist, values that make no sense, ambiguous names, help and man pages.
//!
//! Every wait is on an event (a line on stdout/stderr, the child's exit) with a deadline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest wait for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(15);

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    42000 + (std::process::id() % 500) as u16 * 30 + NEXT.fetch_add(1, Ordering::Relaxed) % 30
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo", "--port", &port.to_string()]);
    c.args(args);
    c
}

/// A running `zmesh` process: its stdout and stderr as channels of lines; killed when dropped.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every stdout line read so far.
    seen: Vec<String>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zmesh");
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Proc {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn cmd(&mut self, v: Value) {
        self.send(format!("{v}\n").as_bytes());
    }

    /// The first stdout line (JSON) matching `f`, waiting at most `WAIT`.
    fn wait_json(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if f(&v) {
                            return v;
                        }
                    }
                }
                Err(e) => panic!("{what}: {e:?}; stdout so far: {:?}", self.seen),
            }
        }
    }

    /// The first stdout line containing `needle`.
    fn wait_out(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no {needle:?} on stdout: {e:?}; seen {:?}", self.seen),
            }
        }
    }

    /// The first stderr line containing `needle`.
    fn wait_err(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut other = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => other.push(line),
                Err(e) => panic!("no {needle:?} on stderr: {e:?}; saw {other:?}"),
            }
        }
    }

    fn uuid(&mut self) -> String {
        let v = self.wait_json("READY", |v| v["event"] == "READY");
        v["uuid"].as_str().unwrap().to_owned()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit (at most `limit`); returns its status and how long it took.
    fn exit_within(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, t0.elapsed());
            }
            assert!(
                t0.elapsed() < limit,
                "still running {limit:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent (JSON in, JSON out) on `port`.
fn agent(port: u16, name: &str) -> Proc {
    Proc::spawn(zmesh(
        port,
        &["--json", "agent", "--name", name, "--interval", "100"],
    ))
}

/// How long a polite stop may take from the signal to the process's exit. The requirement is
/// 100 ms; the bound leaves room for a loaded CI machine running debug builds, and the measured
/// times are printed.
const POLITE_EXIT: Duration = Duration::from_millis(500);

/// Floods `target` (already seen by `flooder`) with whispers, signals it with `sig` while the
/// whispers arrive, and checks it exits promptly and that the flooder sees it EXIT (a polite
/// leave, not the ~30 s expiry).
fn flood_then_signal(
    mut target: Proc,
    target_uuid: &str,
    mut flooder: Proc,
    sig: &str,
    what: &str,
) {
    flooder.cmd(
        json!({"cmd": "whispers", "peer": target_uuid, "prefix": "flood ",
                       "count": 100_000_000u64}),
    );
    // The flood has reached the target.
    target.wait_out("flood ");
    for _ in 0..2000 {
        // Keep the target busy printing while the signal lands.
        let _ = target.out.recv_timeout(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    target.signal(sig);
    let (status, took) = target.exit_within(POLITE_EXIT);
    assert!(status.success(), "{what}: exit status {status}");
    let exit = flooder.wait_json("EXIT of the target", |v| {
        v["event"] == "EXIT" && v["peer"] == target_uuid
    });
    let seen_after = t0.elapsed();
    println!("{what}: exited {took:?} after {sig}, EXIT seen by the flooder after {seen_after:?}");
    assert!(exit.get("reason").is_none(), "{exit}");
    assert!(
        seen_after < Duration::from_secs(3),
        "{what}: EXIT after {seen_after:?}: not a polite leave"
    );
}

#[test]
fn listen_stops_politely_on_sigint_under_a_flood() {
    let p = port();
    let mut flooder = agent(p, "flooder");
    flooder.uuid();
    let mut listen = Proc::spawn(zmesh(
        p,
        &["--json", "listen", "--name", "target", "--interval", "100"],
    ));
    let enter = listen.wait_json("ENTER of the flooder", |v| v["event"] == "ENTER");
    let flooder_uuid = enter["peer"].as_str().unwrap().to_owned();
    let target = flooder.wait_json("ENTER of the listener", |v| {
        v["event"] == "ENTER" && v["name"] == "target"
    });
    let _ = flooder_uuid;
    let uuid = target["peer"].as_str().unwrap().to_owned();
    flood_then_signal(listen, &uuid, flooder, "-INT", "listen/SIGINT");
}

#[test]
fn listen_stops_politely_on_sigterm_under_a_flood() {
    let p = port();
    let mut flooder = agent(p, "flooder");
    flooder.uuid();
    let listen = Proc::spawn(zmesh(
        p,
        &["listen", "--name", "target", "--interval", "100"],
    ));
    let target = flooder.wait_json("ENTER of the listener", |v| {
        v["event"] == "ENTER" && v["name"] == "target"
    });
    let uuid = target["peer"].as_str().unwrap().to_owned();
    flood_then_signal(listen, &uuid, flooder, "-TERM", "listen/SIGTERM");
}

#[test]
fn chat_stops_politely_on_sigint_and_sigterm_under_a_flood() {
    for sig in ["-INT", "-TERM"] {
        let p = port();
        let mut flooder = agent(p, "flooder");
        flooder.uuid();
        let chat = Proc::spawn(zmesh(p, &["chat", "--name", "target", "--interval", "100"]));
        let target = flooder.wait_json("ENTER of the chat", |v| {
            v["event"] == "ENTER" && v["name"] == "target"
        });
        let uuid = target["peer"].as_str().unwrap().to_owned();
        flood_then_signal(chat, &uuid, flooder, sig, &format!("chat/{sig}"));
    }
}

#[test]
fn agent_and_reply_stop_politely_on_signals_under_a_flood() {
    let p = port();
    let mut flooder = agent(p, "flooder");
    flooder.uuid();
    let mut target = agent(p, "target");
    let uuid = target.uuid();
    flooder.wait_json("ENTER", |v| {
        v["event"] == "ENTER" && v["peer"] == uuid.as_str()
    });
    flood_then_signal(target, &uuid, flooder, "-TERM", "agent/SIGTERM");

    let p = port();
    let mut flooder = agent(p, "flooder");
    flooder.uuid();
    let reply = Proc::spawn(zmesh(
        p,
        &[
            "--json",
            "reply",
            "--echo",
            "--name",
            "target",
            "--interval",
            "100",
        ],
    ));
    let target = flooder.wait_json("ENTER of the replier", |v| {
        v["event"] == "ENTER" && v["name"] == "target"
    });
    let uuid = target["peer"].as_str().unwrap().to_owned();
    // reply prints nothing for whispers: wait for the flood to start from the flooder's side.
    flooder
        .cmd(json!({"cmd": "whispers", "peer": uuid, "prefix": "flood ", "count": 100_000_000u64}));
    // A request from another node in the middle of the flood (the flooder is busy sending):
    // once the replier prints it, the flood is on it.
    let mut asker = agent(p, "asker");
    asker.uuid();
    asker.wait_json("ENTER of the replier", |v| {
        v["event"] == "ENTER" && v["peer"] == uuid.as_str()
    });
    asker.cmd(json!({"cmd": "request", "peer": uuid, "event": "e.x", "payload": "p", "tag": 1}));
    let mut reply = reply;
    reply.wait_json("the request", |v| v["request"] == "e.x");
    let t0 = Instant::now();
    reply.signal("-INT");
    let (status, took) = reply.exit_within(POLITE_EXIT);
    assert!(status.success(), "reply: {status}");
    let mut flooder = flooder;
    flooder.wait_json("EXIT of the replier", |v| {
        v["event"] == "EXIT" && v["peer"] == uuid.as_str()
    });
    println!(
        "reply/SIGINT: exited {took:?} after the signal; EXIT seen after {:?}",
        t0.elapsed()
    );
}

#[test]
fn demo_and_tester_stop_politely_on_sigint() {
    for args in [
        vec!["demo", "--interval", "100"],
        vec!["tester", "--nodes", "6", "--duration", "60s"],
    ] {
        let p = port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zmesh"));
        cmd.args(["--port", &p.to_string()]).args(&args);
        // A listener on the same port sees the demo's / tester's nodes enter, then leave.
        let mut watcher = agent(p, "watcher");
        watcher.uuid();
        let mut run = Proc::spawn(cmd);
        let enter = watcher.wait_json("a node enters", |v| v["event"] == "ENTER");
        let uuid = enter["peer"].as_str().unwrap().to_owned();
        run.signal("-INT");
        let (status, took) = run.exit_within(Duration::from_secs(5));
        assert!(
            status.code() == Some(130) || status.success(),
            "{args:?}: {status}"
        );
        let t0 = Instant::now();
        watcher.wait_json("EXIT", |v| {
            v["event"] == "EXIT" && v["peer"] == uuid.as_str()
        });
        println!(
            "{}: exited {took:?} after SIGINT, EXIT seen {:?} later",
            args[0],
            t0.elapsed()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{args:?}: not a polite leave"
        );
    }
}

/// Runs `zmesh ARGS` to completion (no `--iface`/`--port` added).
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zmesh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zmesh")
}

#[test]
fn chat_sends_lines_that_are_not_utf8_and_goes_on() {
    let p = port();
    let mut listen = Proc::spawn(zmesh(
        p,
        &[
            "--json",
            "listen",
            "--group",
            "CHAT",
            "--name",
            "ear",
            "--interval",
            "100",
        ],
    ));
    let mut chat = Proc::spawn(zmesh(
        p,
        &["--json", "chat", "--name", "mouth", "--interval", "100"],
    ));
    listen.wait_json("JOIN of the chat", |v| {
        v["event"] == "JOIN" && v["name"] == "mouth" && v["group"] == "CHAT"
    });
    // The chat shouts only to members it knows: wait until it has seen the listener join.
    chat.wait_json("JOIN of the listener", |v| {
        v["event"] == "JOIN" && v["name"] == "ear" && v["group"] == "CHAT"
    });
    chat.send(b"hello\n\xff\xfe bin\r\nafter\n");
    let a = listen.wait_json("first", |v| v["event"] == "SHOUT");
    assert_eq!(a["frames"], json!(["hello"]));
    assert!(a.get("frames_hex").is_none(), "{a}");
    let b = listen.wait_json("binary", |v| v["event"] == "SHOUT");
    assert_eq!(b["frames_hex"], json!(["fffe2062696e"]), "{b}");
    let c = listen.wait_json("after", |v| v["event"] == "SHOUT");
    assert_eq!(c["frames"], json!(["after"]));
    chat.stdin = None; // end of input: a polite stop
    let (st, _) = chat.exit_within(Duration::from_secs(5));
    assert!(st.success());
}

#[test]
fn peer_text_is_escaped_for_the_terminal() {
    let p = port();
    let mut listen = Proc::spawn(zmesh(p, &["listen", "--name", "ear", "--interval", "100"]));
    let mut a = agent(p, "ev\u{1b}[31mil");
    a.uuid();
    let enter = a.wait_json("ENTER of the listener", |v| v["event"] == "ENTER");
    a.cmd(json!({"cmd": "whisper", "peer": enter["peer"],
                 "frames": ["\u{1b}]0;pwned\u{7}\u{1b}[2J", "ok"]}));
    let line = listen.wait_out("-> me]");
    assert!(
        !line.contains('\u{1b}') && !line.contains('\u{7}'),
        "{line:?}"
    );
    assert_eq!(
        line,
        "[ev\\x1b[31mil -> me] \\x1b]0;pwned\\x07\\x1b[2J | ok"
    );
}

#[test]
fn one_shot_commands_refuse_an_interface_that_is_not_there() {
    for iface in ["nosuch0", "999.1.1.1", "10.99.0.0/16"] {
        for cmd in [
            &["peers", "--wait", "0.2"][..],
            &["request", "x", "e.v"][..],
        ] {
            let mut args = vec!["--iface", iface];
            args.extend_from_slice(cmd);
            let out = run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&format!("no interface matches --iface {iface}")),
                "{err}"
            );
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn long_running_commands_say_once_they_wait_for_the_interface() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    cmd.args([
        "--iface",
        "nosuch0",
        "--port",
        &port().to_string(),
        "listen",
    ]);
    let mut listen = Proc::spawn(cmd);
    let line = listen.wait_err("waiting for it");
    assert!(
        line.contains("no interface matches --iface nosuch0"),
        "{line}"
    );
    listen.signal("-TERM");
    let (st, _) = listen.exit_within(POLITE_EXIT);
    assert!(st.success());
    let rest: Vec<String> = listen.err.try_iter().collect();
    assert!(
        !rest.iter().any(|l| l.contains("waiting for it")),
        "said more than once: {rest:?}"
    );
}

#[test]
fn nonsense_values_are_refused_at_parse_time() {
    for args in [
        &["--port", "0", "peers"][..],
        &["--port", "70000", "peers"],
        &["--iface", "lo", "peers", "--wait", "nan"],
        &["--iface", "lo", "peers", "--wait=-1"],
        &["--iface", "lo", "peers", "--wait", "inf"],
        &["--iface", "lo", "listen", "--interval", "0"],
        &["--iface", "lo", "listen", "--tcp-port", "0"],
        &["demo", "--nodes", "1"],
        &["demo", "--nodes", "51"],
        &["tester", "--duration", "0s"],
        &["--header", "novalue", "peers"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted: {err}");
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let out = Command::new(env!("CARGO_BIN_EXE_zmesh"))
        .args([
            "--iface",
            "lo",
            "--port",
            &port().to_string(),
            "--log",
            "debug",
        ])
        .args(["peers", "--wait", "0.3"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG"), "no debug logs: {err}");
    assert!(!err.contains('\u{1b}'), "ANSI codes in a pipe: {err:?}");
}

#[test]
fn uuids_are_upper_case_hex_in_errors_too() {
    let p = port();
    let mut a = agent(p, "a");
    a.uuid();
    a.cmd(
        json!({"cmd": "whisper", "peer": "3a07fc75-400a-5b36-f319-333fa8492a52", "frames": ["x"]}),
    );
    let e = a.wait_json("ERROR", |v| v["event"] == "ERROR");
    assert_eq!(e["error"], "unknown peer 3A07FC75400A5B36F319333FA8492A52");
    a.cmd(json!({"cmd": "fly"}));
    let e = a.wait_json("ERROR", |v| v["event"] == "ERROR");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant `fly`"),
        "{e}"
    );
}

#[test]
fn chat_says_what_it_cannot_do() {
    let p = port();
    let mut alice = Proc::spawn(zmesh(p, &["chat", "--name", "alice", "--interval", "100"]));
    alice.wait_err("chatting in CHAT");
    // Nobody there yet: a shout is not lost silently.
    alice.send(b"anyone?\n");
    alice.wait_err("no peers yet");
    let mut bob1 = agent(p, "bob");
    let mut bob2 = agent(p, "bob");
    let (u1, u2) = (bob1.uuid(), bob2.uuid());
    for b in [&mut bob1, &mut bob2] {
        b.wait_json("ENTER of alice", |v| {
            v["event"] == "ENTER" && v["name"] == "alice"
        });
    }
    alice.wait_out("bob entered");
    alice.wait_out("bob entered");
    alice.send(b"/w bob hi\n");
    let line = alice.wait_err("peers match");
    assert!(
        line.contains(&u1) && line.contains(&u2) && line.contains("prefix"),
        "{line}"
    );
    alice.send(b"/w bob\n");
    alice.wait_err("nothing to whisper");
    // A UUID prefix picks one.
    alice.send(format!("/w {} hi one\n", &u1[..8]).as_bytes());
    let w = bob1.wait_json("whisper", |v| v["event"] == "WHISPER");
    assert_eq!(w["frames"], json!(["hi one"]));
    // bob is not in CHAT: a shout reaches nobody, and alice says so.
    alice.send(b"hello all\n");
    alice.wait_err("nobody else is in CHAT");
}

#[test]
fn help_separates_global_options_and_tells_the_truth() {
    let out = run(&["tester", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("Global options:"), "{help}");
    let global = &help[help.find("Global options:").unwrap()..];
    assert!(global.contains("--iface"), "{help}");
    assert!(global.contains("`tester` default to lo"), "{help}");
    assert!(global.contains("pick a random free one"), "{help}");
    let own = &help[..help.find("Global options:").unwrap()];
    assert!(
        own.contains("--nodes") && !own.contains("--iface"),
        "{help}"
    );
    let out = run(&["listen", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Node options:") && help.contains("Global options:"),
        "{help}"
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("zmesh") && s.contains("listen"), "{shell}: {s}");
    }
    let out = run(&["man"]);
    assert!(out.status.success());
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH zmesh"), "{man}");
    assert!(
        man.contains("completions") && man.contains("\\-\\-iface"),
        "{man}"
    );
}
