//! The emitter driven by explicit inputs: two layers wired back to back by hand.

use std::time::Instant;

use super::*;
use crate::caps::Caps;
use crate::layer::{pump_pair, PeerView, Recorded};

const A: Uuid = Uuid::from_u128(0xA);
const B: Uuid = Uuid::from_u128(0xB);
const PLAIN: Uuid = Uuid::from_u128(0xC);

type Out = Recorded<Delivery>;

struct Pair {
    a: Emitter,
    b: Emitter,
    ao: Out,
    bo: Out,
}

fn up(l: &mut Emitter, peer: Uuid, caps: Caps, out: &mut Out) {
    let view = PeerView {
        peer,
        name: "p",
        headers: &[],
        caps,
    };
    l.handle(Input::PeerUp(view), Instant::now(), out);
}

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

impl Pair {
    fn new(window: u32) -> Pair {
        let ev = Caps::NONE.with(envelope::Layer::EVENTS);
        let mut x = Pair {
            a: Emitter::new(Config {
                window,
                ..Config::default()
            }),
            b: Emitter::new(Config::default()),
            ao: Out::default(),
            bo: Out::default(),
        };
        up(&mut x.a, B, ev, &mut x.ao);
        up(&mut x.b, A, ev, &mut x.bo);
        up(&mut x.b, PLAIN, Caps::NONE, &mut x.bo);
        x.pump();
        x
    }

    fn pump(&mut self) {
        let now = Instant::now();
        pump_pair(
            (&mut self.a, A, &mut self.ao),
            (&mut self.b, B, &mut self.bo),
            now,
        );
    }

    fn a_events(&mut self) -> Vec<(String, Bytes, bool, u64)> {
        let mut v = Vec::new();
        self.ao.delivered.retain(|d| match d {
            Delivery::Event {
                topic,
                payload,
                retained,
                seq,
                ..
            } => {
                v.push((topic.clone(), payload.clone(), *retained, *seq));
                false
            }
            _ => true,
        });
        v
    }
}

#[test]
fn events_go_only_to_matching_subscribers_in_order() {
    let mut x = Pair::new(0);
    x.a.subscribe(1, p("a.*"), false, false, &mut x.ao).unwrap();
    x.pump();
    assert_eq!(x.b.subscribers("a.x"), vec![A]);
    assert!(x.b.subscribers("b.x").is_empty());
    // B also listens locally.
    x.b.subscribe(7, p("**"), false, false, &mut x.bo).unwrap();
    x.pump();
    assert!(x
        .b
        .emit("b.y", Bytes::from_static(b"0"), false, &mut x.bo)
        .unwrap()
        .is_empty());
    assert!(x.bo.sent.is_empty(), "no subscriber, nothing sent");
    for i in 0..3u8 {
        let sent =
            x.b.emit("a.x", Bytes::from(vec![i]), false, &mut x.bo)
                .unwrap();
        assert_eq!(sent, vec![A]);
    }
    x.pump();
    let got = x.a_events();
    assert_eq!(got.len(), 3);
    assert!(
        got.windows(2).all(|w| w[0].3 < w[1].3),
        "per-publisher order: {got:?}"
    );
    assert_eq!(
        got.iter().map(|g| g.1[0]).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // B's own subscription heard all four, at once, from itself.
    let local =
        x.bo.delivered
            .iter()
            .filter(|d| matches!(d, Delivery::Event { from: None, .. }))
            .count();
    assert_eq!(local, 4);
    // Unsubscribed: B learns it and stops sending; an event already in flight is counted and
    // not delivered.
    x.b.emit("a.z", Bytes::new(), false, &mut x.bo).unwrap();
    x.a.unsubscribe(1, &mut x.ao);
    x.pump();
    assert!(x.a_events().is_empty());
    assert_eq!(x.a.stats().unwanted, 1);
    assert!(x
        .b
        .emit("a.x", Bytes::new(), false, &mut x.bo)
        .unwrap()
        .is_empty());
    assert!(matches!(
        x.b.emit("a..x", Bytes::new(), false, &mut x.bo),
        Err(EmitError::Name(_))
    ));
}

#[test]
fn retained_values_reach_late_subscribers_that_ask() {
    let mut x = Pair::new(0);
    x.b.emit("cfg.x", Bytes::from_static(b"v1"), true, &mut x.bo)
        .unwrap();
    x.b.emit("cfg.x", Bytes::from_static(b"v2"), true, &mut x.bo)
        .unwrap();
    x.b.emit("cfg.y", Bytes::from_static(b"y"), false, &mut x.bo)
        .unwrap();
    // A subscription that does not ask gets nothing old.
    x.a.subscribe(1, p("cfg.*"), false, false, &mut x.ao)
        .unwrap();
    x.pump();
    assert!(x.a_events().is_empty());
    // One that asks gets the last value of each retained topic, once.
    x.a.subscribe(2, p("cfg.**"), true, false, &mut x.ao)
        .unwrap();
    x.pump();
    let got = x.a_events();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].0.as_str(), &got[0].1[..], got[0].2),
        ("cfg.x", &b"v2"[..], true)
    );
    // A local late subscriber on B gets B's own retained value.
    x.b.subscribe(9, p("cfg.x"), true, false, &mut x.bo)
        .unwrap();
    assert!(x
        .bo
        .delivered
        .iter()
        .any(|d| matches!(d, Delivery::Event { retained: true, .. })));
    assert!(x.b.forget_retained("cfg.x"));
    let mut small = Emitter::new(Config {
        max_retained: 1,
        ..Config::default()
    });
    let mut o = Out::default();
    small.emit("r.a", Bytes::new(), true, &mut o).unwrap();
    assert_eq!(
        small.emit("r.b", Bytes::new(), true, &mut o),
        Err(EmitError::TooManyRetained)
    );
}

#[test]
fn a_slow_subscriber_back_pressures_the_publisher() {
    let mut x = Pair::new(4);
    x.a.subscribe(1, p("t.*"), false, true, &mut x.ao).unwrap();
    x.pump();
    for _ in 0..4 {
        x.b.emit("t.x", Bytes::new(), false, &mut x.bo).unwrap();
    }
    assert_eq!(
        x.b.emit("t.x", Bytes::new(), false, &mut x.bo),
        Err(EmitError::Backpressure(vec![A]))
    );
    x.pump();
    let got =
        x.ao.delivered
            .iter()
            .filter(|d| matches!(d, Delivery::Event { flow: true, .. }))
            .count();
    assert_eq!(got, 4);
    // The application takes one: not yet half a window.
    x.a.consumed(B, 1, &mut x.ao);
    assert!(x.ao.sent.is_empty());
    x.a.consumed(B, 1, &mut x.ao);
    x.bo.delivered.clear();
    x.pump();
    assert_eq!(x.bo.delivered, vec![Delivery::Credit { peer: A }]);
    x.b.emit("t.x", Bytes::new(), false, &mut x.bo).unwrap();
    x.b.emit("t.x", Bytes::new(), false, &mut x.bo).unwrap();
    assert!(matches!(
        x.b.emit("t.x", Bytes::new(), false, &mut x.bo),
        Err(EmitError::Backpressure(_))
    ));
    // Events for a subscription without flow control are not counted: never held back.
    x.a.unsubscribe(1, &mut x.ao);
    x.a.subscribe(2, p("t.*"), false, false, &mut x.ao).unwrap();
    x.pump();
    for _ in 0..20 {
        x.b.emit("t.x", Bytes::new(), false, &mut x.bo).unwrap();
    }
    x.pump();
    // A counted event that arrives after its flow subscription is gone counts as consumed.
    let mut y = Pair::new(2);
    y.a.subscribe(1, p("t.*"), false, true, &mut y.ao).unwrap();
    y.pump();
    y.b.emit("t.x", Bytes::new(), false, &mut y.bo).unwrap();
    y.b.emit("t.x", Bytes::new(), false, &mut y.bo).unwrap();
    y.a.unsubscribe(1, &mut y.ao);
    y.a.subscribe(2, p("t.*"), false, false, &mut y.ao).unwrap();
    y.pump();
    assert!(y.a.stats().credits_sent >= 1);
    y.b.emit("t.x", Bytes::new(), false, &mut y.bo).unwrap();
    // The subscriber leaves: whoever waited is told.
    x.bo.delivered.clear();
    x.b.handle(Input::PeerDown { peer: A }, Instant::now(), &mut x.bo);
    assert_eq!(x.bo.delivered, vec![Delivery::Credit { peer: A }]);
    assert!(x.b.subscribers("t.x").is_empty());
}

#[test]
fn garbage_is_counted() {
    let mut x = Pair::new(0);
    let mut bad = Envelope::new(envelope::Layer::EVENTS, wire::SUBS, 9);
    bad.payload = Bytes::from_static(b"\x01");
    let mut no_topic = Envelope::new(envelope::Layer::EVENTS, wire::EVENT, 1);
    no_topic.payload = Bytes::new();
    let mut credit = Envelope::new(envelope::Layer::EVENTS, wire::CREDIT, 1);
    credit.payload = Bytes::from_static(b"\x00");
    let unknown = Envelope::new(envelope::Layer::EVENTS, 99, 1);
    for envelope in [bad, no_topic, credit, unknown] {
        let input = Input::Envelope {
            from: B,
            group: None,
            envelope,
        };
        x.a.handle(input, Instant::now(), &mut x.ao);
    }
    assert_eq!(x.a.stats().malformed, 4);
    let stale = Subs {
        version: 0,
        window: 0,
        patterns: vec![],
    };
    let mut env = Envelope::new(envelope::Layer::EVENTS, wire::SUBS, 0);
    env.payload = stale.encode();
    let input = Input::Envelope {
        from: B,
        group: None,
        envelope: env,
    };
    x.a.handle(input, Instant::now(), &mut x.ao);
    assert_eq!(x.a.stats().stale_subs, 1);
}
