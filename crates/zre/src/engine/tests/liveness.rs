//! Liveness: proactive pings, EVASIVE/SILENT/EXIT, beacons as signs of life, the timer grid.

use super::*;

// ---------------------------------------------------------------- liveness

#[test]
fn idle_healthy_peer_never_goes_evasive() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(27);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run(&mut e, &mut r, ms(t0, 60_000), true);
    assert!(events(&outs).is_empty(), "{:?}", events(&outs));
    let pings = sent_to(&outs, r.uuid).len();
    // Our UUID is the larger one, so we defer: one PING per ~4 s (3.75 s, answered, then the
    // 250 ms timer grid) — about 15 in 60 s, certainly not one per reap tick.
    assert!((14..=16).contains(&pings), "{pings} pings");
    assert_eq!(e.peers(), vec![r.uuid]);
    assert!(!e.peer(r.uuid).unwrap().evasive);
}

#[test]
fn unresponsive_peer_goes_evasive_then_silent_then_exits() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(28);
    ready(&mut e, t0, &mut r, &["G"], 1);
    let mut evasive_at = None;
    let mut silent_at = None;
    let mut exit_at = None;
    let mut pings = Vec::new();
    while let Some(d) = e.poll_timeout() {
        if d > ms(t0, 40_000) {
            break;
        }
        // Its beacons keep arriving: they must not keep it alive.
        e.handle_sighting(d, r.uuid, &r.endpoint);
        e.handle_timeout(d);
        for o in drain(&mut e) {
            match o {
                Output::Event(Event::Evasive { .. }) => {
                    assert!(evasive_at.replace(d).is_none(), "EVASIVE twice")
                }
                Output::Event(Event::Silent { .. }) => {
                    assert!(silent_at.replace(d).is_none(), "SILENT twice")
                }
                Output::Event(Event::Exit { .. }) => exit_at = Some(d),
                Output::Send { frames, .. } => {
                    assert_eq!(ZreMessage::decode(&frames).unwrap().1, ZreMessage::Ping);
                    pings.push(d)
                }
                _ => {}
            }
        }
    }
    assert_eq!(evasive_at, Some(ms(t0, 5_000)));
    assert_eq!(silent_at, Some(ms(t0, 6_000)));
    assert_eq!(exit_at, Some(ms(t0, 30_000)));
    // Proactive ping at 3.75 s (we defer: larger UUID), then one per second from 5 s on while
    // evasive.
    assert_eq!(pings[0], ms(t0, 3_750));
    assert_eq!(pings[1], ms(t0, 5_000));
    assert_eq!(pings[2], ms(t0, 6_000));
    assert_eq!(pings.len(), 1 + 25);
    assert!(e.peer(r.uuid).is_none());
    assert!(e.peer_groups().is_empty());
    assert_eq!(e.stats().expired, 1);
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn evasive_episode_ends_when_the_peer_talks_again() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(29);
    ready(&mut e, t0, &mut r, &[], 0);
    e.handle_timeout(ms(t0, 5_000));
    assert!(matches!(
        events(&drain(&mut e))[..],
        [Event::Evasive { .. }]
    ));
    r.send(&mut e, ms(t0, 5_500), ZreMessage::PingOk);
    assert!(drain(&mut e).is_empty());
    assert!(!e.peer(r.uuid).unwrap().evasive);
    // A new episode emits EVASIVE again.
    e.handle_timeout(ms(t0, 10_500));
    assert!(matches!(
        events(&drain(&mut e))[..],
        [Event::Evasive { .. }]
    ));
}

#[test]
fn ping_interval_zero_is_pure_zyre_liveness() {
    let t0 = Instant::now();
    let mut c = Config::new(own_uuid(), "me");
    c.ping_interval = Duration::ZERO;
    let mut e = Engine::new(c, t0);
    let mut r = Remote::new(30);
    ready(&mut e, t0, &mut r, &[], 0);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 5_000)));
    let outs = run(&mut e, &mut r, ms(t0, 5_000), true);
    // C behaviour: the first PING goes out together with EVASIVE.
    assert!(matches!(events(&outs)[..], [Event::Evasive { .. }]));
}

#[test]
fn not_ready_peer_expires_silently() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let r = Remote::new(31);
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    drain(&mut e);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 30_000)));
    e.handle_timeout(ms(t0, 29_999));
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(ms(t0, 30_000));
    assert_eq!(drain(&mut e), vec![Output::Disconnect { peer: r.uuid }]);
    assert!(e.peer(r.uuid).is_none());
}

#[test]
fn poll_timeout_tracks_the_earliest_deadline() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    assert_eq!(e.poll_timeout(), None);
    let mut a = Remote::new(32);
    ready(&mut e, t0, &mut a, &[], 0);
    // Ready peer heard at t0; we have the larger UUID, so we defer: ping due at +3.75 s.
    assert_eq!(e.poll_timeout(), Some(ms(t0, 3_750)));
    // Calling early does nothing.
    e.handle_timeout(ms(t0, 1_000));
    assert!(drain(&mut e).is_empty());
    // Hearing from it moves its deadline later; poll_timeout is a lower bound that does not
    // follow deadlines moving later (it must stay O(1)), so it still says 3.75 s. That wake-up
    // does nothing and makes the bound exact again.
    a.send(&mut e, ms(t0, 1_500), ZreMessage::PingOk);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 3_750)));
    e.handle_timeout(ms(t0, 3_750));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(ms(t0, 5_250)));
    // A second peer with an earlier deadline wins, rounded up to the 250 ms timer grid
    // (1.2 s + 3.75 s = 4.95 s -> 5 s).
    let mut b = Remote::new(33);
    ready(&mut e, ms(t0, 1_200), &mut b, &[], 0);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 5_000)));
    e.handle_timeout(ms(t0, 5_000));
    assert_eq!(sent_to(&drain(&mut e), b.uuid).len(), 1);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 5_250)));
    e.handle_timeout(ms(t0, 5_250));
    assert_eq!(sent_to(&drain(&mut e), a.uuid).len(), 1);
    // Next: b's evasive deadline, 6.2 s, on the grid at 6.25 s.
    assert_eq!(e.poll_timeout(), Some(ms(t0, 6_250)));
    e.handle_timeout(ms(t0, 6_250));
    assert!(matches!(
        events(&drain(&mut e))[..],
        [Event::Evasive { .. }]
    ));
    // b's repeated ping / SILENT come at +1 s; a's evasive deadline (6.5 s) is first.
    assert_eq!(e.poll_timeout(), Some(ms(t0, 6_500)));
    e.stop(ms(t0, 7_000));
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn the_smaller_uuid_pings_first() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    // A remote whose UUID is larger than ours: we are the side that pings at `ping_interval`.
    let mut r = Remote::new(0);
    r.uuid = Uuid::from_u128(u128::MAX - 1);
    ready(&mut e, t0, &mut r, &[], 0);
    assert_eq!(e.poll_timeout(), Some(ms(t0, 2_500)));
    e.handle_timeout(ms(t0, 2_500));
    assert_eq!(sent_to(&drain(&mut e), r.uuid).len(), 1);
}

/// Drives the timers of `e` until `until` while `r` beacons every second until `beacons_until`
/// (each beacon is fed just before the timers of the same instant) and answers PINGs if
/// `answer`. Returns (instant, output) pairs.
fn run_with_beacons(
    e: &mut Engine,
    r: &mut Remote,
    t0: Instant,
    until: Instant,
    beacons_until: Instant,
    answer: bool,
) -> Vec<(Instant, Output)> {
    let mut all = Vec::new();
    let mut next_beacon = t0 + Duration::from_secs(1);
    loop {
        let timer = e.poll_timeout();
        let beacon = (next_beacon <= beacons_until).then_some(next_beacon);
        let now = match (timer, beacon) {
            (Some(t), Some(b)) => t.min(b),
            (Some(t), None) => t,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        if now > until {
            break;
        }
        if beacon == Some(now) {
            e.handle_sighting(now, r.uuid, &r.endpoint.clone());
            next_beacon += Duration::from_secs(1);
        }
        e.handle_timeout(now);
        let outs = drain(e);
        let pings = sent_to(&outs, r.uuid)
            .iter()
            .filter(|(_, m)| *m == ZreMessage::Ping)
            .count();
        all.extend(outs.into_iter().map(|o| (now, o)));
        if answer {
            for _ in 0..pings {
                let at = now + Duration::from_millis(3);
                r.send(e, at, ZreMessage::PingOk);
                all.extend(drain(e).into_iter().map(|o| (at, o)));
            }
        }
    }
    all
}

fn pings_at(outs: &[(Instant, Output)]) -> Vec<Instant> {
    outs.iter()
        .filter(|(_, o)| {
            matches!(o, Output::Send { frames, .. }
            if ZreMessage::decode(frames).unwrap().1 == ZreMessage::Ping)
        })
        .map(|(t, _)| *t)
        .collect()
}

fn events_at(outs: &[(Instant, Output)]) -> Vec<(Instant, Event)> {
    outs.iter()
        .filter_map(|(t, o)| match o {
            Output::Event(ev) => Some((*t, ev.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn beaconing_zmesh_peer_is_pinged_only_after_a_third_of_the_expiry() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(40);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 60_000), ms(t0, 60_000), true);
    assert!(events_at(&outs).is_empty(), "{:?}", events_at(&outs));
    // We defer (larger UUID): 10 s + 1.25 s after the last TCP message, then the 250 ms grid.
    let pings = pings_at(&outs);
    assert_eq!(pings[0], ms(t0, 11_250));
    // Answered 3 ms later: 11.253 s + 11.25 s, rounded up to the grid.
    assert_eq!(pings[1], ms(t0, 22_750));
    assert_eq!(pings.len(), 5, "{pings:?}");
    assert!(!e.peer(r.uuid).unwrap().evasive);
}

#[test]
fn beacons_do_not_relax_pings_to_foreign_peers() {
    // Zyre and zyre.js report us EVASIVE after 5 s of TCP silence: they keep the fast rhythm.
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(41);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 20_000), ms(t0, 20_000), true);
    assert_eq!(pings_at(&outs)[0], ms(t0, 3_750));
    assert!(events_at(&outs).is_empty());
}

#[test]
fn broken_tcp_under_live_beacons_still_ends_in_exit() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(42);
    ready(&mut e, t0, &mut r, &["G"], 1);
    // Beacons keep arriving all along; PINGs are never answered (the TCP path is broken).
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 45_000), ms(t0, 45_000), false);
    let evs = events_at(&outs);
    // Probe at 11.25 s; beacons heard after an unanswered PING do not count, so the last sign
    // of life is the beacon at 11 s: EVASIVE at 16 s, SILENT one reap interval later, EXIT the
    // expired timeout after that last sign of life.
    assert!(
        matches!(
            &evs[..],
            [(a, Event::Evasive { .. }), (b, Event::Silent { .. }), (c, Event::Exit { .. })]
                if *a == ms(t0, 16_000) && *b == ms(t0, 17_000) && *c == ms(t0, 41_000)
        ),
        "{evs:?}"
    );
    let pings = pings_at(&outs);
    assert_eq!(pings[0], ms(t0, 11_250));
    assert_eq!(pings[1], ms(t0, 16_000));
    assert_eq!(pings[2], ms(t0, 17_000));
    assert_eq!(e.stats().expired, 1);
    // Its next beacon re-creates it (fresh HELLO over a new connection), not ready yet.
    assert_eq!(e.peer(r.uuid).unwrap().state, PeerState::Discovered);
}

#[test]
fn beacons_stopping_brings_back_the_fast_rhythm() {
    // A crashed zmesh node: beacons and TCP stop together (last beacon at 4 s).
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(43);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 40_000), ms(t0, 4_000), false);
    let pings = pings_at(&outs);
    // 3.75 s after the last beacon (deferring side), EVASIVE 5 s after it, EXIT 30 s after it:
    // a crash is reported the expired timeout after it happened (within a beacon interval), not
    // up to a ping interval earlier.
    assert_eq!(pings[0], ms(t0, 7_750));
    let evs = events_at(&outs);
    assert!(
        matches!(
            &evs[..],
            [(a, Event::Evasive { .. }), (_, Event::Silent { .. }), (c, Event::Exit { .. })]
                if *a == ms(t0, 9_000) && *c == ms(t0, 34_000)
        ),
        "{evs:?}"
    );
}

#[test]
fn beacons_at_another_endpoint_do_not_count() {
    // (With moves off: otherwise the peer moves there; moves.rs.)
    let t0 = Instant::now();
    let mut e = engine_with(t0, |c| c.endpoint_move_after = Duration::from_secs(3600));
    let mut r = Remote::zmesh(44);
    ready(&mut e, t0, &mut r, &[], 0);
    let real = r.endpoint.clone();
    r.endpoint = "tcp://127.0.0.1:9999".into();
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 20_000), ms(t0, 20_000), true);
    r.endpoint = real;
    assert_eq!(pings_at(&outs)[0], ms(t0, 3_750));
}

#[test]
fn ping_interval_zero_ignores_beacons_for_zmesh_peers_too() {
    let t0 = Instant::now();
    let mut c = Config::new(own_uuid(), "me");
    c.ping_interval = Duration::ZERO;
    let mut e = Engine::new(c, t0);
    let mut r = Remote::zmesh(45);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run_with_beacons(&mut e, &mut r, t0, ms(t0, 5_000), ms(t0, 5_000), true);
    assert!(matches!(&events_at(&outs)[..], [(t, Event::Evasive { .. })] if *t == ms(t0, 5_000)));
}

#[test]
fn short_timeouts_shrink_the_reap_interval() {
    let t0 = Instant::now();
    let mut c = Config::new(own_uuid(), "me");
    c.evasive_timeout = Duration::from_millis(300);
    c.expired_timeout = Duration::from_millis(900);
    c.ping_interval = Duration::from_millis(100);
    let mut e = Engine::new(c, t0);
    let mut r = Remote::new(34);
    ready(&mut e, t0, &mut r, &[], 0);
    let outs = run(&mut e, &mut r, ms(t0, 2_000), false);
    let evs = events(&outs);
    assert!(matches!(
        evs[..],
        [
            Event::Evasive { .. },
            Event::Silent { .. },
            Event::Exit { .. }
        ]
    ));
    // Ping at 100 ms, then at 300 (evasive) and 600 (reap = 300 ms); expiry at 900.
    assert_eq!(sent_to(&outs, r.uuid).len(), 3);
}
