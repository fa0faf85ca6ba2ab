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
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
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
}

/// Parses `500ms`, `90s`, `10m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 90s, 10m, 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit {unit:?} in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
