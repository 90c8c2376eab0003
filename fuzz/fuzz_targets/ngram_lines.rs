//! Arbitrary bytes as the builder's n-gram text file: lines parse or fail with an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| engine::untrusted::exercise_ngram_lines(data));
