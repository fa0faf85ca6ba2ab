//! The blocking facade (`zmesh::blocking`) from plain threads, no async runtime in the test: two
//! nodes on loopback discover each other, join, whisper, shout, answer a request, and stop.

use std::time::{Duration, Instant};

use zmesh::blocking::{Events, Node, RecvTimeoutError};
use zmesh::{Event, Uuid};

mod loopback;
use loopback::{builder, port, WAIT};

/// The first event matching `f`, by blocking with a deadline.
fn wait(events: &mut Events, what: &str, mut f: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if f(&ev) => return ev,
            Ok(_) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn enter_of(who: Uuid) -> impl FnMut(&Event) -> bool {
    move |e| matches!(e, Event::Enter { peer, .. } if *peer == who)
}

#[test]
fn two_blocking_nodes_talk_from_plain_threads() {
    let p = port();
    let (a, mut ea) = Node::start(builder("alice", p)).unwrap();
    let (b, mut eb) = Node::start(builder("bob", p)).unwrap();
    wait(&mut ea, "a sees b", enter_of(b.uuid()));
    wait(&mut eb, "b sees a", enter_of(a.uuid()));
    assert_eq!(a.peers(), vec![b.uuid()]);
    assert_eq!(a.peer_name(b.uuid()).as_deref(), Some("bob"));

    // Bob answers requests on a thread of his own (async handle reached through the facade).
    let mut requests = b.as_async().on_request("greet").unwrap();
    let (bb, ub) = (b.clone(), b.uuid());
    let server = std::thread::spawn(move || {
        // The facade has no request stream of its own: drive it with a one-off runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Some(req) = requests.recv().await {
                let who = String::from_utf8_lossy(req.payload()).into_owned();
                req.reply(format!("hello, {who}"));
            }
        });
        drop(bb);
    });
    let reply = a
        .request(ub, "greet", "alice", Duration::from_secs(5))
        .unwrap();
    assert_eq!(&reply[..], b"hello, alice");
    server.join().unwrap();

    // Whisper from another thread; receive on this one.
    let a2 = a.clone();
    std::thread::spawn(move || a2.whisper(ub, vec!["psst".into()]).unwrap())
        .join()
        .unwrap();
    let w = wait(&mut eb, "whisper", |e| matches!(e, Event::Whisper { .. }));
    let Event::Whisper { content, name, .. } = w else {
        unreachable!()
    };
    assert_eq!(name, "alice");
    assert_eq!(content, vec![bytes::Bytes::from_static(b"psst")]);

    // Groups and shout, with whisper_wait on the way.
    b.join("CHAT").unwrap();
    wait(
        &mut ea,
        "join",
        |e| matches!(e, Event::Join { group, .. } if group == "CHAT"),
    );
    assert_eq!(a.shout("CHAT", vec!["all".into()]).unwrap(), 1);
    wait(&mut eb, "shout", |e| matches!(e, Event::Shout { .. }));
    a.whisper_wait(ub, vec!["waited".into()]).unwrap();
    wait(
        &mut eb,
        "whisper_wait",
        |e| matches!(e, Event::Whisper { content, .. } if content[0] == "waited"),
    );

    // Nothing pending: try_recv is empty and a short recv_timeout times out.
    while eb.try_recv().is_some() {}
    assert_eq!(
        eb.recv_timeout(Duration::from_millis(50)).unwrap_err(),
        RecvTimeoutError::Timeout
    );

    // A polite stop: the other side sees EXIT at once, the stream ends after STOP.
    let t = Instant::now();
    b.stop();
    wait(
        &mut ea,
        "exit",
        |e| matches!(e, Event::Exit { peer, .. } if *peer == ub),
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    wait(&mut eb, "stop", |e| matches!(e, Event::Stop { .. }));
    assert_eq!(
        eb.recv_timeout(WAIT).unwrap_err(),
        RecvTimeoutError::Stopped
    );
    assert!(b.whisper(a.uuid(), vec!["late".into()]).is_err());
}

#[test]
fn dropping_the_last_handles_stops_politely() {
    let p = port();
    let (a, mut ea) = Node::start(builder("alice", p)).unwrap();
    let (b, mut eb) = Node::start(builder("bob", p)).unwrap();
    wait(&mut ea, "a sees b", enter_of(b.uuid()));
    wait(&mut eb, "b sees a", enter_of(a.uuid()));
    let ub = b.uuid();
    drop(b);
    drop(eb);
    let t = Instant::now();
    wait(
        &mut ea,
        "exit",
        |e| matches!(e, Event::Exit { peer, .. } if *peer == ub),
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "EXIT after {:?}: not polite",
        t.elapsed()
    );
    a.stop();
}
