//! Secure mode: every peer announced with a key, every message on a connection authenticated as
//! its sender's key (the binding of UUID and key), keyless input ignored.

use super::*;
use crate::engine::keys::PUBLICKEY_HEADER;

const OWN_KEY: [u8; 32] = [0xA1; 32];

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

/// A secure engine (our key [`OWN_KEY`]) whose outputs `drain` checks against the contract.
fn secure_engine(t0: Instant) -> Engine {
    let mut c = Config::new(own_uuid(), "me");
    c.endpoint = OWN_ENDPOINT.into();
    c.public_key = Some(OWN_KEY);
    let e = Engine::new(c, t0);
    CONTRACT.with(|k| *k.borrow_mut() = Some(Contract::new(OwnFacts::of(&e))));
    e
}

/// A remote secure node: a [`Remote`] with a key pair (only the public half matters here: the
/// shell's CURVE handshake has proven it by the time the engine sees a message).
struct Keyed {
    r: Remote,
    key: [u8; 32],
}

impl Keyed {
    fn new(n: u128, key: [u8; 32]) -> Keyed {
        Keyed {
            r: Remote::zmesh(n),
            key,
        }
    }

    fn uuid(&self) -> Uuid {
        self.r.uuid
    }

    fn sighting(&self, e: &mut Engine, now: Instant) {
        e.handle_sighting_with_key(now, self.r.uuid, &self.r.endpoint, Some(self.key));
    }

    /// A HELLO (sequence 1) announcing `announced` in X-PUBLICKEY (`None`: no header), on a
    /// connection authenticated as `conn`.
    fn hello_as(
        &mut self,
        e: &mut Engine,
        now: Instant,
        announced: Option<[u8; 32]>,
        conn: Option<[u8; 32]>,
    ) {
        let mut m = self.r.hello_msg(&["G"], 1);
        if let (ZreMessage::Hello { headers, .. }, Some(k)) = (&mut m, announced) {
            headers.push((PUBLICKEY_HEADER.into(), z85::encode(k)));
        }
        self.r.seq = 1;
        let frames = m.encode(1).unwrap();
        e.handle_message_with_key(now, &routing_id(&self.r.uuid), frames, conn);
    }

    /// The honest HELLO: its own key, on its own connection.
    fn hello(&mut self, e: &mut Engine, now: Instant) {
        self.hello_as(e, now, Some(self.key), Some(self.key));
    }

    /// `msg` with this remote's next sequence number, on a connection authenticated as `conn`.
    fn send_on(&mut self, e: &mut Engine, now: Instant, msg: ZreMessage, conn: Option<[u8; 32]>) {
        let frames = msg.encode(self.r.seq.wrapping_add(1)).unwrap();
        let before = e.stats().messages_received;
        e.handle_message_with_key(now, &routing_id(&self.r.uuid), frames, conn);
        if e.stats().messages_received > before {
            self.r.seq = self.r.seq.wrapping_add(1);
        }
    }

    fn whisper(text: &str) -> ZreMessage {
        ZreMessage::Whisper {
            content: vec![Bytes::copy_from_slice(text.as_bytes())].into(),
        }
    }
}

fn entered(outs: &[Output], who: Uuid) -> bool {
    events(outs)
        .iter()
        .any(|e| matches!(e, Event::Enter { peer, .. } if *peer == who))
}

fn whispers(outs: &[Output]) -> Vec<(Uuid, Bytes)> {
    events(outs)
        .into_iter()
        .filter_map(|e| match e {
            Event::Whisper { peer, content, .. } => Some((peer, content[0].clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn our_hello_carries_our_key_and_connect_carries_theirs() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    assert!(e.is_secure());
    assert_eq!(e.public_key(), Some(&OWN_KEY));
    let b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    let outs = drain(&mut e);
    assert!(
        outs.contains(&Output::Connect {
            peer: b.uuid(),
            endpoint: b.r.endpoint.clone(),
            public_key: Some(key(2)),
        }),
        "{outs:?}"
    );
    let hello = sent_to(&outs, b.uuid());
    let Some((1, ZreMessage::Hello { headers, .. })) = hello.first() else {
        panic!("no HELLO: {outs:?}")
    };
    // Zyre's X-PUBLICKEY: the 40-character Z85 text of our public key.
    let text = z85::encode(OWN_KEY);
    assert_eq!(text.len(), 40);
    assert!(headers.contains(&(PUBLICKEY_HEADER.into(), text)));
    assert_eq!(e.peer(b.uuid()).unwrap().public_key, Some(key(2)));
}

#[test]
fn matching_key_is_accepted() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    b.hello(&mut e, t0);
    let outs = drain(&mut e);
    assert!(entered(&outs, b.uuid()), "{outs:?}");
    b.send_on(&mut e, t0, Keyed::whisper("hi"), Some(key(2)));
    let outs = drain(&mut e);
    assert_eq!(whispers(&outs), vec![(b.uuid(), Bytes::from("hi"))]);
    assert_eq!(e.stats().impersonations, 0);
    assert_eq!(e.stats().mode_mismatches, 0);
}

#[test]
fn a_hello_creates_an_unknown_peer_bound_to_its_key() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    b.hello(&mut e, t0);
    let outs = drain(&mut e);
    assert!(entered(&outs, b.uuid()), "{outs:?}");
    assert!(outs.iter().any(|o| matches!(o,
        Output::Connect { peer, public_key: Some(k), .. } if *peer == b.uuid() && *k == key(2))));
    assert_eq!(e.peer(b.uuid()).unwrap().public_key, Some(key(2)));
}

/// zyre#533: C, admitted with its own key, sends as B. Refused and counted; B is unaffected.
#[test]
fn a_message_on_another_peers_key_is_refused_and_counted() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    let mut c = Keyed::new(3, key(3));
    for p in [&mut b, &mut c] {
        p.sighting(&mut e, t0);
        p.hello(&mut e, t0);
    }
    drain(&mut e);
    // C's connection (key 3) carries a WHISPER claiming B's UUID, with B's next sequence.
    b.send_on(&mut e, t0, Keyed::whisper("forged"), Some(key(3)));
    let outs = drain(&mut e);
    assert!(whispers(&outs).is_empty(), "{outs:?}");
    assert!(events(&outs).is_empty(), "{outs:?}");
    assert_eq!(e.stats().impersonations, 1);
    // Also a JOIN in B's name: no JOIN event, B's status unchanged.
    let status = e.peer(b.uuid()).unwrap().status;
    b.send_on(
        &mut e,
        t0,
        ZreMessage::Join {
            group: "EVIL".into(),
            status: status.wrapping_add(1),
        },
        Some(key(3)),
    );
    assert!(events(&drain(&mut e)).is_empty());
    assert_eq!(e.stats().impersonations, 2);
    assert_eq!(e.peer(b.uuid()).unwrap().status, status);
    // B itself, on its own connection, still gets through (no sequence was consumed).
    b.send_on(&mut e, t0, Keyed::whisper("real"), Some(key(2)));
    let outs = drain(&mut e);
    assert_eq!(whispers(&outs), vec![(b.uuid(), Bytes::from("real"))]);
    assert!(e.peers().contains(&b.uuid()));
}

#[test]
fn a_hello_whose_key_differs_from_the_beacons_is_refused() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    // The beacon announced B with key 2; a HELLO for B arrives from a holder of key 9, which it
    // also announces (so it agrees with its connection, but not with the beacon).
    let mut b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    drain(&mut e);
    b.hello_as(&mut e, t0, Some(key(9)), Some(key(9)));
    let outs = drain(&mut e);
    assert!(!entered(&outs, b.uuid()), "{outs:?}");
    assert_eq!(e.stats().impersonations, 1);
    assert!(!e.peer(b.uuid()).unwrap().ready);
    // The real B then enters normally.
    b.hello(&mut e, t0);
    assert!(entered(&drain(&mut e), b.uuid()));
}

#[test]
fn a_hello_whose_key_is_not_its_connections_is_refused() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    // Announces key 2 (B's) but the connection was authenticated as key 3.
    b.hello_as(&mut e, t0, Some(key(2)), Some(key(3)));
    let outs = drain(&mut e);
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(e.stats().impersonations, 1);
    // Unparsable and zero keys are refused the same way.
    let mut m = b.r.hello_msg(&[], 1);
    if let ZreMessage::Hello { headers, .. } = &mut m {
        headers.push((PUBLICKEY_HEADER.into(), "not a key".into()));
    }
    e.handle_message_with_key(
        t0,
        &routing_id(&b.uuid()),
        m.encode(1).unwrap(),
        Some(key(2)),
    );
    b.hello_as(&mut e, t0, Some([0; 32]), Some([0; 32]));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().impersonations, 3);
    assert!(e.peer(b.uuid()).is_none());
}

#[test]
fn a_restart_with_another_key_is_refused_and_the_peer_stays() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    b.hello(&mut e, t0);
    drain(&mut e);
    // A HELLO for B (a restart) from another key: no EXIT of the real B, no ENTER.
    b.hello_as(&mut e, t0, Some(key(4)), Some(key(4)));
    let outs = drain(&mut e);
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(e.stats().impersonations, 1);
    assert_eq!(e.stats().restarts, 0);
    assert!(e.peers().contains(&b.uuid()));
    // A restart with its own key is a restart.
    b.hello(&mut e, t0);
    let outs = drain(&mut e);
    assert!(entered(&outs, b.uuid()), "{outs:?}");
    assert_eq!(e.stats().restarts, 1);
}

#[test]
fn keyless_input_is_ignored_in_secure_mode() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    // A version-1 sighting (no key), and Zyre's downgrade case (first key byte 0).
    e.handle_sighting(t0, b.uuid(), &b.r.endpoint);
    let mut zero_first = key(2);
    zero_first[0] = 0;
    e.handle_sighting_with_key(t0, b.uuid(), &b.r.endpoint, Some(zero_first));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().mode_mismatches, 2);
    // A HELLO without X-PUBLICKEY (Zyre: "ignoring HELLO to avoid security downgrade").
    b.hello_as(&mut e, t0, None, Some(key(2)));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().mode_mismatches, 3);
    // A HELLO on a connection without a key (a plaintext inbox connection); what follows it
    // comes from an unknown peer.
    b.hello_as(&mut e, t0, Some(key(2)), None);
    e.handle_message(
        t0,
        &routing_id(&b.uuid()),
        ZreMessage::Ping.encode(2).unwrap(),
    );
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().mode_mismatches, 4);
    assert_eq!(e.stats().not_hello_first, 1);
    assert!(e.peer(b.uuid()).is_none());
    assert_eq!(e.stats().impersonations, 0);
}

#[test]
fn a_ready_peers_message_without_a_key_is_refused() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    b.hello(&mut e, t0);
    drain(&mut e);
    b.send_on(&mut e, t0, Keyed::whisper("plain"), None);
    assert!(events(&drain(&mut e)).is_empty());
    assert_eq!(e.stats().mode_mismatches, 1);
}

#[test]
fn a_sighting_with_another_key_for_a_known_uuid_is_ignored() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    drain(&mut e);
    let forged = Keyed::new(2, key(7));
    forged.sighting(&mut e, ms(t0, 100));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().key_conflicts, 1);
    assert_eq!(e.peer(b.uuid()).unwrap().public_key, Some(key(2)));
    // The same key is a normal sighting.
    b.sighting(&mut e, ms(t0, 200));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().key_conflicts, 1);
}

#[test]
fn a_plain_engine_ignores_keyed_sightings() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    assert!(!e.is_secure());
    let b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.stats().mode_mismatches, 1);
    // Keyless, it is a normal peer, connected without a key.
    e.handle_sighting(t0, b.uuid(), &b.r.endpoint);
    let outs = drain(&mut e);
    assert!(outs.iter().any(|o| matches!(o,
        Output::Connect { peer, public_key: None, .. } if *peer == b.uuid())));
}

#[test]
fn a_key_whose_first_byte_is_zero_is_an_invalid_config() {
    let mut c = Config::new(own_uuid(), "me");
    c.public_key = Some([0; 32]);
    assert!(matches!(
        Engine::try_new(c, Instant::now()),
        Err(EngineError::InvalidConfig(_))
    ));
}

/// Two secure engines wired together, each passing the sender's key with every message as the
/// shell does: they meet, and a third engine claiming one of their UUIDs with its own key gets
/// nothing through.
#[test]
fn two_secure_engines_meet_and_a_third_cannot_pose_as_one() {
    let t0 = Instant::now();
    let mk = |n: u128, k: [u8; 32]| {
        let mut c = Config::new(Uuid::from_u128(n), format!("node{n}"));
        c.endpoint = format!("tcp://127.0.0.1:{}", 7000 + n);
        c.public_key = Some(k);
        Engine::new(c, t0)
    };
    let (mut a, mut b) = (mk(0xA, key(0xA)), mk(0xB, key(0xB)));
    a.handle_sighting_with_key(t0, b.uuid(), b.endpoint(), Some(key(0xB)));
    /// Delivers `from`'s sends to `to` on a connection authenticated as `from_key`; returns the
    /// peers `from` reported entering.
    fn pump(from: &mut Engine, to: &mut Engine, from_key: [u8; 32], t0: Instant) -> Vec<Uuid> {
        let mut entered = Vec::new();
        while let Some(o) = from.poll_output() {
            match o {
                Output::Send { peer, frames } if peer == to.uuid() => to.handle_message_with_key(
                    t0,
                    &routing_id(&from.uuid()),
                    frames,
                    Some(from_key),
                ),
                Output::Event(Event::Enter { peer, .. }) => entered.push(peer),
                _ => {}
            }
        }
        entered
    }
    let (mut entered_a, mut entered_b) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        entered_a.extend(pump(&mut a, &mut b, key(0xA), t0));
        entered_b.extend(pump(&mut b, &mut a, key(0xB), t0));
    }
    assert_eq!(entered_a, vec![b.uuid()]);
    assert_eq!(entered_b, vec![a.uuid()]);
    // The impostor (key 0xC) sends a HELLO and a WHISPER as A to B.
    let hello = ZreMessage::Hello {
        endpoint: "tcp://127.0.0.1:7999".into(),
        groups: vec![],
        status: 0,
        name: "node10".into(),
        headers: vec![(PUBLICKEY_HEADER.into(), z85::encode(key(0xC)))],
    };
    b.handle_message_with_key(
        t0,
        &routing_id(&a.uuid()),
        hello.encode(1).unwrap(),
        Some(key(0xC)),
    );
    let w = Keyed::whisper("as A").encode(2).unwrap();
    b.handle_message_with_key(t0, &routing_id(&a.uuid()), w, Some(key(0xC)));
    let outs: Vec<Output> = std::iter::from_fn(|| b.poll_output()).collect();
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(b.stats().impersonations, 2);
    assert_eq!(b.peers(), vec![a.uuid()]);
}

/// A new UUID at a peer's endpoint purges it only when both are the same key (the same node
/// under a new UUID); an admitted node claiming another's endpoint in its HELLO evicts nobody.
#[test]
fn only_the_same_key_purges_a_peer_at_its_endpoint() {
    let t0 = Instant::now();
    let mut e = secure_engine(t0);
    let mut b = Keyed::new(2, key(2));
    b.sighting(&mut e, t0);
    b.hello(&mut e, t0);
    drain(&mut e);
    // Another key, another UUID, B's endpoint: both stay.
    let mut x = Keyed::new(9, key(9));
    x.r.endpoint = b.r.endpoint.clone();
    x.hello(&mut e, t0);
    let outs = drain(&mut e);
    assert!(entered(&outs, x.uuid()), "{outs:?}");
    assert!(!outs.contains(&exit(&b.r)), "{outs:?}");
    assert_eq!(e.stats().purged, 0);
    assert!(e.peers().contains(&b.uuid()));
    // B's key under a new UUID at B's endpoint: B restarted; the old record is purged.
    let mut b2 = Keyed::new(3, key(2));
    b2.r.endpoint = b.r.endpoint.clone();
    b2.sighting(&mut e, t0);
    let outs = drain(&mut e);
    assert!(outs.contains(&exit(&b.r)), "{outs:?}");
    assert_eq!(e.stats().purged, 1);
}
