//! `zmesh listen` (print every event until stopped) and `zmesh peers` (discover for a moment,
//! print a table).

use std::time::Duration;

use zmesh::Event;

use crate::output::{self, event_json, print_json};
use crate::signal::StopSignal;
use crate::{resolve, Cli, NodeArgs};

/// Prints one event: a JSON line, or a line of text with everything the peer chose escaped.
pub fn print_event(json: bool, event: &Event) {
    if json {
        print_json(&event_json(event));
    } else {
        println!("{}", output::event_line(event));
    }
}

/// `zmesh listen`: prints events until SIGINT/SIGTERM, then stops politely.
pub async fn listen(cli: &Cli, args: &NodeArgs, group: Option<&str>) -> Result<i32, zmesh::Error> {
    // The signal handler first: a SIGTERM sent after the note below must stop us politely.
    let mut stop = StopSignal::new()?;
    resolve::note_missing_interface(&cli.iface());
    let (node, mut events) = cli.builder(args).start().await?;
    if let Some(g) = group {
        node.join(g)?;
    }
    if !cli.json {
        eprintln!(
            "listening as {} ({}); Ctrl-C to stop",
            node.name(),
            node.uuid_string()
        );
    }
    loop {
        tokio::select! {
            // The signal first: a flood of events must not delay the stop.
            biased;
            _ = stop.recv() => {
                node.stop().await;
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => print_event(cli.json, &ev),
                None => break,
            },
        }
    }
    Ok(0)
}

/// `zmesh peers`: discovers for `wait`, prints the peers, stops politely. The interface must
/// exist (an error otherwise: the command would only print "0 peer(s)").
pub async fn peers(cli: &Cli, args: &NodeArgs, wait: Duration) -> Result<i32, zmesh::Error> {
    resolve::require_interface(&cli.iface())?;
    let mut stop = StopSignal::new()?;
    let (node, mut events) = cli.builder(args).start().await?;
    let deadline = tokio::time::Instant::now() + wait;
    // Drain events while discovering so the queue never fills.
    loop {
        tokio::select! {
            biased;
            _ = stop.recv() => break,
            ev = tokio::time::timeout_at(deadline, events.recv()) => match ev {
                Ok(Some(_)) => {}
                _ => break,
            },
        }
    }
    let mut rows: Vec<_> = node
        .peers()
        .into_iter()
        .filter_map(|p| node.peer_info(p))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if cli.json {
        for p in &rows {
            print_json(&output::peer_json(p));
        }
    } else {
        println!("{}", output::peer_table(&rows));
        println!("{} peer(s)", rows.len());
    }
    node.stop().await;
    Ok(0)
}
