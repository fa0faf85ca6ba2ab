//! How events and peers are printed: one JSON object per line (`--json`), or a line of text.
//!
//! Everything in an event comes from a peer, so human output never writes it raw: control
//! characters (an ESC sequence would drive the terminal), bidirectional-text overrides and bytes
//! that are not UTF-8 are shown escaped (`\x1b`, `\u{202e}`, `\xff`). JSON output keeps content
//! faithfully: `"frames"` holds each frame as text (lossy for bytes that are not UTF-8) and, when
//! any frame is not UTF-8, `"frames_hex"` holds every frame's exact bytes in hex (the same rule
//! as `payload` / `payload_hex` of replies: [`put_bytes`]). UUIDs are printed one way
//! everywhere: 32 upper-case hex digits, like Zyre.

use std::io::Write;

use serde_json::{json, Map, Value};
#[cfg(test)]
use zmesh::Uuid;
use zmesh::{uuid_to_string, Bytes, Event, PeerInfo};

/// Writes one JSON value as a line on stdout and flushes (tests read it line by line).
pub fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Hex digits of `bytes` (lower case, two per byte).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Puts the content frames into `o`: `"frames"` as text, plus `"frames_hex"` (exact bytes) when
/// any frame is not UTF-8.
fn put_frames(o: &mut Value, content: &[Bytes]) {
    o["frames"] = content
        .iter()
        .map(|f| Value::String(String::from_utf8_lossy(f).into_owned()))
        .collect();
    if content.iter().any(|f| std::str::from_utf8(f).is_err()) {
        o["frames_hex"] = content.iter().map(|f| Value::String(hex(f))).collect();
    }
}

/// `s` with control characters and bidirectional-text controls escaped, for a terminal.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    let bidi =
        matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if c.is_control() && (c as u32) < 0x100 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else if c.is_control() || bidi {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// Bytes from a peer as text for a terminal: UTF-8 escaped as [`escape`] does, every byte that
/// is not part of valid UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn headers(h: &[(String, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in h {
        m.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    Value::Object(m)
}

/// The JSON form of an event: `{"event":"ENTER","peer":"<32 HEX>","name":…}`; same schema as the
/// interop agents in `interop/`.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Enter {
            peer,
            name,
            headers: h,
            endpoint,
        } => json!({
            "event": "ENTER", "peer": uuid_to_string(peer), "name": name.as_str(),
            "headers": headers(h), "endpoint": endpoint,
        }),
        Event::Exit { peer, name } => {
            json!({"event": "EXIT", "peer": uuid_to_string(peer), "name": name.as_str()})
        }
        Event::Join { peer, name, group } => {
            json!({"event": "JOIN", "peer": uuid_to_string(peer), "name": name.as_str(), "group": group})
        }
        Event::Leave { peer, name, group } => {
            json!({"event": "LEAVE", "peer": uuid_to_string(peer), "name": name.as_str(), "group": group})
        }
        Event::Whisper {
            peer,
            name,
            content,
        } => {
            let mut o =
                json!({"event": "WHISPER", "peer": uuid_to_string(peer), "name": name.as_str()});
            put_frames(&mut o, content);
            o
        }
        Event::Shout {
            peer,
            name,
            group,
            content,
        } => {
            let mut o = json!({
                "event": "SHOUT", "peer": uuid_to_string(peer), "name": name.as_str(), "group": group,
            });
            put_frames(&mut o, content);
            o
        }
        Event::Evasive { peer, name } => {
            json!({"event": "EVASIVE", "peer": uuid_to_string(peer), "name": name.as_str()})
        }
        Event::Silent { peer, name } => {
            json!({"event": "SILENT", "peer": uuid_to_string(peer), "name": name.as_str()})
        }
        Event::Stop { uuid, name } => {
            json!({"event": "STOP", "peer": uuid_to_string(uuid), "name": name.as_str()})
        }
        other => json!({"event": "OTHER", "debug": format!("{other:?}")}),
    }
}

fn text(content: &[Bytes]) -> String {
    content
        .iter()
        .map(|f| escape_bytes(f))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn header_text(h: &[(String, String)]) -> String {
    h.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A one-line human description of an event (everything a peer chose is escaped).
pub fn event_line(event: &Event) -> String {
    let e = escape;
    match event {
        Event::Enter {
            name,
            endpoint,
            headers: h,
            ..
        } => format!(
            "* {} entered from {} {}",
            e(name),
            e(endpoint),
            header_text(h)
        ),
        Event::Exit { name, .. } => format!("* {} left", e(name)),
        Event::Join { name, group, .. } => format!("* {} joined {}", e(name), e(group)),
        Event::Leave { name, group, .. } => format!("* {} left {}", e(name), e(group)),
        Event::Whisper { name, content, .. } => format!("[{} -> me] {}", e(name), text(content)),
        Event::Shout {
            name,
            group,
            content,
            ..
        } => format!("[{} @ {}] {}", e(name), e(group), text(content)),
        Event::Evasive { name, .. } => format!("* {} is evasive", e(name)),
        Event::Silent { name, .. } => format!("* {} is silent", e(name)),
        Event::Stop { name, .. } => format!("* {} (this node) stopped", e(name)),
        other => e(&format!("* {other:?}")),
    }
}

/// The JSON form of a peer for `zmesh peers --json`.
pub fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "peer": uuid_to_string(&p.uuid), "name": p.name, "endpoint": p.endpoint,
        "groups": p.groups, "headers": headers(&p.headers),
    })
}

/// A plain-text table of peers: name, uuid, endpoint, groups, headers.
pub fn peer_table(rows: &[PeerInfo]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|p| {
            [
                escape(&p.name),
                uuid_to_string(&p.uuid),
                escape(&p.endpoint),
                escape(&p.groups.join(",")),
                header_text(&p.headers),
            ]
        })
        .collect();
    let head = ["NAME", "UUID", "ENDPOINT", "GROUPS", "HEADERS"];
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: [&str; 5]| {
        r.iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(head)];
    for row in &cells {
        out.push(line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out.join("\n")
}

/// Puts `bytes` into `o` as `key` (a string) when they are UTF-8, else as `key_hex`: JSON output
/// keeps binary content faithfully.
pub fn put_bytes(o: &mut Value, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => o[key] = Value::String(s.to_owned()),
        Err(_) => o[format!("{key}_hex")] = Value::String(hex(bytes)),
    }
}

/// The payload argument of `request`, `emit` and `call`: `-` reads stdin to its end, none is empty.
pub async fn read_payload(arg: Option<&str>) -> std::io::Result<Bytes> {
    Ok(match arg {
        Some("-") => {
            let mut buf = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf).await?;
            Bytes::from(buf)
        }
        Some(p) => Bytes::from(p.to_owned()),
        None => Bytes::new(),
    })
}

/// Prints the result of a one-shot command (`request`, `call`) the same way for both: with
/// `--json`, `json` completed with the payload or the error (and a handler's own `code` and
/// `message`); otherwise the reply's bytes as they are on stdout, or the error on stderr.
pub fn print_result<E: std::fmt::Display>(
    json: Option<Value>,
    result: &Result<Bytes, E>,
    handler: Option<(u16, &str)>,
    command: &str,
) -> std::io::Result<()> {
    match (json, result) {
        (Some(mut o), r) => {
            match r {
                Ok(p) => put_bytes(&mut o, "payload", p),
                Err(e) => {
                    o["error"] = Value::String(e.to_string());
                    if let Some((code, message)) = handler {
                        o["code"] = json!(code);
                        o["message"] = json!(message);
                    }
                }
            }
            print_json(&o);
        }
        (None, Ok(p)) => {
            let mut out = std::io::stdout();
            out.write_all(p)?;
            out.flush()?;
        }
        (None, Err(e)) => eprintln!("zmesh {command}: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_escapes_what_peers_send() {
        assert_eq!(escape("plain ✓ text"), "plain ✓ text");
        assert_eq!(escape("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(escape("a\nb\rc\td\u{7f}"), "a\\x0ab\\x0dc\\x09d\\x7f");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_bytes(b"ok \xff\xfe \x1b!"), "ok \\xff\\xfe \\x1b!");
        assert_eq!(escape_bytes("grüß".as_bytes()), "grüß");
        let line = event_line(&Event::Whisper {
            peer: Uuid::nil(),
            name: "ev\x1bil".into(),
            content: vec![
                Bytes::from_static(b"\x1b]0;owned\x07"),
                Bytes::from_static(b"\xc3"),
            ]
            .into(),
        });
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line:?}");
        assert_eq!(line, "[ev\\x1bil -> me] \\x1b]0;owned\\x07 | \\xc3");
    }

    #[test]
    fn json_keeps_binary_content_faithfully() {
        let text = event_json(&Event::Whisper {
            peer: Uuid::nil(),
            name: "n".into(),
            content: vec![Bytes::from_static(b"hi \x1b")].into(),
        });
        assert_eq!(text["frames"], json!(["hi \u{1b}"]));
        assert!(text.get("frames_hex").is_none());
        let bin = event_json(&Event::Shout {
            peer: Uuid::nil(),
            name: "n".into(),
            group: "G".into(),
            content: vec![
                Bytes::from_static(b"ok"),
                Bytes::from_static(&[0xff, 0x00, 0x41]),
            ]
            .into(),
        });
        assert_eq!(bin["frames"], json!(["ok", "\u{fffd}\u{0}A"]));
        assert_eq!(bin["frames_hex"], json!(["6f6b", "ff0041"]));
        assert_eq!(bin["peer"], "00000000000000000000000000000000");
    }
}
