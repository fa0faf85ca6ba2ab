//! The tester's seeded random generator, so a run's *choices* are reproducible from `--seed`.
//! Timing on a real network is not reproducible, so a seed replays the same script of starts,
//! stops, kills, joins and replies, not the same interleaving.
//!
//! A thin wrapper over `rand` with ChaCha8 (`rand_chacha`, whose output for a seed is fixed
//! across versions, unlike `StdRng`'s): the tester asks for numbers in the few shapes below.

use std::time::Duration;

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator for `seed`; different `stream`s give unrelated sequences for the same seed.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Rng(r)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.gen_range(0..n.max(1))
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// True with probability `p` (clamped to 0.0 ..= 1.0).
    pub fn chance_f(&mut self, p: f64) -> bool {
        self.0.gen_bool(p.clamp(0.0, 1.0))
    }

    /// A duration uniformly in `lo ..= hi` (millisecond steps).
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo = lo.as_millis() as u64;
        let hi = (hi.as_millis() as u64).max(lo);
        Duration::from_millis(self.0.gen_range(lo..=hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 0);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn ranges_are_respected() {
        let mut r = Rng::new(1, 2);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let d = r.between(Duration::from_millis(500), Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
        assert!(!r.chance_f(0.0));
        assert!(r.chance_f(1.0));
    }
}
