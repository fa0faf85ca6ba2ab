//! Runs many seeded scenarios through the simulator (see the `zmesh_sim` crate docs).
//!
//! * default: 1,000 seeds (0..1000), split over four test functions so that the test harness
//!   runs them in parallel, and 100 seeds (0..100) with [`SimConfig::short_timers`];
//! * `ZMESH_SIM_SEEDS=N`: run N seeds instead (`ZMESH_SIM_FIRST=F` to start at seed F);
//! * `ZMESH_SIM_SEED=S`: replay only seed S, printing the whole trace (use `--nocapture`);
//! * `ZMESH_SIM_REQUESTS=0`: without the request/reply applications (the ZRE-level scenario alone);
//! * `ZMESH_SIM_SHORT=1`: with [`SimConfig::short_timers`] (many more expiries per second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use zmesh_sim::{Sim, SimConfig};

const PARTS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an integer, got {v:?}"))
    })
}

fn run_seed(seed: u64, verbose: bool, short: bool) {
    let base = if short {
        SimConfig::short_timers()
    } else {
        SimConfig::default()
    };
    let cfg = SimConfig {
        verbose,
        requests: env_u64("ZMESH_SIM_REQUESTS") != Some(0),
        ..base
    };
    let result = catch_unwind(AssertUnwindSafe(|| Sim::new(seed, cfg).run()));
    match result {
        Ok(report) => {
            if verbose {
                eprintln!("seed {seed} passed: {report:?}");
            }
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("seed {seed} FAILED (replay with ZMESH_SIM_SEED={seed}):\n{msg}");
        }
    }
}

fn run_part(part: u64) {
    if let Some(seed) = env_u64("ZMESH_SIM_SEED") {
        if part == 0 {
            run_seed(seed, true, env_u64("ZMESH_SIM_SHORT") == Some(1));
        }
        return;
    }
    let total = env_u64("ZMESH_SIM_SEEDS").unwrap_or(1000);
    let first = env_u64("ZMESH_SIM_FIRST").unwrap_or(0);
    let started = Instant::now();
    let mut n = 0;
    for seed in (first..first + total).filter(|s| s % PARTS == part) {
        run_seed(seed, false, env_u64("ZMESH_SIM_SHORT") == Some(1));
        n += 1;
    }
    eprintln!(
        "part {part}: {n} seeds passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn seeds_part_0() {
    run_part(0);
}

#[test]
fn seeds_part_1() {
    run_part(1);
}

#[test]
fn seeds_part_2() {
    run_part(2);
}

#[test]
fn seeds_part_3() {
    run_part(3);
}

/// 100 seeds with short engine timers: many more expiries, evasive episodes and rediscoveries,
/// with requests pending across them.
#[test]
fn short_timers_seeds() {
    if env_u64("ZMESH_SIM_SEED").is_some() {
        return;
    }
    let started = Instant::now();
    for seed in 0..100 {
        run_seed(seed, false, true);
    }
    eprintln!(
        "short timers: 100 seeds passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
