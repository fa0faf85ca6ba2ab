//! `zmesh worker`, `zmesh call`, `zmesh services`, `zmesh broker`: named services from the shell.
//!
//! Exit status of `zmesh call` (one place, also in `--help`), as `zmesh request`: 0 reply,
//! 3 timeout, 4 no worker offers the service, 5 handler error, 6 worker lost, 7 overloaded,
//! 8 payload too large, 1 any other outcome, 2 bad usage.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use zmesh::{Bytes, CallError, Event, IncomingCall, Node, NodeBuilder, Via};

use crate::output::print_json;
use crate::resolve;
use crate::signal::StopSignal;
use crate::{Cli, NodeArgs};

/// The exit statuses of `zmesh call`, for `--help`.
pub const CALL_HELP: &str = "Exit status: 0 reply, 3 timeout, 4 no worker offers the service, \
5 handler error, 6 worker lost, 7 overloaded, 8 payload too large, 1 other, 2 bad usage.";

/// Exit status for each outcome of a call.
pub fn exit_code(r: &Result<Bytes, CallError>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(CallError::Timeout) => 3,
        Err(CallError::NoService) => 4,
        Err(CallError::Handler { .. }) => 5,
        Err(CallError::WorkerLost) => 6,
        Err(CallError::Overloaded(_)) => 7,
        Err(CallError::PayloadTooLarge) => 8,
        Err(CallError::InvalidName(_)) => 2,
        Err(_) => 1,
    }
}

/// The outcome of a call as one word.
pub fn outcome_name(r: &Result<Bytes, CallError>) -> &'static str {
    match r {
        Ok(_) => "reply",
        Err(CallError::Timeout) => "timeout",
        Err(CallError::NoService) => "no_service",
        Err(CallError::Handler { .. }) => "handler_error",
        Err(CallError::WorkerLost) => "worker_lost",
        Err(CallError::Overloaded(_)) => "overloaded",
        Err(CallError::PayloadTooLarge) => "payload_too_large",
        Err(CallError::Stopped) => "stopped",
        Err(_) => "error",
    }
}

/// Broker endpoints to reach with no beacon.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// A broker to connect to, tcp://IP:PORT (secure mode: tcp://IP:PORT|Z85KEY); repeatable.
    /// Others are learned from it. With --broker, calls go through brokers only.
    #[arg(long = "broker", value_name = "ENDPOINT")]
    brokers: Vec<String>,
}

impl BrokerArgs {
    fn apply(&self, b: NodeBuilder) -> Result<NodeBuilder, zmesh::Error> {
        b.brokers(&self.brokers)
    }
}

/// `zmesh worker SERVICE (--echo | --exec CMD)`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("how").required(true).args(["echo", "exec"])))]
pub struct WorkerArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The service to offer (1-64 of A-Z a-z 0-9 - _ .).
    service: String,
    /// Answer with the call's payload.
    #[arg(long)]
    echo: bool,
    /// Answer with the stdout of `sh -c CMD`, which gets the payload on stdin; a non-zero exit
    /// status becomes a handler error (code = status, message = stderr).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Calls handled at once (the rest wait in order).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Wait this long before answering (tests, demos).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
}

/// `zmesh call SERVICE [PAYLOAD]`.
#[derive(Args, Debug)]
#[command(after_help = CALL_HELP)]
pub struct CallArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The service.
    service: String,
    /// The payload (default: empty; `-` reads stdin).
    payload: Option<String>,
    /// Total time the call may take, retries included (e.g. 500ms, 2s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Retries after the first try (same message id, flagged possible duplicate).
    #[arg(long, default_value_t = 2)]
    retries: u16,
    /// Time one try waits before a retry (default: the timeout shared among the tries).
    #[arg(long, value_parser = humantime::parse_duration)]
    per_try: Option<Duration>,
    /// How long to wait for someone offering the service to be discovered.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discover: Duration,
}

/// `zmesh services`.
#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// How long to discover, then how long to wait for stats answers.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

/// `zmesh broker --bind ENDPOINT`.
#[derive(Args, Debug)]
pub struct BrokerCmdArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Where this broker listens and how others are configured with it: tcp://IP:PORT.
    #[arg(long, value_name = "ENDPOINT")]
    bind: String,
    /// Another broker to connect to (repeatable); more are learned and gossiped.
    #[arg(long = "peer-broker", value_name = "ENDPOINT")]
    peers: Vec<String>,
    /// On SIGINT/SIGTERM, how long to let held calls finish before stopping.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain: Duration,
}

fn drain_events(mut events: zmesh::Events) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

pub async fn call(cli: &Cli, args: &CallArgs) -> Result<i32, zmesh::Error> {
    let payload = crate::output::read_payload(args.payload.as_deref()).await?;
    resolve::require_interface(&cli.iface())?;
    let b = args.brokers.apply(cli.builder(&args.node))?;
    let (node, mut events) = b.start().await?;
    let via = if args.brokers.brokers.is_empty() {
        Via::Any
    } else {
        Via::Brokers
    };
    // Wait until someone offers the service (or --discover passes: the call then fails fast).
    crate::resolve::discover(&mut events, args.discover, || {
        node.services().iter().any(|e| {
            e.service == args.service
                && match via {
                    Via::Brokers => !e.brokers.is_empty(),
                    _ => !(e.workers.is_empty() && e.brokers.is_empty()),
                }
        })
    })
    .await;
    drain_events(events);
    let mut c = node
        .call(&args.service, payload)
        .timeout(args.timeout)
        .retries(args.retries)
        .via(via);
    if let Some(p) = args.per_try {
        c = c.per_try(p);
    }
    let (result, info) = match c.await {
        Ok(r) => (Ok(r.payload), r.info),
        Err(f) => (Err(f.error), f.info),
    };
    let code = exit_code(&result);
    let json = cli.json.then(|| {
        json!({
            "service": args.service,
            "outcome": outcome_name(&result),
            "tries": info.tries,
            "worker": info.worker.map(|u| zmesh::uuid_to_string(&u)),
            "broker": info.broker.map(|u| zmesh::uuid_to_string(&u)),
            "latency_us": info.latency.as_micros() as u64,
        })
    });
    let handler = match &result {
        Err(CallError::Handler { code, message }) => Some((*code, message.as_str())),
        _ => None,
    };
    crate::output::print_result(json, &result, handler, "call")?;
    node.stop().await;
    Ok(code)
}

pub async fn worker(cli: &Cli, args: &WorkerArgs) -> Result<i32, zmesh::Error> {
    let mut stop = StopSignal::new()?;
    resolve::note_missing_interface(&cli.iface());
    let b = args.brokers.apply(cli.builder(&args.node))?;
    let (node, mut events) = b.start().await?;
    let mut calls = match node.offer(&args.service) {
        Ok(c) => c,
        Err(e) => {
            node.stop().await;
            return Err(e);
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    if cli.json {
        print_json(&json!({
            "offering": args.service,
            "uuid": node.uuid_string(),
            "name": node.name(),
        }));
    } else {
        eprintln!(
            "offering {} as {} ({}); Ctrl-C to stop",
            args.service,
            node.name(),
            node.uuid_string()
        );
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.recv() => break,
            ev = events.recv() => match ev {
                Some(Event::Stop { .. }) | None => break,
                Some(_) => {}
            },
            call = calls.recv() => match call {
                Some(call) => {
                    if cli.json {
                        print_json(&json!({
                            "call": call.service(),
                            "caller": zmesh::uuid_to_string(&call.caller()),
                            "id": call.id(),
                            "attempt": call.attempt(),
                            "bytes": call.payload().len(),
                        }));
                    }
                    let permit = permits.clone().acquire_owned().await.expect("never closed");
                    let exec = args.exec.clone();
                    let delay = args.delay;
                    tokio::spawn(async move {
                        answer(call, exec, delay).await;
                        drop(permit);
                    });
                }
                None => break,
            },
        }
    }
    if cli.json {
        // The worker's own counters, for whoever collects them (the chaos tester does).
        let own = node.service_stats(Duration::ZERO).await.ok();
        let s = own.as_ref().and_then(|v| v.first()).and_then(|n| {
            n.stats
                .services
                .iter()
                .find(|s| s.name == args.service)
                .cloned()
        });
        print_json(&json!({
            "stopped": args.service,
            "requests": s.as_ref().map(|s| s.requests),
            "duplicates": s.as_ref().map(|s| s.duplicates),
            "errors": s.as_ref().map(|s| s.errors),
        }));
    }
    drop(calls);
    node.stop().await;
    Ok(0)
}

async fn answer(call: IncomingCall, exec: Option<String>, delay: Option<Duration>) {
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let Some(cmd) = exec else {
        let p = call.payload().clone();
        let _ = call.reply(p);
        return;
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = call.error(127, format!("cannot run {cmd:?}: {e}"));
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let payload = call.payload().clone();
        let _ = stdin.write_all(&payload).await;
    }
    let until = tokio::time::Instant::from_std(call.deadline());
    let out = match tokio::time::timeout_at(until, child.wait_with_output()).await {
        Ok(out) => out,
        // The caller stopped waiting: kill the command (kill_on_drop) and answer nothing.
        Err(_) => return,
    };
    let _ = match out {
        Ok(out) if out.status.success() => call.reply(out.stdout),
        Ok(out) => {
            let code = out
                .status
                .code()
                .map_or(1, |c| u16::try_from(c).unwrap_or(1));
            let msg = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            call.error(code, msg)
        }
        Err(e) => call.error(1, format!("{cmd:?} failed: {e}")),
    };
}

pub async fn services(cli: &Cli, args: &ServicesArgs) -> Result<i32, zmesh::Error> {
    resolve::require_interface(&cli.iface())?;
    let b = args.brokers.apply(cli.builder(&args.node))?;
    let (node, events) = b.start().await?;
    drain_events(events);
    tokio::time::sleep(args.wait).await;
    let mut list = node.services();
    let stats = node.service_stats(args.wait).await?;
    // Workers behind brokers are not peers of ours: they show up through their stats answers.
    for s in stats
        .iter()
        .filter(|s| !s.stats.broker && s.peer != node.uuid())
    {
        for x in &s.stats.services {
            let pos = match list.iter().position(|e| e.service == x.name) {
                Some(i) => i,
                None => {
                    list.push(zmesh::ServiceEntry {
                        service: x.name.clone(),
                        workers: Vec::new(),
                        brokers: Vec::new(),
                    });
                    list.len() - 1
                }
            };
            if !list[pos].workers.contains(&s.peer) {
                list[pos].workers.push(s.peer);
            }
        }
    }
    list.sort_by(|a, b| a.service.cmp(&b.service));
    let name = |u: &zmesh::Uuid| {
        node.peer_name(*u)
            .unwrap_or_else(|| zmesh::uuid_to_string(u))
    };
    if cli.json {
        for e in &list {
            let workers: Vec<_> = e
                .workers
                .iter()
                .map(|w| {
                    let s = stats
                        .iter()
                        .find(|s| s.peer == *w)
                        .and_then(|s| s.stats.services.iter().find(|x| x.name == e.service));
                    json!({
                        "uuid": zmesh::uuid_to_string(w),
                        "name": name(w),
                        "requests": s.map(|s| s.requests),
                        "errors": s.map(|s| s.errors),
                        "duplicates": s.map(|s| s.duplicates),
                        "running": s.map(|s| s.running),
                        "average_us": s.map(|s| s.average_ns() / 1000),
                        "last_error": s.map(|s| s.last_error.clone()),
                    })
                })
                .collect();
            let brokers: Vec<_> = e.brokers.iter().map(zmesh::uuid_to_string).collect();
            print_json(&json!({"service": e.service, "workers": workers, "brokers": brokers}));
        }
    } else if list.is_empty() {
        println!("no service offered");
    } else {
        println!(
            "{:<20} {:<20} {:>9} {:>7} {:>6} {:>8} {:>10}  last error",
            "SERVICE", "WORKER", "REQUESTS", "ERRORS", "DUPS", "RUNNING", "AVG"
        );
        for e in &list {
            for w in &e.workers {
                let s = stats
                    .iter()
                    .find(|s| s.peer == *w)
                    .and_then(|s| s.stats.services.iter().find(|x| x.name == e.service));
                match s {
                    Some(s) => println!(
                        "{:<20} {:<20} {:>9} {:>7} {:>6} {:>8} {:>10}  {}",
                        e.service,
                        name(w),
                        s.requests,
                        s.errors,
                        s.duplicates,
                        s.running,
                        format!("{:?}", Duration::from_nanos(s.average_ns())),
                        crate::output::escape(&s.last_error)
                    ),
                    None => println!("{:<20} {:<20} (no stats answer)", e.service, name(w)),
                }
            }
            for b in &e.brokers {
                println!("{:<20} {:<20} (broker)", e.service, name(b));
            }
        }
    }
    node.stop().await;
    Ok(0)
}

pub async fn broker(cli: &Cli, args: &BrokerCmdArgs) -> Result<i32, zmesh::Error> {
    let mut stop = StopSignal::new()?;
    let bind = zmesh::parse_broker(&args.bind).map_err(zmesh::Error::Config)?;
    let mut b = cli.builder(&args.node);
    if cli.iface.is_empty() {
        let spec = bind
            .addr
            .ip()
            .to_string()
            .parse()
            .map_err(|e| zmesh::Error::Config(format!("--bind {}: {e}", args.bind)))?;
        b = b.interface(spec);
    }
    // What others are configured with: the endpoint, and in secure mode the key.
    let own = match &cli.security {
        Some(s) => format!("{}|{}", bind.endpoint, s.public_z85()),
        None => bind.endpoint.clone(),
    };
    let (node, mut events): (Node, _) = b.broker_at(&own)?.brokers(&args.peers)?.start().await?;
    if cli.json {
        print_json(&json!({
            "broker": own,
            "uuid": node.uuid_string(),
        }));
    } else {
        eprintln!("broker at {own} ({}); Ctrl-C to stop", node.uuid_string());
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.recv() => break,
            ev = events.recv() => match ev {
                Some(Event::Stop { .. }) | None => break,
                Some(_) => {}
            },
        }
    }
    let drained = node.drain(args.drain).await.unwrap_or(false);
    let c = node.service_counters();
    if cli.json {
        print_json(&json!({
            "stopped": true,
            "drained": drained,
            "relayed": c.relayed,
            "relays_lost": c.relays_lost,
            "handshake_failures": node.stats().handshake_failures,
        }));
    } else {
        eprintln!(
            "broker stopping: drained={drained} relayed={} lost={} refused handshakes={}",
            c.relayed,
            c.relays_lost,
            node.stats().handshake_failures
        );
    }
    node.stop().await;
    Ok(0)
}
