//! Tests of the outbox internals.

use super::*;
use crate::{Inbox, InboxConfig, InboxEvent};

/// The handles can be shared across tasks and threads (the queue lock is hand-written, so
/// this is checked rather than assumed).
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Outbox>();
    send_sync::<OutboxWriter>();
    send_sync::<Room>();
}

/// Several tasks on a multi-thread runtime share one outbox (one of them through a writer):
/// direct writes, inline flushes of full segments, writer flushes and the connection task's
/// writes interleave, yet every message arrives once, whole, and in order per sender; mixed
/// sizes include frames written vectored; the limits are small enough to be hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_keep_order_and_lose_nothing() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let ob = Arc::new(
        Outbox::connect(
            &inbox.endpoint().to_string(),
            Bytes::from_static(b"\x01conc"),
            OutboxConfig {
                max_queued_messages: 5_000,
                ..OutboxConfig::default()
            },
        )
        .unwrap(),
    );
    const SENDERS: u8 = 4;
    const PER: u32 = 20_000;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let ob = ob.clone();
        tasks.push(tokio::spawn(async move {
            // Sender 0 goes through a writer, flushed every 100 messages and at the end.
            let mut writer = (s == 0).then(|| ob.writer());
            for i in 0..PER {
                let size = match i % 500 {
                    0 => 20_000, // vectored
                    1 => 3_000,
                    _ => 8 + (i % 40) as usize,
                };
                let mut body = vec![s; size];
                body[1..5].copy_from_slice(&i.to_be_bytes());
                let frames = if i % 7 == 0 {
                    vec![Bytes::from(body), Bytes::from_static(b"tail")]
                } else {
                    vec![Bytes::from(body)]
                };
                match writer.as_mut() {
                    Some(w) => {
                        w.feed(frames).await.unwrap();
                        if i % 100 == 99 {
                            w.flush();
                        }
                    }
                    None => ob.send(frames).await.unwrap(),
                }
                if i % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if let Some(mut w) = writer {
                w.flush();
            }
        }));
    }
    let mut next = [0u32; SENDERS as usize];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < SENDERS as u32 * PER {
        let ev = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("all messages in time")
            .expect("inbox open");
        if let InboxEvent::Message { frames, .. } = ev {
            let b = &frames[0];
            let s = b[0] as usize;
            let i = u32::from_be_bytes(b[1..5].try_into().unwrap());
            assert_eq!(i, next[s], "sender {s}: out of order or lost");
            assert_eq!(frames.len(), if i % 7 == 0 { 2 } else { 1 });
            assert!(b[5..].iter().all(|&x| x == s as u8), "corrupt body");
            next[s] += 1;
            got += 1;
        } else if !matches!(ev, InboxEvent::Accepted { .. }) {
            panic!("unexpected {ev:?}");
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ob.queued().0, 0);
}

/// `push_parts` (a borrowed first frame and the frames after it) writes exactly the bytes
/// `push_plain` writes for the whole message, whatever the sizes (short and long frames, frames
/// queued as their own chunk, no frame after the first, several).
#[test]
fn push_parts_encodes_as_push_plain() {
    let body = |n: usize| Bytes::from((0..n).map(|i| i as u8).collect::<Vec<u8>>());
    for first in [0, 6, 200, 255] {
        for rest in [
            vec![],
            vec![64],
            vec![0],
            vec![255],
            vec![256],
            vec![9000],
            vec![3, 300, 0, 10_000],
        ] {
            let first = body(first);
            let rest: Vec<Bytes> = rest.into_iter().map(body).collect();
            let mut whole = Frames::new();
            whole.push(first.clone());
            whole.extend(rest.iter().cloned());
            let (mut a, mut b) = (OutBuf::default(), OutBuf::default());
            // Behind something already queued, as in a segment.
            a.push_plain(&whole);
            b.push_plain(&whole);
            a.push_plain(&whole);
            b.push_parts(&first, &rest);
            assert_eq!(
                a.to_vec(),
                b.to_vec(),
                "first {} rest {:?}",
                first.len(),
                rest
            );
        }
    }
}

/// `try_send_parts` delivers the message `try_send` would, in order with it, and hands a refused
/// message back whole.
#[tokio::test]
async fn try_send_parts_delivers_the_whole_message() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let ob = Outbox::connect(
        &inbox.endpoint().to_string(),
        Bytes::from_static(b"\x01parts"),
        OutboxConfig {
            max_queued_messages: 3,
            ..OutboxConfig::default()
        },
    )
    .unwrap();
    let content = [Bytes::from_static(b"content")];
    ob.try_send_parts(b"head1", &content).unwrap();
    ob.try_send(crate::frames![Bytes::from_static(b"plain")])
        .unwrap();
    ob.try_send_parts(b"head2", &[]).unwrap();
    // Not connected yet, so all three are queued: the fourth is refused and handed back.
    match ob.try_send_parts(b"head3", &content) {
        Err(SendError::Full(f)) => assert_eq!(
            f.as_slice(),
            [Bytes::from_static(b"head3"), content[0].clone()]
        ),
        other => panic!("expected Full, got {other:?}"),
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("messages in time")
            .expect("inbox open");
        if let InboxEvent::Message { frames, .. } = ev {
            got.push(frames.into_vec());
        }
    }
    assert_eq!(
        got,
        [
            vec![Bytes::from_static(b"head1"), content[0].clone()],
            vec![Bytes::from_static(b"plain")],
            vec![Bytes::from_static(b"head2")],
        ]
    );
}
