//! The shell's fast paths: `whisper_with` (a WHISPER handed to the transport without an output)
//! and `handle_message_with` (a WHISPER/SHOUT event handed to the application without one).
//! Both must be indistinguishable from the queued paths: same bytes, same sequence numbers, same
//! order, same reaction to a refused send.

use super::*;
use crate::content::Frames;

/// `whisper_with`, with every message the engine hands over checked by this test's output
/// contract (as `drain` checks queued outputs), the transport answering `accept`. Returns the
/// frames handed over, if any.
fn whisper_direct(
    e: &mut Engine,
    peer: Uuid,
    content: &[Bytes],
    accept: bool,
) -> Result<Option<Frames>, EngineError> {
    let mut handed = None;
    e.whisper_with(peer, content, |to, header, content| {
        let mut frames = Frames::new();
        frames.push(Bytes::copy_from_slice(header));
        frames.extend(content.iter().cloned());
        let out = Output::Send { peer: to, frames };
        CONTRACT.with(|k| {
            if let Some(c) = k.borrow_mut().as_mut() {
                if let Err(v) = c.output(&out) {
                    panic!("output contract violated by a direct send: {v}");
                }
            }
        });
        let Output::Send { frames, .. } = out else {
            unreachable!()
        };
        handed = Some(frames);
        accept
    })?;
    Ok(handed)
}

#[test]
fn whisper_with_hands_over_what_whisper_would_queue_and_keeps_order() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(40);
    ready(&mut e, t0, &mut r, &[], 0);
    let content = vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")];
    // Nothing pending: handed over at once, the bytes of `whisper` with sequence 2 (after HELLO).
    let frames = whisper_direct(&mut e, r.uuid, &content, true)
        .unwrap()
        .expect("handed over");
    assert_eq!(
        frames,
        ZreMessage::Whisper {
            content: content.clone().into()
        }
        .encode(2)
        .unwrap()
    );
    assert!(!e.has_output());
    assert_eq!(e.stats().messages_sent, 2);
    // A queued WHISPER is pending: the next one queues behind it (not handed over), in order.
    e.whisper(r.uuid, vec![Bytes::from_static(b"3")]).unwrap();
    assert!(e.has_output());
    let one = [Bytes::from_static(b"4")];
    assert_eq!(whisper_direct(&mut e, r.uuid, &one, true), Ok(None));
    let sent = sent_to(&drain(&mut e), r.uuid);
    let seqs: Vec<u16> = sent.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [3, 4]);
    // Drained: handed over again, with the next number.
    let frames = whisper_direct(&mut e, r.uuid, &one, true).unwrap().unwrap();
    assert_eq!(ZreMessage::decode(&frames).unwrap().0, 5);
    // Errors as `whisper`'s, and nothing handed over.
    assert_eq!(
        whisper_direct(&mut e, Uuid::from_u128(999), &one, true),
        Err(EngineError::UnknownPeer(Uuid::from_u128(999)))
    );
    assert_eq!(
        whisper_direct(&mut e, r.uuid, &[], true),
        Err(EngineError::EmptyContent)
    );
    assert!(drain(&mut e).is_empty());
}

#[test]
fn whisper_with_refused_removes_the_peer_as_a_send_failure_does() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(41);
    ready(&mut e, t0, &mut r, &[], 0);
    let one = [Bytes::from_static(b"x")];
    assert!(whisper_direct(&mut e, r.uuid, &one, false)
        .unwrap()
        .is_some());
    assert!(e.has_output());
    assert_eq!(
        drain(&mut e),
        vec![exit(&r), Output::Disconnect { peer: r.uuid }]
    );
    assert_eq!(e.stats().send_failures, 1);
    assert_eq!(
        whisper_direct(&mut e, r.uuid, &one, true),
        Err(EngineError::UnknownPeer(r.uuid))
    );
}

#[test]
fn handle_message_with_hands_over_data_only_when_nothing_is_pending() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut r = Remote::new(42);
    ready(&mut e, t0, &mut r, &[], 0);
    let whisper = |text: &'static str| ZreMessage::Whisper {
        content: vec![Bytes::from_static(text.as_bytes())].into(),
    };
    let (uuid, name) = (r.uuid, r.name());
    let event = |text: &'static str| Event::Whisper {
        peer: uuid,
        name: name.as_str().into(),
        content: vec![Bytes::from_static(text.as_bytes())].into(),
    };
    let send = |r: &mut Remote, e: &mut Engine, msg: ZreMessage, take: bool| {
        r.seq = r.wrap.next(r.seq);
        let frames = msg.encode(r.seq).unwrap();
        let mut got = None;
        e.handle_message_with(t0, &routing_id(&r.uuid), frames, None, |ev| {
            if take {
                got = Some(ev);
                Ok(())
            } else {
                Err(ev)
            }
        });
        got
    };
    // Nothing pending: handed over, nothing queued.
    assert_eq!(send(&mut r, &mut e, whisper("a"), true), Some(event("a")));
    assert!(!e.has_output());
    // Handed back: queued as usual.
    assert_eq!(send(&mut r, &mut e, whisper("b"), false), None);
    // Pending output (the event just queued): the next one queues behind it, not handed over.
    assert_eq!(send(&mut r, &mut e, whisper("c"), true), None);
    assert_eq!(
        events(&drain(&mut e)),
        vec![event("b"), event("c")],
        "queued in order"
    );
    // A PING is not application data: never offered; its PING-OK is queued.
    assert_eq!(send(&mut r, &mut e, ZreMessage::Ping, true), None);
    assert_eq!(
        sent_to(&drain(&mut e), r.uuid),
        vec![(2, ZreMessage::PingOk)]
    );
    assert_eq!(e.stats().messages_received, 5); // HELLO, a, b, c, PING
}

#[test]
fn handle_message_parts_with_is_handle_message_with_on_two_frames() {
    let t0 = Instant::now();
    let (mut a, mut b) = (engine(t0), engine(t0));
    // Two engines compared with each other: the per-test output contract follows one engine.
    CONTRACT.with(|k| *k.borrow_mut() = None);
    let (mut ra, mut rb) = (Remote::new(43), Remote::new(43));
    ready(&mut a, t0, &mut ra, &["G"], 1);
    ready(&mut b, t0, &mut rb, &["G"], 1);
    let content = || vec![Bytes::from_static(b"payload")];
    let whisper = ZreMessage::Whisper {
        content: content().into(),
    };
    let shout = ZreMessage::Shout {
        group: "G".into(),
        content: content().into(),
    };
    let mut inputs: Vec<Frames> = Vec::new();
    for (i, msg) in [whisper.clone(), shout, whisper.clone()]
        .into_iter()
        .enumerate()
    {
        inputs.push(msg.encode(2 + i as u16).unwrap());
    }
    // A PING with a content frame (malformed), a bad signature, then a gap (sequence 9).
    let mut ping = ZreMessage::Ping.encode(5).unwrap();
    ping.push(Bytes::from_static(b"extra"));
    inputs.push(ping);
    inputs.push(
        [
            Bytes::from_static(&[0xAB, 0xA1, 2, 2, 0, 5]),
            content()[0].clone(),
        ]
        .into_iter()
        .collect(),
    );
    inputs.push(whisper.encode(9).unwrap());
    for frames in inputs {
        assert_eq!(frames.len(), 2);
        let id = routing_id(&ra.uuid);
        let mut got_a = None;
        a.handle_message_with(t0, &id, frames.clone(), None, |e| {
            got_a = Some(e);
            Ok(())
        });
        let mut got_b = None;
        b.handle_message_parts_with(t0, &id, &frames[0], frames[1].clone(), None, |e| {
            got_b = Some(e);
            Ok(())
        });
        assert_eq!(got_a, got_b);
        assert_eq!(drain(&mut a), drain(&mut b));
        assert_eq!(a.stats(), b.stats());
    }
    assert_eq!(a.stats().malformed, 2);
    assert_eq!(a.stats().sequence_gaps, 1);
}
