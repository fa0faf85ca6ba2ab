//! `zmesh chat`: stdin lines are shouted to the group; `/w NAME text` whispers, `/join g`,
//! `/leave g`, `/peers`, `/quit`.
//!
//! Input is read as bytes: a line that is not UTF-8 is sent as it is (peers get the exact bytes;
//! `listen --json` shows them as `frames_hex`), and the chat goes on. Whatever cannot be done is
//! said on stderr and the chat goes on: an ambiguous `/w NAME` lists the peers of that name and
//! asks for a UUID prefix, an empty whisper is refused, and a shout nobody would receive is
//! reported instead of being lost silently.

use tokio::io::{AsyncBufReadExt, BufReader};
use zmesh::{Bytes, Node};

use crate::listen::print_event;
use crate::signal::StopSignal;
use crate::{output, resolve, Cli, NodeArgs};

/// What a line asks for, when it is not simply sent.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// `/quit`.
    Quit,
    /// Something to tell the user (on stderr).
    Say(String),
}

/// Runs the chat until `/quit`, end of input, SIGINT or SIGTERM (all polite stops).
pub async fn run(cli: &Cli, args: &NodeArgs, group: &str) -> Result<i32, zmesh::Error> {
    // The signal handler first: a SIGTERM sent after the note below must stop us politely.
    let mut stop = StopSignal::new()?;
    resolve::note_missing_interface(&cli.iface());
    let (node, mut events) = cli.builder(args).start().await?;
    node.join(group)?;
    if !cli.json {
        eprintln!(
            "chatting in {group} as {} ({}). /w <name|uuid> text, /join g, /leave g, /peers, /quit",
            node.name(),
            node.uuid_string()
        );
    }
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            _ = stop.recv(), if reading => {
                reading = false;
                node.stop().await;
            }
            ev = events.recv() => match ev {
                Some(ev) => print_event(cli.json, &ev),
                None => break,
            },
            line = lines.next_segment(), if reading => match line {
                Ok(Some(line)) => match chat_line(&node, group, &line) {
                    Ok(()) => {}
                    Err(Outcome::Quit) => {
                        reading = false;
                        node.stop().await;
                    }
                    Err(Outcome::Say(m)) => eprintln!("{m}"),
                },
                Ok(None) => {
                    reading = false;
                    node.stop().await;
                }
                Err(e) => {
                    eprintln!("zmesh: cannot read stdin: {e}");
                    reading = false;
                    node.stop().await;
                }
            },
        }
    }
    Ok(0)
}

/// `bytes` without leading and trailing ASCII whitespace (`\r` of CRLF input included).
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// Splits at the first space: (first word, rest without leading whitespace).
fn word(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b' ') {
        Some(i) => (&bytes[..i], trim(&bytes[i + 1..])),
        None => (bytes, &[]),
    }
}

/// A command argument that must be text (a group or peer name).
fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Outcome> {
    std::str::from_utf8(bytes).map_err(|_| Outcome::Say(format!("{what} must be UTF-8 text")))
}

fn chat_line(node: &Node, group: &str, line: &[u8]) -> Result<(), Outcome> {
    let err = |e: zmesh::Error| Outcome::Say(format!("error: {e}"));
    let line = trim(line);
    if line.is_empty() {
        return Ok(());
    }
    if line[0] != b'/' {
        return match node.shout(group, vec![Bytes::copy_from_slice(line)]) {
            Ok(0) if node.peers().is_empty() => {
                Err(Outcome::Say("no peers yet: message not sent".into()))
            }
            Ok(0) => Err(Outcome::Say(format!(
                "nobody else is in {group} yet: message not sent"
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(err(e)),
        };
    }
    let (cmd, rest) = word(line);
    match cmd {
        b"/quit" => Err(Outcome::Quit),
        b"/join" => node.join(text(rest, "a group name")?).map_err(err),
        b"/leave" => node.leave(text(rest, "a group name")?).map_err(err),
        b"/peers" => {
            let mut rows: Vec<_> = node
                .peers()
                .into_iter()
                .filter_map(|p| node.peer_info(p))
                .collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            println!("{}", output::peer_table(&rows));
            Ok(())
        }
        b"/w" => {
            let (who, message) = word(rest);
            if who.is_empty() {
                return Err(Outcome::Say("usage: /w NAME|UUID text".into()));
            }
            let who = text(who, "a peer name")?;
            if message.is_empty() {
                return Err(Outcome::Say(format!(
                    "nothing to whisper: /w {} text",
                    output::escape(who)
                )));
            }
            let peer = resolve::peer(node, who)
                .map_err(|e| Outcome::Say(output::escape(&e.to_string())))?;
            node.whisper(peer, vec![Bytes::copy_from_slice(message)])
                .map_err(err)
        }
        other => Err(Outcome::Say(format!(
            "unknown command {}",
            output::escape_bytes(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_bytes() {
        assert_eq!(trim(b"  hi there \r"), b"hi there");
        assert_eq!(trim(b" \r\n"), b"");
        assert_eq!(word(b"/w bob  hi \xff"), (&b"/w"[..], &b"bob  hi \xff"[..]));
        assert_eq!(word(b"bob  hi"), (&b"bob"[..], &b"hi"[..]));
        assert_eq!(word(b"/peers"), (&b"/peers"[..], &b""[..]));
        assert!(text(b"\xff", "a group name").is_err());
    }
}
