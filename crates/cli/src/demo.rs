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

/// Flags shared with the rest of the CLI.
pub struct GlobalOpts {
    pub iface: Option<InterfaceSpec>,
    pub port: Option<u16>,
    pub json: bool,
}

/// `zmesh demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval: u64,
    /// Time allowed for each step, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

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
    let n = args.nodes.clamp(2, NAMES.len());
    let iface = opts
        .iface
        .clone()
        .unwrap_or(InterfaceSpec::Name("lo".into()));
    let port = opts.port.unwrap_or_else(|| 20000 + (rand_u16() % 20000));
    let (tx, rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    let started = Instant::now();
    for (i, name) in NAMES.iter().take(n).enumerate() {
        let (node, mut events) = Node::builder()
            .name(*name)
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
        NAMES[..n].join(", ")
    ));
    match script(&mut mesh, n, started).await {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("demo failed: {e}");
            for node in &mesh.nodes {
                node.stop().await;
            }
            Ok(1)
        }
    }
}

async fn script(mesh: &mut Mesh, n: usize, started: Instant) -> Result<(), String> {
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
        NAMES[leaver],
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

fn rand_u16() -> u16 {
    // A random beacon port per demo, from the random UUID generator already in use.
    let b = Uuid::new_v4();
    u16::from_be_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}
