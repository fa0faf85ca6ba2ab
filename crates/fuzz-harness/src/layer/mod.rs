//! Harness for the driver and the request/reply layer: `layer_envelopes`.
//!
//! The input is a first request id (8 bytes) and a script of [`LayerStep`]s ([`crate::script`]) played
//! against one [`Driver`]: HELLOs from simulated peers (zmesh peers announcing `X-ZMESH-CAPS: req`,
//! or other capabilities, or none: plain ZRE), WHISPERs whose single frame is a valid, damaged or
//! arbitrary envelope (REQUEST, TICK, REPLY, ERROR, CANCEL, other layers), GOODBYEs, departures,
//! refused sends, the application's commands (request, tick, cancel, register, unregister, reply,
//! abandon; half of them through [`Layer::handle`]), time advances, timer expiries and a stop.
//! The driver's outputs go through a checking [`Transport`] and [`Sink`] that share one
//! `Shadow`: an independent model of what must happen, which asserts after every call and
//! every step:
//!
//! * **exactly once**: every request made ends with exactly one `Done` carrying its waiter and
//!   id; a failure knowable at once (payload too large, unknown peer, peer without `req`, our
//!   limits) is delivered in the same step and is exactly the expected one;
//! * **the outcome is what happened**: a reply payload, a handler error, `NoHandler`, the
//!   responder's `Overloaded` and `PayloadTooLarge` only as a REPLY/ERROR that peer really sent
//!   for that id; `PeerLeft` only after that peer's EXIT; `Timeout` never before the deadline;
//!   `Cancelled` only if cancelled; `Stopped` only while stopping;
//! * **responder side**: a request is handed to the first registered matching request handler,
//!   only once while it runs, only from a peer that announced capabilities; `Ended` only for a
//!   running request and for a true reason; ticks go to matching tick handlers; an answer to a
//!   running request is sent (REPLY/ERROR with the right `corr`) and an answer to an ended one is
//!   counted, not sent;
//! * **bounded state**: the layer's `in_flight()` and `running()` equal the model's, every pending
//!   or running entry belongs to a peer that is up, no deadline is left behind (`poll_timeout`
//!   never before now, after the timers ran strictly after now); after `stop` nothing is held;
//! * **wire**: no envelope ever goes to a peer whose HELLO had no `X-ZMESH-CAPS` (a plain ZRE
//!   peer), REQUEST/CANCEL only to peers that announced `req`; sends only on open outboxes;
//!   every layer frame decodes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;
use zmesh_core::caps::{Caps, CAPS_HEADER};
use zmesh_core::driver::{Driver, Sink, Transport};
use zmesh_core::envelope::{self, Envelope, Layer as LayerId};
use zmesh_core::layer::{Input, Layer};
use zmesh_core::pattern::{self, Pattern};
use zmesh_core::reqrep::wire::{self, ErrorBody, ErrorClass};
use zmesh_core::reqrep::{
    self, Command, Delivery, EndReason, HandlerKind, InboundKey, NoResponders, RequestError,
    RequestSpec,
};
use zmesh_zre::{routing_id, Config, Event, ZreMessage, ZMESH_HEADER};

use crate::script::{LayerStep, Reader};

mod steps;
use steps::{play, record};

/// Our own UUID.
const OWN: Uuid = Uuid::from_u128(0x00AA_0000_0000_4000_8000_0000_0000_00C0);
/// The simulated peers (index 4 and up: a UUID that never says HELLO).
const PEERS: [Uuid; 5] = [
    Uuid::from_u128(0x0C0C_0000_0000_4000_8000_0000_0000_0001),
    Uuid::from_u128(0x0C0C_0000_0000_4000_8000_0000_0000_0002),
    Uuid::from_u128(0x0C0C_0000_0000_4000_8000_0000_0000_0003),
    Uuid::from_u128(0x0C0C_0000_0000_4000_8000_0000_0000_0004),
    Uuid::from_u128(0x0C0C_0000_0000_4000_8000_0000_0000_0005),
];
/// Event names (the last one is invalid).
const EVENTS: [&str; 6] = ["svc.echo", "svc.a.b", "other", "x", "svc", "bad..name"];
/// Handler patterns.
const PATTERNS: [&str; 6] = ["svc.*", "svc.**", "**", "other", "x", "nomatch.*"];
/// The layer's limits (small, so that a script reaches them).
const MAX_IN_FLIGHT: usize = 6;
const MAX_PER_PEER: usize = 3;
const MAX_RUNNING: usize = 3;
const MAX_PAYLOAD: usize = 32;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Upper bound on steps per input, to keep executions fast.
const MAX_STEPS: usize = 200;

fn peer(i: u8) -> Uuid {
    PEERS[usize::from(i) % PEERS.len()]
}

fn event(i: u8) -> &'static str {
    EVENTS[usize::from(i) % EVENTS.len()]
}

/// One of our requests, pending.
#[derive(Debug)]
struct Mine {
    peer: Uuid,
    deadline: Instant,
    exits_at_send: u64,
    /// The failure known at once, if any.
    immediate: Option<RequestError>,
    step: usize,
    cancelled: bool,
}

/// A request handed to one of our handlers.
#[derive(Debug)]
struct Run {
    handler: u64,
    deadline: Instant,
    exits_at_start: u64,
}

/// The independent model shared by the transport and the sink.
#[derive(Default)]
struct Shadow {
    now: Option<Instant>,
    step: usize,
    stopping: bool,
    refuse_next: bool,
    refused: bool,
    connected: BTreeSet<Uuid>,
    /// Entered peers and their capabilities (`None`: no `X-ZMESH-CAPS` header).
    entered: BTreeMap<Uuid, Option<Caps>>,
    exits: BTreeMap<Uuid, u64>,
    /// Our pending requests by waiter; `ids` maps request ids to waiters.
    mine: BTreeMap<u64, Mine>,
    ids: BTreeMap<u64, u64>,
    /// Every REQUEST we sent: (peer, id).
    sent_requests: Vec<(Uuid, u64)>,
    /// Answers (REPLY/ERROR) we sent this step: (peer, corr).
    answers_sent: Vec<(Uuid, u64)>,
    /// Every REQUEST id a peer sent us.
    theirs: Vec<(Uuid, u64)>,
    /// Answers the peers sent: (peer, corr) -> results.
    injected: BTreeMap<(Uuid, u64), Vec<Result<Bytes, RequestError>>>,
    /// CANCELs the peers sent: (peer, corr).
    cancels: BTreeSet<(Uuid, u64)>,
    running: BTreeMap<InboundKey, Run>,
    handlers: Vec<(u64, Pattern, HandlerKind)>,
}

impl Shadow {
    fn now(&self) -> Instant {
        self.now.expect("clock set")
    }

    fn exits(&self, p: Uuid) -> u64 {
        self.exits.get(&p).copied().unwrap_or(0)
    }

    fn check_done(&mut self, waiter: u64, id: u64, result: Result<Bytes, RequestError>) {
        let m = self
            .mine
            .remove(&waiter)
            .unwrap_or_else(|| panic!("Done for waiter {waiter} that is not pending (twice?)"));
        assert_eq!(
            self.ids.remove(&id),
            Some(waiter),
            "Done with the wrong id {id}"
        );
        if let Some(e) = &m.immediate {
            assert_eq!(result.as_ref(), Err(e), "immediate outcome of {m:?}");
            assert_eq!(m.step, self.step, "an immediate outcome came later: {m:?}");
            return;
        }
        let injected = self.injected.get(&(m.peer, id));
        let was_sent = |r: &Result<Bytes, RequestError>| injected.is_some_and(|v| v.contains(r));
        let ok = match &result {
            Ok(_) | Err(RequestError::Handler { .. }) => was_sent(&result),
            Err(RequestError::NoResponders(NoResponders::NoHandler))
            | Err(RequestError::PayloadTooLarge) => was_sent(&result),
            Err(RequestError::Overloaded(why)) => {
                *why == "responder's handlers" && was_sent(&result)
            }
            Err(RequestError::PeerLeft) => self.exits(m.peer) > m.exits_at_send,
            Err(RequestError::Timeout) => self.now() >= m.deadline,
            Err(RequestError::Cancelled) => m.cancelled,
            Err(RequestError::Stopped) => self.stopping,
            Err(_) => false,
        };
        assert!(
            ok,
            "request {id} ended with {result:?}, not what happened: {m:?}"
        );
    }

    fn check_delivery(&mut self, d: Delivery<u64>) {
        let now = self.now();
        match d {
            Delivery::Done {
                waiter, id, result, ..
            } => self.check_done(waiter, id, result),
            Delivery::Request {
                handler,
                key,
                event,
                payload,
                deadline,
            } => {
                assert!(
                    matches!(self.entered.get(&key.peer), Some(Some(_))),
                    "request from a peer without capabilities: {key:?}"
                );
                let first = self
                    .handlers
                    .iter()
                    .find(|(_, p, k)| *k == HandlerKind::Request && p.matches(&event))
                    .map(|(h, _, _)| *h);
                assert_eq!(first, Some(handler), "request {event} to the wrong handler");
                assert!(payload.len() <= MAX_PAYLOAD && deadline >= now);
                assert!(
                    self.running.len() < MAX_RUNNING,
                    "more than max_running handed"
                );
                let run = Run {
                    handler,
                    deadline,
                    exits_at_start: self.exits(key.peer),
                };
                assert!(
                    self.running.insert(key, run).is_none(),
                    "request {key:?} handed twice"
                );
            }
            Delivery::Ended {
                handler,
                key,
                reason,
            } => {
                let run = self
                    .running
                    .remove(&key)
                    .unwrap_or_else(|| panic!("Ended({reason:?}) of {key:?}, not running"));
                assert_eq!(run.handler, handler);
                let ok = match reason {
                    EndReason::PeerLeft => self.exits(key.peer) > run.exits_at_start,
                    EndReason::Expired => now >= run.deadline,
                    EndReason::Cancelled => self.cancels.contains(&(key.peer, key.id)),
                    EndReason::Stopped => self.stopping,
                    _ => false,
                };
                assert!(
                    ok,
                    "Ended({reason:?}) of {key:?} is not what happened: {run:?}"
                );
            }
            Delivery::Tick { handler, event, .. } => {
                assert!(
                    self.handlers.iter().any(|(h, p, k)| *h == handler
                        && *k == HandlerKind::Tick
                        && p.matches(&event)),
                    "tick {event} to handler {handler}"
                );
            }
            other => panic!("unknown delivery {other:?}"),
        }
    }
}

/// The checking transport and sink (one shared [`Shadow`]).
#[derive(Clone, Default)]
struct Shell(Rc<RefCell<Shadow>>);

impl Transport for Shell {
    fn connect(&mut self, peer: Uuid, _endpoint: &str, _key: Option<&[u8; 32]>) -> bool {
        let mut s = self.0.borrow_mut();
        assert!(s.connected.insert(peer), "Connect to a connected peer");
        true
    }

    fn send(&mut self, peer: Uuid, frames: zmesh_zre::Frames) -> bool {
        let mut s = self.0.borrow_mut();
        assert!(s.connected.contains(&peer), "Send without an outbox");
        let (_, msg) = ZreMessage::decode(&frames).expect("our message decodes");
        if let ZreMessage::Whisper { content } = &msg {
            if content.len() == 1 && envelope::is_envelope(&content[0]) {
                let env = Envelope::decode(&content[0]).expect("our envelope decodes");
                let caps = s.entered.get(&peer).copied().flatten();
                let caps = caps.unwrap_or_else(|| panic!("envelope to a plain ZRE peer: {env:?}"));
                // What we send unprompted (a REQUEST, a CANCEL, control STATE, emitter SUBS /
                // EVENT / CREDIT) goes only to peers that announced its layer; answers go to
                // whoever asked.
                let unprompted = env.layer != LayerId::REQREP
                    || matches!(env.kind, wire::REQUEST | wire::CANCEL);
                if unprompted {
                    assert!(caps.has(env.layer), "{env:?} to a peer without its layer");
                }
                if env.layer == LayerId::REQREP {
                    match env.kind {
                        wire::REQUEST => s.sent_requests.push((peer, env.id)),
                        wire::REPLY | wire::ERROR => {
                            let corr = env.corr.expect("answers carry corr");
                            s.answers_sent.push((peer, corr));
                        }
                        _ => {}
                    }
                }
            }
        }
        if std::mem::take(&mut s.refuse_next) {
            s.refused = true;
            return false;
        }
        true
    }

    fn disconnect(&mut self, peer: Uuid) {
        let mut s = self.0.borrow_mut();
        assert!(s.connected.remove(&peer), "Disconnect without an outbox");
    }
}

impl Sink<u64> for Shell {
    fn event(&mut self, event: Event) {
        let mut s = self.0.borrow_mut();
        match event {
            Event::Enter { peer, headers, .. } => {
                let caps = headers.iter().any(|(k, _)| k == CAPS_HEADER).then(|| {
                    Caps::from_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                });
                assert!(s.entered.insert(peer, caps).is_none(), "double ENTER");
            }
            Event::Exit { peer, .. } => {
                assert!(s.entered.remove(&peer).is_some(), "EXIT without ENTER");
                *s.exits.entry(peer).or_default() += 1;
            }
            Event::Whisper { peer, content, .. } => {
                // Envelopes from peers that announced capabilities never reach the application.
                let zmesh = matches!(s.entered.get(&peer), Some(Some(_)));
                assert!(
                    !(zmesh && content.len() == 1 && envelope::is_envelope(&content[0])),
                    "an envelope from a zmesh peer reached the application"
                );
            }
            _ => {}
        }
    }

    fn reqrep(&mut self, delivery: Delivery<u64>) {
        self.0.borrow_mut().check_delivery(delivery);
    }

    fn events(&mut self, delivery: zmesh_core::events::Delivery) {
        // Only a peer that announced capabilities can have sent an (events) envelope.
        if let zmesh_core::events::Delivery::Event {
            from: Some(peer), ..
        } = delivery
        {
            let s = self.0.borrow();
            assert!(
                matches!(s.entered.get(&peer), Some(Some(_))),
                "event from {peer}, which announced no capabilities"
            );
        }
    }

    fn control(&mut self, delivery: zmesh_core::control::Delivery) {
        // Only a peer that announced capabilities can have sent a (control) envelope.
        if let zmesh_core::control::Delivery::PeerJoined { peer, .. }
        | zmesh_core::control::Delivery::OptionsChanged { peer, .. } = delivery
        {
            let s = self.0.borrow();
            assert!(
                matches!(s.entered.get(&peer), Some(Some(_))),
                "peer event for {peer}, which announced no capabilities"
            );
        }
    }

    fn services(&mut self, delivery: zmesh_core::services::Delivery<u64>) {
        // This harness offers no service and makes no call: a call handed over or a call
        // ended would be a bug (stats answers need a query, which it never makes either).
        if let zmesh_core::services::Delivery::Call { .. }
        | zmesh_core::services::Delivery::Done { .. }
        | zmesh_core::services::Delivery::Stats { .. } = delivery
        {
            panic!("services delivery without an offer, call or query: {delivery:?}");
        }
    }
}

/// The per-run state: driver, clock, peers' sequence numbers.
struct Player {
    driver: Driver<u64>,
    shell: Shell,
    now: Instant,
    seqs: BTreeMap<Uuid, u16>,
    next_waiter: u64,
}

impl Player {
    fn flush(&mut self) {
        let mut sink = self.shell.clone();
        let mut transport = self.shell.clone();
        self.driver.flush(self.now, &mut transport, &mut sink);
    }

    fn message(&mut self, from: Uuid, msg: &ZreMessage) {
        let seq = self.seqs.entry(from).or_insert(0);
        *seq = if matches!(msg, ZreMessage::Hello { .. }) {
            1
        } else {
            seq.wrapping_add(1)
        };
        let frames = msg.encode(*seq).expect("encodable");
        let now = self.now;
        self.driver
            .engine()
            .handle_message(now, &routing_id(&from), frames);
    }

    fn whisper(&mut self, from: Uuid, frame: Bytes) {
        record(&mut self.shell.0.borrow_mut(), from, &frame);
        self.message(
            from,
            &ZreMessage::Whisper {
                content: vec![frame].into(),
            },
        );
    }

    fn timers(&mut self) {
        if self.driver.poll_timeout().is_some_and(|t| t <= self.now) {
            self.driver.handle_timeout(self.now);
            self.flush();
            if let Some(t) = self.driver.poll_timeout() {
                assert!(t > self.now, "timers made no progress");
            }
        }
    }

    fn request(&mut self, to: Uuid, ev: &str, len: u8, timeout_ms: Option<u16>) {
        // 65535 stands for `Duration::MAX` ("no timeout"): the layer caps it at what `ttl_ms` carries.
        let timeout = timeout_ms.map(|t| match t {
            u16::MAX => Duration::MAX,
            t => Duration::from_millis(u64::from(t)),
        });
        let payload = Bytes::from(vec![b'p'; usize::from(len)]);
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let immediate = {
            let s = self.shell.0.borrow();
            let per_peer = s.mine.values().filter(|m| m.peer == to).count();
            match s.entered.get(&to) {
                _ if payload.len() > MAX_PAYLOAD => Some(RequestError::PayloadTooLarge),
                None => Some(RequestError::NoResponders(NoResponders::UnknownPeer)),
                Some(c) if !c.is_some_and(|c| c.has(LayerId::REQREP)) => {
                    Some(RequestError::NoResponders(NoResponders::NotCapable))
                }
                _ if s.mine.len() >= MAX_IN_FLIGHT => {
                    Some(RequestError::Overloaded("requests in flight on this node"))
                }
                _ if per_peer >= MAX_PER_PEER => {
                    Some(RequestError::Overloaded("requests in flight to this peer"))
                }
                _ => None,
            }
        };
        let now = self.now;
        let spec = RequestSpec {
            peer: to,
            event: ev.to_owned(),
            payload,
            timeout,
        };
        let r = self
            .driver
            .reqrep(|rr, io| rr.request(now, waiter, spec, io));
        assert_eq!(r.is_ok(), pattern::validate_name(ev).is_ok());
        let Ok(id) = r else { return };
        let mut s = self.shell.0.borrow_mut();
        let m = Mine {
            peer: to,
            deadline: now
                + timeout
                    .unwrap_or(DEFAULT_TIMEOUT)
                    .min(Duration::from_millis(u32::MAX.into())),
            exits_at_send: s.exits(to),
            immediate,
            step: s.step,
            cancelled: false,
        };
        s.mine.insert(waiter, m);
        assert!(s.ids.insert(id, waiter).is_none(), "request id {id} reused");
    }

    /// The bounded-state checks after every step.
    fn check(&self) {
        let s = self.shell.0.borrow();
        let rr = self.driver.reqrep_ref();
        assert_eq!(
            rr.in_flight(),
            s.mine.len(),
            "in_flight() != pending requests"
        );
        assert_eq!(
            rr.running(),
            s.running.len(),
            "running() != running requests"
        );
        for p in rr.pending_peers().chain(rr.inbound_peers()) {
            assert!(s.entered.contains_key(&p), "request state for {p}, not up");
        }
        if let Some(t) = rr.poll_timeout() {
            assert!(t >= self.now, "a request deadline passed unnoticed");
        }
        if let Some(t) = rr.latest_deadline() {
            assert!(t <= self.now + Duration::from_millis(u64::from(u32::MAX)));
        }
        for m in s.mine.values() {
            assert!(m.immediate.is_none(), "immediate outcome missing: {m:?}");
        }
        if s.stopping {
            assert!(rr.in_flight() + rr.running() == 0 && s.mine.is_empty());
        }
    }
}

/// `layer_envelopes`: plays the script decoded from `data` (see the module documentation).
pub fn layer_envelopes(data: &[u8]) {
    let mut r = Reader::new(data);
    let first_id = r.u64();
    let now = Instant::now();
    let mut config = Config::new(OWN, "fuzz");
    config.endpoint = "tcp://127.0.0.1:5670".into();
    let rr = reqrep::Config {
        default_timeout: DEFAULT_TIMEOUT,
        max_in_flight: MAX_IN_FLIGHT,
        max_in_flight_per_peer: MAX_PER_PEER,
        max_running: MAX_RUNNING,
        max_payload: MAX_PAYLOAD,
        first_id,
    };
    let driver = Driver::new(config, rr, now).expect("valid config");
    let mut run = Player {
        driver,
        shell: Shell::default(),
        now,
        seqs: BTreeMap::new(),
        next_waiter: 1,
    };
    for step in 0..MAX_STEPS {
        let Some(st) = LayerStep::decode(&mut r) else {
            break;
        };
        {
            let mut s = run.shell.0.borrow_mut();
            s.now = Some(run.now);
            s.step = step;
            s.refused = false;
            s.answers_sent.clear();
        }
        play(&mut run, st);
        run.flush();
        run.check();
    }
}
