//! `zmesh request any|all`, `zmesh tick` and `--option` as black boxes on loopback, and the
//! agent's `options` command.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::Value;

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    33000 + (std::process::id() % 1000) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo", "--port", &port.to_string()]);
    c.args(args);
    c
}

/// A child process, killed (SIGKILL) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replier(port: u16, name: &str, role: &str) -> Kill {
    let option = format!("role={role}");
    Kill(
        zmesh(
            port,
            &[
                "--option",
                &option,
                "reply",
                "--name",
                name,
                "--interval",
                "100",
                "--echo",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zmesh reply"),
    )
}

fn run(port: u16, args: &[&str]) -> Output {
    zmesh(port, args).output().expect("run zmesh")
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn any_all_and_their_exit_codes() {
    let p = port();
    let _a = replier(p, "srv-a", "a");
    let _b = replier(p, "srv-b", "b");
    let req = [
        "request",
        "--interval",
        "100",
        "--discover",
        "10s",
        "--json",
    ];

    let out = run(p, &[&req[..], &["any:role=b", "x.y", "hi"]].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = &lines(&out)[0];
    assert_eq!(
        (v["name"].as_str(), v["outcome"].as_str()),
        (Some("srv-b"), Some("reply"))
    );
    assert_eq!(v["payload"], "hi");

    let out = run(
        p,
        &[&req[..], &["--expect", "2", "all", "x.y", "hey"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = lines(&out);
    assert_eq!(v.len(), 3, "two answers and the summary: {v:?}");
    let mut names: Vec<&str> = v[..2].iter().map(|o| o["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["srv-a", "srv-b"]);
    assert_eq!(v[2]["summary"], true);
    assert_eq!(
        (v[2]["asked"].as_u64(), v[2]["replies"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(v[2]["end"], "all_done");

    // Human output: one line per peer and a summary line.
    let out = run(
        p,
        &[
            "request",
            "--interval",
            "100",
            "--discover",
            "10s",
            "--expect",
            "1",
            "all:role=a",
            "x.y",
            "yo",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("srv-a\tyo"), "{text}");
    assert!(
        text.contains("# 1 asked, 1 replied, 0 failed, 0 unanswered (all_done)"),
        "{text}"
    );

    // Nobody matches: 4, for any and for all.
    let out = run(
        p,
        &[
            "request",
            "--interval",
            "100",
            "--discover",
            "1s",
            "any:role=zzz",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = run(
        p,
        &[
            "request",
            "--interval",
            "100",
            "--discover",
            "1s",
            "all:role=zzz",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // A bad filter: 2, with the position.
    let out = run(p, &["request", "all:(role=a", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("byte 11"),
        "{out:?}"
    );
    // A tick nobody takes: 4.
    let out = run(
        p,
        &[
            "tick",
            "--interval",
            "100",
            "--discover",
            "1s",
            "any",
            "note.x",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // A bad option: 2.
    let out = run(p, &["--option", "bad key=1", "peers", "--wait", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn agent_changes_its_options_and_a_peer_routes_on_them() {
    let p = port();
    let mut agent = Kill(
        zmesh(
            p,
            &[
                "--json",
                "--option",
                "role=old",
                "agent",
                "--name",
                "ag",
                "--interval",
                "100",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent"),
    );
    let mut stdin = agent.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(agent.0.stdout.take().unwrap());
    writeln!(stdin, r#"{{"cmd":"serve","pattern":"**"}}"#).unwrap();
    writeln!(
        stdin,
        r#"{{"cmd":"options","set":{{"role":"new","zone":"eu-1"}},"remove":["nothing"]}}"#
    )
    .unwrap();
    let mut line = String::new();
    let opts = loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "agent ended");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "OPTIONS" {
            break v;
        }
    };
    assert_eq!(opts["options"]["role"], "new");
    assert_eq!(opts["options"]["zone"], "eu-1");
    let out = run(
        p,
        &[
            "--json",
            "request",
            "--interval",
            "100",
            "--discover",
            "10s",
            "any:role=new,zone^=eu-",
            "x",
            "p",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(lines(&out)[0]["name"], "ag");
}
