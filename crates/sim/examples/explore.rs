//! Runs a range of seeds without stopping at the first failure and prints one line per failing
//! seed: `cargo run -p zmesh-sim --example explore -- FIRST COUNT [QUIET_SECS]`.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use zmesh_sim::{Sim, SimConfig};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let first = args.first().copied().unwrap_or(0);
    let count = args.get(1).copied().unwrap_or(100);
    let mut cfg = if std::env::var("SHORT").is_ok() {
        SimConfig::short_timers()
    } else {
        SimConfig::default()
    };
    if let Some(q) = args.get(2) {
        cfg.quiet = Duration::from_secs(*q);
    }
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut failed = 0;
    for seed in first..first + count {
        let c = cfg.clone();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| Sim::new(seed, c).run())) {
            failed += 1;
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            println!("{}", msg.lines().next().unwrap_or(""));
        }
    }
    println!(
        "{failed} of {count} seeds failed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
