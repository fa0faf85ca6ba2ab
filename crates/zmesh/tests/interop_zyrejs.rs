//! ZRE interop proof: the `zmesh` node against zyre.js 1.3.0.
//!
//! Every test runs a `zmesh` agent (the CLI in `agent` mode) in `zmesh-h1` and
//! zyre.js agents in `zmesh-h2` on the private 10.77.0.0/24 bridge of
//! `interop/netns.sh`, each test on its own beacon port so the tests can run
//! concurrently in the same namespaces.
//!
//! What is proven, both ways unless noted:
//!
//! * ENTER with the peer's name, every header (names and values, UTF-8 too) and
//!   the endpoint it announced in its READY;
//! * JOIN (groups carried in HELLO and groups joined later), WHISPER, SHOUT,
//!   LEAVE;
//! * a polite stop is seen as EXIT within 1 s (measured from the stop command
//!   to the EXIT event on the other side);
//! * a SIGKILLed peer is seen as EXIT after the observer's (short) expiry;
//! * a killed and restarted peer (new process, new UUID: neither zyre.js nor
//!   the zmesh CLI lets us choose one) is seen as EXIT of the old UUID and ENTER
//!   of the new one, and the new pair can talk.
//!
//! What zyre.js 1.3.0 cannot do, and how the tests deal with it (from its
//! source, `interop/node_modules/zyre.js/lib`, and `interop/zyrejs_agent.js`):
//!
//! * **Single-frame content only.** Its `whisper`/`shout` send exactly one
//!   content frame, and its receive path (`_messageHandler(id, msg, frame)`)
//!   keeps only the first content frame and silently drops the rest. So
//!   zyre.js -> zmesh is single-frame; zmesh -> zyre.js multi-frame messages
//!   arrive truncated to their first frame. We assert exactly that (and that
//!   later messages still flow), which proves zmesh's multi-frame framing does
//!   not confuse it. Full multi-frame interop is proven against pyre.
//! * SHOUTs reach a zyre.js node only for groups it has joined itself.
//! * It reports a peer's HELLO groups as JOINs *before* that peer's ENTER.
//! * Its expiry event is `expired` (the agent maps it to EXIT with
//!   `"reason":"expired"`); it emits no EVASIVE/SILENT/STOP.
//! * It has no "purge peer at a reused endpoint" rule, and its TCP mailbox port
//!   is the first free one from 49152 up, so a restarted zyre.js often gets its
//!   predecessor's endpoint back (then zmesh purges the old UUID at once).
//! * **Mailbox port race.** `ZHelper.getFreePort` probes a port with a throwaway
//!   listener and closes it; the ROUTER is bound later and the bind error is
//!   ignored (`socket.bind(endpoint, () => resolve())`). Two zyre.js nodes
//!   starting at the same time in one namespace can therefore both pick 49152:
//!   the second one is not listening at all but advertises the first one's
//!   endpoint, so its peers' HELLOs land on the *other* node and the tests of
//!   different beacon ports cross-talk (peers flapping ENTER/EVASIVE/SILENT/EXIT,
//!   EXITs on sequence errors). [`spawn_zyrejs`] serialises zyre.js start-ups
//!   (until READY, i.e. until its ROUTER is bound) with a lock file per
//!   namespace, which also covers other test binaries using the same helper.
//!
//! Run: `bash scripts/test.sh -p zmesh --test interop_zyrejs`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{require_netns, Agent, AgentKind};

/// Timeout for events that should come promptly.
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

/// Headers the zyre.js side announces (zyre.js encodes UTF-8 lengths correctly).
const ZJS_HEADERS: [(&str, &str); 3] = [
    ("X-Impl", "zyre.js"),
    ("X-Color", "verde ✓"),
    ("X-Expr", "x=1 y=2"),
];

/// Start a zyre.js agent (the support module serialises zyre.js start-ups per namespace).
fn spawn_zyrejs(
    netns: &str,
    name: &str,
    port: u16,
    headers: &[(&str, &str)],
    extra_args: &[&str],
) -> Agent {
    Agent::spawn(netns, AgentKind::ZyreJs, name, port, headers, extra_args)
}

/// Milliseconds of a duration, for the timing lines the tests print.
fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Start the zmesh agent (h1) and a zyre.js agent (h2) and wait until each has
/// seen the other's ENTER. Returns (zmesh, zyre.js, zmesh uuid, zyre.js uuid).
fn pair(port: u16, zmesh_args: &[&str], zjs_args: &[&str]) -> (Agent, Agent, String, String) {
    let mut zm = Agent::spawn(
        "zmesh-h1",
        AgentKind::Zmesh,
        "zm1",
        port,
        &ZMESH_HEADERS,
        zmesh_args,
    );
    let mut zj = spawn_zyrejs("zmesh-h2", "zjs2", port, &ZJS_HEADERS, zjs_args);
    let z = zm.uuid();
    let j = zj.uuid();
    zm.wait_event(T, "ENTER", Some(&j)).unwrap();
    zj.wait_event(T, "ENTER", Some(&z)).unwrap();
    (zm, zj, z, j)
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

/// Index of the first event in `history` matching `pred`.
fn position(history: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    history.iter().position(pred)
}

/// ENTER both ways with names, headers and endpoints; JOIN (in HELLO and
/// later) both ways; WHISPER and SHOUT both ways (multi-frame from zmesh,
/// truncated to one frame by zyre.js); LEAVE both ways.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn zyrejs_enter_join_whisper_shout_leave_both_ways() {
    require_netns();
    let port = 5840;
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
    // Joined before zyre.js exists: zyre.js learns it from zmesh's HELLO.
    zm.join("EARLY-M");
    let mut zj = spawn_zyrejs("zmesh-h2", "zjs2", port, &ZJS_HEADERS, &[]);
    let j = zj.ready();
    // Joined right away: in zyre.js's HELLO or as a JOIN message, depending on
    // timing; either way zmesh must report it after the ENTER.
    zj.join("EARLY-Z");
    assert!(m.endpoint.starts_with("tcp://10.77.0.11:"), "{m:?}");
    assert!(j.endpoint.starts_with("tcp://10.77.0.12:"), "{j:?}");

    // ENTER both ways, with every header name and value.
    let e = zm.wait_event(T, "ENTER", Some(&j.uuid)).unwrap();
    assert_enter(&e, "zjs2", &ZJS_HEADERS, &j.endpoint);
    let e = zj.wait_event(T, "ENTER", Some(&m.uuid)).unwrap();
    assert_enter(&e, "zm1", &ZMESH_HEADERS_ON_WIRE, &m.endpoint);
    println!(
        "discovery: both ENTERs {} ms after start",
        ms(started.elapsed())
    );

    // Early groups both ways; zmesh orders ENTER before the peer's JOINs
    // (zyre.js does not, see the module docs, so that is not checked there).
    let e = zj
        .wait_for(T, |e| {
            e["event"] == "JOIN" && e["peer"] == m.uuid.as_str() && e["group"] == "EARLY-M"
        })
        .unwrap();
    assert_eq!(e["name"], "zm1");
    let e = zm
        .wait_for(T, |e| {
            e["event"] == "JOIN" && e["peer"] == j.uuid.as_str() && e["group"] == "EARLY-Z"
        })
        .unwrap();
    assert_eq!(e["name"], "zjs2");
    let enter = position(zm.history(), |e| {
        e["event"] == "ENTER" && e["peer"] == j.uuid.as_str()
    });
    let join = position(zm.history(), |e| {
        e["event"] == "JOIN" && e["peer"] == j.uuid.as_str()
    });
    assert!(
        enter < join,
        "zmesh must report ENTER before JOIN: {:?}",
        zm.history()
    );

    // JOIN messages both ways.
    zm.join("CHAT");
    zj.join("CHAT");
    zj.wait_for(T, |e| {
        e["event"] == "JOIN" && e["peer"] == m.uuid.as_str() && e["group"] == "CHAT"
    })
    .unwrap();
    zm.wait_for(T, |e| {
        e["event"] == "JOIN" && e["peer"] == j.uuid.as_str() && e["group"] == "CHAT"
    })
    .unwrap();

    // WHISPER both ways. zyre.js -> zmesh: one frame (all it can send).
    zj.whisper(&m.uuid, &["zjs whisper ✓"]);
    let e = zm.wait_event(T, "WHISPER", Some(&j.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["zjs whisper ✓"]));
    assert_eq!(e["name"], "zjs2");
    // zmesh -> zyre.js: single frame arrives whole ...
    zm.whisper(&j.uuid, &["zm whisper ✓"]);
    let e = zj.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["zm whisper ✓"]));
    assert_eq!(e["name"], "zm1");
    // ... multi-frame arrives as its first frame only (zyre.js limitation), and
    // the next message is still delivered, in order.
    zm.whisper(&j.uuid, &["first of three", "second", "third"]);
    zm.whisper(&j.uuid, &["after multi-frame"]);
    let e = zj.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["first of three"]));
    let e = zj.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["after multi-frame"]));

    // SHOUT both ways (same rules for frames).
    zj.shout("CHAT", &["zjs shout"]);
    let e = zm.wait_event(T, "SHOUT", Some(&j.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], json!(["zjs shout"]));
    zm.shout("CHAT", &["zm shout", "dropped by zyre.js"]);
    zm.shout("CHAT", &["zm shout 2"]);
    let e = zj.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], json!(["zm shout"]));
    let e = zj.wait_event(T, "SHOUT", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["zm shout 2"]));

    // A burst keeps its order.
    for i in 0..20 {
        zm.whisper(&j.uuid, &[&format!("seq {i}")]);
    }
    for i in 0..20 {
        let e = zj.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
        assert_eq!(e["frames"], json!([format!("seq {i}")]));
    }

    // LEAVE both ways.
    zj.leave("CHAT");
    let e = zm
        .wait_for(T, |e| {
            e["event"] == "LEAVE" && e["peer"] == j.uuid.as_str() && e["group"] == "CHAT"
        })
        .unwrap();
    assert_eq!(e["name"], "zjs2");
    zm.leave("CHAT");
    zm.leave("EARLY-M");
    let e = zj
        .wait_for(T, |e| {
            e["event"] == "LEAVE" && e["peer"] == m.uuid.as_str() && e["group"] == "CHAT"
        })
        .unwrap();
    assert_eq!(e["name"], "zm1");
    zj.wait_for(T, |e| {
        e["event"] == "LEAVE" && e["peer"] == m.uuid.as_str() && e["group"] == "EARLY-M"
    })
    .unwrap();

    // The link is alive after all the leaves.
    zj.whisper(&m.uuid, &["alive"]);
    let e = zm.wait_event(T, "WHISPER", Some(&j.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["alive"]));

    for a in [&zm, &zj] {
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
    println!("zyre.js full exchange: {} ms", ms(started.elapsed()));
}

/// A polite stop of zyre.js (its port-0 beacon) is an EXIT on zmesh within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn zyrejs_polite_stop_is_exit_on_zmesh_within_1s() {
    require_netns();
    let (mut zm, mut zj, _z, j) = pair(5841, &[], &[]);
    let t0 = Instant::now();
    zj.send(json!({"cmd": "stop"}));
    let e = zm.wait_event(T, "EXIT", Some(&j)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], "zjs2");
    println!("zyre.js stop -> EXIT on zmesh: {} ms", ms(took));
    assert!(
        took < POLITE_EXIT,
        "EXIT took {took:?} after zyre.js's stop"
    );
    assert!(zj.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// A polite stop of zmesh is an EXIT on zyre.js within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn zmesh_polite_stop_is_exit_on_zyrejs_within_1s() {
    require_netns();
    let (mut zm, mut zj, z, _j) = pair(5842, &[], &[]);
    let t0 = Instant::now();
    zm.send(json!({"cmd": "stop"}));
    let e = zj.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    assert_eq!(e["name"], "zm1");
    assert!(
        e.get("reason").is_none(),
        "a polite stop is not an expiry: {e}"
    );
    println!("zmesh stop -> EXIT on zyre.js: {} ms", ms(took));
    assert!(took < POLITE_EXIT, "EXIT took {took:?} after zmesh's stop");
    let status = zm.stop().unwrap();
    assert!(status.success(), "zmesh agent exit status {status}");
    zm.wait_for(T, |e| e["event"] == "STOP" && e["peer"] == z.as_str())
        .unwrap();
    assert!(zj.stop().unwrap().success());
}

/// Check an expiry EXIT came when it should: not before the peer could have
/// gone silent for the expiry timeout (the last beacon can be up to one beacon
/// interval before the kill), not much after it.
fn assert_expiry_timing(took: Duration, expired: Duration, who: &str) {
    let earliest = expired - BEACON_INTERVAL - Duration::from_millis(200);
    let latest = expired + BEACON_INTERVAL + Duration::from_millis(1500);
    assert!(
        took >= earliest && took <= latest,
        "{who}: EXIT {took:?} after the kill, expected between {earliest:?} and {latest:?}"
    );
}

/// zyre.js SIGKILLed (no port-0 beacon): zmesh, with short timeouts, reports
/// EVASIVE and then EXIT by expiry.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_zyrejs_expires_on_zmesh() {
    require_netns();
    let (mut zm, mut zj, _z, j) = pair(
        5843,
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
        &[],
    );
    // Alive and well for longer than the expiry first (beacons + pings keep it).
    let quiet = zm.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "zmesh expired a live zyre.js: {quiet:?}"
    );
    let t0 = Instant::now();
    zj.kill();
    let e = zm.wait_event(T, "EXIT", Some(&j)).unwrap();
    let took = t0.elapsed();
    println!("zyre.js killed -> EXIT on zmesh: {} ms", ms(took));
    assert_eq!(e["name"], "zjs2");
    assert_expiry_timing(took, EXPIRED, "zmesh observing zyre.js");
    let evasive = position(zm.history(), |e| {
        e["event"] == "EVASIVE" && e["peer"] == j.as_str()
    });
    let exit = position(zm.history(), |e| {
        e["event"] == "EXIT" && e["peer"] == j.as_str()
    });
    assert!(
        evasive.is_some() && evasive < exit,
        "zmesh should report EVASIVE before EXIT: {:?}",
        zm.history()
    );
    assert!(zm.stop().unwrap().success());
}

/// zmesh SIGKILLed: zyre.js, with short timeouts, reports EXIT (its `expired`).
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_zmesh_expires_on_zyrejs() {
    require_netns();
    let (mut zm, mut zj, z, _j) = pair(
        5844,
        &[],
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
    );
    let quiet = zj.drain_for(EXPIRED + Duration::from_millis(500));
    assert!(
        !quiet.iter().any(|e| e["event"] == "EXIT"),
        "zyre.js expired a live zmesh: {quiet:?}"
    );
    let t0 = Instant::now();
    zm.kill();
    let e = zj.wait_event(T, "EXIT", Some(&z)).unwrap();
    let took = t0.elapsed();
    println!("zmesh killed -> EXIT on zyre.js: {} ms", ms(took));
    assert_eq!(e["name"], "zm1");
    assert_eq!(e["reason"], "expired", "{e}");
    assert_expiry_timing(took, EXPIRED, "zyre.js observing zmesh");
    assert!(zj.stop().unwrap().success());
}

/// zyre.js killed and restarted (new process, new UUID): zmesh sees EXIT of the
/// old UUID and ENTER of the new one, and they talk again.
///
/// If the new zyre.js got its predecessor's endpoint back (its mailbox port is
/// the first free one from 49152), zmesh purges the old UUID as soon as the new
/// one shows up at that endpoint; otherwise the old one expires. zmesh runs
/// with a 4 s expiry so the two cases are told apart by timing.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_zyrejs_is_exit_then_enter_on_zmesh() {
    require_netns();
    let port = 5845;
    let expired = Duration::from_millis(4000);
    let (mut zm, mut zj, z, j_old) = pair(port, &["--evasive", "500", "--expired", "4000"], &[]);
    let old_endpoint = zm
        .history()
        .iter()
        .find(|e| e["event"] == "ENTER" && e["peer"] == j_old.as_str())
        .map(|e| e["endpoint"].as_str().unwrap_or_default().to_string())
        .unwrap();
    zm.join("CHAT");
    zj.join("CHAT");
    zm.wait_event(T, "JOIN", Some(&j_old)).unwrap();

    let t0 = Instant::now();
    zj.kill();
    let mut zj2 = spawn_zyrejs(
        "zmesh-h2",
        "zjs2",
        port,
        &[("X-Impl", "zyre.js"), ("X-Life", "2")],
        &[],
    );
    let j_new = zj2.ready();
    assert_ne!(j_new.uuid, j_old, "a new zyre.js process has a new UUID");
    let exit = zm.wait_event(T, "EXIT", Some(&j_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], "zjs2");
    let enter = zm.wait_event(T, "ENTER", Some(&j_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(
        &enter,
        "zjs2",
        &[("X-Impl", "zyre.js"), ("X-Life", "2")],
        &j_new.endpoint,
    );
    let same_endpoint = j_new.endpoint == old_endpoint;
    println!(
        "zyre.js restart ({}): EXIT(old) {} ms, ENTER(new) {} ms after the kill",
        if same_endpoint {
            "same endpoint: purge"
        } else {
            "new endpoint: expiry"
        },
        ms(exit_at),
        ms(enter_at)
    );
    if same_endpoint {
        // Purged when the new UUID appeared at the old endpoint: no later than
        // its ENTER, and well before the expiry could have fired.
        assert!(exit_at <= enter_at, "purge EXIT after the new ENTER");
        assert!(
            exit_at < expired - BEACON_INTERVAL - Duration::from_millis(200),
            "EXIT(old) {exit_at:?}: not a purge"
        );
    } else {
        assert_expiry_timing(exit_at, expired, "zmesh observing the old zyre.js");
    }
    let old_events: Vec<&Value> = zm
        .history()
        .iter()
        .filter(|e| e["peer"] == j_old.as_str() && (e["event"] == "EXIT" || e["event"] == "ENTER"))
        .collect();
    assert_eq!(
        old_events.len(),
        2,
        "old zyre.js: one ENTER, one EXIT: {old_events:?}"
    );

    // The new zyre.js sees zmesh (with its groups) and they talk.
    zj2.wait_event(T, "ENTER", Some(&z)).unwrap();
    zj2.wait_for(T, |e| {
        e["event"] == "JOIN" && e["peer"] == z.as_str() && e["group"] == "CHAT"
    })
    .unwrap();
    zj2.whisper(&z, &["back again"]);
    let e = zm.wait_event(T, "WHISPER", Some(&j_new.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["back again"]));
    zm.whisper(&j_new.uuid, &["welcome back"]);
    let e = zj2.wait_event(T, "WHISPER", Some(&z)).unwrap();
    assert_eq!(e["frames"], json!(["welcome back"]));
    assert!(zj2.stop().unwrap().success());
    assert!(zm.stop().unwrap().success());
}

/// Whisper numbered probes from `from` to `to` until one arrives (each gets
/// `PROBE_WAIT` to arrive), failing after `deadline`. Returns how long it took.
/// For links that are expected to *converge*, not to work at once.
fn whisper_until_delivered(
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

/// zmesh killed and restarted (new UUID) on the same TCP port (`--tcp-port`),
/// seen by zyre.js: EXIT of the old UUID (by zyre.js's expiry, short here: it
/// has no purge rule) and ENTER of the new one; then the link converges and
/// stays up.
///
/// zyre.js quirk shown here (not a zmesh bug): without a purge, zyre.js keeps
/// the old peer's DEALER, which reconnects to the reused endpoint, i.e. to the
/// *new* zmesh, with the same identity as zyre.js's new DEALER. Under
/// ROUTER_HANDOVER (zmesh's inbox, like Zyre's and zyre.js's own ROUTER) the
/// two connections keep replacing each other, and PINGs numbered for the old
/// session arrive on the new one: zmesh drops the peer on the sequence gap
/// ("messages lost", as C Zyre does) and re-HELLOs it, and zyre.js drops zmesh
/// on the repeated HELLO ("wrong sequence (1), expected 2"). The flapping
/// (ENTER/EXIT on both sides) lasts until zyre.js expires the old UUID: 2 s
/// here, 30 s with zyre.js defaults. C Zyre and pyre purge the old peer when
/// the new one shows up at its endpoint, which avoids all of this (see the pyre
/// test of the same name).
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_zmesh_on_same_endpoint_is_exit_then_enter_on_zyrejs() {
    require_netns();
    let port = 5846;
    // Fixed inbox port below the ephemeral range (no clash with outgoing connections).
    let tcp_port = "17846";
    let (mut zm, mut zj, z_old, j) = pair(
        port,
        &["--tcp-port", tcp_port],
        &["--evasive", EVASIVE_MS, "--expired", EXPIRED_MS],
    );
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
    let exit = zj.wait_event(T, "EXIT", Some(&z_old)).unwrap();
    let exit_at = t0.elapsed();
    assert_eq!(exit["name"], "zm1");
    let enter = zj.wait_event(T, "ENTER", Some(&z_new.uuid)).unwrap();
    let enter_at = t0.elapsed();
    assert_enter(&enter, "zm1", &ZMESH_HEADERS_ON_WIRE, &z_new.endpoint);
    assert!(
        exit_at < EXPIRED + BEACON_INTERVAL + Duration::from_millis(1500),
        "EXIT(old) took {exit_at:?}"
    );
    zm2.wait_event(T, "ENTER", Some(&j)).unwrap();

    // Converges once zyre.js has dropped the old peer (and its DEALER).
    let deadline = EXPIRED + Duration::from_secs(8);
    whisper_until_delivered(&mut zm2, &mut zj, &j, &z_new.uuid, deadline);
    whisper_until_delivered(&mut zj, &mut zm2, &z_new.uuid, &j, deadline);
    let converged_at = t0.elapsed();
    println!(
        "zmesh restart on the same endpoint (zyre.js): EXIT(old) {} ms ({}), ENTER(new) {} ms \
         after the kill; whispers flow again {} ms after the kill",
        ms(exit_at),
        exit["reason"].as_str().unwrap_or("disconnect"),
        ms(enter_at),
        ms(converged_at)
    );

    // And stays up: no more EXITs on either side for longer than the expiry.
    // (Events of the flapping phase, already received, are discarded first.)
    zj.drain_for(Duration::ZERO);
    zm2.drain_for(Duration::ZERO);
    let settle = EXPIRED + Duration::from_millis(500);
    let late_zj = zj.drain_for(settle);
    let late_zm = zm2.drain_for(Duration::ZERO);
    for (who, evs) in [("zyre.js", &late_zj), ("zmesh", &late_zm)] {
        let exits: Vec<&Value> = evs.iter().filter(|e| e["event"] == "EXIT").collect();
        assert!(exits.is_empty(), "{who}: EXIT after convergence: {exits:?}");
    }
    zm2.whisper(&j, &["steady"]);
    let e = zj.wait_event(T, "WHISPER", Some(&z_new.uuid)).unwrap();
    assert_eq!(e["frames"], json!(["steady"]));
    assert!(zm2.stop().unwrap().success());
    assert!(zj.stop().unwrap().success());
}
