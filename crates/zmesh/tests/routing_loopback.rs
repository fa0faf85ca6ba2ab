//! Routing through real sockets on loopback: every target kind (peer, any, all, group, ticks
//! to any/all/name), every filter operator and the closure, options changed at run time and
//! the peer events, every way a request to all ends, and the fairness of `any` (10,000 requests
//! over 5 equal responders; a responder 10x slower gets proportionally fewer).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use zmesh::{Filter, GatherEnd, NoResponders, Node, PeerEvent, RequestError, Target, Uuid};

mod loopback;
use loopback::{builder, port, WAIT};

/// Starts a node on `port` with `options`.
async fn node(name: &str, port: u16, options: &[(&str, &str)]) -> Node {
    let mut b = builder(name, port);
    for (k, v) in options {
        b = b.option(*k, *v);
    }
    let (node, mut events) = b.start().await.unwrap();
    // Nobody reads these events: drain them so the queue never fills.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    node
}

/// Answers `pattern` with the node's name after `delay`.
fn serve(node: &Node, pattern: &str, delay: Duration) {
    let mut requests = node.on_request(pattern).unwrap();
    let name = Bytes::from(node.name().to_owned());
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let name = name.clone();
            if delay.is_zero() {
                req.reply(name);
            } else {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    req.reply(name);
                });
            }
        }
    });
}

/// Waits until `node` sees `n` responders for `event` (their states arrived).
async fn wait_responders(node: &Node, event: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while node.responders(&Filter::Everyone, event).len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} responders for {event} never showed up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names of the peers answering a request to all matching `filter`, and how it ended.
async fn all_names(r: &Node, filter: Filter) -> (BTreeSet<String>, Option<GatherEnd>) {
    let mut replies = r
        .request_all(filter, "read.x", "")
        .max_wait(Duration::from_secs(5))
        .send();
    let mut names = BTreeSet::new();
    while let Some((_, outcome)) = replies.recv().await {
        names.insert(String::from_utf8(outcome.unwrap().to_vec()).unwrap());
    }
    (names, replies.end())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_target_kind_and_every_filter_operator() {
    let p = port();
    let r = node("req", p, &[]).await;
    let s1 = node(
        "s1",
        p,
        &[("role", "sensor"), ("zone", "eu-west"), ("load", "10")],
    )
    .await;
    let s2 = node(
        "s2",
        p,
        &[("role", "sensor"), ("zone", "us-east"), ("load", "70")],
    )
    .await;
    let (s3, mut e3) = builder("s3", p)
        .option("role", "db")
        .option("zone", "eu-north")
        .option("load", "30")
        .header("X-HW", "gpu")
        .start()
        .await
        .unwrap();
    tokio::spawn(async move { while e3.recv().await.is_some() {} });
    for s in [&s1, &s2, &s3] {
        serve(s, "read.*", Duration::ZERO);
    }
    s1.join("G").unwrap();
    wait_responders(&r, "read.x", 3).await;
    // Group membership arrives with JOIN; wait for it.
    let deadline = Instant::now() + WAIT;
    while r.peers_matching(&Filter::group("G")).is_empty() {
        assert!(Instant::now() < deadline, "JOIN never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load_over_20 = Filter::predicate(|p| {
        p.attr("load")
            .and_then(|l| l.parse::<f64>().ok())
            .is_some_and(|l| l > 20.0)
    });
    let cases: Vec<(Filter, &[&str])> = vec![
        ("*".parse().unwrap(), &["s1", "s2", "s3"]),
        ("role=sensor".parse().unwrap(), &["s1", "s2"]),
        ("role!=sensor".parse().unwrap(), &["s3"]),
        ("X-HW".parse().unwrap(), &["s3"]),
        ("zone^=eu-".parse().unwrap(), &["s1", "s3"]),
        ("zone~east$".parse().unwrap(), &["s2"]),
        ("role=db|sensor".parse().unwrap(), &["s1", "s2", "s3"]),
        ("load<50".parse().unwrap(), &["s1", "s3"]),
        ("load>=70".parse().unwrap(), &["s2"]),
        ("load>10,load<=30".parse().unwrap(), &["s3"]),
        ("role=sensor,zone^=eu-".parse().unwrap(), &["s1"]),
        ("role=db;load>60".parse().unwrap(), &["s2", "s3"]),
        ("@G".parse().unwrap(), &["s1"]),
        (load_over_20, &["s2", "s3"]),
        ("nokey=1".parse().unwrap(), &[]),
        ("nokey!=1".parse().unwrap(), &[]),
    ];
    for (filter, want) in cases {
        let (names, end) = all_names(&r, filter.clone()).await;
        assert_eq!(names, set(want), "all:{filter}");
        let want_end = if want.is_empty() {
            GatherEnd::NoResponders
        } else {
            GatherEnd::AllDone
        };
        assert_eq!(end, Some(want_end), "all:{filter}");
        let any = r.request_any(filter.clone(), "read.x", "").await;
        match any {
            Ok(name) => {
                let name = String::from_utf8(name.to_vec()).unwrap();
                assert!(
                    want.contains(&name.as_str()),
                    "any:{filter} answered by {name}"
                );
            }
            Err(e) => {
                assert!(want.is_empty(), "any:{filter}: {e}");
                assert_eq!(e, RequestError::NoResponders(NoResponders::NoMatch));
            }
        }
    }
    // The group target.
    let mut g = r.request_group("G", "read.y", "").send();
    assert_eq!(g.peers(), &[s1.uuid()]);
    assert!(g.recv().await.unwrap().1.is_ok());
    assert!(g.recv().await.is_none());
    assert_eq!(g.end(), Some(GatherEnd::AllDone));
    // One peer by UUID; the future says which peer it went to.
    let fut = r.request(s2.uuid(), "read.z", "").send();
    assert_eq!(fut.peer(), Some(s2.uuid()));
    assert_eq!(fut.await.unwrap(), Bytes::from_static(b"s2"));
    // Nobody serves it: NoMatch at once, not by timeout.
    let t0 = Instant::now();
    let e = r
        .request_any(Filter::Everyone, "write.x", "")
        .await
        .unwrap_err();
    assert_eq!(e, RequestError::NoResponders(NoResponders::NoMatch));
    assert!(t0.elapsed() < Duration::from_millis(500));

    // Ticks: to any (rotating), to all, to a name.
    let mut ticks = Vec::new();
    for s in [&s1, &s2, &s3] {
        ticks.push(s.on_tick("note.*").unwrap());
    }
    let deadline = Instant::now() + WAIT;
    while r
        .tick_all(&Filter::Everyone, "note.probe", "")
        .map_or(0, |v| v.len())
        < 3
    {
        assert!(Instant::now() < deadline, "tick handlers never advertised");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Forget the probes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for t in &mut ticks {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), t.recv()).await {}
    }
    let sensors: Filter = "role=sensor".parse().unwrap();
    let picked: Vec<Uuid> = (0..4)
        .map(|_| r.tick_any(&sensors, "note.a", "x").unwrap())
        .collect();
    let mut two = vec![s1.uuid(), s2.uuid()];
    two.sort();
    assert_eq!(picked, [two.clone(), two].concat(), "ticks to any rotate");
    let sent = r
        .tick_to(&"all".parse::<Target>().unwrap(), "note.b", "y")
        .unwrap();
    assert_eq!(sent.len(), 3);
    let to_name = r
        .tick_to(&Target::Name("s3".into()), "note.c", "z")
        .unwrap();
    assert_eq!(to_name, vec![s3.uuid()]);
    let want = [(0, 3), (1, 3), (2, 2)];
    for (i, n) in want {
        for _ in 0..n {
            let t = tokio::time::timeout(WAIT, ticks[i].recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(t.peer, r.uuid());
        }
    }
    assert!(r
        .tick_any(&"role=none".parse().unwrap(), "note.a", "")
        .is_err());
}

#[tokio::test]
async fn options_changed_at_run_time_reach_peers_and_steer_routing() {
    let p = port();
    let r = node("req", p, &[]).await;
    let mut peer_events = r.peer_events().unwrap();
    let a = node("a", p, &[("role", "a")]).await;
    let b = node("b", p, &[("role", "b")]).await;
    serve(&a, "**", Duration::ZERO);
    serve(&b, "**", Duration::ZERO);
    wait_responders(&r, "x", 2).await;
    let mut joined = BTreeMap::new();
    while joined.len() < 2 {
        match tokio::time::timeout(WAIT, peer_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerEvent::Joined { peer, options } => {
                joined.insert(peer, options["role"].clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        joined,
        BTreeMap::from([(a.uuid(), "a".into()), (b.uuid(), "b".into())])
    );
    let role_a: Filter = "role=a".parse().unwrap();
    assert_eq!(r.request_any(role_a.clone(), "x", "").await.unwrap(), "a");
    assert_eq!(a.options()["role"], "a");
    // Swap the roles at run time.
    let t0 = Instant::now();
    a.set_option("role", "b").unwrap();
    b.set_option("role", "a").unwrap();
    let mut changed = BTreeMap::new();
    while changed.len() < 2 {
        match tokio::time::timeout(WAIT, peer_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerEvent::OptionsChanged { peer, options } => {
                changed.insert(peer, options["role"].clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // One trip on loopback: far below a beacon interval.
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        changed,
        BTreeMap::from([(a.uuid(), "b".into()), (b.uuid(), "a".into())])
    );
    assert_eq!(r.peer_options(b.uuid()).unwrap()["role"], "a");
    for _ in 0..4 {
        assert_eq!(r.request_any(role_a.clone(), "x", "").await.unwrap(), "b");
    }
    assert!(a.remove_option("role").unwrap());
    assert!(!a.remove_option("role").unwrap());
    assert!(a.set_option("bad key", "v").is_err());
    // A peer that leaves: Left.
    b.stop().await;
    loop {
        match tokio::time::timeout(WAIT, peer_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerEvent::Left { peer } => {
                assert_eq!(peer, b.uuid());
                break;
            }
            PeerEvent::OptionsChanged { peer, .. } => assert_eq!(peer, a.uuid()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let e = r.request_any(role_a, "x", "").await.unwrap_err();
    assert_eq!(e, RequestError::NoResponders(NoResponders::NoMatch));
    assert!(r.stats().control.states_received >= 4);
}

#[tokio::test]
async fn a_request_to_all_always_ends() {
    let p = port();
    let r = node("req", p, &[]).await;
    let fast = node("fast", p, &[]).await;
    let mute = node("mute", p, &[]).await;
    let leaver = node("leaver", p, &[]).await;
    serve(&fast, "q.*", Duration::ZERO);
    // Handlers that hold the request and never answer.
    for n in [&mute, &leaver] {
        let mut reqs = n.on_request("q.*").unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(req) = reqs.recv().await {
                held.push(req);
            }
        });
    }
    wait_responders(&r, "q.x", 3).await;

    // Stall: the fast answer, then 300 ms of silence.
    let t0 = Instant::now();
    let mut all = r
        .request_all(Filter::Everyone, "q.x", "")
        .max_wait(Duration::from_secs(10))
        .stall(Duration::from_millis(300))
        .send();
    assert_eq!(all.recv().await.unwrap().1.unwrap(), "fast");
    assert!(all.recv().await.is_none());
    assert_eq!(all.end(), Some(GatherEnd::Stall));
    assert_eq!(all.unanswered().len(), 2);
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Max answers.
    let mut all = r
        .request_all(Filter::Everyone, "q.x", "")
        .max_answers(1)
        .send();
    assert!(all.recv().await.unwrap().1.is_ok());
    assert!(all.recv().await.is_none());
    assert_eq!(all.end(), Some(GatherEnd::MaxAnswers));

    // Max wait.
    let t0 = Instant::now();
    let mut all = r
        .request_all(Filter::Everyone, "q.x", "")
        .max_wait(Duration::from_millis(400))
        .send();
    let mut items = 0;
    while all.recv().await.is_some() {
        items += 1;
    }
    assert_eq!(items, 1);
    assert_eq!(all.end(), Some(GatherEnd::MaxWait));
    assert!(t0.elapsed() >= Duration::from_millis(400));

    // A peer that leaves yields PeerLeft at once, not a hang.
    let mut all = r
        .request_all(Filter::Everyone, "q.x", "")
        .max_wait(Duration::from_secs(20))
        .stall(Duration::from_secs(15))
        .send();
    let first = all.recv().await.unwrap();
    assert_eq!(first.0, fast.uuid());
    let t0 = Instant::now();
    leaver.stop().await;
    let (peer, outcome) = tokio::time::timeout(WAIT, all.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (peer, outcome),
        (leaver.uuid(), Err(RequestError::PeerLeft))
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Dropping the stream cancels the rest: the mute peer's request is withdrawn.
    drop(all);
    let deadline = Instant::now() + WAIT;
    while r.stats().requests_in_flight + r.stats().gathers_open > 0 {
        assert!(Instant::now() < deadline, "{:?}", r.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` requests to any, at most `window` in flight; returns the count per answering name.
async fn spread(r: &Node, n: usize, window: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut inflight = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < n || !inflight.is_empty() {
        while sent < n && inflight.len() < window {
            let fut = r.request_any(Filter::Everyone, "work.x", "").send();
            inflight.spawn(fut);
            sent += 1;
        }
        let reply = inflight.join_next().await.unwrap().unwrap().unwrap();
        *counts
            .entry(String::from_utf8(reply.to_vec()).unwrap())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_is_fair_over_equal_responders_and_spares_a_slow_one() {
    let p = port();
    let r = node("req", p, &[]).await;
    let mut servers = Vec::new();
    for i in 0..5 {
        let s = node(&format!("w{i}"), p, &[]).await;
        serve(&s, "work.*", Duration::ZERO);
        servers.push(s);
    }
    wait_responders(&r, "work.x", 5).await;
    // One request at a time: the outstanding counts are all equal, the rotation decides,
    // exactly 2,000 each (the 1% bound of the issue, met exactly: a count, not a chance).
    let counts = spread(&r, 10_000, 1).await;
    eprintln!("10,000 any, one at a time, over 5 equal responders: {counts:?}");
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|c| *c == 2000), "{counts:?}");
    // Pipelined (64 in flight): least outstanding follows each responder's actual speed, so
    // scheduling noise shows; still within a few percent of the mean.
    let counts = spread(&r, 10_000, 64).await;
    eprintln!("10,000 any, 64 in flight, over 5 equal responders: {counts:?}");
    let mean = 10_000.0 / 5.0;
    assert_eq!(counts.len(), 5, "{counts:?}");
    for (name, c) in &counts {
        let off = (*c as f64 - mean).abs() / mean;
        assert!(
            off <= 0.10,
            "{name} got {c}, {:.2}% off the mean: {counts:?}",
            off * 100.0
        );
    }

    // One responder 10x slower than the others: it gets proportionally fewer.
    for s in servers.drain(..) {
        s.stop().await;
    }
    let p = port();
    let r = node("req2", p, &[]).await;
    let mut servers = Vec::new();
    for i in 0..5 {
        let s = node(&format!("v{i}"), p, &[]).await;
        let delay = if i == 0 { 20 } else { 2 };
        serve(&s, "work.*", Duration::from_millis(delay));
        servers.push(s);
    }
    wait_responders(&r, "work.x", 5).await;
    let counts = spread(&r, 2_000, 20).await;
    eprintln!("2,000 any, v0 10x slower: {counts:?}");
    let slow = counts.get("v0").copied().unwrap_or(0) as f64;
    let fast = (1..5)
        .map(|i| counts.get(&format!("v{i}")).copied().unwrap_or(0))
        .sum::<usize>() as f64
        / 4.0;
    assert!(
        slow > 0.0 && slow < fast / 3.0,
        "the slow responder got {slow}, the fast ones {fast} on average: {counts:?}"
    );
}
