//! Engine tests: every receiver/sender/liveness rule, driven with explicit time by feeding
//! frames encoded exactly as a remote peer would send them.

use super::*;

use crate::msg::ZreMessage;
use bytes::Bytes;
use std::time::Duration;

use crate::msg::{uuid_to_string, WireError};
use crate::peer::PeerState;
use crate::testing::{Contract, OwnFacts};

const OWN_ENDPOINT: &str = "tcp://127.0.0.1:5000";

fn own_uuid() -> Uuid {
    Uuid::from_u128(0xAAAA_0000_0000_0000_0000_0000_0000_0001)
}

fn engine(t0: Instant) -> Engine {
    engine_with(t0, |_| {})
}

/// [`engine`] with a configuration change.
fn engine_with(t0: Instant, change: impl FnOnce(&mut Config)) -> Engine {
    let mut c = Config::new(own_uuid(), "me");
    c.endpoint = OWN_ENDPOINT.into();
    c.headers = vec![("X-APP".into(), "test".into())];
    change(&mut c);
    let e = Engine::new(c, t0);
    CONTRACT.with(|k| *k.borrow_mut() = Some(Contract::new(OwnFacts::of(&e))));
    e
}

thread_local! {
    /// The output contract of the engine made by [`engine`] in this test (each test runs on a
    /// thread of its own): every [`drain`] checks what it drains against it.
    static CONTRACT: std::cell::RefCell<Option<Contract>> = const { std::cell::RefCell::new(None) };
}

/// A simulated remote node: its UUID, its endpoint and its outgoing sequence counter to us.
struct Remote {
    uuid: Uuid,
    endpoint: String,
    seq: u16,
    zmesh: bool,
    /// How its sequence wraps after 65534 (C-style unless a test says otherwise).
    wrap: crate::sequence::SeqWrap,
}

impl Remote {
    fn new(n: u128) -> Remote {
        Remote {
            uuid: Uuid::from_u128(n),
            endpoint: format!("tcp://127.0.0.1:{}", 6000 + n),
            seq: 0,
            zmesh: false,
            wrap: crate::sequence::SeqWrap::U16,
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
        self.seq = self.wrap.next(self.seq);
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
    let outs: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    CONTRACT.with(|k| {
        if let Some(c) = k.borrow_mut().as_mut().filter(|_| e.uuid() == own_uuid()) {
            c.sync(e);
            if e.is_stopped() {
                c.stopping();
            }
            for o in &outs {
                if let Err(v) = c.output(o) {
                    panic!("output contract violated: {v}\noutputs: {outs:?}");
                }
            }
            if let Err(v) = c.check_queries(e) {
                panic!("queries disagree with the events: {v}");
            }
        }
    });
    outs
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
        name: r.name().into(),
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

mod commands;
mod direct;
mod keys;
mod liveness;
mod moves;
mod receive;
mod two_engines;
