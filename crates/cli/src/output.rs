//! How events and peers are printed: one JSON object per line (`--json`), or a line of text.

use std::io::Write;

use serde_json::{json, Map, Value};
use zmesh::{uuid_to_string, Bytes, Event, PeerInfo};

/// Writes one JSON value as a line on stdout and flushes (tests read it line by line).
pub fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn frames(content: &[Bytes]) -> Value {
    Value::Array(
        content
            .iter()
            .map(|f| Value::String(String::from_utf8_lossy(f).into_owned()))
            .collect(),
    )
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
        } => json!({
            "event": "WHISPER", "peer": uuid_to_string(peer), "name": name.as_str(), "frames": frames(content),
        }),
        Event::Shout {
            peer,
            name,
            group,
            content,
        } => json!({
            "event": "SHOUT", "peer": uuid_to_string(peer), "name": name.as_str(), "group": group,
            "frames": frames(content),
        }),
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
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A one-line human description of an event.
pub fn event_line(event: &Event) -> String {
    match event {
        Event::Enter {
            name,
            endpoint,
            headers: h,
            ..
        } => {
            let hs: Vec<String> = h.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("* {name} entered from {endpoint} {}", hs.join(" "))
        }
        Event::Exit { name, .. } => format!("* {name} left"),
        Event::Join { name, group, .. } => format!("* {name} joined {group}"),
        Event::Leave { name, group, .. } => format!("* {name} left {group}"),
        Event::Whisper { name, content, .. } => format!("[{name} -> me] {}", text(content)),
        Event::Shout {
            name,
            group,
            content,
            ..
        } => format!("[{name} @ {group}] {}", text(content)),
        Event::Evasive { name, .. } => format!("* {name} is evasive"),
        Event::Silent { name, .. } => format!("* {name} is silent"),
        Event::Stop { name, .. } => format!("* {name} (this node) stopped"),
        other => format!("* {other:?}"),
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
                p.name.clone(),
                uuid_to_string(&p.uuid),
                p.endpoint.clone(),
                p.groups.join(","),
                p.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
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
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            o[format!("{key}_hex")] = Value::String(hex);
        }
    }
}
