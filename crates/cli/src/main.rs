//! `zmesh` — the command-line tool.
//!
//! * `zmesh demo` — a handful of nodes on loopback in one process: discovery, groups, whisper, shout,
//!   a polite leave, with timings. Zero configuration.
//! * `zmesh chat --name N [--group G]` — interactive chat over SHOUT/WHISPER (`chat.rs`).
//! * `zmesh listen [--group G]` — print every event; `zmesh peers` — discover for a moment and
//!   print a table of peers (`listen.rs`).
//! * `zmesh request TARGET EVENT [PAYLOAD]` / `zmesh reply --echo|--exec CMD` — request/reply
//!   from the shell (exit status per outcome, see `reqrep.rs`); TARGET may be `any[:FILTER]`,
//!   `all[:FILTER]`, `group:NAME` (`routing.rs`). `zmesh tick TARGET EVENT [PAYLOAD]`.
//! * `zmesh worker SERVICE --echo|--exec CMD`, `zmesh call SERVICE [PAYLOAD]`, `zmesh services`,
//!   `zmesh broker --bind ENDPOINT` — named services, retries with de-duplication, brokers
//!   (`services.rs`).
//! * `zmesh emit TOPIC [PAYLOAD]` / `zmesh on PATTERN [--count N]` — the distributed event
//!   emitter (`emitter.rs`).
//! * `zmesh agent --name N` — JSON commands on stdin, JSON events on stdout; what the interop tests
//!   drive (the protocol of `interop/README.md`, shared with the pyre and zyre.js agents; `agent.rs`).
//! * `zmesh tester` — churn a mesh in one process and check it never breaks (`tester.rs`).
//! * `zmesh keygen NAME` — a CURVE key pair as czmq certificates `NAME` and `NAME_secret`.
//! * `zmesh completions SHELL` / `zmesh man` — shell completions and the man page (`docs.rs`).
//!
//! * `zmesh config` — the node settings in effect and where each came from (`config.rs`).
//!
//! Global flags pick the interface (`--iface`), the beacon port (`--port`), headers (`--header K=V`),
//! routable options (`--option K=V`), gossip and static peers (`--gossip-bind`, `--gossip-connect`,
//! `--peer`, `--no-beacons`), a settings file (`--config FILE`; every setting also from a
//! `ZMESH_*` variable: flags > environment > file > defaults)
//! and `--json` output (one JSON object per event; UUIDs as 32 upper-case hex digits, like Zyre).
//! `--curve-secret FILE` and `--allow DIR` run the node in secure mode (`curve.rs`).
//! Every long-running command stops politely (leave beacon, GOODBYE) on SIGINT or SIGTERM
//! (`signal.rs`).
#![forbid(unsafe_code)]

mod agent;
mod chat;
mod config;
mod curve;
mod demo;
mod docs;
mod emitter;
mod listen;
mod logging;
mod output;
mod parse;
mod reqrep;
mod resolve;
mod routing;
mod services;
mod signal;
mod tester;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use zmesh::{InterfaceSpec, Node, NodeBuilder};

/// Heading of the options every command takes, so each command's help shows them apart.
const GLOBAL: &str = "Global options";

/// zmesh: zero-configuration mesh networking, wire-compatible with ZRE (Zyre, Pyre, zyre.js).
#[derive(Parser, Debug)]
#[command(name = "zmesh", version, about)]
pub(crate) struct Cli {
    /// Interface(s) to beacon on: a name (eth0, lo), an address of an interface (10.0.0.5), a CIDR
    /// (10.0.0.0/8) or `all` (loopback included); repeatable or comma-separated. Default: every
    /// LAN interface (up, not loopback), followed as they come and go; `demo` and `tester`
    /// default to lo.
    #[arg(long, global = true, help_heading = GLOBAL, value_delimiter = ',')]
    iface: Vec<InterfaceSpec>,
    /// Also send beacons to this IPv4 multicast group (e.g. 239.255.90.82) on every interface.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "GROUP")]
    multicast: Option<std::net::Ipv4Addr>,
    /// TTL of multicast beacons (1: they stay on the link).
    #[arg(long, global = true, help_heading = GLOBAL, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    multicast_ttl: u32,
    /// No IPv4 broadcast beacons (multicast and/or IPv6 only).
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_broadcast: bool,
    /// IPv6 too: link-local multicast beacons (ff02::1) on every interface, IPv6 endpoints,
    /// dual-stack inbox.
    #[arg(long, global = true, help_heading = GLOBAL)]
    ipv6: bool,
    /// No same-host fast path: peers on this host are reached over TCP too, not over their Unix
    /// socket (docs/protocol.md §9).
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_same_host: bool,
    /// UDP beacon port, 1-65535. Default: 5670; `demo` and `tester` pick a random free one.
    #[arg(long, global = true, help_heading = GLOBAL, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Header sent to peers in HELLO, as KEY=VALUE (repeatable).
    #[arg(long = "header", global = true, help_heading = GLOBAL, value_parser = parse::header)]
    headers: Vec<(String, String)>,
    /// Routable option, as KEY=VALUE (repeatable): peers filter on it (`any:KEY=VALUE`); unlike
    /// a header it can change while the node runs (agent: {"cmd":"options","set":{..}}).
    #[arg(long = "option", global = true, help_heading = GLOBAL, value_parser = routing::parse_option)]
    options: Vec<(String, String)>,
    /// Print events as JSON, one object per line.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Log level filter (e.g. info, debug, zmesh=debug); logs go to stderr. Also RUST_LOG.
    /// Coloured only when stderr is a terminal and NO_COLOR is not set.
    #[arg(long, global = true, help_heading = GLOBAL)]
    log: Option<String>,
    /// Secure mode (CURVE, as Zyre's zyre_set_zcert): the node's secret certificate (czmq/pyzmq
    /// format, as `zmesh keygen` writes it). Without --allow any CURVE peer is accepted, and the
    /// traffic is still encrypted.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    curve_secret: Option<PathBuf>,
    /// Secure mode: admit only the peers whose public certificates are in DIR (reread on SIGHUP).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DIR")]
    allow: Option<PathBuf>,
    /// Gossip, static and DNS peers, the configuration file (`config.rs`).
    #[command(flatten)]
    discovery: config::DiscoveryArgs,
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
        /// How long to listen: seconds (2.5) or a duration (500ms, 3s).
        #[arg(long, default_value = "2.5", value_parser = parse::wait)]
        wait: Duration,
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
    /// Send a tick (no answer) to a peer, to any or all matching peers, or to a group.
    Tick(routing::TickArgs),
    /// Emit an event to every peer subscribed to a matching pattern.
    Emit(emitter::EmitArgs),
    /// Print the events matching a pattern (one line each, JSON with --json).
    On(emitter::OnArgs),
    /// Offer a named service: answer calls with their payload (--echo) or a command's output.
    Worker(services::WorkerArgs),
    /// Call a named service (one worker; retries with de-duplication) and print the reply.
    Call(services::CallArgs),
    /// List the services offered in the mesh, their workers and their stats.
    Services(services::ServicesArgs),
    /// Relay calls between clients and workers (fixed endpoint, gossip with other brokers).
    Broker(services::BrokerCmdArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) to stdout, e.g. `zmesh man > zmesh.1`.
    Man,
    /// Make a CURVE key pair: NAME (public certificate) and NAME_secret, in czmq's format.
    Keygen(curve::KeygenArgs),
    /// Print the node settings in effect (from flags, ZMESH_* variables, --config FILE) and where
    /// each came from.
    Config {
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Options shared by the commands that run one node.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Node options")]
pub(crate) struct NodeArgs {
    /// Public name of the node (default: first 6 hex digits of its UUID).
    #[arg(long)]
    name: Option<String>,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_BEACON_INTERVAL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Evasive timeout in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_EVASIVE_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    evasive: u64,
    /// Expired timeout in milliseconds.
    #[arg(long, default_value_t = zmesh::DEFAULT_EXPIRED_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    expired: u64,
    /// Fixed TCP port for the inbox, 1-65535 (default: ephemeral).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    tcp_port: Option<u16>,
    /// Endpoint to advertise instead of the bound one.
    #[arg(long)]
    advertise: Option<String>,
}

impl Cli {
    pub(crate) fn builder(&self, args: &NodeArgs) -> NodeBuilder {
        let mut b = Node::builder()
            .interfaces(self.iface.clone())
            .broadcast(!self.no_broadcast)
            .ipv6(self.ipv6)
            .same_host(!self.no_same_host)
            .beacon_port(self.port.unwrap_or(zmesh::DEFAULT_BEACON_PORT))
            .beacon_interval(Duration::from_millis(args.interval))
            .evasive_timeout(Duration::from_millis(args.evasive))
            .expired_timeout(Duration::from_millis(args.expired));
        if let Some(g) = self.multicast {
            b = b.multicast(g).multicast_ttl(self.multicast_ttl);
        }
        if let Some(n) = &args.name {
            b = b.name(n);
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        for (k, v) in &self.options {
            b = b.option(k, v);
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
        self.discovery.apply(b)
    }

    /// The interfaces this node command was told to use (empty: `auto`).
    pub(crate) fn iface(&self) -> Vec<InterfaceSpec> {
        self.iface.clone()
    }

    /// The interfaces as `zmesh config` shows them: comma-separated, `auto` when none was given.
    pub(crate) fn iface_display(&self) -> String {
        if self.iface.is_empty() {
            return InterfaceSpec::Auto.to_string();
        }
        let names: Vec<String> = self.iface.iter().map(ToString::to_string).collect();
        names.join(",")
    }
}

fn main() {
    let (cli, origins) = match config::parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("zmesh: {e}");
            std::process::exit(2);
        }
    };
    if let Command::Config { node } = &cli.command {
        config::show(&cli, node, &origins);
        return;
    }
    logging::init(cli.log.as_deref());
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
        Command::Chat { node, group } => chat::run(&cli, node, group).await,
        Command::Listen { node, group } => listen::listen(&cli, node, group.as_deref()).await,
        Command::Peers { node, wait } => listen::peers(&cli, node, *wait).await,
        Command::Agent { node } => agent::run(&cli, node).await,
        Command::Tester(args) => {
            tester::run(cli.iface.first().cloned(), cli.port, cli.json, args).await
        }
        Command::Request(args) => reqrep::request(&cli, args).await,
        Command::Reply(args) => reqrep::reply(&cli, args).await,
        Command::Tick(args) => routing::tick(&cli, args).await,
        Command::Emit(args) => emitter::emit(&cli, args).await,
        Command::On(args) => emitter::on(&cli, args).await,
        Command::Worker(args) => services::worker(&cli, args).await,
        Command::Call(args) => services::call(&cli, args).await,
        Command::Services(args) => services::services(&cli, args).await,
        Command::Broker(args) => services::broker(&cli, args).await,
        Command::Completions(args) => Ok(docs::completions(args)),
        Command::Man => docs::man(),
        Command::Keygen(args) => curve::keygen(args, cli.json),
        Command::Config { .. } => Ok(0),
    }
}

fn cli_demo_opts(cli: &Cli) -> demo::GlobalOpts {
    demo::GlobalOpts {
        iface: cli.iface.first().cloned(),
        port: cli.port,
        json: cli.json,
    }
}
