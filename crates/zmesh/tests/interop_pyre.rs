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
//! `interop/pyre_agent.py` and `interop/README` notes in this file):
//!
//! * Python start-up takes ~2 s, so READY/ENTER timeouts are generous.
//! * pyre never emits EVASIVE/SILENT, and counts beacons as liveness.
//! * pyre's TCP mailbox port is ephemeral, so a restarted pyre never reuses its
//!   old endpoint: the old UUID can only go away by expiry (no purge).
//!
//! The scenarios themselves live in `support/zre_interop.rs` (shared with
//! `interop_zyrejs.rs`); this file holds pyre's parameters ([`PYRE`]).
//!
//! Run: `bash scripts/test.sh -p zmesh --test interop_pyre`.

mod support;

use support::require_netns;
use support::zre_interop::{self as scenario, ZrePeer};
use support::AgentKind;

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

/// pyre-gevent as the peer of every scenario.
const PYRE: ZrePeer = ZrePeer {
    kind: AgentKind::Pyre,
    label: "pyre",
    name: "py2",
    headers: &PYRE_HEADERS,
    headers_received: &PYRE_HEADERS_RECEIVED,
    restart_headers: &[("X-Impl", "pyre-gevent"), ("X-Life", "2")],
    // Full multi-frame content both ways.
    multi_frame: true,
    // pyre's TCP mailbox port is ephemeral: a restarted pyre never reuses its
    // old endpoint, so the old UUID can only go away by expiry (no purge).
    may_reuse_endpoint: false,
    // pyre's `purge_peer`: a new UUID at a known endpoint drops the old peer.
    purges_reused_endpoint: true,
    // pyre's agent gives no reason on EXIT.
    expiry_reason: None,
};

/// ENTER both ways with names, headers and endpoints; JOIN (in HELLO and
/// later) both ways; multi-frame WHISPER and SHOUT both ways; LEAVE both ways.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_enter_join_whisper_shout_leave_both_ways() {
    require_netns();
    scenario::full_exchange(&PYRE, 5830);
}

/// A polite stop of pyre (its port-0 beacon) is an EXIT on zmesh within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_polite_stop_is_exit_on_zmesh_within_1s() {
    require_netns();
    scenario::polite_stop_of_peer_is_exit_on_zmesh(&PYRE, 5831);
}

/// A polite stop of zmesh is an EXIT on pyre within 1 s.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn zmesh_polite_stop_is_exit_on_pyre_within_1s() {
    require_netns();
    scenario::polite_stop_of_zmesh_is_exit_on_peer(&PYRE, 5832);
}

/// pyre SIGKILLed (no port-0 beacon): zmesh, with short timeouts, reports
/// EVASIVE and then EXIT by expiry.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_pyre_expires_on_zmesh() {
    require_netns();
    scenario::killed_peer_expires_on_zmesh(&PYRE, 5833);
}

/// zmesh SIGKILLed: pyre, with short timeouts, reports EXIT by expiry.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn killed_zmesh_expires_on_pyre() {
    require_netns();
    scenario::killed_zmesh_expires_on_peer(&PYRE, 5834);
}

/// pyre killed and restarted (a new process: new UUID, new ephemeral port):
/// zmesh sees EXIT of the old UUID (by expiry) and ENTER of the new one, and
/// the two talk again.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_pyre_is_exit_then_enter_on_zmesh() {
    require_netns();
    scenario::restarted_peer_is_exit_then_enter_on_zmesh(&PYRE, 5835, scenario::EXPIRED_MS);
}

/// zmesh killed and restarted *on the same TCP port* (`--tcp-port`): pyre sees
/// the new UUID at the old endpoint, purges the old peer (EXIT right away,
/// pyre's `purge_peer`) and enters the new one; they talk again.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn restarted_zmesh_on_same_endpoint_is_exit_then_enter_on_pyre() {
    require_netns();
    // Fixed inbox port below the ephemeral range (no clash with outgoing connections).
    scenario::restarted_zmesh_on_same_endpoint(&PYRE, 5836, "17836");
}

/// Two zmesh nodes use request/reply beside a plain peer: it keeps working, sees no layer
/// traffic, and a request to it fails with no responders at once.
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn requests_beside_plain_pyre_peer() {
    require_netns();
    scenario::requests_beside_plain_peer(&PYRE, 5837);
}

/// More than 70,000 WHISPERs each way, both directions at once: all delivered in order and
/// neither side drops the other across the 16-bit sequence wrap (pyre wraps 65534 -> 0, zmesh
/// follows it; docs/zre.md §4.4).
#[test]
#[ignore = "needs root + interop peers: run scripts/test.sh"]
fn pyre_sequence_wrap_70k_whispers_each_way() {
    require_netns();
    scenario::sequence_wrap_both_ways(&PYRE, 5838);
}
