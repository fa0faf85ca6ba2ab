//! Routing through real drivers on an in-memory network (every flush checked against the output
//! contract): `any` balances and never picks a plain peer or one without a handler, options
//! changes reach peers in one trip and steer the next decision, `all` gathers and ends exactly
//! once whatever comes first, ticks to any and all.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;
use zmesh_zre::{routing_id, Config, Engine, Event, Output};

use super::routes::Routed;
use super::*;
use crate::filter::{parse, Filter};
use crate::pattern::Pattern;
use crate::reqrep::{Delivery, GatherEnd, GatherSpec, InboundKey, NoResponders, RequestError};
use crate::testing::Checker;

type Wire = VecDeque<(Uuid, Uuid, Vec<Bytes>)>;

fn endpoint(u: Uuid) -> String {
    format!("tcp://mem/{}", u.as_u128())
}

fn config(u: Uuid) -> Config {
    Config {
        endpoint: endpoint(u),
        ..Config::new(u, format!("n{}", u.as_u128()))
    }
}

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
    deliveries: Vec<Delivery<u32>>,
    peer_events: Vec<control::Delivery>,
}

impl Sink<u32> for App {
    fn event(&mut self, _event: Event) {}
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
    uuid: Uuid,
    driver: Driver<u32>,
    checker: Checker,
    app: App,
}

impl Node {
    fn flush(&mut self, now: Instant, wire: &mut Wire) {
        self.checker.sync(self.driver.engine_ref());
        let mut net = Net {
            from: self.uuid,
            wire,
        };
        self.driver.flush(
            now,
            &mut self.checker.transport(&mut net),
            &mut self.checker.sink(&mut self.app),
        );
        self.checker.result().unwrap();
    }

    /// Requests handed to this node's handlers, taken.
    fn handed(&mut self) -> Vec<InboundKey> {
        let mut keys = Vec::new();
        self.app.deliveries.retain(|d| match d {
            Delivery::Request { key, .. } => {
                keys.push(*key);
                false
            }
            _ => true,
        });
        keys
    }

    fn reply(&mut self, key: InboundKey, result: Result<&'static str, u16>) {
        let r = result
            .map(|s| Bytes::from_static(s.as_bytes()))
            .map_err(|c| (c, "err".to_owned()));
        self.driver.reqrep(|rr, io| rr.reply(key, r, io));
    }
}

/// Node 0 is the requester; the others are zmesh nodes; `plain` is a bare ZRE engine.
struct Mesh {
    now: Instant,
    nodes: Vec<Node>,
    plain: (Uuid, Engine, usize),
    wire: Wire,
}

const PLAIN: Uuid = Uuid::from_u128(0xFF);

fn u(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

impl Mesh {
    /// `n` zmesh nodes with the given options; all meet (with a plain peer too).
    fn new(options: &[&[(&str, &str)]]) -> Mesh {
        let now = Instant::now();
        let nodes = options
            .iter()
            .enumerate()
            .map(|(i, opts)| {
                let layers = LayerConfig {
                    options: opts
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..LayerConfig::default()
                };
                let driver = Driver::new(config(u(i)), layers, now).unwrap();
                Node {
                    uuid: u(i),
                    checker: Checker::new(driver.engine_ref()),
                    driver,
                    app: App::default(),
                }
            })
            .collect();
        let mut m = Mesh {
            now,
            nodes,
            plain: (PLAIN, Engine::new(config(PLAIN), now), 0),
            wire: Wire::new(),
        };
        let all: Vec<Uuid> = (0..m.nodes.len()).map(u).chain([PLAIN]).collect();
        for n in &mut m.nodes {
            for o in &all {
                if *o != n.uuid {
                    n.driver.engine().handle_sighting(now, *o, &endpoint(*o));
                }
            }
        }
        for o in &all[..all.len() - 1] {
            m.plain.1.handle_sighting(now, *o, &endpoint(*o));
        }
        m.settle();
        m
    }

    fn flush_all(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            n.flush(now, &mut self.wire);
        }
        while let Some(out) = self.plain.1.poll_output() {
            match out {
                Output::Send { peer, frames } => {
                    self.wire.push_back((PLAIN, peer, frames.to_vec()))
                }
                Output::Event(Event::Whisper { .. }) | Output::Event(Event::Shout { .. }) => {
                    self.plain.2 += 1
                }
                _ => {}
            }
        }
    }

    /// Delivers one message in flight; false if there was none.
    fn step(&mut self) -> bool {
        self.flush_all();
        let Some((from, to, frames)) = self.wire.pop_front() else {
            return false;
        };
        let id = routing_id(&from);
        if to == PLAIN {
            self.plain.1.handle_message(self.now, &id, frames.into());
        } else {
            let n = &mut self.nodes[(to.as_u128() - 1) as usize];
            n.driver
                .engine()
                .handle_message(self.now, &id, frames.into());
        }
        self.flush_all();
        true
    }

    fn settle(&mut self) {
        while self.step() {}
    }

    fn serve(&mut self, i: usize, pattern: &str, kind: HandlerKind) {
        let p = Pattern::parse(pattern).unwrap();
        self.nodes[i]
            .driver
            .reqrep(|rr, _| rr.register(i as u64 * 10 + 1, p, kind));
    }

    fn any(&mut self, waiter: u32, filter: &Filter, event: &str) -> Option<Uuid> {
        let now = self.now;
        let routed = Routed {
            event: event.into(),
            payload: Bytes::from_static(b"q"),
            timeout: Some(Duration::from_secs(5)),
        };
        self.nodes[0]
            .driver
            .request_any(now, waiter, filter, routed)
            .unwrap()
            .1
    }

    fn done(&mut self) -> Vec<(u32, Result<Bytes, RequestError>)> {
        self.flush_all();
        let mut out = Vec::new();
        self.nodes[0].app.deliveries.retain(|d| match d {
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
fn any_balances_round_robin_and_never_picks_plain_or_handlerless_peers() {
    let mut m = Mesh::new(&[&[], &[], &[], &[], &[]]);
    for i in 1..=3 {
        m.serve(i, "job.*", HandlerKind::Request);
    }
    m.serve(4, "other.*", HandlerKind::Request);
    m.settle();
    let everyone = Filter::Everyone;
    // One at a time (answered before the next): strict rotation over the three servers.
    let mut counts = BTreeMap::new();
    for w in 0..30 {
        let peer = m.any(w, &everyone, "job.run").unwrap();
        *counts.entry(peer).or_insert(0) += 1;
        m.settle();
        let i = (peer.as_u128() - 1) as usize;
        for key in m.nodes[i].handed() {
            m.nodes[i].reply(key, Ok("r"));
        }
        m.settle();
        assert_eq!(m.done(), vec![(w, Ok(Bytes::from_static(b"r")))]);
    }
    assert_eq!(counts, BTreeMap::from([(u(1), 10), (u(2), 10), (u(3), 10)]));
    // Pipelined: node 1 holds two unanswered requests, so the next picks avoid it.
    m.any(100, &everyone, "job.run");
    m.any(101, &everyone, "job.run");
    m.any(102, &everyone, "job.run");
    m.any(103, &everyone, "job.run");
    m.settle();
    let loads: Vec<usize> = (1..=3).map(|i| m.nodes[i].handed().len()).collect();
    assert_eq!(loads.iter().sum::<usize>(), 4);
    assert!(loads.iter().all(|l| (1..=2).contains(l)), "{loads:?}");
    // Nobody serves it: NoMatch at once, nothing sent.
    let sent = m.wire.len();
    assert_eq!(m.any(200, &everyone, "nobody.serves"), None);
    assert_eq!(
        m.done(),
        vec![(200, Err(RequestError::NoResponders(NoResponders::NoMatch)))]
    );
    assert_eq!(m.wire.len(), sent);
    assert_eq!(m.plain.2, 0, "the plain peer received layer traffic");
}

#[test]
fn options_reach_peers_in_one_trip_and_steer_the_next_decision() {
    let mut m = Mesh::new(&[&[], &[("role", "a")], &[("role", "b")]]);
    m.serve(1, "**", HandlerKind::Request);
    m.serve(2, "**", HandlerKind::Request);
    m.settle();
    let joined: Vec<Uuid> = m.nodes[0]
        .app
        .peer_events
        .iter()
        .filter_map(|e| match e {
            control::Delivery::PeerJoined { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(joined, vec![u(1), u(2)], "the plain peer never joins");
    m.nodes[0].app.peer_events.clear();
    let role_a = parse("role=a").unwrap();
    assert_eq!(m.any(1, &role_a, "x"), Some(u(1)));
    // Node 1 changes its option: one message to each peer, and the requester's next decision
    // already uses it.
    let now = m.now;
    m.nodes[1]
        .driver
        .control(|c, io| c.set_option("role", "c", io))
        .unwrap();
    m.nodes[2]
        .driver
        .control(|c, io| c.set_option("role", "a", io))
        .unwrap();
    let _ = now;
    m.flush_all();
    let in_flight: Vec<(Uuid, Uuid)> = m.wire.iter().map(|(f, t, _)| (*f, *t)).collect();
    assert!(in_flight.contains(&(u(1), u(0))) && in_flight.contains(&(u(2), u(0))));
    m.settle();
    assert_eq!(m.any(2, &role_a, "x"), Some(u(2)));
    assert_eq!(m.any(3, &role_a, "x"), Some(u(2)));
    let changed: Vec<(Uuid, String)> = m.nodes[0]
        .app
        .peer_events
        .iter()
        .filter_map(|e| match e {
            control::Delivery::OptionsChanged { peer, options } => {
                Some((*peer, options["role"].clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(changed, vec![(u(1), "c".into()), (u(2), "a".into())]);
    // Headers are seen too (options first): every node has the engine's X-ZMESH header.
    assert_eq!(
        m.nodes[0]
            .driver
            .candidates(&parse("X-ZMESH=1").unwrap(), "x", HandlerKind::Request),
        vec![u(1), u(2)]
    );
    // A departure: PeerLeft, and the peer is no candidate any more.
    let now = m.now;
    m.nodes[0].driver.engine().handle_departure(now, u(2));
    m.settle();
    assert!(m.nodes[0]
        .app
        .peer_events
        .contains(&control::Delivery::PeerLeft { peer: u(2) }));
    assert_eq!(m.any(4, &role_a, "x"), None);
}

fn gather(m: &mut Mesh, filter: &Filter, spec: GatherSpec) -> (u64, Vec<(Uuid, u64)>) {
    let now = m.now;
    m.nodes[0].driver.request_all(now, filter, spec).unwrap()
}

fn spec(max_wait: u64, stall: Option<u64>, max_answers: Option<usize>) -> GatherSpec {
    GatherSpec {
        peers: vec![],
        event: "q.x".into(),
        payload: Bytes::from_static(b"?"),
        max_wait: Some(Duration::from_millis(max_wait)),
        stall: stall.map(Duration::from_millis),
        max_answers,
    }
}

/// The gather items and end delivered to the requester, taken.
#[allow(clippy::type_complexity)]
fn gathered(
    m: &mut Mesh,
) -> (
    Vec<(Uuid, Result<Bytes, RequestError>)>,
    Vec<(GatherEnd, Vec<Uuid>)>,
) {
    m.flush_all();
    let (mut items, mut ends) = (Vec::new(), Vec::new());
    m.nodes[0].app.deliveries.retain(|d| match d {
        Delivery::Gathered { peer, result, .. } => {
            items.push((*peer, result.clone()));
            false
        }
        Delivery::GatherEnded {
            reason, unanswered, ..
        } => {
            ends.push((*reason, unanswered.clone()));
            false
        }
        _ => true,
    });
    (items, ends)
}

#[test]
fn all_gathers_every_candidate_and_ends_exactly_once() {
    let mut m = Mesh::new(&[
        &[],
        &[("g", "1")],
        &[("g", "1")],
        &[("g", "1")],
        &[("g", "2")],
    ]);
    for i in 1..=4 {
        m.serve(i, "q.*", HandlerKind::Request);
    }
    m.settle();
    let g1 = parse("g=1").unwrap();
    // All answer (a reply, a handler error, a departure): AllDone.
    let (_, asked) = gather(&mut m, &g1, spec(5000, None, None));
    assert_eq!(
        asked.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![u(1), u(2), u(3)]
    );
    m.settle();
    let k1 = m.nodes[1].handed()[0];
    m.nodes[1].reply(k1, Ok("one"));
    let k2 = m.nodes[2].handed()[0];
    m.nodes[2].reply(k2, Err(7));
    m.settle();
    let now = m.now;
    m.nodes[0].driver.engine().handle_departure(now, u(3));
    m.settle();
    let (items, ends) = gathered(&mut m);
    assert_eq!(
        items,
        vec![
            (u(1), Ok(Bytes::from_static(b"one"))),
            (
                u(2),
                Err(RequestError::Handler {
                    code: 7,
                    message: "err".into()
                })
            ),
            (u(3), Err(RequestError::PeerLeft)),
        ]
    );
    assert_eq!(ends, vec![(GatherEnd::AllDone, vec![])]);
    assert_eq!(m.nodes[0].driver.reqrep_ref().in_flight(), 0);

    // Max answers: the first answer ends it, the other is withdrawn (CANCEL reaches it).
    let (_, asked) = gather(&mut m, &g1, spec(5000, None, Some(1)));
    assert_eq!(asked.len(), 2);
    m.settle();
    let k = m.nodes[2].handed()[0];
    m.nodes[2].reply(k, Ok("two"));
    m.settle();
    let (items, ends) = gathered(&mut m);
    assert_eq!(items, vec![(u(2), Ok(Bytes::from_static(b"two")))]);
    assert_eq!(ends, vec![(GatherEnd::MaxAnswers, vec![u(1)])]);
    assert!(m.nodes[1].app.deliveries.iter().any(|d| matches!(
        d,
        Delivery::Ended {
            reason: crate::reqrep::EndReason::Cancelled,
            ..
        }
    )));
    m.nodes[1].app.deliveries.clear();

    // Stall: measured from the first outcome.
    let t0 = m.now;
    gather(&mut m, &g1, spec(5000, Some(300), None));
    m.settle();
    let k = m.nodes[1].handed()[0];
    m.now = t0 + Duration::from_millis(1000);
    m.nodes[1].reply(k, Ok("a"));
    m.settle();
    m.nodes[2].handed();
    assert_eq!(
        m.nodes[0].driver.poll_timeout().map(|t| t - t0),
        Some(Duration::from_millis(1300)),
        "the stall deadline is 300 ms after the first outcome"
    );
    m.now = t0 + Duration::from_millis(1300);
    let now = m.now;
    m.nodes[0].driver.handle_timeout(now);
    m.settle();
    let (items, ends) = gathered(&mut m);
    assert_eq!(items.len(), 1);
    assert_eq!(ends, vec![(GatherEnd::Stall, vec![u(2)])]);

    // Max wait, nobody answers: one end, no item, nothing left pending.
    let t0 = m.now;
    gather(&mut m, &g1, spec(400, None, None));
    m.settle();
    m.now = t0 + Duration::from_millis(400);
    let now = m.now;
    m.nodes[0].driver.handle_timeout(now);
    m.settle();
    let (items, ends) = gathered(&mut m);
    assert!(items.is_empty());
    assert_eq!(ends, vec![(GatherEnd::MaxWait, vec![u(1), u(2)])]);
    assert_eq!(m.nodes[0].driver.reqrep_ref().in_flight(), 0);
    assert_eq!(m.nodes[0].driver.reqrep_ref().gathers_open(), 0);

    // Nobody matches: ends at once.
    gather(&mut m, &parse("g=9").unwrap(), spec(400, None, None));
    let (items, ends) = gathered(&mut m);
    assert!(items.is_empty());
    assert_eq!(ends, vec![(GatherEnd::NoResponders, vec![])]);

    // A group: members only.
    let now = m.now;
    m.nodes[4].driver.engine().join("G");
    m.settle();
    let (_, asked) = gather(&mut m, &Filter::group("G"), spec(400, None, None));
    assert_eq!(asked.iter().map(|a| a.0).collect::<Vec<_>>(), vec![u(4)]);
    // The node stops: the gather ends Stopped, once.
    m.nodes[0].driver.stop(
        now,
        &mut Net {
            from: u(0),
            wire: &mut Wire::new(),
        },
        &mut App::default(),
    );
    assert_eq!(m.nodes[0].driver.reqrep_ref().gathers_open(), 0);
    assert_eq!(m.plain.2, 0);
}

#[test]
fn ticks_to_any_rotate_and_ticks_to_all_reach_every_tick_handler() {
    let mut m = Mesh::new(&[&[], &[("z", "eu-1")], &[("z", "eu-2")], &[("z", "us")]]);
    for i in 1..=3 {
        m.serve(i, "t.*", HandlerKind::Tick);
    }
    m.settle();
    let eu = parse("z^=eu-").unwrap();
    let picks: Vec<Uuid> = (0..4)
        .map(|_| {
            m.nodes[0]
                .driver
                .tick_any(&eu, "t.x", Bytes::new())
                .unwrap()
        })
        .collect();
    assert_eq!(picks, vec![u(1), u(2), u(1), u(2)]);
    let all = m.nodes[0]
        .driver
        .tick_all(&Filter::Everyone, "t.y", Bytes::new())
        .unwrap();
    assert_eq!(all, vec![u(1), u(2), u(3)]);
    m.settle();
    let ticks = |n: &Node| {
        n.app
            .deliveries
            .iter()
            .filter(|d| matches!(d, Delivery::Tick { .. }))
            .count()
    };
    assert_eq!(
        (ticks(&m.nodes[1]), ticks(&m.nodes[2]), ticks(&m.nodes[3])),
        (3, 3, 1)
    );
    let none = crate::reqrep::TickError::Request(RequestError::NoResponders(NoResponders::NoMatch));
    assert_eq!(
        m.nodes[0].driver.tick_any(&eu, "q.x", Bytes::new()),
        Err(none.clone())
    );
    assert_eq!(
        m.nodes[0]
            .driver
            .tick_all(&parse("z=mars").unwrap(), "t.x", Bytes::new()),
        Err(none)
    );
    assert_eq!(m.plain.2, 0);
}
