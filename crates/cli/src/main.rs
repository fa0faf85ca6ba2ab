//! `zmesh` — the command-line tool.
//!
//! * `zmesh demo` — a handful of nodes on loopback in one process: discovery, groups, whisper, shout,
//!   a polite leave, with timings. Zero configuration.
//! * `zmesh chat --name N [--group G]` — interactive chat over SHOUT/WHISPER.
//! * `zmesh listen [--group G]` — print every event.
//! * `zmesh peers` — discover for a moment and print a table of peers.
//! * `zmesh request TARGET EVENT [PAYLOAD]` / `zmesh reply --echo|--exec CMD` — request/reply
//!   from the shell (exit status per outcome, see `reqrep.rs`).
//! * `zmesh agent --name N` — JSON commands on stdin, JSON events on stdout; what the interop tests
//!   drive (the same protocol as the pyre and zyre.js agents in `interop/`).
//! * `zmesh keygen NAME` — a CURVE key pair as czmq certificates `NAME` and `NAME_secret`.
//!
//! Global flags pick the interface (`--iface`), the beacon port (`--port`), headers (`--header K=V`)
//! and `--json` output (one JSON object per event; UUIDs as 32 upper-case hex digits, like Zyre);
//! `--curve-secret FILE` and `--allow DIR` run the node in secure mode (`curve.rs`).
#![forbid(unsafe_code)]

mod curve;
mod demo;
mod output;
mod reqrep;
mod tester;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};
use zmesh::{Bytes, Event, InterfaceSpec, Node, NodeBuilder, Uuid};

use output::{event_json, print_json};

/// zmesh: zero-configuration mesh networking, wire-compatible with ZRE (Zyre, Pyre, zyre.js).
#[derive(Parser, Debug)]
#[command(name = "zmesh", version, about)]
pub(crate) struct Cli {
    /// Interface to beacon on: a name (eth0, lo), an address of an interface (10.0.0.5) or a CIDR
    /// (10.0.0.0/8). Default: the first LAN interface (`demo` defaults to lo).
    #[arg(long, global = true)]
    iface: Option<InterfaceSpec>,
    /// UDP beacon port (default 5670; `demo` picks a free random one).
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Header sent to peers in HELLO, as KEY=VALUE (repeatable).
    #[arg(long = "header", global = true, value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Print events as JSON, one object per line.
    #[arg(long, global = true)]
    json: bool,
    /// Log level filter (e.g. info, debug, zmesh=debug); logs go to stderr. Also RUST_LOG.
    #[arg(long, global = true)]
    log: Option<String>,
    /// Secure mode (CURVE, as Zyre's zyre_set_zcert): the node's secret certificate (czmq/pyzmq
    /// format, as `zmesh keygen` writes it). Without --allow any CURVE peer is accepted, and the
    /// traffic is still encrypted.
    #[arg(long, global = true, value_name = "FILE")]
    curve_secret: Option<PathBuf>,
    /// Secure mode: admit only the peers whose public certificates are in DIR (reread on SIGHUP).
    #[arg(long, global = true, value_name = "DIR")]
    allow: Option<PathBuf>,
    /// `--curve-secret` and `--allow`, loaded before any node starts.
    #[arg(skip)]
    security: Option<curve::Security>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a few nodes on loopback and show discovery, groups, whisper, shout and a polite leave.
    Demo(demo::DemoArgs),
    /// Chat: stdin lines are shouted to the group; /w <name|uuid> text, /join g, /leave g, /peers, /quit.
    Chat {
        #[command(flatten)]
        node: NodeArgs,
        /// Group to join and shout to.
        #[arg(long, default_value = "CHAT")]
        group: String,
    },
    /// Print every event (optionally joining a group first).
    Listen {
        #[command(flatten)]
        node: NodeArgs,
        /// Group to join.
        #[arg(long)]
        group: Option<String>,
    },
    /// Discover peers for a moment and print them.
    Peers {
        #[command(flatten)]
        node: NodeArgs,
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = 2.5)]
        wait: f64,
    },
    /// Scriptable node: JSON commands on stdin, JSON events on stdout (for tests and tools).
    Agent {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Churn many nodes in one process (loopback) and check the mesh never breaks.
    Tester(tester::TesterArgs),
    /// Send one request to a peer (by name or UUID) and print its reply.
    Request(reqrep::RequestArgs),
    /// Answer requests: with their payload (--echo) or with a command's output (--exec).
    Reply(reqrep::ReplyArgs),
    /// Make a CURVE key pair: NAME (public certificate) and NAME_secret, in czmq's format.
    Keygen(curve::KeygenArgs),
}

/// Options shared by the commands that run one node.
#[derive(Args, Debug, Clone)]
pub(crate) struct NodeArgs {
    /// Public name of the node (default: first 6 hex digits of its UUID).
    #[arg(long)]
    name: Option<String>,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_BEACON_INTERVAL.as_millis() as u64)]
    interval: u64,
    /// Evasive timeout in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_EVASIVE_TIMEOUT.as_millis() as u64)]
    evasive: u64,
    /// Expired timeout in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_EXPIRED_TIMEOUT.as_millis() as u64)]
    expired: u64,
    /// Fixed TCP port for the inbox (default: ephemeral).
    #[arg(long)]
    tcp_port: Option<u16>,
    /// Endpoint to advertise instead of the bound one.
    #[arg(long)]
    advertise: Option<String>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Cli {
    pub(crate) fn builder(&self, args: &NodeArgs) -> NodeBuilder {
        let mut b = Node::builder()
            .interface(self.iface.clone().unwrap_or_default())
            .beacon_port(self.port.unwrap_or(zmesh::DEFAULT_BEACON_PORT))
            .beacon_interval(Duration::from_millis(args.interval))
            .evasive_timeout(Duration::from_millis(args.evasive))
            .expired_timeout(Duration::from_millis(args.expired));
        if let Some(n) = &args.name {
            b = b.name(n);
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if let Some(p) = args.tcp_port {
            b = b.tcp_port(p);
        }
        if let Some(a) = &args.advertise {
            b = b.advertised_endpoint(a);
        }
        if let Some(s) = &self.security {
            b = s.apply(b);
        }
        b
    }
}

fn main() {
    let cli = Cli::parse();
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("zmesh: {e}");
                2
            }
        }
    });
    std::process::exit(code);
}

async fn run(mut cli: Cli) -> Result<i32, zmesh::Error> {
    cli.security = curve::Security::load(cli.curve_secret.as_deref(), cli.allow.as_deref())?;
    if let Some(s) = &cli.security {
        s.reload_on_sighup();
    }
    match &cli.command {
        Command::Demo(args) => demo::run(&cli_demo_opts(&cli), args).await,
        Command::Chat { node, group } => chat(&cli, node, group).await,
        Command::Listen { node, group } => listen(&cli, node, group.as_deref()).await,
        Command::Peers { node, wait } => peers(&cli, node, *wait).await,
        Command::Agent { node } => agent(&cli, node).await,
        Command::Tester(args) => tester::run(cli.iface.clone(), cli.port, cli.json, args).await,
        Command::Request(args) => reqrep::request(&cli, args).await,
        Command::Reply(args) => reqrep::reply(&cli, args).await,
        Command::Keygen(args) => curve::keygen(args, cli.json),
    }
}

/// Completes on the first SIGINT or SIGTERM: both mean "stop politely". Created once per command
/// (not per turn of a `select!` loop, which could miss a signal under load).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn cli_demo_opts(cli: &Cli) -> demo::GlobalOpts {
    demo::GlobalOpts {
        iface: cli.iface.clone(),
        port: cli.port,
        json: cli.json,
    }
}

/// Prints one event for a human, resolving nothing (the event carries the peer's name).
fn print_event(json: bool, event: &Event) {
    if json {
        print_json(&event_json(event));
    } else {
        println!("{}", output::event_line(event));
    }
}

async fn listen(cli: &Cli, args: &NodeArgs, group: Option<&str>) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(args).start().await?;
    if let Some(g) = group {
        node.join(g)?;
    }
    if !cli.json {
        eprintln!(
            "listening as {} ({}); Ctrl-C to stop",
            node.name(),
            node.uuid_string()
        );
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => {
                node.stop().await;
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => print_event(cli.json, &ev),
                None => break,
            },
        }
    }
    Ok(0)
}

async fn peers(cli: &Cli, args: &NodeArgs, wait: f64) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(args).start().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait.max(0.0));
    // Drain events while discovering so the queue never fills.
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, events.recv()).await {}
    let mut rows = Vec::new();
    for peer in node.peers() {
        if let Some(info) = node.peer_info(peer) {
            rows.push(info);
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if cli.json {
        for p in &rows {
            print_json(&output::peer_json(p));
        }
    } else {
        println!("{}", output::peer_table(&rows));
        println!("{} peer(s)", rows.len());
    }
    node.stop().await;
    Ok(0)
}

pub(crate) fn resolve_peer(node: &Node, who: &str) -> Option<Uuid> {
    if let Some(u) = zmesh::uuid_from_str(who) {
        return Some(u);
    }
    node.peers()
        .into_iter()
        .find(|p| node.peer_name(*p).as_deref() == Some(who))
}

async fn chat(cli: &Cli, args: &NodeArgs, group: &str) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(args).start().await?;
    node.join(group)?;
    if !cli.json {
        eprintln!(
            "chatting in {group} as {} ({}). /w <name|uuid> text, /join g, /leave g, /peers, /quit",
            node.name(),
            node.uuid_string()
        );
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => print_event(cli.json, &ev),
                None => break,
            },
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Err(e) = chat_line(&node, group, line.trim()) {
                        if matches!(e, ChatOutcome::Quit) {
                            node.stop().await;
                        } else {
                            eprintln!("{e}");
                        }
                    }
                }
                _ => {
                    stdin_open = false;
                    node.stop().await;
                }
            },
            _ = tokio::signal::ctrl_c() => node.stop().await,
        }
    }
    Ok(0)
}

#[derive(Debug)]
enum ChatOutcome {
    Quit,
    Message(String),
}

impl std::fmt::Display for ChatOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatOutcome::Quit => f.write_str("quit"),
            ChatOutcome::Message(m) => f.write_str(m),
        }
    }
}

fn chat_line(node: &Node, group: &str, line: &str) -> Result<(), ChatOutcome> {
    let err = |e: zmesh::Error| ChatOutcome::Message(format!("error: {e}"));
    if line.is_empty() {
        return Ok(());
    }
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "/quit" => Err(ChatOutcome::Quit),
        "/join" => node.join(rest.trim()).map_err(err),
        "/leave" => node.leave(rest.trim()).map_err(err),
        "/peers" => {
            let mut rows: Vec<_> = node
                .peers()
                .into_iter()
                .filter_map(|p| node.peer_info(p))
                .collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            println!("{}", output::peer_table(&rows));
            Ok(())
        }
        "/w" => {
            let (who, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let peer = resolve_peer(node, who)
                .ok_or_else(|| ChatOutcome::Message(format!("no peer named {who:?}")))?;
            node.whisper(peer, vec![Bytes::from(text.to_string())])
                .map_err(err)
        }
        c if c.starts_with('/') => Err(ChatOutcome::Message(format!("unknown command {c}"))),
        _ => node
            .shout(group, vec![Bytes::from(line.to_string())])
            .map(|_| ())
            .map_err(err),
    }
}

async fn agent(cli: &Cli, args: &NodeArgs) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(args).start().await?;
    // READY once the node has an endpoint (interface attached), so tests know where it listens.
    let mut ready_sent = false;
    let mut ready_poll = tokio::time::interval(Duration::from_millis(10));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = ready_poll.tick(), if !ready_sent => {
                if let Some(ep) = node.endpoint() {
                    print_json(&serde_json::json!({
                        "event": "READY", "uuid": node.uuid_string(), "name": node.name(), "endpoint": ep,
                    }));
                    ready_sent = true;
                }
            }
            // Events wait in the node's queue until READY is out, so READY is always first.
            ev = events.recv(), if ready_sent || !stdin_open => match ev {
                Some(ev) => print_json(&event_json(&ev)),
                None => break,
            },
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Err(msg) = agent_command(&node, &line).await {
                        print_json(&serde_json::json!({"event": "ERROR", "error": msg}));
                    }
                }
                _ => {
                    stdin_open = false;
                    node.stop().await;
                }
            },
        }
    }
    let _ = std::io::stdout().flush();
    Ok(0)
}

fn frames_of(v: &serde_json::Value) -> Result<Vec<Bytes>, String> {
    let arr = v
        .get("frames")
        .and_then(|f| f.as_array())
        .ok_or("missing \"frames\" array")?;
    arr.iter()
        .map(|f| {
            f.as_str()
                .map(|s| Bytes::from(s.to_string()))
                .ok_or_else(|| "frames must be strings".to_string())
        })
        .collect()
}

async fn agent_command(node: &Node, line: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let cmd = v
        .get("cmd")
        .and_then(|c| c.as_str())
        .ok_or("missing \"cmd\"")?;
    let s = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("missing \"{k}\""))
    };
    match cmd {
        "join" => node.join(&s("group")?).map_err(|e| e.to_string()),
        "leave" => node.leave(&s("group")?).map_err(|e| e.to_string()),
        "whisper" => {
            let peer = zmesh::uuid_from_str(&s("peer")?).ok_or("bad peer uuid")?;
            node.whisper(peer, frames_of(&v)?)
                .map_err(|e| e.to_string())
        }
        "shout" => node
            .shout(&s("group")?, frames_of(&v)?)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "peers" => {
            let peers: Vec<String> = node.peers().iter().map(zmesh::uuid_to_string).collect();
            print_json(&serde_json::json!({"event": "PEERS", "peers": peers}));
            Ok(())
        }
        // {"cmd":"serve","pattern":"echo.**"}: answer matching requests with their payload;
        // prints {"event":"SERVING","pattern":...} once the handler is registered.
        "serve" => {
            let pattern = s("pattern")?;
            let mut requests = node.on_request(&pattern).map_err(|e| e.to_string())?;
            print_json(&serde_json::json!({"event": "SERVING", "pattern": pattern}));
            tokio::spawn(async move {
                while let Some(req) = requests.recv().await {
                    let p = req.payload().clone();
                    req.reply(p);
                }
            });
            Ok(())
        }
        // {"cmd":"request","peer":UUID,"event":E,"payload":P,"timeout_ms":N,"tag":T}: prints
        // {"event":"REPLY","tag":T,"outcome":...,"payload":...,"rtt_us":...} when it ends.
        "request" => {
            let peer = zmesh::uuid_from_str(&s("peer")?).ok_or("bad peer uuid")?;
            let event = s("event")?;
            let payload = s("payload").unwrap_or_default();
            let timeout = v
                .get("timeout_ms")
                .and_then(|t| t.as_u64())
                .unwrap_or(10_000);
            let tag = v.get("tag").cloned().unwrap_or(serde_json::Value::Null);
            let fut = node
                .request(peer, event, payload)
                .timeout(Duration::from_millis(timeout))
                .send();
            let started = tokio::time::Instant::now();
            tokio::spawn(async move {
                let r = fut.await;
                let mut o = serde_json::json!({
                    "event": "REPLY",
                    "tag": tag,
                    "outcome": reqrep::outcome_of(&r),
                    "rtt_us": started.elapsed().as_micros() as u64,
                });
                match &r {
                    Ok(p) => output::put_bytes(&mut o, "payload", p),
                    Err(e) => o["error"] = serde_json::json!(e.to_string()),
                }
                print_json(&o);
            });
            Ok(())
        }
        "stop" | "quit" => {
            node.stop().await;
            Ok(())
        }
        other => Err(format!("unknown command {other:?}")),
    }
}
