//! Scenario parameters and the run report.

use std::time::Duration;

/// Scenario parameters. Ranges are inclusive `(min, max)` and sampled per seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of node slots.
    pub nodes: (usize, usize),
    /// Length of the churn phase (faults, joins/leaves).
    pub churn: (Duration, Duration),
    /// Length of the quiet phase after the churn (no faults). Must exceed `expired_timeout`
    /// plus a few beacon intervals for the convergence check to be meaningful; the default is
    /// `expired_timeout + 15 s` (the bound the engine promises since its lost-HELLO recovery;
    /// see `tests/regressions.rs`, seed 419).
    pub quiet: Duration,
    /// Beacon interval.
    pub beacon_interval: Duration,
    /// Beacon jitter (± this much).
    pub beacon_jitter: Duration,
    /// Maximum per-seed beacon loss probability (each seed picks one in `[0, max]`).
    pub max_beacon_loss: f64,
    /// Maximum one-way message delay.
    pub max_delay: Duration,
    /// Time between two faults during the churn phase.
    pub fault_gap: (Duration, Duration),
    /// Time between two application actions of one node.
    pub app_gap: (Duration, Duration),
    /// Longest connection stall.
    pub max_stall: Duration,
    /// Longest partition.
    pub max_partition: Duration,
    /// Longest downtime before a restart.
    pub max_downtime: Duration,
    /// Probability that one `Send` fails during the churn phase (reported with
    /// `handle_send_failed`).
    pub send_fail_prob: f64,
    /// Engine evasive timeout.
    pub evasive_timeout: Duration,
    /// Engine expired timeout.
    pub expired_timeout: Duration,
    /// Engine proactive ping interval.
    pub ping_interval: Duration,
    /// Run the request/reply applications (see the `reqrep` module). Off: the ZRE-level scenario
    /// of each seed is exactly the one it was before request/reply existed.
    pub requests: bool,
    /// Print every trace line to stderr as it happens.
    pub verbose: bool,
    /// How many recent trace lines a failure report shows.
    pub trace_len: usize,
}

impl Default for SimConfig {
    /// 5–8 nodes, 20–50 s of churn, then a 45 s quiet phase; Zyre's default timers (5 s / 30 s)
    /// and the engine's 2 s ping interval; 1 s beacons, up to 20 % beacon loss, up to 150 ms
    /// message delay.
    fn default() -> SimConfig {
        let expired = zmesh_zre::DEFAULT_EXPIRED_TIMEOUT;
        SimConfig {
            nodes: (5, 8),
            churn: (Duration::from_secs(20), Duration::from_secs(50)),
            quiet: expired + Duration::from_secs(15),
            beacon_interval: Duration::from_secs(1),
            beacon_jitter: Duration::from_millis(200),
            max_beacon_loss: 0.2,
            max_delay: Duration::from_millis(150),
            fault_gap: (Duration::from_millis(500), Duration::from_secs(6)),
            app_gap: (Duration::from_millis(300), Duration::from_secs(3)),
            max_stall: Duration::from_secs(8),
            max_partition: Duration::from_secs(25),
            max_downtime: Duration::from_secs(15),
            send_fail_prob: 0.002,
            evasive_timeout: zmesh_zre::DEFAULT_EVASIVE_TIMEOUT,
            expired_timeout: expired,
            ping_interval: zmesh_zre::DEFAULT_PING_INTERVAL,
            requests: true,
            verbose: false,
            trace_len: 80,
        }
    }
}

impl SimConfig {
    /// Like the default, but with short engine timers (evasive 2 s, expired 6 s, ping 0.8 s) and
    /// shorter stalls, partitions and downtimes: many more expiries, evasive episodes and
    /// rediscoveries per virtual second.
    pub fn short_timers() -> SimConfig {
        let expired = Duration::from_secs(6);
        SimConfig {
            evasive_timeout: Duration::from_secs(2),
            expired_timeout: expired,
            ping_interval: Duration::from_millis(800),
            quiet: expired + Duration::from_secs(15),
            max_stall: Duration::from_secs(4),
            max_partition: Duration::from_secs(10),
            max_downtime: Duration::from_secs(8),
            ..SimConfig::default()
        }
    }
}

/// Counters describing what a run exercised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Steps executed.
    pub steps: u64,
    /// Instances started (including restarts).
    pub instances: u64,
    /// Crashes, polite stops, partitions, resets, stalls, injected send failures.
    pub crashes: u64,
    /// Polite stops.
    pub stops: u64,
    /// Partitions.
    pub partitions: u64,
    /// Connection resets (that lost at least one message).
    pub resets: u64,
    /// Stalls.
    pub stalls: u64,
    /// Injected send failures.
    pub send_failures: u64,
    /// Messages delivered to an engine.
    pub delivered: u64,
    /// Messages lost by the network model.
    pub dropped: u64,
    /// ENTER events.
    pub enters: u64,
    /// EXIT events.
    pub exits: u64,
    /// WHISPER/SHOUT events checked against a clean connection.
    pub clean_checked: u64,
    /// Status-record comparisons performed.
    pub status_checked: u64,
    /// Sum over engines (running at the end) of sequence gaps counted.
    pub sequence_gaps: u64,
    /// Messages delivered on a connection addressed to another UUID (the DEALER was created for
    /// a node whose endpoint a new node now listens on).
    pub stale_deliveries: u64,
    /// Whispers delivered to a node other than the one they were addressed to, through such a
    /// stale connection.
    pub misdelivered_whispers: u64,
    /// Requests made.
    pub requests: u64,
    /// Requests that ended with the reply.
    pub replies: u64,
    /// ... with a handler error.
    pub handler_errors: u64,
    /// ... with `Timeout`.
    pub timeouts: u64,
    /// ... with `PeerLeft`.
    pub peer_left: u64,
    /// ... with `Cancelled`.
    pub cancelled: u64,
    /// ... with `NoResponders(UnknownPeer)`.
    pub unknown_peer: u64,
    /// ... with `NoResponders(NoHandler)`.
    pub no_handler: u64,
    /// ... with `Overloaded` (ours or the responder's).
    pub overloaded: u64,
    /// ... with `Stopped`.
    pub stopped: u64,
    /// Requests whose requester crashed before they ended (no outcome is owed).
    pub lost_with_requester: u64,
    /// Requests handed to a handler.
    pub requests_handled: u64,
    /// Requests handed to a handler that ended unanswered (`Ended`).
    pub handler_ends: u64,
    /// Ticks delivered to handlers.
    pub ticks_delivered: u64,
    /// Requests delivered, through a stale connection, to the node that took over the endpoint
    /// of the one they were sent to.
    pub misdelivered_requests: u64,
    /// Requests to any matching peer.
    pub any_requests: u64,
    /// ... of which found no candidate (`NoMatch`).
    pub any_no_match: u64,
    /// Gathers (requests to all) that ended.
    pub gathers: u64,
    /// Option changes.
    pub option_changes: u64,
    /// Peer events (joined, options changed, left) checked.
    pub peer_events: u64,
    /// Events emitted (by publishers) / delivered to subscribers (checked).
    pub events_emitted: u64,
    /// Events delivered to a subscription (remote and local).
    pub events_delivered: u64,
    /// Retained values delivered.
    pub retained_delivered: u64,
    /// Emits refused for back-pressure.
    pub emits_backpressured: u64,
}
