//! cargo-fuzz target `gossip_messages`: see `zmesh_fuzz_harness::gossip_messages` for the input format and the checked
//! properties. The same function replays the saved corpus on stable in
//! crates/fuzz-harness/tests/replay_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zmesh_fuzz_harness::gossip_messages(data));
