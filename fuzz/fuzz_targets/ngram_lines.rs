//! Arbitrary bytes as the builder's n-gram text file: lines parse or fail with an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = engine::ingest::NgramLines::from_reader("fuzz.txt", std::io::Cursor::new(data));
    for item in lines {
        if let Ok((tokens, _count)) = item {
            assert!(!tokens.is_empty());
        }
    }
});
