//! `zmesh emit` and `zmesh on` as black boxes on loopback: interest-based delivery with
//! `--count`, JSON lines, and a retained value reaching a late subscriber.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    35000 + (std::process::id() % 1000) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo", "--port", &port.to_string()]);
    c.args(args);
    c
}

fn json_lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn on_counts_events_and_emit_reaches_only_subscribers() {
    let p = port();
    let on = zmesh(
        p,
        &["--json", "on", "--interval", "100", "--count", "3", "s.*"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let emit = |topic: &str, payload: &str, expect: &str| {
        let out = zmesh(
            p,
            &[
                "--json",
                "emit",
                "--interval",
                "100",
                "--expect",
                expect,
                "--discover",
                "10s",
                topic,
                payload,
            ],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        json_lines(&out.stdout)[0]["subscribers"].as_u64().unwrap()
    };
    assert_eq!(emit("s.a", "one", "1"), 1);
    // Nobody subscribes to t.a: sent to nobody (after a short wait for subscribers).
    let t0 = Instant::now();
    let out = zmesh(
        p,
        &["emit", "--interval", "100", "--discover", "1s", "t.a", "x"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("to 0 subscriber(s)"));
    assert!(t0.elapsed() < Duration::from_secs(8));
    assert_eq!(emit("s.b", "two", "1"), 1);
    assert_eq!(emit("s.c", "three", "1"), 1);
    let out = on.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = json_lines(&out.stdout);
    let got: Vec<(&str, &str)> = v
        .iter()
        .map(|e| (e["topic"].as_str().unwrap(), e["payload"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("s.a", "one"), ("s.b", "two"), ("s.c", "three")]);
}

#[test]
fn a_late_subscriber_gets_the_retained_value() {
    let p = port();
    let publisher = zmesh(
        p,
        &[
            "emit",
            "--interval",
            "100",
            "--expect",
            "0",
            "--discover",
            "0s",
            "--retain",
            "--linger",
            "20s",
            "cfg.mode",
            "eco",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let out = zmesh(
        p,
        &[
            "--json",
            "on",
            "--interval",
            "100",
            "--retained",
            "--count",
            "1",
            "cfg.*",
        ],
    )
    .output()
    .unwrap();
    let mut publisher = publisher;
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = json_lines(&out.stdout);
    assert_eq!(v[0]["topic"], "cfg.mode");
    assert_eq!(v[0]["payload"], "eco");
    assert_eq!(v[0]["retained"], true);
}
