//! Moves: a known peer sighted at another endpoint (receive.rs, "Moves").

use super::*;

fn connects(outs: &[Output]) -> Vec<(Uuid, String)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Connect { peer, endpoint, .. } => Some((*peer, endpoint.clone())),
            _ => None,
        })
        .collect()
}

/// A peer sighted at two live endpoints (two interfaces, IPv4 and IPv6) stays one peer on the
/// first endpoint: nothing is output for the second while the first keeps being named.
#[test]
fn a_node_seen_at_two_live_endpoints_stays_on_the_first() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(21);
    ready(&mut e, t0, &mut r, &[], 0);
    let other = "tcp://[fd00:80::21]:6021";
    for s in 0..20 {
        let now = ms(t0, 500 * s);
        e.handle_sighting(now, r.uuid, &r.endpoint);
        e.handle_sighting(now, r.uuid, other);
        assert!(drain(&mut e).is_empty(), "second endpoint acted on at {s}");
    }
    assert_eq!(e.peers().len(), 1);
    assert_eq!(e.stats().moved, 0);
}

/// An address change: once the old endpoint has not been named for `endpoint_move_after`, the
/// next sighting at the new one restarts our side of the session there (Disconnect, Connect,
/// HELLO); the peer takes it as a restart, and its new HELLO makes it exit and enter again: one
/// peer, at the new endpoint.
#[test]
fn a_peer_whose_endpoint_went_quiet_moves_to_the_new_one() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(22);
    ready(&mut e, t0, &mut r, &[], 0);
    let new = "tcp://10.80.0.99:6022".to_string();
    // Too early: the old endpoint was named 1 s ago.
    e.handle_sighting(ms(t0, 1000), r.uuid, &new);
    assert!(drain(&mut e).is_empty());
    let at = t0 + DEFAULT_ENDPOINT_MOVE_AFTER;
    e.handle_sighting(at, r.uuid, &new);
    let outs = drain(&mut e);
    // Our side restarts; what we know of the peer stays (no event yet).
    assert!(events(&outs).is_empty(), "{outs:?}");
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer } if *peer == r.uuid)));
    assert_eq!(connects(&outs), vec![(r.uuid, new.clone())]);
    assert!(matches!(
        sent_to(&outs, r.uuid).as_slice(),
        [(1, ZreMessage::Hello { .. })]
    ));
    assert_eq!(e.stats().moved, 1);
    // The peer answers on the new session: it enters again, at the new endpoint.
    r.endpoint = new.clone();
    r.hello(&mut e, at, &[], 0);
    let outs = drain(&mut e);
    let evs = events(&outs);
    assert!(
        matches!(&evs[..], [Event::Exit { .. }, Event::Enter { peer, .. }] if *peer == r.uuid),
        "{evs:?}"
    );
    // Its HELLO answered our move: no new session and no HELLO of ours goes back (which it
    // would take as a restart, answer again, and so on).
    assert!(connects(&outs).is_empty(), "{outs:?}");
    assert!(sent_to(&outs, r.uuid).is_empty(), "{outs:?}");
    // Our sequence goes on over the session opened at the move.
    e.whisper(r.uuid, bytes::Bytes::from_static(b"x")).unwrap();
    let outs = drain(&mut e);
    assert!(
        matches!(
            sent_to(&outs, r.uuid).as_slice(),
            [(2, ZreMessage::Whisper { .. })]
        ),
        "{outs:?}"
    );
    let peers = e.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(e.peer(r.uuid).unwrap().endpoint, new);
    // The old endpoint, named again later (a stale packet), does not move it back at once.
    e.handle_sighting(
        at + Duration::from_millis(500),
        r.uuid,
        "tcp://127.0.0.1:6022",
    );
    assert!(drain(&mut e).is_empty());
}

/// A peer created from its HELLO (endpoint unconfirmed, e.g. on a segment we do not share)
/// moves to the endpoint a beacon names once the grace is over; a restart (a second HELLO)
/// does not undo it.
#[test]
fn a_peer_known_only_from_its_hello_moves_once_the_grace_is_over() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(23);
    r.hello(&mut e, t0, &[], 0);
    let outs = drain(&mut e);
    assert_eq!(connects(&outs), vec![(r.uuid, r.endpoint.clone())]);
    let reachable = "tcp://10.81.0.23:6023";
    e.handle_sighting(ms(t0, 100), r.uuid, reachable);
    assert!(drain(&mut e).is_empty());
    e.handle_sighting(t0 + DEFAULT_ENDPOINT_MOVE_AFTER, r.uuid, reachable);
    let outs = drain(&mut e);
    assert_eq!(connects(&outs), vec![(r.uuid, reachable.to_string())]);
    assert_eq!(e.stats().moved, 1);
    // Confirmed now: further sightings at the HELLO's endpoint do not move it back.
    e.handle_sighting(ms(t0, 3100), r.uuid, "tcp://127.0.0.1:6023");
    assert!(drain(&mut e).is_empty());
    // It answers our new session (its HELLO still names its primary endpoint): it enters, and
    // a later restart of it (the same HELLO again) stays on the endpoint the beacons name
    // instead of moving back to the unreachable one.
    let at = ms(t0, 3200);
    r.hello(&mut e, at, &[], 0);
    drain(&mut e);
    r.hello(&mut e, ms(t0, 3300), &[], 0);
    let outs = drain(&mut e);
    assert_eq!(connects(&outs), vec![(r.uuid, reachable.to_string())]);
    assert_eq!(e.peer(r.uuid).unwrap().endpoint, reachable);
}
