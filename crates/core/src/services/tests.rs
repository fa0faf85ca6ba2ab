//! The layer on a little in-memory network: nodes are `Services` values, frames are delivered
//! when the test says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::*;
use crate::caps::Caps;
use crate::envelope::{self, Envelope};
use crate::layer::{Input, Layer, PeerView, Recorded};

type Out = Recorded<Delivery<u32>>;

struct Net {
    t0: Instant,
    now: Duration,
    nodes: BTreeMap<Uuid, (Services<u32>, Out)>,
    /// Frames in flight: (from, to, frame).
    wire: Vec<(Uuid, Uuid, Bytes)>,
}

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

impl Net {
    fn new() -> Net {
        Net {
            t0: Instant::now(),
            now: Duration::ZERO,
            nodes: BTreeMap::new(),
            wire: Vec::new(),
        }
    }

    fn at(&self) -> Instant {
        self.t0 + self.now
    }

    fn add(&mut self, n: u8, config: Config) -> Uuid {
        let u = uuid(n);
        let config = Config {
            first_id: u64::from(n) * 1000,
            seed: u64::from(n),
            ..config
        };
        self.nodes
            .insert(u, (Services::new(config), Out::default()));
        self.collect(u);
        u
    }

    /// Moves a node's sent frames onto the wire.
    fn collect(&mut self, u: Uuid) {
        let (_, out) = self.nodes.get_mut(&u).unwrap();
        for (to, f) in out.sent.drain(..) {
            self.wire.push((u, to, f));
        }
    }

    fn input(&mut self, u: Uuid, input: Input<'_, std::convert::Infallible>) {
        let now = self.at();
        let (s, out) = self.nodes.get_mut(&u).unwrap();
        s.handle(input, now, out);
        self.collect(u);
    }

    fn with<R>(
        &mut self,
        u: Uuid,
        f: impl FnOnce(&mut Services<u32>, Instant, &mut Out) -> R,
    ) -> R {
        let now = self.at();
        let (s, out) = self.nodes.get_mut(&u).unwrap();
        let r = f(s, now, out);
        self.collect(u);
        r
    }

    /// Both see each other come up.
    fn link(&mut self, a: Uuid, b: Uuid) {
        let caps = Caps::NONE.with(envelope::Layer::SERVICES);
        for (x, y) in [(a, b), (b, a)] {
            self.input(
                x,
                Input::PeerUp(PeerView {
                    peer: y,
                    name: "n",
                    headers: &[],
                    caps,
                }),
            );
        }
    }

    fn down(&mut self, observer: Uuid, peer: Uuid) {
        self.input(observer, Input::PeerDown { peer });
        self.wire
            .retain(|(f, t, _)| !(*f == peer && *t == observer));
    }

    /// Delivers everything in flight (and what that produces) to nodes that exist.
    fn settle(&mut self) {
        while !self.wire.is_empty() {
            let batch = std::mem::take(&mut self.wire);
            for (from, to, frame) in batch {
                if !self.nodes.contains_key(&to) {
                    continue;
                }
                let envelope = Envelope::decode(&frame).unwrap();
                self.input(
                    to,
                    Input::Envelope {
                        from,
                        group: None,
                        envelope,
                    },
                );
            }
        }
    }

    /// Drops what is in flight to `to`.
    fn lose_to(&mut self, to: Uuid) {
        self.wire.retain(|(_, t, _)| *t != to);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.settle();
        loop {
            let next = self
                .nodes
                .values()
                .filter_map(|(s, _)| s.poll_timeout())
                .min()
                .filter(|t| *t <= self.t0 + end);
            let Some(t) = next else { break };
            self.now = t - self.t0;
            let ids: Vec<Uuid> = self.nodes.keys().copied().collect();
            for u in ids {
                if self.nodes[&u].0.poll_timeout().is_some_and(|x| x <= t) {
                    self.input(u, Input::Timeout);
                }
            }
            self.settle();
        }
        self.now = end;
    }

    fn take(&mut self, u: Uuid) -> Vec<Delivery<u32>> {
        std::mem::take(&mut self.nodes.get_mut(&u).unwrap().1.delivered)
    }

    fn calls_at(&mut self, u: Uuid) -> Vec<(CallKey, String, Bytes, u16)> {
        self.take(u)
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Call {
                    key,
                    service,
                    payload,
                    attempt,
                    ..
                } => Some((key, service, payload, attempt)),
                _ => None,
            })
            .collect()
    }

    fn done_at(&mut self, u: Uuid) -> Vec<(u32, Result<Bytes, CallError>, CallInfo)> {
        self.take(u)
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Done {
                    waiter,
                    result,
                    info,
                    ..
                } => Some((waiter, result, info)),
                _ => None,
            })
            .collect()
    }

    fn call(&mut self, u: Uuid, waiter: u32, spec: CallSpec) -> CallId {
        self.with(u, |s, now, out| s.call(now, waiter, spec, out))
            .unwrap()
    }

    fn reply(&mut self, u: Uuid, key: CallKey, p: &'static [u8]) -> bool {
        self.with(u, |s, now, out| {
            s.reply(key, Ok(Bytes::from_static(p)), now, out)
        })
    }

    fn offer(&mut self, u: Uuid, service: &str) {
        self.with(u, |s, _, out| s.offer(service, out)).unwrap();
    }
}

fn spec(service: &str, retries: u16, per_try_ms: u64, timeout_ms: u64) -> CallSpec {
    CallSpec {
        retries,
        per_try: Some(Duration::from_millis(per_try_ms)),
        timeout: Some(Duration::from_millis(timeout_ms)),
        ..CallSpec::new(service, Bytes::from_static(b"req"))
    }
}

#[test]
fn offers_appear_and_disappear() {
    let mut n = Net::new();
    let (c, w) = (n.add(1, Config::default()), n.add(2, Config::default()));
    n.link(c, w);
    n.offer(w, "echo");
    n.settle();
    let cs = &n.nodes[&c].0;
    assert_eq!(cs.workers("echo").collect::<Vec<_>>(), vec![(w, false)]);
    n.with(w, |s, now, out| assert!(s.withdraw("echo", now, out)));
    n.settle();
    assert_eq!(n.nodes[&c].0.workers("echo").count(), 0);
    // A late joiner gets the offer on PeerUp.
    n.offer(w, "math");
    let late = n.add(3, Config::default());
    n.link(late, w);
    n.settle();
    assert_eq!(n.nodes[&late].0.workers("math").count(), 1);
    assert!(n.with(w, |s, _, out| s.offer("bad name", out)).is_err());
}

#[test]
fn call_reply_and_info() {
    let mut n = Net::new();
    let (c, w) = (n.add(1, Config::default()), n.add(2, Config::default()));
    n.link(c, w);
    n.offer(w, "echo");
    n.settle();
    let id = n.call(c, 7, spec("echo", 0, 1000, 1000));
    n.settle();
    let calls = n.calls_at(w);
    assert_eq!(calls.len(), 1);
    let (key, service, payload, attempt) = calls[0].clone();
    assert_eq!(
        (key.caller, key.id, service.as_str(), &payload[..], attempt),
        (c, id, "echo", &b"req"[..], 0)
    );
    n.advance(Duration::from_millis(5));
    assert!(n.reply(w, key, b"ok"));
    n.settle();
    let done = n.done_at(c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, 7);
    assert_eq!(done[0].1, Ok(Bytes::from_static(b"ok")));
    assert_eq!(done[0].2.tries, 1);
    assert_eq!(done[0].2.worker, Some(w));
    assert_eq!(done[0].2.broker, None);
    assert_eq!(done[0].2.latency, Duration::from_millis(5));
    // Stats of the worker.
    let st = n.nodes[&w].0.own_stats(n.at());
    assert_eq!(st.services[0].requests, 1);
    assert_eq!(st.services[0].processing_ns, 5_000_000);
    // A reply twice is refused.
    assert!(!n.reply(w, key, b"again"));
}

#[test]
fn no_worker_fails_at_once_without_retries_and_waits_with_them() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    n.call(c, 1, spec("echo", 0, 100, 100));
    assert_eq!(n.done_at(c)[0].1, Err(CallError::NoService));
    // With retries it waits for a worker to appear.
    n.call(c, 2, spec("echo", 2, 100, 1000));
    n.advance(Duration::from_millis(200));
    assert!(n.done_at(c).is_empty());
    let w = n.add(2, Config::default());
    n.offer(w, "echo");
    n.link(c, w);
    n.settle();
    n.advance(Duration::from_millis(100));
    let calls = n.calls_at(w);
    assert_eq!(calls.len(), 1);
    n.reply(w, calls[0].0, b"late but fine");
    n.settle();
    assert!(n.done_at(c)[0].1.is_ok());
}

#[test]
fn least_outstanding_round_robin() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let ws: Vec<Uuid> = (2..5).map(|i| n.add(i, Config::default())).collect();
    for w in &ws {
        n.link(c, *w);
        n.offer(*w, "echo");
    }
    n.settle();
    for i in 0..9 {
        n.call(c, i, spec("echo", 0, 1000, 1000));
    }
    n.settle();
    let counts: Vec<usize> = ws.iter().map(|w| n.calls_at(*w).len()).collect();
    assert_eq!(counts, vec![3, 3, 3]);
}

#[test]
fn retry_goes_elsewhere_and_dup_is_flagged() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let (w1, w2) = (n.add(2, Config::default()), n.add(3, Config::default()));
    for w in [w1, w2] {
        n.link(c, w);
        n.offer(w, "echo");
    }
    n.settle();
    let id = n.call(c, 1, spec("echo", 2, 100, 2000));
    n.settle();
    let first = n.calls_at(w1);
    assert_eq!(first.len(), 1);
    // w1 stays silent: after the per-try timeout and a backoff the retry goes to w2.
    n.advance(Duration::from_millis(200));
    let second = n.calls_at(w2);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0.id, id);
    assert_eq!(second[0].3, 1, "retry count");
    // The late answer of the first worker ends the call (the retry's is then late).
    n.reply(w1, first[0].0, b"one");
    n.settle();
    let done = n.done_at(c);
    assert_eq!(done[0].1, Ok(Bytes::from_static(b"one")));
    assert_eq!(done[0].2.tries, 2);
    assert_eq!(done[0].2.worker, Some(w1));
    n.reply(w2, second[0].0, b"two");
    n.settle();
    assert!(n.done_at(c).is_empty());
    assert_eq!(n.nodes[&c].0.stats().late_replies, 1);
}

#[test]
fn worker_loss_retries_at_once() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let (w1, w2) = (n.add(2, Config::default()), n.add(3, Config::default()));
    for w in [w1, w2] {
        n.link(c, w);
        n.offer(w, "echo");
    }
    n.settle();
    n.call(c, 1, spec("echo", 1, 1000, 2000));
    n.settle();
    assert_eq!(n.calls_at(w1).len(), 1);
    n.down(c, w1);
    n.advance(Duration::from_millis(60));
    let retry = n.calls_at(w2);
    assert_eq!(retry.len(), 1);
    n.reply(w2, retry[0].0, b"x");
    n.settle();
    assert!(n.done_at(c)[0].1.is_ok());
    // Without retries: WorkerLost.
    n.call(c, 2, spec("echo", 0, 1000, 1000));
    n.settle();
    n.down(c, w2);
    assert_eq!(n.done_at(c)[0].1, Err(CallError::WorkerLost));
}

#[test]
fn duplicates_are_absorbed_within_the_window() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let w = n.add(
        2,
        Config {
            dedup_window: Duration::from_secs(10),
            ..Config::default()
        },
    );
    n.link(c, w);
    n.offer(w, "echo");
    n.settle();
    // Per-try 100 ms, only one worker: retries go back to the same one.
    n.call(c, 1, spec("echo", 3, 100, 5000));
    n.settle();
    let calls = n.calls_at(w);
    assert_eq!(calls.len(), 1);
    n.advance(Duration::from_millis(400));
    assert!(
        n.calls_at(w).is_empty(),
        "a retry of a running call is not re-run"
    );
    assert!(n.nodes[&w].0.stats().duplicates >= 1);
    n.reply(w, calls[0].0, b"once");
    n.settle();
    assert_eq!(n.done_at(c)[0].1, Ok(Bytes::from_static(b"once")));
    // A duplicate after the answer gets the cached answer (replayed by hand here).
    let mut env = Envelope::new(envelope::Layer::SERVICES, wire::CALL, calls[0].0.id);
    env.subject = Some("echo".into());
    env.possible_duplicate = true;
    env.attempt = Some(5);
    env.ttl_ms = Some(1000);
    n.input(
        w,
        Input::Envelope {
            from: c,
            group: None,
            envelope: env.clone(),
        },
    );
    assert!(n.calls_at(w).is_empty());
    let (_, to, frame) = n.wire.pop().unwrap();
    let answer = Envelope::decode(&frame).unwrap();
    assert_eq!(
        (to, answer.kind, answer.corr),
        (c, wire::REPLY, Some(calls[0].0.id))
    );
    assert_eq!(&answer.payload[..], b"once");
    // After the window the key is forgotten: the same message runs again.
    n.advance(Duration::from_secs(11));
    assert_eq!(n.nodes[&w].0.cached(), 0);
    n.input(
        w,
        Input::Envelope {
            from: c,
            group: None,
            envelope: env,
        },
    );
    assert_eq!(n.calls_at(w).len(), 1);
}

#[test]
fn reply_cache_is_bounded() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let w = n.add(
        2,
        Config {
            max_cached: 4,
            ..Config::default()
        },
    );
    n.link(c, w);
    n.offer(w, "echo");
    n.settle();
    for i in 0..10 {
        n.call(c, i, spec("echo", 0, 1000, 1000));
        n.settle();
        let calls = n.calls_at(w);
        assert_eq!(calls.len(), 1);
        n.reply(w, calls[0].0, b"r");
        n.settle();
    }
    assert_eq!(n.done_at(c).len(), 10);
    assert!(n.nodes[&w].0.cached() <= 4);
    assert_eq!(n.nodes[&w].0.stats().evicted, 6);
    // Full of running calls: refused (Overloaded), nothing runs.
    for i in 0..5 {
        n.call(c, 100 + i, spec("echo", 0, 1000, 1000));
    }
    n.settle();
    assert_eq!(n.calls_at(w).len(), 4);
    let done = n.done_at(c);
    assert_eq!(done.len(), 1);
    assert!(matches!(done[0].1, Err(CallError::Overloaded(_))));
}

fn broker_config() -> Config {
    Config {
        broker: true,
        ..Config::default()
    }
}

#[test]
fn broker_relays_both_ways() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let b = n.add(9, broker_config());
    let w = n.add(2, Config::default());
    // The client and the worker see only the broker.
    n.link(c, b);
    n.link(w, b);
    n.offer(w, "echo");
    n.settle();
    assert_eq!(
        n.nodes[&c].0.workers("echo").collect::<Vec<_>>(),
        vec![(b, true)]
    );
    n.call(
        c,
        1,
        CallSpec {
            via: Via::Brokers,
            ..spec("echo", 0, 1000, 1000)
        },
    );
    n.settle();
    let calls = n.calls_at(w);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].0.caller, c,
        "the worker keys by the original caller"
    );
    n.reply(w, calls[0].0, b"via");
    n.settle();
    let done = n.done_at(c);
    assert_eq!(done[0].1, Ok(Bytes::from_static(b"via")));
    assert_eq!(done[0].2.worker, Some(w));
    assert_eq!(done[0].2.broker, Some(b));
    assert_eq!(n.nodes[&b].0.relaying(), 0);
    // Direct only: nobody.
    n.call(
        c,
        2,
        CallSpec {
            via: Via::Direct,
            ..spec("echo", 0, 1000, 1000)
        },
    );
    assert_eq!(n.done_at(c)[0].1, Err(CallError::NoService));
}

#[test]
fn broker_death_costs_time_only_and_the_worker_dedups() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let (b1, b2) = (n.add(8, broker_config()), n.add(9, broker_config()));
    let (w1, w2) = (n.add(2, Config::default()), n.add(3, Config::default()));
    for b in [b1, b2] {
        n.link(c, b);
        for w in [w1, w2] {
            n.link(w, b);
        }
    }
    n.offer(w1, "echo");
    n.offer(w2, "echo");
    n.settle();
    n.call(c, 1, spec("echo", 3, 200, 5000));
    n.settle();
    let first_broker = n.nodes[&c].0.calls.values().next().unwrap().at.unwrap();
    let running: Vec<(Uuid, CallKey)> = [w1, w2]
        .into_iter()
        .flat_map(|w| n.calls_at(w).into_iter().map(move |x| (w, x.0)))
        .collect();
    assert_eq!(running.len(), 1);
    let (worker, key) = running[0];
    // The broker dies holding the call: everyone sees it leave.
    n.nodes.remove(&first_broker);
    for u in [c, w1, w2] {
        n.down(u, first_broker);
    }
    n.advance(Duration::from_millis(100));
    // The retry through the other broker reaches the same worker (rendezvous) and is absorbed.
    assert!(n.calls_at(w1).is_empty() && n.calls_at(w2).is_empty());
    assert_eq!(n.nodes[&worker].0.stats().duplicates, 1);
    n.reply(worker, key, b"once");
    n.settle();
    let done = n.done_at(c);
    assert_eq!(done[0].1, Ok(Bytes::from_static(b"once")));
    assert_ne!(done[0].2.broker, Some(first_broker));
    assert_eq!(done[0].2.tries, 2);
}

#[test]
fn worker_lost_behind_broker_and_draining() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let b = n.add(9, broker_config());
    let (w1, w2) = (n.add(2, Config::default()), n.add(3, Config::default()));
    n.link(c, b);
    n.link(w1, b);
    n.link(w2, b);
    n.offer(w1, "echo");
    n.offer(w2, "echo");
    n.settle();
    n.call(c, 1, spec("echo", 1, 1000, 3000));
    n.settle();
    let (gone, other) = if n.calls_at(w1).is_empty() {
        (w2, w1)
    } else {
        (w1, w2)
    };
    n.nodes.remove(&gone);
    n.down(b, gone);
    n.advance(Duration::from_millis(100));
    let again = n.calls_at(other);
    assert_eq!(
        again.len(),
        1,
        "{:?} {:?}",
        n.nodes[&c].0.stats(),
        n.nodes[&b].0.stats()
    );
    assert_eq!(n.nodes[&b].0.stats().relays_lost, 1);
    // Draining: the offer goes away, new calls are refused, the held one finishes.
    n.with(b, |s, _, out| s.drain(out));
    n.settle();
    assert!(!n.nodes[&b].0.is_drained());
    assert_eq!(n.nodes[&c].0.workers("echo").count(), 0);
    n.reply(other, again[0].0, b"done");
    n.settle();
    assert!(n.nodes[&b].0.is_drained());
    assert!(n.done_at(c)[0].1.is_ok());
}

#[test]
fn broker_list_spreads() {
    let mut n = Net::new();
    let (b1, b2) = (n.add(8, broker_config()), n.add(9, broker_config()));
    let c = n.add(1, Config::default());
    n.with(b1, |s, _, out| s.add_brokers(["tcp://b1:1"], out));
    n.with(b2, |s, _, out| s.add_brokers(["tcp://b2:1"], out));
    n.link(b1, b2);
    n.link(c, b1);
    n.settle();
    let known: Vec<&str> = n.nodes[&c].0.brokers().collect();
    assert_eq!(known, vec!["tcp://b1:1", "tcp://b2:1"]);
    assert!(n
        .take(c)
        .iter()
        .any(|d| matches!(d, Delivery::Brokers { .. })));
}

#[test]
fn stats_query_and_timeouts_end_exactly_once() {
    let mut n = Net::new();
    let (c, w) = (n.add(1, Config::default()), n.add(2, Config::default()));
    n.link(c, w);
    n.offer(w, "echo");
    n.settle();
    n.call(c, 1, spec("echo", 0, 300, 300));
    n.settle();
    let calls = n.calls_at(w);
    n.advance(Duration::from_millis(299));
    assert!(n.done_at(c).is_empty());
    n.advance(Duration::from_millis(1));
    assert_eq!(n.done_at(c)[0].1, Err(CallError::Timeout));
    // The worker's entry expires with the deadline: the application hears Ended.
    assert!(n
        .take(w)
        .iter()
        .any(|d| matches!(d, Delivery::Ended { key } if *key == calls[0].0)));
    assert!(!n.reply(w, calls[0].0, b"late"));
    let q = n.with(c, |s, _, out| s.query_stats(w, out)).unwrap();
    n.settle();
    let stats: Vec<_> = n
        .take(c)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Stats { query, peer, stats } => Some((query, peer, stats)),
            _ => None,
        })
        .collect();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].0, stats[0].1), (q, w));
    assert_eq!(stats[0].2.services[0].name, "echo");
    assert_eq!(stats[0].2.services[0].requests, 1);
    assert_eq!(n.nodes[&c].0.in_flight(), 0);
    // Stop ends everything.
    n.call(c, 2, spec("echo", 0, 300, 300));
    n.settle();
    n.with(c, |s, now, out| s.stop(now, out));
    assert_eq!(n.done_at(c)[0].1, Err(CallError::Stopped));
}

#[test]
fn malformed_input_is_counted() {
    let mut n = Net::new();
    let (c, w) = (n.add(1, Config::default()), n.add(2, Config::default()));
    n.link(c, w);
    n.settle();
    for (kind, payload) in [
        (wire::OFFER, &b"x"[..]),
        (99, &b""[..]),
        (wire::ERROR, &b"zz"[..]),
        (wire::CALL, &b""[..]),
    ] {
        let mut env = Envelope::new(envelope::Layer::SERVICES, kind, 1);
        env.corr = Some(1);
        env.payload = Bytes::copy_from_slice(payload);
        n.input(
            w,
            Input::Envelope {
                from: c,
                group: None,
                envelope: env,
            },
        );
    }
    assert_eq!(n.nodes[&w].0.stats().malformed, 3);
}

#[test]
fn a_lost_reply_is_answered_again_from_the_cache() {
    let mut n = Net::new();
    let (c, w) = (n.add(1, Config::default()), n.add(2, Config::default()));
    n.link(c, w);
    n.offer(w, "pay");
    n.settle();
    n.call(c, 1, spec("pay", 2, 100, 2000));
    n.settle();
    let calls = n.calls_at(w);
    n.reply(w, calls[0].0, b"paid");
    // The reply is lost on the way back.
    n.lose_to(c);
    n.advance(Duration::from_millis(300));
    assert!(n.calls_at(w).is_empty(), "not processed twice");
    let done = n.done_at(c);
    assert_eq!(done[0].1, Ok(Bytes::from_static(b"paid")));
    assert_eq!(done[0].2.tries, 2);
    assert_eq!(n.nodes[&w].0.stats().duplicates, 1);
}

#[test]
fn spoofed_origins_and_injected_answers_are_dropped() {
    let mut n = Net::new();
    let victim = n.add(1, Config::default());
    let spoofer = n.add(3, Config::default());
    let b = n.add(9, broker_config());
    let w = n.add(2, Config::default());
    for x in [victim, spoofer, w] {
        n.link(x, b);
    }
    n.link(spoofer, w);
    n.offer(w, "echo");
    n.settle();
    let id = n.call(victim, 1, spec("echo", 0, 1000, 1000));
    n.settle();
    let calls = n.calls_at(w);
    assert_eq!(calls.len(), 1);
    // The spoofer answers the victim's relayed call through the broker: dropped there.
    let mut fake = Envelope::new(envelope::Layer::SERVICES, wire::REPLY, 77);
    fake.corr = Some(id);
    fake.dest = Some(victim);
    fake.payload = Bytes::from_static(b"forged");
    n.input(
        b,
        Input::Envelope {
            from: spoofer,
            group: None,
            envelope: fake,
        },
    );
    n.settle();
    assert!(n.done_at(victim).is_empty());
    assert_eq!(n.nodes[&b].0.stats().late_replies, 1);
    n.reply(w, calls[0].0, b"real");
    n.settle();
    assert_eq!(n.done_at(victim)[0].1, Ok(Bytes::from_static(b"real")));
    // The spoofer asks the worker directly in the victim's name: refused, nothing replayed.
    let mut call = Envelope::new(envelope::Layer::SERVICES, wire::CALL, id);
    call.subject = Some("echo".into());
    call.origin = Some(victim);
    n.input(
        w,
        Input::Envelope {
            from: spoofer,
            group: None,
            envelope: call.clone(),
        },
    );
    assert!(
        n.wire.iter().all(|(from, _, _)| *from != w),
        "nothing sent back"
    );
    assert_eq!(n.nodes[&w].0.stats().malformed, 1);
    // Nor can it name an origin at a broker.
    n.input(
        b,
        Input::Envelope {
            from: spoofer,
            group: None,
            envelope: call,
        },
    );
    assert_eq!(n.nodes[&b].0.stats().malformed, 1);
}

#[test]
fn callers_balance_across_brokers() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let (b1, b2) = (n.add(8, broker_config()), n.add(9, broker_config()));
    let w = n.add(2, Config::default());
    for b in [b1, b2] {
        n.link(c, b);
        n.link(w, b);
    }
    n.offer(w, "echo");
    n.settle();
    for i in 0..10 {
        n.call(c, i, spec("echo", 0, 1000, 1000));
    }
    n.settle();
    let relayed = |n: &Net, b| n.nodes[&b].0.stats().relayed;
    assert_eq!((relayed(&n, b1), relayed(&n, b2)), (5, 5));
    assert_eq!(n.calls_at(w).len(), 10);
}

#[test]
fn stats_reach_workers_behind_a_broker() {
    let mut n = Net::new();
    let c = n.add(1, Config::default());
    let b = n.add(9, broker_config());
    let w = n.add(2, Config::default());
    n.link(c, b);
    n.link(w, b);
    n.offer(w, "echo");
    n.settle();
    let q = n.with(c, |s, _, out| s.query_stats(b, out)).unwrap();
    n.settle();
    let mut got: Vec<(u64, Uuid, bool, usize)> = n
        .take(c)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::Stats { query, peer, stats } => {
                Some((query, peer, stats.broker, stats.services.len()))
            }
            _ => None,
        })
        .collect();
    got.sort();
    let mut want = vec![(q, b, true, 0), (q, w, false, 1)];
    want.sort();
    assert_eq!(got, want);
}
