//! ZRE interop proof: the `zmesh` node against pyre-gevent 1.0.0.
//!
//! Every test runs a `zmesh` agent (the CLI in `agent` mode) in `zmesh-h1` and
//! pyre agents in `zmesh-h2` (and `zmesh-h3` for restarts) on the private
//! 10.77.0.0/24 bridge of `interop/netns.sh`, each test on its own beacon port
//! so the tests can run concurrently in the same namespaces.
//!
//! What is proven, both ways unless noted:
//!
//! * ENTER with the peer's name, every header (names and values, UTF-8 too) and
//!   the endpoint it announced in its READY;
//! * JOIN (groups carried in HELLO and groups joined later), WHISPER and SHOUT
//!   with multi-frame content (including an empty frame), LEAVE;
//! * a polite stop is seen as EXIT within 1 s (measured from the stop command
//!   to the EXIT event on the other side);
//! * a SIGKILLed peer is seen as EXIT after the observer's (short) expiry;
//! * a killed and restarted peer (a new process has a new UUID: neither pyre
//!   nor the zmesh CLI lets us choose one) is seen as EXIT of the old UUID and
//!   ENTER of the new one, and the new pair can talk.
//!
//! Quirks of pyre-gevent these tests account for (see also
//! `interop/pyre_agent.py` and `shared/reference/test-peers.md`):
//!
//! * Python start-up takes ~2 s, so READY/ENTER timeouts are generous.
//! * pyre never emits EVASIVE/SILENT, and counts beacons as liveness.
//! * pyre's TCP mailbox port is ephemeral, so a restarted pyre never reuses its
//!   old endpoint: the old UUID can only go away by expiry (no purge).
//!
//! Run: `bash scripts/test.sh -p zmesh --test interop_pyre`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{require_netns, Agent, AgentKind};

/// Timeout for events that should come promptly (covers pyre's start-up).
const T: Duration = Duration::from_secs(15);

/// A polite stop must be seen as EXIT within this long.
const POLITE_EXIT: Duration = Duration::from_secs(1);

/// Short liveness timeouts given to the observing side in the kill tests.
const EVASIVE_MS: &str = "500";
const EXPIRED_MS: &str = "2000";
const EXPIRED: Duration = Duration::from_millis(2000);

/// Beacon interval of every implementation here (1 s).
const BEACON_INTERVAL: Duration = Duration::from_secs(1);

/// Headers the zmesh side announces: plain, UTF-8 and with `=`/spaces in the value.
const ZMESH_HEADERS: [(&str, &str); 3] = [
    ("X-Impl", "zmesh"),
    ("X-Greeting", "grüß dich ✓"),
    ("X-Expr", "a=b c=d"),
];

/// The headers zmesh actually puts in its HELLO: ours plus `X-ZMESH: 1`, which
/// the zre engine adds by itself (its capability marker, see `zre::engine`).
const ZMESH_HEADERS_ON_WIRE: [(&str, &str); 4] = [
    ("X-Impl", "zmesh"),
    ("X-Greeting", "grüß dich ✓"),
    ("X-Expr", "a=b c=d"),
    ("X-ZMESH", "1"),
];

/// Headers the pyre side announces. ASCII only, except `X-Color`: see
/// [`PYRE_HEADERS_RECEIVED`].
const PYRE_HEADERS: [(&str, &str); 3] = [
    ("X-Impl", "pyre-gevent"),
    ("X-Expr", "x=1 y=2"),
    ("X-Color", "verde ✓"),
];

/// What a correct ZRE node receives from pyre for [`PYRE_HEADERS`].
///
/// pyre-gevent 1.0.0 bug: `ZreMsg._put_long_string` writes `len(s)` (the
/// number of *characters*) as the length and packs the UTF-8 bytes with
/// `struct.pack('%is' % len(s), …)`, which truncates them to that many bytes.
/// So "verde ✓" (7 characters, 9 bytes) goes on the wire as the 7 bytes
/// `verde \xE2`: a consistent but truncated string, which the agents render
/// lossily as "verde \u{FFFD}". (Non-ASCII names/groups from pyre suffer the same;
/// zmesh -> pyre UTF-8 is fine.) zmesh must decode exactly those bytes.
const PYRE_HEADERS_RECEIVED: [(&str, &str); 3] = [
    ("X-Impl", "pyre-gevent"),
    ("X-Expr", "x=1 y=2"),
    ("X-Color", "verde \u{FFFD}"),
];

/// Milliseconds of a duration, for the timing lines the tests print.
fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Start the zmesh agent (h1) and a pyre agent (h2) and wait until each has
/// seen the other's ENTER. Returns (zmesh, pyre, zmesh uuid, pyre uuid).
fn pair(port: u16, zmesh_args: &[&str], pyre_args: &[&str]) -> (Agent, Agent, String, String) {
    let mut zm = Agent::spawn(
        "zmesh-h1",
        AgentKind::Zmesh,
        "zm1",
        port,
        &ZMESH_HEADERS,
        zmesh_args,
    );
    let mut py = Agent::spawn(
        "zmesh-h2",
        AgentKind::Pyre,
        "py2",
        port,
        &PYRE_HEADERS,
        pyre_args,
    );
    let z = zm.uuid();
    let p = py.uuid();
    zm.wait_event(T, "ENTER", Some(&p)).unwrap();
    py.wait_event(T, "ENTER", Some(&z)).unwrap();
    (zm, py, z, p)
}

/// Assert an ENTER event carries `name`, exactly `headers` and `endpoint`.
fn assert_enter(ev: &Value, name: &str, headers: &[(&str, &str)], endpoint: &str) {
    assert_eq!(ev["name"], name, "ENTER name: {ev}");
    let mut want = serde_json::Map::new();
    for (k, v) in headers {
        want.insert(k.to_string(), Value::String(v.to_string()));
    }
    assert_eq!(ev["headers"], Value::Object(want), "ENTER headers: {ev}");
    assert_eq!(ev["endpoint"], endpoint, "ENTER endpoint: {ev}");
}

/// ENTER both ways with names, headers and endpoints; JOIN (in HELLO and
/// later) both ways; multi-frame WHISPER and SHOUT both ways; LEAVE both ways.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_enter_join_whisper_shout_leave_both_ways() {
    require_netns();
    let port = 5830;
    let started = Instant::now();
    let mut zm = Agent::spawn(
        "zmesh-h1",
        AgentKind::Zmesh,
        "zm1",
        port,
        &ZMESH_HEADERS,
        &[],
    );
    let m = zm.ready();
    // Joined before pyre exists: pyre learns it from zmesh's HELLO.
    zm.join("EARLY");
    let mut py = Agent::spawn("zmesh-h2", AgentKind::Pyre, "py2", port, &PYRE_HEADERS, &[]);
    let p = py.ready();
    assert!(m.endpoint.starts_with("tcp://10.77.0.11:"), "{m:?}");
    assert!(p.endpoint.starts_with("tcp://10.77.0.12:"), "{p:?}");

    // ENTER both ways, with every header name and value.
    let e = zm.wait_event(T, "ENTER", Some(&p.uuid)).unwrap();
    assert_enter(&e, "py2", &PYRE_HEADERS_RECEIVED, &p.endpoint);
    let e = py.wait_event(T, "ENTER", Some(&m.uuid)).unwrap();
    assert_enter(&e, "zm1", &ZMESH_HEADERS_ON_WIRE, &m.endpoint);
    println!(
        "discovery: both ENTERs {} ms after start",
        ms(started.elapsed())
    );

    // JOIN carried in HELLO (zmesh -> pyre).
    let e = py.wait_event(T, "JOIN", Some(&m.uuid)).unwrap();
    assert_eq!(e["group"], "EARLY");
    assert_eq!(e["name"], "zm1");

    // JOIN messages both ways.
    zm.join("CHAT");
    py.join("CHAT");
    let e = py
        .wait_for(T, |e| {
            e["event"] == "JOIN" && e["peer"] == m.uuid.as_str() && e["group"] == "CHAT"
        })
        .unwrap();
    assert_eq!(e["name"], "zm1");
    let e = zm
        .wait_for(T, |e| {
            e["event"] == "JOIN" && e["peer"] == p.uuid.as_str() && e["group"] == "CHAT"
        })
        .unwrap();
    assert_eq!(e["name"], "py2");

    // Multi-frame WHISPER both ways (an empty frame and UTF-8 included).
    zm.whisper(&p.uuid, &["zm-w1", "", "zm-w3 ✓"]);
    py.whisper(&m.uuid, &["py-w1", "py-w2", ""]);
    let e = py.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["zm-w1", "", "zm-w3 ✓"]));
    assert_eq!(e["name"], "zm1");
    let e = zm.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["py-w1", "py-w2", ""]));
    assert_eq!(e["name"], "py2");

    // Multi-frame SHOUT both ways.
    zm.shout("CHAT", &["zm-s1", "zm-s2", "", "zm-s4"]);
    py.shout("CHAT", &["py-s1", "py-s2"]);
    let e = py.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], json!(["zm-s1", "zm-s2", "", "zm-s4"]));
    let e = zm.wait_event(T, "SHOUT", Some(&p.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], json!(["py-s1", "py-s2"]));

    // Messages keep their order: a burst of whispers arrives in sequence.
    for i in 0..20 {
        zm.whisper(&p.uuid, &[&format!("seq {i}"), "tail"]);
    }
    for i in 0..20 {
        let e = py.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!([format!("seq {i}"), "tail"]));
    }

    // LEAVE both ways.
    py.leave("CHAT");
    let e = zm.wait_event(T, "LEAVE", Some(&p.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["name"], "py2");
    zm.leave("CHAT");
    zm.leave("EARLY");
    let e = py
        .wait_for(T, |e| {
            e["event"] == "LEAVE" && e["peer"] == m.uuid.as_str() && e["group"] == "CHAT"
        })
        .unwrap();
    assert_eq!(e["name"], "zm1");
    py.wait_for(T, |e| {
        e["event"] == "LEAVE" && e["peer"] == m.uuid.as_str() && e["group"] == "EARLY"
    })
    .unwrap();

    // After pyre left CHAT, a zmesh SHOUT to CHAT is not delivered to it, but a
    // WHISPER still is (and comes after anything that was wrongly delivered).
    zm.shout("CHAT", &["nobody listens"]);
    zm.whisper(&p.uuid, &["after leave"]);
    let e = py.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["after leave"]));
    let stray: Vec<&Value> = py
        .history()
        .iter()
        .filter(|e| e["event"] == "SHOUT" && e["frames"] == json!(["nobody listens"]))
        .collect();
    assert!(
        stray.is_empty(),
        "pyre got a SHOUT after leaving: {stray:?}"
    );

    // No EXIT so far on either side.
    for a in [&zm, &py] {
        let exits: Vec<&Value> = a
            .history()
            .iter()
            .filter(|e| e["event"] == "EXIT")
            .collect();
        assert!(
            exits.is_empty(),
            "[{}] unexpected EXIT: {exits:?}",
            a.label()
        );
    }
    assert!(zm.stop().unwrap().success());
    println!("pyre full exchange: {} ms", ms(started.elapsed()));
}

/// A polite stop of pyre (its port-0 beacon) is an EXIT on zmesh within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_polite_stop_is_exit_on_zmesh_within_1s() {
    require_netns();
    let (mut zm, mut py, _z, p) = pair(5831, &[], &[]);
    let t0 = Instant::now();
    py.send(json!({"cmd": "stop"}));
    let e = zm.wait_event(T, "EXIT", Some(&p)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], "py2");
    println!("pyre stop -> EXIT on zmesh: {} ms", ms(took));
    assert!(took < POLITE_EXIT, "EXIT took {took:?} after pyre's stop");
    assert!(py.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// A polite stop of zmesh is an EXIT on pyre within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn zmesh_polite_stop_is_exit_on_pyre_within_1s() {
    require_netns();
    let (mut zm, mut py, z, _p) = pair(5832, &[], &[]);
    let t0 = Instant::now();
    zm.send(json!({"cmd": "stop"}));
    let e = py.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], "zm1");
    println!("zmesh stop -> EXIT on pyre: {} ms", ms(took));
    assert!(took < POLITE_EXIT, "EXIT took {took:?} after zmesh's stop");
    let status = zm.stop().unwrap();
    assert!(status.success(), "zmesh agent exit status {status}");
    // zmesh's own STOP event is the last thing it prints.
    zm.wait_for(T, |e| e["event"] == "STOP" && e["peer"] == z.as_str())
        .unwrap();
    assert!(py.stop().unwrap().success());
}

/// Check an expiry EXIT came when it should: not before the peer could have
/// gone silent for the expiry timeout (the last beacon can be up to one beacon
/// interval before the kill), not much after it.
fn assert_expiry_timing(took: Duration, who: &str) {
    let earliest = EXPIRED - BEACON_INTERVAL - Duration::from_millis(200);
    let latest = EXPIRED + BEACON_INTERVAL + Duration::from_millis(1500);
    assert!(
        took >= earliest && took <= latest,
        "{who}: EXIT {took:?} after the kill, expected between {earliest:?} and {latest:?}"
    );
}

/// pyre SIGKILLed (no port-0 beacon): zmesh, with short timeouts, reports
/// EVASIVE and then EXIT by expiry.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_pyre_expires_on_zmesh() {
    require_netns();
    let (mut zm, mut py, _z, p) = pair(
        5833,
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
        &[],
    );
    // Alive and well for longer than the expiry first (beacons + pings keep it).
    let quiet = zm.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "zmesh expired a live pyre: {quiet:?}"
    );
    let t0 = Instant::now();
    py.kill();
    let e = zm.wait_event(T, "EXIT", Some(&p)).unwrap();
    let took = t0.elapsed();
    println!("pyre killed -> EXIT on zmesh: {} ms", ms(took));
    assert_eq!(e["name"], "py2");
    assert_expiry_timing(took, "zmesh observing pyre");
    let evasive = zm
        .history()
        .iter()
        .position(|e| e["event"] == "EVASIVE" && e["peer"] == p.as_str());
    let exit = zm
        .history()
        .iter()
        .position(|e| e["event"] == "EXIT" && e["peer"] == p.as_str());
    assert!(
        evasive.is_some() && evasive < exit,
        "zmesh should report EVASIVE before EXIT: {:?}",
        zm.history()
    );
    assert!(zm.stop().unwrap().success());
}

/// zmesh SIGKILLed: pyre, with short timeouts, reports EXIT by expiry.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_zmesh_expires_on_pyre() {
    require_netns();
    let (mut zm, mut py, z, _p) = pair(
        5834,
        &[],
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
    );
    let quiet = py.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "pyre expired a live zmesh: {quiet:?}"
    );
    let t0 = Instant::now();
    zm.kill();
    let e = py.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    println!("zmesh killed -> EXIT on pyre: {} ms", ms(took));
    assert_eq!(e["name"], "zm1");
    assert_expiry_timing(took, "pyre observing zmesh");
    assert!(py.stop().unwrap().success());
}

/// pyre killed and restarted (a new process: new UUID, new ephemeral port):
/// zmesh sees EXIT of the old UUID (by expiry) and ENTER of the new one, and
/// the two talk again.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_pyre_is_exit_then_enter_on_zmesh() {
    require_netns();
    let port = 5835;
    let (mut zm, mut py, z, p_old) = pair(
        port,
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
        &[],
    );
    zm.join("CHAT");
    py.join("CHAT");
    zm.wait_event(T, "JOIN", Some(&p_old)).unwrap();

    let t0 = Instant::now();
    py.kill();
    let mut py2 = Agent::spawn(
        "zmesh-h2",
        AgentKind::Pyre,
        "py2",
        port,
        &[("X-Impl", "pyre-gevent"), ("X-Life", "2")],
        &[],
    );
    let p_new = py2.ready();
    assert_ne!(p_new.uuid, p_old, "a new pyre process has a new UUID");
    let exit = zm.wait_event(T, "EXIT", Some(&p_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], "py2");
    let enter = zm.wait_event(T, "ENTER", Some(&p_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(
        &enter,
        "py2",
        &[("X-Impl", "pyre-gevent"), ("X-Life", "2")],
        &p_new.endpoint,
    );
    println!(
        "pyre restart: EXIT(old) {} ms, ENTER(new) {} ms after the kill",
        ms(exit_at),
        ms(enter_at)
    );
    // The old one expired (pyre cannot reuse its endpoint, so no purge).
    assert_expiry_timing(exit_at, "zmesh observing the old pyre");
    // The old UUID is gone for good: exactly one EXIT, and no ENTER again.
    let old_events: Vec<&Value> = zm
        .history()
        .iter()
        .filter(|e| e["peer"] == p_old.as_str() && (e["event"] == "EXIT" || e["event"] == "ENTER"))
        .collect();
    assert_eq!(
        old_events.len(),
        2,
        "old pyre: one ENTER, one EXIT: {old_events:?}"
    );

    // The new pyre sees zmesh (with its groups) and they talk.
    py2.wait_event(T, "ENTER", Some(&z)).unwrap();
    py2.wait_for(T, |e| {
        e["event"] == "JOIN" && e["peer"] == z.as_str() && e["group"] == "CHAT"
    })
    .unwrap();
    py2.whisper(&z, &["back", "again"]);
    let e = zm.wait_event(T, "WHISPER", Some(&p_new.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["back", "again"]));
    zm.whisper(&p_new.uuid, &["welcome", "back"]);
    let e = py2.wait_event(T, "WHISPER", Some(&z)).unwrap();
    assert_eq!(e["frames"], json!(["welcome", "back"]));
    assert!(py2.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// zmesh killed and restarted *on the same TCP port* (`--tcp-port`): pyre sees
/// the new UUID at the old endpoint, purges the old peer (EXIT right away,
/// pyre's `purge_peer`) and enters the new one; they talk again.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_zmesh_on_same_endpoint_is_exit_then_enter_on_pyre() {
    require_netns();
    let port = 5836;
    // Fixed inbox port below the ephemeral range (no clash with outgoing connections).
    let tcp_port = "17836";
    let (mut zm, mut py, z_old, p) = pair(port, &["--tcp-port", tcp_port], &[]);
    let t0 = Instant::now();
    zm.kill();
    let mut zm2 = Agent::spawn(
        "zmesh-h1",
        AgentKind::Zmesh,
        "zm1",
        port,
        &ZMESH_HEADERS,
        &["--tcp-port", tcp_port],
    );
    let z_new = zm2.ready();
    assert_ne!(z_new.uuid, z_old);
    assert!(
        z_new.endpoint.ends_with(&format!(":{tcp_port}")),
        "{z_new:?}"
    );
    let exit = py.wait_event(T, "EXIT", Some(&z_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], "zm1");
    let enter = py.wait_event(T, "ENTER", Some(&z_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(&enter, "zm1", &ZMESH_HEADERS_ON_WIRE, &z_new.endpoint);
    println!(
        "zmesh restart on the same endpoint: EXIT(old) {} ms, ENTER(new) {} ms after the kill",
        ms(exit_at),
        ms(enter_at)
    );
    // Purged at the first sighting of the new UUID, long before pyre's 30 s expiry.
    assert!(
        exit_at < Duration::from_secs(5),
        "EXIT(old) took {exit_at:?}"
    );

    zm2.wait_event(T, "ENTER", Some(&p)).unwrap();
    zm2.whisper(&p, &["same", "place"]);
    let e = py.wait_event(T, "WHISPER", Some(&z_new.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["same", "place"]));
    py.whisper(&z_new.uuid, &["new", "face"]);
    let e = zm2.wait_event(T, "WHISPER", Some(&p)).unwrap();
    assert_eq!(e["frames"], json!(["new", "face"]));
    assert!(zm2.stop().unwrap().success());
    assert!(py.stop().unwrap().success());
}
