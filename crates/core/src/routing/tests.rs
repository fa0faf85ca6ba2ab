use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::caps::Caps;
use crate::control::{self, State};
use crate::envelope::{self, Envelope};
use crate::layer::{Input, Layer as _, PeerView, Recorded};
use crate::pattern::Pattern;

fn u(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A directory with peers 1..=n; odd ones serve `job.*` requests and `t.*` ticks.
fn directory(n: u128, plain: &[u128]) -> Control {
    let mut c = Control::default();
    let mut io = Recorded::default();
    for i in 1..=n {
        let caps = if plain.contains(&i) {
            Caps::NONE
        } else {
            Caps::NONE.with(Layer::CONTROL).with(Layer::REQREP)
        };
        let view = PeerView {
            peer: u(i),
            name: "p",
            headers: &[],
            caps,
        };
        c.handle(Input::PeerUp(view), Instant::now(), &mut io);
        let pats = if i % 2 == 1 {
            vec![Pattern::parse("job.*").unwrap()]
        } else {
            vec![]
        };
        let s = State {
            version: 1,
            options: BTreeMap::from([("i".to_owned(), i.to_string())]),
            requests: pats.clone(),
            ticks: pats
                .iter()
                .map(|_| Pattern::parse("t.*").unwrap())
                .collect(),
        };
        let mut env = Envelope::new(envelope::Layer::CONTROL, control::wire::STATE, 1);
        env.payload = s.encode();
        let input = Input::Envelope {
            from: u(i),
            group: None,
            envelope: env,
        };
        c.handle(input, Instant::now(), &mut io);
    }
    c
}

#[test]
fn candidates_serve_the_event_match_the_filter_and_speak_zmesh() {
    let c = directory(7, &[5]);
    let all: Vec<Uuid> =
        Router::candidates(&c, &Filter::Everyone, "job.x", HandlerKind::Request).collect();
    assert_eq!(
        all,
        vec![u(1), u(3), u(7)],
        "5 is a plain peer, evens serve nothing"
    );
    let f = filter::parse("i>=3").unwrap();
    let some: Vec<Uuid> = Router::candidates(&c, &f, "job.x", HandlerKind::Request).collect();
    assert_eq!(some, vec![u(3), u(7)]);
    assert_eq!(
        Router::candidates(&c, &f, "other", HandlerKind::Request).count(),
        0
    );
    assert_eq!(
        Router::candidates(&c, &f, "job.x", HandlerKind::Tick).count(),
        0
    );
    assert_eq!(
        Router::candidates(&c, &f, "t.x", HandlerKind::Tick).count(),
        2
    );
}

#[test]
fn least_outstanding_then_round_robin() {
    let mut r = Router::default();
    let peers = [u(1), u(2), u(3)];
    let even = |_: &Uuid| 0usize;
    let picks: Vec<Uuid> = (0..7)
        .map(|_| {
            r.pick(HandlerKind::Request, peers.iter().map(|p| (*p, even(p))))
                .unwrap()
        })
        .collect();
    assert_eq!(picks, vec![u(1), u(2), u(3), u(1), u(2), u(3), u(1)]);
    // The least loaded wins whatever the rotation says.
    let loads = [(u(1), 2), (u(2), 1), (u(3), 5)];
    assert_eq!(r.pick(HandlerKind::Request, loads), Some(u(2)));
    assert_eq!(r.pick(HandlerKind::Request, loads), Some(u(2)));
    // Ticks rotate on their own.
    assert_eq!(r.pick(HandlerKind::Tick, peers.map(|p| (p, 0))), Some(u(1)));
    assert_eq!(
        r.pick(HandlerKind::Request, peers.map(|p| (p, 0))),
        Some(u(3))
    );
    assert_eq!(r.pick(HandlerKind::Request, []), None);
    // A pick that left the set: the rotation carries on after it.
    let mut r = Router::default();
    r.pick(HandlerKind::Request, [(u(2), 0)]);
    assert_eq!(
        r.pick(HandlerKind::Request, [(u(1), 0), (u(3), 0)]),
        Some(u(3))
    );
    assert_eq!(
        r.pick(HandlerKind::Request, [(u(1), 0), (u(3), 0)]),
        Some(u(1))
    );
}

#[test]
fn pipelined_counts_are_exact() {
    // 10,000 picks over 5 equal peers whose outstanding counts grow as picked (pipelined, none
    // answered): exactly 2,000 each.
    let mut r = Router::default();
    let mut load = [0usize; 5];
    for _ in 0..10_000 {
        let p = r
            .pick(
                HandlerKind::Request,
                (0..5).map(|i| (u(i as u128 + 1), load[i])),
            )
            .unwrap();
        load[(p.as_u128() - 1) as usize] += 1;
    }
    assert_eq!(load, [2000; 5]);
}

#[test]
fn targets() {
    let t = |s: &str| s.parse::<Target>().unwrap();
    assert_eq!(t("any"), Target::Any(Filter::Everyone));
    assert_eq!(t("all"), Target::All(Filter::Everyone));
    assert_eq!(t("any:role=db"), Target::Any(Filter::eq("role", "db")));
    assert_eq!(
        t("all:role=db,zone~^eu-").to_string(),
        "all:role=db,zone~^eu-"
    );
    assert_eq!(t("group:G"), Target::All(Filter::group("G")));
    assert_eq!(t("alice"), Target::Name("alice".into()));
    assert_eq!(t("anya"), Target::Name("anya".into()));
    let id = u(0x1234);
    assert_eq!(t(&zmesh_zre::uuid_to_string(&id)), Target::Peer(id));
    assert_eq!(t(&id.to_string()), Target::Peer(id));
    assert!(matches!("any:role=".parse::<Target>(), Ok(Target::Any(_))));
    assert!(matches!(
        "all:(x".parse::<Target>(),
        Err(TargetError::Filter(_))
    ));
    assert_eq!("".parse::<Target>(), Err(TargetError::Empty));
    assert_eq!("group:".parse::<Target>(), Err(TargetError::Empty));
}
