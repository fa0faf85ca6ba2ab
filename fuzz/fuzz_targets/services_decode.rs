//! cargo-fuzz target `services_decode`: see `zmesh_fuzz_harness::services_decode` for the input
//! format and the checked properties. The same function replays the saved corpus on stable in
//! crates/fuzz-harness/tests/replay_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zmesh_fuzz_harness::services_decode(data));
