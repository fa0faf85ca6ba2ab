//! Service discovery with headers: a client finds the node offering `X-SERVICE=echo` and uses it.
//!
//! Run: `cargo run -p zmesh --example service_discovery`
//!
//! Headers travel in HELLO and arrive in the ENTER event (and via `Node::peer_header`), so a node can
//! pick the peers that offer what it needs without any registry. Everything stays on loopback.

use std::time::Duration;

use zmesh::{Bytes, Event, Node};

#[tokio::main]
async fn main() -> Result<(), zmesh::Error> {
    let builder = |name: &str| {
        Node::builder()
            .name(name)
            .interface("lo".parse().expect("valid interface spec"))
            .beacon_port(5771)
            .beacon_interval(Duration::from_millis(200))
    };

    // The service: echoes every whisper back.
    let (echo, mut echo_events) = builder("echo-1")
        .header("X-SERVICE", "echo")
        .start()
        .await?;
    tokio::spawn(async move {
        while let Some(event) = echo_events.recv().await {
            if let Event::Whisper { peer, content, .. } = event {
                let _ = echo.whisper(peer, content);
            }
        }
    });
    // A bystander without the header.
    let (_other, _other_events) = builder("bystander").start().await?;

    // The client: waits for a peer with X-SERVICE=echo, then calls it.
    let (client, mut events) = builder("client").start().await?;
    while let Some(event) = events.recv().await {
        match event {
            Event::Enter {
                peer,
                name,
                headers,
                ..
            } => {
                let service = headers
                    .iter()
                    .find(|(k, _)| k == "X-SERVICE")
                    .map(|(_, v)| v.as_str());
                println!("found {name}: service = {service:?}");
                if service == Some("echo") {
                    client.whisper(peer, vec![Bytes::from("ping"), Bytes::from("42")])?;
                }
            }
            Event::Whisper { name, content, .. } => {
                println!("reply from {name}: {content:?}");
                break;
            }
            _ => {}
        }
    }
    client.stop().await;
    Ok(())
}
