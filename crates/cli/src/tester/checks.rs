//! The end-of-run checks: convergence of every view, the whisper ledger, the protocol counters.

use std::collections::{BTreeSet, HashMap, HashSet};

use zmesh::{NodeStats, Uuid};

use super::node::lock;
use super::{Running, Shared, Tester};

impl Tester {
    /// Every running node's view against the truth; returns the differences (empty = converged).
    pub(super) fn check_convergence(&self) -> Vec<String> {
        struct Truth {
            uuid: Uuid,
            name: String,
            groups: BTreeSet<String>,
            status: u8,
        }
        let live: Vec<&Running> = self.slots.iter().flatten().collect();
        let mut out = Vec::new();
        let mut truth = Vec::new();
        for r in &live {
            let (name, groups, status) = {
                let rec = lock(&r.record);
                (rec.name.clone(), rec.own_groups.clone(), rec.status)
            };
            let actual: BTreeSet<String> = r.node.own_groups().into_iter().collect();
            if actual != groups {
                out.push(format!(
                    "{name}: own_groups() {actual:?} but it joined {groups:?}"
                ));
            }
            truth.push(Truth {
                uuid: r.node.uuid(),
                name,
                groups,
                status,
            });
        }
        for (i, r) in live.iter().enumerate() {
            let me = &truth[i].name;
            let want: BTreeSet<Uuid> = truth
                .iter()
                .filter(|t| t.uuid != truth[i].uuid)
                .map(|t| t.uuid)
                .collect();
            let have: BTreeSet<Uuid> = r.node.peers().into_iter().collect();
            if have != want {
                out.push(format!(
                    "{me}: knows {} peers, {} running; missing {:?}, extra {:?}",
                    have.len(),
                    want.len(),
                    names(&self.shared, want.difference(&have)),
                    names(&self.shared, have.difference(&want)),
                ));
                continue;
            }
            for g in 0..self.args.groups {
                let g = format!("G{g}");
                let want: BTreeSet<Uuid> = truth
                    .iter()
                    .filter(|t| t.uuid != truth[i].uuid && t.groups.contains(&g))
                    .map(|t| t.uuid)
                    .collect();
                let have: BTreeSet<Uuid> = r.node.peers_by_group(&g).into_iter().collect();
                if have != want {
                    out.push(format!(
                        "{me}: group {g} members missing {:?}, extra {:?}",
                        names(&self.shared, want.difference(&have)),
                        names(&self.shared, have.difference(&want)),
                    ));
                }
            }
            let view = lock(&r.record).view.clone();
            for t in truth.iter().filter(|t| t.uuid != truth[i].uuid) {
                match r.node.peer_info(t.uuid) {
                    Some(info) if info.status != t.status => out.push(format!(
                        "{me}: status of {} is {} but it counts {}",
                        t.name, info.status, t.status
                    )),
                    None => out.push(format!("{me}: no peer_info for {}", t.name)),
                    _ => {}
                }
                match view.get(&t.uuid) {
                    Some(gs) if *gs != t.groups => out.push(format!(
                        "{me}: its events say {} is in {gs:?}, truth {:?}",
                        t.name, t.groups
                    )),
                    None => out.push(format!("{me}: never got (or lost) ENTER for {}", t.name)),
                    _ => {}
                }
            }
        }
        out
    }

    /// Compares whisper counts for every pair of survivors that never saw each other EXIT.
    pub(super) fn check_ledger(&self) -> Ledger {
        let live: Vec<(Uuid, NodeRecordSnapshot)> = self
            .slots
            .iter()
            .flatten()
            .map(|r| {
                let rec = lock(&r.record);
                (
                    rec.uuid,
                    NodeRecordSnapshot {
                        name: rec.name.clone(),
                        exited: rec.exited.clone(),
                        sent: rec.sent.clone(),
                        recv: rec
                            .recv
                            .iter()
                            .map(|(k, v)| (*k, (v.count, v.anomalies)))
                            .collect(),
                    },
                )
            })
            .collect();
        let mut l = Ledger::default();
        for (a, ra) in &live {
            for (b, rb) in &live {
                if a == b {
                    continue;
                }
                if ra.exited.contains(b) || rb.exited.contains(a) {
                    l.excluded_pairs += 1;
                    continue;
                }
                let sent = ra.sent.get(b).copied().unwrap_or(0);
                let (got, anomalies) = rb.recv.get(a).copied().unwrap_or((0, 0));
                l.checked_pairs += 1;
                l.checked_sent += sent;
                l.checked_received += got;
                if sent == 0 {
                    l.pairs_without_whisper += 1;
                }
                if got < sent {
                    l.lost += sent - got;
                    self.shared.violation(
                        "whisper_lost",
                        format!("{} -> {}: sent {sent}, received {got}", ra.name, rb.name),
                    );
                } else if got > sent {
                    self.shared.violation(
                        "whisper_duplicated",
                        format!("{} -> {}: sent {sent}, received {got}", ra.name, rb.name),
                    );
                }
                if anomalies > 0 {
                    l.out_of_order += anomalies;
                    self.shared.violation(
                        "whisper_out_of_order",
                        format!(
                            "{} -> {}: {anomalies} whisper(s) not in sequence",
                            ra.name, rb.name
                        ),
                    );
                }
            }
        }
        l
    }
}

/// Per-node data the whisper ledger needs.
struct NodeRecordSnapshot {
    name: String,
    exited: HashSet<Uuid>,
    sent: HashMap<Uuid, u64>,
    recv: HashMap<Uuid, (u64, u64)>,
}

/// The result of the whisper-loss check.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) checked_pairs: u64,
    pub(super) excluded_pairs: u64,
    pub(super) pairs_without_whisper: u64,
    pub(super) checked_sent: u64,
    pub(super) checked_received: u64,
    pub(super) lost: u64,
    pub(super) out_of_order: u64,
}

fn names<'a>(shared: &Shared, it: impl Iterator<Item = &'a Uuid>) -> Vec<String> {
    it.map(|u| shared.name_of(*u).unwrap_or_else(|| u.to_string()))
        .collect()
}

/// The counters that must be 0 when only zmesh nodes talk to each other, whatever the churn.
///
/// * `sequence_gaps`, `status_mismatches`: a session is one ZMTP connection over TCP, which neither
///   loses nor reorders; a crash (abort) or a polite stop *ends* the session, and the next one
///   starts with a HELLO carrying sequence 1 and the sender's current status. So kills cannot
///   create gaps: a gap needs a later message after a lost one on the same session, and a dead
///   node sends nothing later. A gap or mismatch is therefore always a bug.
/// * `malformed`, `bad_identity`: zmesh encodes correctly; anything else is a codec bug.
/// * `dropped_events`: the tester drains events promptly; a drop would invalidate the API checks.
/// * `self_connections`, `bad_endpoint`: every node has its own endpoint and announces it.
///
/// `not_hello_first` is *not* in this list: it counts any non-HELLO from a UUID the receiver has no
/// ready session with, and two legitimate races produce it: (1) a polite stop sends GOODBYE over
/// TCP and then the port-0 beacon over UDP; the receiver usually handles the beacon first (EXIT),
/// so the GOODBYE (and any message still in flight) arrives from an "unknown" peer; (2) after a
/// peer was removed on one side only (expiry under load, send failure) its messages keep arriving
/// until the re-handshake. Killed nodes send nothing, so kills alone never produce it: the summary
/// flags it when there was no polite stop and no one-sided removal. At the API level the
/// HELLO-first rule is checked strictly (no event for a peer before its ENTER).
pub(super) fn must_be_zero(s: &NodeStats) -> Vec<(&'static str, u64)> {
    vec![
        ("sequence_gaps", s.engine.sequence_gaps),
        ("status_mismatches", s.engine.status_mismatches),
        ("malformed", s.engine.malformed),
        ("bad_identity", s.engine.bad_identity),
        ("dropped_events", s.dropped_events),
        ("self_connections", s.engine.self_connections),
        ("bad_endpoint", s.engine.bad_endpoint),
    ]
}
