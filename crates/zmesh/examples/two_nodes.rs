//! Two nodes in one process find each other on loopback, join a group, whisper and shout.
//!
//! Run: `cargo run -p zmesh --example two_nodes`
//!
//! Both nodes are pinned to the loopback interface (`lo`) and a beacon port of their own, so the
//! example never sends anything onto a real network.

use std::time::Duration;

use zmesh::{Bytes, Event, Node};

#[tokio::main]
async fn main() -> Result<(), zmesh::Error> {
    let port = 5770;
    let start = |name: &'static str| {
        Node::builder()
            .name(name)
            .header("X-EXAMPLE", "two_nodes")
            .interface("lo".parse().expect("valid interface spec"))
            .beacon_port(port)
            .beacon_interval(Duration::from_millis(200))
            .start()
    };
    let (alice, mut alice_events) = start("alice").await?;
    let (bob, mut bob_events) = start("bob").await?;
    alice.join("CHAT")?;
    bob.join("CHAT")?;

    // Bob greets whoever enters, and shouts once alice is in CHAT.
    let bob_task = tokio::spawn(async move {
        while let Some(event) = bob_events.recv().await {
            println!("bob   <- {event:?}");
            match event {
                Event::Enter { peer, name, .. } => {
                    bob.whisper(peer, vec![Bytes::from(format!("welcome, {name}"))])?;
                }
                Event::Join { group, .. } if group == "CHAT" => {
                    bob.shout("CHAT", vec![Bytes::from("hello, CHAT")])?;
                }
                Event::Whisper { .. } => {
                    bob.stop().await;
                }
                _ => {}
            }
        }
        Ok::<_, zmesh::Error>(())
    });

    // Alice waits for the whisper and the shout, replies, and sees bob leave.
    let mut got = (false, false);
    while let Some(event) = alice_events.recv().await {
        println!("alice <- {event:?}");
        match event {
            Event::Whisper { peer, .. } => {
                got.0 = true;
                alice.whisper(peer, vec![Bytes::from("thanks!")])?;
            }
            Event::Shout { .. } => got.1 = true,
            Event::Exit { name, .. } => {
                println!(
                    "{name} left; whisper received: {}, shout received: {}",
                    got.0, got.1
                );
                break;
            }
            _ => {}
        }
    }
    alice.stop().await;
    bob_task.await.expect("bob's task")?;
    Ok(())
}
