//! Routed requests and ticks from the shell: `zmesh request any[:FILTER] ...`,
//! `zmesh request all[:FILTER] ...` (also `group:NAME`), `zmesh tick TARGET EVENT [PAYLOAD]`,
//! and the agent's `options` command. The filter syntax is defined once in
//! `zmesh_core::filter` (summarised in [`FILTER_HELP`]).
//!
//! Exit status of `zmesh request all` (one place, also in `--help`): 0 every peer asked
//! replied, 3 it ended (max wait, stall, max answers) before every peer answered, 4 no
//! responders (nobody matched), 5 at least one error outcome, 2 bad usage. `zmesh tick`: 0
//! sent, 4 nobody to send it to.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::time::Instant;
use zmesh::{Bytes, GatherEnd, Node, RequestError, Target};

use crate::output::{print_json, put_bytes};
use crate::reqrep::{exit_code, outcome_of};
use crate::{resolve, Cli, NodeArgs};

/// The target and filter syntax, for `--help` (the grammar lives in `zmesh_core::filter`).
macro_rules! filter_help {
    () => {
        "TARGET: a peer name or UUID; `any` or `any:FILTER` (one peer that serves EVENT, least \
busy first, round robin among equals); `all` or `all:FILTER` (every such peer: one line per \
answer, then a summary); `group:NAME` (every member of the group). FILTER: terms joined by `,` \
(all of) and `;` (any of), `(...)` to group: `key=v`, `key=a|b` (one of), `key!=v`, `key` \
(exists), `key^=prefix`, `key~regex`, `key<n` `key<=n` `key>n` `key>=n`, `@group`; values may \
be \"quoted\". Keys are the peer's options first, then its HELLO headers; a missing key never \
matches. Example: any:role=sensor,zone~^eu-"
    };
}

/// [`filter_help!`] as a constant.
pub const FILTER_HELP: &str = filter_help!();

/// `zmesh request --help`: exit statuses and the target syntax.
pub const REQUEST_HELP: &str = concat!(
    "Exit status: 0 reply (printed to stdout), 3 timeout, 4 no responders (unknown peer, not a \
zmesh peer, or no handler for EVENT; for any/all: nobody matched), 5 handler error (stderr has \
its code and message), 6 peer left while waiting, 7 overloaded, 8 payload too large, 1 other, \
2 bad usage. For all: 0 every peer replied, 3 it ended before every peer answered, 5 an error \
outcome.\n\n",
    filter_help!()
);

/// Extra settings of `zmesh request` for `all` targets.
#[derive(Args, Debug, Clone, Default)]
pub struct AllArgs {
    /// `all`: wait for this many matching responders before sending (up to --discover); without
    /// it, `all` waits the whole --discover period to find them.
    #[arg(long)]
    pub expect: Option<usize>,
    /// `all`: end when this long passed without a new answer (after the first).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stall: Option<Duration>,
    /// `all`: end after this many answers.
    #[arg(long)]
    pub max_answers: Option<usize>,
}

/// `zmesh tick TARGET EVENT [PAYLOAD]`.
#[derive(Args, Debug)]
#[command(after_help = FILTER_HELP)]
pub struct TickArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Where to: NAME, UUID, any[:FILTER], all[:FILTER], group:NAME.
    target: String,
    /// The event name.
    event: String,
    /// The payload (default: empty).
    payload: Option<String>,
    /// How long to wait for a receiver to be discovered.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discover: Duration,
    /// `all`: wait for this many receivers before sending (up to --discover).
    #[arg(long)]
    expect: Option<usize>,
}

/// Parses a target, or explains why not (exit status 2).
pub fn parse_target(s: &str) -> Result<Target, zmesh::Error> {
    s.parse::<Target>()
        .map_err(|e| zmesh::Error::InvalidArgument {
            what: "target",
            why: e.to_string(),
        })
}

fn name_of(node: &Node, peer: zmesh::Uuid) -> String {
    node.peer_name(peer).unwrap_or_default()
}

/// `zmesh request any[:FILTER] | all[:FILTER] | group:NAME EVENT [PAYLOAD]`.
#[allow(clippy::too_many_arguments)]
pub async fn request_routed(
    cli: &Cli,
    node_args: &NodeArgs,
    target: Target,
    event: &str,
    payload: Bytes,
    timeout: Duration,
    discover_for: Duration,
    all: &AllArgs,
) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(node_args).start().await?;
    let code = match target {
        Target::Any(filter) => {
            let n = node.clone();
            let f = filter.clone();
            let count = move || n.responders(&f, event).len();
            resolve::discover(&mut events, discover_for, || count() > 0).await;
            let started = Instant::now();
            let fut = node
                .request_any(filter, event.to_owned(), payload)
                .timeout(timeout)
                .send();
            let peer = fut.peer();
            tokio::pin!(fut);
            let result = loop {
                tokio::select! {
                    r = &mut fut => break r,
                    ev = events.recv() => if ev.is_none() { break Err(RequestError::Stopped) },
                }
            };
            print_one(cli, &node, peer, event, &result, started.elapsed())?;
            exit_code(&result)
        }
        Target::All(filter) => {
            let n = node.clone();
            let f = filter.clone();
            let count = move || n.responders(&f, event).len();
            let expect = all.expect;
            resolve::discover(&mut events, discover_for, || {
                expect.is_some_and(|e| count() >= e)
            })
            .await;
            let mut req = node
                .request_all(filter, event.to_owned(), payload)
                .max_wait(timeout);
            if let Some(s) = all.stall {
                req = req.stall(s);
            }
            if let Some(m) = all.max_answers {
                req = req.max_answers(m);
            }
            let started = Instant::now();
            let mut replies = req.send();
            let asked = replies.peers().len();
            let (mut ok, mut failed) = (0usize, 0usize);
            loop {
                tokio::select! {
                    item = replies.recv() => match item {
                        Some((peer, result)) => {
                            if result.is_ok() { ok += 1 } else { failed += 1 }
                            print_one(cli, &node, Some(peer), event, &result, started.elapsed())?;
                        }
                        None => break,
                    },
                    ev = events.recv() => if ev.is_none() { break },
                }
            }
            let end = replies.end().unwrap_or(GatherEnd::Stopped);
            let unanswered = replies.unanswered().len();
            let end_word = end_name(end);
            if cli.json {
                print_json(&json!({
                    "summary": true, "asked": asked, "replies": ok, "errors": failed,
                    "unanswered": unanswered, "end": end_word,
                    "elapsed_us": started.elapsed().as_micros() as u64,
                }));
            } else {
                println!(
                    "# {asked} asked, {ok} replied, {failed} failed, {unanswered} unanswered ({end_word})"
                );
            }
            if asked == 0 {
                4
            } else if failed > 0 {
                5
            } else if ok < asked {
                3
            } else {
                0
            }
        }
        other => {
            return Err(zmesh::Error::InvalidArgument {
                what: "target",
                why: format!("{other} is not a routed target"),
            })
        }
    };
    node.stop().await;
    Ok(code)
}

fn end_name(e: GatherEnd) -> &'static str {
    match e {
        GatherEnd::AllDone => "all_done",
        GatherEnd::MaxWait => "max_wait",
        GatherEnd::Stall => "stall",
        GatherEnd::MaxAnswers => "max_answers",
        GatherEnd::NoResponders => "no_responders",
        GatherEnd::Cancelled => "cancelled",
        GatherEnd::Stopped => "stopped",
        _ => "other",
    }
}

/// One outcome: the reply on stdout (`NAME<TAB>payload` for humans when the peer is known),
/// or a JSON object.
fn print_one(
    cli: &Cli,
    node: &Node,
    peer: Option<zmesh::Uuid>,
    event: &str,
    result: &Result<Bytes, RequestError>,
    rtt: Duration,
) -> std::io::Result<()> {
    if cli.json {
        let mut o = json!({
            "peer": peer.map(|p| zmesh::uuid_to_string(&p)),
            "name": peer.map(|p| name_of(node, p)),
            "event": event,
            "outcome": outcome_of(result),
            "rtt_us": rtt.as_micros() as u64,
        });
        match result {
            Ok(p) => put_bytes(&mut o, "payload", p),
            Err(e) => {
                o["error"] = json!(e.to_string());
                if let RequestError::Handler { code, message } = e {
                    o["code"] = json!(code);
                    o["message"] = json!(message);
                }
            }
        }
        print_json(&o);
        return Ok(());
    }
    let who = peer.map(|p| name_of(node, p)).unwrap_or_default();
    match result {
        Ok(p) => println!("{who}\t{}", String::from_utf8_lossy(p)),
        Err(e) => println!("{who}\terror: {e}"),
    }
    Ok(())
}

/// `zmesh tick TARGET EVENT [PAYLOAD]`.
pub async fn tick(cli: &Cli, args: &TickArgs) -> Result<i32, zmesh::Error> {
    let target = parse_target(&args.target)?;
    let payload = Bytes::from(args.payload.clone().unwrap_or_default());
    let (node, mut events) = cli.builder(&args.node).start().await?;
    let event = args.event.clone();
    let n = node.clone();
    let t = target.clone();
    let count = move || match &t {
        Target::Any(f) | Target::All(f) => n.tick_responders(f, &event).len(),
        Target::Name(name) => usize::from(resolve::peer(&n, name).is_ok()),
        Target::Peer(p) => usize::from(n.peer_info(*p).is_some()),
        _ => 0,
    };
    let expect = args.expect;
    let is_all = matches!(target, Target::All(_));
    resolve::discover(&mut events, args.discover, || {
        let c = count();
        if is_all {
            expect.is_some_and(|e| c >= e)
        } else {
            c > 0
        }
    })
    .await;
    let target = match target {
        Target::Name(name) => match resolve::peer(&node, &name) {
            Ok(p) => Target::Peer(p),
            Err(_) => Target::Name(name),
        },
        t => t,
    };
    let code = match node.tick_to(&target, &args.event, payload) {
        Ok(peers) => {
            if cli.json {
                let names: Vec<String> = peers.iter().map(zmesh::uuid_to_string).collect();
                print_json(&json!({"sent": peers.len(), "peers": names}));
            } else {
                println!("tick sent to {} peer(s)", peers.len());
            }
            0
        }
        Err(e) => {
            eprintln!("zmesh tick: {e}");
            match e {
                zmesh::Error::Request(RequestError::NoResponders(_)) => 4,
                _ => 1,
            }
        }
    };
    // Give the ticks their trip before the node says goodbye.
    node.stop().await;
    Ok(code)
}

/// The agent's `{"cmd":"options","set":{"K":"V"},"remove":["K"]}`: changes this node's
/// options and prints `{"event":"OPTIONS","options":{...}}`.
pub fn agent_options(
    node: &Node,
    set: &std::collections::BTreeMap<String, String>,
    remove: &[String],
) -> Result<(), String> {
    for (k, val) in set {
        node.set_option(k, val).map_err(|e| e.to_string())?;
    }
    for k in remove {
        node.remove_option(k).map_err(|e| e.to_string())?;
    }
    print_json(&json!({"event": "OPTIONS", "options": node.options()}));
    Ok(())
}

/// The agent's request with `"target":"any[:FILTER]"`.
pub fn agent_request_any(
    node: &Node,
    target: &str,
    event: String,
    payload: String,
    timeout: Duration,
) -> Result<zmesh::ReplyFuture, String> {
    match target.parse::<Target>().map_err(|e| e.to_string())? {
        Target::Any(f) => Ok(node.request_any(f, event, payload).timeout(timeout).send()),
        other => Err(format!("target {other} is not any[:FILTER]")),
    }
}

/// Parses `--option KEY=VALUE`.
pub fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
