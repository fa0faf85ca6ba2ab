//! Two engines talking to each other until they agree.

use super::*;

// ---------------------------------------------------------------- two engines

/// Delivers every Send of `from` to `to`; returns the events emitted by `from` and the number of
/// outputs drained.
fn pump(from: &mut Engine, to: &mut Engine, now: Instant) -> (Vec<Event>, usize) {
    let mut evs = Vec::new();
    let mut n = 0;
    while let Some(o) = from.poll_output() {
        n += 1;
        match o {
            Output::Send { peer, frames } if peer == to.uuid() => {
                to.handle_message(now, &routing_id(&from.uuid()), frames)
            }
            Output::Event(ev) => evs.push(ev),
            _ => {}
        }
    }
    (evs, n)
}

/// Pumps both directions until quiet; returns (events of a, events of b).
fn settle(a: &mut Engine, b: &mut Engine, now: Instant) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (x, nx) = pump(a, b, now);
        let (y, ny) = pump(b, a, now);
        ea.extend(x);
        eb.extend(y);
        if nx == 0 && ny == 0 {
            break;
        }
    }
    (ea, eb)
}

#[test]
fn two_engines_converge() {
    let t0 = Instant::now();
    let mk = |n: u128, port: u16| {
        let mut c = Config::new(Uuid::from_u128(n), format!("node{n}"));
        c.endpoint = format!("tcp://127.0.0.1:{port}");
        Engine::new(c, t0)
    };
    let mut a = mk(0xA, 7001);
    let mut b = mk(0xB, 7002);
    assert!(a.join("CHAT"));
    // Only a sees b's beacon; b learns about a from a's HELLO.
    a.handle_sighting(t0, b.uuid(), "tcp://127.0.0.1:7002");
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert!(
        matches!(&ea[..], [Event::Enter { peer, name, .. }] if *peer == b.uuid() && name == "node11")
    );
    assert!(
        matches!(&eb[0], Event::Enter { peer, endpoint, headers, .. }
        if *peer == a.uuid() && endpoint == "tcp://127.0.0.1:7001"
        && headers.iter().any(|(k, _)| k == ZMESH_HEADER))
    );
    assert!(matches!(&eb[1], Event::Join { group, .. } if group == "CHAT"));
    assert_eq!(eb.len(), 2);
    assert!(a.peer(b.uuid()).unwrap().accepts_extensions);
    // b's beacon seen later by a, a's by b: nothing changes.
    a.handle_sighting(t0, b.uuid(), "tcp://127.0.0.1:7002");
    b.handle_sighting(t0, a.uuid(), "tcp://127.0.0.1:7001");
    assert_eq!(settle(&mut a, &mut b, t0), (vec![], vec![]));

    // JOIN, SHOUT, LEAVE.
    assert!(b.join("CHAT"));
    let (ea, _) = settle(&mut a, &mut b, t0);
    assert_eq!(
        ea,
        vec![Event::Join {
            peer: b.uuid(),
            name: b.name().into(),
            group: "CHAT".into()
        }]
    );
    assert_eq!(a.shout("CHAT", vec![Bytes::from_static(b"hi all")]), Ok(1));
    assert_eq!(b.shout("CHAT", vec![Bytes::from_static(b"hi a")]), Ok(1));
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert_eq!(
        eb,
        vec![Event::Shout {
            peer: a.uuid(),
            name: a.name().into(),
            group: "CHAT".into(),
            content: vec![Bytes::from_static(b"hi all")].into()
        }]
    );
    assert!(matches!(&ea[..], [Event::Shout { content, .. }] if content[0] == "hi a"));
    assert!(a.leave("CHAT"));
    let (_, eb) = settle(&mut a, &mut b, t0);
    assert_eq!(
        eb,
        vec![Event::Leave {
            peer: a.uuid(),
            name: a.name().into(),
            group: "CHAT".into()
        }]
    );
    assert!(b.peers_by_group("CHAT").is_empty());

    // Idle for a minute with both timers running: nobody goes evasive.
    let mut now = t0;
    let end = ms(t0, 60_000);
    loop {
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        if next > end {
            break;
        }
        now = next;
        a.handle_timeout(now);
        b.handle_timeout(now);
        let (ea, eb) = settle(&mut a, &mut b, now);
        assert!(ea.is_empty() && eb.is_empty(), "{ea:?} {eb:?}");
    }
    assert!(now > ms(t0, 55_000));
    assert_eq!(a.stats().sequence_gaps + b.stats().sequence_gaps, 0);
    assert_eq!(a.stats().status_mismatches + b.stats().status_mismatches, 0);

    // a stops: GOODBYE reaches b (a zmesh peer) → EXIT.
    a.stop(end);
    let (ea, eb) = settle(&mut a, &mut b, end);
    assert!(matches!(ea.last(), Some(Event::Stop { .. })));
    assert_eq!(
        eb,
        vec![Event::Exit {
            peer: a.uuid(),
            name: a.name().into()
        }]
    );
    assert!(b.peers().is_empty());
}
