//! Arbitrary bytes as a table file: opening and every read path must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| engine::untrusted::exercise_table_bytes(data));
