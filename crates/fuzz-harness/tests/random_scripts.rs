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

/// Pseudo-random scripts built from typed steps (two or three peers that mostly speak `req`,
/// mostly valid envelopes answering our requests, handlers registered early): far deeper than
/// random bytes, so every outcome and responder path is reached many times.
#[test]
fn layer_envelopes_structured_scripts() {
    use zmesh_fuzz_harness::script::{encode, CapsChoice, Corr, EnvSpec, LayerStep};
    let runs = std::env::var("ZMESH_FUZZ_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500u64);
    for seed in 0..runs {
        let r = bytes(seed ^ 0xABCD, 4096);
        let mut i = 0;
        let mut next = || {
            i += 1;
            r[i % r.len()]
        };
        let peers = 2 + next() % 2;
        let mut steps = vec![
            LayerStep::Hello(0, CapsChoice::Req),
            LayerStep::Hello(1, CapsChoice::Req),
            LayerStep::Register {
                id: 1,
                pattern: next() % 6,
                tick: false,
                via_handle: false,
            },
        ];
        for _ in 0..20 + next() % 60 {
            let p = next() % peers;
            let step = match next() % 20 {
                0 => LayerStep::Hello(
                    p,
                    [
                        CapsChoice::Req,
                        CapsChoice::Req,
                        CapsChoice::Other,
                        CapsChoice::Plain,
                    ][usize::from(next() % 4)],
                ),
                1..=4 => LayerStep::Request {
                    peer: p,
                    event: next() % 6,
                    len: next() % 40,
                    timeout_ms: (next() % 4 != 0).then(|| u16::from(next()) * 4),
                },
                5..=7 => LayerStep::Envelope(
                    p,
                    EnvSpec::Reply {
                        corr: Corr::Ours(next()),
                        payload: vec![next(); usize::from(next() % 8)],
                    },
                ),
                8 => LayerStep::Envelope(
                    p,
                    EnvSpec::Error {
                        corr: Corr::Ours(next()),
                        class: next(),
                        code: u16::from(next()),
                        message: "e".repeat(usize::from(next() % 4)),
                    },
                ),
                9 | 10 => LayerStep::Envelope(
                    p,
                    EnvSpec::Request {
                        id: next() % 16,
                        event: next() % 6,
                        ttl_ms: (next() % 8 != 0).then(|| u16::from(next()) * 4),
                        len: next() % 40,
                    },
                ),
                11 => LayerStep::Envelope(p, EnvSpec::Cancel(Corr::Theirs(next()))),
                12 | 13 => LayerStep::Reply {
                    which: next(),
                    error: next() % 3 == 0,
                    len: next() % 40,
                    via_handle: next() % 2 == 0,
                },
                14 => LayerStep::Abandon(next()),
                15 => LayerStep::Cancel(next(), next() % 2 == 0),
                16 => LayerStep::Advance(u16::from(next()) * 4),
                17 => LayerStep::Deadline,
                18 => match next() % 6 {
                    0 => LayerStep::Goodbye(p),
                    1 => LayerStep::Departure(p),
                    2 => LayerStep::SendFailed(p),
                    3 => LayerStep::Refuse,
                    4 => LayerStep::Unregister(next() % 4),
                    _ => LayerStep::Register {
                        id: next() % 4,
                        pattern: next() % 6,
                        tick: next() % 3 == 0,
                        via_handle: next() % 2 == 0,
                    },
                },
                _ => match next() % 4 {
                    0 => LayerStep::Tick(p, next() % 6, next() % 2 == 0),
                    1 => LayerStep::Envelope(
                        p,
                        EnvSpec::Tick {
                            event: next() % 6,
                            len: next() % 40,
                        },
                    ),
                    2 => LayerStep::Damaged {
                        peer: p,
                        env: EnvSpec::Reply {
                            corr: Corr::Ours(next()),
                            payload: vec![1, 2, 3],
                        },
                        cut: next(),
                        flip: (next(), next()),
                    },
                    _ if next() % 8 == 0 => LayerStep::Stop,
                    _ => LayerStep::Deadline,
                },
            };
            steps.push(step);
        }
        let data = encode(u64::from(next()) << 56, &steps);
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| {
            zmesh_fuzz_harness::layer_envelopes(&data)
        })) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("structured script {seed} fails: {msg}\nsteps: {steps:#?}");
        }
    }
}
