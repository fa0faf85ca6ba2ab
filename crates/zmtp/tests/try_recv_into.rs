//! `Inbox::try_recv_into`: the non-waiting form of `recv_into` that a node drains its batches
//! with. Same stream as `recv` (pairs found first by its fast path, single frames, longer
//! multipart messages, connection events boxed), nothing when nothing is ready, and it never
//! takes the waker of a task waiting in `recv`.

use bytes::Bytes;
use std::time::Duration;
use tokio::time::timeout;
use zmesh_zmtp::*;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn try_recv_into_drains_the_same_stream_as_recv() {
    let mut inbox = Inbox::bind("tcp://127.0.0.1:*", InboxConfig::default())
        .await
        .unwrap();
    let mut id = vec![0x01u8];
    id.extend_from_slice(&[7; 16]);
    let out = Outbox::connect(
        &inbox.endpoint().to_string(),
        Bytes::from(id.clone()),
        OutboxConfig::default(),
    )
    .unwrap();
    let msg = |i: u8| -> Frames {
        let body = Bytes::from(vec![i; 3]);
        match i % 3 {
            0 => frames![Bytes::from_static(b"head"), body],
            1 => frames![body],
            _ => frames![Bytes::from_static(b"a"), Bytes::from_static(b"b"), body],
        }
    };
    const N: u8 = 90;
    for i in 0..N {
        out.try_send(msg(i)).unwrap();
    }
    // Nothing connected yet: nothing ready, and the buffer is left empty.
    let mut buf: Frames = frames![Bytes::from_static(b"stale")];
    assert!(inbox.try_recv_into(&mut buf).is_none());
    assert!(buf.is_empty());
    // `recv` waits for the first event (ACCEPTED), then everything is drained without waiting
    // (a `recv` in between whenever the socket has nothing buffered yet).
    match timeout(T, inbox.recv()).await.expect("in time") {
        Some(InboxEvent::Accepted { .. }) => {}
        other => panic!("expected Accepted, got {other:?}"),
    }
    let mut got = 0u8;
    while got < N {
        match inbox.try_recv_into(&mut buf) {
            Some(Received::Message(identity)) => {
                assert_eq!(&identity[..], &id[..]);
                assert_eq!(buf, msg(got), "message {got}");
                got += 1;
            }
            Some(Received::Event(ev)) => panic!("unexpected {ev:?}"),
            None => match timeout(T, inbox.recv()).await.expect("in time") {
                Some(InboxEvent::Message { frames, .. }) => {
                    assert_eq!(frames, msg(got), "message {got}");
                    got += 1;
                }
                other => panic!("unexpected {other:?}"),
            },
        }
    }
    drop(out);
    let ev = match inbox.try_recv_into(&mut buf) {
        Some(Received::Event(ev)) => *ev,
        Some(Received::Message(_)) => panic!("no more messages were sent"),
        None => timeout(T, inbox.recv())
            .await
            .expect("in time")
            .expect("inbox open"),
    };
    assert!(matches!(ev, InboxEvent::Disconnected { .. }), "{ev:?}");
}
