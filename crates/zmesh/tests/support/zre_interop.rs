//! Shared ZRE interop scenarios: a `zmesh` agent against another ZRE
//! implementation (pyre-gevent, zyre.js).
//!
//! `interop_pyre.rs` and `interop_zyrejs.rs` run the same scenarios; only the
//! peer differs. A [`ZrePeer`] describes that peer: how it is started, what
//! headers it announces and what a correct node receives from it, and the
//! quirks the scenarios must account for (single-frame content, whether a
//! restarted peer can get its old endpoint back, whether it purges a peer whose
//! endpoint is reused, how it reports an expiry). Each scenario function is one
//! test body; the test files hold the per-implementation parameters, the test
//! names and the documentation of each implementation's quirks.
//!
//! Topology: the `zmesh` agent runs in `zmesh-h1` (10.77.0.11), the peer in
//! `zmesh-h2` (10.77.0.12); every test uses its own beacon port so tests can
//! run concurrently in the same namespaces.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Agent, AgentKind};

/// Timeout for events that should come promptly (covers pyre's ~2 s start-up).
pub const T: Duration = Duration::from_secs(15);

/// A polite stop must be seen as EXIT within this long.
pub const POLITE_EXIT: Duration = Duration::from_secs(1);

/// Short liveness timeouts given to the observing side in the kill tests.
pub const EVASIVE_MS: &str = "500";
/// Short expiry given to the observing side in the kill tests, as a CLI argument.
pub const EXPIRED_MS: &str = "2000";
/// [`EXPIRED_MS`] as a duration.
pub const EXPIRED: Duration = Duration::from_millis(2000);

/// Beacon interval of every implementation here (1 s).
pub const BEACON_INTERVAL: Duration = Duration::from_secs(1);

/// Headers the zmesh side announces: plain, UTF-8 and with `=`/spaces in the value.
pub const ZMESH_HEADERS: [(&str, &str); 3] = [
    ("X-Impl", "zmesh"),
    ("X-Greeting", "grüß dich ✓"),
    ("X-Expr", "a=b c=d"),
];

/// The headers zmesh actually puts in its HELLO: ours plus `X-ZMESH-CAPS` (the
/// layers it runs, added by zmesh-core's driver) and `X-ZMESH: 1` (added by the
/// zre engine: its capability marker, see `zre::engine`).
pub const ZMESH_HEADERS_ON_WIRE: [(&str, &str); 7] = [
    ("X-Impl", "zmesh"),
    ("X-Greeting", "grüß dich ✓"),
    ("X-Expr", "a=b c=d"),
    ("X-ZMESH-CAPS", "ctl,req,ev,svc"),
    ("X-ZMESH", "1"),
    // The same-host fast path (docs/protocol.md §9): plain peers just carry them.
    ("X-ZMESH-IPC", "*"),
    ("X-ZMESH-HOST", "*"),
];

/// Name of the zmesh agent in every scenario.
const ZMESH_NAME: &str = "zm1";

/// The other ZRE implementation a scenario runs against, with its quirks.
pub struct ZrePeer {
    /// Which agent to start.
    pub kind: AgentKind,
    /// Human-readable name for messages, e.g. `"zyre.js"`.
    pub label: &'static str,
    /// Node name of the peer agent.
    pub name: &'static str,
    /// Headers the peer announces.
    pub headers: &'static [(&'static str, &'static str)],
    /// What a correct ZRE node receives for [`ZrePeer::headers`] (differs when
    /// the peer mis-encodes them on the wire).
    pub headers_received: &'static [(&'static str, &'static str)],
    /// Headers of the restarted peer (ASCII only, received as sent).
    pub restart_headers: &'static [(&'static str, &'static str)],
    /// Whether the peer sends and delivers multi-frame content. If not, it
    /// sends one frame and keeps only the first frame of what it receives.
    pub multi_frame: bool,
    /// Whether a restarted peer can get its predecessor's endpoint back (then
    /// zmesh purges the old UUID at once instead of expiring it).
    pub may_reuse_endpoint: bool,
    /// Whether the peer purges a known peer when a new UUID shows up at its
    /// endpoint (C Zyre and pyre do; zyre.js does not).
    pub purges_reused_endpoint: bool,
    /// The `reason` the peer's agent gives on an EXIT by expiry, if any.
    pub expiry_reason: Option<&'static str>,
}

/// Milliseconds of a duration, for the timing lines the tests print.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Assert an ENTER event carries `name`, exactly `headers` (a value `*` stands for any value
/// that is there) and `endpoint`.
pub fn assert_enter(ev: &Value, name: &str, headers: &[(&str, &str)], endpoint: &str) {
    assert_eq!(ev["name"], name, "ENTER name: {ev}");
    let mut want = serde_json::Map::new();
    for (k, v) in headers {
        let v = match (*v, ev["headers"][*k].as_str()) {
            ("*", Some(got)) => got,
            _ => v,
        };
        want.insert(k.to_string(), Value::String(v.to_string()));
    }
    assert_eq!(ev["headers"], Value::Object(want), "ENTER headers: {ev}");
    assert_eq!(ev["endpoint"], endpoint, "ENTER endpoint: {ev}");
}

/// Check an expiry EXIT came when it should: not before the peer could have
/// gone silent for the expiry timeout (the last beacon can be up to one beacon
/// interval before the kill), not much after it.
pub fn assert_expiry_timing(took: Duration, expired: Duration, who: &str) {
    let earliest = expired - BEACON_INTERVAL - Duration::from_millis(200);
    let latest = expired + BEACON_INTERVAL + Duration::from_millis(1500);
    assert!(
        took >= earliest && took <= latest,
        "{who}: EXIT {took:?} after the kill, expected between {earliest:?} and {latest:?}"
    );
}

/// Index of the first event in `history` matching `pred`.
pub fn position(history: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    history.iter().position(pred)
}

/// Wait on `agent` for a `event` (JOIN/LEAVE) of `peer` for `group`.
fn wait_group_event(agent: &mut Agent, event: &str, peer: &str, group: &str) -> Value {
    agent
        .wait_for(T, |e| {
            e["event"] == event && e["peer"] == peer && e["group"] == group
        })
        .unwrap()
}

/// Start the zmesh agent in h1.
fn spawn_zmesh(port: u16, args: &[&str]) -> Agent {
    Agent::spawn(
        "zmesh-h1",
        AgentKind::Zmesh,
        ZMESH_NAME,
        port,
        &ZMESH_HEADERS,
        args,
    )
}

/// Start `peer` in h2 with `headers` (the support module serialises zyre.js
/// start-ups per namespace).
fn spawn_peer(peer: &ZrePeer, port: u16, headers: &[(&str, &str)], args: &[&str]) -> Agent {
    Agent::spawn("zmesh-h2", peer.kind, peer.name, port, headers, args)
}

/// Start the zmesh agent (h1) and a `peer` agent (h2) and wait until each has
/// seen the other's ENTER. Returns (zmesh, peer, zmesh uuid, peer uuid).
pub fn pair(
    peer: &ZrePeer,
    port: u16,
    zmesh_args: &[&str],
    peer_args: &[&str],
) -> (Agent, Agent, String, String) {
    let mut zm = spawn_zmesh(port, zmesh_args);
    let mut pa = spawn_peer(peer, port, peer.headers, peer_args);
    let z = zm.uuid();
    let p = pa.uuid();
    zm.wait_event(T, "ENTER", Some(&p)).unwrap();
    pa.wait_event(T, "ENTER", Some(&z)).unwrap();
    (zm, pa, z, p)
}

/// ENTER both ways with names, headers and endpoints; JOIN (in HELLO and
/// later) both ways; WHISPER and SHOUT both ways (multi-frame where the peer
/// supports it); ordered bursts; LEAVE both ways; no delivery after LEAVE.
pub fn full_exchange(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let started = Instant::now();
    let mut zm = spawn_zmesh(port, &[]);
    let m = zm.ready();
    // Joined before the peer exists: the peer learns it from zmesh's HELLO.
    zm.join("EARLY-M");
    let mut pa = spawn_peer(peer, port, peer.headers, &[]);
    let p = pa.ready();
    // Joined right away: in the peer's HELLO or as a JOIN message, depending on
    // timing; either way zmesh must report it after the ENTER.
    pa.join("EARLY-Z");
    assert!(m.endpoint.starts_with("tcp://10.77.0.11:"), "{m:?}");
    assert!(p.endpoint.starts_with("tcp://10.77.0.12:"), "{p:?}");

    // ENTER both ways, with every header name and value.
    let e = zm.wait_event(T, "ENTER", Some(&p.uuid)).unwrap();
    assert_enter(&e, peer.name, peer.headers_received, &p.endpoint);
    let e = pa.wait_event(T, "ENTER", Some(&m.uuid)).unwrap();
    assert_enter(&e, ZMESH_NAME, &ZMESH_HEADERS_ON_WIRE, &m.endpoint);
    println!(
        "discovery: both ENTERs {} ms after start",
        ms(started.elapsed())
    );

    // Early groups both ways; zmesh orders ENTER before the peer's JOINs
    // (zyre.js does not, see its test module docs, so that is not checked there).
    let e = wait_group_event(&mut pa, "JOIN", &m.uuid, "EARLY-M");
    assert_eq!(e["name"], ZMESH_NAME);
    let e = wait_group_event(&mut zm, "JOIN", &p.uuid, "EARLY-Z");
    assert_eq!(e["name"], peer.name);
    let enter = position(zm.history(), |e| {
        e["event"] == "ENTER" && e["peer"] == p.uuid.as_str()
    });
    let join = position(zm.history(), |e| {
        e["event"] == "JOIN" && e["peer"] == p.uuid.as_str()
    });
    assert!(
        enter < join,
        "zmesh must report ENTER before JOIN: {:?}",
        zm.history()
    );

    // JOIN messages both ways.
    zm.join("CHAT");
    pa.join("CHAT");
    let e = wait_group_event(&mut pa, "JOIN", &m.uuid, "CHAT");
    assert_eq!(e["name"], ZMESH_NAME);
    let e = wait_group_event(&mut zm, "JOIN", &p.uuid, "CHAT");
    assert_eq!(e["name"], peer.name);

    if peer.multi_frame {
        // Multi-frame WHISPER both ways (an empty frame and UTF-8 included).
        zm.whisper(&p.uuid, &["zm-w1", "", "zm-w3 ✓"]);
        pa.whisper(&m.uuid, &["py-w1", "py-w2", ""]);
        let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["zm-w1", "", "zm-w3 ✓"]));
        assert_eq!(e["name"], ZMESH_NAME);
        let e = zm.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["py-w1", "py-w2", ""]));
        assert_eq!(e["name"], peer.name);

        // Multi-frame SHOUT both ways.
        zm.shout("CHAT", &["zm-s1", "zm-s2", "", "zm-s4"]);
        pa.shout("CHAT", &["py-s1", "py-s2"]);
        let e = pa.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
        assert_eq!(e["group"], "CHAT");
        assert_eq!(e["frames"], json!(["zm-s1", "zm-s2", "", "zm-s4"]));
        let e = zm.wait_event(T, "SHOUT", Some(&p.uuid)).unwrap();
        assert_eq!(e["group"], "CHAT");
        assert_eq!(e["frames"], json!(["py-s1", "py-s2"]));
    } else {
        // WHISPER both ways. Peer -> zmesh: one frame (all it can send).
        pa.whisper(&m.uuid, &["zjs whisper ✓"]);
        let e = zm.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["zjs whisper ✓"]));
        assert_eq!(e["name"], peer.name);
        // zmesh -> peer: single frame arrives whole ...
        zm.whisper(&p.uuid, &["zm whisper ✓"]);
        let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["zm whisper ✓"]));
        assert_eq!(e["name"], ZMESH_NAME);
        // ... multi-frame arrives as its first frame only (zyre.js limitation), and
        // the next message is still delivered, in order.
        zm.whisper(&p.uuid, &["first of three", "second", "third"]);
        zm.whisper(&p.uuid, &["after multi-frame"]);
        let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["first of three"]));
        let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["after multi-frame"]));

        // SHOUT both ways (same rules for frames).
        pa.shout("CHAT", &["zjs shout"]);
        let e = zm.wait_event(T, "SHOUT", Some(&p.uuid)).unwrap();
        assert_eq!(e["group"], "CHAT");
        assert_eq!(e["frames"], json!(["zjs shout"]));
        zm.shout("CHAT", &["zm shout", "dropped by zyre.js"]);
        zm.shout("CHAT", &["zm shout 2"]);
        let e = pa.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
        assert_eq!(e["group"], "CHAT");
        assert_eq!(e["frames"], json!(["zm shout"]));
        let e = pa.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["zm shout 2"]));
    }

    // Messages keep their order: a burst of whispers arrives in sequence
    // (with a second frame where the peer keeps it).
    for i in 0..20 {
        let seq = format!("seq {i}");
        if peer.multi_frame {
            zm.whisper(&p.uuid, &[&seq, "tail"]);
        } else {
            zm.whisper(&p.uuid, &[&seq]);
        }
    }
    for i in 0..20 {
        let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        if peer.multi_frame {
            assert_eq!(e["frames"], json!([format!("seq {i}"), "tail"]));
        } else {
            assert_eq!(e["frames"], json!([format!("seq {i}")]));
        }
    }

    // LEAVE both ways.
    pa.leave("CHAT");
    let e = wait_group_event(&mut zm, "LEAVE", &p.uuid, "CHAT");
    assert_eq!(e["name"], peer.name);
    zm.leave("CHAT");
    zm.leave("EARLY-M");
    let e = wait_group_event(&mut pa, "LEAVE", &m.uuid, "CHAT");
    assert_eq!(e["name"], ZMESH_NAME);
    wait_group_event(&mut pa, "LEAVE", &m.uuid, "EARLY-M");

    // After the peer left CHAT, a zmesh SHOUT to CHAT is not delivered to it, but a
    // WHISPER still is (and comes after anything that was wrongly delivered).
    zm.shout("CHAT", &["nobody listens"]);
    zm.whisper(&p.uuid, &["after leave"]);
    let e = pa.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["after leave"]));
    let stray: Vec<&Value> = pa
        .history()
        .iter()
        .filter(|e| e["event"] == "SHOUT" && e["frames"] == json!(["nobody listens"]))
        .collect();
    assert!(
        stray.is_empty(),
        "{label} got a SHOUT after leaving: {stray:?}"
    );

    // The link is alive after all the leaves, the other way too.
    pa.whisper(&m.uuid, &["alive"]);
    let e = zm.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["alive"]));

    // No EXIT so far on either side.
    for a in [&zm, &pa] {
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
    println!("{label} full exchange: {} ms", ms(started.elapsed()));
}

/// A polite stop of the peer (its port-0 beacon) is an EXIT on zmesh within 1 s.
pub fn polite_stop_of_peer_is_exit_on_zmesh(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, _z, p) = pair(peer, port, &[], &[]);
    let t0 = Instant::now();
    pa.send(json!({"cmd": "stop"}));
    let e = zm.wait_event(T, "EXIT", Some(&p)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], peer.name);
    println!("{label} stop -> EXIT on zmesh: {} ms", ms(took));
    assert!(
        took < POLITE_EXIT,
        "EXIT took {took:?} after {label}'s stop"
    );
    assert!(pa.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// A polite stop of zmesh is an EXIT on the peer within 1 s (not an expiry).
pub fn polite_stop_of_zmesh_is_exit_on_peer(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, z, _p) = pair(peer, port, &[], &[]);
    let t0 = Instant::now();
    zm.send(json!({"cmd": "stop"}));
    let e = pa.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], ZMESH_NAME);
    assert!(
        e.get("reason").is_none(),
        "a polite stop is not an expiry: {e}"
    );
    println!("zmesh stop -> EXIT on {label}: {} ms", ms(took));
    assert!(took < POLITE_EXIT, "EXIT took {took:?} after zmesh's stop");
    // One EXIT only: a second leave beacon made zyre.js emit a second EXIT without a name
    // (and Pyre log "We don't know peer id"). Beacons after the stop would come within a
    // beacon interval; half a second more covers them.
    pa.drain_for(BEACON_INTERVAL + Duration::from_millis(500));
    let exits: Vec<&Value> = pa
        .history()
        .iter()
        .filter(|e| e["event"] == "EXIT")
        .collect();
    assert_eq!(
        exits.len(),
        1,
        "[{label}] EXITs after zmesh's stop: {exits:?}"
    );
    let status = zm.stop().unwrap();
    assert!(status.success(), "zmesh agent exit status {status}");
    // zmesh's own STOP event is the last thing it prints.
    zm.wait_for(T, |e| e["event"] == "STOP" && e["peer"] == z.as_str())
        .unwrap();
    assert!(pa.stop().unwrap().success());
}

/// The peer SIGKILLed (no port-0 beacon): zmesh, with short timeouts, reports
/// EVASIVE and then EXIT by expiry.
pub fn killed_peer_expires_on_zmesh(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, _z, p) = pair(
        peer,
        port,
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
        &[],
    );
    // Alive and well for longer than the expiry first (beacons + pings keep it).
    let quiet = zm.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "zmesh expired a live {label}: {quiet:?}"
    );
    let t0 = Instant::now();
    pa.kill();
    let e = zm.wait_event(T, "EXIT", Some(&p)).unwrap();
    let took = t0.elapsed();
    println!("{label} killed -> EXIT on zmesh: {} ms", ms(took));
    assert_eq!(e["name"], peer.name);
    assert_expiry_timing(took, EXPIRED, &format!("zmesh observing {label}"));
    let evasive = position(zm.history(), |e| {
        e["event"] == "EVASIVE" && e["peer"] == p.as_str()
    });
    let exit = position(zm.history(), |e| {
        e["event"] == "EXIT" && e["peer"] == p.as_str()
    });
    assert!(
        evasive.is_some() && evasive < exit,
        "zmesh should report EVASIVE before EXIT: {:?}",
        zm.history()
    );
    assert!(zm.stop().unwrap().success());
}

/// zmesh SIGKILLed: the peer, with short timeouts, reports EXIT by expiry
/// (with its agent's expiry `reason`, if it gives one).
pub fn killed_zmesh_expires_on_peer(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, z, _p) = pair(
        peer,
        port,
        &[],
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
    );
    let quiet = pa.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "{label} expired a live zmesh: {quiet:?}"
    );
    let t0 = Instant::now();
    zm.kill();
    let e = pa.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    println!("zmesh killed -> EXIT on {label}: {} ms", ms(took));
    assert_eq!(e["name"], ZMESH_NAME);
    if let Some(reason) = peer.expiry_reason {
        assert_eq!(e["reason"], reason, "{e}");
    }
    assert_expiry_timing(took, EXPIRED, &format!("{label} observing zmesh"));
    assert!(pa.stop().unwrap().success());
}

/// The peer killed and restarted (a new process: new UUID): zmesh sees EXIT of
/// the old UUID and ENTER of the new one, and the two talk again.
///
/// If the peer can get its predecessor's endpoint back and does, zmesh purges
/// the old UUID as soon as the new one shows up at that endpoint; otherwise
/// the old one expires. zmesh runs with `expired_ms` (long enough, where a
/// purge is possible, to tell the two cases apart by timing).
pub fn restarted_peer_is_exit_then_enter_on_zmesh(peer: &ZrePeer, port: u16, expired_ms: &str) {
    let label = peer.label;
    let expired = Duration::from_millis(expired_ms.parse().expect("expired_ms is a number"));
    let (mut zm, mut pa, z, p_old) = pair(
        peer,
        port,
        &["--evasive", EVASIVE_MS, "--expired", expired_ms],
        &[],
    );
    let old_endpoint = zm
        .history()
        .iter()
        .find(|e| e["event"] == "ENTER" && e["peer"] == p_old.as_str())
        .map(|e| e["endpoint"].as_str().unwrap_or_default().to_string())
        .unwrap();
    zm.join("CHAT");
    pa.join("CHAT");
    zm.wait_event(T, "JOIN", Some(&p_old)).unwrap();

    let t0 = Instant::now();
    pa.kill();
    let mut pa2 = spawn_peer(peer, port, peer.restart_headers, &[]);
    let p_new = pa2.ready();
    assert_ne!(p_new.uuid, p_old, "a new {label} process has a new UUID");
    let exit = zm.wait_event(T, "EXIT", Some(&p_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], peer.name);
    let enter = zm.wait_event(T, "ENTER", Some(&p_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(&enter, peer.name, peer.restart_headers, &p_new.endpoint);
    let same_endpoint = p_new.endpoint == old_endpoint;
    println!(
        "{label} restart ({}): EXIT(old) {} ms, ENTER(new) {} ms after the kill",
        if same_endpoint {
            "same endpoint: purge"
        } else {
            "new endpoint: expiry"
        },
        ms(exit_at),
        ms(enter_at)
    );
    if !peer.may_reuse_endpoint {
        // The old one expired (the peer cannot reuse its endpoint, so no purge).
        assert!(!same_endpoint, "{label} reused {old_endpoint}");
        assert_expiry_timing(
            exit_at,
            expired,
            &format!("zmesh observing the old {label}"),
        );
    } else if same_endpoint {
        // Purged when the new UUID appeared at the old endpoint: no later than
        // its ENTER, and well before the expiry could have fired.
        assert!(exit_at <= enter_at, "purge EXIT after the new ENTER");
        assert!(
            exit_at < expired - BEACON_INTERVAL - Duration::from_millis(200),
            "EXIT(old) {exit_at:?}: not a purge"
        );
    } else {
        assert_expiry_timing(
            exit_at,
            expired,
            &format!("zmesh observing the old {label}"),
        );
    }
    // The old UUID is gone for good: exactly one EXIT, and no ENTER again.
    let old_events: Vec<&Value> = zm
        .history()
        .iter()
        .filter(|e| e["peer"] == p_old.as_str() && (e["event"] == "EXIT" || e["event"] == "ENTER"))
        .collect();
    assert_eq!(
        old_events.len(),
        2,
        "old {label}: one ENTER, one EXIT: {old_events:?}"
    );

    // The new peer sees zmesh (with its groups) and they talk.
    pa2.wait_event(T, "ENTER", Some(&z)).unwrap();
    wait_group_event(&mut pa2, "JOIN", &z, "CHAT");
    let (back, welcome): (&[&str], &[&str]) = if peer.multi_frame {
        (&["back", "again"], &["welcome", "back"])
    } else {
        (&["back again"], &["welcome back"])
    };
    pa2.whisper(&z, back);
    let e = zm.wait_event(T, "WHISPER", Some(&p_new.uuid)).unwrap();
    assert_eq!(e["frames"], json!(back));
    zm.whisper(&p_new.uuid, welcome);
    let e = pa2.wait_event(T, "WHISPER", Some(&z)).unwrap();
    assert_eq!(e["frames"], json!(welcome));
    assert!(pa2.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// Whisper numbered probes from `from` to `to` until one arrives (each gets
/// `PROBE_WAIT` to arrive), failing after `deadline`. Returns how long it took.
/// For links that are expected to *converge*, not to work at once.
pub fn whisper_until_delivered(
    from: &mut Agent,
    to: &mut Agent,
    to_uuid: &str,
    from_uuid: &str,
    deadline: Duration,
) -> Duration {
    const PROBE_WAIT: Duration = Duration::from_millis(700);
    let t0 = Instant::now();
    for n in 0.. {
        let text = format!("probe {n} from {from_uuid}");
        from.whisper(to_uuid, &[&text]);
        let got = to.wait_for(PROBE_WAIT, |e| {
            e["event"] == "WHISPER" && e["peer"] == from_uuid && e["frames"] == json!([text])
        });
        if got.is_ok() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < deadline,
            "no whisper from {} reached {} within {deadline:?}\n{}\n{}",
            from.label(),
            to.label(),
            from.diagnostics(),
            to.diagnostics()
        );
    }
    unreachable!()
}

/// zmesh killed and restarted (new UUID) on the same TCP port `tcp_port`
/// (`--tcp-port`), seen by the peer: EXIT of the old UUID and ENTER of the new
/// one; then they talk again.
///
/// A peer that purges a peer whose endpoint is reused (pyre, C Zyre) reports
/// the EXIT at its first sighting of the new UUID, long before its 30 s
/// expiry, and the link works at once. A peer without that rule (zyre.js) runs
/// with a short expiry, flaps until it has expired the old UUID (see
/// `interop_zyrejs.rs`), then must converge and stay up.
pub fn restarted_zmesh_on_same_endpoint(peer: &ZrePeer, port: u16, tcp_port: &str) {
    let label = peer.label;
    let peer_args: &[&str] = if peer.purges_reused_endpoint {
        &[]
    } else {
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS]
    };
    let (mut zm, mut pa, z_old, p) = pair(peer, port, &["--tcp-port", tcp_port], peer_args);
    let t0 = Instant::now();
    zm.kill();
    let mut zm2 = spawn_zmesh(port, &["--tcp-port", tcp_port]);
    let z_new = zm2.ready();
    assert_ne!(z_new.uuid, z_old);
    assert!(
        z_new.endpoint.ends_with(&format!(":{tcp_port}")),
        "{z_new:?}"
    );
    let exit = pa.wait_event(T, "EXIT", Some(&z_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], ZMESH_NAME);
    let enter = pa.wait_event(T, "ENTER", Some(&z_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(&enter, ZMESH_NAME, &ZMESH_HEADERS_ON_WIRE, &z_new.endpoint);

    if peer.purges_reused_endpoint {
        println!(
            "zmesh restart on the same endpoint: EXIT(old) {} ms, ENTER(new) {} ms after the kill",
            ms(exit_at),
            ms(enter_at)
        );
        // Purged at the first sighting of the new UUID, long before the peer's 30 s expiry.
        assert!(
            exit_at < Duration::from_secs(5),
            "EXIT(old) took {exit_at:?}"
        );
        zm2.wait_event(T, "ENTER", Some(&p)).unwrap();
        zm2.whisper(&p, &["same", "place"]);
        let e = pa.wait_event(T, "WHISPER", Some(&z_new.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["same", "place"]));
        pa.whisper(&z_new.uuid, &["new", "face"]);
        let e = zm2.wait_event(T, "WHISPER", Some(&p)).unwrap();
        assert_eq!(e["frames"], json!(["new", "face"]));
    } else {
        assert!(
            exit_at < EXPIRED + BEACON_INTERVAL + Duration::from_millis(1500),
            "EXIT(old) took {exit_at:?}"
        );
        zm2.wait_event(T, "ENTER", Some(&p)).unwrap();

        // Converges once the peer has dropped the old peer (and its DEALER).
        let deadline = EXPIRED + Duration::from_secs(8);
        whisper_until_delivered(&mut zm2, &mut pa, &p, &z_new.uuid, deadline);
        whisper_until_delivered(&mut pa, &mut zm2, &z_new.uuid, &p, deadline);
        let converged_at = t0.elapsed();
        println!(
            "zmesh restart on the same endpoint ({label}): EXIT(old) {} ms ({}), ENTER(new) {} ms \
             after the kill; whispers flow again {} ms after the kill",
            ms(exit_at),
            exit["reason"].as_str().unwrap_or("disconnect"),
            ms(enter_at),
            ms(converged_at)
        );

        // And stays up: no more EXITs on either side for longer than the expiry.
        // (Events of the flapping phase, already received, are discarded first.)
        pa.drain_for(Duration::ZERO);
        zm2.drain_for(Duration::ZERO);
        let settle = EXPIRED + Duration::from_millis(500);
        let late_pa = pa.drain_for(settle);
        let late_zm = zm2.drain_for(Duration::ZERO);
        for (who, evs) in [(label, &late_pa), ("zmesh", &late_zm)] {
            let exits: Vec<&Value> = evs.iter().filter(|e| e["event"] == "EXIT").collect();
            assert!(exits.is_empty(), "{who}: EXIT after convergence: {exits:?}");
        }
        zm2.whisper(&p, &["steady"]);
        let e = pa.wait_event(T, "WHISPER", Some(&z_new.uuid)).unwrap();
        assert_eq!(e["frames"], json!(["steady"]));
    }
    assert!(zm2.stop().unwrap().success());
    assert!(pa.stop().unwrap().success());
}

/// Two zmesh nodes using request/reply beside a plain `peer` (Pyre or zyre.js):
/// requests between the zmesh nodes succeed; a request to the plain peer fails
/// with *no responders* at once (well under a second, nothing sent to it); the
/// plain peer never sees layer traffic (no WHISPER it was not explicitly sent)
/// and keeps both zmesh nodes (no EXIT); WHISPER/SHOUT with it still work.
pub fn requests_beside_plain_peer(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, z, p) = pair(peer, port, &[], &[]);
    let mut zm2 = Agent::spawn(
        "zmesh-h3",
        AgentKind::Zmesh,
        "zm2",
        port,
        &ZMESH_HEADERS,
        &[],
    );
    let z2 = zm2.uuid();
    zm.wait_event(T, "ENTER", Some(&z2)).unwrap();
    zm2.wait_event(T, "ENTER", Some(&z)).unwrap();
    pa.wait_event(T, "ENTER", Some(&z2)).unwrap();
    zm2.send(json!({"cmd": "serve", "pattern": "echo.**"}));
    zm2.wait_for(T, |e| e["event"] == "SERVING").unwrap();
    // A burst of requests zm1 -> zm2 (and replies) while the plain peer is in the mesh.
    for i in 0..20 {
        zm.send(json!({"cmd": "request", "peer": z2, "event": "echo.x",
                       "payload": format!("r{i}"), "tag": i}));
    }
    for i in 0..20 {
        let r = zm
            .wait_for(T, |e| e["event"] == "REPLY" && e["tag"] == i)
            .unwrap();
        assert_eq!(r["outcome"], "reply", "{r}");
        assert_eq!(r["payload"], format!("r{i}"), "{r}");
    }
    // Requests to any peer that serves the event: always zm2, never the plain peer (whose
    // headers match every filter here, but which runs no zmesh layer).
    for i in 0..10 {
        zm.send(json!({"cmd": "request", "target": "any", "event": "echo.y",
                       "payload": format!("a{i}"), "tag": format!("any{i}")}));
    }
    for i in 0..10 {
        let r = zm
            .wait_for(T, |e| {
                e["event"] == "REPLY" && e["tag"] == format!("any{i}")
            })
            .unwrap();
        assert_eq!(r["outcome"], "reply", "{r}");
        assert_eq!(
            r["peer"],
            json!(z2),
            "[{label}] any chose another peer: {r}"
        );
    }
    // Emitted events go only to subscribers: zm2 subscribes, zm emits until zm2's subscription
    // has reached it (within a round trip); the plain peer must get none of it (checked below).
    zm2.send(json!({"cmd": "on", "pattern": "news.*"}));
    zm2.wait_for(T, |e| e["event"] == "SUBSCRIBED").unwrap();
    let deadline = Instant::now() + T;
    loop {
        zm.send(json!({"cmd": "emit", "topic": "news.a", "payload": "n1"}));
        let r = zm.wait_for(T, |e| e["event"] == "EMIT").unwrap();
        if r["peers"] == 1 {
            break;
        }
        assert_eq!(
            r["peers"], 0,
            "[{label}] emit went to the plain peer too: {r}"
        );
        assert!(
            Instant::now() < deadline,
            "[{label}] zm2's subscription never reached zm"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ev = zm2
        .wait_for(T, |e| e["event"] == "EMITTED" && e["topic"] == "news.a")
        .unwrap();
    assert_eq!(ev["payload"], "n1", "{ev}");
    assert_eq!(ev["publisher"], json!(z), "{ev}");
    // A request to the plain peer: no responders, at once.
    zm.send(
        json!({"cmd": "request", "peer": p, "event": "echo.x", "payload": "x",
                   "timeout_ms": 10000, "tag": "plain"}),
    );
    let r = zm
        .wait_for(T, |e| e["event"] == "REPLY" && e["tag"] == "plain")
        .unwrap();
    assert_eq!(r["outcome"], "no_responders", "{r}");
    assert!(r["rtt_us"].as_u64().unwrap() < 1_000_000, "{r}");
    // The plain peer still talks with both zmesh nodes, and got nothing else.
    zm.whisper(&p, &["after-requests"]);
    let w = pa.wait_event(T, "WHISPER", Some(&z)).unwrap();
    assert_eq!(w["frames"][0], "after-requests", "[{label}] {w}");
    pa.whisper(&z2, &["hello zm2"]);
    let w = zm2.wait_event(T, "WHISPER", Some(&p)).unwrap();
    assert_eq!(w["frames"][0], "hello zm2");
    pa.drain_for(Duration::from_millis(500));
    let history = pa.history();
    let whispers = history
        .iter()
        .filter(|e| e["event"] == "WHISPER" || e["event"] == "SHOUT")
        .count();
    assert_eq!(whispers, 1, "[{label}] saw layer traffic: {history:?}");
    assert!(
        !history.iter().any(|e| e["event"] == "EXIT"),
        "[{label}] dropped a zmesh node: {history:?}"
    );
}

/// Whispers in a sequence-wrap run, each way: more than the 65,535 sequence numbers of a ZRE
/// session, so both directions pass the point where implementations wrap differently (docs/zre.md
/// §4.4: C Zyre and zmesh 65535 -> 0, Pyre and zyre.js 65534 -> 0).
pub const WRAP_RUN: u64 = 70_100;

/// Whispers in flight per direction in a wrap run: below pyre's send high-water mark (its
/// PEER_EXPIRED × 100 = 3,000 at the default expiry), past which pyre drops the connection.
const WRAP_CHUNK: u64 = 2_000;

/// More than 70,000 WHISPERs each way, both directions at once, in numbered runs: every one
/// arrives, in order, and neither side drops the other (no EXIT) across the sequence wrap; the
/// link still works both ways afterwards.
pub fn sequence_wrap_both_ways(peer: &ZrePeer, port: u16) {
    let label = peer.label;
    let (mut zm, mut pa, z, p) = pair(peer, port, &[], &[]);
    let t0 = Instant::now();
    let mut from = 0;
    while from < WRAP_RUN {
        let count = WRAP_CHUNK.min(WRAP_RUN - from);
        zm.send(json!({"cmd": "whispers", "peer": p, "prefix": "z", "from": from, "count": count}));
        pa.send(json!({"cmd": "whispers", "peer": z, "prefix": "p", "from": from, "count": count}));
        for (rx, sender, prefix) in [(&mut pa, &z, "z"), (&mut zm, &p, "p")] {
            for i in from..from + count {
                let e = rx
                    .wait_event(T, "WHISPER", Some(sender))
                    .unwrap_or_else(|e| {
                        panic!("[{label}] whisper {prefix}{i} of {WRAP_RUN} did not arrive: {e}")
                    });
                assert_eq!(
                    e["frames"],
                    json!([format!("{prefix}{i}")]),
                    "[{label}] out of order at {prefix}{i}"
                );
            }
        }
        from += count;
    }
    let took = t0.elapsed();
    println!(
        "{label}: {WRAP_RUN} whispers each way, all in order, in {} ms",
        ms(took)
    );
    // Alive on both sides: no EXIT, and each lists the other.
    for a in [&zm, &pa] {
        let exits: Vec<&Value> = a
            .history()
            .iter()
            .filter(|e| e["event"] == "EXIT")
            .collect();
        assert!(
            exits.is_empty(),
            "[{}] EXIT during the run: {exits:?}",
            a.label()
        );
    }
    zm.send(json!({"cmd": "peers"}));
    let peers = zm.wait_event(T, "PEERS", None).unwrap();
    assert_eq!(peers["peers"], json!([p]), "zmesh's peers");
    pa.send(json!({"cmd": "peers"}));
    let peers = pa.wait_event(T, "PEERS", None).unwrap();
    assert_eq!(peers["peers"], json!([z]), "{label}'s peers");
    // And the link goes on after the wrap.
    zm.whisper(&p, &["after the wrap"]);
    let e = pa.wait_event(T, "WHISPER", Some(&z)).unwrap();
    assert_eq!(e["frames"], json!(["after the wrap"]));
    pa.whisper(&z, &["after the wrap too"]);
    let e = zm.wait_event(T, "WHISPER", Some(&p)).unwrap();
    assert_eq!(e["frames"], json!(["after the wrap too"]));
    assert!(pa.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}
