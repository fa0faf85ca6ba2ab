//! cargo-fuzz target `zmtp_greeting_and_command_decode`: see `zmesh_fuzz_harness::zmtp_greeting_and_command_decode` for the input format and the checked
//! properties. The same function replays the saved corpus on stable in
//! crates/fuzz-harness/tests/replay_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zmesh_fuzz_harness::zmtp_greeting_and_command_decode(data));
