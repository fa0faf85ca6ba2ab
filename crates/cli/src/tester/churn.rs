//! The orchestrator: starting and stopping slots, and the phases of a run (churn, settle,
//! freeze, teardown).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use zmesh::{Node, Uuid};

use super::node::{lock, NodeApp};
use super::report::add_stats;
use super::rng::Rng;
use super::{Retired, Running, Shared, Tester};

impl Tester {
    fn running_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    async fn start_slot(&mut self, slot: usize) -> Result<(), zmesh::Error> {
        self.incarnations[slot] += 1;
        let name = format!("t{slot}.{}", self.incarnations[slot]);
        let a = &self.args;
        let (node, events) = Node::builder()
            .name(name.clone())
            .header("X-TESTER-SLOT", slot.to_string())
            .interface(self.iface.clone())
            .beacon_port(self.port)
            .beacon_interval(Duration::from_millis(a.interval))
            .evasive_timeout(Duration::from_millis(a.evasive))
            .expired_timeout(Duration::from_millis(a.expired))
            .event_capacity(100_000)
            .start()
            .await?;
        let uuid = node.uuid();
        self.shared
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uuid, name.clone());
        self.shared.set_running(uuid, true);
        let rng = Rng::new(
            self.seed,
            ((slot as u64) << 32) | self.incarnations[slot] as u64,
        );
        let app = NodeApp::new(self.shared.clone(), node.clone(), name, rng);
        let record = app.record();
        let task = tokio::spawn(app.run(events));
        self.slots[slot] = Some(Running { node, record, task });
        self.started += 1;
        self.max_running = self.max_running.max(self.running_count());
        Ok(())
    }

    /// Stops a slot in the background (a polite stop lingers up to 500 ms); its counters are folded
    /// into the totals when it is done.
    fn stop_slot(&mut self, slot: usize, kill: bool, count_stats: bool) {
        let Some(r) = self.slots[slot].take() else {
            return;
        };
        let uuid = r.node.uuid();
        // Not "running" any more from now on: an EXIT seen after this point is legitimate.
        self.shared.set_running(uuid, false);
        if kill {
            self.killed += 1;
        } else {
            self.stopped += 1;
        }
        let shared = self.shared.clone();
        let retired = self.retired.clone();
        self.retiring.push(tokio::spawn(async move {
            retire(shared, retired, r, kill, count_stats).await;
        }));
        self.retiring.retain(|h| !h.is_finished());
    }

    pub(super) async fn run_all(&mut self) -> Result<Value, zmesh::Error> {
        let args = self.args.clone();
        let t0 = Instant::now();
        // Initial population: a random subset of slots.
        let initial = args.initial.unwrap_or(args.nodes / 2);
        let mut order: Vec<usize> = (0..args.nodes).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        for &slot in order.iter().take(initial) {
            self.start_slot(slot).await?;
        }

        // ---- churn phase
        let churn_end = t0 + args.duration;
        let (cmin, cmax) = (
            Duration::from_millis(args.churn_min),
            Duration::from_millis(args.churn_max),
        );
        let mut next_toggle = Instant::now() + self.rng.between(cmin, cmax);
        let mut next_sample = Instant::now();
        let mut next_progress = t0 + Duration::from_secs(args.progress.max(1));
        while Instant::now() < churn_end {
            let wake = next_toggle.min(next_sample).min(churn_end);
            tokio::time::sleep_until(wake.into()).await;
            let now = Instant::now();
            if now >= next_sample {
                self.rss.sample(t0.elapsed());
                next_sample += Duration::from_secs(1);
            }
            if args.progress > 0 && now >= next_progress {
                self.progress(t0);
                next_progress += Duration::from_secs(args.progress);
            }
            if now >= next_toggle && now < churn_end {
                let slot = self.rng.below(args.nodes as u64) as usize;
                if self.slots[slot].is_some() {
                    let kill = self.rng.chance_f(args.kill_ratio);
                    self.stop_slot(slot, kill, true);
                } else {
                    self.start_slot(slot).await?;
                }
                next_toggle = Instant::now() + self.rng.between(cmin, cmax);
            }
        }
        let churn_secs = t0.elapsed().as_secs_f64();

        // ---- settle phase: no more joins/leaves/original shouts; the mesh must converge.
        self.shared.quiet.store(true, Ordering::SeqCst);
        let quiet_at = Instant::now();
        for h in std::mem::take(&mut self.retiring) {
            let _ = h.await;
        }
        let bound = Duration::from_millis(args.expired + 2 * args.interval + args.settle_slack);
        let deadline = quiet_at + bound;
        let mut converged_after = None;
        let mut last_mismatches = Vec::new();
        loop {
            let mismatches = self.check_convergence();
            if mismatches.is_empty() {
                converged_after = Some(quiet_at.elapsed());
                break;
            }
            last_mismatches = mismatches;
            if Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= next_sample {
                self.rss.sample(t0.elapsed());
                next_sample += Duration::from_secs(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if converged_after.is_none() {
            let n = last_mismatches.len();
            for m in last_mismatches.into_iter().take(10) {
                self.shared.violation("not_converged", m);
            }
            self.shared.violation(
                "not_converged",
                format!("{n} mismatch(es) left {bound:?} after the churn stopped"),
            );
        }

        // ---- freeze: no more replies; let in-flight whispers land, then compare counts.
        self.shared.frozen.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let ledger = self.check_ledger();
        self.rss.sample(t0.elapsed());

        // ---- teardown: stop every survivor politely. Their protocol counters are taken *before*
        // (the teardown's own departures and late GOODBYEs are not part of the experiment).
        let survivors = self.running_count();
        {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            for r in self.slots.iter().flatten() {
                add_stats(&mut retired.stats, &r.node.stats());
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.stop_slot(slot, false, false);
                self.stopped -= 1; // the final teardown is not churn
            }
        }
        for h in std::mem::take(&mut self.retiring) {
            let _ = h.await;
        }
        Ok(self.summary(churn_secs, survivors, bound, converged_after, ledger))
    }

    fn progress(&self, t0: Instant) {
        let c = &self.shared.counters;
        eprintln!(
            "tester: {:6.0}s running {:3} started {} stopped {} killed {} | enter {} exit {} whisper {}/{} shout {} | violations {} | rss {} MiB tasks {} fds {}",
            t0.elapsed().as_secs_f64(),
            self.running_count(),
            self.started,
            self.stopped,
            self.killed,
            c.enter.load(Ordering::Relaxed),
            c.exit.load(Ordering::Relaxed),
            c.whisper.load(Ordering::Relaxed),
            c.whispers_sent.load(Ordering::Relaxed),
            c.shout.load(Ordering::Relaxed),
            self.shared.violation_count(),
            self.rss.samples.last().map(|s| s.1 / 1024).unwrap_or(0),
            // Live tokio tasks and open fds: both must follow the number of running nodes (about
            // two connections per ordered pair), so a task or socket leak shows up here at once.
            tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        );
    }
}

/// Stops one node, waits for its task, checks how it ended and folds its counters in.
async fn retire(
    shared: Arc<Shared>,
    retired: Arc<Mutex<Retired>>,
    r: Running,
    kill: bool,
    count_stats: bool,
) {
    if kill {
        r.node.abort().await;
    } else {
        r.node.stop().await;
    }
    let name = lock(&r.record).name.clone();
    match tokio::time::timeout(Duration::from_secs(10), r.task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.violation("panic", format!("{name}: node task failed: {e}")),
        Err(_) => shared.violation(
            "stop_hang",
            format!("{name}: event stream still open 10 s after stop"),
        ),
    }
    let known_peer = lock(&r.record).view.keys().next().copied();
    let bad = probe_stopped(&r.node, known_peer);
    if !bad.is_empty() {
        let how = if kill { "abort" } else { "stop" };
        let bad = bad.join("; ");
        shared.violation("api_after_stop", format!("{name} after {how}(): {bad}"));
    }
    let stats = r.node.stats();
    let rec = lock(&r.record);
    let received: u64 = rec.recv.values().map(|p| p.count).sum();
    let mut t = retired.lock().unwrap_or_else(|e| e.into_inner());
    if count_stats {
        add_stats(&mut t.stats, &stats);
    }
    t.whispers_received += received;
    if !kill && !rec.got_stop {
        t.polite_without_stop_event += 1;
    }
}

/// Once `stop()` or `abort()` has returned, the node is gone: every command must fail with
/// [`zmesh::Error::Stopped`] (the variant documented as "the node has been stopped"), not succeed
/// silently or report an unrelated error. Returns what did not.
fn probe_stopped(node: &Node, known_peer: Option<Uuid>) -> Vec<String> {
    let frames = || vec![zmesh::Bytes::from_static(b"probe")];
    let peer = known_peer.unwrap_or_else(Uuid::new_v4);
    let results = [
        ("join", node.join("PROBE").map(|_| ())),
        ("leave", node.leave("G0").map(|_| ())),
        ("shout", node.shout("G0", frames()).map(|_| ())),
        ("whisper", node.whisper(peer, frames())),
    ];
    results
        .into_iter()
        .filter(|(_, r)| !matches!(r, Err(zmesh::Error::Stopped)))
        .map(|(what, r)| format!("{what} returned {r:?}, expected Err(Stopped)"))
        .collect()
}
