//! `zmesh agent`: a scriptable node — JSON commands on stdin, JSON events on stdout, one object per
//! line. It speaks the agent protocol of `interop/README.md`, shared with the Pyre and zyre.js
//! agents, so the interop tests drive all three the same way.
//!
//! Commands are a serde-derived enum tagged by `"cmd"` ([`Command`]): an unknown command or a
//! missing field is an `{"event":"ERROR","error":...}` line (serde's message), never a crash. The
//! first line out is `READY` (once the node has an endpoint); SIGINT and SIGTERM stop the node
//! politely like `{"cmd":"stop"}` and closing stdin do.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use zmesh::{Bytes, Node};

use crate::output::{event_json, print_json};
use crate::signal::StopSignal;
use crate::{reqrep, resolve, Cli, NodeArgs};

/// Default time a `request` command waits for its reply.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One command line.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
enum Command {
    /// `{"cmd":"join","group":G}`
    Join { group: String },
    /// `{"cmd":"leave","group":G}`
    Leave { group: String },
    /// `{"cmd":"whisper","peer":UUID,"frames":[...]}`
    Whisper { peer: String, frames: Vec<String> },
    /// `{"cmd":"whispers","peer":UUID,"prefix":P,"from":N,"count":K}`: K single-frame whispers
    /// `P<N>`, `P<N+1>`, ... (long ordered runs without one stdin line per message).
    Whispers {
        peer: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        from: u64,
        count: u64,
    },
    /// `{"cmd":"shout","group":G,"frames":[...]}`
    Shout { group: String, frames: Vec<String> },
    /// `{"cmd":"peers"}`: prints `{"event":"PEERS","peers":[UUID...]}`.
    Peers,
    /// `{"cmd":"serve","pattern":"echo.**"}`: answers matching requests with their payload;
    /// prints `{"event":"SERVING","pattern":...}` once the handler is registered.
    Serve { pattern: String },
    /// `{"cmd":"request","peer":UUID,"event":E,"payload":P,"timeout_ms":N,"tag":T}`: prints
    /// `{"event":"REPLY","tag":T,"peer":UUID,"outcome":...,"payload":...,"rtt_us":...}` when it
    /// ends; `"target":"any[:FILTER]"` instead of `"peer"` routes it (the REPLY names the peer).
    Request {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        target: Option<String>,
        event: String,
        #[serde(default)]
        payload: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
        #[serde(default)]
        tag: serde_json::Value,
    },
    /// `{"cmd":"options","set":{"K":"V"},"remove":["K"]}`: changes this node's routable
    /// options; prints `{"event":"OPTIONS","options":{...}}`.
    Options {
        #[serde(default)]
        set: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    /// `{"cmd":"on","pattern":"sensor.*"}`: subscribes to emitted events; prints
    /// `{"event":"SUBSCRIBED","pattern":...}` once the subscription is registered, then
    /// `{"event":"EMITTED","pattern":...,"publisher":UUID|null,"topic":T,"payload":...}` for each
    /// event (`payload_hex` too when it is not UTF-8).
    On { pattern: String },
    /// `{"cmd":"emit","topic":T,"payload":P}`: emits an event; prints
    /// `{"event":"EMIT","topic":T,"peers":N}` with the number of subscribed peers it went to.
    Emit {
        topic: String,
        #[serde(default)]
        payload: String,
    },
    /// `{"cmd":"stop"}` (or `"quit"`): polite stop; the process exits after the STOP event.
    #[serde(alias = "quit")]
    Stop,
}

/// Runs the agent until the node stops.
pub async fn run(cli: &Cli, args: &NodeArgs) -> Result<i32, zmesh::Error> {
    // The signal handler first: a SIGTERM sent after the note below must stop us politely.
    let mut stop = StopSignal::new()?;
    resolve::note_missing_interface(&cli.iface());
    let (node, mut events) = cli.builder(args).start().await?;
    // READY once the node has an endpoint (interface attached), so tests know where it listens.
    let mut ready_sent = false;
    let mut ready_poll = tokio::time::interval(Duration::from_millis(10));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.recv(), if !stopping => {
                stopping = true;
                node.stop().await;
            }
            _ = ready_poll.tick(), if !ready_sent => {
                if let Some(ep) = node.endpoint() {
                    print_json(&json!({
                        "event": "READY", "uuid": node.uuid_string(), "name": node.name(), "endpoint": ep,
                    }));
                    ready_sent = true;
                }
            }
            // Events wait in the node's queue until READY is out, so READY is always first.
            ev = events.recv(), if ready_sent || !stdin_open || stopping => match ev {
                Some(ev) => print_json(&event_json(&ev)),
                None => break,
            },
            line = lines.next_line(), if stdin_open && !stopping => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    if let Err(msg) = command(&node, &line).await {
                        print_json(&json!({"event": "ERROR", "error": msg}));
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

fn frames(frames: Vec<String>) -> Vec<Bytes> {
    frames.into_iter().map(Bytes::from).collect()
}

fn peer_uuid(s: &str) -> Result<zmesh::Uuid, String> {
    zmesh::uuid_from_str(s).ok_or_else(|| format!("bad peer uuid {s:?}"))
}

/// Parses and carries out one command line.
async fn command(node: &Node, line: &str) -> Result<(), String> {
    let cmd: Command = serde_json::from_str(line).map_err(|e| format!("bad command: {e}"))?;
    let err = |e: zmesh::Error| e.to_string();
    match cmd {
        Command::Join { group } => node.join(&group).map_err(err),
        Command::Leave { group } => node.leave(&group).map_err(err),
        Command::Whisper { peer, frames: f } => {
            node.whisper(peer_uuid(&peer)?, frames(f)).map_err(err)
        }
        Command::Whispers {
            peer,
            prefix,
            from,
            count,
        } => {
            let peer = peer_uuid(&peer)?;
            for i in from..from.saturating_add(count) {
                // Waits for room in the peer's queue instead of dropping the peer.
                node.whisper_wait(peer, vec![Bytes::from(format!("{prefix}{i}"))])
                    .await
                    .map_err(err)?;
            }
            Ok(())
        }
        Command::Shout { group, frames: f } => {
            node.shout(&group, frames(f)).map(|_| ()).map_err(err)
        }
        Command::Peers => {
            let peers: Vec<String> = node.peers().iter().map(zmesh::uuid_to_string).collect();
            print_json(&json!({"event": "PEERS", "peers": peers}));
            Ok(())
        }
        Command::Serve { pattern } => {
            let mut requests = node.on_request(&pattern).map_err(err)?;
            print_json(&json!({"event": "SERVING", "pattern": pattern}));
            tokio::spawn(async move {
                while let Some(req) = requests.recv().await {
                    let p = req.payload().clone();
                    req.reply(p);
                }
            });
            Ok(())
        }
        Command::Request {
            peer,
            target,
            event,
            payload,
            timeout_ms,
            tag,
        } => {
            let timeout = timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
            let timeout = Duration::from_millis(timeout);
            let fut = match (target, peer) {
                (Some(t), _) => {
                    crate::routing::agent_request_any(node, &t, event, payload, timeout)?
                }
                (None, Some(peer)) => node
                    .request(peer_uuid(&peer)?, event, payload)
                    .timeout(timeout)
                    .send(),
                (None, None) => return Err("request needs \"peer\" or \"target\"".into()),
            };
            let chosen = fut.peer().map(|p| zmesh::uuid_to_string(&p));
            let started = tokio::time::Instant::now();
            tokio::spawn(async move {
                let r = fut.await;
                let mut o = json!({
                    "event": "REPLY",
                    "tag": tag,
                    "peer": chosen,
                    "outcome": reqrep::outcome_of(&r),
                    "rtt_us": started.elapsed().as_micros() as u64,
                });
                match &r {
                    Ok(p) => crate::output::put_bytes(&mut o, "payload", p),
                    Err(e) => o["error"] = json!(e.to_string()),
                }
                print_json(&o);
            });
            Ok(())
        }
        Command::Options { set, remove } => crate::routing::agent_options(node, &set, &remove),
        Command::On { pattern } => {
            let mut events = node.on(&pattern).map_err(err)?;
            print_json(&json!({"event": "SUBSCRIBED", "pattern": pattern}));
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    let mut o = json!({
                        "event": "EMITTED",
                        "pattern": pattern,
                        "publisher": e.publisher.as_ref().map(zmesh::uuid_to_string),
                        "topic": e.topic,
                    });
                    crate::output::put_bytes(&mut o, "payload", &e.payload);
                    print_json(&o);
                }
            });
            Ok(())
        }
        Command::Emit { topic, payload } => {
            let peers = node.emit(&topic, payload).map_err(err)?;
            print_json(&json!({"event": "EMIT", "topic": topic, "peers": peers}));
            Ok(())
        }
        Command::Stop => {
            node.stop().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn commands_parse_into_the_enum() {
        assert_eq!(
            parse(r#"{"cmd":"join","group":"G"}"#),
            Ok(Command::Join { group: "G".into() })
        );
        assert_eq!(
            parse(r#"{"cmd":"whisper","peer":"AB","frames":["a",""]}"#),
            Ok(Command::Whisper {
                peer: "AB".into(),
                frames: vec!["a".into(), "".into()]
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"whispers","peer":"AB","count":3}"#),
            Ok(Command::Whispers {
                peer: "AB".into(),
                prefix: String::new(),
                from: 0,
                count: 3
            })
        );
        assert_eq!(parse(r#"{"cmd":"quit"}"#), Ok(Command::Stop));
        assert_eq!(
            parse(r#"{"cmd":"on","pattern":"a.*"}"#),
            Ok(Command::On {
                pattern: "a.*".into()
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"emit","topic":"a.b","payload":"x"}"#),
            Ok(Command::Emit {
                topic: "a.b".into(),
                payload: "x".into()
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"request","peer":"P","event":"e.x","tag":7}"#),
            Ok(Command::Request {
                peer: Some("P".into()),
                target: None,
                event: "e.x".into(),
                payload: String::new(),
                timeout_ms: None,
                tag: json!(7),
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"options","set":{"role":"db"}}"#),
            Ok(Command::Options {
                set: [("role".to_owned(), "db".to_owned())].into(),
                remove: vec![],
            })
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let e = parse(r#"{"cmd":"fly"}"#).unwrap_err();
        assert!(e.contains("unknown variant `fly`"), "{e}");
        let e = parse(r#"{"cmd":"join"}"#).unwrap_err();
        assert!(e.contains("missing field `group`"), "{e}");
        let e = parse(r#"{"cmd":"whisper","peer":"P","frames":[1]}"#).unwrap_err();
        assert!(e.contains("expected a string"), "{e}");
        let e = parse(r#"{"group":"G"}"#).unwrap_err();
        assert!(e.contains("missing field `cmd`"), "{e}");
        assert!(parse("not json").is_err());
    }
}
