//! Two drivers and a plain ZRE engine on an in-memory network, every flush checked against the
//! output contract: discovery, a request answered, a request to a plain peer refused at once
//! with nothing sent to it, a peer's departure failing its pending requests, a polite stop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;
use zmesh_zre::{routing_id, Config, Engine, Event, Output};

use super::*;
use crate::pattern::Pattern;
use crate::reqrep::{Delivery, HandlerKind, NoResponders, RequestError, RequestSpec};
use crate::testing::Checker;

const A: Uuid = Uuid::from_u128(0xA);
const B: Uuid = Uuid::from_u128(0xB);
const C: Uuid = Uuid::from_u128(0xC);

fn endpoint(u: Uuid) -> String {
    format!("tcp://mem/{}", u.as_u128())
}

fn config(u: Uuid) -> Config {
    Config {
        endpoint: endpoint(u),
        ..Config::new(u, format!("n{}", u.as_u128()))
    }
}

/// Frames in flight: (from, to, frames).
type Wire = VecDeque<(Uuid, Uuid, Vec<Bytes>)>;

struct Net<'a> {
    from: Uuid,
    wire: &'a mut Wire,
}

impl Transport for Net<'_> {
    fn connect(&mut self, _peer: Uuid, _endpoint: &str, _key: Option<&[u8; 32]>) -> bool {
        true
    }
    fn send(&mut self, peer: Uuid, frames: zmesh_zre::Frames) -> bool {
        self.wire.push_back((self.from, peer, frames.to_vec()));
        true
    }
    fn disconnect(&mut self, _peer: Uuid) {}
}

#[derive(Default)]
struct App {
    events: Vec<Event>,
    deliveries: Vec<Delivery<u32>>,
    peer_events: Vec<control::Delivery>,
}

impl Sink<u32> for App {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
    fn reqrep(&mut self, d: Delivery<u32>) {
        self.deliveries.push(d);
    }
    fn control(&mut self, d: control::Delivery) {
        self.peer_events.push(d);
    }
    fn events(&mut self, _d: events::Delivery) {}
    fn services(&mut self, _d: crate::services::Delivery<u64>) {}
}

struct Node {
    driver: Driver<u32>,
    checker: Checker,
    app: App,
}

impl Node {
    fn new(u: Uuid, now: Instant) -> Node {
        let driver = Driver::new(config(u), reqrep::Config::default(), now).unwrap();
        let checker = Checker::new(driver.engine_ref());
        Node {
            driver,
            checker,
            app: App::default(),
        }
    }

    fn flush(&mut self, now: Instant, wire: &mut Wire) {
        let uuid = self.driver.engine_ref().uuid();
        self.checker.sync(self.driver.engine_ref());
        let mut net = Net { from: uuid, wire };
        self.driver.flush(
            now,
            &mut self.checker.transport(&mut net),
            &mut self.checker.sink(&mut self.app),
        );
        self.checker
            .check_queries(self.driver.engine_ref())
            .unwrap();
    }
}

/// A plain ZRE peer: a bare engine, no capabilities header.
struct Plain {
    engine: Engine,
    received: Vec<Vec<Bytes>>,
}

impl Plain {
    fn flush(&mut self, wire: &mut Wire) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Send { peer, frames } => wire.push_back((C, peer, frames.to_vec())),
                Output::Event(Event::Whisper { content, .. })
                | Output::Event(Event::Shout { content, .. }) => {
                    self.received.push(content.to_vec())
                }
                _ => {}
            }
        }
    }
}

struct World {
    now: Instant,
    a: Node,
    b: Node,
    c: Plain,
    wire: Wire,
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        World {
            now,
            a: Node::new(A, now),
            b: Node::new(B, now),
            c: Plain {
                engine: Engine::new(config(C), now),
                received: Vec::new(),
            },
            wire: Wire::new(),
        }
    }

    /// Delivers everything in flight, flushing as it goes, until the network is quiet.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            self.a.flush(now, &mut self.wire);
            self.b.flush(now, &mut self.wire);
            self.c.flush(&mut self.wire);
            let Some((from, to, frames)) = self.wire.pop_front() else {
                return;
            };
            let id = routing_id(&from);
            match to {
                A => self
                    .a
                    .driver
                    .engine()
                    .handle_message(now, &id, frames.into()),
                B => self
                    .b
                    .driver
                    .engine()
                    .handle_message(now, &id, frames.into()),
                C => self.c.engine.handle_message(now, &id, frames.into()),
                _ => unreachable!(),
            }
        }
    }

    fn meet(&mut self) {
        let now = self.now;
        for (who, others) in [(A, [B, C]), (B, [A, C]), (C, [A, B])] {
            for o in others {
                match who {
                    A => self.a.driver.engine().handle_sighting(now, o, &endpoint(o)),
                    B => self.b.driver.engine().handle_sighting(now, o, &endpoint(o)),
                    _ => self.c.engine.handle_sighting(now, o, &endpoint(o)),
                }
            }
        }
        self.settle();
    }

    fn request(&mut self, waiter: u32, peer: Uuid, event: &str) {
        let spec = RequestSpec {
            peer,
            event: event.into(),
            payload: Bytes::from_static(b"ping"),
            timeout: Some(Duration::from_secs(5)),
        };
        let now = self.now;
        self.a
            .driver
            .reqrep(|rr, io| rr.request(now, waiter, spec, io))
            .unwrap();
    }

    fn outcomes(&mut self) -> Vec<(u32, Result<Bytes, RequestError>)> {
        let mut out = Vec::new();
        self.a.app.deliveries.retain(|d| match d {
            Delivery::Done { waiter, result, .. } => {
                out.push((*waiter, result.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

#[test]
fn request_reply_through_two_drivers_never_reaches_a_plain_peer() {
    let mut w = World::new();
    w.meet();
    let entered = |n: &Node| {
        n.app
            .events
            .iter()
            .filter(|e| matches!(e, Event::Enter { .. }))
            .count()
    };
    assert_eq!((entered(&w.a), entered(&w.b)), (2, 2));
    assert!(w.a.driver.reqrep_ref().is_capable(B));
    assert!(!w.a.driver.reqrep_ref().is_capable(C));

    w.b.driver
        .reqrep(|rr, _| rr.register(1, Pattern::parse("echo.*").unwrap(), HandlerKind::Request));
    w.request(7, B, "echo.x");
    w.request(8, C, "echo.x");
    w.settle();
    // B's handler got the request; answer it.
    let key =
        w.b.app
            .deliveries
            .iter()
            .find_map(|d| match d {
                Delivery::Request { key, .. } => Some(*key),
                _ => None,
            })
            .expect("request handed to B's handler");
    w.b.driver
        .reqrep(|rr, io| rr.reply(key, Ok(Bytes::from_static(b"pong")), io));
    w.settle();
    assert_eq!(
        w.outcomes(),
        vec![
            (8, Err(RequestError::NoResponders(NoResponders::NotCapable))),
            (7, Ok(Bytes::from_static(b"pong"))),
        ]
    );
    // Application whispers still flow to the plain peer; it never saw an envelope.
    w.a.driver
        .engine()
        .whisper(C, vec![Bytes::from_static(b"hi")])
        .unwrap();
    w.settle();
    assert_eq!(w.c.received, vec![vec![Bytes::from_static(b"hi")]]);
    // Nothing of the layers reached A's or B's application event stream.
    for n in [&w.a, &w.b] {
        assert!(!n
            .app
            .events
            .iter()
            .any(|e| matches!(e, Event::Whisper { .. })));
    }

    // B leaves politely while a request is pending: it ends with PeerLeft at once.
    w.request(9, B, "echo.y");
    w.settle();
    let now = w.now;
    w.b.checker.stopping();
    {
        let uuid = B;
        let World { b, wire, .. } = &mut w;
        b.checker.sync(b.driver.engine_ref());
        let mut net = Net { from: uuid, wire };
        b.driver.stop(
            now,
            &mut b.checker.transport(&mut net),
            &mut b.checker.sink(&mut b.app),
        );
        b.checker.result().unwrap();
    }
    w.settle();
    assert_eq!(w.outcomes(), vec![(9, Err(RequestError::PeerLeft))]);
    assert_eq!(w.a.driver.reqrep_ref().in_flight(), 0);
    assert!(w
        .b
        .app
        .deliveries
        .iter()
        .any(|d| matches!(d, Delivery::Ended { .. })));
}

#[test]
fn the_checker_catches_an_envelope_sent_to_a_plain_peer() {
    let now = Instant::now();
    let mut a = Node::new(A, now);
    let mut wire = Wire::new();
    a.driver.engine().handle_sighting(now, C, &endpoint(C));
    a.flush(now, &mut wire);
    // C's HELLO (no capabilities) makes it enter.
    let mut c = Engine::new(config(C), now);
    c.handle_sighting(now, A, &endpoint(A));
    while let Some(out) = c.poll_output() {
        if let Output::Send { frames, .. } = out {
            a.driver
                .engine()
                .handle_message(now, &routing_id(&C), frames);
        }
    }
    a.flush(now, &mut wire);
    // Bypass the layers: force an envelope onto the plain peer, as a buggy layer would.
    let env = crate::envelope::Envelope::new(crate::envelope::Layer::REQREP, 1, 1)
        .encode()
        .unwrap();
    a.driver.engine().whisper(C, vec![env]).unwrap();
    a.checker.sync(a.driver.engine_ref());
    let mut net = Net {
        from: A,
        wire: &mut wire,
    };
    a.driver.flush(
        now,
        &mut a.checker.transport(&mut net),
        &mut a.checker.sink(&mut a.app),
    );
    let err = a.checker.result().unwrap_err();
    assert!(err.contains("did not announce"), "{err}");
}

#[test]
fn a_layer_shout_reaches_only_the_members_that_announced_the_layer() {
    let mut w = World::new();
    w.meet();
    // B and the plain peer C join G.
    assert!(w.b.driver.engine().join("G"));
    w.c.engine.join("G");
    w.settle();
    assert_eq!(w.a.driver.engine_ref().peers_by_group("G").len(), 2);
    w.b.driver
        .reqrep(|rr, _| rr.register(5, Pattern::parse("t.*").unwrap(), HandlerKind::Tick));
    let mut tick = crate::envelope::Envelope::new(crate::envelope::Layer::REQREP, 2, 77);
    tick.subject = Some("t.all".into());
    let frame = tick.encode().unwrap();
    w.a.driver
        .reqrep(|_, io| crate::layer::Io::shout(io, "G", frame));
    w.settle();
    let ticks: Vec<_> =
        w.b.app
            .deliveries
            .iter()
            .filter(|d| matches!(d, Delivery::Tick { handler: 5, .. }))
            .collect();
    assert_eq!(ticks.len(), 1, "the capable member got the tick once");
    assert!(w.c.received.is_empty(), "the plain member got nothing");
    assert_eq!(w.a.driver.stats().layer_sends_dropped, 0);
}
