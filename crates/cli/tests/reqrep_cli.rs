//! `zmesh request` / `zmesh reply` as black boxes on loopback: replies on stdout, an exit status
//! per outcome, `--json` with the outcome and the round-trip time.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::Value;

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    31000 + (std::process::id() % 1000) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo", "--port", &port.to_string()]);
    c.args(args);
    c
}

/// A replier process, killed (SIGKILL) when dropped.
struct Replier(Child);

impl Drop for Replier {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replier(port: u16, name: &str, how: &[&str]) -> Replier {
    let mut args = vec!["reply", "--name", name, "--interval", "100"];
    args.extend_from_slice(how);
    Replier(
        zmesh(port, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zmesh reply"),
    )
}

fn request(port: u16, extra: &[&str]) -> Output {
    let mut args = vec!["request", "--interval", "100"];
    if !extra.contains(&"--discover") {
        args.extend_from_slice(&["--discover", "10s"]);
    }
    args.extend_from_slice(extra);
    zmesh(port, &args).output().expect("run zmesh request")
}

#[test]
fn echo_exec_and_exit_codes() {
    let p = port();
    let _echo = replier(p, "echo-srv", &["--echo", "--event", "echo.**"]);
    let _exec = replier(
        p,
        "exec-srv",
        &[
            "--exec",
            "if [ \"$(cat)\" = fail ]; then echo broken >&2; exit 9; fi; echo -n ok",
        ],
    );

    let out = request(p, &["echo-srv", "echo.hi", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello");

    let out = request(p, &["exec-srv", "x", "anything"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"ok");

    // A failing command is a handler error carrying its status and stderr.
    let out = request(p, &["--json", "exec-srv", "x", "fail"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "handler_error");
    assert_eq!(v["code"], 9);
    assert_eq!(v["message"], "broken");
    assert!(v["rtt_us"].as_u64().unwrap() > 0);

    // No handler for the event on that peer: no responders, at once.
    let out = request(p, &["echo-srv", "other.event"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // A peer that is not there: no responders after the discovery window.
    let out = request(p, &["--discover", "500ms", "nobody", "echo.hi"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // JSON reply.
    let out = request(p, &["--json", "echo-srv", "echo.j", "{\"a\":1}"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "reply");
    assert_eq!(v["payload"], "{\"a\":1}");
}

#[test]
fn timeout_and_peer_left() {
    let p = port();
    let _slow = replier(p, "slow-srv", &["--exec", "sleep 30"]);
    let out = request(p, &["--timeout", "300ms", "slow-srv", "x"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // The replier is killed while the request waits: PeerLeft (exit 6) long before the 60 s
    // timeout (the requester expires a silent peer after --expired).
    let mut victim = Replier(
        zmesh(
            p,
            &[
                "--json",
                "reply",
                "--name",
                "victim",
                "--interval",
                "100",
                "--exec",
                "sleep 30",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut req = zmesh(
        p,
        &[
            "request",
            "--interval",
            "100",
            "--evasive",
            "500",
            "--expired",
            "2000",
            "--timeout",
            "60s",
            "victim",
            "x",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Crash the replier once it holds the request (it prints one JSON line per request).
    let lines = std::io::BufRead::lines(std::io::BufReader::new(victim.0.stdout.take().unwrap()));
    for line in lines {
        if line.unwrap().contains("\"request\"") {
            break;
        }
    }
    victim.0.kill().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = req.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "request still waiting 20 s after its replier died"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(6));
}
