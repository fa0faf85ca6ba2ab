//! `zmesh tester` options and their parsing.

use std::time::Duration;

use clap::Args;

/// `zmesh tester` options.
#[derive(Args, Debug, Clone)]
pub struct TesterArgs {
    /// Number of node slots (about half of them run at any time).
    #[arg(long, default_value_t = 100)]
    pub(super) nodes: usize,
    /// How long to churn: 90s, 10m, 1h, 500ms (a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = crate::parse::positive_duration)]
    pub(super) duration: Duration,
    /// Seed for every random choice (default: random; printed in the summary to replay a run).
    #[arg(long)]
    pub(super) seed: Option<u64>,
    /// Slots running at the start (default: half of --nodes).
    #[arg(long)]
    pub(super) initial: Option<usize>,
    /// Groups the nodes join and leave.
    #[arg(long, default_value_t = 10)]
    pub(super) groups: usize,
    /// Fraction of stops that are crashes (abort, no goodbye) rather than polite stops.
    #[arg(long, default_value_t = 0.5)]
    pub(super) kill_ratio: f64,
    /// Shortest pause between two churn steps, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub(super) churn_min: u64,
    /// Longest pause between two churn steps, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(super) churn_max: u64,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(super) interval: u64,
    /// Evasive timeout in milliseconds (short, so crashed nodes are noticed quickly).
    #[arg(long, default_value_t = 1000)]
    pub(super) evasive: u64,
    /// Expired timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub(super) expired: u64,
    /// Extra time allowed for convergence beyond expired + 2 beacon intervals, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub(super) settle_slack: u64,
    /// Memory bound after warm-up: 2 × the warm-up maximum plus this many MiB.
    #[arg(long, default_value_t = 64)]
    pub(super) rss_slack_mib: u64,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 10)]
    pub(super) progress: u64,
    /// Chaos-test named services instead: broker and worker processes killed (SIGKILL) and
    /// restarted while clients call through the brokers; prints a ledger of every call.
    #[arg(long)]
    pub(super) services: bool,
    /// --services: broker processes.
    #[arg(long, default_value_t = 2)]
    pub(super) brokers: usize,
    /// --services: worker processes (over two services).
    #[arg(long = "workers", default_value_t = 4)]
    pub(super) svc_workers: usize,
    /// --services: client nodes (each keeps 4 calls in flight).
    #[arg(long, default_value_t = 4)]
    pub(super) clients: usize,
}
