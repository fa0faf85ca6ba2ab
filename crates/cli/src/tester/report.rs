//! Measurements the orchestrator keeps besides the per-node checks: resident memory samples and the
//! summed engine/node counters, plus their JSON form for the summary.

use std::time::Duration;

use serde_json::{json, Value};
use zmesh::NodeStats;

/// Current resident set size of this process in KiB (`VmRSS` in `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// RSS samples taken once a second, split at the end of the warm-up.
#[derive(Debug, Default)]
pub struct RssLog {
    /// (seconds since start, KiB).
    pub samples: Vec<(f64, u64)>,
}

/// The verdict on memory.
#[derive(Debug)]
pub struct RssVerdict {
    pub min: u64,
    pub max: u64,
    pub warmup_max: u64,
    pub after_warmup_max: u64,
    pub last: u64,
    pub bound: u64,
    pub ok: bool,
}

impl RssLog {
    /// Records one sample.
    pub fn sample(&mut self, t: Duration) {
        if let Some(k) = rss_kib() {
            self.samples.push((t.as_secs_f64(), k));
        }
    }

    /// After the warm-up, RSS must stay within `2 × (max during warm-up) + slack_kib`: a mesh whose
    /// population random-walks around its mean may legitimately use more memory than during
    /// warm-up, but not without bound.
    pub fn verdict(&self, warmup: Duration, slack_kib: u64) -> RssVerdict {
        let w = warmup.as_secs_f64();
        let all = self.samples.iter().map(|s| s.1);
        let warm = self.samples.iter().filter(|s| s.0 <= w).map(|s| s.1);
        let after = self.samples.iter().filter(|s| s.0 > w).map(|s| s.1);
        let warmup_max = warm.max().unwrap_or(0);
        let after_warmup_max = after.max().unwrap_or(0);
        let bound = warmup_max * 2 + slack_kib;
        RssVerdict {
            min: all.clone().min().unwrap_or(0),
            max: all.max().unwrap_or(0),
            warmup_max,
            after_warmup_max,
            last: self.samples.last().map(|s| s.1).unwrap_or(0),
            bound,
            ok: after_warmup_max <= bound,
        }
    }
}

impl RssVerdict {
    /// JSON form for the summary.
    pub fn json(&self) -> Value {
        json!({
            "min_kib": self.min, "max_kib": self.max, "warmup_max_kib": self.warmup_max,
            "after_warmup_max_kib": self.after_warmup_max, "last_kib": self.last,
            "bound_kib": self.bound, "ok": self.ok,
        })
    }
}

/// Adds one node's counters to a running total.
pub fn add_stats(total: &mut NodeStats, s: &NodeStats) {
    total.dropped_events += s.dropped_events;
    total.bad_beacons += s.bad_beacons;
    total.handshake_failures += s.handshake_failures;
    total.send_failures += s.send_failures;
    let (t, e) = (&mut total.engine, &s.engine);
    t.messages_received += e.messages_received;
    t.messages_sent += e.messages_sent;
    t.malformed += e.malformed;
    t.bad_identity += e.bad_identity;
    t.not_hello_first += e.not_hello_first;
    t.sequence_gaps += e.sequence_gaps;
    t.status_mismatches += e.status_mismatches;
    t.restarts += e.restarts;
    t.purged += e.purged;
    t.self_connections += e.self_connections;
    t.from_disconnected += e.from_disconnected;
    t.bad_endpoint += e.bad_endpoint;
    t.elections_ignored += e.elections_ignored;
    t.goodbyes += e.goodbyes;
    t.departures += e.departures;
    t.pings_sent += e.pings_sent;
    t.pings_received += e.pings_received;
    t.expired += e.expired;
    t.send_failures += e.send_failures;
}

/// JSON form of summed counters.
pub fn stats_json(s: &NodeStats) -> Value {
    let e = &s.engine;
    json!({
        "dropped_events": s.dropped_events, "bad_beacons": s.bad_beacons,
        "handshake_failures": s.handshake_failures, "send_failures": s.send_failures,
        "messages_received": e.messages_received, "messages_sent": e.messages_sent,
        "malformed": e.malformed, "bad_identity": e.bad_identity,
        "not_hello_first": e.not_hello_first, "sequence_gaps": e.sequence_gaps,
        "status_mismatches": e.status_mismatches, "restarts": e.restarts, "purged": e.purged,
        "self_connections": e.self_connections, "from_disconnected": e.from_disconnected,
        "bad_endpoint": e.bad_endpoint, "elections_ignored": e.elections_ignored,
        "goodbyes": e.goodbyes, "departures": e.departures, "pings_sent": e.pings_sent,
        "pings_received": e.pings_received, "expired": e.expired,
        "engine_send_failures": e.send_failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_readable_and_verdict_applies_the_bound() {
        assert!(rss_kib().unwrap_or(0) > 0);
        let log = RssLog {
            samples: vec![(1.0, 100), (5.0, 120), (20.0, 200), (30.0, 250)],
        };
        let v = log.verdict(Duration::from_secs(10), 0);
        assert_eq!((v.warmup_max, v.after_warmup_max, v.bound), (120, 250, 240));
        assert!(!v.ok);
        assert!(log.verdict(Duration::from_secs(10), 100).ok);
    }
}
