//! Arbitrary bytes as a table file: opening and every read path must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    std::fs::write(&path, data).unwrap();
    engine::untrusted::open_and_exercise(&path);
});
