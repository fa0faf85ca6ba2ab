//! One simulated application: the body of the Zyre tester's child thread, plus the API-level checks.
//!
//! Each running node has one task that reads its events and, about once a second, joins or leaves
//! one of the groups (and sometimes shouts). Its reactions follow the chapter's pseudo-code:
//!
//! ```text
//! ENTER   -> WHISPER to the new peer
//! EXIT    -> WHISPER to the departed peer (must fail: the peer is unknown now)
//! WHISPER -> answer with a WHISPER half of the time
//! SHOUT   -> answer with a WHISPER a third of the time, with a SHOUT another third
//! ```
//!
//! Shouts are answered with a shout only when they are originals (hop 0), so a shout cannot start
//! an avalanche; whisper chains end on their own (each step continues with probability 1/2).
//!
//! # What is checked here, on every event
//!
//! The node's event stream is replayed against a model of "what this node knows": the set of
//! entered peers and the groups each is in. At the API level the rule "the first message from a
//! peer is HELLO" means: no JOIN, LEAVE, WHISPER, SHOUT, EVASIVE, SILENT or EXIT for a peer before
//! its ENTER (and no second ENTER without an EXIT in between). Group events must be consistent (no
//! JOIN for a group the peer is already in, no LEAVE for one it is not in), nothing may follow STOP,
//! and every peer must be one of ours (a foreign UUID means the beacon port was not isolated).
//!
//! Whispers are tagged with a sequence number per (sender, receiver) pair and carry a payload
//! derived from it, so the receiver detects gaps, reordering, duplicates and corruption. Whether a
//! gap is a *loss* is decided at the end (see `ledger` in the parent module): only pairs that both
//! stayed up and never saw each other EXIT count.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use zmesh::{Bytes, Event, Events, Node, Uuid};

use super::rng::Rng;
use super::Shared;

/// Whisper replies stop after this many hops even if the coin keeps saying "answer".
const MAX_HOPS: u8 = 16;

/// What one receiver knows about the whispers of one sender.
#[derive(Debug, Default, Clone)]
pub struct RecvPair {
    /// Whispers received from that sender.
    pub count: u64,
    /// Highest sequence number seen.
    pub last: u64,
    /// Whispers whose sequence number was not `last + 1` (gap, reorder or duplicate).
    pub anomalies: u64,
}

/// Everything the tester knows about one node incarnation; shared between its task and the
/// orchestrator (which reads it for the convergence and loss checks).
#[derive(Debug)]
pub struct NodeRecord {
    /// The node's UUID.
    pub uuid: Uuid,
    /// Its name (`t<slot>.<incarnation>`), for messages.
    pub name: String,
    /// Groups it is in (the truth other nodes' views are compared with).
    pub own_groups: BTreeSet<String>,
    /// Its ZRE status counter: one increment per real JOIN or LEAVE, mod 256.
    pub status: u8,
    /// Peers it saw ENTER (and not EXIT since), with the groups its events say they are in.
    pub view: HashMap<Uuid, BTreeSet<String>>,
    /// Peers it ever saw EXIT.
    pub exited: HashSet<Uuid>,
    /// Whispers sent per receiver (the last sequence number used).
    pub sent: HashMap<Uuid, u64>,
    /// Whispers received per sender.
    pub recv: HashMap<Uuid, RecvPair>,
    /// A STOP event was seen.
    pub got_stop: bool,
}

impl NodeRecord {
    fn new(uuid: Uuid, name: String) -> NodeRecord {
        NodeRecord {
            uuid,
            name,
            own_groups: BTreeSet::new(),
            status: 0,
            view: HashMap::new(),
            exited: HashSet::new(),
            sent: HashMap::new(),
            recv: HashMap::new(),
            got_stop: false,
        }
    }
}

/// Locks a record, surviving a poisoned lock (a panic is counted separately).
pub fn lock(r: &Mutex<NodeRecord>) -> MutexGuard<'_, NodeRecord> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulated application of one node.
pub struct NodeApp {
    shared: Arc<Shared>,
    record: Arc<Mutex<NodeRecord>>,
    node: Node,
    rng: Rng,
}

impl NodeApp {
    /// Creates the application for a freshly started node.
    pub fn new(shared: Arc<Shared>, node: Node, name: String, rng: Rng) -> NodeApp {
        let record = Arc::new(Mutex::new(NodeRecord::new(node.uuid(), name)));
        NodeApp {
            shared,
            record,
            node,
            rng,
        }
    }

    /// The record the orchestrator reads.
    pub fn record(&self) -> Arc<Mutex<NodeRecord>> {
        self.record.clone()
    }

    /// Runs until the node's event stream ends (after STOP, or at once after an abort).
    pub async fn run(mut self, mut events: Events) {
        let (lo, hi) = (Duration::from_millis(500), Duration::from_millis(1500));
        let mut next_tick = Instant::now() + self.rng.between(lo, hi);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    if !self.shared.quiet.load(Ordering::Relaxed) {
                        self.tick();
                    }
                    next_tick = Instant::now() + self.rng.between(lo, hi);
                }
            }
        }
    }

    /// About once a second: join or leave one random group, and shout half of the time.
    fn tick(&mut self) {
        let groups = self.shared.groups;
        let g = format!("G{}", self.rng.below(groups as u64));
        let record = self.record.clone();
        let mut rec = lock(&record);
        let result = if rec.own_groups.contains(&g) {
            let r = self.node.leave(&g);
            rec.own_groups.remove(&g);
            r
        } else {
            let r = self.node.join(&g);
            rec.own_groups.insert(g);
            r
        };
        rec.status = rec.status.wrapping_add(1);
        // A node being stopped may fail commands (the probe in `retire` checks how); a running
        // one must not.
        if let Err(e) = result {
            if self.shared.is_running(rec.uuid) {
                self.shared
                    .violation("api_error", format!("{}: join/leave failed: {e}", rec.name));
            }
        }
        if self.rng.chance(1, 2) {
            let g = format!("G{}", self.rng.below(groups as u64));
            self.shout(&rec.name, &g, 0);
        }
    }

    fn shout(&mut self, me: &str, group: &str, hop: u8) {
        let len = self.rng.below(200) as usize;
        let seed = self.rng.next_u64();
        let frames = vec![
            Bytes::from_static(b"S"),
            Bytes::from(hop.to_string()),
            Bytes::from(seed.to_string()),
            Bytes::from(payload(seed, len)),
        ];
        match self.node.shout(group, frames) {
            Ok(n) => {
                let c = &self.shared.counters;
                c.shouts_sent.fetch_add(1, Ordering::Relaxed);
                c.shout_copies.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if self.shared.is_running(self.node.uuid()) {
                    self.shared
                        .violation("api_error", format!("{me}: shout to {group} failed: {e}"));
                }
            }
        }
    }

    /// Whispers the next tagged message to `peer`; the sequence number is used only if it was sent.
    fn whisper(&self, rec: &mut NodeRecord, peer: Uuid, hop: u8) -> bool {
        let seq = rec.sent.get(&peer).copied().unwrap_or(0) + 1;
        let frames = vec![
            Bytes::from_static(b"W"),
            Bytes::from(hop.to_string()),
            Bytes::from(seq.to_string()),
            Bytes::from(payload(seq, (seq % 97) as usize)),
        ];
        let c = &self.shared.counters;
        match self.node.whisper(peer, frames) {
            Ok(()) => {
                rec.sent.insert(peer, seq);
                c.whispers_sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                c.whisper_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        let record = self.record.clone();
        let mut rec = lock(&record);
        let shared = self.shared.clone();
        let c = &shared.counters;
        let me = rec.name.clone();
        if rec.got_stop {
            shared.violation("event_after_stop", format!("{me}: {ev:?} after STOP"));
        }
        if let Event::Stop { uuid, .. } = &ev {
            c.stop.fetch_add(1, Ordering::Relaxed);
            if *uuid != rec.uuid {
                shared.violation("bad_stop", format!("{me}: STOP carries another uuid"));
            }
            rec.got_stop = true;
            return;
        }
        let Some(peer) = ev.peer() else {
            return; // only STOP has no peer
        };
        if peer == rec.uuid {
            shared.violation("self_event", format!("{me}: event about itself: {ev:?}"));
            return;
        }
        let pname = shared.name_of(peer);
        if pname.is_none() {
            shared.violation(
                "foreign_peer",
                format!(
                    "{me}: event from a node the tester never started ({peer}); port not isolated?"
                ),
            );
        }
        let pname = pname.unwrap_or_else(|| peer.to_string());
        let entered = rec.view.contains_key(&peer);
        let before_enter = |kind: &str| {
            shared.violation(
                "event_before_enter",
                format!("{me}: {kind} from {pname} before its ENTER"),
            )
        };
        match ev {
            Event::Enter { endpoint, .. } => {
                c.enter.fetch_add(1, Ordering::Relaxed);
                if entered {
                    shared.violation(
                        "double_enter",
                        format!("{me}: second ENTER for {pname} without EXIT"),
                    );
                }
                if shared.loopback_only && !endpoint.starts_with("tcp://127.") {
                    shared.violation(
                        "non_loopback_endpoint",
                        format!("{me}: {pname} entered with endpoint {endpoint}"),
                    );
                }
                rec.view.insert(peer, BTreeSet::new());
                self.whisper(&mut rec, peer, 0);
            }
            Event::Exit { .. } => {
                c.exit.fetch_add(1, Ordering::Relaxed);
                if !entered {
                    before_enter("EXIT");
                }
                rec.view.remove(&peer);
                rec.exited.insert(peer);
                if shared.is_running(peer) {
                    c.exit_of_live.fetch_add(1, Ordering::Relaxed);
                    shared.violation(
                        "exit_of_live_peer",
                        format!("{me}: EXIT for {pname}, which is still running"),
                    );
                }
                // The chapter's tester whispers to the departed peer: it must fail cleanly.
                if self
                    .node
                    .whisper(peer, vec![Bytes::from_static(b"X")])
                    .is_ok()
                {
                    c.whisper_to_exited_ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::Join { group, .. } => {
                c.join.fetch_add(1, Ordering::Relaxed);
                match rec.view.get_mut(&peer) {
                    None => before_enter("JOIN"),
                    Some(gs) => {
                        if !gs.insert(group.clone()) {
                            shared.violation(
                                "duplicate_join",
                                format!("{me}: JOIN {group} from {pname}, already in it"),
                            );
                        }
                    }
                }
            }
            Event::Leave { group, .. } => {
                c.leave.fetch_add(1, Ordering::Relaxed);
                match rec.view.get_mut(&peer) {
                    None => before_enter("LEAVE"),
                    Some(gs) => {
                        if !gs.remove(&group) {
                            shared.violation(
                                "leave_without_join",
                                format!("{me}: LEAVE {group} from {pname}, not in it"),
                            );
                        }
                    }
                }
            }
            Event::Whisper { content, .. } => {
                c.whisper.fetch_add(1, Ordering::Relaxed);
                if !entered {
                    before_enter("WHISPER");
                    return;
                }
                if content.len() == 1 && &content[0][..] == b"X" {
                    // Our probe to a departed peer that had already re-entered: legitimate.
                    c.exit_probes_received.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match parse_whisper(&content) {
                    Some((hop, seq)) => {
                        let pair = rec.recv.entry(peer).or_default();
                        if seq != pair.last + 1 {
                            pair.anomalies += 1;
                        }
                        pair.last = pair.last.max(seq);
                        pair.count += 1;
                        let frozen = shared.frozen.load(Ordering::Relaxed);
                        if !frozen && hop < MAX_HOPS && self.rng.chance(1, 2) {
                            self.whisper(&mut rec, peer, hop + 1);
                        }
                    }
                    None => shared.violation(
                        "corrupt_whisper",
                        format!("{me}: whisper from {pname} does not parse or verify: {content:?}"),
                    ),
                }
            }
            Event::Shout { group, content, .. } => {
                c.shout.fetch_add(1, Ordering::Relaxed);
                if !entered {
                    before_enter("SHOUT");
                    return;
                }
                let Some(hop) = parse_shout(&content) else {
                    shared.violation(
                        "corrupt_shout",
                        format!("{me}: shout from {pname} does not parse or verify"),
                    );
                    return;
                };
                if shared.frozen.load(Ordering::Relaxed) {
                    return;
                }
                match self.rng.below(3) {
                    0 => {
                        self.whisper(&mut rec, peer, 1);
                    }
                    1 if hop == 0 => self.shout(&me, &group, 1),
                    _ => {}
                }
            }
            Event::Evasive { .. } | Event::Silent { .. } => {
                let silent = matches!(ev, Event::Silent { .. });
                if silent {
                    c.silent.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.evasive.fetch_add(1, Ordering::Relaxed);
                }
                if !entered {
                    before_enter(if silent { "SILENT" } else { "EVASIVE" });
                }
                if shared.is_running(peer) {
                    c.evasive_of_live.fetch_add(1, Ordering::Relaxed);
                }
            }
            // STOP is handled above; events added later are not part of the tester's model.
            _ => {}
        }
    }
}

/// Deterministic payload for a tag, so the receiver can verify integrity.
fn payload(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_add(i as u64) % 251) as u8)
        .collect()
}

fn parse_num(b: &Bytes) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `W, hop, seq, payload(seq, seq % 97)` → (hop, seq).
fn parse_whisper(content: &[Bytes]) -> Option<(u8, u64)> {
    if content.len() != 4 || &content[0][..] != b"W" {
        return None;
    }
    let hop = u8::try_from(parse_num(&content[1])?).ok()?;
    let seq = parse_num(&content[2])?;
    (seq > 0 && content[3][..] == payload(seq, (seq % 97) as usize)[..]).then_some((hop, seq))
}

/// `S, hop, seed, payload(seed, any length < 200)` → hop.
fn parse_shout(content: &[Bytes]) -> Option<u8> {
    if content.len() != 4 || &content[0][..] != b"S" {
        return None;
    }
    let hop = u8::try_from(parse_num(&content[1])?).ok()?;
    let seed = parse_num(&content[2])?;
    let len = content[3].len();
    (len < 200 && content[3][..] == payload(seed, len)[..]).then_some(hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_and_shout_tags_round_trip_and_detect_corruption() {
        let w = vec![
            Bytes::from_static(b"W"),
            Bytes::from("3"),
            Bytes::from("150"),
            Bytes::from(payload(150, 150 % 97)),
        ];
        assert_eq!(parse_whisper(&w), Some((3, 150)));
        let mut bad = w.clone();
        bad[3] = Bytes::from(payload(151, 150 % 97));
        assert_eq!(parse_whisper(&bad), None);
        let s = vec![
            Bytes::from_static(b"S"),
            Bytes::from("0"),
            Bytes::from("99"),
            Bytes::from(payload(99, 17)),
        ];
        assert_eq!(parse_shout(&s), Some(0));
        assert_eq!(parse_shout(&w), None);
    }
}
