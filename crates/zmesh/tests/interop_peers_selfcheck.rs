//! Proves the interop harness (`tests/support`) against the real peers alone:
//! pyre-gevent in `zmesh-h1` and zyre.js in `zmesh-h2` must see each other
//! (ENTER with headers), exchange WHISPERs and SHOUTs both ways, and pyre must
//! see zyre.js leave (EXIT) when it stops. If this fails, interop failures of
//! zmesh itself are not to be trusted.

mod support;

use std::time::Duration;

use support::{require_netns, Agent, AgentKind};

const T: Duration = Duration::from_secs(15);

#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_and_zyrejs_talk_through_the_harness() {
    require_netns();
    let port = 5791;
    let mut pyre = Agent::spawn(
        "zmesh-h1",
        AgentKind::Pyre,
        "pyre1",
        port,
        &[("X-Impl", "pyre")],
        &[],
    );
    let mut zjs = Agent::spawn(
        "zmesh-h2",
        AgentKind::ZyreJs,
        "zjs2",
        port,
        &[("X-Impl", "zyre.js")],
        &[],
    );
    let p = pyre.ready();
    let z = zjs.ready();
    assert!(p.endpoint.starts_with("tcp://10.77.0.11:"), "{p:?}");
    assert!(z.endpoint.starts_with("tcp://10.77.0.12:"), "{z:?}");

    // ENTER both ways, with headers and the HELLO endpoint.
    let e = pyre.wait_event(T, "ENTER", Some(&z.uuid)).unwrap();
    assert_eq!(e["name"], "zjs2");
    assert_eq!(e["headers"]["X-Impl"], "zyre.js");
    assert_eq!(e["endpoint"], z.endpoint.as_str());
    let e = zjs.wait_event(T, "ENTER", Some(&p.uuid)).unwrap();
    assert_eq!(e["name"], "pyre1");
    assert_eq!(e["headers"]["X-Impl"], "pyre");
    assert_eq!(e["endpoint"], p.endpoint.as_str());

    // JOIN both ways.
    pyre.join("CHAT");
    zjs.join("CHAT");
    let e = pyre.wait_event(T, "JOIN", Some(&z.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    let e = zjs.wait_event(T, "JOIN", Some(&p.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");

    // WHISPER both ways.
    pyre.whisper(&z.uuid, &["from pyre"]);
    zjs.whisper(&p.uuid, &["from zyre.js"]);
    let e = zjs.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
    assert_eq!(e["frames"], serde_json::json!(["from pyre"]));
    let e = pyre.wait_event(T, "WHISPER", Some(&z.uuid)).unwrap();
    assert_eq!(e["frames"], serde_json::json!(["from zyre.js"]));

    // SHOUT both ways.
    pyre.shout("CHAT", &["pyre to CHAT"]);
    zjs.shout("CHAT", &["zyre.js to CHAT"]);
    let e = zjs.wait_event(T, "SHOUT", Some(&p.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], serde_json::json!(["pyre to CHAT"]));
    let e = pyre.wait_event(T, "SHOUT", Some(&z.uuid)).unwrap();
    assert_eq!(e["group"], "CHAT");
    assert_eq!(e["frames"], serde_json::json!(["zyre.js to CHAT"]));

    // Polite stop of zyre.js: its port-0 beacon makes pyre emit EXIT at once.
    let status = zjs.stop().unwrap();
    assert!(status.success(), "zyre.js agent exit status {status}");
    pyre.wait_event(T, "EXIT", Some(&z.uuid)).unwrap();

    // pyre emits STOP for itself on a polite stop.
    assert!(pyre.stop().unwrap().success());
    pyre.wait_event(T, "STOP", Some(&p.uuid)).unwrap();
}

/// The `Zmesh` agent kind starts the `zmesh` CLI with the argv of
/// `interop/README.md` (binary from `$ZMESH_BIN`, see `support::zmesh_bin`): it
/// gets READY and exchanges multi-frame whispers with pyre (which supports
/// multi-frame content). Full zmesh interop coverage lives in other test files.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn harness_drives_the_zmesh_cli_agent() {
    require_netns();
    let port = 5792;
    let mut pyre = Agent::spawn("zmesh-h1", AgentKind::Pyre, "pyre1", port, &[], &[]);
    let mut zm = Agent::spawn(
        "zmesh-h3",
        AgentKind::Zmesh,
        "zm3",
        port,
        &[("X-Impl", "zmesh")],
        &["--evasive", "5000", "--expired", "30000"],
    );
    let p = pyre.ready();
    let m = zm.ready();
    assert_eq!(m.name, "zm3");

    let e = pyre.wait_event(T, "ENTER", Some(&m.uuid)).unwrap();
    assert_eq!(e["headers"]["X-Impl"], "zmesh");
    zm.wait_event(T, "ENTER", Some(&p.uuid)).unwrap();

    pyre.whisper(&m.uuid, &["one", "two", ""]);
    zm.whisper(&p.uuid, &["uno", "dos"]);
    let e = zm.wait_event(T, "WHISPER", Some(&p.uuid)).unwrap();
    assert_eq!(e["frames"], serde_json::json!(["one", "two", ""]));
    let e = pyre.wait_event(T, "WHISPER", Some(&m.uuid)).unwrap();
    assert_eq!(e["frames"], serde_json::json!(["uno", "dos"]));

    assert!(zm.stop().unwrap().success());
    pyre.wait_event(T, "EXIT", Some(&m.uuid)).unwrap();
}
