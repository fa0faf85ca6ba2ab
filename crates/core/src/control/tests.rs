use std::time::Instant;

use super::*;
use crate::filter::{parse, Attributes};
use crate::layer::{PeerView, Recorded};

const A: Uuid = Uuid::from_u128(0xA);
const B: Uuid = Uuid::from_u128(0xB);
const PLAIN: Uuid = Uuid::from_u128(0xC);

fn up(
    c: &mut Control,
    io: &mut Recorded<Delivery>,
    peer: Uuid,
    caps: Caps,
    headers: &[(String, String)],
) {
    let view = PeerView {
        peer,
        name: "n",
        headers,
        caps,
    };
    c.handle(Input::PeerUp(view), Instant::now(), io);
}

fn ctl_caps() -> Caps {
    Caps::NONE
        .with(envelope::Layer::CONTROL)
        .with(envelope::Layer::REQREP)
}

fn state_env(version: u64, options: &[(&str, &str)], requests: &[&str]) -> Envelope {
    let s = State {
        version,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        requests: requests
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
        ticks: vec![],
    };
    let mut env = Envelope::new(envelope::Layer::CONTROL, wire::STATE, version);
    env.payload = s.encode();
    env
}

fn deliver(c: &mut Control, io: &mut Recorded<Delivery>, from: Uuid, envelope: Envelope) {
    let input = Input::Envelope {
        from,
        group: None,
        envelope,
    };
    c.handle(input, Instant::now(), io);
}

fn sent_states(io: &mut Recorded<Delivery>) -> Vec<(Uuid, State)> {
    io.sent
        .drain(..)
        .map(|(p, f)| {
            let env = Envelope::decode(&f).unwrap();
            assert_eq!(
                (env.layer, env.kind),
                (envelope::Layer::CONTROL, wire::STATE)
            );
            (p, State::decode(&env.payload).unwrap())
        })
        .collect()
}

#[test]
fn state_goes_to_zmesh_peers_on_meeting_and_on_every_change() {
    let mut c = Control::new([("role".to_owned(), "db".to_owned())].into()).unwrap();
    let mut io = Recorded::default();
    up(&mut c, &mut io, A, ctl_caps(), &[]);
    up(&mut c, &mut io, PLAIN, Caps::NONE, &[]);
    up(
        &mut c,
        &mut io,
        B,
        Caps::NONE.with(envelope::Layer::REQREP),
        &[],
    );
    let sent = sent_states(&mut io);
    assert_eq!(
        sent.len(),
        1,
        "only the peer that runs the control layer: {sent:?}"
    );
    assert_eq!(sent[0].0, A);
    assert_eq!(sent[0].1.options["role"], "db");
    let v1 = sent[0].1.version;

    c.set_option("zone", "eu-1", &mut io).unwrap();
    let sent = sent_states(&mut io);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.version > v1);
    assert_eq!(sent[0].1.options["zone"], "eu-1");
    // Unchanged: nothing sent.
    c.set_option("zone", "eu-1", &mut io).unwrap();
    assert!(io.sent.is_empty());
    assert!(c.remove_option("zone", &mut io));
    assert!(!c.remove_option("zone", &mut io));
    assert_eq!(sent_states(&mut io).len(), 1);
    c.set_served(vec![Pattern::parse("a.*").unwrap()], vec![], &mut io);
    let sent = sent_states(&mut io);
    assert_eq!(sent[0].1.requests, vec![Pattern::parse("a.*").unwrap()]);
    c.set_served(vec![Pattern::parse("a.*").unwrap()], vec![], &mut io);
    assert!(io.sent.is_empty());
}

#[test]
fn option_rules() {
    let mut c = Control::default();
    let mut io = Recorded::default();
    assert_eq!(
        c.set_option("", "x", &mut io),
        Err(StateError::BadKey(String::new()))
    );
    assert!(matches!(
        c.set_option("a,b", "x", &mut io),
        Err(StateError::BadKey(_))
    ));
    assert!(matches!(
        c.set_option("k", &"v".repeat(wire::MAX_VALUE + 1), &mut io),
        Err(StateError::ValueTooLong(_))
    ));
    for i in 0..wire::MAX_OPTIONS {
        c.set_option(&format!("k{i}"), "v", &mut io).unwrap();
    }
    assert!(matches!(
        c.set_option("one-more", "v", &mut io),
        Err(StateError::TooMany(..))
    ));
    c.set_option("k0", "changed", &mut io).unwrap();
    assert!(Control::new([("bad key".to_owned(), String::new())].into()).is_err());
}

#[test]
fn peer_events_and_directory() {
    let mut c = Control::default();
    let mut io = Recorded::default();
    let headers = vec![
        ("role".to_owned(), "header".to_owned()),
        ("hw".to_owned(), "x86".to_owned()),
    ];
    up(&mut c, &mut io, A, ctl_caps(), &headers);
    assert!(!c.peer(A).unwrap().is_joined());
    assert_eq!(c.peer(A).unwrap().attr("role"), Some("header"));
    deliver(
        &mut c,
        &mut io,
        A,
        state_env(5, &[("role", "sensor")], &["sensor.*"]),
    );
    assert_eq!(
        io.delivered,
        vec![Delivery::PeerJoined {
            peer: A,
            options: [("role".to_owned(), "sensor".to_owned())].into()
        }]
    );
    let rec = c.peer(A).unwrap();
    assert!(rec.is_joined());
    assert_eq!(
        rec.attr("role"),
        Some("sensor"),
        "options come before headers"
    );
    assert_eq!(rec.attr("hw"), Some("x86"));
    assert!(rec.serves("sensor.read", false));
    assert!(!rec.serves("sensor.read", true));
    assert!(!rec.serves("other", false));
    io.delivered.clear();
    // Same options, new handlers: no options event; an older version: ignored.
    deliver(
        &mut c,
        &mut io,
        A,
        state_env(6, &[("role", "sensor")], &["**"]),
    );
    assert!(io.delivered.is_empty());
    assert!(c.peer(A).unwrap().serves("other", false));
    deliver(&mut c, &mut io, A, state_env(4, &[("role", "old")], &[]));
    assert_eq!(c.stats().stale_states, 1);
    assert_eq!(c.peer(A).unwrap().attr("role"), Some("sensor"));
    deliver(&mut c, &mut io, A, state_env(7, &[("role", "db")], &[]));
    assert!(
        matches!(&io.delivered[..], [Delivery::OptionsChanged { peer, options }] if *peer == A && options["role"] == "db")
    );
    io.delivered.clear();
    // Groups.
    c.handle(
        Input::Joined {
            peer: A,
            group: "G",
        },
        Instant::now(),
        &mut io,
    );
    assert!(parse("@G,role=db").unwrap().matches(c.peer(A).unwrap()));
    c.handle(
        Input::Left {
            peer: A,
            group: "G",
        },
        Instant::now(),
        &mut io,
    );
    assert!(!parse("@G").unwrap().matches(c.peer(A).unwrap()));
    // Garbage and strangers are counted, not applied.
    let mut bad = state_env(9, &[], &[]);
    bad.payload = Bytes::from_static(b"\x00");
    deliver(&mut c, &mut io, A, bad);
    deliver(&mut c, &mut io, B, state_env(1, &[], &[]));
    let mut other = state_env(10, &[], &[]);
    other.kind = 9;
    deliver(&mut c, &mut io, A, other);
    assert_eq!(c.stats().malformed, 3);
    assert_eq!(c.peer(A).unwrap().version(), 7);
    // Leaving: PeerLeft only for a joined peer.
    up(&mut c, &mut io, PLAIN, Caps::NONE, &[]);
    c.handle(Input::PeerDown { peer: PLAIN }, Instant::now(), &mut io);
    c.handle(Input::PeerDown { peer: A }, Instant::now(), &mut io);
    assert_eq!(io.delivered, vec![Delivery::PeerLeft { peer: A }]);
    assert!(c.peer(A).is_none());
}
