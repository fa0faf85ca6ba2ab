//! `zmesh request` and `zmesh reply`: request/reply from the shell, for people and black-box tests.
//!
//! Exit status of `zmesh request` (one place, also in `--help`): 0 reply, 3 timeout, 4 no
//! responders (unknown peer, not a zmesh peer, no handler), 5 handler error, 6 peer left,
//! 7 overloaded, 8 payload too large, 1 any other outcome, 2 bad usage.

use std::process::Stdio;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use zmesh::{Bytes, Event, IncomingRequest, RequestError};

use crate::output::print_json;
use crate::resolve::{self, PeerError};
use crate::signal::StopSignal;
use crate::{Cli, NodeArgs};

/// Exit status for each outcome of a request.
pub fn exit_code(r: &Result<Bytes, RequestError>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(RequestError::Timeout) => 3,
        Err(RequestError::NoResponders(_)) => 4,
        Err(RequestError::Handler { .. }) => 5,
        Err(RequestError::PeerLeft) => 6,
        Err(RequestError::Overloaded(_)) => 7,
        Err(RequestError::PayloadTooLarge) => 8,
        Err(_) => 1,
    }
}

/// `zmesh request TARGET EVENT [PAYLOAD]`.
#[derive(Args, Debug)]
#[command(after_help = crate::routing::REQUEST_HELP)]
pub struct RequestArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The peer(s) to ask: a name, a UUID (32 hex digits), any[:FILTER], all[:FILTER] or
    /// group:NAME (see --help).
    target: String,
    /// The event name (dot-separated, e.g. sensor.read).
    event: String,
    /// The payload (default: empty; `-` reads stdin).
    payload: Option<String>,
    /// How long to wait for the reply once the request is sent (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How long to wait for TARGET to be discovered before giving up (no responders).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discover: Duration,
    #[command(flatten)]
    all: crate::routing::AllArgs,
}

/// `zmesh reply (--echo | --exec CMD)`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("how").required(true).args(["echo", "exec"])))]
pub struct ReplyArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Event patterns to answer (repeatable; `*` one segment, `**` any number). Default: `**`.
    #[arg(long = "event")]
    events: Vec<String>,
    /// Answer with the request's payload.
    #[arg(long)]
    echo: bool,
    /// Answer with the stdout of `sh -c CMD`, which gets the payload on stdin; a non-zero exit
    /// status becomes a handler error (code = status, message = stderr).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
}

pub async fn request(cli: &Cli, args: &RequestArgs) -> Result<i32, zmesh::Error> {
    let payload = crate::output::read_payload(args.payload.as_deref()).await?;
    resolve::require_interface(&cli.iface())?;
    let target = crate::routing::parse_target(&args.target)?;
    if let zmesh::Target::Any(_) | zmesh::Target::All(_) = target {
        return crate::routing::request_routed(
            cli,
            &args.node,
            target,
            &args.event,
            payload,
            args.timeout,
            args.discover,
            &args.all,
        )
        .await;
    }
    let (node, mut events) = cli.builder(&args.node).start().await?;
    // Wait until the target is known (by UUID or name), or give up after --discover.
    let deadline = Instant::now() + args.discover;
    let target = loop {
        match resolve::peer(&node, &args.target) {
            Ok(p) if node.peer_info(p).is_some_and(|i| i.ready) => break Some(p),
            Ok(_) | Err(PeerError::Unknown(_)) => {}
            Err(e @ PeerError::Ambiguous(..)) => {
                node.stop().await;
                return Err(zmesh::Error::Config(e.to_string()));
            }
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(_)) => continue,
            _ => break None,
        }
    };
    let started = Instant::now();
    let result = match target {
        Some(peer) => {
            // Keep reading events so the queue never fills while we wait.
            let req = node
                .request(peer, args.event.clone(), payload)
                .timeout(args.timeout);
            let fut = req.send();
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    ev = events.recv() => if ev.is_none() { break Err(RequestError::Stopped) },
                }
            }
        }
        None => Err(RequestError::NoResponders(zmesh::NoResponders::UnknownPeer)),
    };
    let rtt = started.elapsed();
    let code = exit_code(&result);
    let json = cli.json.then(|| {
        json!({
            "target": args.target,
            "peer": target.map(|p| zmesh::uuid_to_string(&p)),
            "event": args.event,
            "rtt_us": rtt.as_micros() as u64,
            "outcome": outcome_of(&result),
        })
    });
    let handler = match &result {
        Err(RequestError::Handler { code, message }) => Some((*code, message.as_str())),
        _ => None,
    };
    crate::output::print_result(json, &result, handler, "request")?;
    node.stop().await;
    Ok(code)
}

/// The outcome of a request as one word (`reply`, `timeout`, `no_responders`, ...).
pub fn outcome_of(r: &Result<Bytes, RequestError>) -> &'static str {
    match r {
        Ok(_) => "reply",
        Err(e) => outcome_name(e),
    }
}

fn outcome_name(e: &RequestError) -> &'static str {
    match e {
        RequestError::Timeout => "timeout",
        RequestError::NoResponders(_) => "no_responders",
        RequestError::Handler { .. } => "handler_error",
        RequestError::PeerLeft => "peer_left",
        RequestError::Overloaded(_) => "overloaded",
        RequestError::PayloadTooLarge => "payload_too_large",
        RequestError::Cancelled => "cancelled",
        RequestError::Stopped => "stopped",
        _ => "error",
    }
}

pub async fn reply(cli: &Cli, args: &ReplyArgs) -> Result<i32, zmesh::Error> {
    // The signal handler first: a SIGTERM sent after the note below must stop us politely.
    let mut stop = StopSignal::new()?;
    resolve::note_missing_interface(&cli.iface());
    let (node, mut events) = cli.builder(&args.node).start().await?;
    let patterns = if args.events.is_empty() {
        vec!["**".to_owned()]
    } else {
        args.events.clone()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<IncomingRequest>();
    for p in &patterns {
        let mut stream = node.on_request(p)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(req) = stream.recv().await {
                if tx.send(req).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    if !cli.json {
        eprintln!(
            "answering {} as {} ({}); Ctrl-C to stop",
            patterns.join(", "),
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
            req = rx.recv() => match req {
                Some(req) => {
                    if cli.json {
                        print_json(&json!({
                            "request": req.event(),
                            "peer": zmesh::uuid_to_string(&req.peer()),
                            "bytes": req.payload().len(),
                        }));
                    }
                    let exec = args.exec.clone();
                    tokio::spawn(answer(req, exec));
                }
                None => break,
            },
        }
    }
    node.stop().await;
    Ok(0)
}

async fn answer(req: IncomingRequest, exec: Option<String>) {
    let Some(cmd) = exec else {
        let p = req.payload().clone();
        req.reply(p);
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
            req.error(127, format!("cannot run {cmd:?}: {e}"));
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let payload = req.payload().clone();
        // A command that does not read its stdin is fine: ignore a broken pipe.
        let _ = stdin.write_all(&payload).await;
    }
    let out = tokio::select! {
        out = child.wait_with_output() => out,
        // The requester gave up: kill the command (kill_on_drop) and answer nothing.
        _ = req.cancelled() => return,
    };
    match out {
        Ok(out) if out.status.success() => req.reply(out.stdout),
        Ok(out) => {
            let code = out
                .status
                .code()
                .map_or(1, |c| u16::try_from(c).unwrap_or(1));
            let msg = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            req.error(code, msg);
        }
        Err(e) => req.error(1, format!("{cmd:?} failed: {e}")),
    }
}
