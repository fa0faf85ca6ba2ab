//! The services simulator (module `zmesh_sim::services`): callers, workers and brokers crash,
//! restart, partition and heal while callers call; the invariants are checked after every step.
//!
//! * default: 200 seeds;
//! * `ZMESH_SVC_SEEDS=N`: N seeds; `ZMESH_SVC_SEED=S`: replay seed S with the trace printed
//!   (`--nocapture`).

use zmesh_sim::{ServicesReport, ServicesSim, ServicesSimConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("ZMESH_SVC_SEED") {
        let cfg = ServicesSimConfig {
            verbose: true,
            ..ServicesSimConfig::default()
        };
        eprintln!("{:?}", ServicesSim::new(seed, cfg).run());
        return;
    }
    let n = env_u64("ZMESH_SVC_SEEDS").unwrap_or(200);
    let mut total = ServicesReport::default();
    for seed in 0..n {
        let r = ServicesSim::new(seed, ServicesSimConfig::default()).run();
        total.calls += r.calls;
        total.replied += r.replied;
        total.processed += r.processed;
        total.failed += r.failed;
        total.retries += r.retries;
        total.duplicates += r.duplicates;
        total.crashes += r.crashes;
        total.partitions += r.partitions;
        total.relayed += r.relayed;
        total.processed_on_two_workers += r.processed_on_two_workers;
        total.lost_with_caller += r.lost_with_caller;
    }
    eprintln!("{n} seeds: {total:?}");
    // The scenarios really exercise what the invariants are about.
    assert!(total.calls > 1000 * n / 10, "{total:?}");
    assert!(total.retries > 0 && total.duplicates > 0, "{total:?}");
    assert!(
        total.crashes > 0 && total.partitions > 0 && total.relayed > 0,
        "{total:?}"
    );
    assert!(total.replied > total.failed, "{total:?}");
}
