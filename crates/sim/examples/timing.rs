//! Times individual seeds: `cargo run -p zmesh-sim --example timing -- FIRST COUNT`.
use std::time::Instant;
use zmesh_sim::{Sim, SimConfig};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (first, count) = (
        args.first().copied().unwrap_or(0),
        args.get(1).copied().unwrap_or(10),
    );
    let all = Instant::now();
    for seed in first..first + count {
        let t = Instant::now();
        let r = Sim::new(seed, SimConfig::default()).run();
        println!("seed {seed}: {:.3}s {r:?}", t.elapsed().as_secs_f64());
    }
    println!("total {:.2}s", all.elapsed().as_secs_f64());
}
