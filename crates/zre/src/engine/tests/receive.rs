//! Receiver rules: discovery and HELLO, sequence numbers, the status counter, restarts, purges,
//! the self-connection guard and departures.

use super::*;

// ---------------------------------------------------------------- discovery and HELLO

#[test]
fn sighting_connects_and_sends_hello_seq_1() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    assert!(e.join("CHAT"));
    let r = Remote::new(1);
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    let outs = drain(&mut e);
    assert_eq!(
        outs[0],
        Output::Connect {
            peer: r.uuid,
            endpoint: r.endpoint.clone(),
            public_key: None
        }
    );
    assert_eq!(outs.len(), 2);
    let sent = sent_to(&outs, r.uuid);
    assert_eq!(
        sent,
        vec![(
            1,
            ZreMessage::Hello {
                endpoint: OWN_ENDPOINT.into(),
                groups: vec!["CHAT".into()],
                status: 1,
                name: "me".into(),
                headers: vec![
                    ("X-APP".into(), "test".into()),
                    (ZMESH_HEADER.into(), ZMESH_HEADER_VALUE.into())
                ],
            }
        )]
    );
    // A known uuid: nothing at all, and no refresh of anything.
    e.handle_sighting(ms(t0, 500), r.uuid, &r.endpoint);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.peer(r.uuid).unwrap().state, PeerState::Discovered);
    // Not ready yet: not listed.
    assert!(e.peers().is_empty());
}

#[test]
fn own_uuid_is_ignored() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle_sighting(t0, own_uuid(), "tcp://127.0.0.1:7000");
    assert!(drain(&mut e).is_empty());
    let frames = ZreMessage::Ping.encode(1).unwrap();
    e.handle_message(t0, &routing_id(&own_uuid()), frames);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().self_connections, 1);
    e.handle_departure(t0, own_uuid());
    assert!(drain(&mut e).is_empty());
}

#[test]
fn hello_enters_joins_and_adopts_status() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(1);
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    drain(&mut e);
    r.hello(&mut e, t0, &["A", "B"], 7);
    let outs = drain(&mut e);
    assert_eq!(
        events(&outs),
        vec![
            Event::Enter {
                peer: r.uuid,
                name: r.name().into(),
                headers: vec![("X-ROLE".into(), "remote".into())],
                endpoint: r.endpoint.clone(),
            },
            Event::Join {
                peer: r.uuid,
                name: r.name().into(),
                group: "A".into()
            },
            Event::Join {
                peer: r.uuid,
                name: r.name().into(),
                group: "B".into()
            },
        ]
    );
    // The peer already had our HELLO (sent at sighting): nothing else is sent.
    assert!(sent_to(&outs, r.uuid).is_empty());
    let info = e.peer(r.uuid).unwrap();
    assert_eq!(info.status, 7);
    assert_eq!(info.state, PeerState::Ready);
    assert_eq!(info.hello_endpoint.as_deref(), Some(r.endpoint.as_str()));
    assert!(!info.accepts_extensions);
    assert_eq!(e.peers(), vec![r.uuid]);
    assert_eq!(e.peers_by_group("A"), vec![r.uuid]);
    assert_eq!(e.peer_groups(), vec!["A".to_string(), "B".to_string()]);
    // The next JOIN must carry 8.
    r.send(
        &mut e,
        t0,
        ZreMessage::Join {
            group: "C".into(),
            status: 8,
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Join {
            peer: r.uuid,
            name: r.name().into(),
            group: "C".into()
        }]
    );
}

#[test]
fn hello_from_unknown_peer_creates_it() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(2);
    r.hello(&mut e, t0, &[], 0);
    let outs = drain(&mut e);
    assert_eq!(
        outs[0],
        Output::Connect {
            peer: r.uuid,
            endpoint: r.endpoint.clone(),
            public_key: None
        }
    );
    let sent = sent_to(&outs, r.uuid);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 1);
    assert!(matches!(sent[0].1, ZreMessage::Hello { .. }));
    assert!(matches!(
        outs.last(),
        Some(Output::Event(Event::Enter { .. }))
    ));
}

#[test]
fn hello_with_sequence_other_than_1_is_dropped() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let r = Remote::new(2);
    r.send_with_seq(&mut e, t0, r.hello_msg(&[], 0), 2);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().sequence_gaps, 1);
    assert!(e.peer(r.uuid).is_none());
}

#[test]
fn non_hello_first_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(3);
    // Unknown peer.
    r.send(
        &mut e,
        t0,
        ZreMessage::Whisper {
            content: vec![Bytes::from_static(b"x")].into(),
        },
    );
    assert!(drain(&mut e).is_empty());
    assert!(e.peer(r.uuid).is_none());
    // Known (sighted) but not ready.
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    drain(&mut e);
    r.send(&mut e, t0, ZreMessage::Ping);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().not_hello_first, 2);
    assert_eq!(e.peer(r.uuid).unwrap().state, PeerState::Discovered);
}

#[test]
fn stale_session_after_lost_hello_is_forgotten_then_recovered() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(3);
    // We re-created the peer (sighting) and sent our HELLO, which was lost; the remote still holds
    // us as ready and keeps sending on its old session (sequence numbers far from 1).
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    drain(&mut e);
    // Within the grace period: stale messages are just dropped (they may be in flight).
    r.send(&mut e, t0 + Duration::from_secs(1), ZreMessage::Ping);
    assert_eq!(e.peer(r.uuid).unwrap().state, PeerState::Discovered);
    assert_eq!(e.stats().stale_sessions, 0);
    // Long after our HELLO should have arrived: the record is forgotten without events…
    r.send(&mut e, t0 + Duration::from_secs(6), ZreMessage::Ping);
    let out = drain(&mut e);
    assert!(
        out.iter().all(|o| matches!(o, Output::Disconnect { .. })),
        "{out:?}"
    );
    assert!(e.peer(r.uuid).is_none());
    assert_eq!(e.stats().stale_sessions, 1);
    // …and the next sighting sends a fresh HELLO (sequence 1) the remote will treat as a restart.
    e.handle_sighting(t0 + Duration::from_secs(7), r.uuid, &r.endpoint);
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{out:?}"
    );
    let hello = out.iter().find_map(|o| match o {
        Output::Send { frames, .. } => Some(ZreMessage::decode(frames).unwrap()),
        _ => None,
    });
    assert!(
        matches!(hello, Some((1, ZreMessage::Hello { .. }))),
        "{hello:?}"
    );
}

// ---------------------------------------------------------------- sequence numbers

#[test]
fn sequence_gap_removes_peer() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(4);
    ready(&mut e, t0, &mut r, &[], 0);
    r.send_with_seq(&mut e, t0, ZreMessage::Ping, 3);
    let outs = drain(&mut e);
    assert_eq!(outs, vec![exit(&r), Output::Disconnect { peer: r.uuid }]);
    assert_eq!(e.stats().sequence_gaps, 1);
    assert!(e.peer(r.uuid).is_none());
    // Further messages from it are just dropped.
    r.send_with_seq(&mut e, t0, ZreMessage::Ping, 4);
    assert!(drain(&mut e).is_empty());
}

#[test]
fn sequence_numbers_wrap_in_both_directions() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(5);
    ready(&mut e, t0, &mut r, &[], 0);
    // HELLO was 1 both ways. 65537 PINGs: their sequence goes 2..=65535, 0, 1, 2; our PING-OKs
    // likewise (2..=65535, 0, 1, 2).
    let mut last = None;
    for _ in 0..65537u32 {
        r.send(&mut e, t0, ZreMessage::Ping);
        let outs = drain(&mut e);
        let sent = sent_to(&outs, r.uuid);
        assert_eq!(sent.len(), 1, "{outs:?}");
        assert_eq!(sent[0].1, ZreMessage::PingOk);
        last = Some(sent[0].0);
    }
    assert_eq!(r.seq, 2);
    assert_eq!(last, Some(2));
    assert_eq!(e.peers(), vec![r.uuid]);
    assert_eq!(e.stats().sequence_gaps, 0);
    assert_eq!(e.stats().pings_received, 65537);
}

/// Sends `n` whispers from `e` to `r`; returns the sequence numbers they carried.
fn whisper_run(e: &mut Engine, r: &Remote, n: u32) -> Vec<u16> {
    let mut seqs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        e.whisper(r.uuid, vec![Bytes::from_static(b"w")]).unwrap();
        let outs = drain(e);
        let sent = sent_to(&outs, r.uuid);
        assert_eq!(sent.len(), 1, "{outs:?}");
        seqs.push(sent[0].0);
    }
    seqs
}

#[test]
fn pyre_style_wrap_is_accepted_and_followed() {
    use crate::sequence::SeqWrap;
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(15);
    r.wrap = SeqWrap::Mod65535; // Pyre, zyre.js: 65534 -> 0
    ready(&mut e, t0, &mut r, &[], 0);
    // 65537 PINGs: theirs go 2..=65534, 0, 1, 2, 3; our PING-OKs must follow the same rule.
    let mut ours = Vec::new();
    for _ in 0..65537u32 {
        r.send(&mut e, t0, ZreMessage::Ping);
        let outs = drain(&mut e);
        let sent = sent_to(&outs, r.uuid);
        assert_eq!(sent.len(), 1, "{outs:?}");
        ours.push(sent[0].0);
    }
    assert_eq!(r.seq, 3);
    assert_eq!(e.stats().sequence_gaps, 0);
    assert_eq!(e.peers(), vec![r.uuid]);
    assert!(!ours.contains(&u16::MAX), "65535 sent to a Pyre-style peer");
    let fork = ours.iter().position(|s| *s == 65534).unwrap();
    assert_eq!(ours[fork + 1], 0);
    assert_eq!(*ours.last().unwrap(), 3);
}

#[test]
fn plain_peer_that_has_not_wrapped_gets_the_pyre_wrap_zmesh_peer_the_c_wrap() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut plain = Remote::new(16);
    let mut zm = Remote::zmesh(17);
    ready(&mut e, t0, &mut plain, &[], 0);
    ready(&mut e, t0, &mut zm, &[], 0);
    // HELLO was 1: 70,000 whispers each go 2.., past the fork.
    let to_plain = whisper_run(&mut e, &plain, 70_000);
    let to_zmesh = whisper_run(&mut e, &zm, 70_000);
    let at = |v: &[u16]| v.iter().position(|s| *s == 65534).unwrap();
    let p = at(&to_plain);
    assert_eq!(&to_plain[p..p + 3], &[65534, 0, 1]);
    let z = at(&to_zmesh);
    assert_eq!(&to_zmesh[z..z + 3], &[65534, 65535, 0]);
    // Each run is gap-free under its rule.
    for (v, rule) in [
        (&to_plain, crate::sequence::SeqWrap::Mod65535),
        (&to_zmesh, crate::sequence::SeqWrap::U16),
    ] {
        for w in v.windows(2) {
            assert_eq!(rule.next(w[0]), w[1]);
        }
    }
}

#[test]
fn a_c_style_peer_that_wrapped_first_gets_the_c_wrap() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(18); // C-style wrap, plain peer
    ready(&mut e, t0, &mut r, &[], 0);
    // It sends past its fork first (2..=65535, 0): we learn its rule from that.
    for _ in 0..65535u32 {
        r.send(
            &mut e,
            t0,
            ZreMessage::Whisper {
                content: vec![Bytes::from_static(b"x")].into(),
            },
        );
        drain(&mut e);
    }
    assert_eq!(r.seq, 0);
    assert_eq!(e.stats().sequence_gaps, 0);
    let ours = whisper_run(&mut e, &r, 65535);
    let p = ours.iter().position(|s| *s == 65534).unwrap();
    assert_eq!(&ours[p..p + 3], &[65534, 65535, 0]);
}

#[test]
fn at_the_fork_anything_but_65535_or_0_is_a_gap() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(19);
    ready(&mut e, t0, &mut r, &[], 0);
    for _ in 0..65533u32 {
        r.send(&mut e, t0, ZreMessage::Ping);
    }
    drain(&mut e);
    assert_eq!(r.seq, 65534);
    assert_eq!(e.stats().sequence_gaps, 0);
    r.send_with_seq(&mut e, t0, ZreMessage::Ping, 1);
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert_eq!(e.stats().sequence_gaps, 1);
}

#[test]
fn malformed_frame_is_dropped_without_advancing_sequence() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(6);
    ready(&mut e, t0, &mut r, &[], 0);
    // Garbage: dropped, counted, no output.
    e.handle_message(
        t0,
        &routing_id(&r.uuid),
        vec![Bytes::from_static(&[
            0xAA, 0xA1, 0x04, 0x02, 0x00, 0x02, 0x09,
        ])]
        .into(),
    );
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().malformed, 1);
    // The next good message with sequence 2 is accepted: the bad one did not consume it.
    r.send(
        &mut e,
        t0,
        ZreMessage::Whisper {
            content: vec![Bytes::from_static(b"ok")].into(),
        },
    );
    assert_eq!(r.seq, 2);
    assert!(matches!(
        events(&drain(&mut e))[..],
        [Event::Whisper { .. }]
    ));
    // As with C: a sender whose message we could not parse then shows a gap.
    r.seq += 1; // that message was "lost"
    r.send(&mut e, t0, ZreMessage::Ping);
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
}

#[test]
fn identity_of_wrong_length_is_dropped() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let r = Remote::new(7);
    let frames = r.hello_msg(&[], 0).encode(1).unwrap();
    e.handle_message(t0, &routing_id(&r.uuid)[..16], frames.clone());
    let mut long = routing_id(&r.uuid).to_vec();
    long.push(0);
    e.handle_message(t0, &long, frames.clone());
    e.handle_message(t0, &[], frames);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().bad_identity, 3);
    assert!(e.peer(r.uuid).is_none());
}

// ---------------------------------------------------------------- status counter

#[test]
fn status_mismatch_on_join_or_leave_is_a_protocol_error_not_a_panic() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(8);
    ready(&mut e, t0, &mut r, &["A"], 3);
    r.send(
        &mut e,
        t0,
        ZreMessage::Join {
            group: "B".into(),
            status: 5,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert_eq!(e.stats().status_mismatches, 1);
    assert!(e.peer_groups().is_empty());

    let mut r2 = Remote::new(9);
    ready(&mut e, t0, &mut r2, &["A"], 3);
    r2.send(
        &mut e,
        t0,
        ZreMessage::Leave {
            group: "A".into(),
            status: 3,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![exit(&r2), Output::Disconnect { peer: r2.uuid }]
    );
    assert_eq!(e.stats().status_mismatches, 2);
}

#[test]
fn remote_status_wraps_and_duplicates_emit_no_event() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(10);
    ready(&mut e, t0, &mut r, &["A"], 255);
    // Duplicate JOIN A: status advances (0 after wrap), no event.
    r.send(
        &mut e,
        t0,
        ZreMessage::Join {
            group: "A".into(),
            status: 0,
        },
    );
    assert!(drain(&mut e).is_empty());
    // LEAVE of a group it is not in: status 1, no event.
    r.send(
        &mut e,
        t0,
        ZreMessage::Leave {
            group: "Z".into(),
            status: 1,
        },
    );
    assert!(drain(&mut e).is_empty());
    r.send(
        &mut e,
        t0,
        ZreMessage::Leave {
            group: "A".into(),
            status: 2,
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Leave {
            peer: r.uuid,
            name: r.name().into(),
            group: "A".into()
        }]
    );
    assert_eq!(e.peer(r.uuid).unwrap().status, 2);
    assert!(e.peers_by_group("A").is_empty());
    assert!(e.peer_groups().is_empty());
}

// ---------------------------------------------------------------- restart, purge, self, departure

#[test]
fn hello_from_ready_peer_is_a_restart() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(17);
    ready(&mut e, t0, &mut r, &["G"], 1);
    r.send(&mut e, t0, ZreMessage::Ping);
    drain(&mut e);
    // The remote restarted (same uuid): new connection, HELLO seq 1.
    r.hello(&mut e, ms(t0, 10), &["G"], 1);
    let outs = drain(&mut e);
    assert_eq!(outs[0], exit(&r));
    assert_eq!(outs[1], Output::Disconnect { peer: r.uuid });
    assert_eq!(
        outs[2],
        Output::Connect {
            peer: r.uuid,
            endpoint: r.endpoint.clone(),
            public_key: None
        }
    );
    assert!(matches!(
        &outs[3],
        Output::Send { peer, frames } if *peer == r.uuid
            && matches!(ZreMessage::decode(frames), Ok((1, ZreMessage::Hello { .. })))
    ));
    assert!(matches!(&outs[4], Output::Event(Event::Enter { peer, .. }) if *peer == r.uuid));
    assert!(matches!(&outs[5], Output::Event(Event::Join { group, .. }) if group == "G"));
    assert_eq!(outs.len(), 6);
    assert_eq!(e.stats().restarts, 1);
    // Our sequence restarted too: the next message is 2.
    e.whisper(r.uuid, vec![Bytes::from_static(b"x")]).unwrap();
    assert_eq!(sent_to(&drain(&mut e), r.uuid)[0].0, 2);
}

#[test]
fn new_uuid_at_same_endpoint_purges_the_old_peer() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut old = Remote::new(18);
    ready(&mut e, t0, &mut old, &["G"], 1);
    let mut new = Remote::new(19);
    new.endpoint = old.endpoint.clone();
    e.handle_sighting(ms(t0, 100), new.uuid, &new.endpoint);
    let outs = drain(&mut e);
    assert_eq!(outs[0], exit(&old));
    assert_eq!(outs[1], Output::Disconnect { peer: old.uuid });
    assert_eq!(
        outs[2],
        Output::Connect {
            peer: new.uuid,
            endpoint: new.endpoint.clone(),
            public_key: None
        }
    );
    assert_eq!(e.stats().purged, 1);
    assert!(e.peers().is_empty());
    assert!(e.peers_by_group("G").is_empty());
    assert_eq!(e.peer(old.uuid).unwrap().state, PeerState::Disconnected);
    // Ignored while disconnected, even its HELLO.
    old.send(&mut e, ms(t0, 200), ZreMessage::Ping);
    old.hello(&mut e, ms(t0, 200), &[], 0);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().from_disconnected, 2);
    assert!(e.whisper(old.uuid, vec![Bytes::from_static(b"x")]).is_err());
    // Removed silently when it expires (EXIT was already emitted).
    e.handle_timeout(ms(t0, 30_000));
    let outs = drain(&mut e);
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Exit { peer, .. }) if *peer == old.uuid)));
    assert!(e.peer(old.uuid).is_none());
}

#[test]
fn self_connection_guard() {
    let t0 = Instant::now();
    let mut c = Config::new(own_uuid(), "me");
    c.endpoint = String::new();
    let mut e = Engine::new(c, t0);
    // A stale sighting of another uuid at what will turn out to be our endpoint.
    let mut ghost = Remote::new(20);
    ghost.endpoint = OWN_ENDPOINT.into();
    e.handle_sighting(t0, ghost.uuid, OWN_ENDPOINT);
    drain(&mut e);
    e.set_endpoint(OWN_ENDPOINT.into());
    // The connection reached ourselves: its HELLO is dropped.
    ghost.hello(&mut e, t0, &[], 0);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().self_connections, 1);
    // Sightings and HELLOs claiming our own endpoint are ignored.
    let mut other = Remote::new(21);
    other.endpoint = OWN_ENDPOINT.into();
    e.handle_sighting(t0, other.uuid, OWN_ENDPOINT);
    other.hello(&mut e, t0, &[], 0);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().self_connections, 3);
    assert!(e.peer(other.uuid).is_none());
}

#[test]
fn departure_removes_peer_with_exit() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(22);
    ready(&mut e, t0, &mut r, &["G"], 1);
    e.handle_departure(t0, Uuid::from_u128(12345));
    assert!(drain(&mut e).is_empty());
    e.handle_departure(t0, r.uuid);
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert!(e.peer_groups().is_empty());
    // A not-ready peer departs without EXIT (it never entered).
    let r2 = Remote::new(23);
    e.handle_sighting(t0, r2.uuid, &r2.endpoint);
    drain(&mut e);
    e.handle_departure(t0, r2.uuid);
    assert_eq!(drain(&mut e), vec![Output::Disconnect { peer: r2.uuid }]);
    assert_eq!(e.stats().departures, 2);
}

#[test]
fn goodbye_removes_peer_with_exit() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(24);
    ready(&mut e, t0, &mut r, &[], 0);
    r.send(&mut e, t0, ZreMessage::Goodbye);
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert_eq!(e.stats().goodbyes, 1);
}

#[test]
fn send_failure_removes_peer() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(25);
    ready(&mut e, t0, &mut r, &[], 0);
    e.handle_send_failed(t0, r.uuid);
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert_eq!(e.stats().send_failures, 1);
}

#[test]
fn ping_is_answered_with_ping_ok_and_elect_leader_are_accepted() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::zmesh(26);
    ready(&mut e, t0, &mut r, &[], 0);
    r.send(&mut e, t0, ZreMessage::Ping);
    assert_eq!(
        sent_to(&drain(&mut e), r.uuid),
        vec![(2, ZreMessage::PingOk)]
    );
    r.send(
        &mut e,
        t0,
        ZreMessage::Elect {
            group: "G".into(),
            challenger: uuid_to_string(&r.uuid),
        },
    );
    r.send(
        &mut e,
        t0,
        ZreMessage::Leader {
            group: "G".into(),
            leader: uuid_to_string(&r.uuid),
        },
    );
    r.send(&mut e, t0, ZreMessage::PingOk);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().elections_ignored, 2);
    assert_eq!(e.stats().sequence_gaps, 0);
    assert_eq!(e.peers(), vec![r.uuid]);
}
