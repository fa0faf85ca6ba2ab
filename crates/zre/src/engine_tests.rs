//! Engine tests: every receiver/sender/liveness rule, driven with explicit time by feeding
//! frames encoded exactly as a remote peer would send them.

use super::*;
use crate::msg::ZreMessage;
use crate::peer::PeerState;

const OWN_ENDPOINT: &str = "tcp://127.0.0.1:5000";

fn own_uuid() -> Uuid {
    Uuid::from_u128(0xAAAA_0000_0000_0000_0000_0000_0000_0001)
}

fn engine(t0: Instant) -> Engine {
    let mut c = Config::new(own_uuid(), "me");
    c.endpoint = OWN_ENDPOINT.into();
    c.headers = vec![("X-APP".into(), "test".into())];
    Engine::new(c, t0)
}

/// A simulated remote node: its UUID, its endpoint and its outgoing sequence counter to us.
struct Remote {
    uuid: Uuid,
    endpoint: String,
    seq: u16,
    zmesh: bool,
}

impl Remote {
    fn new(n: u128) -> Remote {
        Remote {
            uuid: Uuid::from_u128(n),
            endpoint: format!("tcp://127.0.0.1:{}", 6000 + n),
            seq: 0,
            zmesh: false,
        }
    }

    fn zmesh(n: u128) -> Remote {
        Remote {
            zmesh: true,
            ..Remote::new(n)
        }
    }

    fn name(&self) -> String {
        format!("r{}", self.uuid.as_u128())
    }

    fn hello_msg(&self, groups: &[&str], status: u8) -> ZreMessage {
        let mut headers = vec![("X-ROLE".to_string(), "remote".to_string())];
        if self.zmesh {
            headers.push((ZMESH_HEADER.into(), "1".into()));
        }
        ZreMessage::Hello {
            endpoint: self.endpoint.clone(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            status,
            name: self.name(),
            headers,
        }
    }

    /// Sends `msg` with the next sequence number.
    fn send(&mut self, e: &mut Engine, now: Instant, msg: ZreMessage) {
        self.seq = self.seq.wrapping_add(1);
        self.send_with_seq(e, now, msg, self.seq);
    }

    fn send_with_seq(&self, e: &mut Engine, now: Instant, msg: ZreMessage, seq: u16) {
        let frames = msg.encode(seq).expect("encodable");
        e.handle_message(now, &routing_id(&self.uuid), frames);
    }

    /// Starts a fresh connection: HELLO with sequence 1.
    fn hello(&mut self, e: &mut Engine, now: Instant, groups: &[&str], status: u8) {
        self.seq = 0;
        let m = self.hello_msg(groups, status);
        self.send(e, now, m);
    }
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn events(outs: &[Output]) -> Vec<Event> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

/// Decoded messages sent to `peer`, in order.
fn sent_to(outs: &[Output], peer: Uuid) -> Vec<(u16, ZreMessage)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { peer: p, frames } if *p == peer => {
                Some(ZreMessage::decode(frames).expect("engine output decodes"))
            }
            _ => None,
        })
        .collect()
}

fn exit(r: &Remote) -> Output {
    Output::Event(Event::Exit {
        peer: r.uuid,
        name: r.name(),
    })
}

/// A ready remote (HELLO exchanged), outputs drained.
fn ready(e: &mut Engine, now: Instant, r: &mut Remote, groups: &[&str], status: u8) {
    e.handle_sighting(now, r.uuid, &r.endpoint.clone());
    r.hello(e, now, groups, status);
    let outs = drain(e);
    assert!(
        events(&outs)
            .iter()
            .any(|ev| matches!(ev, Event::Enter { peer, .. } if *peer == r.uuid)),
        "{outs:?}"
    );
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

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
            endpoint: r.endpoint.clone()
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
                name: r.name(),
                headers: vec![("X-ROLE".into(), "remote".into())],
                endpoint: r.endpoint.clone(),
            },
            Event::Join {
                peer: r.uuid,
                name: r.name(),
                group: "A".into()
            },
            Event::Join {
                peer: r.uuid,
                name: r.name(),
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
            name: r.name(),
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
            endpoint: r.endpoint.clone()
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
            content: vec![Bytes::from_static(b"x")],
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
        ])],
    );
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().malformed, 1);
    // The next good message with sequence 2 is accepted: the bad one did not consume it.
    r.send(
        &mut e,
        t0,
        ZreMessage::Whisper {
            content: vec![Bytes::from_static(b"ok")],
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
            name: r.name(),
            group: "A".into()
        }]
    );
    assert_eq!(e.peer(r.uuid).unwrap().status, 2);
    assert!(e.peers_by_group("A").is_empty());
    assert!(e.peer_groups().is_empty());
}

#[test]
fn own_join_leave_increment_status_only_on_change_and_reach_every_peer() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r1 = Remote::new(11);
    ready(&mut e, t0, &mut r1, &[], 0);
    let r2 = Remote::new(12); // discovered only
    e.handle_sighting(t0, r2.uuid, &r2.endpoint);
    drain(&mut e);

    assert!(e.join("G"));
    let outs = drain(&mut e);
    let join = ZreMessage::Join {
        group: "G".into(),
        status: 1,
    };
    assert_eq!(sent_to(&outs, r1.uuid), vec![(2, join.clone())]);
    assert_eq!(sent_to(&outs, r2.uuid), vec![(2, join)]);
    assert!(events(&outs).is_empty());

    assert!(!e.join("G"));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.status(), 1);

    assert!(!e.leave("nope"));
    assert!(drain(&mut e).is_empty());

    assert!(e.join("H"));
    assert!(e.leave("G"));
    let outs = drain(&mut e);
    assert_eq!(
        sent_to(&outs, r1.uuid),
        vec![
            (
                3,
                ZreMessage::Join {
                    group: "H".into(),
                    status: 2
                }
            ),
            (
                4,
                ZreMessage::Leave {
                    group: "G".into(),
                    status: 3
                }
            )
        ]
    );
    assert_eq!(e.own_groups(), vec!["H".to_string()]);
    assert!(!e.leave("G"));

    // A peer met now gets the current groups and status in its HELLO.
    let r3 = Remote::new(13);
    e.handle_sighting(t0, r3.uuid, &r3.endpoint);
    let sent = sent_to(&drain(&mut e), r3.uuid);
    match &sent[0] {
        (1, ZreMessage::Hello { groups, status, .. }) => {
            assert_eq!(groups, &vec!["H".to_string()]);
            assert_eq!(*status, 3);
        }
        other => panic!("{other:?}"),
    }
    // Too-long group: error, nothing changes.
    assert!(matches!(
        e.try_join(&"g".repeat(256)),
        Err(EngineError::Wire(WireError::StringTooLong { .. }))
    ));
    assert!(!e.join(&"g".repeat(256)));
    assert_eq!(e.status(), 3);
}

// ---------------------------------------------------------------- WHISPER / SHOUT

#[test]
fn whisper_in_and_out() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(14);
    ready(&mut e, t0, &mut r, &[], 0);
    let content = vec![Bytes::from_static(b"a"), Bytes::from_static(b"")];
    r.send(
        &mut e,
        t0,
        ZreMessage::Whisper {
            content: content.clone(),
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Whisper {
            peer: r.uuid,
            name: r.name(),
            content: content.clone()
        }]
    );
    e.whisper(r.uuid, content.clone()).unwrap();
    e.whisper(r.uuid, vec![Bytes::from_static(b"2")]).unwrap();
    let sent = sent_to(&drain(&mut e), r.uuid);
    assert_eq!(
        sent,
        vec![
            (2, ZreMessage::Whisper { content }),
            (
                3,
                ZreMessage::Whisper {
                    content: vec![Bytes::from_static(b"2")]
                }
            )
        ]
    );
    assert_eq!(
        e.whisper(Uuid::from_u128(999), vec![Bytes::from_static(b"x")]),
        Err(EngineError::UnknownPeer(Uuid::from_u128(999)))
    );
    assert_eq!(e.whisper(r.uuid, vec![]), Err(EngineError::EmptyContent));
    assert!(drain(&mut e).is_empty());
}

#[test]
fn shout_goes_only_to_peers_in_the_group() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r1 = Remote::new(15);
    let mut r2 = Remote::new(16);
    ready(&mut e, t0, &mut r1, &["G"], 1);
    ready(&mut e, t0, &mut r2, &["H"], 1);
    let content = vec![Bytes::from_static(b"hello G")];
    // We are not in G ourselves: allowed.
    assert_eq!(e.shout("G", content.clone()), Ok(1));
    let outs = drain(&mut e);
    assert_eq!(
        sent_to(&outs, r1.uuid),
        vec![(
            2,
            ZreMessage::Shout {
                group: "G".into(),
                content: content.clone()
            }
        )]
    );
    assert!(sent_to(&outs, r2.uuid).is_empty());
    assert_eq!(e.shout("nobody", content.clone()), Ok(0));
    assert_eq!(e.shout("G", vec![]), Err(EngineError::EmptyContent));
    assert!(drain(&mut e).is_empty());
    // Incoming SHOUT: delivered even though we are not in the group (as in C).
    r2.send(
        &mut e,
        t0,
        ZreMessage::Shout {
            group: "H".into(),
            content: content.clone(),
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Shout {
            peer: r2.uuid,
            name: r2.name(),
            group: "H".into(),
            content
        }]
    );
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
            endpoint: r.endpoint.clone()
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
            endpoint: new.endpoint.clone()
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

// ---------------------------------------------------------------- liveness

/// Runs the timers from `from` to `until`, with the remote answering every PING with PING-OK
/// (if `answer`). Returns all outputs.
fn run(e: &mut Engine, r: &mut Remote, until: Instant, answer: bool) -> Vec<Output> {
    let mut all = Vec::new();
    while let Some(deadline) = e.poll_timeout() {
        if deadline > until {
            break;
        }
        e.handle_timeout(deadline);
        let outs = drain(e);
        let pings = sent_to(&outs, r.uuid)
            .iter()
            .filter(|(_, m)| *m == ZreMessage::Ping)
            .count();
        all.extend(outs);
        if answer {
            for _ in 0..pings {
                // A few ms round trip.
                r.send(e, deadline + Duration::from_millis(3), ZreMessage::PingOk);
                all.extend(drain(e));
            }
        }
    }
    all
}

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
    let t0 = Instant::now();
    let mut e = engine(t0);
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

// ---------------------------------------------------------------- capability rule and stop

#[test]
fn stop_sends_goodbye_only_to_zmesh_peers() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut zyre = Remote::new(35);
    let mut zm = Remote::zmesh(36);
    ready(&mut e, t0, &mut zyre, &["G"], 1);
    ready(&mut e, t0, &mut zm, &["G"], 1);
    assert!(!e.peer(zyre.uuid).unwrap().accepts_extensions);
    assert!(e.peer(zm.uuid).unwrap().accepts_extensions);
    let pending = Remote::zmesh(37);
    e.handle_sighting(t0, pending.uuid, &pending.endpoint);
    drain(&mut e);

    e.stop(ms(t0, 10));
    let outs = drain(&mut e);
    assert!(sent_to(&outs, zyre.uuid).is_empty());
    assert!(sent_to(&outs, pending.uuid).is_empty());
    assert_eq!(sent_to(&outs, zm.uuid), vec![(2, ZreMessage::Goodbye)]);
    for r in [&zyre, &zm, &pending] {
        assert!(outs.contains(&Output::Disconnect { peer: r.uuid }));
    }
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Exit { .. }))));
    assert_eq!(
        outs.last(),
        Some(&Output::Event(Event::Stop {
            uuid: own_uuid(),
            name: "me".into()
        }))
    );
    assert!(e.is_stopped());
    assert!(e.peers().is_empty());

    // Everything afterwards is ignored or refused.
    e.stop(ms(t0, 20));
    let mut r = Remote::new(38);
    e.handle_sighting(t0, r.uuid, &r.endpoint);
    r.hello(&mut e, t0, &[], 0);
    e.handle_timeout(ms(t0, 60_000));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.try_join("X"), Err(EngineError::Stopped));
    assert!(!e.join("X"));
    assert_eq!(
        e.whisper(zm.uuid, vec![Bytes::from_static(b"x")]),
        Err(EngineError::Stopped)
    );
    assert_eq!(
        e.shout("G", vec![Bytes::from_static(b"x")]),
        Err(EngineError::Stopped)
    );
}

#[test]
fn goodbye_elect_leader_never_go_to_plain_zyre_peers() {
    // The only path that emits one of ids 8-10 today is stop(); check the whole output stream of a
    // busy session with a plain Zyre peer never contains them.
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(39);
    ready(&mut e, t0, &mut r, &["G"], 1);
    e.join("G");
    e.shout("G", vec![Bytes::from_static(b"x")]).unwrap();
    let mut outs = drain(&mut e);
    outs.extend(run(&mut e, &mut r, ms(t0, 40_000), false));
    e.stop(ms(t0, 40_000));
    outs.extend(drain(&mut e));
    for (_, m) in sent_to(&outs, r.uuid) {
        assert!(m.id() < 8, "{m:?} sent to a plain Zyre peer");
    }
}

// ---------------------------------------------------------------- configuration

#[test]
fn config_validation() {
    let t0 = Instant::now();
    let mut c = Config::new(own_uuid(), "n".repeat(256));
    assert!(matches!(
        Engine::try_new(c.clone(), t0),
        Err(EngineError::Wire(WireError::StringTooLong {
            field: "name",
            ..
        }))
    ));
    c.name = "ok".into();
    c.evasive_timeout = Duration::ZERO;
    assert!(matches!(
        Engine::try_new(c.clone(), t0),
        Err(EngineError::InvalidConfig(_))
    ));
    c.evasive_timeout = DEFAULT_EVASIVE_TIMEOUT;
    c.headers = vec![(ZMESH_HEADER.into(), "7".into())];
    let mut e = Engine::try_new(c, t0).unwrap();
    // An explicit X-ZMESH header is kept, not duplicated.
    assert_eq!(e.headers(), &[(ZMESH_HEADER.to_string(), "7".to_string())]);
    assert!(e.try_set_endpoint("e".repeat(256)).is_err());
    assert_eq!(e.endpoint(), "");
    let d = Config::default();
    assert_eq!(d.name, uuid_to_string(&d.uuid)[..6]);
    assert_eq!(routing_id(&own_uuid())[0], 1);
    assert_eq!(&routing_id(&own_uuid())[1..], own_uuid().as_bytes());
}

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
            content: vec![Bytes::from_static(b"hi all")]
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
