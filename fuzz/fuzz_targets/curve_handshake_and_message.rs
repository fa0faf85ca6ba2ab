//! cargo-fuzz target `curve_handshake_and_message`: see `zmesh_fuzz_harness::curve` for the input
//! format and the checked properties. The same function replays the saved corpus on stable in
//! crates/fuzz-harness/tests/replay_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zmesh_fuzz_harness::curve_handshake_and_message(data));
