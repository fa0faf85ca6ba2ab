//! The README's library example. Run it twice, in two terminals (loopback only):
//!     cargo run -p zmesh --example readme -- alice
//!     cargo run -p zmesh --example readme -- bob
use zmesh::{Event, Node};

#[tokio::main]
async fn main() -> Result<(), zmesh::Error> {
    let me = std::env::args().nth(1).unwrap_or_else(|| "alice".into());
    let (node, mut events) = Node::builder()
        .name(&me)
        .header("X-ROLE", "greeter")
        .interface("lo".parse().unwrap()) // pin the interface: nothing leaves this machine
        .start()
        .await?;
    node.join("CHAT")?;
    // Answer requests for "greet" from any peer, in a task of their own.
    let mut requests = node.on_request("greet")?;
    let name = me.clone();
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let greeting = format!(
                "hello {}, {name} here",
                String::from_utf8_lossy(req.payload())
            );
            req.reply(greeting);
        }
    });
    while let Some(event) = events.recv().await {
        match event {
            Event::Enter { peer, name, .. } => {
                println!("{name} entered");
                node.whisper(peer, vec![format!("hi {name}, from {me}").into()])?;
                match node.request(peer, "greet", me.clone()).await {
                    Ok(reply) => println!("{name} answered: {}", String::from_utf8_lossy(&reply)),
                    Err(e) => println!("{name} did not answer: {e}"),
                }
            }
            Event::Join { name, group, .. } => {
                println!("{name} joined {group}");
                node.shout(&group, vec![format!("welcome to {group}, {name}").into()])?;
            }
            Event::Whisper { name, content, .. } => {
                println!("{name} whispers: {}", String::from_utf8_lossy(&content[0]))
            }
            Event::Shout {
                name,
                group,
                content,
                ..
            } => {
                println!(
                    "{name} shouts to {group}: {}",
                    String::from_utf8_lossy(&content[0])
                )
            }
            Event::Exit { name, .. } => println!("{name} left"),
            _ => {}
        }
    }
    Ok(())
}
