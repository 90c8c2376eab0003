//! Arbitrary bytes as an embeddings file (.npy or .safetensors by magic): open and
//! read every row without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| engine::untrusted::exercise_embeddings(data));
