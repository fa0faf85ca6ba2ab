//! CI-sized churn test: runs `zmesh tester` (30 node slots, 60 s of churn, fixed seed) on loopback
//! and checks that it found no violation *and* that the mesh was really busy — a tester that
//! started nothing or exchanged nothing would "pass" vacuously, so activity is asserted too.
//!
//! The tester itself does the checking (see `crates/cli/src/tester.rs`): HELLO-first at the API
//! level, protocol counters, group convergence within expired + 2 beacon intervals, no lost
//! whisper between survivors, no panic, bounded RSS. Its exit code is 0 only if all of that held.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

#[test]
fn churn_30_nodes_for_60_seconds_never_breaks_the_mesh() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zmesh"))
        .args([
            "--json",
            "tester",
            "--nodes",
            "30",
            "--duration",
            "60s",
            "--seed",
            "1",
            "--progress",
            "15",
        ])
        .output()
        .expect("run zmesh tester");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!("no JSON summary on stdout.\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    let s: Value = serde_json::from_str(last).expect("summary is JSON");
    let pretty = serde_json::to_string_pretty(&s).unwrap();
    eprintln!("tester took {:?}\n{pretty}", started.elapsed());
    assert_eq!(s["summary"], "zmesh-tester");
    assert_eq!(
        out.status.code(),
        Some(0),
        "tester reported violations:\n{pretty}\nstderr:\n{stderr}"
    );
    assert_eq!(s["ok"], true);
    assert_eq!(s["violations"], 0);
    assert_eq!(s["panics"], 0);

    let n = |p: &str| {
        s.pointer(p)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("summary lacks {p}"))
    };
    // Real churn: the initial 15 plus ~80 toggles, with both polite stops and kills.
    assert!(n("/nodes/started") >= 40, "too few starts");
    assert!(n("/nodes/stopped_polite") >= 5, "too few polite stops");
    assert!(n("/nodes/killed") >= 5, "too few kills");
    assert!(n("/nodes/running_at_end") >= 2, "need survivors to check");
    // Real traffic, of every kind.
    for ev in ["enter", "exit", "join", "leave", "whisper", "shout"] {
        assert!(n(&format!("/events/{ev}")) >= 20, "too few {ev} events");
    }
    assert!(n("/whispers/sent") >= 200);
    // Nothing is received that was not sent (losses only around EXITs, checked below).
    assert!(n("/whispers/received") <= n("/whispers/sent"));
    // The loss check covered real pairs, and every one of them got all its whispers.
    assert!(n("/whispers/checked_pairs") >= 2);
    assert!(n("/whispers/checked_sent") >= n("/whispers/checked_pairs"));
    assert_eq!(n("/whispers/checked_sent"), n("/whispers/checked_received"));
    assert_eq!(n("/whispers/lost"), 0);
    // The protocol counters that must be zero between zmesh nodes, and the mesh converged in time.
    for c in [
        "sequence_gaps",
        "status_mismatches",
        "malformed",
        "dropped_events",
    ] {
        assert_eq!(n(&format!("/counters/{c}")), 0, "{c} must be 0");
    }
    assert!(n("/counters/messages_received") > 1000);
    let converged = n("/convergence/converged_after_ms");
    assert!(converged <= n("/convergence/bound_ms"));
    assert_eq!(s["rss"]["ok"], true);
}

/// The short services chaos run: 2 brokers, 4 workers, 3 clients, 15 s of SIGKILLs and restarts.
#[test]
fn services_chaos_loses_nothing_and_processes_nothing_twice() {
    let out = Command::new(env!("CARGO_BIN_EXE_zmesh"))
        .args([
            "--json",
            "tester",
            "--services",
            "--duration",
            "15s",
            "--seed",
            "1",
            "--clients",
            "3",
            "--progress",
            "0",
        ])
        .output()
        .expect("run zmesh tester --services");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON ledger.\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let s: Value = serde_json::from_str(last).expect("ledger is JSON");
    let pretty = serde_json::to_string_pretty(&s).unwrap();
    eprintln!("{pretty}");
    assert_eq!(out.status.code(), Some(0), "violations:\n{pretty}");
    assert_eq!(s["ok"], true);
    assert_eq!(s["processed_twice"], 0);
    assert_eq!(s["lost"], 0);
    assert_eq!(s["wrong_answers"], 0);
    // Not vacuous: calls flowed and processes really died.
    assert!(s["answered"].as_u64().unwrap() > 500, "{pretty}");
    let kills = s["kills"]["broker"].as_u64().unwrap() + s["kills"]["worker"].as_u64().unwrap();
    assert!(kills >= 5, "{pretty}");
}
