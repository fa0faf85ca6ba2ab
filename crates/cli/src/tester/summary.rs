//! The verdict of a run: the final checks, the JSON summary and its human form.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::checks::{must_be_zero, Ledger};
use super::report::stats_json;
use super::{Tester, PANICS};

impl Tester {
    pub(super) fn summary(
        &self,
        churn_secs: f64,
        survivors: usize,
        bound: Duration,
        converged_after: Option<Duration>,
        ledger: Ledger,
    ) -> Value {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let stats = &retired.stats;
        for (name, value) in must_be_zero(stats) {
            if value > 0 {
                self.shared.violation(
                    "protocol_counter",
                    format!("{name} = {value} summed over all nodes (must be 0)"),
                );
            }
        }
        // Kills alone never produce not_hello_first (a dead node sends nothing); its legitimate
        // sources are polite stops and one-sided removals, which show up in these counters.
        let c = &self.shared.counters;
        let explained = self.stopped > 0
            || c.exit_of_live.load(Ordering::Relaxed) > 0
            || stats.send_failures > 0
            || stats.engine.send_failures > 0;
        if stats.engine.not_hello_first > 0 && !explained {
            self.shared.violation(
                "protocol_counter",
                format!(
                    "not_hello_first = {} without any polite stop or one-sided removal",
                    stats.engine.not_hello_first
                ),
            );
        }
        if retired.polite_without_stop_event > 0 {
            self.shared.violation(
                "missing_stop_event",
                format!(
                    "{} polite stop(s) ended without a STOP event",
                    retired.polite_without_stop_event
                ),
            );
        }
        let panics = PANICS.load(Ordering::SeqCst);
        if panics > 0 {
            self.shared
                .violation("panic", format!("{panics} panic(s) in the process"));
        }
        let warmup = Duration::from_secs_f64((churn_secs / 4.0).max(10.0).min(churn_secs));
        let rss = self.rss.verdict(warmup, self.args.rss_slack_mib * 1024);
        if !rss.ok {
            self.shared.violation(
                "memory",
                format!(
                    "RSS reached {} KiB after warm-up, bound {} KiB",
                    rss.after_warmup_max, rss.bound
                ),
            );
        }
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let v = self
            .shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let total_violations: u64 = v.by_kind.values().sum();
        json!({
            "summary": "zmesh-tester",
            "ok": total_violations == 0,
            "seed": self.seed,
            "port": self.port,
            "iface": self.iface.to_string(),
            "slots": self.args.nodes,
            "churn_seconds": churn_secs,
            "timeouts_ms": {"beacon": self.args.interval, "evasive": self.args.evasive, "expired": self.args.expired},
            "nodes": {
                "started": self.started, "stopped_polite": self.stopped, "killed": self.killed,
                "max_running": self.max_running, "running_at_end": survivors,
            },
            "events": {
                "enter": ld(&c.enter), "exit": ld(&c.exit), "join": ld(&c.join), "leave": ld(&c.leave),
                "whisper": ld(&c.whisper), "shout": ld(&c.shout), "evasive": ld(&c.evasive),
                "silent": ld(&c.silent), "stop": ld(&c.stop),
                "exit_of_live_peer": ld(&c.exit_of_live), "evasive_or_silent_of_live_peer": ld(&c.evasive_of_live),
            },
            "whispers": {
                "sent": ld(&c.whispers_sent), "received": retired.whispers_received,
                "refused": ld(&c.whisper_errors), "to_exited_peer_accepted": ld(&c.whisper_to_exited_ok),
                "exit_probes_received": ld(&c.exit_probes_received),
                "checked_pairs": ledger.checked_pairs, "excluded_pairs": ledger.excluded_pairs,
                "pairs_without_whisper": ledger.pairs_without_whisper,
                "checked_sent": ledger.checked_sent, "checked_received": ledger.checked_received,
                "lost": ledger.lost, "out_of_order": ledger.out_of_order,
            },
            "shouts": {"sent": ld(&c.shouts_sent), "copies_queued": ld(&c.shout_copies)},
            "convergence": {
                "bound_ms": bound.as_millis() as u64,
                "converged_after_ms": converged_after.map(|d| d.as_millis() as u64),
            },
            "counters": stats_json(stats),
            "rss": rss.json(),
            "panics": panics,
            "violations": total_violations,
            "violations_by_kind": v.by_kind.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "violation_examples": v.examples,
        })
    }
}

pub(super) fn print_human(s: &Value) {
    let g = |p: &str| s.pointer(p).cloned().unwrap_or(Value::Null);
    println!(
        "zmesh tester: seed {} on {} port {}, {} slots, {:.0} s of churn",
        g("/seed"),
        g("/iface").as_str().unwrap_or("?"),
        g("/port"),
        g("/slots"),
        g("/churn_seconds").as_f64().unwrap_or(0.0)
    );
    println!("  nodes      {}", g("/nodes"));
    println!("  events     {}", g("/events"));
    println!("  whispers   {}", g("/whispers"));
    println!("  shouts     {}", g("/shouts"));
    println!("  converge   {}", g("/convergence"));
    println!("  counters   {}", g("/counters"));
    println!("  rss        {}", g("/rss"));
    println!(
        "  violations {} {}",
        g("/violations"),
        g("/violations_by_kind")
    );
    if let Some(ex) = s["violation_examples"].as_array() {
        for e in ex {
            println!("    {}", e.as_str().unwrap_or(""));
        }
    }
    println!(
        "  result     {}",
        if s["ok"].as_bool() == Some(true) {
            "OK"
        } else {
            "FAILED"
        }
    );
}
