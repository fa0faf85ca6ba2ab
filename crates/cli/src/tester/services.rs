//! `zmesh tester --services`: a chaos run of named services on real sockets (loopback), with a
//! ledger of every call.
//!
//! * **Cast.** `--brokers N` broker processes (`zmesh broker`, fixed endpoints on 127.0.0.1,
//!   each configured with the others), `--workers N` worker processes (`zmesh worker --echo`,
//!   spread over two services, each configured with the brokers only), and `--clients N`
//!   client nodes in this process (configured with one broker each: they learn the others).
//!   Everybody beacons on a port of its own, so callers and workers meet **only through the
//!   brokers**: every call goes client → broker → worker → broker → client.
//! * **Chaos.** Every 0.5–2 s a random broker or worker process is killed with SIGKILL and
//!   restarted 0.3–2 s later (a broker at the same endpoint, so with the same UUID; a worker as
//!   a new node). At least one broker is always up.
//! * **Load.** Every client keeps 4 calls in flight (a random service, a unique payload,
//!   5 retries, 1 s per try, 10 s in all) for `--duration`.
//! * **Ledger.** Calls made, answered (each reply must be the echo of its own payload), failed
//!   with their reason, duplicates absorbed (reported by the workers alive at the end when
//!   they stop politely; a killed worker's count dies with it), calls processed twice by one worker process (every worker prints each call it hands
//!   to its application: must be 0), calls lost (made but never ended: must be 0), latency
//!   percentiles. The run exits 1 on any violation (a wrong answer, a call processed twice, a
//!   lost call, no answer at all).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zmesh::{CallError, Node};

use super::rng::Rng;
use super::TesterArgs;
use crate::output::print_json;

/// Services the workers offer (alternately).
const SERVICES: [&str; 2] = ["svc.a", "svc.b"];

/// What every call's end and every worker's call adds to.
#[derive(Default)]
struct Ledger {
    made: u64,
    answered: u64,
    wrong_answers: u64,
    failed: BTreeMap<&'static str, u64>,
    latencies_us: Vec<u64>,
    retried: u64,
    /// (worker process incarnation, caller, message id) -> times handed to the application.
    processed: HashMap<(u64, String, u64), u32>,
    processed_twice: u64,
    /// Duplicates absorbed, as reported by the workers stopped politely at the end.
    duplicates: u64,
}

/// One broker or worker process slot.
struct Proc {
    kind: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    restart_at: Option<Instant>,
    kills: u64,
}

fn exe() -> std::path::PathBuf {
    std::env::current_exe().expect("own executable")
}

fn spawn(p: &mut Proc, incarnation: u64, ledger: &Arc<Mutex<Ledger>>) {
    let mut cmd = Command::new(exe());
    cmd.args(&p.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tester: cannot start {}: {e}", p.kind);
            return;
        }
    };
    if let Some(out) = child.stdout.take() {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["stopped"].is_string() {
                    let d = v["duplicates"].as_u64().unwrap_or(0);
                    ledger.lock().unwrap().duplicates += d;
                }
                if let (Some(caller), Some(id)) = (v["caller"].as_str(), v["id"].as_u64()) {
                    let mut l = ledger.lock().unwrap();
                    let n = l
                        .processed
                        .entry((incarnation, caller.to_owned(), id))
                        .or_insert(0);
                    *n += 1;
                    if *n == 2 {
                        l.processed_twice += 1;
                    }
                }
            }
        });
    }
    p.child = Some(child);
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the services chaos test (module docs); returns the exit status.
pub async fn run(json_out: bool, args: &TesterArgs) -> Result<i32, zmesh::Error> {
    if args.brokers == 0 || args.svc_workers == 0 || args.clients == 0 {
        return Err(zmesh::Error::Config(
            "--brokers, --workers and --clients must be > 0".into(),
        ));
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = Rng::new(seed, 7);
    let base_port = crate::demo::random_port();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let endpoints: Vec<String> = (0..args.brokers)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(0);
            format!("tcp://127.0.0.1:{port}")
        })
        .collect();
    // Global flags, the subcommand, then its node flags.
    let cmd = |port: u16, sub: &str| -> Vec<String> {
        [
            "--iface",
            "lo",
            "--json",
            "--port",
            &port.to_string(),
            sub,
            "--interval",
            "200",
            "--evasive",
            "1000",
            "--expired",
            "3000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut procs: Vec<Proc> = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let mut a = cmd(base_port.wrapping_add(i as u16), "broker");
        a.extend(["--bind".into(), e.clone(), "--drain".into(), "1s".into()]);
        for other in endpoints.iter().filter(|o| *o != e) {
            a.extend(["--peer-broker".into(), other.clone()]);
        }
        procs.push(Proc {
            kind: "broker",
            args: a,
            child: None,
            restart_at: None,
            kills: 0,
        });
    }
    for i in 0..args.svc_workers {
        let mut a = cmd(base_port.wrapping_add(100 + i as u16), "worker");
        for e in &endpoints {
            a.extend(["--broker".into(), e.clone()]);
        }
        a.extend([
            SERVICES[i % SERVICES.len()].to_owned(),
            "--echo".into(),
            "--delay".into(),
            format!("{}ms", rng.below(30)),
        ]);
        procs.push(Proc {
            kind: "worker",
            args: a,
            child: None,
            restart_at: None,
            kills: 0,
        });
    }
    let mut incarnation = 0u64;
    for p in &mut procs {
        incarnation += 1;
        spawn(p, incarnation, &ledger);
    }
    // Clients: in this process, each configured with one broker.
    let mut clients: Vec<Node> = Vec::new();
    for i in 0..args.clients {
        let b = Node::builder()
            .name(format!("client-{i}"))
            .interface("lo".parse().expect("lo"))
            .beacon_port(base_port.wrapping_add(200 + i as u16))
            .beacon_interval(Duration::from_millis(200))
            .evasive_timeout(Duration::from_millis(1000))
            .expired_timeout(Duration::from_millis(3000))
            .brokers(std::slice::from_ref(&endpoints[i % endpoints.len()]))?;
        let (node, mut events) = b.start().await?;
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        clients.push(node);
    }
    let started = Instant::now();
    let stop_calls = started + args.duration;
    // Load.
    let mut loads = Vec::new();
    for (ci, node) in clients.iter().enumerate() {
        for lane in 0..4u64 {
            let node = node.clone();
            let ledger = ledger.clone();
            loads.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop_calls {
                    n += 1;
                    let service = SERVICES[((n + lane) % 2) as usize];
                    let payload = format!("c{ci}-l{lane}-{n}");
                    ledger.lock().unwrap().made += 1;
                    let r = node
                        .call(service, payload.clone())
                        .retries(5)
                        .per_try(Duration::from_secs(1))
                        .timeout(Duration::from_secs(10))
                        .await;
                    let failed = {
                        let mut l = ledger.lock().unwrap();
                        match r {
                            Ok(reply) => {
                                l.answered += 1;
                                if reply.payload != payload.as_bytes() {
                                    l.wrong_answers += 1;
                                }
                                l.latencies_us.push(reply.info.latency.as_micros() as u64);
                                if reply.info.tries > 1 {
                                    l.retried += 1;
                                }
                                false
                            }
                            Err(f) => {
                                let why = match f.error {
                                    CallError::Timeout => "timeout",
                                    CallError::NoService => "no_service",
                                    CallError::WorkerLost => "worker_lost",
                                    CallError::Overloaded(_) => "overloaded",
                                    CallError::Handler { .. } => "handler_error",
                                    _ => "other",
                                };
                                *l.failed.entry(why).or_insert(0) += 1;
                                true
                            }
                        }
                    };
                    if failed {
                        // Nobody there: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
    }
    // Chaos.
    let mut next_kill = Instant::now() + Duration::from_secs(2);
    let mut next_progress = Instant::now() + Duration::from_secs(args.progress.max(1));
    while Instant::now() < stop_calls {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        for p in procs.iter_mut() {
            if p.restart_at.is_some_and(|t| t <= now) {
                p.restart_at = None;
                incarnation += 1;
                spawn(p, incarnation, &ledger);
            }
        }
        if now >= next_kill {
            next_kill = now + rng.between(Duration::from_millis(500), Duration::from_secs(2));
            let i = rng.below(procs.len() as u64) as usize;
            let brokers_up = procs
                .iter()
                .filter(|p| p.kind == "broker" && p.child.is_some())
                .count();
            let p = &mut procs[i];
            if p.child.is_some() && !(p.kind == "broker" && brokers_up <= 1) {
                if let Some(mut c) = p.child.take() {
                    // SIGKILL: no goodbye, no drain.
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                }
                p.kills += 1;
                p.restart_at =
                    Some(now + rng.between(Duration::from_millis(300), Duration::from_secs(2)));
            }
        }
        if args.progress > 0 && now >= next_progress {
            next_progress = now + Duration::from_secs(args.progress);
            let l = ledger.lock().unwrap();
            eprintln!(
                "tester --services: {:>5.1}s made {} answered {} failed {} processed twice {}",
                started.elapsed().as_secs_f64(),
                l.made,
                l.answered,
                l.failed.values().sum::<u64>(),
                l.processed_twice
            );
        }
    }
    // Everything dead comes back, then the calls in flight end (each within its 10 s).
    for p in procs.iter_mut() {
        if p.child.is_none() {
            incarnation += 1;
            spawn(p, incarnation, &ledger);
        }
    }
    let mut lost_tasks = 0u64;
    for t in loads {
        if tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .is_err()
        {
            lost_tasks += 1;
        }
    }
    for c in &clients {
        c.stop().await;
    }
    // Workers stop politely (SIGTERM) and report their duplicates; brokers too.
    for p in procs.iter_mut() {
        if let Some(mut c) = p.child.take() {
            if let Some(pid) = c.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
    }
    // The readers see the last lines after the exit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let l = ledger.lock().unwrap();
    let dups = l.duplicates;
    let failed: u64 = l.failed.values().sum();
    let lost = l.made - l.answered - failed;
    let mut lat = l.latencies_us.clone();
    lat.sort_unstable();
    let kills: BTreeMap<&str, u64> = procs.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p.kind).or_insert(0) += p.kills;
        m
    });
    let mut violations = Vec::new();
    if l.processed_twice > 0 {
        violations.push(format!(
            "{} calls processed twice by one worker",
            l.processed_twice
        ));
    }
    if lost > 0 || lost_tasks > 0 {
        violations.push(format!("{lost} calls lost (never ended)"));
    }
    if l.wrong_answers > 0 {
        violations.push(format!("{} wrong answers", l.wrong_answers));
    }
    if l.answered == 0 {
        violations.push("no call answered".into());
    }
    let summary = json!({
        "seed": seed,
        "duration_s": args.duration.as_secs_f64(),
        "brokers": args.brokers,
        "workers": args.svc_workers,
        "clients": args.clients,
        "kills": kills,
        "made": l.made,
        "answered": l.answered,
        "retried": l.retried,
        "failed": l.failed,
        "duplicates_absorbed": dups,
        "processed": l.processed.len(),
        "processed_twice": l.processed_twice,
        "lost": lost,
        "wrong_answers": l.wrong_answers,
        "latency_us": {
            "p50": percentile(&lat, 0.5),
            "p90": percentile(&lat, 0.9),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(0),
        },
        "violations": violations,
        "ok": violations.is_empty(),
    });
    if json_out {
        print_json(&summary);
    } else {
        println!("zmesh tester --services (seed {seed})");
        println!(
            "  calls made {}  answered {} ({} after a retry)  failed {:?}",
            l.made, l.answered, l.retried, l.failed
        );
        println!(
            "  kills {kills:?}  processed {}  processed twice {}  lost {lost}  wrong {}  duplicates absorbed {dups}",
            l.processed.len(),
            l.processed_twice,
            l.wrong_answers
        );
        println!(
            "  latency p50 {:?} p90 {:?} p99 {:?} max {:?}",
            Duration::from_micros(percentile(&lat, 0.5)),
            Duration::from_micros(percentile(&lat, 0.9)),
            Duration::from_micros(percentile(&lat, 0.99)),
            Duration::from_micros(lat.last().copied().unwrap_or(0))
        );
        if violations.is_empty() {
            println!("  OK");
        } else {
            for v in &violations {
                println!("  VIOLATION: {v}");
            }
        }
    }
    Ok(if violations.is_empty() { 0 } else { 1 })
}
