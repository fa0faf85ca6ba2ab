//! Seeded pseudo-random inputs through the layer harnesses, on stable, in addition to the saved
//! corpus: a cheap search for crashes and false alarms of the checks (deterministic: a failing
//! input is printed with its seed).

use std::panic::{catch_unwind, AssertUnwindSafe};

/// xorshift64*: enough to make varied byte strings, stable forever.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn run(name: &str, harness: fn(&[u8]), n: u64) {
    let runs = std::env::var("ZMESH_FUZZ_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    for seed in 0..runs {
        let data = bytes(seed, 64 + (seed as usize * 37) % 4000);
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| harness(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: random input {seed} fails: {msg}\ninput: {data:02x?}");
        }
    }
}

#[test]
fn layer_envelopes_random_scripts() {
    run("layer_envelopes", zmesh_fuzz_harness::layer_envelopes, 3000);
}

#[test]
fn envelope_decode_random_frames() {
    run("envelope_decode", zmesh_fuzz_harness::envelope_decode, 3000);
}
