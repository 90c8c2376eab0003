//! Arbitrary token streams against a small fixed table: the matcher agrees with
//! a naive longest-suffix lookup.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| engine::untrusted::exercise_match_tokens(data));
