//! Harness for the services layer: `services_decode`.
//!
//! Byte 0 picks what the rest is:
//!
//! * 0–3: one payload of OFFER, ERROR, STATS or BROKERS ([`zmesh_core::services::wire`]);
//!   whatever decodes re-encodes to exactly the input and keeps the limits;
//! * 4–7: a script played against one [`Services`] layer — a worker offering `echo` (4), a
//!   broker (5), a caller with calls in flight (6), or all at once (7) — with three peers up.
//!   Each step is `len u8` then `len` bytes: byte 0 of a step is an action (low 3 bits: an
//!   envelope of kind 1–7 from peer `(b >> 3) % 3`, a peer going down and up again, time
//!   passing, a reply to a running call), the rest fills the envelope's fields and payload.
//!
//! Checked besides "no panic": every call made ends at most once (and all of them end once the
//! deadlines passed), `in_flight()` counts the calls not ended, `running()` the calls handed
//! over and not answered or ended, `poll_timeout()` is never in the past after a timeout ran,
//! and after `stop` nothing is held.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;
use zmesh_core::caps::Caps;
use zmesh_core::envelope::{self, Envelope};
use zmesh_core::layer::{Input, Layer, PeerView, Recorded};
use zmesh_core::services::wire::{self, BrokerList, ErrorBody, Offer, StatsBody};
use zmesh_core::services::{CallKey, CallSpec, Config, Delivery, Services};

const PEERS: [Uuid; 3] = [
    Uuid::from_u128(0x5e00_0000_0000_4000_8000_0000_0000_0001),
    Uuid::from_u128(0x5e00_0000_0000_4000_8000_0000_0000_0002),
    Uuid::from_u128(0x5e00_0000_0000_4000_8000_0000_0000_0003),
];

/// `services_decode` (module docs).
pub fn services_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        0 => {
            if let Ok(o) = Offer::decode(rest) {
                assert_eq!(&o.encode()[..], rest, "OFFER re-encodes differently");
                assert!(o.services.len() <= wire::MAX_SERVICES);
            }
        }
        1 => {
            if let Ok(e) = ErrorBody::decode(rest) {
                assert_eq!(&e.encode()[..], rest, "ERROR re-encodes differently");
            }
        }
        2 => {
            if let Ok(s) = StatsBody::decode(rest) {
                assert_eq!(&s.encode()[..], rest, "STATS re-encodes differently");
            }
        }
        3 => {
            if let Ok(l) = BrokerList::decode(rest) {
                assert_eq!(&l.encode()[..], rest, "BROKERS re-encodes differently");
                assert!(l.endpoints.len() <= wire::MAX_BROKERS);
            }
        }
        m => play(m, rest),
    }
}

struct Player {
    layer: Services<u64>,
    out: Recorded<Delivery<u64>>,
    now: Instant,
    /// Calls made and not ended.
    pending: BTreeSet<u64>,
    /// Calls ended.
    ended: BTreeSet<u64>,
    /// Calls handed over and not answered or ended.
    running: BTreeSet<CallKey>,
    latest_deadline: Instant,
}

impl Player {
    fn input(&mut self, input: Input<'_, std::convert::Infallible>) {
        self.layer.handle(input, self.now, &mut self.out);
        self.check();
    }

    fn check(&mut self) {
        for d in self.out.delivered.drain(..) {
            match d {
                Delivery::Done { waiter, .. } => {
                    assert!(
                        self.pending.remove(&waiter),
                        "Done for {waiter}, not pending"
                    );
                    assert!(self.ended.insert(waiter));
                }
                Delivery::Call { key, .. } => {
                    assert!(self.running.insert(key), "{key:?} handed over twice");
                }
                Delivery::Ended { key } => {
                    assert!(self.running.remove(&key), "Ended for {key:?}, not running");
                }
                _ => {}
            }
        }
        self.out.sent.clear();
        assert!(
            self.out.shouted.is_empty(),
            "the services layer never shouts"
        );
        assert_eq!(self.layer.in_flight(), self.pending.len());
        assert_eq!(self.layer.running(), self.running.len());
    }
}

fn play(mode: u8, mut script: &[u8]) {
    let config = Config {
        broker: mode == 5 || mode == 7,
        max_cached: 8,
        max_cached_bytes: 256,
        max_running: 4,
        max_relays: 4,
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut p = Player {
        layer: Services::new(config),
        out: Recorded::default(),
        now: t0,
        pending: BTreeSet::new(),
        ended: BTreeSet::new(),
        running: BTreeSet::new(),
        latest_deadline: t0,
    };
    let caps = Caps::NONE.with(envelope::Layer::SERVICES);
    let up = |peer| {
        Input::PeerUp(PeerView {
            peer,
            name: "f",
            headers: &[],
            caps,
        })
    };
    for peer in PEERS {
        p.input(up(peer));
    }
    if mode == 4 || mode == 7 {
        p.layer.offer("echo", &mut p.out).expect("valid");
        p.check();
    }
    if mode == 6 || mode == 7 {
        for w in 0..3u64 {
            let spec = CallSpec {
                retries: 2,
                timeout: Some(Duration::from_millis(500 + 300 * w)),
                per_try: Some(Duration::from_millis(150)),
                ..CallSpec::new("echo", Bytes::from_static(b"q"))
            };
            p.layer
                .call(p.now, w, spec, &mut p.out)
                .expect("valid call");
            p.pending.insert(w);
            p.latest_deadline = p
                .latest_deadline
                .max(p.now + Duration::from_millis(500 + 300 * w));
            p.check();
        }
    }
    while let Some((&len, rest)) = script.split_first() {
        let n = (len as usize).min(rest.len());
        let (step, tail) = rest.split_at(n);
        script = tail;
        let Some((&action, body)) = step.split_first() else {
            continue;
        };
        let peer = PEERS[usize::from(action >> 3) % 3];
        match action & 7 {
            0 => {
                // Time passes (0..255 × 8 ms) and the timers run.
                p.now += Duration::from_millis(u64::from(body.first().copied().unwrap_or(0)) * 8);
                if p.layer.poll_timeout().is_some_and(|t| t <= p.now) {
                    p.input(Input::Timeout);
                    assert!(p.layer.poll_timeout().is_none_or(|t| t > p.now));
                }
            }
            7 => {
                // A peer goes and comes back; or the application answers a running call.
                if body.first().is_some_and(|b| b % 2 == 0) {
                    p.input(Input::PeerDown { peer });
                    p.input(up(peer));
                } else if let Some(key) = p.running.iter().next().copied() {
                    let ok = body.get(1).is_some_and(|b| b % 2 == 0);
                    let result = if ok {
                        Ok(Bytes::copy_from_slice(body))
                    } else {
                        Err((9, "no".to_owned()))
                    };
                    assert!(p.layer.reply(key, result, p.now, &mut p.out));
                    p.running.remove(&key);
                    p.check();
                }
            }
            kind => {
                let env = envelope_from(kind, body);
                p.input(Input::Envelope {
                    from: peer,
                    group: None,
                    envelope: env,
                });
            }
        }
    }
    // Every call ends by its deadline.
    p.now = p.latest_deadline.max(p.now) + Duration::from_secs(1);
    while p.layer.poll_timeout().is_some_and(|t| t <= p.now) {
        p.input(Input::Timeout);
    }
    assert!(p.pending.is_empty(), "calls outlived their deadline");
    p.layer.stop(p.now, &mut p.out);
    for d in p.out.delivered.drain(..) {
        if let Delivery::Ended { key } = d {
            assert!(p.running.remove(&key));
        }
    }
    assert!(p.running.is_empty() && p.layer.running() == 0 && p.layer.relaying() == 0);
}

/// An envelope of `kind` whose fields come from `b` (ids small, so they meet our calls').
fn envelope_from(kind: u8, b: &[u8]) -> Envelope {
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut e = Envelope::new(envelope::Layer::SERVICES, kind, u64::from(byte(0) % 4));
    let flags = byte(1);
    if flags & 1 != 0 {
        e.corr = Some(u64::from(byte(2) % 4));
    }
    if flags & 2 != 0 {
        e.attempt = Some(u16::from(byte(3)));
    }
    if flags & 4 != 0 {
        e.ttl_ms = Some(u32::from(byte(4)) * 4);
    }
    if flags & 8 != 0 {
        e.origin = Some(PEERS[usize::from(byte(5)) % 3]);
    }
    if flags & 16 != 0 {
        e.dest = Some(PEERS[usize::from(byte(6)) % 3]);
    }
    if flags & 32 != 0 {
        e.subject = Some(if byte(7) % 2 == 0 { "echo" } else { "other" }.to_owned());
    }
    e.possible_duplicate = flags & 64 != 0;
    e.payload = Bytes::copy_from_slice(b.get(8..).unwrap_or(&[]));
    e
}
