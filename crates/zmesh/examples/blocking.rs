//! The blocking facade: a zmesh node from plain threads, no async code at all (as Zyre's users
//! call `zyre_recv`). Run it twice, in two terminals:
//!
//! ```text
//! cargo run -p zmesh --example blocking -- alice
//! cargo run -p zmesh --example blocking -- bob
//! ```
//!
//! Each greets every peer that enters, prints what it receives, and stops after 10 s (or after
//! 3 greetings). Pinned to loopback (`lo`) and beacon port 5771, so nothing leaves the machine.

use std::time::{Duration, Instant};

use zmesh::blocking::{Node, RecvTimeoutError};
use zmesh::Event;

fn main() -> Result<(), zmesh::Error> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "plain".into());
    let (node, mut events) = Node::start(
        zmesh::Node::builder()
            .name(name.clone())
            .interface("lo".parse().expect("valid interface spec"))
            .beacon_port(5771),
    )?;
    node.join("CHAT")?;
    println!(
        "{name} ({}) is up; waiting for peers",
        zmesh::uuid_to_string(&node.uuid())
    );
    let until = Instant::now() + Duration::from_secs(10);
    let mut greetings = 0;
    while greetings < 3 {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Enter {
                peer, name: who, ..
            }) => {
                println!("{who} entered; greeting it");
                node.whisper(peer, vec![format!("hello {who}, this is {name}").into()])?;
            }
            Ok(Event::Whisper {
                name: who, content, ..
            }) => {
                greetings += 1;
                println!("{who} says {}", String::from_utf8_lossy(&content[0]));
            }
            Ok(Event::Exit { name: who, .. }) => println!("{who} left"),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => break,
            Err(e) => return Err(zmesh::Error::Config(e.to_string())),
        }
    }
    node.stop();
    println!("{name} stopped");
    Ok(())
}
