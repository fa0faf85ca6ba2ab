//! Request/reply between two nodes on loopback, in one process: `bob` answers `greet` requests,
//! `alice` asks him once he has entered, then asks for an event nobody handles.
//!
//! ```sh
//! cargo run -p zmesh --example request_reply
//! ```

use std::time::Duration;

use zmesh::{Event, Node, RequestError};

#[tokio::main]
async fn main() -> Result<(), zmesh::Error> {
    // Loopback and a beacon port of our own: this example never touches the LAN.
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let start = |name: &'static str| {
        Node::builder()
            .name(name)
            .interface("lo".parse().unwrap())
            .beacon_port(port)
            .beacon_interval(Duration::from_millis(100))
            .start()
    };
    let (bob, _bob_events) = start("bob").await?;
    let mut greet = bob.on_request("greet")?;
    tokio::spawn(async move {
        while let Some(req) = greet.recv().await {
            let greeting = format!("hello, {}", String::from_utf8_lossy(req.payload()));
            req.reply(greeting);
        }
    });
    let (alice, mut events) = start("alice").await?;
    while let Some(event) = events.recv().await {
        if let Event::Enter { peer, name, .. } = event {
            let reply = alice.request(peer, "greet", "alice").await;
            println!(
                "{name} answered: {:?}",
                reply.map(|r| String::from_utf8_lossy(&r).into_owned())
            );
            match alice.request(peer, "no.such.event", "").await {
                Err(RequestError::NoResponders(why)) => {
                    println!("as expected, no responders: {why}")
                }
                other => println!("unexpected: {other:?}"),
            }
            break;
        }
    }
    alice.stop().await;
    bob.stop().await;
    Ok(())
}
