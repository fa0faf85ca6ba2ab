//! `zmesh demo`: a small mesh on loopback, in one process, narrated.
//!
//! Five nodes start on `lo` with a random beacon port (so two demos never mix), discover each other,
//! join a group, whisper and shout, and one leaves politely. Every step waits on real events with a
//! timeout and prints how long it took; the command exits non-zero if a step does not complete.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::mpsc;
use zmesh::{Bytes, Event, InterfaceSpec, Node, Uuid};

use crate::output::{event_json, print_json};
use crate::signal::StopSignal;

/// Flags shared with the rest of the CLI.
pub struct GlobalOpts {
    pub iface: Option<InterfaceSpec>,
    pub port: Option<u16>,
    pub json: bool,
}

/// `zmesh demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes, 2 to 50.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(2..=MAX_NODES))]
    nodes: u8,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Time allowed for each step, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// Most nodes a demo runs (a full mesh of n nodes prints n × (n - 1) ENTERs).
const MAX_NODES: i64 = 50;

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// The name of the `i`-th node: the eight names above, then `node9`, `node10`, ...
fn name(i: usize) -> String {
    NAMES
        .get(i)
        .map_or_else(|| format!("node{}", i + 1), |n| n.to_string())
}

struct Mesh {
    nodes: Vec<Node>,
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    json: bool,
    timeout: Duration,
}

impl Mesh {
    /// Waits until `done` says the step is complete, feeding it every event.
    async fn step(
        &mut self,
        what: &str,
        mut done: impl FnMut(usize, &Event) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((i, ev))) => {
                    if self.json {
                        let mut v = event_json(&ev);
                        v["node"] = self.nodes[i].name().into();
                        print_json(&v);
                    }
                    if done(i, &ev) {
                        return Ok(start.elapsed());
                    }
                }
                Ok(None) => return Err(format!("{what}: event streams ended")),
                Err(_) => return Err(format!("{what}: not complete after {:?}", self.timeout)),
            }
        }
    }

    fn say(&self, s: String) {
        if !self.json {
            println!("{s}");
        }
    }
}

/// Runs the demo; returns the process exit code.
pub async fn run(opts: &GlobalOpts, args: &DemoArgs) -> Result<i32, zmesh::Error> {
    let n = usize::from(args.nodes);
    let names: Vec<String> = (0..n).map(name).collect();
    let iface = opts
        .iface
        .clone()
        .unwrap_or(InterfaceSpec::Name("lo".into()));
    let port = opts.port.unwrap_or_else(random_port);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    let started = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let (node, mut events) = Node::builder()
            .name(name)
            .header("X-DEMO-ROLE", if i == 0 { "leader" } else { "member" })
            .interface(iface.clone())
            .beacon_port(port)
            .beacon_interval(Duration::from_millis(args.interval))
            .start()
            .await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if tx.send((i, ev)).is_err() {
                    break;
                }
            }
        });
        nodes.push(node);
    }
    let mut mesh = Mesh {
        nodes,
        rx,
        json: opts.json,
        timeout: Duration::from_secs(args.timeout),
    };
    mesh.say(format!(
        "started {n} nodes on {iface} (beacon port {port}): {}",
        names.join(", ")
    ));
    let mut stop = StopSignal::new()?;
    let outcome = tokio::select! {
        biased;
        _ = stop.recv() => Err(None),
        r = script(&mut mesh, &names, started) => r.map_err(Some),
    };
    match outcome {
        Ok(()) => Ok(0),
        Err(why) => {
            match &why {
                Some(e) => eprintln!("demo failed: {e}"),
                None => eprintln!("demo interrupted; stopping every node politely"),
            }
            stop_all(mesh.nodes.iter().cloned()).await;
            Ok(if why.is_some() { 1 } else { 130 })
        }
    }
}

async fn script(mesh: &mut Mesh, names: &[String], started: Instant) -> Result<(), String> {
    let n = names.len();
    let uuids: Vec<Uuid> = mesh.nodes.iter().map(Node::uuid).collect();
    let index: HashMap<Uuid, usize> = uuids.iter().enumerate().map(|(i, u)| (*u, i)).collect();

    // 1. Discovery: every node sees ENTER from every other.
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    mesh.step("discovery", |i, ev| {
        if let Event::Enter { peer, .. } = ev {
            if let Some(j) = index.get(peer) {
                seen.insert((i, *j));
            }
        }
        seen.len() == n * (n - 1)
    })
    .await?;
    mesh.say(format!(
        "discovery: all {} ENTER events after {:.0} ms from start",
        n * (n - 1),
        started.elapsed().as_secs_f64() * 1000.0
    ));

    // 2. Everybody joins CHAT.
    for node in &mesh.nodes {
        node.join("CHAT").map_err(|e| e.to_string())?;
    }
    let mut joins = HashSet::new();
    let t = mesh
        .step("join", |i, ev| {
            if let Event::Join { peer, group, .. } = ev {
                if group == "CHAT" {
                    joins.insert((i, *peer));
                }
            }
            joins.len() == n * (n - 1)
        })
        .await?;
    mesh.say(format!(
        "groups: everyone joined CHAT, all JOINs seen in {:.1} ms",
        ms(t)
    ));

    // 3. alice whispers to bob (two frames).
    mesh.nodes[0]
        .whisper(
            uuids[1],
            vec![
                Bytes::from_static(b"hi bob"),
                Bytes::from_static(b"(frame 2)"),
            ],
        )
        .map_err(|e| e.to_string())?;
    let t = mesh
        .step("whisper", |i, ev| {
            matches!(ev, Event::Whisper { peer, content, .. } if i == 1 && *peer == uuids[0] && content.len() == 2)
        })
        .await?;
    mesh.say(format!(
        "whisper: alice -> bob delivered in {:.2} ms",
        ms(t)
    ));

    // 4. bob shouts to CHAT.
    mesh.nodes[1]
        .shout("CHAT", vec![Bytes::from_static(b"hello CHAT")])
        .map_err(|e| e.to_string())?;
    let mut got = HashSet::new();
    let t = mesh
        .step("shout", |i, ev| {
            if let Event::Shout { peer, group, .. } = ev {
                if *peer == uuids[1] && group == "CHAT" {
                    got.insert(i);
                }
            }
            got.len() == n - 1
        })
        .await?;
    mesh.say(format!(
        "shout: bob -> CHAT reached all {} others in {:.2} ms",
        n - 1,
        ms(t)
    ));

    // 5. The last node leaves politely.
    let leaver = n - 1;
    let stop_at = Instant::now();
    mesh.nodes[leaver].stop().await;
    let mut exits = HashSet::new();
    mesh.step("leave", |i, ev| {
        if let Event::Exit { peer, .. } = ev {
            if *peer == uuids[leaver] {
                exits.insert(i);
            }
        }
        exits.len() == n - 1
    })
    .await?;
    mesh.say(format!(
        "leave: {} stopped; all {} others saw EXIT after {:.1} ms",
        names[leaver],
        n - 1,
        ms(stop_at.elapsed())
    ));
    for node in &mesh.nodes[..leaver] {
        node.stop().await;
    }
    mesh.say("done.".to_string());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A random beacon port in 20000..40000, so two demos or testers never mix.
pub fn random_port() -> u16 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 20000..40000)
}

/// Stops `nodes` politely, all at once (each stop lingers up to half a second).
pub async fn stop_all(nodes: impl Iterator<Item = Node>) {
    let stops: Vec<_> = nodes
        .map(|n| tokio::spawn(async move { n.stop().await }))
        .collect();
    for s in stops {
        let _ = s.await;
    }
}
