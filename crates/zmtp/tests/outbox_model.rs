//! Model test of the outbox's two ways in: random runs of `try_send`, writer feeds and flushes
//! against an outbox whose peer is not there yet, checked against a plain model of what the queue
//! must hold, then delivered to an inbox bound afterwards.
//!
//! Properties:
//! * the count and byte limits are never exceeded, whatever the mix (`queued()` after every step);
//! * a refused message is handed back intact, and refusals only happen near a limit;
//! * every accepted message arrives exactly once, in the order the model gives it: a `try_send`
//!   message takes its place at once, a writer's messages take theirs when the writer is flushed
//!   (explicitly, when full, when a reservation is renewed, or when dropped).

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::timeout;
use zmesh_zmtp::{frames, Frames, Inbox, InboxConfig, InboxEvent, Outbox, OutboxConfig, SendError};

const MAX_MSGS: usize = 300;
const MAX_BYTES: usize = 40_000;

#[derive(Debug, Clone)]
enum Op {
    /// `Outbox::try_send` of a message of this size.
    TrySend(usize),
    /// `OutboxWriter::try_feed` on writer 0 or 1.
    Feed(usize, usize),
    /// `OutboxWriter::flush` on writer 0 or 1.
    Flush(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![4 => 1usize..200, 1 => 1_000usize..9_000];
    prop_oneof![
        3 => size.clone().prop_map(Op::TrySend),
        6 => (0usize..2, size).prop_map(|(w, s)| Op::Feed(w, s)),
        1 => (0usize..2).prop_map(Op::Flush),
    ]
}

/// A message whose body says who sent it and its sequence number.
fn message(seq: u32, size: usize) -> Frames {
    let mut body = vec![(seq % 251) as u8; size.max(4)];
    body[..4].copy_from_slice(&seq.to_be_bytes());
    frames![Bytes::from(body)]
}

fn seq_of(f: &Frames) -> u32 {
    u32::from_be_bytes(f[0][..4].try_into().unwrap())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Nobody listens there yet: nothing drains, so the queue only grows.
    let ep = common::unused_loopback_endpoint();
    let cfg = OutboxConfig {
        max_queued_messages: MAX_MSGS,
        max_queued_bytes: MAX_BYTES,
        reconnect_interval: Duration::from_millis(10),
        reconnect_interval_max: Duration::from_millis(50),
        ..OutboxConfig::default()
    };
    let out = Outbox::connect(&ep, Bytes::from_static(b"\x01model"), cfg).unwrap();
    let mut writers = [out.writer(), out.writer()];
    // The model: the order messages must arrive in, and what each writer holds unflushed.
    let mut order: Vec<u32> = Vec::new();
    let mut pending: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for (seq, op) in (0u32..).zip(ops) {
        match op {
            Op::TrySend(size) => {
                let m = message(seq, size);
                match out.try_send(m.clone()) {
                    Ok(()) => order.push(seq),
                    Err(SendError::Full(back)) => {
                        prop_assert_eq!(back, m);
                        // Only near a limit: room reserved by the writers counts too, and a
                        // writer reserves at most half of what is left, so the queue itself
                        // holds at least a quarter of a limit.
                        let (n, b) = out.queued();
                        prop_assert!(
                            n * 4 >= MAX_MSGS || (b + size) * 4 >= MAX_BYTES,
                            "refused with {} messages / {} bytes queued",
                            n,
                            b
                        );
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
                }
            }
            Op::Feed(w, size) => {
                let m = message(seq, size);
                let before = pending[w].len();
                match writers[w].try_feed(m.clone()) {
                    Ok(()) => {
                        // The writer flushes by itself when it renews its reservation (before
                        // taking the message) or when its buffer is full (after): `queued()`
                        // tells which, and the model takes the order from there.
                        let q = out.queued().0;
                        if before > 0 && q == order.len() + before {
                            order.append(&mut pending[w]);
                            pending[w].push(seq);
                        } else if q == order.len() + before + 1 {
                            pending[w].push(seq);
                            order.append(&mut pending[w]);
                        } else {
                            prop_assert_eq!(q, order.len(), "queued vs model");
                            pending[w].push(seq);
                        }
                    }
                    Err(SendError::Full(back)) => {
                        prop_assert_eq!(back, m);
                        // Full flushes what the writer held.
                        order.append(&mut pending[w]);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
                }
            }
            Op::Flush(w) => {
                writers[w].flush();
                order.append(&mut pending[w]);
            }
        }
        let (n, b) = out.queued();
        prop_assert_eq!(n, order.len(), "queued vs model");
        prop_assert!(n <= MAX_MSGS, "{} messages queued", n);
        prop_assert!(b <= MAX_BYTES, "{} bytes queued", b);
    }
    for (w, p) in writers.iter_mut().zip(pending.iter_mut()) {
        w.flush();
        order.append(p);
    }
    // Every accepted message is now in the queue, nothing else.
    prop_assert_eq!(out.queued().0, order.len());
    // The peer appears: everything is delivered once.
    let mut inbox = Inbox::bind(&ep, InboxConfig::default()).await.unwrap();
    let mut got: Vec<u32> = Vec::with_capacity(order.len());
    while got.len() < order.len() {
        let ev = timeout(Duration::from_secs(10), inbox.recv())
            .await
            .map_err(|_| {
                TestCaseError::fail(format!("{} of {} delivered", got.len(), order.len()))
            })?
            .expect("inbox open");
        if let InboxEvent::Message { frames, .. } = ev {
            got.push(seq_of(&frames));
        }
    }
    let mut sorted_got = got.clone();
    sorted_got.sort_unstable();
    let mut sorted_want = order.clone();
    sorted_want.sort_unstable();
    prop_assert_eq!(
        sorted_got,
        sorted_want,
        "each accepted message exactly once"
    );
    prop_assert_eq!(got, order, "in the model's order");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_limits_and_order_hold_for_any_mix(ops in proptest::collection::vec(op(), 1..400)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
