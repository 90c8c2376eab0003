//! Model-based: random tables built, opened and queried; every answer must
//! agree with a HashMap reference (engine::untrusted::model_check).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| engine::untrusted::model_check(data));
