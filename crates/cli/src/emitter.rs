//! `zmesh emit TOPIC [PAYLOAD]` and `zmesh on PATTERN [--count N]`: the distributed event
//! emitter from the shell. Exit status of `emit`: 0 sent (to any number of subscribers,
//! possibly none), 2 bad usage. `on`: 0 after `--count` events or on Ctrl-C.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use zmesh::{OnOptions, Overflow};

use crate::output::{print_json, put_bytes};
use crate::signal::StopSignal;
use crate::{Cli, NodeArgs};

/// `zmesh emit TOPIC [PAYLOAD]`.
#[derive(Args, Debug)]
#[command(
    after_help = "TOPIC is dot-separated (sensor.temp.eu). The event goes to every peer \
with a matching subscription (and to nobody else), straight from this node. Subscriptions use \
`*` for one segment and `**` for any number: nanomitter's catch-all `*` is `**`, NATS's `a.>` is \
`a.*.**`."
)]
pub struct EmitArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The topic.
    topic: String,
    /// The payload (default: empty; `-` reads stdin).
    payload: Option<String>,
    /// Keep it as the topic's retained value (late subscribers that ask get it) and stay up for
    /// --linger to serve it.
    #[arg(long)]
    retain: bool,
    /// Wait for this many subscribers before emitting (up to --discover).
    #[arg(long, default_value_t = 1)]
    expect: usize,
    /// How long to wait for subscribers to be discovered.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discover: Duration,
    /// How long to stay up after emitting (to serve a retained value to late subscribers).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    linger: Duration,
}

/// `zmesh on PATTERN`.
#[derive(Args, Debug)]
pub struct OnArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The pattern (`*` one segment, `**` any number).
    pattern: String,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Also receive the retained values of matching topics.
    #[arg(long)]
    retained: bool,
    /// Hold publishers back when this process falls behind, instead of dropping the oldest.
    #[arg(long)]
    backpressure: bool,
}

pub async fn emit(cli: &Cli, args: &EmitArgs) -> Result<i32, zmesh::Error> {
    let payload = crate::output::read_payload(args.payload.as_deref()).await?;
    let (node, mut events) = cli.builder(&args.node).start().await?;
    crate::resolve::discover(&mut events, args.discover, || {
        node.subscribers(&args.topic).len() >= args.expect
    })
    .await;
    let sent = if args.retain {
        node.emit_retained(&args.topic, payload)?
    } else {
        node.emit_wait(&args.topic, payload).await?
    };
    if cli.json {
        print_json(&json!({"topic": args.topic, "subscribers": sent}));
    } else {
        println!("emitted {} to {sent} subscriber(s)", args.topic);
    }
    if !args.linger.is_zero() {
        let until = tokio::time::sleep(args.linger);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                ev = events.recv() => if ev.is_none() { break },
            }
        }
    }
    node.stop().await;
    Ok(0)
}

pub async fn on(cli: &Cli, args: &OnArgs) -> Result<i32, zmesh::Error> {
    let (node, mut events) = cli.builder(&args.node).start().await?;
    let options = OnOptions {
        overflow: if args.backpressure {
            Overflow::BackPressure
        } else {
            Overflow::default()
        },
        retained: args.retained,
    };
    let mut on = node.on_with(&args.pattern, options)?;
    if !cli.json {
        eprintln!(
            "listening for {} as {} ({}); Ctrl-C to stop",
            args.pattern,
            node.name(),
            node.uuid_string()
        );
    }
    let mut stop = StopSignal::new()?;
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        tokio::select! {
            _ = stop.recv() => break,
            ev = events.recv() => if ev.is_none() { break },
            e = on.recv() => match e {
                Some(e) => {
                    seen += 1;
                    let from = e.publisher.map(|p| zmesh::uuid_to_string(&p));
                    if cli.json {
                        let mut o = json!({"topic": e.topic, "publisher": from, "retained": e.retained});
                        put_bytes(&mut o, "payload", &e.payload);
                        print_json(&o);
                    } else {
                        println!("{}\t{}", e.topic, String::from_utf8_lossy(&e.payload));
                    }
                }
                None => break,
            },
        }
    }
    node.stop().await;
    Ok(0)
}
