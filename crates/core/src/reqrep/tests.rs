//! The request/reply layer driven by explicit time: two layers wired back to back by hand.

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::*;
use crate::caps::Caps;
use crate::envelope::{self, Envelope};
use crate::layer::{pump_pair, Input, Layer, PeerView, Recorded};
use crate::pattern::Pattern;

const A: Uuid = Uuid::from_u128(0xA);
const B: Uuid = Uuid::from_u128(0xB);

type Out = Recorded<Delivery<u32>>;

fn spec(peer: Uuid, event: &str, payload: &'static [u8], timeout: Option<Duration>) -> RequestSpec {
    RequestSpec {
        peer,
        event: event.into(),
        payload: Bytes::from_static(payload),
        timeout,
    }
}

struct Pair {
    now: Instant,
    a: ReqRep<u32>,
    b: ReqRep<u32>,
    a_out: Out,
    b_out: Out,
}

fn up(l: &mut ReqRep<u32>, peer: Uuid, caps: Caps, now: Instant, out: &mut Out) {
    let view = PeerView {
        peer,
        name: "p",
        headers: &[],
        caps,
    };
    l.handle(Input::PeerUp(view), now, out);
}

impl Pair {
    fn new(b_config: Config) -> Pair {
        let now = Instant::now();
        let caps = Caps::NONE.with(envelope::Layer::REQREP);
        let mut p = Pair {
            now,
            a: ReqRep::new(Config::default()),
            b: ReqRep::new(Config {
                first_id: 1000,
                ..b_config
            }),
            a_out: Recorded::default(),
            b_out: Recorded::default(),
        };
        up(&mut p.a, B, caps, now, &mut p.a_out);
        up(&mut p.b, A, caps, now, &mut p.b_out);
        p.b.register(1, Pattern::parse("echo.*").unwrap(), HandlerKind::Request);
        p
    }

    /// Moves every frame in flight to the other side (both directions) until quiet.
    fn pump(&mut self) {
        let (a, b) = (
            (&mut self.a, A, &mut self.a_out),
            (&mut self.b, B, &mut self.b_out),
        );
        pump_pair(a, b, self.now);
    }

    fn request(&mut self, waiter: u32, event: &str, timeout: Option<Duration>) -> RequestId {
        self.a
            .request(
                self.now,
                waiter,
                spec(B, event, b"x", timeout),
                &mut self.a_out,
            )
            .unwrap()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for (l, out) in [
            (&mut self.a, &mut self.a_out),
            (&mut self.b, &mut self.b_out),
        ] {
            if l.poll_timeout().is_some_and(|t| t <= self.now) {
                l.handle(Input::Timeout, self.now, out);
            }
        }
    }

    fn done(&mut self) -> Vec<(u32, Result<Bytes, RequestError>)> {
        let mut v = Vec::new();
        self.a_out.delivered.retain(|d| match d {
            Delivery::Done { waiter, result, .. } => {
                v.push((*waiter, result.clone()));
                false
            }
            _ => true,
        });
        v
    }

    fn handed(&mut self) -> Vec<InboundKey> {
        let mut v = Vec::new();
        self.b_out.delivered.retain(|d| match d {
            Delivery::Request { key, .. } => {
                v.push(*key);
                false
            }
            _ => true,
        });
        v
    }
}

#[test]
fn reply_and_handler_error() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", None);
    p.request(2, "echo.b", None);
    p.pump();
    let keys = p.handed();
    assert_eq!(keys.len(), 2);
    p.b.reply(keys[0], Ok(Bytes::from_static(b"r1")), &mut p.b_out);
    p.b.reply(keys[1], Err((7, "bad".into())), &mut p.b_out);
    p.pump();
    assert_eq!(
        p.done(),
        vec![
            (1, Ok(Bytes::from_static(b"r1"))),
            (
                2,
                Err(RequestError::Handler {
                    code: 7,
                    message: "bad".into()
                })
            )
        ]
    );
    assert_eq!(p.a.in_flight(), 0);
    assert_eq!(p.b.running(), 0);
    assert_eq!(p.a.poll_timeout(), None);
}

#[test]
fn no_responders_at_once() {
    let mut p = Pair::new(Config::default());
    // Unknown peer and a plain ZRE peer: no frame leaves, the outcome is immediate.
    let c = Uuid::from_u128(0xC);
    up(&mut p.a, c, Caps::NONE, p.now, &mut p.a_out);
    let now = p.now;
    let d = Uuid::from_u128(0xD);
    p.a.request(now, 1, spec(d, "x", b"", None), &mut p.a_out)
        .unwrap();
    p.a.request(now, 2, spec(c, "x", b"", None), &mut p.a_out)
        .unwrap();
    assert!(p.a_out.sent.is_empty());
    // No handler on the responder: one round trip, no timeout.
    p.request(3, "other", None);
    p.pump();
    assert_eq!(
        p.done(),
        vec![
            (
                1,
                Err(RequestError::NoResponders(NoResponders::UnknownPeer))
            ),
            (2, Err(RequestError::NoResponders(NoResponders::NotCapable))),
            (3, Err(RequestError::NoResponders(NoResponders::NoHandler))),
        ]
    );
    assert!(p.handed().is_empty());
}

#[test]
fn a_huge_timeout_is_capped_not_a_panic() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", Some(Duration::MAX));
    p.pump();
    let cap = Duration::from_millis(u32::MAX.into());
    assert_eq!(p.a.latest_deadline(), Some(p.now + cap));
    p.advance(cap);
    assert_eq!(p.done(), vec![(1, Err(RequestError::Timeout))]);
}

#[test]
fn timeout_then_late_reply_is_counted() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", Some(Duration::from_millis(300)));
    p.pump();
    let key = p.handed()[0];
    p.advance(Duration::from_millis(299));
    assert!(p.done().is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.done(), vec![(1, Err(RequestError::Timeout))]);
    // The responder learned the deadline from the TTL and forgot the request at the same time:
    // its handler is told, and a late answer is not sent.
    assert!(p.b_out.delivered.iter().any(|d| matches!(
        d,
        Delivery::Ended {
            reason: EndReason::Expired,
            ..
        }
    )));
    p.b.reply(key, Ok(Bytes::new()), &mut p.b_out);
    assert_eq!(p.b.stats().replies_after_end, 1);
    assert!(p.b_out.sent.is_empty());
    // A reply that was already on its way when the request timed out is late at the requester.
    let id = p.request(2, "echo.a", Some(Duration::from_millis(100)));
    p.pump();
    let key = p.handed()[0];
    p.b.reply(key, Ok(Bytes::new()), &mut p.b_out);
    p.advance(Duration::from_millis(100));
    p.pump();
    assert_eq!(p.done(), vec![(2, Err(RequestError::Timeout))]);
    assert_eq!(p.a.stats().late_replies, 1);
    assert!(id > 0);
}

#[test]
fn cancel_tells_the_responder() {
    let mut p = Pair::new(Config::default());
    let id = p.request(1, "echo.a", None);
    p.pump();
    let key = p.handed()[0];
    p.a.cancel(id, &mut p.a_out);
    p.pump();
    assert_eq!(p.done(), vec![(1, Err(RequestError::Cancelled))]);
    assert!(p.b_out.delivered.contains(&Delivery::Ended {
        handler: 1,
        key,
        reason: EndReason::Cancelled
    }));
    assert_eq!(p.b.running(), 0);
    // Cancelling again (or an unknown id) does nothing: exactly one outcome.
    p.a.cancel(id, &mut p.a_out);
    assert!(p.done().is_empty());
}

#[test]
fn peer_left_fails_at_once_on_both_sides() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", None);
    p.request(2, "echo.b", None);
    p.pump();
    assert_eq!(p.handed().len(), 2);
    let now = p.now;
    p.a.handle(Input::PeerDown { peer: B }, now, &mut p.a_out);
    p.b.handle(Input::PeerDown { peer: A }, now, &mut p.b_out);
    assert_eq!(
        p.done(),
        vec![
            (1, Err(RequestError::PeerLeft)),
            (2, Err(RequestError::PeerLeft))
        ]
    );
    let ended = p
        .b_out
        .delivered
        .iter()
        .filter(|d| {
            matches!(
                d,
                Delivery::Ended {
                    reason: EndReason::PeerLeft,
                    ..
                }
            )
        })
        .count();
    assert_eq!(ended, 2);
    assert_eq!((p.a.in_flight(), p.b.running()), (0, 0));
    assert_eq!((p.a.poll_timeout(), p.b.poll_timeout()), (None, None));
}

#[test]
fn limits_refuse_instead_of_growing() {
    let mut p = Pair::new(Config {
        max_running: 2,
        max_payload: 4,
        ..Config::default()
    });
    p.a = ReqRep::new(Config {
        max_in_flight_per_peer: 3,
        ..Config::default()
    });
    let caps = Caps::NONE.with(envelope::Layer::REQREP);
    let now = p.now;
    up(&mut p.a, B, caps, now, &mut p.a_out);
    for w in 0..4 {
        p.request(w, "echo.a", None);
    }
    assert_eq!(
        p.done(),
        vec![(
            3,
            Err(RequestError::Overloaded("requests in flight to this peer"))
        )]
    );
    p.pump();
    // The responder runs two; the third is refused without running a handler.
    assert_eq!(p.handed().len(), 2);
    assert_eq!(
        p.done(),
        vec![(2, Err(RequestError::Overloaded("responder's handlers")))]
    );
    // Too large for the responder.
    let now = p.now;
    p.a.request(now, 9, spec(B, "echo.a", b"12345", None), &mut p.a_out)
        .unwrap();
    p.pump();
    assert_eq!(p.done(), vec![(9, Err(RequestError::PayloadTooLarge))]);
}

#[test]
fn abandon_frees_the_slot_and_the_requester_times_out() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", Some(Duration::from_secs(1)));
    p.pump();
    let key = p.handed()[0];
    p.b.abandon(key);
    assert_eq!(p.b.running(), 0);
    assert!(p.b_out.sent.is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.done(), vec![(1, Err(RequestError::Timeout))]);
}

#[test]
fn ticks_reach_every_matching_handler() {
    let mut p = Pair::new(Config::default());
    p.b.register(2, Pattern::parse("t.**").unwrap(), HandlerKind::Tick);
    p.b.register(3, Pattern::parse("t.x").unwrap(), HandlerKind::Tick);
    p.a.tick(B, "t.x", Bytes::from_static(b"1"), &mut p.a_out)
        .unwrap();
    p.a.tick(B, "nobody", Bytes::new(), &mut p.a_out).unwrap();
    p.pump();
    let got: Vec<_> = p
        .b_out
        .delivered
        .iter()
        .filter_map(|d| match d {
            Delivery::Tick { handler, .. } => Some(*handler),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![2, 3]);
    assert_eq!(p.b.stats().ticks_unhandled, 1);
    assert_eq!(
        p.a.tick(Uuid::from_u128(0xD), "t.x", Bytes::new(), &mut p.a_out),
        Err(TickError::Request(RequestError::NoResponders(
            NoResponders::UnknownPeer
        )))
    );
}

#[test]
fn answers_from_the_wrong_peer_or_garbage_are_counted() {
    let mut p = Pair::new(Config::default());
    let id = p.request(1, "echo.a", None);
    let c = Uuid::from_u128(0xC);
    let now = p.now;
    up(
        &mut p.a,
        c,
        Caps::NONE.with(envelope::Layer::REQREP),
        now,
        &mut p.a_out,
    );
    let mut forged = Envelope::new(envelope::Layer::REQREP, wire::REPLY, 5);
    forged.corr = Some(id);
    p.a.handle(
        Input::Envelope {
            from: c,
            group: None,
            envelope: forged,
        },
        now,
        &mut p.a_out,
    );
    assert_eq!(p.a.stats().foreign_replies, 1);
    let mut bad = Envelope::new(envelope::Layer::REQREP, wire::ERROR, 6);
    bad.corr = Some(id);
    bad.payload = Bytes::from_static(b"\x07");
    let input = Input::Envelope {
        from: B,
        group: None,
        envelope: bad,
    };
    p.a.handle(input, now, &mut p.a_out);
    let odd = Envelope::new(envelope::Layer::REQREP, 99, 7);
    let input = Input::Envelope {
        from: B,
        group: None,
        envelope: odd,
    };
    p.a.handle(input, now, &mut p.a_out);
    assert_eq!(p.a.stats().malformed, 2);
    assert!(p.done().is_empty());
    assert_eq!(p.a.in_flight(), 1);
}

#[test]
fn stop_ends_everything_once() {
    let mut p = Pair::new(Config::default());
    p.request(1, "echo.a", None);
    p.pump();
    p.a.stop(&mut p.a_out);
    p.b.stop(&mut p.b_out);
    assert_eq!(p.done(), vec![(1, Err(RequestError::Stopped))]);
    assert!(p.b_out.delivered.iter().any(|d| matches!(
        d,
        Delivery::Ended {
            reason: EndReason::Stopped,
            ..
        }
    )));
    assert_eq!((p.a.poll_timeout(), p.b.poll_timeout()), (None, None));
}
