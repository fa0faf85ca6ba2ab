//! Scenario 14: the same-host fast path, WHISPER over `ipc://` against TCP loopback between the
//! same two processes, rounds interleaved.

use crate::{link, median, reap, report_round_as, Args, Percentiles, Row};

/// Scenario 14: the same two-process WHISPER link over Unix sockets (same-host fast path) and
/// over TCP loopback, rounds interleaved; each run checks which transport its node used.
pub async fn run(args: &Args, port: u16) -> Vec<Row> {
    let mut ipc = Vec::new();
    let mut tcp = Vec::new();
    for round in 0..args.rounds {
        for on in [true, false] {
            let (l, c) = link::node_driver(args, port, on).await;
            let (via_ipc, via_tcp) = l.connects();
            assert_eq!(
                (via_ipc, via_tcp),
                if on { (1, 0) } else { (0, 1) },
                "scenario 14: the node did not use the transport it was meant to"
            );
            let r = link::drive_node(l, args, false, false).await;
            reap(c);
            let label = if on { "ipc" } else { "tcp" };
            report_round_as("14", round, label, &r);
            if on {
                ipc.push(r);
            } else {
                tcp.push(r);
            }
        }
    }
    let rate = |v: &[link::LinkResult]| median(v.iter().map(|r| r.msgs_per_s[0]).collect());
    let lat = |v: &[link::LinkResult], f: fn(&Percentiles) -> f64| {
        median(v.iter().map(|r| f(&r.rtt)).collect())
    };
    let per_round = |f: &dyn Fn(&link::LinkResult) -> f64| {
        median(ipc.iter().zip(&tcp).map(|(a, b)| f(a) / f(b)).collect())
    };
    let mut rows = vec![
        Row::new(
            14,
            "same host: WHISPER 64 B msg/s over ipc",
            rate(&ipc),
            "same nodes over TCP loopback",
            Some(rate(&tcp)),
        ),
        Row::new(
            14,
            "same host: 64 B msg/s ipc/TCP ratio of each round, median",
            per_round(&|r| r.msgs_per_s[0]),
            "-",
            None,
        ),
    ];
    type Pick = fn(&Percentiles) -> f64;
    let picks: [(&str, Pick); 2] = [("median", |p| p.p50), ("p99", |p| p.p99)];
    for (name, f) in picks {
        rows.push(Row::new(
            14,
            format!("same host: round trip {name} us over ipc (64 B)"),
            lat(&ipc, f),
            "same nodes over TCP loopback",
            Some(lat(&tcp, f)),
        ));
    }
    rows.push(Row::new(
        14,
        "same host: round trip median ipc/TCP ratio of each round, median",
        per_round(&|r| r.rtt.p50),
        "-",
        None,
    ));
    rows
}
