//! Request/reply through real sockets on loopback: every outcome, cancellation, a replier killed
//! mid-request, 100,000 requests in flight with bounded state, and layer traffic staying out of
//! the application's event stream.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{timeout, Instant};
use zmesh::{Event, NoResponders, RequestError, Uuid};

mod loopback;
use loopback::{builder, is_exit, pair, port, wait_for, WAIT};

/// Serves `pattern` on `node` with an echo handler until the stream ends.
fn echo(node: &zmesh::Node, pattern: &str) {
    let mut requests = node.on_request(pattern).unwrap();
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let p = req.payload().clone();
            req.reply(p);
        }
    });
}

#[tokio::test]
async fn reply_handler_error_and_no_handler() {
    let ((a, mut ea), (b, mut eb)) = pair(port()).await;
    echo(&b, "echo.*");
    let mut failing = b.on_request("fail").unwrap();
    tokio::spawn(async move {
        while let Some(req) = failing.recv().await {
            req.error(42, "nope");
        }
    });
    let reply = a.request(b.uuid(), "echo.x", "hello").await.unwrap();
    assert_eq!(reply, Bytes::from_static(b"hello"));
    let err = a.request(b.uuid(), "fail", "").await.unwrap_err();
    assert_eq!(
        err,
        RequestError::Handler {
            code: 42,
            message: "nope".into()
        }
    );
    // No handler: answered at once (one round trip), not by the 10 s timeout.
    let t0 = Instant::now();
    let err = a.request(b.uuid(), "nobody.home", "").await.unwrap_err();
    assert_eq!(err, RequestError::NoResponders(NoResponders::NoHandler));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // Requests both ways at once (a node is client and server).
    echo(&a, "**");
    let back = b.request(a.uuid(), "any.thing", "x").await.unwrap();
    assert_eq!(back, Bytes::from_static(b"x"));
    // Layer traffic never shows up as WHISPER events.
    a.whisper(b.uuid(), vec![Bytes::from_static(b"plain")])
        .unwrap();
    let ev = wait_for(&mut eb, "plain whisper", |e| {
        matches!(e, Event::Whisper { .. })
    })
    .await;
    let Event::Whisper { content, .. } = ev else {
        unreachable!()
    };
    assert_eq!(content, vec![Bytes::from_static(b"plain")]);
    while let Ok(Some(ev)) = timeout(Duration::from_millis(50), ea.recv()).await {
        assert!(
            !matches!(ev, Event::Whisper { .. }),
            "layer traffic leaked: {ev:?}"
        );
    }
    assert_eq!(a.stats().requests_in_flight, 0);
    assert_eq!(b.stats().requests_running, 0);
}

#[tokio::test]
async fn unknown_peer_timeout_and_late_reply() {
    let ((a, _ea), (b, _eb)) = pair(port()).await;
    let err = a.request(Uuid::new_v4(), "x", "").await.unwrap_err();
    assert_eq!(err, RequestError::NoResponders(NoResponders::UnknownPeer));
    // A handler that answers after the deadline: the requester times out at its deadline, the
    // responder is told (cancelled) and its late answer is counted, not sent.
    let mut slow = b.on_request("slow").unwrap();
    let handler = tokio::spawn(async move {
        let req = slow.recv().await.unwrap();
        req.cancelled().await;
        assert!(req.is_cancelled());
        req.reply("too late");
    });
    let t0 = Instant::now();
    let err = a
        .request(b.uuid(), "slow", "")
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err, RequestError::Timeout);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    timeout(WAIT, handler).await.unwrap().unwrap();
    assert_eq!(b.stats().requests.replies_after_end, 1);
    assert_eq!(a.stats().requests.timeouts, 1);
}

#[tokio::test]
async fn dropping_the_future_cancels_at_the_responder() {
    let ((a, _ea), (b, _eb)) = pair(port()).await;
    let mut slow = b.on_request("slow").unwrap();
    let fut = a.request(b.uuid(), "slow", "").send();
    let req = timeout(WAIT, slow.recv()).await.unwrap().unwrap();
    assert!(!req.is_cancelled());
    drop(fut);
    timeout(WAIT, req.cancelled()).await.unwrap();
    assert_eq!(a.stats().requests_in_flight, 0);
    // The responder's slot is freed with the cancellation.
    let deadline = Instant::now() + WAIT;
    while b.stats().requests_running != 0 {
        assert!(
            Instant::now() < deadline,
            "responder kept the cancelled request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn replier_killed_mid_request_fails_with_peer_left_long_before_timeout() {
    let p = port();
    let (a, mut ea) = builder("req", p)
        .expired_timeout(Duration::from_secs(2))
        .evasive_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("rep", p).start().await.unwrap();
    wait_for(&mut ea, "enter", |e| loopback::is_enter(e, b.uuid())).await;
    let mut never = b.on_request("hang").unwrap();
    let fut = tokio::spawn({
        let a = a.clone();
        let target = b.uuid();
        async move {
            a.request(target, "hang", "")
                .timeout(Duration::from_secs(60))
                .await
        }
    });
    let _held = timeout(WAIT, never.recv()).await.unwrap().unwrap();
    let t0 = Instant::now();
    b.abort().await; // a crash: no leave beacon, no GOODBYE
    let r = timeout(WAIT, fut).await.unwrap().unwrap();
    assert_eq!(r, Err(RequestError::PeerLeft));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    wait_for(&mut ea, "exit", |e| is_exit(e, b.uuid())).await;
}

#[tokio::test]
async fn a_stopped_node_ends_its_requests_and_handlers() {
    let ((a, _ea), (b, _eb)) = pair(port()).await;
    let mut held = b.on_request("hold").unwrap();
    let pending = tokio::spawn({
        let a = a.clone();
        let target = b.uuid();
        async move { a.request(target, "hold", "").await }
    });
    let req = timeout(WAIT, held.recv()).await.unwrap().unwrap();
    a.stop().await;
    assert_eq!(
        timeout(WAIT, pending).await.unwrap().unwrap(),
        Err(RequestError::Stopped)
    );
    // The responder sees the requester leave: its handler is told the answer goes nowhere.
    timeout(WAIT, req.cancelled()).await.unwrap();
    b.stop().await;
    assert!(timeout(WAIT, held.recv()).await.unwrap().is_none());
    assert!(matches!(
        a.request(b.uuid(), "x", "").await,
        Err(RequestError::Stopped)
    ));
}

#[tokio::test]
async fn limits_and_bad_input() {
    let p = port();
    let (a, mut ea) = builder("a", p)
        .max_requests_in_flight(10, 2)
        .max_request_payload(1024)
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("b", p)
        .max_running_requests(1)
        .start()
        .await
        .unwrap();
    wait_for(&mut ea, "enter", |e| loopback::is_enter(e, b.uuid())).await;
    let mut held = b.on_request("hold").unwrap();
    let r1 = a.request(b.uuid(), "hold", "").send();
    let _first = timeout(WAIT, held.recv()).await.unwrap().unwrap();
    // The responder runs one at a time: the second is refused without a handler running.
    let r2 = a.request(b.uuid(), "hold", "").await;
    assert!(matches!(r2, Err(RequestError::Overloaded(_))), "{r2:?}");
    let _r3 = a.request(b.uuid(), "hold", "").send();
    let r4 = a.request(b.uuid(), "hold", "").await;
    assert!(matches!(r4, Err(RequestError::Overloaded(_))), "{r4:?}");
    let big = a.request(b.uuid(), "hold", vec![0u8; 2048]).await;
    assert_eq!(big, Err(RequestError::PayloadTooLarge));
    assert!(matches!(
        a.request(b.uuid(), "bad..name", "").await,
        Err(RequestError::InvalidName(_))
    ));
    assert!(matches!(
        a.on_request("a*b"),
        Err(zmesh::Error::InvalidName(_))
    ));
    assert!(matches!(
        a.whisper(b.uuid(), vec![Bytes::from_static(b"\xffZM\x01x")]),
        Err(zmesh::Error::ReservedPrefix)
    ));
    drop(r1);
}

#[tokio::test]
async fn ticks_reach_every_matching_handler() {
    let ((a, _ea), (b, _eb)) = pair(port()).await;
    let mut all = b.on_tick("**").unwrap();
    let mut one = b.on_tick("t.one").unwrap();
    a.tick(b.uuid(), "t.one", "1").unwrap();
    a.tick(b.uuid(), "t.two", "2").unwrap();
    let got: Vec<_> = vec![
        timeout(WAIT, all.recv()).await.unwrap().unwrap(),
        timeout(WAIT, all.recv()).await.unwrap().unwrap(),
    ];
    assert_eq!(got[0].event, "t.one");
    assert_eq!(got[1].payload, Bytes::from_static(b"2"));
    let t = timeout(WAIT, one.recv()).await.unwrap().unwrap();
    assert_eq!((t.peer, t.event.as_str()), (a.uuid(), "t.one"));
    assert!(matches!(
        a.tick(Uuid::new_v4(), "t.one", ""),
        Err(zmesh::Error::Request(RequestError::NoResponders(
            NoResponders::UnknownPeer
        )))
    ));
}

/// 100,000 requests in flight at once against a responder that answers them all only after
/// they were all sent: every one completes, and afterwards nothing is left pending anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_requests_in_flight() {
    const N: usize = 100_000;
    let p = port();
    let (a, mut ea) = builder("a", p)
        .max_requests_in_flight(N, N)
        .start()
        .await
        .unwrap();
    let (b, _eb) = builder("b", p)
        .max_running_requests(N)
        .start()
        .await
        .unwrap();
    wait_for(&mut ea, "enter", |e| loopback::is_enter(e, b.uuid())).await;
    let mut requests = b.on_request("n").unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::with_capacity(N);
        while held.len() < N {
            held.push(requests.recv().await.unwrap());
        }
        for req in held {
            let p = req.payload().clone();
            req.reply(p);
        }
    });
    let futs: Vec<_> = (0..N)
        .map(|i| {
            a.request(b.uuid(), "n", (i as u64).to_be_bytes().to_vec())
                .timeout(Duration::from_secs(120))
                .send()
        })
        .collect();
    assert_eq!(a.stats().requests_in_flight, N);
    let results = timeout(Duration::from_secs(120), async {
        let mut out = Vec::with_capacity(N);
        for f in futs {
            out.push(f.await);
        }
        out
    })
    .await
    .unwrap();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), Bytes::from((i as u64).to_be_bytes().to_vec()));
    }
    server.await.unwrap();
    assert_eq!(a.stats().requests_in_flight, 0);
    assert_eq!(b.stats().requests_running, 0);
    assert_eq!(a.stats().requests.replies_received, N as u64);
}
