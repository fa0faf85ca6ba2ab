//! Application commands and sender rules: own JOIN/LEAVE, WHISPER/SHOUT, the extensions
//! capability rule, stop() and configuration validation.

use super::*;

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
            content: content.clone().into(),
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Whisper {
            peer: r.uuid,
            name: r.name().into(),
            content: content.clone().into()
        }]
    );
    e.whisper(r.uuid, content.clone()).unwrap();
    e.whisper(r.uuid, vec![Bytes::from_static(b"2")]).unwrap();
    let sent = sent_to(&drain(&mut e), r.uuid);
    assert_eq!(
        sent,
        vec![
            (
                2,
                ZreMessage::Whisper {
                    content: content.into()
                }
            ),
            (
                3,
                ZreMessage::Whisper {
                    content: vec![Bytes::from_static(b"2")].into()
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
                content: content.clone().into()
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
            content: content.clone().into(),
        },
    );
    assert_eq!(
        events(&drain(&mut e)),
        vec![Event::Shout {
            peer: r2.uuid,
            name: r2.name().into(),
            group: "H".into(),
            content: content.into()
        }]
    );
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
